// Gemini values of megabytes worked in slices (issue 11 item 2): a request part of 100,000 keys
// (the canonical JSON of the prompt, and its text when the request is translated), a vendor's
// function call whose arguments are megabytes (its text for the answer and for an OpenAI client),
// and a Gemini client's function call, collected from another vendor's deltas and sent whole.
// Each gives what the one-go code gives (compared here with that code's own formula), and no
// JSON.parse or JSON.stringify of the whole large value is left.
import { describe, expect, it } from 'vitest'
import { canonicalJson } from '../core/canonical.ts'
import { protocols } from '../core/protocols/index.ts'
import { SLICED_PARSE_CHARS, type StreamReader } from '../core/protocols/shared.ts'
import type { Slicer } from '../core/slicer.ts'
import { SseParser } from '../core/stream.ts'
import { streamTranslator, translateRequest, translateWhole, type Translation } from '../core/translate/index.ts'
import type { MeshContext, UpstreamResponse, Vendor } from '../core/types.ts'
import { eagerPacer, longestJson } from './helpers/longest-block.ts'

function prng(seed: number) {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}
const BITS = ['a', 'é', '😀', '"', '\\', '\n', ' ', 'word', '中文', '\u0001']
function words(r: () => number, n: number): string {
  let s = ''
  for (let i = 0; i < n; i++) s += BITS[Math.floor(r() * BITS.length)]
  return s
}
/** an object of `n` keys in no sorted order, of strings, numbers and small containers */
function manyKeys(r: () => number, n: number): Record<string, unknown> {
  const o: Record<string, unknown> = {}
  for (let i = 0; i < n; i++) {
    const k = `${words(r, 2)}_${(i * 7919) % n}`
    const x = r()
    o[k] = x < 0.5 ? words(r, 5) : x < 0.7 ? Math.floor(r() * 1e6) / 7 : x < 0.8 ? [1, -0, 1e21, null] : { b: 1, a: [] }
  }
  return o
}

const shared = eagerPacer(3)
const pacer = () => shared as unknown as Slicer

