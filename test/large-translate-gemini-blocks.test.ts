// Gemini shapes of megabytes through the fuzzer's proxy child (issue 11 item 2), with the longest
// block of the proxy's own work: a Gemini vendor's function call of 5 MB of arguments for an
// OpenAI client (whole and streamed), a Gemini client's functionResponse of 100,000 keys (to an
// OpenAI, Anthropic or Gemini vendor), a Gemini client's function call collected from 5 MB of
// OpenAI or Anthropic deltas, and those Anthropic deltas for an OpenAI client. The values are
// worked in slices (test/large-gemini-sliced.test.ts compares them with the one-go code's).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ProxyChild } from './fuzz/child.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'
import { postMeasured, startChildAndMock, stopChildAndMock } from './helpers/proxy-child.ts'
import { sse } from './helpers/vendor-streams.ts'
import { wordText } from './helpers/word-text.ts'

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
const text = (chars: number): string => wordText(WORDS, chars)
/** a tool's arguments of about `chars` characters: a file's lines (many short strings: slower to parse and print than one) */
const argsOf = (chars: number) => ({ file_path: '/tmp/x', lines: text(chars).match(/.{1,40}/gs)! })
const keysOf = (n: number, seed: number) => {
  const o: Record<string, unknown> = { seed }
  for (let i = 0; i < n; i++) o[`key_${i}`] = `value ${i}`
  return o
}

const usageMetadata = { promptTokenCount: 10, candidatesTokenCount: 1000, totalTokenCount: 1010 }
const geminiCall = (args: unknown) => ({
  candidates: [
    {
      index: 0,
      content: { role: 'model', parts: [{ functionCall: { name: 'write', args } }] },
      finishReason: 'STOP',
    },
  ],
  usageMetadata,
  modelVersion: 'gemini-2.5-pro',
  responseId: 'r1',
})
function anthropicToolDeltas(args: unknown): string {
  const e = (d: Record<string, unknown>) => sse(d, String(d.type))
  const t = JSON.stringify(args)
  const out = [
    e({
      type: 'message_start',
      message: { id: 'msg_v', type: 'message', role: 'assistant', model: 'claude-3-5-haiku-latest', content: [] },
    }),
    e({
      type: 'content_block_start',
      index: 0,
      content_block: { type: 'tool_use', id: 'toolu_1', name: 'write', input: {} },
    }),
  ]
  for (let i = 0; i < t.length; i += 200)
    out.push(
      e({
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'input_json_delta', partial_json: t.slice(i, i + 200) },
      }),
    )
  out.push(
    e({ type: 'content_block_stop', index: 0 }),
    e({
      type: 'message_delta',
      delta: { stop_reason: 'tool_use', stop_sequence: null },
      usage: { output_tokens: 1000 },
    }),
    e({ type: 'message_stop' }),
  )
  return out.join('')
}
function openaiToolDeltas(args: unknown): string {
  const c = (delta: unknown, finish: string | null = null) =>
    sse({
      id: 'chatcmpl-v',
      object: 'chat.completion.chunk',
      created: 1,
      model: 'gpt-4o-mini',
      choices: [{ index: 0, delta, finish_reason: finish }],
    })
  const t = JSON.stringify(args)
  const out = [
    c({ role: 'assistant', content: null }),
    c({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'write', arguments: '' } }] }),
  ]
  for (let i = 0; i < t.length; i += 200)
    out.push(c({ tool_calls: [{ index: 0, function: { arguments: t.slice(i, i + 200) } }] }))
  out.push(c({}, 'tool_calls'), 'data: [DONE]\n\n')
  return out.join('')
}
/** an OpenAI vendor's whole answer: one tool call of these arguments */
const openaiWhole = (args: string) =>
  JSON.stringify({
    id: 'c',
    object: 'chat.completion',
    created: 1,
    model: 'gpt-4o-mini',
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'write', arguments: args } }],
        },
        finish_reason: 'tool_calls',
      },
    ],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
  })
