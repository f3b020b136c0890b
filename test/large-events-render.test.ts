// A tool call whose arguments are megabytes, rendered as a stream (a streamed cache hit, issue 11
// item 2): the OpenAI chunks, Anthropic input_json_delta events and Responses argument deltas
// carry the arguments a piece at a time (ARGS_PIECE_CHARS), as a vendor streams them, and the
// Responses events that carry a whole text, item or answer are made a piece of JSON at a time
// (jsonTextPieces), so no step of the render (respond.ts pauses between them) holds megabytes.
// The stream reader of each protocol must rebuild the same answer; arguments up to
// ARGS_PIECE_CHARS render as before (one chunk).
import { describe, expect, it } from 'vitest'
import { jsonTextPieces } from '../core/json-sliced.ts'
import { protocols } from '../core/protocols/index.ts'
import { ARGS_PIECE_CHARS } from '../core/protocols/shared.ts'
import type { CanonicalAnswer } from '../core/types.ts'

function prng(seed: number) {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}
const BITS = ['a', 'é', '😀', '"', '\\', '\n', ' ', 'word', '中', '\u0001', '\ud800', '</']
const words = (r: () => number, n: number) => {
  let s = ''
  for (let i = 0; i < n; i++) s += BITS[Math.floor(r() * BITS.length)]
  return s
}
/** a random JSON value: small members, long strings, nested arrays and objects */
function value(r: () => number, depth: number): unknown {
  const x = r()
  if (depth > 4 || x < 0.3)
    return x < 0.1 ? Math.floor(r() * 1e6) / 7 : x < 0.15 ? null : x < 0.2 ? r() < 0.5 : words(r, 3)
  if (x < 0.45) return words(r, 1_000 + Math.floor(r() * 40_000))
  if (x < 0.7) return Array.from({ length: Math.floor(r() * 90) }, () => value(r, depth + 1))
  const o: Record<string, unknown> = {}
  for (let i = Math.floor(r() * 90); i > 0; i--) o[words(r, 2) + i] = value(r, depth + 1)
  return o
}

describe('jsonTextPieces: the pieces of JSON.stringify', () => {
  it('random values: joined, JSON.stringify text; a value of megabytes in pieces of about the size', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const r = prng(seed)
      const v = seed % 10 === 0 ? { content: words(r, 600_000), path: '/x' } : value(r, 0)
      const pieces = [...jsonTextPieces(v, 4096)]
      expect(pieces.join('')).toBe(JSON.stringify(v))
      // no piece is much longer than the size (a small member, up to 16K, may end one)
      for (const p of pieces) expect(p.length).toBeLessThan(4096 + 20_000)
    }
    expect([...jsonTextPieces('short', 4096)]).toEqual(['"short"'])
    expect([...jsonTextPieces({ a: [1, 'b'] }, 4096)]).toEqual(['{"a":[1,"b"]}'])
  })
})

const usage = { inputTokens: 1, outputTokens: 2, cacheReadTokens: 0, cacheWriteTokens: 0 }
function answer(p: 'openai' | 'anthropic' | 'responses', args: string): CanonicalAnswer {
  const a: CanonicalAnswer = {
    id: p === 'responses' ? 'resp_a' : 'a',
    model: 'm',
    text: 'short',
    toolCalls: [{ id: 'call_1', name: 'write', arguments: args }],
    stopReason: 'tool_calls',
    usage,
  }
  if (p !== 'anthropic') return a
  const body = {
    id: 'a',
    type: 'message',
    role: 'assistant',
    model: 'm',
    content: [
      { type: 'text', text: 'short' },
      { type: 'tool_use', id: 'call_1', name: 'write', input: JSON.parse(args) },
    ],
    stop_reason: 'tool_use',
    usage: { input_tokens: 1, output_tokens: 2 },
  }
  return { ...a, raw: { protocol: 'anthropic', body } }
}
/** the answer a protocol's stream reader builds from the rendered stream */
function readBack(p: 'openai' | 'anthropic' | 'responses', stream: string): CanonicalAnswer | undefined {
  const reader = protocols[p].streamReader({ hideUsageChunk: false })
  for (const event of stream.split('\n\n')) {
    const data = event.split('\n').find((l) => l.startsWith('data: '))
    if (data) reader.event(data.slice(6))
  }
  return reader.finish()
}

describe('a rendered stream of a tool call of megabytes', () => {
  it.each(['openai', 'anthropic', 'responses'] as const)(
    '%s: no step holds the arguments whole, the reader rebuilds them',
    (p) => {
      const r = prng(p.length)
      const args = JSON.stringify({ file_path: '/tmp/x', content: words(r, 1_500_000) })
      const steps = [...protocols[p].renderStreamSteps(answer(p, args))]
      const longest = Math.max(...steps.map((s) => s.length))
      // a step is one event or a piece of one; before, the arguments were one event of 3 MB+
      expect(longest).toBeLessThan(4 * ARGS_PIECE_CHARS)
      const back = readBack(p, steps.join(''))
      expect(back).toBeDefined()
      // Anthropic's input is an object: the text the reader makes of it is JSON.stringify's
      expect(back!.toolCalls[0]!.arguments).toBe(args)
      // renderStream is the steps joined (the time a render stamps may tick between the two)
      const plain = (s: string) => s.replace(/"(created|created_at)":\d+/g, '"$1":0')
      expect(plain(steps.join(''))).toBe(plain(protocols[p].renderStream(answer(p, args))))
    },
    60_000,
  )

  it.each(['openai', 'anthropic', 'responses'] as const)(
    '%s: arguments up to ARGS_PIECE_CHARS are one delta, as before',
    (p) => {
      const args = JSON.stringify({ q: 'x'.repeat(ARGS_PIECE_CHARS - 20) })
      const stream = protocols[p].renderStream(answer(p, args))
      const marker = {
        openai: '"arguments":"{',
        anthropic: 'input_json_delta',
        responses: 'function_call_arguments.delta',
      }[p]
      const deltas = stream.split('\n\n').filter((e) => e.includes(marker))
      expect(deltas.length).toBe(1)
      expect(readBack(p, stream)!.toolCalls[0]!.arguments).toBe(args)
    },
  )
})