describe('a Gemini request part of 100,000 keys', () => {
  /** the prompt's extra for a message's parts, as the one-go code made it: the canonical JSON of each non-text part */
  const extraOf = (parts: any[]) => {
    const others = parts.filter((p) => typeof p.text !== 'string').map((p) => canonicalJson(p))
    return others.length ? `[${others.join(',')}]` : undefined
  }

  it('its canonical JSON is made in steps, in order of keys: the same prompt, parsed in slices or at once', async () => {
    for (let seed = 1; seed <= 3; seed++) {
      const r = prng(seed)
      const response = { z: 1, ...manyKeys(r, 30_000 + seed * 20_000), nested: { inner: manyKeys(r, 9_000) } }
      const parts = [
        { text: 'before' },
        { functionResponse: { name: 'look', response } },
        {
          functionCall: { name: 'f', args: { list: Array.from({ length: 6000 }, (_, i) => ({ i, w: words(r, 3) })) } },
        },
        { inlineData: { mimeType: 'image/png', data: 'A'.repeat(300_000) } },
      ]
      const body = {
        contents: [
          { role: 'user', parts: [{ text: 'hi' }] },
          { role: 'function', parts },
        ],
      }
      const opts = { pathModel: 'gemini-2.5-pro', stream: false }
      const oneGo = protocols.gemini.parse(body, opts)
      const before = shared.yields
      const sliced = await protocols.gemini.parseSliced(body, opts, pacer())
      // before: one canonicalJson of the part, no step inside it (3 parts, 2 messages)
      expect(shared.yields - before).toBeGreaterThan(50)
      expect(oneGo.messages[1]!.extra).toBe(extraOf(parts))
      expect(sliced).toEqual(oneGo)
    }
  })

  it('values outside JSON in a body built in code (undefined, holes, toJSON, -0, bigint): as canonicalJson prints them', async () => {
    const big: Record<string, unknown> = manyKeys(prng(4), 5000)
    const when = new Date(0)
    const holes: unknown[] = [1]
    holes[2] = 3 // a hole at 1, as canonicalJson prints it
    Object.assign(big, {
      u: undefined,
      f: () => 1,
      s: Symbol('x'),
      d: when,
      j: { toJSON: () => undefined },
      k: { toJSON: () => ({ y: 2, x: 1 }) },
      a: [undefined, () => 1, when, -0, 1e21, Number.NaN, holes],
      n: 10n,
      __proto__x: 1,
    })
    const part = { functionResponse: { name: 'f', response: big } }
    const body = { contents: [{ role: 'user', parts: [part] }] }
    const prompt = await protocols.gemini.parseSliced(body, { pathModel: 'gemini-2.5-pro' }, pacer())
    expect(prompt.messages[0]!.extra).toBe(`[${canonicalJson(part)}]`)
  })

  it('translated: the vendor gets the same body, the response made into text in slices (no one-go JSON.stringify of it)', async () => {
    const response = manyKeys(prng(5), 60_000)
    const args = { lines: Array.from({ length: 30_000 }, (_, i) => `line ${i} ${words(prng(i), 4)}`) }
    const clientBody = {
      contents: [
        { role: 'user', parts: [{ text: 'hi' }] },
        { role: 'model', parts: [{ functionCall: { name: 'look', args } }] },
        { role: 'user', parts: [{ functionResponse: { name: 'look', response } }] },
      ],
    }
    const rawBody = JSON.stringify(clientBody)
    expect(rawBody.length).toBeGreaterThan(SLICED_PARSE_CHARS)
    for (const to of ['openai', 'anthropic'] as const) {
      const ctx = (raw: string) =>
        ({
          protocol: 'gemini',
          prompt: { stream: false },
          route: { model: 'm', vendor: 'v' },
          headers: {},
          request: { body: structuredClone(clientBody), rawBody: raw, search: '', dirty: false },
        }) as unknown as MeshContext
      const small = ctx('')
      await translateRequest(small, { protocol: to } as Vendor)
      const large = ctx(rawBody)
      const { longest } = await longestJson(async () => translateRequest(large, { protocol: to } as Vendor))
      expect(large.request.body).toEqual(small.request.body)
      expect(JSON.stringify(large.request.body)).toContain(JSON.stringify(JSON.stringify(response)).slice(1, -1))
      // before: JSON.stringify of the whole response and of the whole arguments
      expect(longest).toBeLessThan(SLICED_PARSE_CHARS)
    }
  })
})

/** what a relay forwards, chunks that make the pending text heavy read sliced */
async function relayed(reader: StreamReader, chunks: Buffer[], sliced: boolean, take?: () => string) {
  const parser = new SseParser(reader, true)
  let out = ''
  const kept = (k: string) => {
    out += take ? k + take() : k
  }
  for (const c of chunks) {
    if (sliced && parser.heavy(c)) await parser.feedSliced(c, pacer(), kept)
    else kept(parser.feed(c))
  }
  kept(parser.flush())
  return out
}
function chunksOf(stream: string, r: () => number): Buffer[] {
  const bytes = Buffer.from(stream)
  const out: Buffer[] = []
  for (let at = 0; at < bytes.length; ) {
    const n = 1 + Math.floor(r() * 100_000)
    out.push(bytes.subarray(at, at + n))
    at += n
  }
  return out
}
const sseOf = (data: unknown[]) => data.map((d) => `data: ${JSON.stringify(d)}\n\n`).join('')
const plainTime = (s: string) => s.replace(/"(created|created_at)":\d+/g, '"$1":0')

/** arguments of about `chars` characters: a long string, or many short lines */
const bigArgs = (r: () => number, chars: number, lines: boolean) =>
  lines
    ? { path: '/tmp/x', lines: Array.from({ length: Math.ceil(chars / 30) }, () => words(r, 12)) }
    : { path: '/tmp/x', content: words(r, chars / 1.6), n: [1, 2, { m: 3 }] }