const small = {
  openai: JSON.stringify({
    id: 'c',
    object: 'chat.completion',
    created: 1,
    model: 'gpt-4o-mini',
    choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
  }),
  anthropic: JSON.stringify({
    id: 'm',
    type: 'message',
    role: 'assistant',
    model: 'claude-3-5-haiku-latest',
    content: [{ type: 'text', text: 'ok' }],
    stop_reason: 'end_turn',
    stop_sequence: null,
    usage: { input_tokens: 1, output_tokens: 1 },
  }),
  gemini: JSON.stringify({
    candidates: [{ index: 0, content: { role: 'model', parts: [{ text: 'ok' }] }, finishReason: 'STOP' }],
    usageMetadata,
    modelVersion: 'gemini-2.5-pro',
  }),
}

/** the data of each SSE event of a body */
const events = (body: string) =>
  body
    .split('\n\n')
    .map((e) =>
      e
        .split('\n')
        .find((l) => l.startsWith('data: '))
        ?.slice(6),
    )
    .filter((d): d is string => d !== undefined && d !== '[DONE]')
/** the arguments an OpenAI client got, from a whole body or its stream's deltas */
function openaiArgs(body: string, stream: boolean): string {
  if (!stream) return JSON.parse(body).choices[0].message.tool_calls[0].function.arguments
  let args = ''
  for (const d of events(body))
    for (const tc of JSON.parse(d).choices?.[0]?.delta?.tool_calls ?? []) args += tc.function?.arguments ?? ''
  return args
}
/** the arguments of the function call a Gemini client got */
function geminiArgs(body: string): unknown {
  for (const d of events(body)) {
    const call = JSON.parse(d).candidates?.[0]?.content?.parts?.find((p: any) => p.functionCall)
    if (call) return call.functionCall.args
  }
  return undefined
}

interface Shape {
  name: string
  path: string
  /** the client's body (`n` makes each prompt a cache miss) */
  body: (n: number) => unknown
  vendor: () => { body: string; contentType: string }
  /** what the client must have got */
  check: (body: string) => void
  /** the bound when not BLOCK_MS */
  bound?: number
}
const chat = (model: string, stream: boolean) => (n: number) => ({
  model,
  ...(stream ? { stream: true } : {}),
  messages: [{ role: 'user', content: `write ${n}` }],
})
const geminiAsk = (n: number) => ({ contents: [{ role: 'user', parts: [{ text: `write ${n}` }] }] })
const functionResponse = (n: number) => ({
  contents: [
    { role: 'user', parts: [{ text: 'look' }] },
    { role: 'model', parts: [{ functionCall: { name: 'look', args: {} } }] },
    { role: 'user', parts: [{ functionResponse: { name: 'look', response: keysOf(100_000, n) } }] },
  ],
})
const ARGS = argsOf(5_000_000)
const ARGS_TEXT = JSON.stringify(ARGS)
// streamed, the old code's one-go work on 5 MB was spread over a few turns (35-48 ms, close to the bound): 8 MB
const ARGS8 = argsOf(8_000_000)
const ARGS8_TEXT = JSON.stringify(ARGS8)
const json = (body: string) => ({ body, contentType: 'application/json' })
const stream = (body: string) => ({ body, contentType: 'text/event-stream' })

