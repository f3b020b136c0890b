// The semantic cache through a real listening proxy (createAgentMesh + listen) with the bundled
// USE-lite model and the demo vendor as upstream: paraphrases hit, near misses and anything
// outside the partition miss, teams never share, storage rebuilds the index.
import { afterAll, describe, expect, inject, it } from 'vitest'
import { createAgentMesh, type AgentMesh } from '../core/index.ts'
import type { Logger, MeshConfig, MeshEvent } from '../core/types.ts'
import { semanticCache, type SemanticCacheOptions, type SemanticCachePlugin } from '../plugins/semantic-cache/index.ts'
import { normalise } from '../plugins/normalise/index.ts'
import { demo } from '../plugins/vendors/demo.ts'

interface Proxy {
  app: AgentMesh
  plugin: SemanticCachePlugin
  url: string
  events: MeshEvent[]
  warnings: string[]
  close(): Promise<void>
}

const open: Proxy[] = []
afterAll(async () => {
  for (const p of open.splice(0)) await p.close().catch(() => {})
})

async function proxy(options: SemanticCacheOptions = {}, config: MeshConfig = {}): Promise<Proxy> {
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
  const plugin = semanticCache(options)
  // the demo preset without its exact cache, which would answer the repeated prompts these tests
  // send; normalise stays, so the semantic cache sees the normalised view it gets in production
  const app = await createAgentMesh(
    {
      preset: 'demo',
      disable: ['exact-cache', 'quota', 'audit'],
      storage: { driver: 'memory' },
      ...config,
      plugins: [normalise(), plugin, demo({ latencyMs: 0, chunkDelayMs: 0 })],
    },
    { logger },
  )
  const events: MeshEvent[] = []
  app.mesh.on((e) => {
    events.push(e)
  })
  const server = await app.listen({ port: 0, host: '127.0.0.1' })
  let closed = false
  const p: Proxy = {
    app,
    plugin,
    url: server.url,
    events,
    warnings,
    close: async () => {
      if (closed) return
      closed = true
      await server.close()
      await app.close()
    },
  }
  open.push(p)
  return p
}

type Msg = { role: 'user' | 'assistant'; content: string }
function body(content: string | Msg[], extra: Record<string, unknown> = {}) {
  const messages = typeof content === 'string' ? [{ role: 'user', content }] : content
  return { model: 'claude-haiku-4-5', max_tokens: 256, messages, ...extra }
}

async function ask(p: Proxy, b: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${p.url}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-agentmesh-team': 'eng', 'x-agentmesh-user': 'alice', ...headers },
    body: JSON.stringify(b),
  })
  const json = (await res.json()) as any
  // stores happen off the response path; wait for them so the next request can see the entry
  await p.plugin.semantic.flush()
  return {
    status: res.status,
    cache: res.headers.get('x-agentmesh-cache'),
    similarity: res.headers.get('x-agentmesh-similarity'),
    headers: res.headers,
    json,
    text: json?.content?.[0]?.text as string,
  }
}

const upstreamCalls = (p: Proxy) => p.events.filter((e) => e.type === 'llm_call').length

/** store `first`, then ask `second`: was it answered from the cache? */
async function pair(
  p: Proxy,
  first: unknown,
  second: unknown,
  h1: Record<string, string> = {},
  h2: Record<string, string> = {},
) {
  const a = await ask(p, first, h1)
  expect(a.status).toBe(200)
  expect(a.cache).not.toBe('semantic')
  const calls = upstreamCalls(p)
  const b = await ask(p, second, h2)
  expect(b.status).toBe(200)
  const hit = b.cache === 'semantic'
  // a hit never reaches upstream and returns the stored answer; a miss does the opposite
  expect(upstreamCalls(p)).toBe(hit ? calls : calls + 1)
  if (hit) expect(b.text).toBe(a.text)
  return { a, b, hit }
}

