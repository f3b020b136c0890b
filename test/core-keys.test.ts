// Which key goes upstream: configured key over the client's, env vars, the client's own key
// passed through (x-api-key or Authorization: Bearer), virtual keys never; keys never in logs.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createAgentMesh } from '../core/app.ts'
import { createLogger } from '../core/log.ts'
import { definePlugin } from '../core/plugin.ts'
import {
  clearVendorEnv,
  openaiClient,
  anthropicClient,
  postJson,
  startCoreMockAndProxy,
  startProxy,
  tempDir,
  type Proxy,
} from './helpers/core-harness.ts'
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'

const OA = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }
const AN = { model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }
const GE = { contents: [{ parts: [{ text: 'hi' }] }] }

beforeAll(() => clearVendorEnv())
afterEach(() => clearVendorEnv())

describe('no key configured: the client key is passed through', () => {
  let mock: MockUpstream
  let proxy: Proxy
  beforeAll(async () => {
    ;({ mock, proxy } = await startCoreMockAndProxy({ keys: false }))
  })
  afterAll(async () => {
    await proxy.close()
    await mock.close()
  })
  const last = () => mock.received.at(-1)!.headers

  it('openai: Authorization: Bearer from the SDK', async () => {
    await openaiClient(proxy, [], { apiKey: 'sk-client-own-1' }).chat.completions.create(OA as any)
    expect(last().authorization).toBe('Bearer sk-client-own-1')
  })

  it('openai: x-api-key is accepted too and goes up as Bearer', async () => {
    const res = await postJson(proxy.url + '/v1/chat/completions', OA, { 'x-api-key': 'sk-client-own-2' })
    expect(res.status).toBe(200)
    expect(last().authorization).toBe('Bearer sk-client-own-2')
    expect(last()['x-api-key']).toBeUndefined()
  })

  it("anthropic: the SDK's key keeps the header it came in (this SDK sends Authorization: Bearer)", async () => {
    await anthropicClient(proxy, [], { apiKey: 'sk-ant-own-3' }).messages.create(AN as any)
    expect(last().authorization).toBe('Bearer sk-ant-own-3')
    expect(last()['x-api-key']).toBeUndefined()
    await postJson(proxy.url + '/v1/messages', AN, { 'x-api-key': 'sk-ant-own-3b' })
    expect(last()['x-api-key']).toBe('sk-ant-own-3b')
    expect(last().authorization).toBeUndefined()
  })

  it('anthropic: an OAuth Bearer token (Claude subscriptions) stays a Bearer token (issue 12)', async () => {
    await anthropicClient(proxy, [], { authToken: 'sk-ant-oat01-own-4' }).messages.create(AN as any)
    expect(last().authorization).toBe('Bearer sk-ant-oat01-own-4')
    expect(last()['x-api-key']).toBeUndefined()
  })

  it('gemini: x-goog-api-key', async () => {
    await postJson(proxy.url + '/v1beta/models/gemini-2.5-flash:generateContent', GE, {
      'x-goog-api-key': 'AIza-own-5',
    })
    expect(last()['x-goog-api-key']).toBe('AIza-own-5')
  })

  it('a virtual key (am-...) is never forwarded, in any header', async () => {
    const vk = 'am-virtual-key-0123456789'
    await postJson(proxy.url + '/v1/chat/completions', OA, { authorization: `Bearer ${vk}` })
    await postJson(proxy.url + '/v1/messages', AN, { 'x-api-key': vk })
    await postJson(proxy.url + '/v1beta/models/gemini-2.5-flash:generateContent', GE, { 'x-goog-api-key': vk })
    const lastThree = mock.received.slice(-3)
    expect(lastThree.map((r) => r.path)).toEqual([
      '/v1/chat/completions',
      '/v1/messages',
      '/v1beta/models/gemini-2.5-flash:generateContent',
    ])
    for (const r of lastThree) {
      expect(JSON.stringify(r.headers)).not.toContain('am-virtual')
      expect(r.headers.authorization).toBeUndefined()
      expect(r.headers['x-api-key']).toBeUndefined()
      expect(r.headers['x-goog-api-key']).toBeUndefined()
    }
  })
})

