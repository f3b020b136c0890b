// One streamed event of megabytes (issue 11 item 2): an OpenAI chunk whose delta content or
// tool-call arguments are 5 MB, a Responses stream whose delta and response.completed carry the
// whole 5 MB answer, relayed (a cache miss), translated to and from an Anthropic vendor, and
// relayed with the mask plugin putting values back into each event. The relay parses such an
// event in slices (SseParser.feedSliced); the OpenAI and Responses readers take that value
// instead of a JSON.parse of their own, the mask plugin's event rewriter and the translator's
// encoder work it in slices too. Measured through the fuzzer's proxy child (solo preset).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ProxyChild } from './fuzz/child.ts'
import { sendRaw } from './fuzz/client.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'
import { startChildAndMock, stopChildAndMock } from './helpers/proxy-child.ts'
import { sse, vendorStream } from './helpers/vendor-streams.ts'

// 2-, 3- and 4-byte characters, quotes, backslashes, newlines and control characters: what is
// slowest to parse and to escape
const WORDS = [
  'the',
  'quick',
  'café',
  '€uro',
  '中文字',
  '😀🚀',
  '"quoted"',
  'back\\slash',
  'line\nbreak',
  'tab\t',
  '\u0001',
]
/** `chars` of words (a little over), `<EMAIL_1>` every ~1,000 words when `mark` */
function text(chars: number, mark = false): string {
  const parts: string[] = []
  let n = 0
  for (let i = 1; n < chars; i = (i * 7 + 3) % 1009) {
    const w = mark && i % 997 === 5 ? '<EMAIL_1>' : WORDS[i % WORDS.length]!
    parts.push(w, ' ')
    n += w.length + 1
  }
  return parts.join('')
}

/** an OpenAI stream: one chunk of `big` content (or tool-call arguments when `args`) */
function openaiStream(big: string, args = false): string {
  const c = (choices: unknown[], extra = {}) =>
    sse({ id: 'chatcmpl-v', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices, ...extra })
  const delta = args
    ? { tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'write', arguments: big } }] }
    : { content: big }
  return (
    c([{ index: 0, delta: { role: 'assistant', content: args ? null : '' }, finish_reason: null }]) +
    c([{ index: 0, delta, finish_reason: null }]) +
    c([{ index: 0, delta: {}, finish_reason: args ? 'tool_calls' : 'stop' }]) +
    c([], { usage: { prompt_tokens: 10, completion_tokens: 1000, total_tokens: 1010 } }) +
    'data: [DONE]\n\n'
  )
}

/** an Anthropic stream: one text_delta of `big` */
const anthropicStream = (big: string) => vendorStream('anthropic', big, Math.max(1, big.length))

/** an Anthropic stream of `big` in deltas of 20 characters (the end turns them into megabytes again for a Responses client) */
const anthropicSmallDeltas = (big: string) => vendorStream('anthropic', big, 20)

/** an Anthropic stream of a tool_use block whose input (`big` as a file's content) comes in deltas of 200 characters */
function anthropicToolDeltas(big: string): string {
  const e = (d: Record<string, unknown>) => sse(d, String(d.type))
  const text = JSON.stringify({ file_path: '/tmp/big.txt', content: big })
  const deltas: string[] = []
  for (let i = 0; i < text.length; i += 200)
    deltas.push(
      e({
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'input_json_delta', partial_json: text.slice(i, i + 200) },
      }),
    )
  return (
    e({
      type: 'message_start',
      message: { id: 'msg_v', type: 'message', role: 'assistant', model: 'claude-3-5-haiku-latest', content: [] },
    }) +
    e({
      type: 'content_block_start',
      index: 0,
      content_block: { type: 'tool_use', id: 'toolu_1', name: 'Write', input: {} },
    }) +
    deltas.join('') +
    e({ type: 'content_block_stop', index: 0 }) +
    e({
      type: 'message_delta',
      delta: { stop_reason: 'tool_use', stop_sequence: null },
      usage: { output_tokens: 1000 },
    }) +
    e({ type: 'message_stop' })
  )
}

/** a Responses stream: one output_text.delta of `big`, then the done events and response.completed carrying it whole */
function responsesStream(big: string): string {
  let seq = 0
  const e = (d: Record<string, unknown>) => sse({ ...d, sequence_number: seq++ }, String(d.type))
  const response = (status: string, output: unknown[]) => ({
    id: 'resp_v',
    object: 'response',
    created_at: 1,
    status,
    model: 'gpt-4o-mini',
    output,
    ...(status === 'completed' ? { usage: { input_tokens: 10, output_tokens: 1000, total_tokens: 1010 } } : {}),
  })
  const part = { type: 'output_text', text: big, annotations: [] }
  const item = { id: 'msg_1', type: 'message', status: 'completed', role: 'assistant', content: [part] }
  return (
    e({ type: 'response.created', response: response('in_progress', []) }) +
    e({ type: 'response.output_item.added', output_index: 0, item: { ...item, status: 'in_progress', content: [] } }) +
    e({
      type: 'response.content_part.added',
      item_id: 'msg_1',
      output_index: 0,
      content_index: 0,
      part: { ...part, text: '' },
    }) +
    e({ type: 'response.output_text.delta', item_id: 'msg_1', output_index: 0, content_index: 0, delta: big }) +
    e({ type: 'response.output_text.done', item_id: 'msg_1', output_index: 0, content_index: 0, text: big }) +
    e({ type: 'response.content_part.done', item_id: 'msg_1', output_index: 0, content_index: 0, part }) +
    e({ type: 'response.output_item.done', output_index: 0, item }) +
    e({ type: 'response.completed', response: response('completed', [item]) })
  )
}

