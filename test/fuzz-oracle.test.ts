// The fuzzer's stall oracle judged on the proxy's own work: the CPU it spent in its longest
// event-loop block. A child whose plugin busy-waits 200 ms in one go is a stall (confirmed by the
// replay); one that sleeps asynchronously is not; nor is one the OS stopped for 300 ms while it did
// 200 ms of work in short slices (the earlier oracle, delay over 100 ms and 100 ms of CPU in the
// case, counted that one). The plugin is test/fuzz/probe.ts, loaded with FUZZ_STALL_PROBE=1.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateCase, seedCase, type FuzzCase } from './fuzz/cases.ts'
import type { RawResponse } from './fuzz/client.ts'
import { Fuzzer, stallOf } from './fuzz/fuzzer.ts'
import { checkResponse } from './fuzz/oracle.ts'
import { SEEDS } from './fuzz/seeds.ts'

const plain = SEEDS.find((s) => s.name === 'openai.plain')!
let next = 0
/** a plain chat request to the solo proxy (the mock upstream answers it) with the probe's headers */
function probeCase(headers: Array<[string, string]>): FuzzCase {
  const c = seedCase(plain, 'mock')
  // a team of its own each time: no exact-cache hit skips the plugin
  const base = c.headers.filter(([k]) => k !== 'x-agentmesh-team')
  return { ...c, index: next++, headers: [...base, ['x-agentmesh-team', `probe-${next}`], ...headers] }
}

const stallKinds = (fz: Fuzzer) => [...fz.failures.values()].filter((f) => f.kind.includes('event-loop stall'))

let fz: Fuzzer
describe('stall oracle', () => {
  beforeAll(async () => {
    fz = new Fuzzer({ seed: 0, childEnv: { FUZZ_STALL_PROBE: '1' } })
    await fz.start()
  }, 120_000)

  it('counts the CPU of the longest block, with both figures in the detail', () => {
    expect(stallOf({ blockMs: 900, blockCpuMs: 20 }, 100)).toBeUndefined()
    expect(stallOf({ blockMs: 90, blockCpuMs: 90 }, 100)).toBeUndefined()
    expect(stallOf({ blockMs: 260, blockCpuMs: 210 }, 100)).toBe('longest block 260 ms, 210 ms of CPU in it')
  })

  it('an asynchronous 200 ms sleep is not a stall', async () => {
    expect(await fz.step(probeCase([['x-fuzz-sleep-ms', '200']]))).toBe(true)
    expect(stallKinds(fz)).toEqual([])
  }, 60_000)

  it('200 ms of work in 10 ms slices while the OS stops the process for 300 ms is not a stall', async () => {
    const c = probeCase([
      ['x-fuzz-descheduled-ms', '300'],
      ['x-fuzz-busy-ms', '10'],
      ['x-fuzz-slices', '20'],
    ])
    expect(await fz.step(c)).toBe(true)
    expect(stallKinds(fz)).toEqual([])
  }, 60_000)

  it('a 200 ms busy wait in one go is a stall, confirmed by replaying it alone, with both figures', async () => {
    expect(await fz.step(probeCase([['x-fuzz-busy-ms', '200']]))).toBe(true)
    const [stall, ...more] = stallKinds(fz)
    expect(more).toEqual([])
    expect(stall!.kind).toBe('event-loop stall over 100 ms on a small request')
    expect(stall!.confirmed).toBe(true)
    const [, delay, cpu] = /^longest block (\d+) ms, (\d+) ms of CPU in it$/.exec(stall!.detail)!.map(Number)
    expect(cpu).toBeGreaterThan(100)
    expect(delay).toBeGreaterThanOrEqual(cpu! - 20)
    expect(fz.stalls.map((s) => s.blockCpuMs)).toEqual([expect.any(Number)])
    expect(fz.stalls[0]!.blockCpuMs).toBeGreaterThan(100)
    // replayed on a fresh proxy (warm caches on the same one hide a stall the second time)
    expect(fz.stalls[0]!.confirmed).toBe(true)
  }, 60_000)
})

