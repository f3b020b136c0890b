// Issue 12, items 5-7: headers that say who paid and what happened, the /health probe older
// clients use, and count_tokens answered by Anthropic when a key for it is configured.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { guard } from '../plugins/guard/index.ts'
import { mask } from '../plugins/mask/index.ts'
import { quota } from '../plugins/quota/index.ts'
import { virtualKeys } from '../plugins/keys/index.ts'
import { clearVendorEnv, postJson, startMockAndProxy, startProxy, tempDir, type Proxy } from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'

beforeAll(() => clearVendorEnv())

const OA = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello there' }] }
const AN = {
  model: 'claude-haiku-4-5',
  max_tokens: 20,
  messages: [{ role: 'user', content: 'count these words for me please' }],
}

describe('who paid and what happened', () => {
  let mock: MockUpstream
  let proxy: Proxy
  beforeAll(async () => {
    ;({ mock, proxy } = await startMockAndProxy({
      config: { plugins: [quota({ limits: { teams: { small: { tokensPerDay: 5 } } } })] },
    }))
  })
  afterAll(async () => {
    await proxy.close()
    await mock.close()
  })

  it('every answer names the identity that was billed', async () => {
    const res = await postJson(proxy.url + '/v1/chat/completions', OA, {
      'x-agentmesh-team': 'eng',
      'x-agentmesh-user': 'alice',
      'user-agent': 'curl/8.0',
    })
    expect(res.status).toBe(200)
    expect([
      res.headers.get('x-agentmesh-team'),
      res.headers.get('x-agentmesh-user'),
      res.headers.get('x-agentmesh-tool'),
    ]).toEqual(['eng', 'alice', 'curl'])
    expect(res.headers.get('x-agentmesh-estimated-tokens')).toBeNull()
  })

  it('a request refused before any vendor call reports nothing spent, and the estimate it was refused on', async () => {
    const before = mock.received.length
    const res = await postJson(proxy.url + '/v1/chat/completions', OA, { 'x-agentmesh-team': 'small' })
    expect(res.status).toBe(429)
    expect(res.headers.get('x-agentmesh-tokens')).toBe('0')
    expect(res.headers.get('x-agentmesh-cost-usd')).toBe('0.000000')
    expect(res.headers.get('x-agentmesh-vendor')).toBe('none')
    expect(Number(res.headers.get('x-agentmesh-estimated-tokens'))).toBeGreaterThan(5)
    expect(res.headers.get('x-agentmesh-team')).toBe('small')
    const bad = await postJson(proxy.url + '/v1/chat/completions', { model: 'gpt-4o-mini', messages: 'x' })
    expect(bad.status).toBe(400)
    expect(bad.headers.get('x-agentmesh-vendor')).toBe('none')
    expect(bad.headers.get('x-agentmesh-tokens')).toBe('0')
    expect(mock.received.length).toBe(before)
  })

  it('GET /health answers like /agentmesh/health, with the shape older clients read', async () => {
    const a = await (await fetch(proxy.url + '/health')).json()
    const b = await (await fetch(proxy.url + '/agentmesh/health')).json()
    expect(a).toMatchObject({
      status: 'ok',
      version: b.version,
      preset: 'solo',
      demo: false,
      storage: { driver: 'memory', reachable: true },
    })
    expect(a.vendors).toEqual(['anthropic', 'openai', 'google'])
    const demo = await startProxy({ preset: 'demo' })
    try {
      expect(await (await fetch(demo.url + '/health')).json()).toMatchObject({ status: 'ok', demo: true })
    } finally {
      await demo.close()
    }
  })

  it('a 401 names the default identity it fell back to', async () => {
    const keyed = await startMockAndProxy({
      config: { dataDir: tempDir(), plugins: [virtualKeys({ required: true })] },
    })
    try {
      const res = await postJson(keyed.proxy.url + '/v1/chat/completions', OA)
      expect(res.status).toBe(401)
      expect(res.headers.get('x-agentmesh-team')).toBe('default')
      expect(res.headers.get('x-agentmesh-tokens')).toBe('0')
    } finally {
      await keyed.proxy.close()
      await keyed.mock.close()
    }
  })
})

describe('count_tokens', () => {
  it('goes to Anthropic when a key is configured (the exact count), with the client headers', async () => {
    const { mock, proxy } = await startMockAndProxy()
    try {
      const res = await postJson(proxy.url + '/v1/messages/count_tokens', AN, {
        'anthropic-beta': 'token-counting-2024-11-01',
      })
      expect(res.status).toBe(200)
      expect(await res.json()).toEqual({ input_tokens: 4242 })
      expect(res.headers.get('x-agentmesh-usage')).toBeNull()
      const call = mock.received.at(-1)!
      expect(call.path).toBe('/v1/messages/count_tokens')
      expect(call.headers['x-api-key']).toBe('sk-ant-test-configured')
      expect(call.headers['anthropic-beta']).toBe('token-counting-2024-11-01')
      expect(call.raw).toBe(JSON.stringify(AN))
    } finally {
      await proxy.close()
      await mock.close()
    }
  })

  it('keeps a prompt home that the guard or the mask would change: counted locally, never sent as it is', async () => {
    const { mock, proxy } = await startMockAndProxy({ config: { plugins: [guard(), mask()] } })
    try {
      const secret = `AKIA${'Z3QJ5T7W9XK2M4N6'}`
      for (const content of [`deploy with ${secret} please`, 'mail jane.doe@corp.example the report']) {
        const before = mock.received.length
        const res = await postJson(proxy.url + '/v1/messages/count_tokens', {
          ...AN,
          messages: [{ role: 'user', content }],
        })
        expect(res.status).toBe(200)
        expect(res.headers.get('x-agentmesh-usage')).toBe('estimated')
        expect(mock.received.length).toBe(before)
      }
      // a prompt neither would change still gets the vendor's exact count
      const plain = await postJson(proxy.url + '/v1/messages/count_tokens', AN)
      expect(await plain.json()).toEqual({ input_tokens: 4242 })
      expect(JSON.stringify(mock.received)).not.toContain('jane.doe')
    } finally {
      await proxy.close()
      await mock.close()
    }
  })

  it('is estimated locally, and says so, without a key or when the call fails', async () => {
    const noKey = await startMockAndProxy({ keys: false })
    const failing = await startMockAndProxy({ behaviour: { status: 500 } })
    try {
      for (const { proxy } of [noKey, failing]) {
        const res = await postJson(proxy.url + '/v1/messages/count_tokens', AN)
        expect(res.status).toBe(200)
        expect(res.headers.get('x-agentmesh-usage')).toBe('estimated')
        const n = (await res.json()).input_tokens
        expect(n).toBeGreaterThan(3)
        expect(n).not.toBe(4242)
      }
      expect(noKey.mock.received.length).toBe(0)
    } finally {
      for (const { proxy, mock } of [noKey, failing]) {
        await proxy.close()
        await mock.close()
      }
    }
  })
})
