// One streamed event of megabytes, worked in slices (issue 11 item 2): the mask plugin's event
// rewriter (eventRewriter's eventSliced), the OpenAI and Responses readers fed by the relay's
// sliced parse (SseParser.feedSliced primes parseEventJson), a translated stream whose one event
// encodes to megabytes (handed on in pieces), and the sliced parse's scan of a string full of
// escaped quotes. Each must give what the one-go path gives: checked on random streams with a
// pacer that yields at almost every step.
import { describe, expect, it } from 'vitest'
import { primeEventJson } from '../core/protocols/event-json.ts'
import { protocols } from '../core/protocols/index.ts'
import { MAX_JSON_DEPTH, SLICED_PARSE_CHARS, parseJsonSliced, type StreamReader } from '../core/protocols/shared.ts'
import type { Slicer } from '../core/slicer.ts'
import { SseParser } from '../core/stream.ts'
import { eventRewriter, type AnswerText } from '../core/translate/answer-text.ts'
import { streamTranslator, type Translation } from '../core/translate/index.ts'
import type { ProtocolName } from '../core/types.ts'
import { Restorer } from '../plugins/mask/restore.ts'
import { eagerPacer } from './helpers/longest-block.ts'

function prng(seed: number) {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}
const VALUES = new Map([
  ['<EMAIL_1>', 'ada@example.com'],
  ['<EMAIL_12>', 'grace@example.org'],
  ['<PHONE_NUMBER_3>', '+44 20 7946 0958'],
])
const answerText: AnswerText = { open: () => new Restorer(VALUES, 16) }
const BITS = [
  'a',
  'é',
  '😀',
  '"',
  '\\',
  '\n',
  ' ',
  'word',
  '<',
  '>',
  '<EMAIL_1>',
  '<EMAIL_12>',
  '<PHONE_NUMBER_3>',
  '<E',
]
function words(r: () => number, n: number): string {
  let s = ''
  for (let i = 0; i < n; i++) s += BITS[Math.floor(r() * BITS.length)]
  return s
}
/** a text of about `chars` characters, placeholders across the 64K cuts the rewriter's pieces fall on */
function longText(r: () => number, chars: number): string {
  let s = ''
  while (s.length < chars) {
    const cut = 65_536 * Math.ceil((s.length + 1) / 65_536)
    s += words(r, Math.max(1, Math.floor((cut - s.length - Math.floor(r() * 12)) / 3)))
    if (s.length < cut) s += 'x'.repeat(cut - s.length - Math.floor(r() * 8))
    s += ['<EMAIL_1>', '<PHONE_NUMBER_3>', '<EMAIL_12>'][Math.floor(r() * 3)]
  }
  return s
}
const text = (r: () => number, big: boolean) => (big ? longText(r, 300_000 + Math.floor(r() * 100_000)) : words(r, 30))

const shared = eagerPacer(3)
const pacer = () => shared as unknown as Slicer
const json = (d: unknown) => JSON.stringify(d)

