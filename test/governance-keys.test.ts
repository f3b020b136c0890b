// Virtual keys end to end: a real proxy on a real port, the official SDKs as clients, a mock
// vendor upstream that records what reached it.
import { rmSync } from 'node:fs'
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAgentMesh } from '../core/app.ts'
import type { MeshEvent, PluginCommand } from '../core/types.ts'
import { virtualKeys } from '../plugins/keys/index.ts'
import { clearVendorEnv, postJson, startMockAndProxy, tempDir, type Proxy } from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'

const ADMIN = 'test-admin-token-0123456789'
const admin = { authorization: `Bearer ${ADMIN}` }

function identities(events: MeshEvent[]) {
  return events.filter((e) => e.type === 'response').map((e) => (e.data as any).identity)
}

async function createKey(proxy: Proxy, body: Record<string, unknown>) {
  const res = await postJson(`${proxy.url}/agentmesh/admin/keys`, body, admin)
  expect(res.status).toBe(201)
  return (await res.json()) as { id: string; key: string; team: string; user: string; tool?: string }
}

const ask = (client: OpenAI, extra: Record<string, string> = {}) =>
  client.chat.completions.create(
    { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello there' }] },
    { headers: extra },
  )

describe('team preset style: a virtual key is required', () => {
  let mock: MockUpstream
  let proxy: Proxy
  beforeAll(async () => {
    clearVendorEnv()
    ;({ mock, proxy } = await startMockAndProxy({
      config: { plugins: [virtualKeys({ required: true, adminToken: ADMIN })], trustIdentityHeaders: false },
    }))
  })
  afterAll(async () => {
    await proxy.close()
    await mock.close()
  })

  it('refuses a request without a key with a 401 in the client protocol', async () => {
    const openai = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'sk-not-a-virtual-key', maxRetries: 0 })
    const err = await ask(openai).catch((e) => e)
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError)
    expect(err.status).toBe(401)
    expect(err.error.type).toBe('authentication_error')
    const anthropic = new Anthropic({ baseURL: proxy.url, apiKey: 'sk-ant-whatever', maxRetries: 0 })
    const aerr = await anthropic.messages
      .create({ model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] })
      .catch((e) => e)
    expect(aerr).toBeInstanceOf(Anthropic.AuthenticationError)
    expect(aerr.error.type).toBe('error')
    expect(aerr.error.error.type).toBe('authentication_error')
    expect(mock.received).toHaveLength(0)
  })

  it('admin API: malformed requests are 400s that create nothing; a wrong token is a 401', async () => {
    const bad: Array<[unknown, RegExp]> = [
      ['{"team": "eng", ', /malformed JSON/],
      [{ user: 'alice' }, /team is required/],
      [{ team: 'eng', user: 'alice', colour: 'blue' }, /unknown field "colour"/],
      [{ team: 'eng team!', user: 'alice' }, /team is required: 1-64 characters/],
      [[1, 2], /JSON object/],
    ]
    for (const [body, message] of bad) {
      const res = await postJson(`${proxy.url}/agentmesh/admin/keys`, body, admin)
      expect(res.status).toBe(400)
      expect((await res.json()).error.message).toMatch(message)
    }
    const wrong = await postJson(
      `${proxy.url}/agentmesh/admin/keys`,
      { team: 'eng', user: 'alice' },
      { authorization: 'Bearer not-the-token' },
    )
    expect(wrong.status).toBe(401)
    const list = await fetch(`${proxy.url}/agentmesh/admin/keys`, { headers: admin })
    expect((await list.json()).keys).toEqual([])
    expect((await fetch(`${proxy.url}/agentmesh/admin/keys`)).status).toBe(401)
  })

  it('a key identifies team and user, forged identity headers change nothing, and the key never goes upstream', async () => {
    const k = await createKey(proxy, { team: 'eng', user: 'alice' })
    expect(k.key).toMatch(/^am-[A-Za-z0-9_-]{43}$/)
    const before = proxy.events.length
    const openai = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: k.key, maxRetries: 0 })
    const r = await ask(openai, { 'X-AgentMesh-Team': 'sales', 'X-AgentMesh-User': 'mallory' })
    expect(r.choices[0]!.message.content).toContain('hello there')
    const [who] = identities(proxy.events.slice(before))
    expect(who).toMatchObject({ team: 'eng', user: 'alice', keyId: k.id, source: 'key' })
    // the vendor saw the configured vendor key, not the virtual key
    const got = mock.received.at(-1)!
    expect(got.headers.authorization).toBe('Bearer sk-test-openai-configured')
    expect(JSON.stringify(got.headers)).not.toContain(k.key)
  })

  it('accepts the key as x-api-key (Anthropic SDK) and a tool fixed by the key wins over the header', async () => {
    const k = await createKey(proxy, { team: 'data', user: 'bob', tool: 'notebook' })
    const before = proxy.events.length
    const anthropic = new Anthropic({
      baseURL: proxy.url,
      apiKey: k.key,
      maxRetries: 0,
      defaultHeaders: { 'X-AgentMesh-Tool': 'other-tool', 'X-AgentMesh-Team': 'eng' },
    })
    await anthropic.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hi' }],
    })
    expect(identities(proxy.events.slice(before))[0]).toMatchObject({
      team: 'data',
      user: 'bob',
      tool: 'notebook',
      source: 'key',
    })
    expect(mock.received.at(-1)!.headers['x-api-key']).toBe('sk-ant-test-configured')
  })

  it('accepts the key as x-goog-api-key or ?key= (Gemini) and never forwards it', async () => {
    const k = await createKey(proxy, { team: 'ml', user: 'gina' })
    const body = { contents: [{ role: 'user', parts: [{ text: 'hi' }] }] }
    for (const [path, headers] of [
      ['/v1beta/models/gemini-2.5-flash:generateContent', { 'x-goog-api-key': k.key }],
      [`/v1beta/models/gemini-2.5-flash:generateContent?key=${k.key}`, {}],
    ] as const) {
      const before = proxy.events.length
      const res = await postJson(proxy.url + path, body, headers)
      expect(res.status).toBe(200)
      expect(identities(proxy.events.slice(before))[0]).toMatchObject({ team: 'ml', user: 'gina', source: 'key' })
      const got = mock.received.at(-1)!
      expect(got.headers['x-goog-api-key']).toBe('AIza-test-configured')
      expect(got.path + JSON.stringify(got.headers)).not.toContain(k.key)
    }
  })

  it('the list shows keys without the key or its hash; storage holds only the hash', async () => {
    const k = await createKey(proxy, { team: 'ops', user: 'carol', name: 'laptop' })
    const list = (await (await fetch(`${proxy.url}/agentmesh/admin/keys`, { headers: admin })).json()).keys as any[]
    const mine = list.find((x) => x.id === k.id)
    expect(mine).toMatchObject({ team: 'ops', user: 'carol', name: 'laptop', prefix: k.key.slice(0, 7) })
    expect(mine.key).toBeUndefined()
    expect(mine.hash).toBeUndefined()
    const storage = proxy.instance.mesh.storage
    const everything = JSON.stringify(await Promise.all((await storage.getKeys()).map((key) => storage.getItem(key))))
    expect(everything).not.toContain(k.key)
    expect(everything).not.toContain(k.key.slice(3))
  })

  it('a revoked key, an unknown key and a malformed key are 401s', async () => {
    const k = await createKey(proxy, { team: 'eng', user: 'dave' })
    const openai = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: k.key, maxRetries: 0 })
    await ask(openai)
    const del = await fetch(`${proxy.url}/agentmesh/admin/keys/${k.id}`, { method: 'DELETE', headers: admin })
    expect(del.status).toBe(200)
    expect((await del.json()).revoked).toMatch(/^\d{4}-/)
    const revoked = await ask(openai).catch((e) => e)
    expect(revoked.status).toBe(401)
    expect(revoked.message).toContain('revoked')
    const unknown = await ask(
      new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'am-' + 'x'.repeat(43), maxRetries: 0 }),
    ).catch((e) => e)
    expect(unknown.status).toBe(401)
    expect(unknown.message).toContain('unknown virtual key')
    const malformed = await ask(new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'am-short', maxRetries: 0 })).catch(
      (e) => e,
    )
    expect(malformed.status).toBe(401)
    expect(
      (await fetch(`${proxy.url}/agentmesh/admin/keys/key_nope`, { method: 'DELETE', headers: admin })).status,
    ).toBe(404)
    expect(
      (await fetch(`${proxy.url}/agentmesh/admin/keys/..%2Fetc`, { method: 'DELETE', headers: admin })).status,
    ).toBe(400)
  })
})

