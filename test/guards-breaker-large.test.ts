// The breaker's loop keys for a history with a tool call of megabytes (an agent that wrote a file
// resends the call on every turn): assistantTurnsSliced keys such a call in slices of the event
// loop (parse, canonical JSON and hash), and gives the keys assistantTurns gives in one go.
import { describe, expect, it } from 'vitest'
import type { MeshContext, ProtocolName } from '../core/types.ts'
import { assistantTurns, assistantTurnsSliced } from '../plugins/breaker/loops.ts'

const ctxOf = (protocol: ProtocolName, body: unknown) => ({ protocol, request: { body } }) as unknown as MeshContext

/** ~`chars` of file text: lines of words, quotes, backslashes, 2- and 4-byte characters */
function fileText(chars: number): string {
  const words = ['const', 'x', '=', '"quoted"', 'back\\slash', 'café', '中文', '😀', '\t', '{', '}']
  const parts: string[] = []
  let n = 0
  for (let i = 1; n < chars; i = (i * 7 + 3) % 1009) {
    const w = i % 23 === 0 ? '\n' : `${words[i % words.length]} `
    parts.push(w)
    n += w.length
  }
  return parts.join('')
}

const BIG = fileText(600_000)
const argsTexts: Record<string, string> = {
  json: JSON.stringify({ path: 'src/big.ts', content: BIG }),
  // the same call spelled with other whitespace and key order: the same key
  respelled: `{ "content" : ${JSON.stringify(BIG)},\n  "path": "src/big.ts" }`,
  'not JSON': `{"path": "src/big.ts", "content": ${JSON.stringify(BIG)}`,
  'a string of megabytes': JSON.stringify(BIG),
  'null among megabytes of whitespace': `${' '.repeat(300_000)}null${' '.repeat(10)}`,
}

function bodies(args: string): Array<[ProtocolName, unknown]> {
  const value = (() => {
    try {
      return JSON.parse(args)
    } catch {
      return { raw: args }
    }
  })()
  return [
    [
      'openai',
      {
        messages: [
          { role: 'user', content: 'write it' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'c1', type: 'function', function: { name: 'write', arguments: args } }],
          },
          { role: 'tool', tool_call_id: 'c1', content: 'ok' },
          { role: 'assistant', content: 'done' },
        ],
      },
    ],
    [
      'responses',
      {
        input: [
          { role: 'user', content: 'write it' },
          { type: 'function_call', call_id: 'c1', name: 'write', arguments: args },
          { type: 'function_call_output', call_id: 'c1', output: 'ok' },
        ],
      },
    ],
    [
      'anthropic',
      {
        messages: [
          { role: 'user', content: 'write it' },
          { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'write', input: value }] },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: 'ok' }] },
        ],
      },
    ],
    [
      'gemini',
      {
        contents: [
          { role: 'user', parts: [{ text: 'write it' }] },
          { role: 'model', parts: [{ functionCall: { name: 'write', args: value } }] },
        ],
      },
    ],
  ]
}

describe('breaker loop keys of a tool call of megabytes', () => {
  it.each(Object.entries(argsTexts))('%s: the sliced keys are the one-go keys', async (_name, args) => {
    for (const [protocol, body] of bodies(args)) {
      const ctx = ctxOf(protocol, body)
      const oneGo = assistantTurns(ctx)
      const sliced = await assistantTurnsSliced(ctx)
      expect(sliced, protocol).toEqual(oneGo)
      expect(oneGo.flatMap((t) => t.calls).length, protocol).toBe(1)
    }
  })

  it('two spellings of one call give one key; another call another', async () => {
    const key = async (args: string) => (await assistantTurnsSliced(ctxOf(...bodies(args)[0]!)))[0]!.calls[0]
    const a = await key(argsTexts.json!)
    expect(a).toMatch(/^write\(#[0-9a-f]{16}\)$/)
    expect(await key(argsTexts.respelled!)).toBe(a)
    expect(await key(JSON.stringify({ path: 'src/big.ts', content: `${BIG}!` }))).not.toBe(a)
  })

  it('gives the loop back while it keys: no step of more than a few ms for a call of megabytes', async () => {
    const big = JSON.stringify({ path: 'src/big.ts', content: fileText(6_000_000) })
    const ctx = ctxOf('openai', bodies(big)[0]![1])
    // compiled first
    await assistantTurnsSliced(ctx)
    let longest = 0
    let last = performance.now()
    let ticking = true
    const tick = () => {
      const now = performance.now()
      longest = Math.max(longest, now - last)
      last = now
      if (ticking) setImmediate(tick)
    }
    setImmediate(tick)
    last = performance.now()
    await assistantTurnsSliced(ctx)
    ticking = false
    // the stretch that ends with the work itself (in one go, the only one)
    longest = Math.max(longest, performance.now() - last)
    // in one go the parse, the canonical JSON and the hash of this call took one stretch of
    // tens of ms; sliced, each stretch is about a slice (10 ms) of the event loop
    console.log(`longest stretch ${longest.toFixed(1)} ms`)
    expect(longest).toBeLessThan(30)
  })
})