/** a stream of `p` events (their data), some of them over SLICED_PARSE_CHARS */
function events(p: ProtocolName, r: () => number): string[] {
  const out: string[] = []
  const big = () => r() < 0.35
  if (p === 'openai') {
    const c = (choices: unknown[]) =>
      json({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices })
    out.push(c([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]))
    for (let i = 0; i < 8; i++) out.push(c([{ index: 0, delta: { content: text(r, big()) }, finish_reason: null }]))
    out.push(c([{ index: 1, delta: { content: text(r, true) }, finish_reason: null }]))
    for (let i = 0; i < 3; i++)
      out.push(
        c([
          {
            index: 0,
            delta: { tool_calls: [{ index: i % 2, function: { arguments: text(r, big()) } }] },
            finish_reason: null,
          },
        ]),
      )
    out.push(c([{ index: 0, delta: {}, finish_reason: 'stop' }]), c([{ index: 1, delta: {}, finish_reason: 'stop' }]))
    out.push('[DONE]')
  } else if (p === 'anthropic') {
    out.push(json({ type: 'message_start', message: { id: 'm', content: [], usage: { input_tokens: 1 } } }))
    out.push(json({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: text(r, big()) } }))
    for (let i = 0; i < 6; i++)
      out.push(json({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: text(r, big()) } }))
    out.push(json({ type: 'content_block_stop', index: 0 }))
    out.push(json({ type: 'content_block_start', index: 1, content_block: { type: 'tool_use', id: 't', name: 'f' } }))
    for (let i = 0; i < 3; i++)
      out.push(
        json({
          type: 'content_block_delta',
          index: 1,
          delta: { type: 'input_json_delta', partial_json: text(r, big()) },
        }),
      )
    out.push(json({ type: 'content_block_stop', index: 1 }))
    out.push(json({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 9 } }))
    out.push(json({ type: 'message_stop' }))
  } else if (p === 'responses') {
    let seq = 0
    const e = (d: Record<string, unknown>) => json({ ...d, sequence_number: seq++ })
    const t = text(r, true)
    for (let i = 0; i < 5; i++)
      out.push(
        e({
          type: 'response.output_text.delta',
          item_id: 'i',
          output_index: 0,
          content_index: 0,
          delta: text(r, big()),
        }),
      )
    out.push(e({ type: 'response.output_text.done', item_id: 'i', output_index: 0, content_index: 0, text: t }))
    out.push(
      e({ type: 'response.function_call_arguments.delta', item_id: 'f', output_index: 1, delta: text(r, big()) }),
    )
    out.push(e({ type: 'response.function_call_arguments.done', item_id: 'f', output_index: 1, arguments: t }))
    const item = { id: 'i', type: 'message', role: 'assistant', content: [{ type: 'output_text', text: t }] }
    const reasoning = { type: 'reasoning', summary: [{ type: 'summary_text', text: t.slice(0, 1000) }] }
    out.push(e({ type: 'response.output_item.done', output_index: 0, item }))
    out.push(e({ type: 'response.completed', response: { id: 'r', output: [reasoning, item], usage: {} } }))
  } else {
    const g = (parts: unknown[], finish?: string) =>
      json({
        candidates: [{ index: 0, content: { role: 'model', parts }, ...(finish ? { finishReason: finish } : {}) }],
      })
    for (let i = 0; i < 6; i++) out.push(g([{ text: text(r, big()) }, { text: words(r, 3), thought: true }]))
    out.push(g([{ functionCall: { name: 'f', args: { q: text(r, big()), n: 1 } } }]))
    out.push(g([{ text: text(r, big()) }], 'STOP'))
  }
  return out
}

describe('eventRewriter: eventSliced gives what event gives', () => {
  it.each(['openai', 'anthropic', 'responses', 'gemini'] as const)(
    'random %s streams with events of 300-400K, placeholders across the cuts',
    async (p) => {
      for (let seed = 1; seed <= 4; seed++) {
        const data = events(p, prng(seed * 31 + p.length))
        expect(data.some((d) => d.length > SLICED_PARSE_CHARS)).toBe(true)
        const one = eventRewriter(p, answerText)
        const two = eventRewriter(p, answerText)
        let oneGo = ''
        let sliced = ''
        const before = shared.yields
        for (const d of data) {
          oneGo += one.event(d)
          sliced += d.length > SLICED_PARSE_CHARS ? (await two.eventSliced(d, pacer())).join('') : two.event(d)
        }
        oneGo += one.end()
        sliced += two.end()
        expect(shared.yields).toBeGreaterThan(before)
        expect(sliced).toBe(oneGo)
        // the placeholders were put back (those the model made up stay)
        expect(oneGo.includes('ada@example.com')).toBe(true)
      }
    },
    60_000,
  )

  it('data that is not JSON, and JSON nested deeper than a request may be: as event() has it', async () => {
    const notJson = `not json ${'x'.repeat(SLICED_PARSE_CHARS)}`
    const deep = `${'['.repeat(200)}"${'<EMAIL_1> '.repeat(30_000)}"${']'.repeat(200)}`
    for (const p of ['openai', 'anthropic', 'responses', 'gemini'] as const)
      for (const d of [notJson, deep]) {
        const want = eventRewriter(p, answerText).event(d)
        expect((await eventRewriter(p, answerText).eventSliced(d, pacer())).join('')).toBe(want)
      }
  })
})

/** what a relay forwards and what the reader saw, chunks that make the pending text heavy read sliced */
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
const sseOf = (data: string[]) => data.map((d) => `data: ${d}\n\n`).join('')
const plainTime = (s: string) => s.replace(/"(created|created_at)":\d+/g, '"$1":0')

