// prompt-cache on bodies of megabytes (issue 11: no request may hold the others up for more than
// about 50 ms). npm run fuzz seed 17107786 case 3335: 172,670 Anthropic tools (7 MB) held the loop
// ~80 ms in addCacheControl: one JSON.stringify of the tools, two counts of 7 MB ropes. A large
// body is now marked in slices (addCacheControlLarge): the same marks and body as in one go, on
// random bodies with a slicer that yields at every step, and blocks under BLOCK_MS of CPU.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { definePlugin } from '../core/plugin.ts'
import { Slicer } from '../core/slicer.ts'
import { createTokenCounter } from '../core/tokens.ts'
import { addCacheControl, addCacheControlLarge, promptCache } from '../plugins/prompt-cache/index.ts'
import { startCoreMockAndProxy, type Proxy } from './helpers/core-harness.ts'
import { longestBlock } from './helpers/longest-block.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'

/**
 * The longest block allowed to the marking of a 7 MB body, as CPU time. The slices are 10 ms; a
 * block also holds one count of the tools' text (the tokenizer's sampled count of a flat 7 MB
 * string: 2-20 ms) and garbage collection. Measured 21-33 ms under a load of 9-10 on 2 cores; in
 * one go (addCacheControl) 126-145 ms.
 */
const BLOCK_MS = 50

// deterministic pseudo-random input, so a failure reproduces
let seed = 3
const rnd = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
  return seed / 4294967296
}
const int = (n: number) => Math.floor(rnd() * n)
const pick = <T>(a: readonly T[]): T => a[int(a.length)]!
const WORDS = 'the worker queue flushed its batch and moved on while a scheduler waited for the lease'.split(' ')
const prose = (n: number) => Array.from({ length: n }, () => pick(WORDS)).join(' ')

/** a slicer due at every look: yields at every pause, and counts them */
class EagerSlicer extends Slicer {
  yields = 0
  constructor() {
    super(0)
  }
  override async yield(): Promise<void> {
    this.yields++
    await super.yield()
  }
}

const tool = (i: number) =>
  pick([
    () => ({ name: `t${i}`, input_schema: {} }),
    () => ({
      name: `tool_${i}`,
      description: prose(int(40)),
      input_schema: { type: 'object', properties: { q: { type: 'string', description: prose(3) } } },
    }),
    () => ({ name: `odd_${i}`, input_schema: { type: 'object' }, extra: [1, null, 'ü €', { d: undefined }] }),
  ])()

function randomBody() {
  const tools = rnd() < 0.15 ? undefined : Array.from({ length: int(rnd() < 0.3 ? 3000 : 60) }, (_, i) => tool(i))
  const system = pick([
    () => undefined,
    () => prose(int(2000)),
    () => [{ type: 'text', text: prose(int(800)) }],
    () => [
      { type: 'text', text: prose(50) },
      { type: 'image', source: {} },
    ],
    () => [{ type: 'text', text: prose(500), cache_control: { type: 'ephemeral' } }],
    // a system prompt of thousands of blocks (its text joined in slices), now and then an image among them
    () =>
      Array.from({ length: 1024 + int(3000) }, (_, i) =>
        i === 900 && rnd() < 0.3 ? { type: 'image', source: {} } : { type: 'text', text: prose(2) },
      ),
    // over the tokenizer's exact length (64,000 characters): a sampled count
    () => (rnd() < 0.5 ? novel(1000 + int(150_000)) : [{ type: 'text', text: novel(60_000 + int(100_000)) }]),
  ])()
  const messages: any[] = [{ role: 'user', content: prose(10) }]
  if (rnd() < 0.3)
    messages.push({
      role: 'assistant',
      content: Array.from({ length: 1 + int(600) }, () => ({ type: 'text', text: prose(3) })),
    })
  if (rnd() < 0.1) messages.push({ role: 'user', content: [{ type: 'text', text: 'x', cache_control: {} }] })
  if (tools && tools.length && rnd() < 0.05) (tools[int(tools.length)] as any).cache_control = { type: 'ephemeral' }
  return {
    model: 'claude-sonnet-4-5',
    max_tokens: 64,
    ...(tools ? { tools } : {}),
    ...(system ? { system } : {}),
    messages,
  }
}

const tokens = createTokenCounter()
const count = (t: string) => tokens.count(t, 'claude-sonnet-4-5')

/** words of random letters: text the tokenizer has no merges cached for (2-4 µs a character) */
const novel = (chars: number) => {
  const words: string[] = []
  for (let n = 0; n < chars; ) {
    const w = Array.from({ length: 2 + int(8) }, () => String.fromCharCode(97 + int(26))).join('')
    words.push(w)
    n += w.length + 1
  }
  return words.join(' ')
}

