// Gemini generateContent / streamGenerateContent?alt=sse through a real proxy, via fetch,
// against the mock upstream.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { definePlugin } from '../core/plugin.ts'
import type { MeshContext } from '../core/types.ts'
import {
  clearVendorEnv,
  governanceHeadersOf,
  postJson,
  startCoreMockAndProxy,
  type Proxy,
} from './helpers/core-harness.ts'
import { MOCK_GEMINI_COUNT, type MockUpstream } from './helpers/mock-upstream.ts'

const seen: Array<{ id: string; usage: MeshContext['usage']; text?: string }> = []
const recorder = definePlugin({
  name: 'test:recorder',
  hooks: { afterResponse: (ctx) => void seen.push({ id: ctx.id, usage: { ...ctx.usage }, text: ctx.answer?.text }) },
})

let mock: MockUpstream
let proxy: Proxy

beforeAll(async () => {
  clearVendorEnv()
  ;({ mock, proxy } = await startCoreMockAndProxy({ config: { plugins: [recorder] } }))
})
afterAll(async () => {
  await proxy.close()
  await mock.close()
})

const lastReceived = () => mock.received.at(-1)!
const gen = (model: string, action: string, query = '') => `${proxy.url}/v1beta/models/${model}:${action}${query}`

describe('gemini', () => {
  it('sends the body byte for byte: tools, function calls and responses, images, unknown fields', async () => {
    const raw = JSON.stringify({
      systemInstruction: { parts: [{ text: 'Be brief.' }] },
      contents: [
        {
          role: 'user',
          parts: [
            { text: 'What is this, and the weather?' },
            { inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo=' } },
          ],
        },
        { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Oslo' } } }] },
        { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { forecast: 'rain' } } }] },
      ],
      tools: [
        {
          functionDeclarations: [
            { name: 'get_weather', parameters: { type: 'OBJECT', properties: { city: { type: 'STRING' } } } },
          ],
        },
      ],
      generationConfig: { temperature: 0.1, maxOutputTokens: 64 },
      safetySettings: [{ category: 'HARM_CATEGORY_HARASSMENT', threshold: 'BLOCK_NONE' }],
      x_agentmesh_unknown_field: { keep: true },
    })
    // key in the query string, as Google's REST examples do; it must not reach the upstream URL
    const res = await postJson(gen('gemini-2.5-flash', 'generateContent', '?key=AIza-query-key'), raw)
    expect(res.status).toBe(200)
    expect(lastReceived().raw).toBe(raw)
    expect(lastReceived().path).not.toContain('AIza-query-key')
  })

  it('passes the client key through when none is configured', async () => {
    const { mock: m2, proxy: p2 } = await startCoreMockAndProxy({ keys: false })
    try {
      const res = await fetch(`${p2.url}/v1beta/models/gemini-2.5-flash:generateContent?key=AIza-client-own`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ contents: [{ parts: [{ text: 'hi' }] }] }),
      })
      expect(res.status).toBe(200)
      expect(m2.received[0]!.headers['x-goog-api-key']).toBe('AIza-client-own')
    } finally {
      await p2.close()
      await m2.close()
    }
  })

  it('countTokens: counted at Google when a key is configured (issue 13), nothing spent', async () => {
    const before = mock.received.length
    const raw = JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hello' }] }] })
    const res = await postJson(gen('gemini-2.5-flash', 'countTokens', '?key=AIza-query-key'), raw)
    expect(res.status).toBe(200)
    expect((await res.json()).totalTokens).toBe(MOCK_GEMINI_COUNT)
    expect(res.headers.get('x-agentmesh-usage')).toBeNull()
    expect(governanceHeadersOf(res.headers)).toMatchObject({
      'x-agentmesh-vendor': 'google',
      'x-agentmesh-tokens': '0',
    })
    expect(mock.received.length).toBe(before + 1)
    expect(lastReceived().path).toBe('/v1beta/models/gemini-2.5-flash:countTokens')
    expect(lastReceived().raw).toBe(raw)
    expect(lastReceived().headers['x-goog-api-key']).toBe('AIza-test-configured')
  })

  it('countTokens: counted locally without a configured key, marked estimated, more for a longer prompt', async () => {
    const { mock: m2, proxy: p2 } = await startCoreMockAndProxy({ keys: false })
    try {
      const count = async (text: string) => {
        const res = await postJson(`${p2.url}/v1beta/models/gemini-2.5-flash:countTokens`, {
          contents: [{ role: 'user', parts: [{ text }] }],
        })
        expect(res.status).toBe(200)
        expect(res.headers.get('x-agentmesh-usage')).toBe('estimated')
        return (await res.json()).totalTokens as number
      }
      const short = await count('hello')
      const long = await count('hello '.repeat(100))
      expect(short).toBeGreaterThan(0)
      expect(long).toBeGreaterThan(short + 80)
      expect(m2.received.length).toBe(0)
    } finally {
      await p2.close()
      await m2.close()
    }
  })

  it('answers an unknown Gemini method with a 404 in the Gemini error shape', async () => {
    const res = await postJson(gen('gemini-2.5-flash', 'embedEverything'), { contents: [] })
    expect(res.status).toBe(404)
    const body = await res.json()
    expect(body.error).toMatchObject({ code: 404, status: 'NOT_FOUND' })
    expect(body.error.message).toContain('embedEverything')
  })
})
