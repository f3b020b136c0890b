// Each protocol adapter's parseSliced (a body of tens of thousands of messages read in slices of
// the event loop) against its parse: the same prompt, or the same error, on random bodies of
// every protocol, valid and not, longer than a step of the slicing. And the core's sliced JSON.parse
// on strings of megabytes (parsed a run at a time).
import { describe, expect, it } from 'vitest'
import { protocols } from '../core/protocols/index.ts'
import { MAX_JSON_DEPTH, PARSE_STEP, parseJsonSliced, type ParseOptions } from '../core/protocols/shared.ts'
import { Slicer } from '../core/slicer.ts'
import type { ProtocolName } from '../core/types.ts'
import { mulberry32 } from './fuzz/prng.ts'

/** the fuzzer's seeded generator (mulberry32), as a function of floats in [0, 1) */
const prng = (seed: number) => mulberry32(seed).next

type Rnd = () => number
const pick = <T>(rnd: Rnd, xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!

/** now and then a value of the wrong type, so that errors are compared too (rarely: most bodies parse) */
const odd = (rnd: Rnd, v: unknown) => (rnd() < 0.0015 ? pick(rnd, [5, null, 'x', [], {}, true]) : v)

function content(rnd: Rnd, protocol: ProtocolName): unknown {
  const text = `t${Math.floor(rnd() * 1e6)} ${pick(rnd, ['', 'é', '😀', 'a b'])}`
  if (rnd() < 0.7) return text
  if (protocol === 'anthropic')
    return [
      { type: 'text', text, cache_control: { type: 'ephemeral' } },
      ...(rnd() < 0.3 ? [{ type: 'image', source: { type: 'base64', data: 'AAAA' } }] : []),
      ...(rnd() < 0.3 ? [{ type: 'tool_result', tool_use_id: 'x', content: text }] : []),
    ]
  if (protocol === 'responses')
    return [{ type: 'input_text', text }, ...(rnd() < 0.3 ? [{ type: 'input_image', image_url: 'data:x' }] : [])]
  return [{ type: 'text', text }, ...(rnd() < 0.3 ? [{ type: 'image_url', image_url: { url: 'data:x' } }] : [])]
}

function message(rnd: Rnd, protocol: ProtocolName, i: number): unknown {
  if (protocol === 'gemini')
    return odd(rnd, {
      role: odd(rnd, pick(rnd, ['user', 'model', 'function', undefined, 'other'])),
      parts: odd(rnd, [
        { text: `p${i}` },
        ...(rnd() < 0.2 ? [{ inlineData: { mimeType: 'image/png', data: 'AA' } }] : []),
      ]),
    })
  if (protocol === 'responses' && rnd() < 0.1)
    return odd(rnd, { type: 'function_call', call_id: `c${i}`, name: 'f', arguments: '{}' })
  const roles =
    protocol === 'anthropic'
      ? ['user', 'assistant', 'system', 'tool-ish']
      : ['user', 'assistant', 'system', 'developer', 'tool', 'function', 'critic']
  const m: Record<string, unknown> = { role: odd(rnd, pick(rnd, roles)), content: odd(rnd, content(rnd, protocol)) }
  if (protocol === 'openai' && rnd() < 0.05)
    m.tool_calls = [{ id: `c${i}`, type: 'function', function: { name: 'f', arguments: '{}' } }]
  if (protocol === 'openai' && rnd() < 0.05) m.name = `n${i}`
  return odd(rnd, m)
}

function body(rnd: Rnd, protocol: ProtocolName, n: number): { body: any; opts: ParseOptions } {
  const list = Array.from({ length: n }, (_, i) => message(rnd, protocol, i))
  if (protocol === 'gemini')
    return {
      body: {
        contents: list,
        systemInstruction: { parts: [{ text: 'sys' }] },
        generationConfig: { maxOutputTokens: odd(rnd, 64), temperature: 0 },
      },
      opts: { pathModel: 'gemini-2.0-flash', stream: rnd() < 0.5 },
    }
  const model = odd(rnd, protocol === 'anthropic' ? 'claude-3-5-haiku-latest' : 'gpt-4o-mini')
  if (protocol === 'responses')
    return { body: { model, input: list, instructions: 'be brief', max_output_tokens: odd(rnd, 32) }, opts: {} }
  if (protocol === 'anthropic')
    return { body: { model, messages: list, max_tokens: odd(rnd, 64), system: 'sys', stream: true }, opts: {} }
  return { body: { model, messages: list, max_tokens: odd(rnd, 64), temperature: 0.2 }, opts: {} }
}

type Outcome = { prompt: unknown } | { error: string; type: string }

async function outcomes(protocol: ProtocolName, b: any, opts: ParseOptions): Promise<[Outcome, Outcome]> {
  const adapter = protocols[protocol]
  let whole: Outcome
  try {
    whole = { prompt: adapter.parse(b, opts) }
  } catch (err) {
    whole = { error: (err as Error).message, type: (err as Error).constructor.name }
  }
  let sliced: Outcome
  try {
    // slices of 0 ms: the loop is given back at every step
    sliced = { prompt: await adapter.parseSliced(b, opts, new Slicer(0)) }
  } catch (err) {
    sliced = { error: (err as Error).message, type: (err as Error).constructor.name }
  }
  return [whole, sliced]
}

describe('parseSliced gives what parse gives', () => {
  it.each(['openai', 'anthropic', 'gemini', 'responses'] as const)(
    '%s: 60 random bodies, valid and not',
    async (protocol) => {
      const rnd = prng(protocol.length * 31)
      let errors = 0
      for (let round = 0; round < 60; round++) {
        const n = 1 + Math.floor(rnd() * PARSE_STEP * 4)
        const { body: b, opts } = body(rnd, protocol, n)
        const [whole, sliced] = await outcomes(protocol, b, opts)
        expect(sliced).toEqual(whole)
        if ('error' in whole) errors++
      }
      // both kinds were compared
      expect(errors).toBeGreaterThan(3)
      expect(errors).toBeLessThan(57)
    },
  )

  it('a body built in code with holes in its messages: the same as parse', async () => {
    for (const protocol of ['anthropic', 'gemini'] as const) {
      const { body: b, opts } = body(() => 0.5, protocol, 700)
      const list = protocol === 'gemini' ? b.contents : b.messages
      for (let i = 0; i < list.length; i++)
        list[i] =
          protocol === 'gemini' ? { role: 'user', parts: [{ text: `p${i}` }] } : { role: 'user', content: `m${i}` }
      delete list[5]
      delete list[600]
      const [whole, sliced] = await outcomes(protocol, b, opts)
      expect(whole, JSON.stringify(whole).slice(0, 300)).toHaveProperty('prompt')
      expect(sliced).toEqual(whole)
    }
  })

  it('70,000 turns: the loop turns while the adapter reads them', async () => {
    const messages = Array.from({ length: 70_000 }, (_, i) => ({
      role: i % 2 ? 'assistant' : 'user',
      content: `turn ${i}`,
    }))
    let turns = 0
    let on = true
    const tick = () => {
      turns++
      if (on) setImmediate(tick)
    }
    setImmediate(tick)
    const prompt = await protocols.anthropic.parseSliced(
      { model: 'claude-3-5-haiku-latest', max_tokens: 8, messages },
      {},
      new Slicer(1),
    )
    on = false
    expect(prompt.messages).toHaveLength(70_000)
    expect(turns).toBeGreaterThan(2)
  })
})

describe('a string member of megabytes, parsed a run at a time', () => {
  const CHARS = [
    'a',
    ' ',
    'é',
    '😀',
    '"',
    '\\',
    '/',
    '\n',
    '\t',
    '\u0001',
    '\u001f',
    '\ud800',
    '\udc00',
    '\u2028',
    'x y z',
  ]

  /** the longest text one JSON.parse was given during the sliced parse: a run, unless it fell back to the whole */
  let longestParse = 0
  async function both(t: string) {
    let whole: unknown
    try {
      whole = { value: JSON.parse(t) }
    } catch (err) {
      whole = { error: (err as Error).message }
    }
    let sliced: unknown
    const parse = JSON.parse
    longestParse = 0
    JSON.parse = (text: string, reviver?: any) => {
      longestParse = Math.max(longestParse, text.length)
      return parse(text, reviver)
    }
    try {
      const r = await parseJsonSliced(t, MAX_JSON_DEPTH, new Slicer(0))
      sliced = r.deep ? 'deep' : { value: r.value }
    } catch (err) {
      sliced = { error: (err as Error).message }
    } finally {
      JSON.parse = parse
    }
    expect(sliced).toEqual(whole)
  }

  it('gives the string JSON.parse gives, escapes falling across every place a run could be cut', async () => {
    const rnd = prng(21)
    for (let round = 0; round < 8; round++) {
      let s = ''
      // escape-dense stretches (\uXXXX for control characters and lone surrogates) and plain ones
      while (s.length < 300_000 + round * 40_000)
        s += rnd() < 0.5 ? CHARS[Math.floor(rnd() * CHARS.length)]! : 'plain text '.repeat(Math.floor(rnd() * 50))
      await both(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: s }], s }))
      // in runs: a cut inside an escape would have failed and sent it back to one JSON.parse
      expect(longestParse).toBeLessThan(140_000)
    }
    // no escape at all: the value is the text between the quotes (raw non-ASCII and lone surrogates too)
    await both(`{"messages":[{"content":"${'plain é 😀 \ud800 '.repeat(60_000)}"}],"n":1}`)
    expect(longestParse).toBeLessThan(140_000)
    await both(`{"messages":[{"content":"${'plain '.repeat(60_000)}\u0001${'plain '.repeat(60_000)}"}]}`)
    // backslashes everywhere: no place to cut without an escape open near it
    await both(JSON.stringify({ messages: [{ content: '\\'.repeat(400_000) }] }))
    await both(JSON.stringify({ messages: [{ content: '\u0001'.repeat(100_000) }] }))
  })

  it('gives the same error for a long string JSON.parse refuses', async () => {
    const long = 'text '.repeat(60_000)
    for (const bad of ['\u0001', '\\x', '\\u12', '\\', '\n'])
      await both(`{"messages":[{"content":"${long}${bad}${long}"}]}`)
  })
})