describe('semantic cache over HTTP', () => {
  it('a paraphrase is a semantic hit: stored answer, fresh id, similarity and savings reported', async () => {
    const p = await proxy()
    const { a, b, hit } = await pair(
      p,
      body('How can I improve my English speaking skills?'),
      body('How do I improve my English speaking skill?'),
    )
    expect(hit).toBe(true)
    expect(b.json.id).not.toBe(a.json.id)
    expect(Number(b.similarity)).toBeGreaterThan(0.8)
    expect(Number(b.similarity)).toBeLessThan(1)
    expect(b.headers.get('x-agentmesh-tokens')).toBe('0')
    const ev = p.events.find((e) => e.type === 'cache_hit')!.data as any
    expect(ev.kind).toBe('semantic')
    expect(ev.savedTokens).toBeGreaterThan(0)
    expect(ev.savedUsd).toBeGreaterThan(0)
  })

  it('more paraphrases hit', async () => {
    const p = await proxy()
    expect(
      (await pair(p, body('What are the best ways to lose weight?'), body('What are the best ways for losing weight?')))
        .hit,
    ).toBe(true)
    expect(
      (
        await pair(
          p,
          body('How do I learn to play the guitar quickly?'),
          body('How can I learn to play guitar quickly?'),
        )
      ).hit,
    ).toBe(true)
  })

  it('near misses miss: language, number, roles, negation', async () => {
    const p = await proxy()
    expect(
      (
        await pair(
          p,
          body('How do I reverse a linked list in Java?'),
          body('How do I reverse a linked list in Python?'),
        )
      ).hit,
    ).toBe(false)
    expect(
      (
        await pair(
          p,
          body('Summarise the meeting notes in 3 bullet points.'),
          body('Summarise the meeting notes in 5 bullet points.'),
        )
      ).hit,
    ).toBe(false)
    expect(
      (
        await pair(
          p,
          body('Should black people adopt white children?'),
          body('Should white people adopt black children?'),
        )
      ).hit,
    ).toBe(false)
    expect((await pair(p, body('Is it safe to eat raw eggs?'), body('Is it not safe to eat raw eggs?'))).hit).toBe(
      false,
    )
    expect(
      (
        await pair(
          p,
          body('What are the largest electronics retailers in France?'),
          body('What are the largest electronics retailers in Italy?'),
        )
      ).hit,
    ).toBe(false)
  })

  it('only the same partition is searched: system prompt, earlier turns, params, model, tools', async () => {
    const p = await proxy()
    const q = 'What is the boiling point of water at sea level?'
    // control: the same prompt again is a hit (no exact cache in this proxy)
    expect((await pair(p, body(q), body(q))).hit).toBe(true)
    expect(
      (await pair(p, body(q, { system: 'Answer like a pirate.' }), body(q, { system: 'Answer like a poet.' }))).hit,
    ).toBe(false)
    const history = (prev: string): Msg[] => [
      { role: 'user', content: prev },
      { role: 'assistant', content: 'Sure.' },
      { role: 'user', content: q },
    ]
    expect((await pair(p, body(history('Use Celsius.')), body(history('Use Fahrenheit.')))).hit).toBe(false)
    expect((await pair(p, body(q + ' ', { temperature: 0 }), body(q + ' ', { temperature: 1 }))).hit).toBe(false)
    expect(
      (
        await pair(
          p,
          body(q, { model: 'claude-haiku-4-5', top_k: 5 }),
          body(q, { model: 'claude-sonnet-4-5', top_k: 5 }),
        )
      ).hit,
    ).toBe(false)
    const tool = (name: string) => ({
      tools: [{ name, description: 'look something up', input_schema: { type: 'object', properties: {} } }],
    })
    expect((await pair(p, body(q, tool('search')), body(q, tool('lookup')))).hit).toBe(false)
  })

  it("team A's answers are never served to team B under the default scope; namespaces split too", async () => {
    const p = await proxy()
    const q = body('Which sorting algorithm is fastest for nearly sorted data?')
    expect((await pair(p, q, q, { 'x-agentmesh-team': 'team-a' }, { 'x-agentmesh-team': 'team-b' })).hit).toBe(false)
    // team A itself still hits, and another user of team A too
    expect((await ask(p, q, { 'x-agentmesh-team': 'team-a', 'x-agentmesh-user': 'bob' })).cache).toBe('semantic')
    const r = body('How do I centre a div horizontally?')
    expect(
      (await pair(p, r, r, { 'x-agentmesh-cache-namespace': 'one' }, { 'x-agentmesh-cache-namespace': 'two' })).hit,
    ).toBe(false)
  })

  it("scope 'user' keeps users apart; 'global' shares across teams", async () => {
    const u = await proxy({ scope: 'user' })
    const q = body('What is a good name for a pet turtle?')
    expect((await pair(u, q, q, { 'x-agentmesh-user': 'alice' }, { 'x-agentmesh-user': 'bob' })).hit).toBe(false)
    const g = await proxy({ scope: 'global' })
    expect((await pair(g, q, q, { 'x-agentmesh-team': 'team-a' }, { 'x-agentmesh-team': 'team-b' })).hit).toBe(true)
  })

  it('Cache-Control: no-store neither looks up nor stores; no-cache skips the lookup but stores', async () => {
    const p = await proxy()
    const q = body('What is the tallest mountain in Africa?')
    await ask(p, q, { 'cache-control': 'no-store' })
    expect((await p.app.mesh.storage.getKeys('semantic')).length).toBe(0)
    const stored = await ask(p, q)
    expect(stored.cache).not.toBe('semantic')
    const calls = upstreamCalls(p)
    const skipped = await ask(p, q, { 'cache-control': 'no-cache' })
    expect(skipped.cache).not.toBe('semantic')
    expect(upstreamCalls(p)).toBe(calls + 1)
    // the fresh answer replaced the old entry for the same prompt instead of adding a second one
    expect((await p.app.mesh.storage.getKeys('semantic')).length).toBe(1)
    expect((await ask(p, q)).cache).toBe('semantic')
  })

  it('entries expire after ttlSeconds even on the memory driver', async () => {
    const p = await proxy({ ttlSeconds: 1 })
    const q = body('Name three primary colours.')
    await ask(p, q)
    expect((await ask(p, q)).cache).toBe('semantic')
    await new Promise((r) => setTimeout(r, 1100))
    expect((await ask(p, q)).cache).not.toBe('semantic')
  })

  it('a corrupt stored entry is a logged miss, not a crash', async () => {
    const p = await proxy()
    const q = body('What causes the seasons on Earth?')
    const first = await ask(p, q)
    const [key] = await p.app.mesh.storage.getKeys('semantic')
    const entry = (await p.app.mesh.storage.getItem(key!)) as any
    await p.app.mesh.storage.setItem(key!, { ...entry, answer: { text: 42 } })
    const again = await ask(p, q)
    expect(again.status).toBe(200)
    expect(again.cache).not.toBe('semantic')
    expect(again.text).toBe(first.text) // the demo vendor answered it again
    expect(p.warnings.some((w) => /corrupt/.test(w))).toBe(true)
    // a value that is not even JSON
    const [key2] = await p.app.mesh.storage.getKeys('semantic')
    await p.app.mesh.storage.setItem(key2!, 'not json {')
    const third = await ask(p, q)
    expect(third.status).toBe(200)
    expect(third.cache).not.toBe('semantic')
  })

  it('the index is rebuilt from redis by a new proxy, and entries of another embedder are ignored', async () => {
    const redisUrl = inject('redisUrl')
    const prefix = `sem-test-${Date.now()}`
    const storage = { driver: 'redis' as const, url: redisUrl, prefix }
    const q = body('How long should I boil an egg for a soft yolk?')
    const one = await proxy({}, { storage })
    const stored = await ask(one, q)
    expect(stored.cache).not.toBe('semantic')
    const keys = await one.app.mesh.storage.getKeys('semantic')
    expect(keys.length).toBe(1)
    // an entry written by another embedder sits in the same storage
    const foreign = { ...((await one.app.mesh.storage.getItem(keys[0]!)) as any), embedder: 'transformers:other-model' }
    await one.app.mesh.storage.setItem('semantic:foreignentry0000000000000', foreign)
    await one.close()

    const two = await proxy({}, { storage })
    expect(two.plugin.semantic.store!.index.size).toBe(1)
    const again = await ask(two, body('how long should I boil an egg for a soft yolk'))
    expect(again.cache).toBe('semantic')
    expect(again.text).toBe(stored.text)
    expect(upstreamCalls(two)).toBe(0)
    await two.app.mesh.storage.clear()
  })

  it('two proxies on one redis: an answer stored by one is served by the other without a restart, and a deletion reaches it too', async () => {
    const redisUrl = inject('redisUrl')
    const storage = { driver: 'redis' as const, url: redisUrl, prefix: `sem-sync-${Date.now()}` }
    const one = await proxy({ syncSeconds: 0.2 }, { storage })
    const two = await proxy({ syncSeconds: 0.2 }, { storage })
    const stored = await ask(one, body('How long should I boil an egg for a soft yolk?'))
    expect(stored.cache).not.toBe('semantic')
    const index = two.plugin.semantic.store!.index
    // the second instance follows redis's change feed: it never lists the keys to catch up
    const storageTwo = two.app.mesh.storage
    const listKeys = storageTwo.getKeys.bind(storageTwo)
    let listed = 0
    storageTwo.getKeys = ((...args: Parameters<typeof listKeys>) => {
      listed++
      return listKeys(...args)
    }) as typeof listKeys
    const until = async (ok: () => boolean) => {
      for (let i = 0; i < 50 && !ok(); i++) await new Promise((r) => setTimeout(r, 100))
      return ok()
    }
    expect(await until(() => index.size === 1)).toBe(true)
    const again = await ask(two, body('how long should I boil an egg for a soft yolk'))
    expect(again.cache).toBe('semantic')
    expect(again.text).toBe(stored.text)
    expect(upstreamCalls(two)).toBe(0)
    // deleted by the first instance (here: replaced by a no-cache request for the same prompt): the second drops it
    const [oldId] = index.ids()
    const replaced = await ask(one, body('How long should I boil an egg for a soft yolk?'), {
      'cache-control': 'no-cache',
    })
    expect(replaced.status).toBe(200)
    expect(await until(() => index.size === 1 && !index.has(oldId!))).toBe(true)
    expect(listed).toBe(0)
    // deleted outside the cache (or expired on redis): the periodic full sync notices
    for (const k of await one.app.mesh.storage.getKeys('semantic')) await one.app.mesh.storage.removeItem(k)
    expect((await two.plugin.semantic.store!.refresh(Date.now(), { full: true })).full).toBe(true)
    expect(index.size).toBe(0)
    await one.app.mesh.storage.clear()
  })

  it('in command mode the model is not loaded and the index not built', async () => {
    const plugin = semanticCache()
    const app = await createAgentMesh(
      { preset: 'demo', storage: { driver: 'memory' }, log: { level: 'silent' }, plugins: [plugin] },
      { mode: 'command' },
    )
    expect(plugin.semantic.store).toBeUndefined()
    expect(plugin.semantic.embedder.loaded).toBe(false)
    await app.close()
  })

  it('validates its options with messages that name the field', () => {
    expect(() => semanticCache({ scope: 'world' as any })).toThrow(
      /scope must be 'global', 'team' or 'user', got "world"/,
    )
    expect(() => semanticCache({ ttlSeconds: -1 })).toThrow(/ttlSeconds must be a positive number/)
    expect(() => semanticCache({ maxEntries: 0 })).toThrow(/maxEntries must be a positive integer/)
    expect(() => semanticCache({ strictness: 2 })).toThrow(/strictness must be a number between 0 and 1/)
    expect(() => semanticCache({ embedder: 'bert' as any })).toThrow(/embedder must be/)
    expect(() => semanticCache({ syncSeconds: -1 })).toThrow(/syncSeconds must be a number of seconds >= 0/)
  })
})
