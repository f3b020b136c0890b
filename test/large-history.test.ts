// A tool call of megabytes in a conversation's history (issue 11 item 2): an agent (Claude Code,
// Codex) wrote a file of 5 MB, so every later request carries that call. Through the fuzzer's
// proxy child (solo preset), with the longest block of the proxy's own work. The prompt's parse
// makes the canonical JSON of the call (an Anthropic tool_use input, OpenAI tool_calls arguments,
// a Responses function_call) in steps (test/large-history-prompt.test.ts: the same prompt as in
// one go); what is left in the longest block is another step that works the call in one go,
// named per shape below with its measures.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ProxyChild } from './fuzz/child.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'
import { postMeasured, startChildAndMock, stopChildAndMock } from './helpers/proxy-child.ts'
import { wordText } from './helpers/word-text.ts'

// a source file's text: quotes, backslashes, newlines, tabs, control characters and non-ASCII, all
// escaped in its JSON
const WORDS = ['const', 'x', '=', '"quoted"', 'back\\slash', 'café', '€uro', '中文字', '😀🚀', '\n', '\t', '\u0001']
const fileText = (chars: number): string => wordText(WORDS, chars)
/** a tool's arguments of about `chars` characters as a file's lines (many short strings) */
const linesArgs = (chars: number) => ({ file_path: '/src/big.ts', lines: fileText(chars).match(/.{1,40}/gs)! })

const FILE = { file_path: '/src/big.ts', content: fileText(5_000_000) }
const FILE_TEXT = JSON.stringify(FILE)
const LINES = linesArgs(5_000_000)
const LINES8 = linesArgs(8_000_000)
// as arguments' text, each line's quotes escaped again in the canonical JSON of the call
const LINES_TEXT = JSON.stringify(LINES)

const anthropicBody = (input: unknown) => (n: number) => ({
  model: 'claude-3-5-haiku-latest',
  max_tokens: 64,
  messages: [
    { role: 'user', content: `write the file ${n}` },
    { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'Write', input }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'written' }] },
  ],
})
const openaiBody = (args: string) => (n: number) => ({
  model: 'gpt-4o-mini',
  messages: [
    { role: 'user', content: `write the file ${n}` },
    {
      role: 'assistant',
      content: null,
      tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'write', arguments: args } }],
    },
    { role: 'tool', tool_call_id: 'call_1', content: 'written' },
  ],
})
const responsesBody = (args: string) => (n: number) => ({
  model: 'gpt-4o-mini',
  store: false,
  input: [
    { type: 'message', role: 'user', content: `write the file ${n}` },
    { type: 'function_call', call_id: 'call_1', name: 'write', arguments: args },
    { type: 'function_call_output', call_id: 'call_1', output: 'written' },
  ],
})
const anthropicAnswer = (input: unknown) =>
  JSON.stringify({
    id: 'msg_v',
    type: 'message',
    role: 'assistant',
    model: 'claude-3-5-haiku-latest',
    content: [{ type: 'tool_use', id: 'toolu_1', name: 'Write', input }],
    stop_reason: 'tool_use',
    stop_sequence: null,
    usage: { input_tokens: 10, output_tokens: 1000 },
  })

interface Shape {
  name: string
  path: string
  /** the client's body (`n` makes each prompt a cache miss) */
  body: (n: number) => unknown
  /** the vendor's answer, when not the mock's own */
  vendor?: () => string
  check?: (body: string) => void
}

// The breaker's loop check keys every call of the history by its arguments' canonical JSON and
// hash. In one go (plugins/breaker/loops.ts argsKey: JSON.parse of the arguments' text, then
// canonicalJson and sha256; its CPU profile: 52-70 ms a call, of which the hash 18-20, the
// canonical JSON 10-13, the parse 11-12 and its garbage collection 21-25) the OpenAI and Responses
// shapes below read 46-54 ms of CPU in the longest block for a 5 MB file, 62-72 for 5 MB of lines
// (16-30 with the breaker disabled); a call of megabytes is now keyed in slices (argsKeySliced).

