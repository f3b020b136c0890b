// A translated request of megabytes (issue 11 item 2): a tool call of megabytes in the history of
// an OpenAI, Anthropic or Responses client's body, sent to a vendor of another protocol. Its JSON
// text (an Anthropic input) is made, or its text (OpenAI, Responses arguments) parsed for a vendor
// that takes an object, in slices before the body is translated: the same vendor body as the
// one-go translation, and no JSON.parse or JSON.stringify of the whole call left.
import { describe, expect, it } from 'vitest'
import { SLICED_PARSE_CHARS } from '../core/protocols/shared.ts'
import { translateRequest } from '../core/translate/index.ts'
import type { MeshContext, ProtocolName, Vendor } from '../core/types.ts'
import { longestJson } from './helpers/longest-block.ts'

const args = {
  file_path: '/tmp/x',
  lines: Array.from({ length: 40_000 }, (_, i) => `line ${i}: "é😀\\ ${'w'.repeat(i % 17)}`),
}
const argsText = JSON.stringify(args)

/** a client's body whose history holds one call of `args` and its result */
function bodyOf(from: ProtocolName): Record<string, unknown> {
  if (from === 'anthropic')
    return {
      model: 'm',
      max_tokens: 64,
      messages: [
        { role: 'user', content: 'write' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'tu1', name: 'write', input: args }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'tu1', content: 'ok' }] },
      ],
    }
  if (from === 'openai')
    return {
      model: 'm',
      messages: [
        { role: 'user', content: 'write' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'c1', type: 'function', function: { name: 'write', arguments: argsText } }],
        },
        { role: 'tool', tool_call_id: 'c1', content: 'ok' },
      ],
    }
  return {
    model: 'm',
    store: false,
    input: [
      { type: 'message', role: 'user', content: 'write' },
      { type: 'function_call', call_id: 'c1', name: 'write', arguments: argsText },
      { type: 'function_call_output', call_id: 'c1', output: 'ok' },
    ],
  }
}

describe('a translated request with a tool call of megabytes in its history', () => {
  it.each([
    ['anthropic', 'openai'],
    ['anthropic', 'gemini'],
    ['openai', 'anthropic'],
    ['openai', 'gemini'],
    ['responses', 'anthropic'],
    ['responses', 'gemini'],
  ] as const)('a %s client, a %s vendor: the one-go body, the call worked in slices', async (from, to) => {
    const clientBody = bodyOf(from)
    const rawBody = JSON.stringify(clientBody)
    expect(rawBody.length).toBeGreaterThan(SLICED_PARSE_CHARS)
    const ctx = (raw: string) =>
      ({
        protocol: from,
        prompt: { stream: false },
        route: { model: 'm', vendor: 'v' },
        headers: {},
        identity: { team: 't' },
        request: { body: structuredClone(clientBody), rawBody: raw, search: '', dirty: false },
      }) as unknown as MeshContext
    // the one-go translation: a small body's path
    const small = ctx('')
    await translateRequest(small, { protocol: to } as Vendor)
    const large = ctx(rawBody)
    const { longest } = await longestJson(async () => translateRequest(large, { protocol: to } as Vendor))
    expect(large.request.body).toEqual(small.request.body)
    expect(JSON.stringify(large.request.body)).toContain(
      to === 'openai' ? JSON.stringify(argsText).slice(1, -1) : argsText.slice(1, -1),
    )
    // before: one JSON.stringify of the input (Anthropic) or JSON.parse of the arguments (OpenAI, Responses)
    expect(longest).toBeLessThan(SLICED_PARSE_CHARS)
  })

  it('arguments of megabytes that are not JSON: the same 400 as in one go', async () => {
    const body = bodyOf('openai') as any
    body.messages[1].tool_calls[0].function.arguments = `{"a":"${'x'.repeat(SLICED_PARSE_CHARS)}`
    const raw = JSON.stringify(body)
    const ctx = (r: string) =>
      ({
        protocol: 'openai',
        prompt: { stream: false },
        route: { model: 'm', vendor: 'v' },
        headers: {},
        request: { body: structuredClone(body), rawBody: r, search: '', dirty: false },
      }) as unknown as MeshContext
    let oneGo: unknown
    try {
      await translateRequest(ctx(''), { protocol: 'anthropic' } as Vendor)
    } catch (err) {
      oneGo = err
    }
    expect(oneGo).toBeInstanceOf(Error)
    await expect(async () => translateRequest(ctx(raw), { protocol: 'anthropic' } as Vendor)).rejects.toEqual(oneGo)
  })
})
