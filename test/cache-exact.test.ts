// The exact cache through a real listening proxy (createAgentMesh + listen), over HTTP, with the
// demo vendor as the upstream.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, inject, it } from 'vitest'
import { createAgentMesh, type AgentMesh } from '../core/index.ts'
import type { Logger, MeshEvent, MeshConfig } from '../core/types.ts'
import { exactCache, type ExactCacheOptions } from '../plugins/exact-cache/index.ts'
import { normalise } from '../plugins/normalise/index.ts'
import { demo } from '../plugins/vendors/demo.ts'

interface Proxy {
  app: AgentMesh
  url: string
  events: MeshEvent[]
  warnings: string[]
  close(): Promise<void>
}

const open: Proxy[] = []
const dirs: string[] = []
afterAll(async () => {
  for (const p of open) await p.close()
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

async function proxy(cache: ExactCacheOptions = {}, config: MeshConfig = {}): Promise<Proxy> {
  const warnings: string[] = []
  const logger: Logger = {
    info() {},
    debug() {},
    error: (m) => {
      warnings.push(m)
    },
    warn: (m, d) => {
      warnings.push(`${m} ${JSON.stringify(d ?? {})}`)
    },
  }
  // no preset: only the plugins listed here (keys, quota, audit have their own suites); a temp data dir
  const app = await createAgentMesh(
    {
      dataDir: tempDir(),
      ...config,
      plugins: [normalise(), exactCache(cache), demo({ latencyMs: 0, chunkDelayMs: 0 })],
    },
    { logger },
  )
  const events: MeshEvent[] = []
  app.mesh.on((e) => {
    events.push(e)
  })
  const server = await app.listen({ port: 0, host: '127.0.0.1' })
  const p: Proxy = {
    app,
    url: server.url,
    events,
    warnings,
    close: async () => {
      await server.close()
      await app.close()
    },
  }
  open.push(p)
  return p
}

const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'am-exact-http-'))
  dirs.push(d)
  return d
}

function body(content: string, extra: Record<string, unknown> = {}) {
  return { model: 'claude-haiku-4-5', max_tokens: 256, messages: [{ role: 'user', content }], ...extra }
}

async function ask(p: Proxy, b: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${p.url}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-agentmesh-team': 'eng', 'x-agentmesh-user': 'alice', ...headers },
    body: JSON.stringify(b),
  })
  const json = (await res.json()) as any
  return {
    status: res.status,
    cache: res.headers.get('x-agentmesh-cache'),
    headers: res.headers,
    json,
    text: json?.content?.[0]?.text as string,
  }
}

const upstreamCalls = (p: Proxy) => p.events.filter((e) => e.type === 'llm_call').length