describe('the OpenAI and Responses readers take the relay sliced parse', () => {
  it.each(['openai', 'responses'] as const)('random %s streams: the same answer as read in one go', async (p) => {
    for (let seed = 1; seed <= 3; seed++) {
      const data = events(p, prng(seed + 100))
      if (p === 'responses') data.unshift(json({ type: 'response.created', response: { id: 'r', output: [] } }))
      const chunks = chunksOf(sseOf(data), prng(seed))
      const a = protocols[p].streamReader({ hideUsageChunk: true })
      const b = protocols[p].streamReader({ hideUsageChunk: true })
      const oneGo = await relayed(a, chunks, false)
      const sliced = await relayed(b, chunks, true)
      const answer = a.finish()
      expect(answer).toBeDefined()
      expect(b.finish()).toEqual(answer)
      expect(sliced).toBe(oneGo)
    }
  })

  it.each(['openai', 'responses'] as const)(
    '%s: an event of megabytes is parsed once, in slices (no JSON.parse of its whole text)',
    async (p) => {
      const t = longText(prng(7), 2_000_000)
      const data =
        p === 'openai'
          ? [
              json({
                id: 'c',
                object: 'chat.completion.chunk',
                model: 'm',
                choices: [{ index: 0, delta: { content: t } }],
              }),
              json({
                id: 'c',
                object: 'chat.completion.chunk',
                model: 'm',
                choices: [{ index: 0, delta: {}, finish_reason: 'stop' }],
              }),
              '[DONE]',
            ]
          : [
              json({ type: 'response.output_text.delta', item_id: 'i', output_index: 0, content_index: 0, delta: t }),
              json({
                type: 'response.completed',
                response: { id: 'r', output: [{ type: 'message', content: [{ type: 'output_text', text: t }] }] },
              }),
            ]
      const reader = protocols[p].streamReader({ hideUsageChunk: false })
      const native = JSON.parse
      let longest = 0
      JSON.parse = (text: string, reviver?: any) => {
        longest = Math.max(longest, text.length)
        return native(text, reviver)
      }
      try {
        await relayed(reader, chunksOf(sseOf(data), prng(3)), true)
      } finally {
        JSON.parse = native
      }
      expect(reader.finish()!.text).toBe(t)
      // the sliced parse's runs are 128K (a member of the text's size was parsed whole before)
      expect(longest).toBeLessThan(SLICED_PARSE_CHARS)
    },
  )

  it('a later delta never changes a parsed event the relay may hand out again', () => {
    // the same event of megabytes twice, a delta between them growing an object nested in it:
    // merged into a copy of the reader's own, the second read of the first text is not the grown one
    const c = (delta: unknown, finish: string | null = null) =>
      json({
        id: 'c',
        object: 'chat.completion.chunk',
        model: 'm',
        choices: [{ index: 0, delta, finish_reason: finish }],
      })
    const big = c({ content: 'x'.repeat(SLICED_PARSE_CHARS + 10), meta: { tag: { v: 'a' } } })
    const small = c({ meta: { tag: { v: 'b' } } })
    const reader = protocols.openai.streamReader({ hideUsageChunk: false })
    primeEventJson(big, JSON.parse(big))
    for (const d of [big, small, big, c({}, 'stop'), '[DONE]']) reader.event(d)
    const message = (reader.finish()!.raw!.body as any).choices[0].message
    expect(message.meta).toEqual({ tag: { v: 'aba' } })
  })
})

