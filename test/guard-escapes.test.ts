// Secrets spelled with JSON \u escapes (issue 21 item 2): a tool result that is itself JSON text,
// whose serializer wrote a key's characters as \u escapes, or a client whose own JSON escapes
// them. The model reads through the escapes, so the guard does: the official OpenAI client and a
// raw request go through a listening proxy, and the mock vendor gets [REDACTED:kind] in place of
// the escaped key; text whose escapes spell no secret goes through untouched.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { detectSecrets } from '../plugins/guard/detect.ts'
import { guard, secretsOf } from '../plugins/guard/index.ts'
import { clearVendorEnv, openaiClient, postJson, startMockAndProxy, type Proxy } from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'

// a fake key built at run time (no literal token in the repository): prefix, length and alphabet
let seed = 0x21e5
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
const pick = (n: number) =>
  Array.from({ length: n }, () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return ALNUM[seed % 62]
  }).join('')
const ANTHROPIC = `sk-ant-api03-${pick(90)}Ab3AA`
const GITHUB = `ghp_Ab3${pick(33)}`
// the key as a serializer that escapes letters writes it inside JSON text: sk-\u0061nt-...
const ESCAPED = ANTHROPIC.replace('sk-ant-', 'sk-\\u0061nt-')

let mock: MockUpstream
let proxy: Proxy
beforeAll(async () => {
  clearVendorEnv()
  ;({ mock, proxy } = await startMockAndProxy({ config: { plugins: [guard()] } }))
})
afterAll(async () => {
  await proxy?.close()
  await mock?.close()
})

describe('secrets behind \\u escapes', () => {
  it('the search sees through escapes inside a string, and redacts the escaped span', () => {
    const text = `{"config": {"anthropic_api_key": "${ESCAPED}", "region": "eu"}}`
    // the plain detector cannot see it: the escape breaks the key's prefix
    expect(detectSecrets(text)).toEqual([])
    const hits = secretsOf(text)
    expect(hits.map((h) => [h.kind, text.slice(h.start, h.end)])).toEqual([['anthropic-key', ESCAPED]])
    // escapes that spell no secret add nothing
    expect(secretsOf('caf\\u00e9 \\u003cdiv\\u003e \\\\u0041BC')).toEqual([])
  })

  it('a tool result holding JSON text with an escaped key reaches the vendor redacted', async () => {
    const client = openaiClient(proxy)
    const toolResult = JSON.stringify({ config: { note: 'caf\u00e9 <b>', anthropic_api_key: 'PLACEHOLDER' } })
      .replace('PLACEHOLDER', ESCAPED)
      .replace('é', '\\u00e9')
    const { response } = await client.chat.completions
      .create({
        model: 'gpt-4o-mini',
        messages: [
          { role: 'user', content: 'read the config' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'read', arguments: '{}' } }],
          },
          { role: 'tool', tool_call_id: 'call_1', content: toolResult },
        ],
      })
      .withResponse()
    expect(response.headers.get('x-agentmesh-redacted')).toBe('anthropic-key:1')
    const sent = mock.received.at(-1)!
    expect(sent.raw).not.toContain(ANTHROPIC.slice(20, 60))
    expect(sent.body.messages[2].content).toBe(toolResult.replace(ESCAPED, '[REDACTED:anthropic-key]'))
  })

  it("a key escaped in the client's own JSON text is found: the one-pass test of that text is skipped", async () => {
    const raw = JSON.stringify({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: `clone with ${GITHUB} please` }],
    }).replace('ghp_', 'ghp\\u005f')
    expect(raw).not.toContain(GITHUB)
    const res = await postJson(`${proxy.url}/v1/chat/completions`, raw, { authorization: 'Bearer sk-client' })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-agentmesh-redacted')).toBe('github-token:1')
    expect(mock.received.at(-1)!.body.messages[0].content).toBe('clone with [REDACTED:github-token] please')
  })

  it('escaped text without a secret goes through unchanged', async () => {
    const raw = JSON.stringify({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'caf\u00e9 \\u0041 <div> token count' }],
    }).replace('é', '\\u00e9')
    const res = await postJson(`${proxy.url}/v1/chat/completions`, raw, { authorization: 'Bearer sk-client' })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-agentmesh-redacted')).toBeNull()
    expect(mock.received.at(-1)!.body.messages[0].content).toBe('caf\u00e9 \\u0041 <div> token count')
  })
})
