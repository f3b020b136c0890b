// The event stream's ids and replay: every event has an `id:`, and a client that comes back with
// Last-Event-ID (or ?lastEventId= after a reload) first gets what it missed, from a bounded ring
// buffer that keeps recording while nobody is connected.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EventBus, EventRing } from '../core/events.ts'
import type { MeshEvent } from '../core/types.ts'
import { postJson, sseEvents, startCoreProxy, type Proxy } from './helpers/core-harness.ts'

/** read the stream until `enough` holds for the events so far (or 10 s), then hang up */
async function readUntil(
  url: string,
  enough: (events: Array<{ id: number; type: string }>) => boolean,
  headers: Record<string, string> = {},
): Promise<Array<{ id: number; type: string; data: unknown }>> {
  const ac = new AbortController()
  const res = await fetch(url, { headers, signal: ac.signal })
  const reader = res.body!.getReader()
  let text = ''
  const stop = setTimeout(() => ac.abort(), 10_000)
  let events: Array<{ id: number; type: string; data: unknown }> = []
  try {
    while (!enough(events)) {
      const { value, done } = await reader.read()
      if (done) break
      text += Buffer.from(value).toString()
      events = sseEvents(text).map((e) => JSON.parse(e.data))
    }
  } finally {
    clearTimeout(stop)
    ac.abort()
  }
  return events
}

const responses = (n: number) => (events: Array<{ type: string }>) =>
  events.filter((e) => e.type === 'response').length >= n

const ask = (proxy: Proxy, text: string) =>
  postJson(
    `${proxy.url}/v1/chat/completions`,
    { model: 'gpt-4o-mini', messages: [{ role: 'user', content: text }] },
    { 'x-agentmesh-team': 'eng' },
  )

describe('event stream: ids and resume', () => {
  let proxy: Proxy
  beforeAll(async () => {
    proxy = await startCoreProxy()
  })
  afterAll(async () => {
    await proxy?.close()
  })

  it('replays what a dropped client missed, in order, with no gap and no repeat', async () => {
    let opened = false
    const first = readUntil(`${proxy.url}/agentmesh/events`, (events) => {
      opened = true
      return responses(1)(events)
    })
    while (!opened) await new Promise((r) => setTimeout(r, 10))
    await (await ask(proxy, 'one')).text()
    const seen = await first
    const last = seen.at(-1)!.id
    // disconnected: these happen while nobody listens
    await (await ask(proxy, 'two')).text()
    await (await ask(proxy, 'three')).text()
    const resumed = await readUntil(`${proxy.url}/agentmesh/events`, responses(2), { 'last-event-id': String(last) })
    expect(resumed.length).toBeGreaterThanOrEqual(4)
    resumed.forEach((e, i) => expect(e.id).toBe(last + 1 + i))
    expect(resumed.filter((e) => e.type === 'request')).toHaveLength(2)
    // after a reload the page asks for everything retained
    const all = await readUntil(`${proxy.url}/agentmesh/events?lastEventId=0`, responses(3))
    expect(all[0]!.id).toBe(seen[0]!.id)
    expect(all.map((e) => e.id)).toEqual([...seen, ...resumed].map((e) => e.id))
    // latencies go out to the microsecond, not performance.now()'s 17 digits
    const timed = all.filter((e) => e.type === 'response' || e.type === 'llm_call')
    expect(timed.length).toBeGreaterThanOrEqual(6)
    for (const e of timed) {
      const ms = (e.data as { latencyMs: number }).latencyMs
      expect(ms).toBeGreaterThan(0)
      expect(ms).toBe(Math.round(ms * 1000) / 1000)
    }
    // a malformed id is ignored, not an error
    expect(
      (
        await fetch(`${proxy.url}/agentmesh/events`, {
          headers: { 'last-event-id': 'x' },
          signal: AbortSignal.timeout(200),
        }).catch(() => ({ status: 200 }))
      ).status,
    ).toBe(200)
  })

  it('keeps a bounded ring: the oldest events go first, filtered on the way out', () => {
    const bus = new EventBus(() => {})
    expect(bus.wants('config_reload')).toBe(false)
    const events: MeshEvent[] = []
    bus.on((e) => events.push(e))
    for (let i = 0; i < 5; i++) bus.emit('config_reload', { plugins: [String(i)] })
    const frame = (e: MeshEvent) => `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`
    const ring = new EventRing(3)
    // as the flushes add them: [1, 2], [3], [4, 5] (the last as the bytes sent)
    for (const [a, b] of [
      [0, 2],
      [2, 3],
      [3, 5],
    ] as const) {
      const text = events.slice(a, b).map(frame).join('')
      ring.add(events[a]!.id!, events[b - 1]!.id!, b - a, b === 5 ? Buffer.from(text) : text)
    }
    const ids = (text: string) => sseEvents(text).map((e) => (JSON.parse(e.data) as MeshEvent).id)
    expect(ids(ring.since(0))).toEqual([3, 4, 5])
    expect(ids(ring.since(3))).toEqual([4, 5])
    expect(ids(ring.since(4))).toEqual([5])
    expect(ring.since(5)).toBe('')
    expect(ids(ring.since(0, (e) => e.id !== 4))).toEqual([3, 5])
    expect(sseEvents(ring.since(3)).map((e) => JSON.parse(e.data))).toEqual(events.slice(3))
  })
})