describe('a translated event of megabytes: handed on in pieces, the same text', () => {
  const anthropicStream = (t: string) => [
    json({ type: 'message_start', message: { id: 'm', model: 'c', content: [], usage: { input_tokens: 1 } } }),
    json({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
    json({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: t } }),
    json({ type: 'content_block_stop', index: 0 }),
    json({ type: 'content_block_start', index: 1, content_block: { type: 'tool_use', id: 't', name: 'f', input: {} } }),
    json({ type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: json({ t }) } }),
    json({ type: 'content_block_stop', index: 1 }),
    json({ type: 'message_delta', delta: { stop_reason: 'tool_use' }, usage: { output_tokens: 9 } }),
    json({ type: 'message_stop' }),
  ]
  const openaiStream = (t: string) => [
    json({ id: 'c', object: 'chat.completion.chunk', model: 'm', choices: [{ index: 0, delta: { content: t } }] }),
    json({
      id: 'c',
      object: 'chat.completion.chunk',
      model: 'm',
      choices: [
        { index: 0, delta: { tool_calls: [{ index: 0, id: 'k', function: { name: 'f', arguments: json({ t }) } }] } },
      ],
    }),
    json({
      id: 'c',
      object: 'chat.completion.chunk',
      model: 'm',
      choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }],
    }),
    '[DONE]',
  ]
  const plain = (s: string) => s.replace(/"(created|created_at)":\d+/g, '"$1":0')

  it.each([
    ['openai', 'anthropic', false],
    ['responses', 'anthropic', false],
    ['anthropic', 'openai', false],
    ['gemini', 'openai', false],
    ['openai', 'anthropic', true],
    ['anthropic', 'openai', true],
  ] as const)('a %s client, %s vendor (masked: %s)', async (from, to, masked) => {
    for (let seed = 1; seed <= 2; seed++) {
      const r = prng(seed)
      const t = longText(r, 600_000)
      const data = to === 'anthropic' ? anthropicStream(t) : openaiStream(t)
      const chunks = chunksOf(sseOf(data), r)
      const tr: Translation = { from, to, clientBody: {}, clientId: from === 'responses' ? 'resp_x' : undefined }
      const one = streamTranslator(tr, masked ? answerText : undefined)
      const two = streamTranslator(tr, masked ? answerText : undefined)
      const pieces: number[] = []
      const oneGo = await relayed(one.reader, chunks, false, one.take)
      const sliced = await relayed(two.reader, chunks, true, () => {
        const s = two.take()
        if (s) pieces.push(s.length)
        return s
      })
      expect(plain(sliced)).toBe(plain(oneGo))
      expect(sliced.length).toBeGreaterThan(600_000)
      // no piece handed on holds the whole text
      // (a Gemini client's function call is sent whole at the end: its collected arguments in one event)
      if (from !== 'gemini') expect(Math.max(...pieces)).toBeLessThan(300_000)
      expect(two.reader.finish()).toEqual(one.reader.finish())
    }
  })
})

