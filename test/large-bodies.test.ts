// Large request bodies (issue 11 item 2): 5 and 10 MB, one huge string and tens of thousands of
// short turns, through a real proxy (the fuzzer's child: solo preset, fs storage, quota, exact
// cache) while /agentmesh/health is probed. The proxy's child measures its longest event-loop
// block and the CPU it spent in it (test/fuzz/stats.ts): on a shared machine a loop the OS did not
// schedule is late with little CPU spent, a block of the proxy's own work is late and busy.
// An answer of 5 MB the same way (read, relayed, stored in the exact cache on fs, then a hit). And
// the core's sliced steps and the compression parts that made one such body hold the loop for
// 0.5-1 s, checked alone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { stringifySliced, utf8Sliced } from '../core/json-sliced.ts'
import { parseBodySliced } from '../core/pipeline.ts'
import { protocols } from '../core/protocols/index.ts'
import { Slicer } from '../core/slicer.ts'
import { cacheKey, cacheKeyAsync } from '../plugins/exact-cache/key.ts'
import { compressBody, createJournal } from '../plugins/compression/compress.ts'
import { resolveOptions } from '../plugins/compression/options.ts'
import { alternationCuts, breaksAlternation, turnsOf } from '../plugins/compression/units.ts'
import { viewOf } from '../plugins/compression/view.ts'
import type { ProxyChild } from './fuzz/child.ts'
import { sendRaw } from './fuzz/client.ts'
import { longestBlock } from './helpers/longest-block.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'
import { startChildAndMock, stopChildAndMock } from './helpers/proxy-child.ts'

/** the fuzzer's stall limit (npm run fuzz): one block of the proxy's own work over this fails */
const LIMIT_MS = 100
/**
 * Bodies of 1-10 MB (issue 11 item 2), with every part of the core's path and the plugins sliced:
 * 32-54 ms of CPU in the longest block at 10 MB over the last three runs (this machine, 2 cores,
 * load 3-9; 18-48 at 5 MB), against 183-214 ms at 10 MB of turns and 92-110 at 5 MB at the start.
 * Seven runs before the body read kept ASCII off the heap gave 41-106 at 10 MB: what such blocks
 * hold, seen with CPU profiles of the proxy, is mostly garbage collection (scavenges of 10-100 ms
 * copying the tens of thousands of objects of a parsed body; the meter counts the GC's helper
 * threads too) and copies of a whole 10 MB text. Held to the fuzzer's own stall limit.
 */
const BODY_LIMIT_MS = LIMIT_MS
/**
 * Answers of 5 MB: 54-98 ms of CPU stored and 67-122 as a hit over eight runs. Not the core's
 * parse or the cache's: the core's reading and writing of the answer (core/respond.ts readAnswer,
 * render and send, each in one go) and the audit entry's hash of it (plugins/audit,
 * canonicalSha256 in one go). Held to 150 (the most measured, with a margin for a busier machine).
 */
const ANSWER_LIMIT_MS = 150

const WORDS = 'the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches'.split(' ')
function text(n: number, seed: number): string {
  let s = ''
  let i = seed
  while (s.length < n) s += `${WORDS[(i = (i * 7 + 3) % WORDS.length)]} `
  return s.slice(0, n)
}

/** one huge string; turns whose roles alternate; turns all from the user (no cut keeps roles alternating) */
type Shape = 'string' | 'turns' | 'user-turns'
function messages(shape: Shape, bytes: number): Array<{ role: string; content: string }> {
  if (shape === 'string') return [{ role: 'user', content: text(bytes, 1) }]
  const msgs = []
  for (let i = 0; i < Math.floor(bytes / 140); i++)
    msgs.push({ role: shape === 'turns' && i % 2 ? 'assistant' : 'user', content: text(100, i) })
  if (msgs.at(-1)!.role !== 'user') msgs.push({ role: 'user', content: 'and?' })
  return msgs
}

function request(port: number, protocol: 'openai' | 'anthropic' | 'count', shape: Shape, mb: number, tag = ''): Buffer {
  const msgs = messages(shape, mb * 1_000_000)
  const [path, body] =
    protocol === 'openai'
      ? ['/v1/chat/completions', { model: 'gpt-4o-mini', messages: msgs }]
      : protocol === 'count'
        ? ['/v1/messages/count_tokens', { model: 'claude-3-5-haiku-latest', messages: msgs }]
        : ['/v1/messages', { model: 'claude-3-5-haiku-latest', max_tokens: 64, messages: msgs }]
  const bytes = Buffer.from(JSON.stringify(body))
  const head =
    `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\n` +
    `content-length: ${bytes.length}\r\nx-agentmesh-team: large-${shape}-${mb}${tag}\r\nconnection: close\r\n\r\n`
  return Buffer.concat([Buffer.from(head), bytes])
}