describe('prompt-cache: a large body is marked as in one go', () => {
  it('random bodies, every option, a slicer yielding at every step', async () => {
    let marked = 0
    let yields = 0
    for (let round = 0; round < 80; round++) {
      const body = randomBody()
      const opts = {
        // thresholds around the prefixes' sizes, so that both answers come up
        minTokens: pick([0, 1024, int(20_000), int(200_000)]),
        tools: rnd() < 0.8,
        system: rnd() < 0.8,
        ttl: pick([undefined, '5m', '1h'] as const),
      }
      const one = structuredClone(body)
      const sliced = structuredClone(body)
      const originalTools = sliced.tools
      // counters of their own: a count cached by one path would spare the other its work
      const a = createTokenCounter()
      const b = createTokenCounter()
      const model = pick(['claude-sonnet-4-5', 'claude-opus-4-7'])
      const want = addCacheControl(one, (t) => a.count(t, model), opts)
      const slicer = new EagerSlicer()
      // the plugin's count for a large body: countAsync, the tokenizer's work in slices
      const got = await addCacheControlLarge(sliced, (t) => b.countAsync!(t, model), opts, slicer)
      expect(got, `round ${round}`).toEqual(want)
      expect(JSON.stringify(sliced), `round ${round}`).toBe(JSON.stringify(one))
      // the client's own arrays are never changed in place
      if (originalTools) expect(JSON.stringify(originalTools)).toBe(JSON.stringify(body.tools))
      marked += want.length
      yields += slicer.yields
    }
    expect(marked).toBeGreaterThan(20)
    expect(yields).toBeGreaterThan(500)
  })
})

describe("countAsync: count's number, the tokenizer's work in slices", () => {
  it('random texts (short, counted whole, sampled; novel words and repeats), every family', async () => {
    for (let round = 0; round < 30; round++) {
      const text = pick([
        () => prose(int(50)),
        () => novel(int(70_000)),
        () => novel(64_001 + int(200_000)),
        () => `${prose(20)}${'x'.repeat(int(5000))} ${novel(int(100_000))}`,
      ])()
      const model = pick(['claude-sonnet-4-5', 'claude-opus-4-7', 'gpt-4o', 'gpt-4', 'gemini-2.5-flash'])
      const want = createTokenCounter().count(text, model)
      const counter = createTokenCounter()
      expect(await counter.countAsync!(text, model), `round ${round}`).toBe(want)
      // and again, from the counter's cache
      expect(await counter.countAsync!(text, model), `round ${round}`).toBe(want)
    }
  })
})

// npm run fuzz seed 17107786 case 3335: 172,670 copies of one tool (7 MB)
const fuzzBody = () => ({
  model: 'claude-sonnet-4-5',
  max_tokens: 64,
  system: [{ type: 'text', text: `You are terse. ${prose(400)}` }],
  tools: Array.from({ length: 172_670 }, () => ({ name: 'get_weather', input_schema: {} })),
  messages: [{ role: 'user', content: 'Hi' }],
})