describe('keys from the environment', () => {
  it('OPENAI_API_KEY, ANTHROPIC_API_KEY and GEMINI_API_KEY are used when config has none, over the client key', async () => {
    process.env.OPENAI_API_KEY = 'sk-env-openai'
    process.env.ANTHROPIC_API_KEY = 'sk-ant-env'
    process.env.GEMINI_API_KEY = 'AIza-env'
    const { mock, proxy } = await startCoreMockAndProxy({ keys: false })
    try {
      await openaiClient(proxy, [], { apiKey: 'sk-client' }).chat.completions.create(OA as any)
      expect(mock.received.at(-1)!.headers.authorization).toBe('Bearer sk-env-openai')
      await anthropicClient(proxy, [], { apiKey: 'sk-ant-client' }).messages.create(AN as any)
      expect(mock.received.at(-1)!.headers['x-api-key']).toBe('sk-ant-env')
      await postJson(proxy.url + '/v1beta/models/gemini-2.5-flash:generateContent', GE, {
        'x-goog-api-key': 'AIza-client',
      })
      expect(mock.received.at(-1)!.headers['x-goog-api-key']).toBe('AIza-env')
    } finally {
      await proxy.close()
      await mock.close()
    }
  })

  it('a configured key wins over the env var', async () => {
    process.env.OPENAI_API_KEY = 'sk-env-openai'
    const { mock, proxy } = await startCoreMockAndProxy({ keys: true })
    try {
      await openaiClient(proxy).chat.completions.create(OA as any)
      expect(mock.received.at(-1)!.headers.authorization).toBe('Bearer sk-test-openai-configured')
    } finally {
      await proxy.close()
      await mock.close()
    }
  })
})

describe('keys never reach the log', () => {
  it('not at debug level, not on upstream failures, not when a careless plugin puts one in its error', async () => {
    const lines: string[] = []
    const mock = await startMockUpstream({ status: 401 })
    const dataDir = tempDir()
    const careless = definePlugin({
      name: 'careless',
      hooks: {
        beforeRequest(ctx) {
          if (ctx.request.headers.get('x-test') === 'leak')
            throw new Error(
              `rejected credentials ${ctx.request.headers.get('authorization')} / ${ctx.request.headers.get('x-api-key')}`,
            )
        },
      },
    })
    const instance = await createAgentMesh(
      {
        preset: 'solo',
        dataDir,
        storage: { driver: 'memory' },
        log: { level: 'debug' },
        plugins: [careless],
        vendors: {
          openai: { baseURL: mock.url },
          anthropic: { baseURL: mock.url },
          google: { baseURL: 'http://127.0.0.1:1' },
        },
      },
      { logger: createLogger('debug', (line) => void lines.push(line)) },
    )
    const server = await instance.listen({ port: 0, host: '127.0.0.1' })
    const proxy: Pick<Proxy, 'url'> = { url: server.url }
    try {
      await postJson(proxy.url + '/v1/chat/completions', OA, { authorization: 'Bearer sk-secret-client-key-123456' })
      await postJson(proxy.url + '/v1/messages', AN, { 'x-api-key': 'sk-ant-secret-client-987654' })
      await postJson(proxy.url + '/v1beta/models/gemini-2.5-flash:generateContent', GE, {
        'x-goog-api-key': 'AIzaSecretClientKey123456',
      })
      await postJson(proxy.url + '/v1/chat/completions', '{bad json', {
        authorization: 'Bearer sk-secret-client-key-123456',
      })
      const leak = await postJson(proxy.url + '/v1/messages', AN, {
        authorization: 'Bearer sk-ant-secret-client-987654',
        'x-api-key': 'sk-secret-client-key-123456',
        'x-test': 'leak',
      })
      expect(leak.status).toBe(500)
      expect(mock.received.length).toBe(2)
      const all = lines.join('\n')
      // the plugin failure was logged, with the keys masked
      expect(all).toContain('careless')
      expect(all).toContain('rejected credentials')
      for (const secret of ['sk-secret-client-key-123456', 'sk-ant-secret-client-987654', 'AIzaSecretClientKey123456'])
        expect(all).not.toContain(secret)
    } finally {
      await server.close()
      await instance.close()
      await mock.close()
    }
  })
})

describe('demo preset needs no key at all', () => {
  it('answers with no key from client, config or env (the whole preset, its feature plugins included)', async () => {
    const proxy = await startProxy({ preset: 'demo' })
    try {
      const res = await fetch(proxy.url + '/v1/chat/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(OA),
      })
      expect(res.status).toBe(200)
      expect((await res.json()).choices[0].message.content).toContain('AgentMesh demo answer')
    } finally {
      await proxy.close()
    }
  })
})
