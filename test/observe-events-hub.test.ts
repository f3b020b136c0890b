// The event stream's delivery to many clients: events go out in one write per client per flush
// (SSE_FLUSH_MS), the clients that see the same events share one buffer, a client that does not
// read is dropped past SSE_MAX_BACKLOG, team and type filters hold live and in replay, and the
// ring keeps recording once a client has been there.
import { readFileSync } from 'node:fs'
import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { EventBus, FOLD_FLUSH_MS, SSE_FLUSH_MS, SSE_MAX_BACKLOG, streamEvents, teamFilter } from '../core/events.ts'
import type { Identity, MeshEvent } from '../core/types.ts'
import { DASHBOARD_EVENTS } from '../plugins/dashboard/index.ts'
import { sseEvents } from './helpers/core-harness.ts'

const URL_ALL = new URL('http://proxy/agentmesh/events')

/** a client's stream and what it has been written, chunk by chunk */
function client() {
  const out = new PassThrough()
  const chunks: Buffer[] = []
  out.on('data', (d: Buffer) => chunks.push(d))
  const events = () => sseEvents(Buffer.concat(chunks).toString()).map((e) => JSON.parse(e.data) as MeshEvent)
  return { out, chunks, events }
}

// a folding stream (the dashboard's URL) flushes every FOLD_FLUSH_MS, the others every SSE_FLUSH_MS
const flushed = () => new Promise((r) => setTimeout(r, Math.max(SSE_FLUSH_MS, FOLD_FLUSH_MS) * 2 + 20))
const turn = () => new Promise((r) => setImmediate(r))
const who = (team: string): Identity => ({ team, user: 'u', tool: 't', source: 'header' }) as Identity

/** one request of `team`: the events that name the team, and one that only carries the request's id */
function request(bus: EventBus, id: string, team: string) {
  bus.emit('request', { id, identity: who(team), protocol: 'openai', model: 'm', stream: false })
  bus.emit('audit_entry' as never, { id, seq: 1 } as never)
  bus.emit('response', {
    id,
    status: 200,
    cache: 'bypass',
    latencyMs: 1,
    identity: who(team),
    vendor: 'openai',
    model: 'm',
    tokens: 2,
    costUsd: 0,
  } as never)
}

