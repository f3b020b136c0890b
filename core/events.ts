// The typed event bus, and its server-sent-events view at GET /agentmesh/events.
import { PassThrough } from 'node:stream'
import { FastResponse } from 'srvx'
import type { MeshEvent, MeshEventName, MeshEvents } from './types.ts'

export function createEventBus(onListenerError: (err: unknown) => void) {
  const listeners = new Set<(e: MeshEvent) => void>()
  return {
    emit<K extends MeshEventName>(type: K, data: MeshEvents[K]) {
      if (listeners.size === 0) return
      const event = { type, time: Date.now(), data } as MeshEvent
      for (const l of listeners) {
        try { l(event) } catch (err) { onListenerError(err) }
      }
    },
    on(listener: (e: MeshEvent) => void) {
      listeners.add(listener)
      return () => { listeners.delete(listener) }
    },
    get size() { return listeners.size },
  }
}

export type EventBus = ReturnType<typeof createEventBus>

/** SSE response streaming every event; `?types=a,b` filters. Heartbeats keep proxies from closing it. */
export function eventStreamResponse(bus: EventBus, request: Request, headers: Record<string, string>): Response {
  const types = new URL(request.url).searchParams.get('types')?.split(',').filter(Boolean)
  const out = new PassThrough()
  out.write(': agentmesh events\n\n')
  const off = bus.on((e) => {
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