// Google's REST API: streamGenerateContent streams SSE with alt=sse, else one JSON array of the
// chunks (application/json). The proxy renders that array itself on a cache hit and the demo
// answers it; a miss relays the vendor's transport (the mock answers SSE whatever the query).
describe('Gemini stream transport', () => {
  const gemini = SEEDS.find((s) => s.name === 'gemini.stream')!
  const chunk = (text: string, finish?: string) => ({
    candidates: [
      { content: { role: 'model', parts: [{ text }] }, index: 0, ...(finish ? { finishReason: finish } : {}) },
    ],
  })
  const array = JSON.stringify([chunk('mock '), chunk('answer', 'STOP')])
  const sse = `data: ${JSON.stringify(chunk('mock '))}\r\n\r\ndata: ${JSON.stringify(chunk('answer', 'STOP'))}\r\n\r\n`
  const raw = (type: string, body: string, cache = 'miss'): RawResponse => ({
    status: 200,
    headers: new Map([
      ['content-type', type],
      ['x-agentmesh-request-id', 'r'],
      ['x-agentmesh-cache', cache],
    ]),
    body: Buffer.from(body),
    framing: 'content-length',
    complete: true,
    empty: false,
    timedOut: false,
    aborted: false,
    ms: 1,
  })
  const gcase = (query: string, target: 'mock' | 'demo'): FuzzCase => ({
    ...seedCase(gemini, target),
    path: gemini.path.replace(/\?.*$/, '') + query,
  })
  const kinds = (c: FuzzCase, r: RawResponse) => checkResponse(c, r).map((f) => f.kind)

  it.each(['?alt=json', '', '?alt=%'])('%s: a JSON array is right (the demo, a hit); SSE from the demo is not', (q) => {
    expect(kinds(gcase(q, 'demo'), raw('application/json', array))).toEqual([])
    expect(kinds(gcase(q, 'mock'), raw('application/json', array, 'exact'))).toEqual([])
    // a miss relays the mock's SSE
    expect(kinds(gcase(q, 'mock'), raw('text/event-stream', sse))).toEqual([])
    expect(kinds(gcase(q, 'demo'), raw('text/event-stream', sse))).toEqual([
      'stream: gemini without alt=sse answered something other than a JSON array',
    ])
    expect(kinds(gcase(q, 'demo'), raw('application/json', JSON.stringify([chunk('cut')])))).toEqual([
      'stream: gemini without alt=sse array ends without its final chunk',
    ])
  })

  it('alt=sse: SSE is right, a JSON array is not', () => {
    expect(kinds(gcase('?alt=sse', 'demo'), raw('text/event-stream', sse))).toEqual([])
    expect(kinds(gcase('?alt=sse', 'mock'), raw('application/json', array, 'exact'))).toEqual([
      'stream: gemini streamed 200 is not text/event-stream',
    ])
  })

  it('case 2549 of seed 1039025087 (?alt=json) on both proxies, the second time a cache hit: no failure', async () => {
    const c = generateCase(1039025087, 2549)
    expect(c.path).toMatch(/:streamGenerateContent\?alt=json$/)
    for (const target of ['mock', 'demo'] as const) {
      for (let i = 0; i < 2; i++) expect(await fz.step({ ...c, target, index: next++ })).toBe(true)
    }
    expect([...fz.failures.values()].filter((f) => !f.kind.includes('event-loop stall'))).toEqual([])
  }, 60_000)
})

// The mock upstream echoes the prompt about a word per event: told to pause 18 ms between events,
// a prompt of 20,000 words streams for six minutes, and the case's 20 s limit is the mock's doing
// (case 2059 of seed 1661950144). A short prompt at that pace is a hang of the proxy's.
describe('hangs', () => {
  const timedOut = (status: number): RawResponse => ({
    status,
    headers: new Map([['content-type', 'text/event-stream']]),
    body: Buffer.alloc(0),
    framing: 'chunked',
    complete: false,
    empty: false,
    timedOut: true,
    aborted: false,
    ms: 20_000,
  })
  it('a paced mock stream longer than the case limit is not counted; a short one is a hang', () => {
    const c = generateCase(1661950144, 2059)
    expect(c.upstream.eventGapMs).toBe(18)
    expect(checkResponse(c, timedOut(200)).map((f) => f.kind)).toEqual([
      "(not counted) hang: the mock upstream's paced stream outlasts the case: POST /v1/messages",
    ])
    // no answer at all: the mock sends its head at once, so that one is the proxy's
    expect(checkResponse(c, timedOut(0)).map((f) => f.kind)).toEqual(['hang: POST /v1/messages'])
    const short = {
      ...c,
      body: Buffer.from(
        JSON.stringify({
          model: 'claude-haiku-4-5',
          max_tokens: 9,
          stream: true,
          messages: [{ role: 'user', content: 'a b c' }],
        }),
      ),
    }
    expect(checkResponse(short, timedOut(200)).map((f) => f.kind)).toEqual(['hang: POST /v1/messages'])
  })
})

afterAll(() => fz?.stop())
