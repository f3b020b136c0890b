// A tool call of megabytes in a conversation's history (issue 11 item 2): the prompt a body of
// megabytes gets from parseSliced (its large blocks, tool calls and items made into canonical JSON
// in steps, core/canonical.ts canonicalSteps) is the one parse() makes in one go, byte for byte,
// so the cache keys are the same; and no step prints the call in one go (before: one
// JSON.stringify of the whole call, 5 MB, 40-60 ms of one step for an Anthropic client).
// test/large-history.test.ts measures the shapes through the proxy.
import { describe, expect, it } from 'vitest'
import { canonicalJson, canonicalSha256, canonicalSteps } from '../core/canonical.ts'
import { inputTextsSliced } from '../core/protocols/anthropic.ts'
import { protocols } from '../core/protocols/index.ts'
import { runGenerator } from '../core/protocols/shared.ts'
import { Slicer } from '../core/slicer.ts'
import type { ProtocolName } from '../core/types.ts'
import { longestJson } from './helpers/longest-block.ts'
import { wordText } from './helpers/word-text.ts'

// a source file's text: quotes, backslashes, control characters, non-ASCII and surrogate pairs
const WORDS = ['const', 'x', '=', '"quoted"', 'back\\slash', 'café', '€uro', '中文字', '😀🚀', '\n', '\t', '\u0001']
const fileText = (chars: number): string => wordText(WORDS, chars)
const FILE = { file_path: '/src/big.ts', content: fileText(2_000_000) }
const LINES = { file_path: '/src/big.ts', lines: fileText(2_000_000).match(/.{1,40}/gs)! }
const KEYS = Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`k${(i * 7919) % 20_000}`, `v${i}`]))

const anthropic = (input: unknown) => ({
  model: 'm',
  max_tokens: 64,
  messages: [
    { role: 'user', content: 'write' },
    {
      role: 'assistant',
      content: [
        { type: 'text', text: 'writing' },
        { type: 'tool_use', id: 'toolu_1', name: 'Write', input, cache_control: { type: 'ephemeral' } },
      ],
    },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: FILE.content }] },
  ],
})
const openai = (args: string) => ({
  model: 'm',
  messages: [
    { role: 'user', content: 'write' },
    {
      role: 'assistant',
      content: null,
      tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'write', arguments: args } }],
    },
    { role: 'tool', tool_call_id: 'call_1', content: 'ok' },
    { role: 'user', content: [{ type: 'input_audio', input_audio: { data: FILE.content, format: 'wav' } }] },
  ],
})
const responses = (args: string) => ({
  model: 'm',
  input: [
    { type: 'message', role: 'user', content: 'write' },
    { type: 'function_call', call_id: 'c1', name: 'write', arguments: args, status: 'completed' },
    { type: 'function_call_output', call_id: 'c1', output: 'ok' },
    { type: 'custom_tool_call', call_id: 'c2', name: 'patch', input: FILE.content },
  ],
})
const gemini = (args: unknown) => ({
  contents: [
    { role: 'user', parts: [{ text: 'write' }] },
    { role: 'model', parts: [{ functionCall: { name: 'write', args } }] },
    { role: 'user', parts: [{ functionResponse: { name: 'write', response: { ok: true } } }] },
  ],
})

const SHAPES: Array<[string, ProtocolName, unknown]> = [
  ['anthropic, a file', 'anthropic', anthropic(FILE)],
  ['anthropic, lines', 'anthropic', anthropic(LINES)],
  ['anthropic, 20,000 keys out of order', 'anthropic', anthropic(KEYS)],
  ['openai, a file', 'openai', openai(JSON.stringify(FILE))],
  ['openai, lines', 'openai', openai(JSON.stringify(LINES))],
  ['responses, a file', 'responses', responses(JSON.stringify(FILE))],
  ['responses, lines', 'responses', responses(JSON.stringify(LINES))],
  ['gemini, lines', 'gemini', gemini(LINES)],
]

describe('a tool call of megabytes in the history: the prompt of parseSliced', () => {
  it.each(SHAPES)('%s: the one-go prompt, no call printed in one go', async (_name, protocol, body) => {
    const opts = { pathModel: 'gemini-2.5-pro' }
    const oneGo = protocols[protocol].parse(body, opts)
    const { value: sliced, longest } = await longestJson(
      () => protocols[protocol].parseSliced(body, opts, new Slicer(10)),
      { parse: false },
    )
    expect(JSON.stringify(sliced)).toBe(JSON.stringify(oneGo))
    expect(canonicalSha256(sliced)).toBe(canonicalSha256(oneGo))
    // before: the call's canonical JSON in one JSON.stringify (2 MB and more)
    expect(longest).toBeLessThan(256 * 1024)
  })
})

describe('canonicalSteps', () => {
  const cases: Array<[string, unknown]> = [
    ['a long string with a surrogate pair at every cut', '😀'.repeat(200_000)],
    ['a long string with lone surrogates', `a${'\ud800x\udc00'.repeat(100_000)}\ud83d`],
    ['a long string, one character past a cut', 'é'.repeat(64 * 1024 + 1)],
    [
      'values outside JSON',
      {
        z: [undefined, () => 1, Symbol('s'), 1n, Number.NaN, -0, 1e21, new Date(0), { toJSON: () => undefined }],
        a: { toJSON: () => ({ b: 2, a: 1 }) },
        m: undefined,
        f: () => 1,
        d: new Date(0),
        big: 2n,
        s: 'x'.repeat(100_000),
        u: { toJSON: () => undefined },
        n: null,
      },
    ],
    ['an object of 20,000 keys out of order', KEYS],
    ['nested arrays and objects', { b: [[{ d: 1, c: [LINES.lines.slice(0, 3000)] }]], a: LINES.lines.slice(0, 5000) }],
    ['empty containers', { b: [], a: {}, c: [[], {}] }],
  ]
  it.each(cases)('%s: canonicalJson, byte for byte', (_name, value) => {
    expect(runGenerator(canonicalSteps(value))).toBe(canonicalJson(value))
  })
})

describe("an Anthropic answer's tool_use input of megabytes, read whole (for a Gemini client)", () => {
  it('inputTextsSliced makes its text in slices: read() gives the same arguments without printing it in one go', async () => {
    const answer = (input: unknown) => ({
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      model: 'claude',
      content: [
        { type: 'text', text: 'writing' },
        { type: 'tool_use', id: 'toolu_1', name: 'Write', input },
        { type: 'tool_use', id: 'toolu_2', name: 'Small', input: { a: 1 } },
      ],
      stop_reason: 'tool_use',
      usage: { input_tokens: 1, output_tokens: 1 },
    })
    const oneGo = protocols.anthropic.read(answer(structuredClone(LINES)))
    const json = answer(structuredClone(LINES))
    await inputTextsSliced(json, new Slicer(10))
    const { value, longest } = await longestJson(async () => protocols.anthropic.read(json), { parse: false })
    expect(value).toEqual({ ...oneGo, raw: value.raw })
    expect(value.toolCalls[0]!.arguments).toBe(JSON.stringify(LINES))
    // before: read() printed the input in one JSON.stringify
    expect(longest).toBeLessThan(256 * 1024)
  })
})