describe('demo/solo style: keys optional', () => {
  let mock: MockUpstream
  let proxy: Proxy
  beforeAll(async () => {
    clearVendorEnv()
    delete process.env.AGENTMESH_ADMIN_TOKEN
    ;({ mock, proxy } = await startMockAndProxy({ config: { plugins: [virtualKeys()] } }))
  })
  afterAll(async () => {
    await proxy.close()
    await mock.close()
  })

  it('without a key, identity comes from the X-AgentMesh-* headers', async () => {
    const before = proxy.events.length
    await ask(new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'sk-client', maxRetries: 0 }), {
      'X-AgentMesh-Team': 'sales',
      'X-AgentMesh-User': 'erin',
    })
    expect(identities(proxy.events.slice(before))[0]).toMatchObject({ team: 'sales', user: 'erin', source: 'header' })
  })

  it('with no admin token configured the admin API is off with a clear 403', async () => {
    const res = await postJson(`${proxy.url}/agentmesh/admin/keys`, { team: 'eng', user: 'alice' }, admin)
    expect(res.status).toBe(403)
    expect((await res.json()).error.message).toContain('AGENTMESH_ADMIN_TOKEN')
  })

  it('an unknown am- key is still a 401, not a fallback to headers', async () => {
    const err = await ask(new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'am-' + 'y'.repeat(43), maxRetries: 0 }), {
      'X-AgentMesh-Team': 'sales',
    }).catch((e) => e)
    expect(err.status).toBe(401)
  })
})