describe('exact cache over HTTP', () => {
  it('a repeated request is an exact hit: same answer, fresh id, 0 billed tokens, savings in headers', async () => {
    const p = await proxy()
    const first = await ask(p, body('What is the capital of France?'))
    expect(first.status).toBe(200)
    expect(first.cache).toBe('miss')
    const second = await ask(p, body('What is the capital of France?'))
    expect(second.status).toBe(200)
    expect(second.cache).toBe('exact')
    expect(second.text).toBe(first.text)
    expect(second.json.id).not.toBe(first.json.id)
    // the body replays the vendor's answer, usage included (clients size their context from it);
    // what was billed for this request is in the headers
    expect(second.json.usage).toEqual(first.json.usage)
    expect(second.headers.get('x-agentmesh-tokens')).toBe('0')
    expect(second.headers.get('x-agentmesh-cost-usd')).toBe('0.000000')
    const u = first.json.usage
    expect(second.headers.get('x-agentmesh-tokens-saved')).toBe(String(u.input_tokens + u.output_tokens))
    const expectedUsd = p.app.mesh.pricing.cost('claude-haiku-4-5', {
      inputTokens: u.input_tokens,
      outputTokens: u.output_tokens,
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
    })
    expect(expectedUsd).toBeGreaterThan(0)
    expect(second.headers.get('x-agentmesh-cost-saved-usd')).toBe(expectedUsd.toFixed(6))
    expect(upstreamCalls(p)).toBe(1)
    const hit = p.events.find((e) => e.type === 'cache_hit')
    expect(hit?.data).toMatchObject({ kind: 'exact', savedTokens: u.input_tokens + u.output_tokens })
    expect(p.events.filter((e) => e.type === 'cache_miss')).toHaveLength(1)
  })

  it('a rephrasing the normaliser makes equal is an exact hit; a different question is not', async () => {
    const p = await proxy()
    await ask(p, body('Summarise the colour theory in 3 points.'))
    expect((await ask(p, body('Please, summarize the   Color Theory in 3 points.'))).cache).toBe('exact')
    expect((await ask(p, body('Summarise the colour theory in 5 points.'))).cache).toBe('miss')
    expect((await ask(p, body('I need you to delete the production database.'))).cache).toBe('miss')
    expect((await ask(p, body('I need you to delete the staging database.'))).cache).toBe('miss')
  })

  it("team A's answer is never served to team B under the default scope", async () => {
    const p = await proxy()
    const a = await ask(p, body('Our Q3 numbers?'), { 'x-agentmesh-team': 'team-a' })
    expect(a.cache).toBe('miss')
    expect(
      (await ask(p, body('Our Q3 numbers?'), { 'x-agentmesh-team': 'team-a', 'x-agentmesh-user': 'carol' })).cache,
    ).toBe('exact')
    const b = await ask(p, body('Our Q3 numbers?'), { 'x-agentmesh-team': 'team-b' })
    expect(b.cache).toBe('miss')
    expect(upstreamCalls(p)).toBe(2)
    // and team B's own entry serves team B
    expect((await ask(p, body('Our Q3 numbers?'), { 'x-agentmesh-team': 'team-b' })).cache).toBe('exact')
  })

  it('scope "user" keeps users apart; scope "global" shares across teams', async () => {
    const perUser = await proxy({ scope: 'user' })
    await ask(perUser, body('My notes?'), { 'x-agentmesh-user': 'alice' })
    expect((await ask(perUser, body('My notes?'), { 'x-agentmesh-user': 'bob' })).cache).toBe('miss')
    expect((await ask(perUser, body('My notes?'), { 'x-agentmesh-user': 'alice' })).cache).toBe('exact')
    const global = await proxy({ scope: 'global' })
    await ask(global, body('Public fact?'), { 'x-agentmesh-team': 'x' })
    expect((await ask(global, body('Public fact?'), { 'x-agentmesh-team': 'y' })).cache).toBe('exact')
  })

  it('a changed parameter, system prompt, tool list or earlier turn misses', async () => {
    const p = await proxy()
    const tool = {
      name: 'lookup',
      description: 'look a thing up',
      input_schema: { type: 'object', properties: { q: { type: 'string' } } },
    }
    const history = [
      { role: 'user', content: 'Hi, I am planning a trip.' },
      { role: 'assistant', content: 'Great, where to?' },
      { role: 'user', content: 'What should I pack?' },
    ]
    const baseReq = {
      model: 'claude-haiku-4-5',
      max_tokens: 256,
      system: 'Be brief.',
      temperature: 0.3,
      tools: [tool],
      messages: history,
    }
    expect((await ask(p, baseReq)).cache).toBe('miss')
    expect((await ask(p, baseReq)).cache).toBe('exact')
    const variants: Record<string, unknown> = {
      temperature: { ...baseReq, temperature: 0.9 },
      max_tokens: { ...baseReq, max_tokens: 100 },
      model: { ...baseReq, model: 'claude-sonnet-4-5' },
      system: { ...baseReq, system: 'Be thorough.' },
      tools: { ...baseReq, tools: [{ ...tool, name: 'search' }] },
      'tool removed': { ...baseReq, tools: undefined },
      'earlier turn': {
        ...baseReq,
        messages: [{ role: 'user', content: 'Hi, I am planning a ski trip.' }, ...history.slice(1)],
      },
      'earlier answer': {
        ...baseReq,
        messages: [history[0], { role: 'assistant', content: 'Where are you going?' }, history[2]],
      },
    }
    for (const [name, v] of Object.entries(variants)) {
      expect((await ask(p, v)).cache, name).toBe('miss')
    }
    expect(upstreamCalls(p)).toBe(1 + Object.keys(variants).length)
  })

  it('Cache-Control: no-store neither reads nor writes; no-cache skips the read but still stores', async () => {
    const p = await proxy()
    const q = body('no-store question')
    const r1 = await ask(p, q, { 'cache-control': 'no-store' })
    expect(r1.cache).toBe('bypass')
    expect((await ask(p, q)).cache).toBe('miss') // nothing was stored by the no-store request
    expect((await ask(p, q)).cache).toBe('exact')
    expect((await ask(p, q, { 'cache-control': 'no-store' })).cache).toBe('bypass') // stored, but not served
    const calls = upstreamCalls(p)
    expect((await ask(p, q, { 'cache-control': 'no-cache' })).cache).toBe('miss')
    expect(upstreamCalls(p)).toBe(calls + 1)

    const fresh = body('no-cache question')
    expect((await ask(p, fresh, { 'cache-control': 'no-cache' })).cache).toBe('miss')
    expect((await ask(p, fresh)).cache).toBe('exact') // the no-cache answer was stored
  })

  it('X-AgentMesh-Cache-Namespace separates entries', async () => {
    const p = await proxy()
    await ask(p, body('namespaced'), { 'x-agentmesh-cache-namespace': 'eval-1' })
    expect((await ask(p, body('namespaced'))).cache).toBe('miss')
    expect((await ask(p, body('namespaced'), { 'x-agentmesh-cache-namespace': 'eval-2' })).cache).toBe('miss')
    expect((await ask(p, body('namespaced'), { 'x-agentmesh-cache-namespace': 'eval-1' })).cache).toBe('exact')
  })

  it('entries expire after ttlSeconds (memory and fs storage)', async () => {
    for (const storage of [{ driver: 'memory' as const }, { driver: 'fs' as const }]) {
      const p = await proxy({ ttlSeconds: 1 }, { storage, dataDir: tempDir() })
      await ask(p, body(`short-lived on ${storage.driver}`))
      expect((await ask(p, body(`short-lived on ${storage.driver}`))).cache).toBe('exact')
      await new Promise((r) => setTimeout(r, 1200))
      expect((await ask(p, body(`short-lived on ${storage.driver}`))).cache, storage.driver).toBe('miss')
    }
  })

  it('a corrupt stored entry is a logged miss, not a crash, and is replaced', async () => {
    const dataDir = tempDir()
    const a = await proxy({}, { storage: { driver: 'fs' }, dataDir })
    const q = body('an answer that will be corrupted')
    await ask(a, q)
    const stored = a.events.find((e) => e.type === 'x-cache_store')
    const key = (stored?.data as any)?.key as string
    expect(key).toMatch(/^[0-9a-f]{64}$/)
    const storageKey = `cache:exact:${key.slice(0, 2)}:${key}`
    expect(await a.app.mesh.storage.hasItem(storageKey)).toBe(true)
    await a.app.mesh.storage.setItemRaw(storageKey, '{"v":1,"answer":{"text":')

    // a second instance on the same data dir has a cold L1 and reads the corrupt file
    const b = await proxy({}, { storage: { driver: 'fs' }, dataDir })
    const r = await ask(b, q)
    expect(r.status).toBe(200)
    expect(r.cache).toBe('miss')
    expect(r.text).toContain('an answer that will be corrupted')
    expect(b.warnings.some((w) => w.includes('corrupt entry'))).toBe(true)
    // replaced by the fresh answer
    const again = await b.app.mesh.storage.getItem(storageKey)
    expect((again as any)?.answer?.text).toBe(r.text)
    const c = await proxy({}, { storage: { driver: 'fs' }, dataDir })
    expect((await ask(c, q)).cache).toBe('exact')
  })

  it('two proxy instances on one redis-server share the exact cache', async () => {
    const storage = {
      driver: 'redis' as const,
      url: inject('redisUrl'),
      prefix: `exact-share-${process.pid}-${Date.now()}`,
    }
    const a = await proxy({}, { storage })
    const b = await proxy({}, { storage })
    const first = await ask(a, body('shared across instances'))
    expect(first.cache).toBe('miss')
    const fromB = await ask(b, body('shared across instances'))
    expect(fromB.cache).toBe('exact')
    expect(fromB.text).toBe(first.text)
    expect(upstreamCalls(b)).toBe(0)
    // and the other way round
    await ask(b, body('stored by b'))
    expect((await ask(a, body('stored by b'))).cache).toBe('exact')
    // scope still holds across instances
    expect((await ask(b, body('shared across instances'), { 'x-agentmesh-team': 'other' })).cache).toBe('miss')
  })

  it('identical requests in flight together go upstream once; streams wait only with coalesce: all', async () => {
    const slow = async (coalesce?: boolean | 'all') => {
      const logger: Logger = { info() {}, debug() {}, error() {}, warn() {} }
      const app = await createAgentMesh(
        {
          dataDir: tempDir(),
          plugins: [
            normalise(),
            exactCache(coalesce === undefined ? {} : { coalesce }),
            demo({ latencyMs: 300, chunkDelayMs: 0 }),
          ],
        },
        { logger },
      )
      const events: MeshEvent[] = []
      app.mesh.on((e) => {
        events.push(e)
      })
      const server = await app.listen({ port: 0, host: '127.0.0.1' })
      const p: Proxy = {
        app,
        url: server.url,
        events,
        warnings: [],
        close: async () => {
          await server.close()
          await app.close()
        },
      }
      open.push(p)
      return p
    }
    const p = await slow()
    const all = await Promise.all(Array.from({ length: 5 }, () => ask(p, body('asked five times at once'))))
    expect(upstreamCalls(p)).toBe(1)
    expect(all.map((r) => r.cache).sort()).toEqual(['exact', 'exact', 'exact', 'exact', 'miss'])
    expect(new Set(all.map((r) => r.text)).size).toBe(1)
    expect(all.filter((r) => r.headers.get('x-agentmesh-cache-coalesced') === '1')).toHaveLength(4)
    // a different question is not held back by the one in flight
    await Promise.all([ask(p, body('question one')), ask(p, body('question two'))])
    expect(upstreamCalls(p)).toBe(3)

    // streaming requests do not wait by default, and do with coalesce: 'all'
    const streamOnce = (q: Proxy, text: string) =>
      fetch(`${q.url}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-agentmesh-team': 'eng' },
        body: JSON.stringify(body(text, { stream: true })),
      }).then(async (r) => ({ cache: r.headers.get('x-agentmesh-cache'), text: await r.text() }))
    await Promise.all([streamOnce(p, 'streamed twice'), streamOnce(p, 'streamed twice')])
    expect(upstreamCalls(p)).toBe(5)
    const q = await slow('all')
    const streams = await Promise.all([streamOnce(q, 'streamed twice'), streamOnce(q, 'streamed twice')])
    expect(upstreamCalls(q)).toBe(1)
    expect(streams.map((r) => r.cache).sort()).toEqual(['exact', 'miss'])
    expect(streams[0]!.text).toContain('message_stop')
    expect(streams[1]!.text).toContain('message_stop')
    // off: every request goes upstream
    const r = await slow(false)
    await Promise.all(Array.from({ length: 3 }, () => ask(r, body('no coalescing'))))
    expect(upstreamCalls(r)).toBe(3)
  })

  it('the OpenAI protocol is cached separately and hits in its own shape', async () => {
    const p = await proxy()
    const req = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'What is the capital of France?' }] }
    const post = async () => {
      const res = await fetch(`${p.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(req),
      })
      return { cache: res.headers.get('x-agentmesh-cache'), json: (await res.json()) as any }
    }
    const a = await post()
    const b = await post()
    expect([a.cache, b.cache]).toEqual(['miss', 'exact'])
    expect(b.json.object).toBe('chat.completion')
    expect(b.json.choices[0].message.content).toBe(a.json.choices[0].message.content)
    expect(b.json.usage).toEqual(a.json.usage)
    expect(b.json.id).not.toBe(a.json.id)
  })
})