describe('a translator holding megabytes: small events after it are read as before', () => {
  it('a Responses client, 600K of text in 20-character deltas: the same text, no turn given back per event', async () => {
    const t = longText(prng(11), 600_000)
    const e = (d: Record<string, unknown>) => json(d)
    const data = [
      e({ type: 'message_start', message: { id: 'm', model: 'c', content: [], usage: { input_tokens: 1 } } }),
      e({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
    ]
    for (let i = 0; i < t.length; i += 20)
      data.push(e({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: t.slice(i, i + 20) } }))
    data.push(e({ type: 'content_block_stop', index: 0 }), e({ type: 'message_stop' }))
    const chunks = chunksOf(sseOf(data), prng(5))
    const tr: Translation = { from: 'responses', to: 'anthropic', clientBody: {}, clientId: 'resp_x' }
    const one = streamTranslator(tr)
    const two = streamTranslator(tr)
    const oneGo = await relayed(one.reader, chunks, false, one.take)
    // a pacer never due: every turn given back is one the relay forces
    let yields = 0
    const never = {
      due: () => false,
      pause: async () => {},
      yield: async () => {
        yields++
        await new Promise((r) => setImmediate(r))
      },
    } as unknown as Slicer
    const parser = new SseParser(two.reader, true)
    let sliced = ''
    const kept = (k: string) => {
      sliced += k + two.take()
    }
    for (const c of chunks) {
      if (parser.heavy(c)) await parser.feedSliced(c, never, kept)
      else kept(parser.feed(c))
    }
    kept(parser.flush())
    const plain = (s: string) => s.replace(/"(created|created_at)":\d+/g, '"$1":0')
    expect(plain(sliced)).toBe(plain(oneGo))
    // 30,000 events: the end's pieces take a turn each, the deltas none
    expect(yields).toBeGreaterThan(10)
    expect(yields).toBeLessThan(1_000)
  })
})

describe('an Anthropic tool input of megabytes in small deltas', () => {
  /** a tool_use block whose input's JSON comes in deltas of `size` characters, a text block before it */
  const toolStream = (input: unknown, size: number) => {
    const text = json(input)
    const data = [
      json({ type: 'message_start', message: { id: 'm', model: 'c', content: [], usage: { input_tokens: 1 } } }),
      json({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
      json({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'writing' } }),
      json({ type: 'content_block_stop', index: 0 }),
      json({
        type: 'content_block_start',
        index: 1,
        content_block: { type: 'tool_use', id: 't', name: 'Write', input: {} },
      }),
    ]
    for (let i = 0; i < text.length; i += size)
      data.push(
        json({
          type: 'content_block_delta',
          index: 1,
          delta: { type: 'input_json_delta', partial_json: text.slice(i, i + size) },
        }),
      )
    data.push(
      json({ type: 'content_block_stop', index: 1 }),
      json({ type: 'message_delta', delta: { stop_reason: 'tool_use' }, usage: { output_tokens: 9 } }),
      json({ type: 'message_stop' }),
    )
    return sseOf(data)
  }

  it('relayed and translated: the same answer and text as in one go, the input parsed in slices', async () => {
    for (let seed = 1; seed <= 3; seed++) {
      const r = prng(seed)
      const input = { file_path: '/tmp/x', content: longText(r, 400_000 + seed * 100_000), lines: [1, 2, { n: seed }] }
      const chunks = chunksOf(toolStream(input, 50 + seed * 60), r)
      const a = protocols.anthropic.streamReader({})
      const b = protocols.anthropic.streamReader({})
      await relayed(a, chunks, false)
      const native = JSON.parse
      let longest = 0
      JSON.parse = (text: string, reviver?: any) => {
        longest = Math.max(longest, text.length)
        return native(text, reviver)
      }
      try {
        await relayed(b, chunks, true)
      } finally {
        JSON.parse = native
      }
      const answer = a.finish()
      expect(answer!.toolCalls[0]!.arguments).toBe(json(input))
      expect(b.finish()).toEqual(answer)
      // before: one JSON.parse of the whole input when its block stopped
      expect(longest).toBeLessThan(SLICED_PARSE_CHARS)
      const tr: Translation = { from: 'openai', to: 'anthropic', clientBody: {} }
      const one = streamTranslator(tr)
      const two = streamTranslator(tr)
      const oneGo = await relayed(one.reader, chunks, false, one.take)
      const sliced = await relayed(two.reader, chunks, true, two.take)
      expect(plainTime(sliced)).toBe(plainTime(oneGo))
      expect(two.reader.finish()).toEqual(one.reader.finish())
    }
  })

  it('an input that is not JSON, or not an object: as in one go', async () => {
    for (const text of [`{"a":"${'x'.repeat(SLICED_PARSE_CHARS)}"`, `"${'y'.repeat(SLICED_PARSE_CHARS)}"`]) {
      const stream = toolStream('', 100).replace(
        /data: \{"type":"content_block_delta","index":1[^\n]*\n\n/,
        `data: ${json({ type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: text } })}\n\n`,
      )
      const chunks = chunksOf(stream, prng(2))
      const a = protocols.anthropic.streamReader({})
      const b = protocols.anthropic.streamReader({})
      await relayed(a, chunks, false)
      await relayed(b, chunks, true)
      expect(b.finish()).toEqual(a.finish())
    }
  })
})

describe('parseJsonSliced: a string of megabytes full of escaped quotes', () => {
  it('is scanned in slices (the slice checked inside the string), the value JSON.parse gives', async () => {
    const s = '"abcdef'.repeat(400_000)
    const text = json({ a: s, b: [1, 2] })
    let checks = 0
    const counting = {
      due: () => ++checks % 3 === 0,
      yield: () => new Promise<void>((r) => setImmediate(r)),
      pause: async () => {
        if (counting.due()) await counting.yield()
      },
    } as unknown as Slicer
    const parsed = await parseJsonSliced(text, MAX_JSON_DEPTH, counting)
    expect(parsed).toEqual({ deep: false, value: JSON.parse(text) })
    // 400,000 escaped quotes: checked every 1,024 at least (the runs of the parse add some 40)
    expect(checks).toBeGreaterThan(300)
  })
})