/**
 * The longest block of the proxy's own work for one such event of 5 MB, as CPU ms through the
 * fuzzer's child (the best of up to three runs: the CPU counted is the whole process's). Each
 * shape prints its figure. Before these paths were sliced (load 2-5): masked responses 162-243,
 * masked openai 77-101, a Responses client of an Anthropic vendor 405-630 (one event) and 491-558
 * (20-character deltas), an Anthropic tool input in 200-character deltas 136-201 (masked 130-183,
 * translated 149-244); after, 37-77. The plain relays were 44-79, then 45-66 with the event's
 * flat copies (the join of its chunks, the join of its long string) in the turn of other work;
 * with each in a turn of its own (and no reader searching or parsing an event it does not read),
 * the relayed and masked shapes but masked responses stayed under 36 in 9 runs of this file
 * (relayed responses 10-29, the Anthropic tool inputs 16-35; 0: no block over 15 ms). What is left
 * in a block: a slice of 10 ms, the socket's write of what it handed on, a collection of the
 * megabytes of garbage. The translated shapes (11-41) keep the looser bound: their remaining cost
 * is the translator's (core/translate).
 */
const EVENT_BLOCK_MS = 45
const TRANSLATED_BLOCK_MS = 100
/** the old relay's 22-63 (38-63 in full runs of this file), now 10-29 */
const RELAYED_RESPONSES_BLOCK_MS = 35
/**
 * 20-48 in single runs (30, interleaved with the new code) when the mask rewriter parsed each of the
 * five events of 5 MB itself, joined its long string, rewrote it and joined it again, then
 * stringified it. With the long strings read a run at a time from the event's own text
 * (core/translate/long-literals.ts): 17-38, median 19; what is left is the relay's own (the join of
 * the event's chunks, the reader's parse of response.completed, their collections)
 */
const MASKED_RESPONSES_BLOCK_MS = 50

type Shape = {
  name: string
  path: string
  model: string
  vendor: (big: string) => string
  args?: boolean
  mask?: boolean
  /** the text comes in deltas of its own: not checked for one run of it */
  cut?: boolean
  /** its bound, when not EVENT_BLOCK_MS */
  bound?: number
}

const SHAPES: Shape[] = [
  { name: 'relayed openai text', path: '/v1/chat/completions', model: 'gpt-4o-mini', vendor: (b) => openaiStream(b) },
  {
    name: 'relayed openai tool arguments',
    path: '/v1/chat/completions',
    model: 'gpt-4o-mini',
    vendor: (b) => openaiStream(JSON.stringify({ content: b })),
    args: true,
  },
  // the old relay's 38-63 ms: the join of the event, the reader's search of it and the queued chunks' decode in one turn
  {
    name: 'relayed responses',
    path: '/v1/responses',
    model: 'gpt-4o-mini',
    vendor: responsesStream,
    bound: RELAYED_RESPONSES_BLOCK_MS,
  },
  {
    name: 'translated openai client, anthropic vendor',
    path: '/v1/chat/completions',
    model: 'claude-3-5-haiku-latest',
    vendor: anthropicStream,
  },
  {
    name: 'translated responses client, anthropic vendor',
    path: '/v1/responses',
    model: 'claude-3-5-haiku-latest',
    vendor: anthropicStream,
  },
  {
    // not one event of megabytes: the text of 250,000 small ones, which the end gives back whole
    name: 'translated responses client, anthropic vendor, 20-character deltas',
    path: '/v1/responses',
    model: 'claude-3-5-haiku-latest',
    vendor: anthropicSmallDeltas,
  },
  {
    // not one event of megabytes: a tool input in 200-character deltas, parsed when its block stops
    name: 'relayed anthropic tool input, 200-character deltas',
    path: '/v1/messages',
    model: 'claude-3-5-haiku-latest',
    vendor: anthropicToolDeltas,
    args: true,
    cut: true,
  },
  {
    name: 'masked anthropic tool input, 200-character deltas',
    path: '/v1/messages',
    model: 'claude-3-5-haiku-latest',
    vendor: anthropicToolDeltas,
    args: true,
    cut: true,
    mask: true,
  },
  {
    name: 'translated openai client, anthropic tool input, 200-character deltas',
    path: '/v1/chat/completions',
    model: 'claude-3-5-haiku-latest',
    vendor: anthropicToolDeltas,
    args: true,
    cut: true,
  },
  {
    name: 'translated anthropic client, openai vendor',
    path: '/v1/messages',
    model: 'gpt-4o-mini',
    vendor: (b) => openaiStream(b),
  },
  {
    name: 'translated anthropic client, openai vendor, tool arguments',
    path: '/v1/messages',
    model: 'gpt-4o-mini',
    vendor: (b) => openaiStream(JSON.stringify({ content: b })),
    args: true,
  },
  {
    name: 'masked openai text',
    path: '/v1/chat/completions',
    model: 'gpt-4o-mini',
    vendor: (b) => openaiStream(b),
    mask: true,
  },
  {
    name: 'masked responses',
    path: '/v1/responses',
    model: 'gpt-4o-mini',
    vendor: responsesStream,
    mask: true,
    bound: MASKED_RESPONSES_BLOCK_MS,
  },
  {
    name: 'masked, translated openai client, anthropic vendor',
    path: '/v1/chat/completions',
    model: 'claude-3-5-haiku-latest',
    vendor: anthropicStream,
    mask: true,
  },
]