describe('7 MB of tools: the marking works in blocks of under BLOCK_MS of CPU', () => {
  it('172,670 tools (fuzz case 3335), the function', async () => {
    for (const warm of [true, false]) {
      const body = fuzzBody()
      const { value, maxMs } = await longestBlock(() =>
        addCacheControlLarge(body, count, { minTokens: 1024, tools: true, system: true }, new Slicer(10)),
      )
      if (warm) continue
      console.log(`172,670 tools: longest block of addCacheControlLarge ${maxMs.toFixed(0)} ms (CPU)`)
      expect(value).toEqual(['tools', 'system'])
      expect(maxMs).toBeLessThan(BLOCK_MS)
    }
  }, 60_000)

  describe('through a proxy', () => {
    let mock: MockUpstream
    let proxy: Proxy
    const marks = new Map<string, number>()
    // a mark before and after the plugin's hook, each giving the loop a turn, so no block spans more
    const mark = (name: string) =>
      definePlugin({
        name: `mark-${name}`,
        enforce: 'post',
        hooks: {
          async route() {
            marks.set(name, performance.now())
            await new Promise((r) => setImmediate(r))
            marks.set(`${name}+`, performance.now())
          },
        },
      })
    beforeAll(async () => {
      ;({ mock, proxy } = await startCoreMockAndProxy({
        config: {
          limits: { bodyBytes: 32 * 1024 * 1024 },
          plugins: [mark('start'), promptCache(), mark('end')],
        },
      }))
    })
    afterAll(async () => {
      await proxy?.close()
      await mock?.close()
    })

    /** the body sent through the proxy; what went upstream and the hook's longest block, as CPU time */
    async function send(body: unknown): Promise<{ sent: any; longest: number }> {
      const gaps: Array<[number, number, number]> = []
      let last = performance.now()
      let lastCpu = process.cpuUsage()
      let on = true
      const tick = () => {
        const now = performance.now()
        const cpu = process.cpuUsage(lastCpu)
        if (now - last > 2) gaps.push([last, now, Math.min(now - last, (cpu.user + cpu.system) / 1000)])
        last = now
        lastCpu = process.cpuUsage()
        if (on) setImmediate(tick)
      }
      marks.clear()
      mock.received.length = 0
      setImmediate(tick)
      const r = await fetch(`${proxy.url}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': 'k', 'anthropic-version': '2023-06-01' },
        body: JSON.stringify(body),
      })
      await r.text()
      on = false
      expect(r.status).toBe(200)
      // the longest gap between ticks that overlaps the hook's run
      const from = marks.get('start+')!
      const to = marks.get('end')!
      let longest = 0
      for (const [a, b, cpu] of gaps) if (Math.min(b, to) - Math.max(a, from) > 0) longest = Math.max(longest, cpu)
      return { sent: JSON.parse(mock.received.at(-1)!.raw), longest }
    }

    it('172,670 tools (fuzz case 3335): marked upstream; the hook in blocks under BLOCK_MS', async () => {
      for (const warm of [true, false]) {
        const { sent, longest } = await send(fuzzBody())
        expect(sent.tools.at(-1).cache_control).toEqual({ type: 'ephemeral' })
        expect(sent.system.at(-1).cache_control).toEqual({ type: 'ephemeral' })
        if (warm) continue
        console.log(`172,670 tools through the proxy: longest block of prompt-cache ${longest.toFixed(0)} ms (CPU)`)
        expect(longest).toBeLessThan(BLOCK_MS)
      }
    }, 120_000)

    // a system prompt of 150,000 blocks: its text was joined in one go (map and join: 20-40 ms) and
    // copied once more to count it behind the tools' text (none here). Measured 33-48 ms of CPU in
    // the longest block before, 13-14 after (a load of 4): held to SYSTEM_BLOCK_MS, measured up to
    // twice (the first request compiles the paths)
    it('a system prompt of 150,000 text blocks: marked upstream; the hook in blocks under SYSTEM_BLOCK_MS', async () => {
      const SYSTEM_BLOCK_MS = 25
      let best = Number.POSITIVE_INFINITY
      for (let run = 0; run < 3 && !(best < SYSTEM_BLOCK_MS); run++) {
        const system = Array.from({ length: 150_000 }, (_, i) => ({ type: 'text', text: `rule ${i}: ${prose(3)}` }))
        const { sent, longest } = await send({
          model: 'claude-sonnet-4-5',
          max_tokens: 64,
          system,
          messages: [{ role: 'user', content: 'Hi' }],
        })
        expect(sent.system.at(-1).cache_control).toEqual({ type: 'ephemeral' })
        expect(sent.system.length).toBe(150_000)
        if (run === 0) continue
        console.log(
          `150,000 system blocks through the proxy: longest block of prompt-cache ${longest.toFixed(0)} ms (CPU)`,
        )
        best = Math.min(best, longest)
      }
      expect(best).toBeLessThan(SYSTEM_BLOCK_MS)
    }, 120_000)

    // the count of one flat 7 MB text of novel words: 16 windows of 4,000 characters tokenized. The
    // core's estimate counted the tools' text and the system prompt, each by windows of its own,
    // so the windows of the two joined (the prefix the system's mark would cache) are novel text
    // to the tokenizer: 55-120 ms of CPU in one go (count); countAsync gives the loop back inside it
    it('3.5 MB of tools and a 3.5 MB system prompt of novel words: marked upstream; the hook in blocks under BLOCK_MS', async () => {
      for (const warm of [true, false]) {
        // new text each time: a count cached by the first request would spare the second its work
        const system = novel(3_500_000)
        const tools = Array.from({ length: 350 }, (_, i) => ({
          name: `tool_${i}`,
          description: novel(10_000),
          input_schema: { type: 'object' },
        }))
        const { sent, longest } = await send({
          model: 'claude-sonnet-4-5',
          max_tokens: 64,
          tools,
          system,
          messages: [{ role: 'user', content: 'Hi' }],
        })
        expect(sent.tools.at(-1).cache_control).toEqual({ type: 'ephemeral' })
        expect(sent.system).toEqual([{ type: 'text', text: system, cache_control: { type: 'ephemeral' } }])
        if (warm) continue
        console.log(
          `3.5 + 3.5 MB of novel words through the proxy: longest block of prompt-cache ${longest.toFixed(0)} ms (CPU)`,
        )
        expect(longest).toBeLessThan(BLOCK_MS)
      }
    }, 120_000)
  })
})