describe('event stream: many clients', () => {
  it('writes each client once per flush, from one buffer shared by the clients that see the same events', async () => {
    const bus = new EventBus(() => {})
    const clients = Array.from({ length: 5 }, client)
    for (const c of clients) streamEvents(bus, c.out, URL_ALL)
    // one event per event-loop turn, as a busy proxy emits them
    for (let i = 0; i < 20; i++) {
      bus.emit('config_reload', { plugins: [String(i)] })
      await turn()
    }
    await flushed()
    for (const c of clients) {
      expect(c.events().map((e) => e.id)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))
      // a flush may fall between two of the 20 turns, not more
      expect(c.chunks.length).toBeLessThanOrEqual(2)
      expect(c.chunks[0]).toBe(clients[0]!.chunks[0])
    }
    for (const c of clients) c.out.destroy()
  })

  it('a folding stream (the dashboard) is written every FOLD_FLUSH_MS, not every SSE_FLUSH_MS', async () => {
    const bus = new EventBus(() => {})
    const dash = client()
    streamEvents(bus, dash.out, new URL(`http://proxy${DASHBOARD_EVENTS}`))
    // a governance event every 10 ms for ~250 ms: a 40 ms flush would write ~6 times
    const started = performance.now()
    for (let i = 0; i < 25; i++) {
      bus.emit('config_reload', { plugins: [String(i)] })
      await new Promise((r) => setTimeout(r, 10))
    }
    const elapsed = performance.now() - started
    await flushed()
    expect(dash.events()).toHaveLength(25)
    expect(dash.chunks.length).toBeLessThanOrEqual(Math.ceil(elapsed / FOLD_FLUSH_MS) + 1)
    dash.out.destroy()
  })

  it('drops a client that does not read past the backlog; the others get everything', async () => {
    const bus = new EventBus(() => {})
    const reader = client()
    const stuck = new PassThrough() // nobody reads it
    let closed = false
    stuck.on('close', () => {
      closed = true
    })
    streamEvents(bus, reader.out, URL_ALL)
    streamEvents(bus, stuck, URL_ALL)
    const big = 'x'.repeat(SSE_MAX_BACKLOG + 1024)
    bus.emit('config_reload', { plugins: [big] })
    await flushed()
    expect(stuck.destroyed).toBe(false) // written: the backlog is checked before each write
    bus.emit('config_reload', { plugins: ['after'] })
    await flushed()
    expect(stuck.destroyed).toBe(true)
    expect(closed).toBe(true)
    const got = reader.events()
    expect(got.map((e) => e.id)).toEqual([1, 2])
    expect((got[0]!.data as { plugins: string[] }).plugins[0]).toHaveLength(big.length)
    reader.out.destroy()
  })

  it('team and types filters hold live and in replay; clients of one team share their buffer', async () => {
    const bus = new EventBus(() => {})
    const a1 = client()
    const a2 = client()
    const b = client()
    const requestsOnly = client()
    streamEvents(bus, a1.out, URL_ALL, teamFilter('a'))
    streamEvents(bus, a2.out, URL_ALL, teamFilter('a'))
    streamEvents(bus, b.out, URL_ALL, teamFilter('b'))
    streamEvents(bus, requestsOnly.out, new URL('http://proxy/agentmesh/events?types=request'))
    request(bus, 'ra', 'a')
    request(bus, 'rb', 'b')
    await flushed()
    const seen = (c: ReturnType<typeof client>) => c.events().map((e) => `${e.type}:${(e.data as { id: string }).id}`)
    expect(seen(a1)).toEqual(['request:ra', 'audit_entry:ra', 'response:ra'])
    expect(seen(b)).toEqual(['request:rb', 'audit_entry:rb', 'response:rb'])
    expect(seen(requestsOnly)).toEqual(['request:ra', 'request:rb'])
    expect(a2.chunks).toHaveLength(1)
    expect(a2.chunks[0]).toBe(a1.chunks[0])
    // a team-a client back from a drop: the replay is filtered as the live stream is, the
    // request's id learnt from its replayed `request` event
    const back = client()
    streamEvents(bus, back.out, URL_ALL, teamFilter('a'), 0)
    await flushed()
    expect(seen(back)).toEqual(['request:ra', 'audit_entry:ra', 'response:ra'])
    for (const c of [a1, a2, b, requestsOnly, back]) c.out.destroy()
  })

  it('builds no events before the first client; then the ring records while nobody is connected', async () => {
    const bus = new EventBus(() => {})
    expect(bus.wants('config_reload')).toBe(false)
    const first = client()
    streamEvents(bus, first.out, URL_ALL)
    expect(bus.wants('config_reload')).toBe(true)
    bus.emit('config_reload', { plugins: ['seen'] })
    await flushed()
    first.out.destroy()
    await turn()
    // nobody connected: still listening, for the ring
    expect(bus.wants('config_reload')).toBe(true)
    bus.emit('config_reload', { plugins: ['missed 1'] })
    bus.emit('config_reload', { plugins: ['missed 2'] })
    const back = client()
    // the events still waiting for their flush are in the replay too, once, before the live ones
    streamEvents(bus, back.out, URL_ALL, undefined, first.events().at(-1)!.id)
    bus.emit('config_reload', { plugins: ['live'] })
    await flushed()
    expect(back.events().map((e) => (e.data as { plugins: string[] }).plugins[0])).toEqual([
      'missed 1',
      'missed 2',
      'live',
    ])
    back.out.destroy()
  })

  it('records only the types its clients ask for (?types=, ?exclude= with x-* prefixes), all once one asks for everything', async () => {
    const bus = new EventBus(() => {})
    const dash = client()
    streamEvents(bus, dash.out, new URL(`http://proxy${DASHBOARD_EVENTS}`))
    bus.emit('x-cache_store' as never, { id: 'r0' } as never)
    request(bus, 'r1', 'a')
    await flushed()
    const types = (c: ReturnType<typeof client>) => c.events().map((e) => e.type)
    expect(types(dash)).toEqual(['audit_entry', 'response'])
    // an unfiltered client back from before: what no client read was never recorded (nor made into frames)
    const late = client()
    streamEvents(bus, late.out, URL_ALL, undefined, 0)
    await flushed()
    expect(types(late)).toEqual(['audit_entry', 'response'])
    // from now on everything is recorded: a replay for it has every type
    request(bus, 'r2', 'a')
    await flushed()
    expect(types(late)).toEqual(['audit_entry', 'response', 'request', 'audit_entry', 'response'])
    const again = client()
    streamEvents(bus, again.out, URL_ALL, undefined, 0)
    await flushed()
    expect(types(again)).toEqual(['audit_entry', 'response', 'request', 'audit_entry', 'response'])
    for (const c of [dash, late, again]) c.out.destroy()
  })

  it('builds only the events some listener takes: the core asks before it makes a payload', () => {
    const bus = new EventBus(() => {})
    const dash = client()
    streamEvents(bus, dash.out, new URL(`http://proxy${DASHBOARD_EVENTS}`))
    // `request` too, though the page does not read it: the fold decides there whom it shows
    expect(
      ['request', 'llm_call', 'cache_miss', 'x-cache_store', 'response', 'audit_entry'].map((t) => bus.wants(t)),
    ).toEqual([true, false, false, false, true, true])
    const ids: number[] = []
    const off = bus.on(
      (e) => ids.push(e.id!),
      (t) => t === 'response',
    )
    request(bus, 'r1', 'a')
    bus.emit('llm_call', {} as never)
    request(bus, 'r2', 'a')
    // a listener gets the types it takes only, and only built events are numbered: the llm_call
    // was never made, nor the requests' `request` (asked about: the fold decides there; the page
    // does not read it): audit_entry and response twice, ids 1-4
    expect(ids).toEqual([2, 4])
    off()
    // past the 20 requests a flush it shows, a request's events are not built but its response
    // (for the sums): the core asks with the request's id
    for (let i = 3; i <= 20; i++) expect(bus.wants('request', `r${i}`)).toBe(false)
    expect(bus.wants('request', 'r21')).toBe(false)
    expect(['audit_entry', 'route', 'cache_hit', 'response'].map((t) => bus.wants(t, 'r21'))).toEqual([
      false,
      false,
      false,
      true,
    ])
    expect(['audit_entry', 'response'].map((t) => bus.wants(t, 'r20'))).toEqual([true, true])
    // events that are no request's are not asked about
    expect(bus.wants('quota_warn', 'r21')).toBe(true)
    // a client that reads everything: from then on every type is built
    const all = client()
    streamEvents(bus, all.out, URL_ALL)
    expect(bus.wants('request')).toBe(true)
    for (const c of [dash, all]) c.out.destroy()
  })

  it('?fold=N: past N requests a flush, their responses are summed per team (counters exact), the rest of their events left out; a reader of every event turns it off', async () => {
    const bus = new EventBus(() => {})
    const dash = client()
    streamEvents(bus, dash.out, new URL(`http://proxy${DASHBOARD_EVENTS}`))
    const teamA = client()
    streamEvents(bus, teamA.out, new URL(`http://proxy${DASHBOARD_EVENTS}`), teamFilter('a'))
    const usage = (n: number) => ({ inputTokens: n, outputTokens: 2 * n, cacheReadTokens: n % 3, cacheWriteTokens: 0 })
    const burst = (from: number, n: number) => {
      for (let i = from; i < from + n; i++) {
        const id = `r${i}`
        const hit = i % 5 === 0
        const identity = who(i % 2 ? 'a' : 'b')
        // as the core sends them: `request` first (core/respond.ts announce), where the fold decides
        bus.emit('request', { id, identity, protocol: 'openai', model: 'm', stream: false })
        bus.emit('route' as never, { id, requested: 'm', vendor: 'openai', model: 'm', reason: 'x' } as never)
        if (hit) bus.emit('cache_hit', { id, kind: 'exact', savedTokens: 3, savedUsd: 0.25 })
        bus.emit('response', {
          id,
          status: i % 7 === 0 ? 500 : 200,
          cache: hit ? 'exact' : 'miss',
          latencyMs: 1,
          identity,
          protocol: 'openai',
          stream: false,
          requested: 'm',
          vendor: 'openai',
          model: 'm',
          tokens: 3 * i,
          usage: usage(i),
          costUsd: i / 1000,
          savedUsd: hit ? 0.25 : 0,
          vendorCalled: !hit,
        })
        bus.emit('audit_entry' as never, { id, seq: i } as never)
      }
    }
    burst(0, 100)
    await flushed()
    const got = dash.events()
    // ids unique and increasing: a sum takes the id of a response it stands for
    const ids = got.map((e) => e.id!)
    expect(ids).toEqual([...ids].sort((x, y) => x - y))
    expect(new Set(ids).size).toBe(ids.length)
    const whole = got.filter((e) => e.type === 'response').map((e) => (e.data as { id: string }).id)
    expect(whole).toEqual(Array.from({ length: 20 }, (_, i) => `r${i}`))
    // nothing of a folded request but its sums
    const named = new Set(got.map((e) => (e.data as { id?: string }).id).filter(Boolean))
    expect([...named].every((id) => whole.includes(id!))).toBe(true)
    const sums = got.filter((e) => e.type === 'responses_folded').map((e) => e.data as Record<string, any>)
    expect(sums.map((x) => x.identity.team).sort()).toEqual(['a', 'b'])
    // the sums add up to what the folded responses said, field by field
    const folded = Array.from({ length: 80 }, (_, k) => k + 20)
    const total = (f: (x: Record<string, any>) => number) => sums.reduce((t, x) => t + f(x), 0)
    expect(total((x) => x.requests)).toBe(80)
    expect(total((x) => x.errors)).toBe(folded.filter((i) => i % 7 === 0).length)
    expect(total((x) => x.tokens)).toBe(folded.reduce((t, i) => t + 3 * i, 0))
    expect(total((x) => x.usd)).toBeCloseTo(
      folded.reduce((t, i) => t + i / 1000, 0),
      9,
    )
    expect(total((x) => x.hits.exact)).toBe(folded.filter((i) => i % 5 === 0).length)
    expect(total((x) => x.savedUsd)).toBeCloseTo(0.25 * folded.filter((i) => i % 5 === 0).length, 9)
    expect(total((x) => x.hits.vendor)).toBe(folded.filter((i) => i % 3 > 0).length)
    expect(total((x) => x.lookups)).toBe(80)
    expect(total((x) => x.vendorCalls)).toBe(folded.filter((i) => i % 5 !== 0).length)
    // a team's reader sees its own team's sums only
    const aSums = teamA.events().filter((e) => e.type === 'responses_folded')
    expect(aSums.map((e) => (e.data as Record<string, any>).identity.team)).toEqual(['a'])
    // a flush that holds only folded requests' late events (their audit entries) sends nothing
    // (it once threw in the flush's timer: the process's end)
    const sent = dash.chunks.length
    for (let i = 20; i < 100; i++) bus.emit('audit_entry' as never, { id: `r${i}`, seq: 1000 + i } as never)
    await flushed()
    expect(dash.chunks.length).toBe(sent)
    // a reload gets what was sent, from the ring
    const back = client()
    streamEvents(bus, back.out, new URL(`http://proxy${DASHBOARD_EVENTS}`), undefined, 0)
    await flushed()
    expect(back.events()).toEqual(got)
    // a reader of every event (agentmesh observe) comes: from then on nobody's are folded
    const all = client()
    streamEvents(bus, all.out, URL_ALL)
    burst(100, 50)
    await flushed()
    expect(dash.events().filter((e) => e.type === 'response')).toHaveLength(70)
    expect(all.events().filter((e) => e.type === 'response')).toHaveLength(50)
    for (const c of [dash, teamA, back, all]) c.out.destroy()
  })

  it('a team client that does not read `request` still sees its team only (its requests are learnt from them)', async () => {
    const bus = new EventBus(() => {})
    const a = client()
    streamEvents(bus, a.out, new URL(`http://proxy${DASHBOARD_EVENTS}`), teamFilter('a'))
    request(bus, 'ra', 'a')
    request(bus, 'rb', 'b')
    await flushed()
    expect(a.events().map((e) => `${e.type}:${(e.data as { id: string }).id}`)).toEqual([
      'audit_entry:ra',
      'response:ra',
    ])
    a.out.destroy()
  })

  it("the dashboard's page reads the URL bench:proxy measures (DASHBOARD_EVENTS)", () => {
    const page = readFileSync(new URL('../plugins/dashboard/ui/app.js', import.meta.url), 'utf8')
    expect(page).toContain(`const EVENTS_URL = '${DASHBOARD_EVENTS}'`)
  })
})