const healthRequest = (port: number) =>
  Buffer.from(`GET /agentmesh/health HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nconnection: close\r\n\r\n`)

describe('large bodies through the proxy', () => {
  let mock: MockUpstream
  let child: ProxyChild
  let dataDir: string
  let port: number

  beforeAll(async () => {
    // the mock answers at once: echoing a 10 MB prompt would stall this process, not the proxy
    ;({ mock, child, port, dataDir } = await startChildAndMock('large', undefined, { status: 503 }))
    // the first request of each kind compiles code (compression's included: 1 MB overflows the window)
    for (const p of ['openai', 'anthropic'] as const)
      for (const shape of ['string', 'turns'] as const)
        await sendRaw(port, request(port, p, shape, 1), { timeoutMs: 30_000 })
  }, 120_000)

  afterAll(() => stopChildAndMock({ mock, child, dataDir }))

  const cases = [
    ...([1, 5, 10] as const).flatMap((mb) =>
      (['string', 'turns'] as const).flatMap((shape) =>
        (['openai', 'anthropic'] as const).map((p) => ({ shape, mb, p })),
      ),
    ),
    { shape: 'user-turns' as const, mb: 5 as const, p: 'anthropic' as const },
    { shape: 'user-turns' as const, mb: 10 as const, p: 'anthropic' as const },
    // Anthropic's count_tokens: the vendor's count is asked for, the local estimate answers
    { shape: 'turns' as const, mb: 5 as const, p: 'count' as const },
  ]
  it.each(cases)(
    '$mb MB, $shape, $p: answered, health answers meanwhile, no long block',
    async ({ shape, mb, p }) => {
      const bytes = request(port, p, shape, mb)
      await child.stats({ gc: true, reset: true })
      const call = sendRaw(port, bytes, { timeoutMs: 60_000 })
      // health asked while the big request is being read and handled
      const health: number[] = []
      let done = false
      void call.then(() => (done = true))
      while (!done) {
        const h = await sendRaw(port, healthRequest(port), { timeoutMs: 30_000 })
        health.push(h.status)
        await new Promise((r) => setTimeout(r, 20))
      }
      const r = await call
      await new Promise((r) => setTimeout(r, 300)) // afterResponse (cache store, audit) runs after the answer
      const s = await child.stats()
      // the mock's 503 relayed: the proxy read, checked and forwarded the whole body; count_tokens
      // falls back to the local estimate when the vendor's count fails
      if (p === 'count') {
        expect(r.status).toBe(200)
        expect(JSON.parse(r.body.toString()).input_tokens).toBeGreaterThan(500_000)
      } else expect(r.status, r.body.toString().slice(0, 300)).toBe(503)
      expect(health.length).toBeGreaterThan(0)
      expect(health.every((x) => x === 200)).toBe(true)
      // the figures, for the README and for setting the bounds
      console.log(
        `large body ${mb} MB ${shape} ${p}: longest block ${s.elMaxMs.toFixed(0)} ms, ${s.blockCpuMs.toFixed(0)} ms of CPU in it`,
      )
      expect(
        s.blockCpuMs,
        `longest block ${s.elMaxMs.toFixed(0)} ms, ${s.blockCpuMs.toFixed(0)} ms of CPU in it`,
      ).toBeLessThanOrEqual(BODY_LIMIT_MS)
    },
    120_000,
  )
})

// --- an answer of megabytes: read, cached (exact cache on fs storage), audited, then a hit ------

