// The typed event bus, and its server-sent-events view at GET /agentmesh/events.
import { PassThrough } from 'node:stream'
import { FastResponse } from 'srvx'
import type { MeshEvent, MeshEventName, MeshEvents } from './types.ts'

/** A class, not an object literal: a literal with a getter is a dictionary-mode object, slow on every request. */
export class EventBus {
  #listeners = new Set<(e: MeshEvent) => void>()
  #seq = 0
  /** the newest events, for a client that reconnects with Last-Event-ID; off until an SSE client asks */
  #ring: MeshEvent[] | undefined
  #ringAt = 0
  constructor(private readonly onListenerError: (err: unknown) => void) {}
  // arrow properties: mesh.emit and mesh.on are handed out detached from the bus
  emit = <K extends MeshEventName>(type: K, data: MeshEvents[K]): void => {
    if (this.#listeners.size === 0 && this.#ring === undefined) return
    const event = { id: ++this.#seq, type, time: Date.now(), data } as MeshEvent
    const ring = this.#ring
    if (ring !== undefined) {
      ring[this.#ringAt] = event
      this.#ringAt = this.#ringAt + 1 === ring.length ? 0 : this.#ringAt + 1
    }
    for (const l of this.#listeners) {
      try {
        l(event)
      } catch (err) {
        this.onListenerError(err)
      }
    }
  }
  on = (listener: (e: MeshEvent) => void): (() => void) => {
    this.#listeners.add(listener)
    return () => {
      this.#listeners.delete(listener)
    }
  }
  /**
   * Keep the newest `size` events from now on, also while no client is connected (a dropped
   * connection or a reload then loses nothing). Events are built for every request from then on.
   */
  retain(size: number): void {
    if (this.#ring === undefined && size > 0) this.#ring = new Array(size)
  }
  /** retained events newer than `lastId`, oldest first */
  since(lastId: number): MeshEvent[] {
    const ring = this.#ring
    if (ring === undefined || lastId >= this.#seq) return []
    const out: MeshEvent[] = []
    for (let i = 0; i < ring.length; i++) {
      const e = ring[(this.#ringAt + i) % ring.length]
      if (e !== undefined && e.id! > lastId) out.push(e)
    }
    return out
  }
  /** listeners, counting the replay buffer as one: the core builds events only when this is above 0 */
  get size(): number {
    return this.#listeners.size + (this.#ring === undefined ? 0 : 1)
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

const FRAME = Symbol('sse frame')
/** an event's SSE frame, made once however many clients get it (a symbol key: JSON.stringify skips it) */
function frameOf(e: MeshEvent): string {
  const cached = (e as { [FRAME]?: string })[FRAME]
  if (cached !== undefined) return cached
  const frame = `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`
  ;(e as { [FRAME]?: string })[FRAME] = frame
  return frame
}

/** events kept for replay by Last-Event-ID */
export const EVENT_RING_SIZE = 2000

/** the last event id a client saw: the Last-Event-ID header, or `?lastEventId=` after a page reload */
function lastEventId(request: Request, url: URL): number | undefined {
  const raw = request.headers.get('last-event-id') ?? url.searchParams.get('lastEventId')
  if (raw === null || !/^\d{1,15}$/.test(raw)) return undefined
  return Number(raw)
}

/**
 * SSE response streaming every event; `?types=a,b` filters, and `visible` (a caller's team) too.
 * Each event has an `id:`; a client that comes back with Last-Event-ID gets what it missed first,
 * from a bounded ring buffer. Heartbeats keep proxies from closing it.
 */
export function eventStreamResponse(
  bus: EventBus,
  request: Request,
  headers: Record<string, string>,
  visible?: (e: MeshEvent) => boolean,
): Response {
  const url = new URL(request.url)
  const types = url.searchParams.get('types')?.split(',').filter(Boolean)
  bus.retain(EVENT_RING_SIZE)
  const out = new PassThrough()
  out.write(': agentmesh events\n\n')
  // one write per event-loop turn, not one per event: each write is a syscall, and a busy proxy
  // emits several events per request to every client
  let pending = ''
  const flush = () => {
    const chunk = pending
    pending = ''
    if (chunk && !out.destroyed) out.write(chunk)
  }
  const send = (e: MeshEvent) => {
    // the team filter sees every event (it learns the team's request ids from `request`)
    if (visible && !visible(e)) return
    if (types && !types.includes(e.type)) return
    if (pending === '') setImmediate(flush)
    pending += frameOf(e)
  }
  const last = lastEventId(request, url)
  if (last !== undefined) for (const e of bus.since(last)) send(e)
  const off = bus.on(send)
  const beat = setInterval(() => out.write(': ping\n\n'), 15_000)
  beat.unref()
  const stop = () => {
    off()
    clearInterval(beat)
  }
  out.once('close', stop)
  request.signal?.addEventListener('abort', () => out.destroy(), { once: true })
  return new FastResponse(out as any, {
    status: 200,
    headers: {
      ...headers,
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    },
  }) as unknown as Response
}