describe('a Gemini vendor function call of megabytes', () => {
  const answer = (args: unknown) => ({
    candidates: [
      {
        index: 0,
        content: { role: 'model', parts: [{ text: 'writing' }, { functionCall: { name: 'write', args } }] },
        finishReason: 'STOP',
      },
    ],
    usageMetadata: { promptTokenCount: 3, candidatesTokenCount: 9, totalTokenCount: 12 },
    modelVersion: 'gemini-2.5-pro',
    responseId: 'r1',
  })

  it('streamed to an OpenAI client: the same text and answer, the arguments stringified in slices', async () => {
    for (const lines of [false, true]) {
      const r = prng(lines ? 8 : 7)
      const args = bigArgs(r, 1_500_000, lines)
      const chunks = chunksOf(sseOf([answer(args)]), r)
      const tr: Translation = { from: 'openai', to: 'gemini', clientBody: {} }
      const one = streamTranslator(tr)
      const two = streamTranslator(tr)
      const oneGo = await relayed(one.reader, chunks, false, one.take)
      const { value: sliced, longest } = await longestJson(() => relayed(two.reader, chunks, true, two.take))
      expect(plainTime(sliced)).toBe(plainTime(oneGo))
      expect(oneGo).toContain(JSON.stringify(JSON.stringify(args)).slice(1, -1))
      expect(two.reader.finish()).toEqual(one.reader.finish())
      expect(two.reader.finish()!.toolCalls[0]!.arguments).toBe(JSON.stringify(args))
      // before: JSON.stringify of the arguments (decoder, answer) and of the chunk that carries them
      expect(longest).toBeLessThan(SLICED_PARSE_CHARS)
    }
  })

  it('a whole answer, translated: the answer read at once, its arguments stringified in slices', async () => {
    for (const lines of [false, true]) {
      const args = bigArgs(prng(9), 1_500_000, lines)
      for (const body of [answer(args), [answer(args)]]) {
        const res = { status: 200, headers: {}, body: Buffer.from(JSON.stringify(body)) } as unknown as UpstreamResponse
        const ctx = { route: { vendor: 'v' } } as unknown as MeshContext
        const tr: Translation = { from: 'openai', to: 'gemini', clientBody: {} }
        const { value, longest } = await longestJson(async () => translateWhole(ctx, tr, res))
        expect(value).toEqual({ kind: 'answer', answer: protocols.gemini.read(body) })
        expect(protocols.gemini.read(body).toolCalls[0]!.arguments).toBe(JSON.stringify(args))
        expect(longest).toBeLessThan(SLICED_PARSE_CHARS)
      }
    }
  })
})

describe("a Gemini client's whole answer, another vendor's function call of megabytes", () => {
  it('its arguments are parsed in slices for the render: the same body as the one-go render', async () => {
    for (const lines of [false, true]) {
      const args = bigArgs(prng(13), 1_500_000, lines)
      const vendor = {
        id: 'c',
        object: 'chat.completion',
        created: 1,
        model: 'gpt-4o-mini',
        choices: [
          {
            index: 0,
            message: {
              role: 'assistant',
              content: 'writing',
              tool_calls: [
                { id: 'call_1', type: 'function', function: { name: 'write', arguments: JSON.stringify(args) } },
                {
                  id: 'call_2',
                  type: 'function',
                  function: { name: 'bad', arguments: `{"a":"${'x'.repeat(300_000)}` },
                },
              ],
            },
            finish_reason: 'tool_calls',
          },
        ],
        usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
      }
      const res = { status: 200, headers: {}, body: Buffer.from(JSON.stringify(vendor)) } as unknown as UpstreamResponse
      const ctx = { route: { vendor: 'v' } } as unknown as MeshContext
      const tr: Translation = { from: 'gemini', to: 'openai', clientBody: {} }
      const { value, longest } = await longestJson(async () => {
        const r = await translateWhole(ctx, tr, res)
        return r.kind === 'answer' ? protocols.gemini.render(r.answer) : undefined
      })
      const oneGo = protocols.gemini.render(protocols.openai.read(vendor))
      expect(value).toEqual(oneGo)
      expect((oneGo as any).candidates[0].content.parts[1].functionCall.args).toEqual(args)
      // before: one JSON.parse of the arguments in the render (the malformed ones of 300K are read
      // once by JSON.parse, which fails on them as the one-go render's did)
      expect(longest).toBeLessThan(300_010)
    }
  })
})