describe('a large answer through the proxy', () => {
  let mock: MockUpstream
  let child: ProxyChild
  let dataDir: string
  let port: number
  beforeAll(async () => {
    ;({ mock, child, port, dataDir } = await startChildAndMock('large-answer'))
  }, 120_000)
  afterAll(() => stopChildAndMock({ mock, child, dataDir }))

  const answer = (p: 'openai' | 'anthropic', mb: number) => {
    const t = text(mb * 1_000_000, 3)
    const body =
      p === 'openai'
        ? {
            id: 'chatcmpl-large',
            object: 'chat.completion',
            model: 'gpt-4o-mini',
            choices: [{ index: 0, message: { role: 'assistant', content: t }, finish_reason: 'stop' }],
            usage: { prompt_tokens: 10, completion_tokens: 1_000_000, total_tokens: 1_000_010 },
          }
        : {
            id: 'msg_large',
            type: 'message',
            role: 'assistant',
            model: 'claude-3-5-haiku-latest',
            content: [{ type: 'text', text: t }],
            stop_reason: 'end_turn',
            stop_sequence: null,
            usage: { input_tokens: 10, output_tokens: 1_000_000 },
          }
    return { body: JSON.stringify(body), contentType: 'application/json' }
  }

  /** one request while health is probed: its answer and the longest block's CPU */
  async function measured(bytes: Buffer) {
    await child.stats({ gc: true, reset: true })
    const call = sendRaw(port, bytes, { timeoutMs: 60_000 })
    let done = false
    void call.then(() => (done = true))
    const health: number[] = []
    while (!done) {
      health.push((await sendRaw(port, healthRequest(port), { timeoutMs: 30_000 })).status)
      await new Promise((r) => setTimeout(r, 20))
    }
    const r = await call
    await new Promise((r) => setTimeout(r, 500)) // the cache store and the audit entry run after the answer
    const s = await child.stats()
    expect(health.every((x) => x === 200)).toBe(true)
    return { r, s }
  }

  it.each(['anthropic', 'openai'] as const)(
    '5 MB answer, %s: relayed and stored, then a hit; no long block',
    async (p) => {
      // a warm-up of 1 MB compiles the paths (another prompt: not the entry measured below)
      mock.behaviour.okBody = answer(p, 1)
      await sendRaw(port, request(port, p, 'string', 0.001, '-warm'), { timeoutMs: 30_000 })
      mock.behaviour.okBody = answer(p, 5)
      const bytes = request(port, p, 'string', 0.001)
      const miss = await measured(bytes)
      delete mock.behaviour.okBody
      expect(miss.r.status).toBe(200)
      expect(miss.r.headers.get('x-agentmesh-cache')).toBe('miss')
      const hit = await measured(bytes)
      expect(hit.r.status).toBe(200)
      expect(hit.r.headers.get('x-agentmesh-cache')).toBe('exact')
      expect(hit.r.body.length).toBeGreaterThan(5_000_000)
      for (const [what, m] of [
        ['miss', miss],
        ['hit', hit],
      ] as const) {
        console.log(
          `large answer 5 MB ${p} ${what}: longest block ${m.s.elMaxMs.toFixed(0)} ms, ${m.s.blockCpuMs.toFixed(0)} ms of CPU in it`,
        )
        expect(m.s.blockCpuMs, `${what}: ${m.s.blockCpuMs.toFixed(0)} ms of CPU in one block`).toBeLessThanOrEqual(
          ANSWER_LIMIT_MS,
        )
      }
    },
    120_000,
  )
})

// --- the core's sliced steps alone: parse, the adapter's parse, the exact cache's key, upstream bytes

/**
 * The longest block allowed to each of the core's sliced steps on a 10 MB body, measured alone:
 * the JSON parse (31-90 ms of CPU over eight runs, against 76-130 in one go), the protocol adapter's
 * parse (10-22 over five runs, against 45-75), the exact cache's key (13-49, against 140-280) and the bytes for
 * the vendor (12-29 over five runs; JSON.stringify and the UTF-8 encoding in one go took 30-200 ms each). The
 * meter counts the CPU of the garbage collector's helper threads, and a collection of the parsed
 * body lands in one of these blocks now and then (up to 90 ms for the parse).
 */
const PARSE_HASH_LIMIT_MS = 120
/** compression's steps on 35,000 turns (plugins/compression, checked below) */
const COMPRESSION_LIMIT_MS = 150

describe("the core's parse, the adapter's, the exact-cache key and the upstream bytes on 10 MB bodies", () => {
  it.each(['string', 'turns', 'user-turns'] as const)(
    '%s: the same body, prompt, key and bytes as in one go, in blocks of under PARSE_HASH_LIMIT_MS each',
    async (shape) => {
      const raw = JSON.stringify({
        model: 'claude-3-5-haiku-latest',
        max_tokens: 64,
        messages: messages(shape, 10_000_000),
      })
      const ctx = (body: unknown) =>
        ({
          protocol: 'anthropic',
          identity: { team: 't', user: 'u' },
          request: { headers: new Headers(), rawBody: raw },
          prompt: protocols.anthropic.parse(body, {}),
        }) as any
      // warm the code paths (the first run compiles them)
      const warm = JSON.stringify({ model: 'm', max_tokens: 1, messages: messages(shape, 400_000) })
      await cacheKeyAsync(ctx(await parseBodySliced(warm)), 'global')
      const parse = await longestBlock(() => parseBodySliced(raw))
      expect(JSON.stringify(parse.value)).toBe(raw)
      const c = ctx(parse.value)
      await new Promise((r) => setImmediate(r))
      const prompt = await longestBlock(() => protocols.anthropic.parseSliced(parse.value, {}, new Slicer(10)))
      expect(prompt.value).toEqual(c.prompt)
      await new Promise((r) => setImmediate(r))
      const key = await longestBlock(() => cacheKeyAsync(c, 'global'))
      expect(key.value).toBe(cacheKey(c, 'global'))
      await new Promise((r) => setImmediate(r))
      // the body for the vendor when a plugin changed it: JSON.stringify's bytes, made in slices
      const up = await longestBlock(async () => {
        const slicer = new Slicer(10)
        return utf8Sliced((await stringifySliced(parse.value, slicer))!, slicer)
      })
      expect(Buffer.concat(up.value).equals(Buffer.from(raw))).toBe(true)
      console.log(
        `10 MB ${shape}: longest block of the parse ${parse.maxMs.toFixed(0)} ms, the adapter's ${prompt.maxMs.toFixed(0)} ms, the key ${key.maxMs.toFixed(0)} ms, the upstream bytes ${up.maxMs.toFixed(0)} ms (CPU)`,
      )
      for (const m of [parse, prompt, key, up]) expect(m.maxMs).toBeLessThan(PARSE_HASH_LIMIT_MS)
    },
    60_000,
  )
})