const SHAPES: Shape[] = [
  {
    name: 'an Anthropic client, a tool_use input of a 5 MB file',
    path: '/v1/messages',
    body: anthropicBody(FILE),
  },
  {
    name: 'an Anthropic client, a tool_use input of 5 MB of lines',
    path: '/v1/messages',
    body: anthropicBody(LINES),
  },
  {
    name: 'an OpenAI client, tool_calls arguments of a 5 MB file',
    path: '/v1/chat/completions',
    body: openaiBody(FILE_TEXT),
  },
  {
    name: 'an OpenAI client, tool_calls arguments of 5 MB of lines',
    path: '/v1/chat/completions',
    body: openaiBody(LINES_TEXT),
  },
  {
    name: 'a Responses client, a function_call of a 5 MB file',
    path: '/v1/responses',
    body: responsesBody(FILE_TEXT),
  },
  {
    name: 'a Responses client, a function_call of 5 MB of lines',
    path: '/v1/responses',
    body: responsesBody(LINES_TEXT),
  },
  {
    // anthropic.ts read() printed the input in one JSON.stringify: 44-70 ms of CPU in the longest
    // block at 8 MB (29-48 at 5 MB); the translator now has its text made in slices first
    // (the adapter's prepareRead: inputTextsSliced), 30-39 (18-19 at 5 MB)
    name: "a Gemini client's whole answer, an Anthropic vendor's tool_use input of 8 MB of lines",
    path: '/v1beta/models/claude-3-5-haiku-latest:generateContent',
    body: (n) => ({ contents: [{ role: 'user', parts: [{ text: `write the file ${n}` }] }] }),
    vendor: () => anthropicAnswer(LINES8),
    check: (b) => expect(JSON.parse(b).candidates[0].content.parts[0].functionCall.args).toEqual(LINES8),
  },
]

/**
 * The longest block of the proxy's own work, as CPU ms (the best of up to three runs; see
 * test/large-translate-gemini-blocks.test.ts). An Anthropic client's call of 5 MB of lines: 57-71
 * on the code that made its canonical JSON in the parse in one go, 34-39 after, with the breaker's
 * key of the call (canonicalJson and sha256 of the input in one go, 30-36 ms) the rest; a file of
 * 5 MB: 35-41 before, 32-35 after. With that key made in slices too, see the figures printed.
 */
const BLOCK_MS = 45
describe('a tool call of megabytes in the history, through the proxy child', () => {
  let mock: MockUpstream
  let child: ProxyChild
  let dataDir: string
  let port: number
  beforeAll(async () => {
    ;({ mock, child, port, dataDir } = await startChildAndMock('large-history', { FUZZ_UPSTREAM_TIMEOUT_MS: '30000' }))
  }, 120_000)
  afterAll(() => stopChildAndMock({ mock, child, dataDir }))

  let n = 0
  async function run(s: Shape) {
    if (s.vendor) mock.behaviour.okBody = { body: s.vendor(), contentType: 'application/json' }
    const measured = await postMeasured({ child, port }, s.path, s.body(n++))
    delete mock.behaviour.okBody
    return measured
  }

  it.each(SHAPES.map((s) => [s.name, s] as const))(
    '%s: under the bound',
    async (_name, shape) => {
      // a first run compiles the paths
      const first = await run(shape)
      expect(first.r.status, first.r.body.toString('utf8').slice(0, 300)).toBe(200)
      shape.check?.(first.r.body.toString('utf8'))
      let best = Number.POSITIVE_INFINITY
      for (let i = 1; i <= 3 && best > BLOCK_MS; i++) {
        const { r, s } = await run(shape)
        expect(r.status).toBe(200)
        console.log(`${shape.name} (run ${i}): ${s.blockCpuMs.toFixed(0)} ms of CPU in the longest block`)
        best = Math.min(best, s.blockCpuMs)
      }
      expect(best).toBeLessThanOrEqual(BLOCK_MS)
    },
    120_000,
  )
})