describe('one streamed event of 5 MB through the proxy child', () => {
  let mock: MockUpstream
  let child: ProxyChild
  let dataDir: string
  let port: number
  beforeAll(async () => {
    ;({ mock, child, port, dataDir } = await startChildAndMock('large-events', { FUZZ_UPSTREAM_TIMEOUT_MS: '30000' }))
  }, 120_000)
  afterAll(() => stopChildAndMock({ mock, child, dataDir }))

  let n = 0
  const raw = (s: Shape) => {
    // a prompt of its own each time, a cache miss; no-store: the exact cache's store of an answer of
    // megabytes is its own path (measured by its own tests); an email for the mask plugin to put a placeholder in
    const prompt = `${s.mask ? 'write to ada@example.com ' : ''}event ${n++} ${s.name}`
    const body =
      s.path === '/v1/responses'
        ? { model: s.model, stream: true, input: prompt }
        : { model: s.model, max_tokens: 64, stream: true, messages: [{ role: 'user', content: prompt }] }
    const bytes = Buffer.from(JSON.stringify(body))
    const head =
      `POST ${s.path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\n` +
      `anthropic-version: 2023-06-01\r\ncache-control: no-store\r\ncontent-length: ${bytes.length}\r\nconnection: close\r\n\r\n`
    return Buffer.concat([Buffer.from(head), bytes])
  }
  async function run(s: Shape, big: string) {
    mock.behaviour.okBody = { body: s.vendor(big), contentType: 'text/event-stream' }
    await child.stats({ gc: true, reset: true })
    const r = await sendRaw(port, raw(s), { timeoutMs: 60_000 })
    await new Promise((res) => setTimeout(res, 500))
    delete mock.behaviour.okBody
    return { r, s: await child.stats() }
  }

  it.each(SHAPES.map((s) => [s.name, s] as const))(
    '%s: under its bound, the text through',
    async (_name, shape) => {
      const bound = shape.bound ?? (shape.name.includes('translated') ? TRANSLATED_BLOCK_MS : EVENT_BLOCK_MS)
      await run(shape, text(500_000, shape.mask))
      const big = text(5_000_000, shape.mask)
      let best = Number.POSITIVE_INFINITY
      // one run, up to two more while over the bound (a collection of the last answer's garbage, or
      // another test file's work on this machine's two cores, can land in one)
      for (let i = 1; i <= 3 && (i === 1 || best > bound); i++) {
        const { r, s } = await run(shape, big)
        expect(r.status).toBe(200)
        const body = r.body.toString('utf8')
        // the text is through: masked, its placeholders put back (the model's own `<EMAIL_1>` and ours are alike here)
        const want = shape.mask ? big.replaceAll('<EMAIL_1>', 'ada@example.com') : big
        // whole words (no pair of surrogates cut), as the client's JSON escapes them (twice inside arguments)
        const from = want.indexOf(' ', 2_000_000)
        const probe = want.slice(from, want.indexOf(' ', from + 200))
        const escaped = JSON.stringify(probe).slice(1, -1)
        expect(body.length).toBeGreaterThan(5_000_000)
        if (!shape.cut) expect(body.includes(shape.args ? JSON.stringify(escaped).slice(1, -1) : escaped)).toBe(true)
        else
          expect(body.trimEnd().endsWith(shape.path === '/v1/messages' ? '{"type":"message_stop"}' : '[DONE]')).toBe(
            true,
          )
        if (shape.mask) expect(body.includes('<EMAIL_1>')).toBe(false)
        console.log(`${shape.name}, 5 MB event (run ${i}): ${s.blockCpuMs.toFixed(0)} ms of CPU in the longest block`)
        best = Math.min(best, s.blockCpuMs)
      }
      expect(best).toBeLessThanOrEqual(bound)
    },
    120_000,
  )
})