// --- compression on a transcript of tens of thousands of turns ---------------------------------

function anthropicBody(turns: number, alternate: boolean) {
  const msgs = []
  for (let i = 0; i < turns; i++) msgs.push({ role: alternate && i % 2 ? 'assistant' : 'user', content: text(100, i) })
  if (msgs.at(-1)!.role !== 'user') msgs.push({ role: 'user', content: 'and?' })
  return { model: 'claude-3-5-haiku-latest', max_tokens: 64, messages: msgs }
}

describe('compression on huge transcripts', () => {
  it('the cut search gives what breaksAlternation gives, for every cut', () => {
    // roles at random, system messages and tool turns among them
    let seed = 7
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
    for (let round = 0; round < 40; round++) {
      const msgs = []
      for (let i = 0; i < 60; i++) {
        const x = rnd()
        if (x < 0.1) msgs.push({ role: 'system', content: 's' })
        else msgs.push({ role: x < 0.55 ? 'user' : 'assistant', content: `m${i}` })
      }
      msgs.push({ role: 'user', content: 'last' })
      const body = { messages: msgs }
      const turns = turnsOf(viewOf('openai', body)!)
      const cand = turns.flatMap((t, i) => (!t.pinned && t.kind !== 'system' ? [i] : []))
      const fast = alternationCuts(turns, cand)
      for (let n = 0; n <= cand.length; n++) {
        const drop = new Set(cand.slice(0, n))
        const kept = turns.map((_, i) => i).filter((i) => !drop.has(i))
        expect(fast(n), `round ${round}, cut ${n}`).toBe(breaksAlternation(turns, kept))
      }
    }
  })

  it('a body changed half way is put back as it came when compression fails', async () => {
    const body = anthropicBody(3000, true)
    ;(body.messages[10] as any).content = `\`\`\`json\n{ "a":   1,\n  "b": [ 1, 2 ] }\n\`\`\``
    const original = structuredClone(body)
    const journal = createJournal(body)
    let measured = 0
    await expect(
      compressBody({
        protocol: 'anthropic',
        body,
        before: 1_000_000,
        target: 1000,
        // the first measure (after the lossless pass rewrote a message) works, the next fails
        measure: () => {
          if (measured++ > 0) throw new Error('measure failed')
          return 900_000
        },
        count: (t) => Math.ceil(t.length / 4),
        strategies: resolveOptions({}).strategies,
        journal,
      }),
    ).rejects.toThrow('measure failed')
    expect(body).not.toEqual(original)
    journal.restore()
    expect(body).toEqual(original)
  })

  // The steps measured 40-100 ms of CPU alone and 113-114 ms in a full `npm test` run (other test
  // files in parallel; the meter counts the GC helper threads' CPU too), against 299 and 929 ms in
  // one go before: held to 150 ms, so the test guards against a return to one block
  // without failing on a busy machine
  it.each([true, false])(
    '35,000 turns (5 MB, roles alternating: %s) are compressed in steps of under 150 ms each',
    async (alternate) => {
      const body = anthropicBody(35_000, alternate)
      const { value, maxMs } = await longestBlock(() =>
        compressBody({
          protocol: 'anthropic',
          body,
          before: 2_000_000,
          target: 120_000,
          // about 30 tokens a message: the proxy's own measure is the core's, not under test here
          measure: (b) => b.messages.length * 30,
          count: (t) => Math.ceil(t.length / 4),
          strategies: resolveOptions({}).strategies,
          mustFit: true,
          journal: createJournal(body),
        }),
      )
      if (alternate) expect(value.applied).toContain('old-turns')
      expect(maxMs).toBeLessThan(COMPRESSION_LIMIT_MS)
    },
    60_000,
  )
})