describe('keys CLI command', () => {
  const command = (): PluginCommand => virtualKeys().commands![0]!

  async function run(
    config: Parameters<typeof createAgentMesh>[0],
    args: string[],
    options: Record<string, unknown> = {},
  ) {
    const lines: string[] = []
    const mesh = await createAgentMesh(
      { log: { level: 'silent' }, ...config, plugins: [virtualKeys()] },
      { mode: 'command' },
    )
    try {
      const code = await command().run({ mesh: mesh.mesh, args, options, print: (l) => lines.push(l) })
      return { code, out: lines.join('\n') }
    } finally {
      await mesh.close()
    }
  }

  it('with memory storage, explains that keys would vanish and how to configure storage', async () => {
    const { code, out } = await run({ storage: { driver: 'memory' } }, ['create'], { team: 'eng', user: 'alice' })
    expect(code).toBe(1)
    expect(out).toMatch(/in-memory driver/)
    expect(out).toMatch(/driver: 'fs'/)
    expect(out).toMatch(/admin\/keys/)
  })

  it('creates, lists and revokes keys in fs storage, and a proxy on that data dir accepts the key', async () => {
    clearVendorEnv()
    const dataDir = tempDir()
    try {
      const config = { storage: { driver: 'fs' as const }, dataDir }
      const bad = await run(config, ['create'], { user: 'alice' })
      expect(bad.code).toBe(1)
      expect(bad.out).toMatch(/--team/)
      const created = await run(config, ['create'], { team: 'eng', user: 'alice', tool: 'cursor' })
      expect(created.code).toBe(0)
      const key = /(am-[A-Za-z0-9_-]{43})/.exec(created.out)![1]!
      const id = /created (key_\w+)/.exec(created.out)![1]!
      const listed = await run(config, ['list'])
      expect(listed.out).toContain(id)
      expect(listed.out).toContain('active')
      expect(listed.out).not.toContain(key)

      const { mock, proxy } = await startMockAndProxy({
        config: { ...config, plugins: [virtualKeys({ required: true, cacheTtlMs: 0 })] },
      })
      try {
        const openai = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: key, maxRetries: 0 })
        await ask(openai)
        expect(identities(proxy.events)[0]).toMatchObject({ team: 'eng', user: 'alice', tool: 'cursor' })
        const revoked = await run(config, ['revoke', id])
        expect(revoked.code).toBe(0)
        expect((await ask(openai).catch((e) => e)).status).toBe(401)
      } finally {
        await proxy.close()
        await mock.close()
      }
      expect((await run(config, ['revoke', 'key_unknown'])).code).toBe(1)
      expect((await run(config, ['frobnicate'])).code).toBe(1)
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})