describe("a Gemini client's function call of megabytes, from another vendor's deltas", () => {
  const anthropicDeltas = (input: unknown, size: number) => {
    const text = JSON.stringify(input)
    const data: unknown[] = [
      { type: 'message_start', message: { id: 'm', model: 'c', content: [], usage: { input_tokens: 1 } } },
      { type: 'content_block_start', index: 0, content_block: { type: 'tool_use', id: 't', name: 'Write', input: {} } },
    ]
    for (let i = 0; i < text.length; i += size)
      data.push({
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'input_json_delta', partial_json: text.slice(i, i + size) },
      })
    data.push(
      { type: 'content_block_stop', index: 0 },
      { type: 'content_block_start', index: 1, content_block: { type: 'text', text: '' } },
      { type: 'content_block_delta', index: 1, delta: { type: 'text_delta', text: 'done' } },
      { type: 'content_block_stop', index: 1 },
      { type: 'message_delta', delta: { stop_reason: 'tool_use' }, usage: { output_tokens: 9 } },
      { type: 'message_stop' },
    )
    return sseOf(data)
  }
  const openaiDeltas = (input: unknown, size: number) => {
    const text = JSON.stringify(input)
    const c = (delta: unknown, finish: string | null = null) => ({
      id: 'c',
      object: 'chat.completion.chunk',
      created: 1,
      model: 'm',
      choices: [{ index: 0, delta, finish_reason: finish }],
    })
    const data: unknown[] = [
      c({ role: 'assistant', content: null }),
      c({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'write', arguments: '' } }] }),
    ]
    for (let i = 0; i < text.length; i += size)
      data.push(c({ tool_calls: [{ index: 0, function: { arguments: text.slice(i, i + size) } }] }))
    return `${sseOf([...data, c({}, 'tool_calls')])}data: [DONE]\n\n`
  }

  it.each(['anthropic', 'openai'] as const)(
    'a %s vendor: the same text as in one go, the call parsed and sent in pieces',
    async (to) => {
      for (const lines of [false, true]) {
        const r = prng(lines ? 12 : 11)
        const input = bigArgs(r, 1_000_000, lines)
        const stream = to === 'anthropic' ? anthropicDeltas(input, 200) : openaiDeltas(input, 300)
        const chunks = chunksOf(stream, r)
        const tr: Translation = { from: 'gemini', to, clientBody: {} }
        const one = streamTranslator(tr)
        const two = streamTranslator(tr)
        const oneGo = await relayed(one.reader, chunks, false, one.take)
        const pieces: number[] = []
        const { value: sliced, longest } = await longestJson(() =>
          relayed(two.reader, chunks, true, () => {
            const s = two.take()
            if (s) pieces.push(s.length)
            return s
          }),
        )
        expect(sliced).toBe(oneGo)
        expect(oneGo).toContain(
          JSON.stringify({ functionCall: { name: to === 'openai' ? 'write' : 'Write', args: input } }),
        )
        // before: the collected arguments parsed and the call's chunk made in one go, handed on whole
        expect(longest).toBeLessThan(SLICED_PARSE_CHARS)
        expect(Math.max(...pieces)).toBeLessThan(300_000)
      }
    },
    60_000,
  )

  it('arguments that are not JSON, or not an object: as in one go', async () => {
    for (const text of [`{"a":"${'x'.repeat(SLICED_PARSE_CHARS)}"`, `"${'y'.repeat(SLICED_PARSE_CHARS)}"`]) {
      const stream = anthropicDeltas({}, 100).replace(
        /data: \{"type":"content_block_delta","index":0[^\n]*\n\n/,
        `data: ${JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: text } })}\n\n`,
      )
      const chunks = chunksOf(stream, prng(2))
      const tr: Translation = { from: 'gemini', to: 'anthropic', clientBody: {} }
      const one = streamTranslator(tr)
      const two = streamTranslator(tr)
      expect(await relayed(two.reader, chunks, true, two.take)).toBe(await relayed(one.reader, chunks, false, one.take))
    }
  })
})
