// The typed event bus, and its server-sent-events view at GET /agentmesh/events.
import { PassThrough } from 'node:stream'
import { FastResponse } from 'srvx'
import type { MeshEvent, MeshEventName, MeshEvents } from './types.ts'

/** A class, not an object literal: a literal with a getter is a dictionary-mode object, slow on every request. */
export class EventBus {
  #listeners = new Set<(e: MeshEvent) => void>()
  constructor(private readonly onListenerError: (err: unknown) => void) {}
  // arrow properties: mesh.emit and mesh.on are handed out detached from the bus
  emit = <K extends MeshEventName>(type: K, data: MeshEvents[K]): void => {
    if (this.#listeners.size === 0) return
    const event = { type, time: Date.now(), data } as MeshEvent
    for (const l of this.#listeners) {
      try { l(event) } catch (err) { this.onListenerError(err) }
    }
  }
  on = (listener: (e: MeshEvent) => void): (() => void) => {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }
  get size(): number {
    return this.#listeners.size
  }
}

export function createEventBus(onListenerError: (err: unknown) => void): EventBus {
  return new EventBus(onListenerError)
}

/**
 * Events of one team only: `request` and `response` name the identity; the other events of a
 * request carry its id, so the ids of the team's requests are remembered (the newest 10,000).
 */
export function teamFilter(team: string): (e: MeshEvent) => boolean {
  const ids = new Set<string>()
  return (e) => {
    const data = e.data as { id?: unknown; identity?: { team?: string } }
    if (e.type === 'request' && data.identity?.team === team && typeof data.id === 'string') {
      ids.add(data.id)
      if (ids.size > 10_000) ids.delete(ids.values().next().value!)
      return true
    }
    if (data.identity) return data.identity.team === team
    return typeof data.id === 'string' && ids.has(data.id)
  }
}

/**
 * SSE response streaming every event; `?types=a,b` filters, and `visible` (a caller's team) too.
 * Heartbeats keep proxies from closing it.
 */
export function eventStreamResponse(bus: EventBus, request: Request, headers: Record<string, string>, visible?: (e: MeshEvent) => boolean): Response {
  const types = new URL(request.url).searchParams.get('types')?.split(',').filter(Boolean)
  const out = new PassThrough()
  out.write(': agentmesh events\n\n')
  const off = bus.on((e) => {
    // the team filter sees every event (it learns the team's request ids from `request`)
    if (visible && !visible(e)) return
    if (types && !types.includes(e.type)) return
    out.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`)
  })
  const beat = setInterval(() => out.write(': ping\n\n'), 15_000)
  beat.unref()
  const stop = () => { off(); clearInterval(beat) }
  out.once('close', stop)
  request.signal?.addEventListener('abort', () => out.destroy(), { once: true })
  return new FastResponse(out as any, { status: 200, headers: { ...headers, 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' } }) as unknown as Response
}