const SHAPES: Shape[] = [
  {
    name: 'a Gemini call of 5 MB, whole, for an OpenAI client',
    path: '/v1/chat/completions',
    body: chat('gemini-2.5-pro', false),
    vendor: () => json(JSON.stringify(geminiCall(ARGS))),
    check: (b) => expect(openaiArgs(b, false)).toBe(ARGS_TEXT),
  },
  {
    name: 'a Gemini call of 8 MB, streamed, for an OpenAI client',
    path: '/v1/chat/completions',
    body: chat('gemini-2.5-pro', true),
    vendor: () => stream(sse(geminiCall(ARGS8))),
    check: (b) => expect(openaiArgs(b, true)).toBe(ARGS8_TEXT),
  },
  ...(['gpt-4o-mini', 'claude-3-5-haiku-latest', 'gemini-2.5-pro'] as const).map(
    (model): Shape => ({
      name: `a Gemini functionResponse of 100,000 keys to ${model}`,
      path: `/v1beta/models/${model}:generateContent`,
      body: functionResponse,
      vendor: () =>
        json(model.startsWith('gpt') ? small.openai : model.startsWith('claude') ? small.anthropic : small.gemini),
      check: (b) => expect(JSON.parse(b).candidates[0].content.parts[0].text).toBe('ok'),
      // one Object.keys of the 100,000 keys is 20-35 ms here, in a turn of its own: in the proxy's
      // parse (core/protocols/shared.ts) and in each plugin that walks the body, as in this code
      bound: 40,
    }),
  ),
  {
    name: "a Gemini client's whole answer, an OpenAI vendor's call of 8 MB",
    path: '/v1beta/models/gpt-4o-mini:generateContent',
    body: geminiAsk,
    vendor: () => json(openaiWhole(ARGS8_TEXT)),
    check: (b) => expect(JSON.parse(b).candidates[0].content.parts[0].functionCall.args).toEqual(ARGS8),
  },
  {
    name: "a Gemini client's call from 5 MB of OpenAI deltas",
    path: '/v1beta/models/gpt-4o-mini:streamGenerateContent?alt=sse',
    body: geminiAsk,
    vendor: () => stream(openaiToolDeltas(ARGS)),
    check: (b) => expect(geminiArgs(b)).toEqual(ARGS),
  },
  {
    name: "a Gemini client's call from 5 MB of Anthropic deltas",
    path: '/v1beta/models/claude-3-5-haiku-latest:streamGenerateContent?alt=sse',
    body: geminiAsk,
    vendor: () => stream(anthropicToolDeltas(ARGS)),
    check: (b) => expect(geminiArgs(b)).toEqual(ARGS),
  },
  {
    name: "an OpenAI client's call from 5 MB of Anthropic deltas",
    path: '/v1/chat/completions',
    body: chat('claude-3-5-haiku-latest', true),
    vendor: () => stream(anthropicToolDeltas(ARGS)),
    check: (b) => expect(openaiArgs(b, true)).toBe(ARGS_TEXT),
  },
]

/**
 * The longest block of the proxy's own work, as CPU ms (the best of up to RUNS runs: the CPU
 * counted is the whole process's; a collection of the last answer's garbage or another test
 * file's work on the machine's two cores can land in one). This test on the code before these
 * values were worked in slices (loads 1-3, 3 runs): the whole call 42-55, streamed (8 MB) 52-59,
 * the functionResponse 104-133 for each vendor, a Gemini client's whole answer of an OpenAI call
 * of 8 MB 60-64, a Gemini client's call 92-106 (OpenAI deltas) and 89-92 (Anthropic); after,
 * 20-37 for all. The OpenAI client of Anthropic deltas was 18-28 before
 * and is the same after (checked that it stays so).
 */
const BLOCK_MS = 35
// Runs of a shape until one is under its bound. Three were not always enough on a loaded CI
// machine: the 100,000-key functionResponse to gemini-2.5-pro read 55, 44 and 49 ms against its 40
// in one run of .ci/run; in the eight before it, its runs read 28-48 and one of the first three
// always came under (once only the third: 48, 47, 38). The noise is the other test files' work on
// the two cores, not the proxy's.
const RUNS = 5

describe('Gemini shapes of megabytes through the proxy child', () => {
  let mock: MockUpstream
  let child: ProxyChild
  let dataDir: string
  let port: number
  beforeAll(async () => {
    ;({ mock, child, port, dataDir } = await startChildAndMock('large-translate-gemini', {
      FUZZ_UPSTREAM_TIMEOUT_MS: '30000',
    }))
  }, 120_000)
  afterAll(() => stopChildAndMock({ mock, child, dataDir }))

  let n = 0
  async function run(s: Shape) {
    mock.behaviour.okBody = s.vendor()
    const measured = await postMeasured({ child, port }, s.path, s.body(n++))
    delete mock.behaviour.okBody
    return measured
  }

  it.each(SHAPES.map((s) => [s.name, s] as const))(
    '%s: under its bound, the value through',
    async (_name, shape) => {
      // a first run compiles the paths
      const first = await run(shape)
      expect(first.r.status).toBe(200)
      shape.check(first.r.body.toString('utf8'))
      let best = Number.POSITIVE_INFINITY
      const bound = shape.bound ?? BLOCK_MS
      for (let i = 1; i <= RUNS && best > bound; i++) {
        const { r, s } = await run(shape)
        expect(r.status).toBe(200)
        console.log(`${shape.name} (run ${i}): ${s.blockCpuMs.toFixed(0)} ms of CPU in the longest block`)
        best = Math.min(best, s.blockCpuMs)
      }
      expect(best).toBeLessThanOrEqual(bound)
    },
    120_000,
  )
})
