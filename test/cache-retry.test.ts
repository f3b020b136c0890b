// A retry is not a repeat (issue 14 item 5): the same request from the same identity shortly
// after it was answered from a cache goes upstream, is billed, and its answer replaces the entry;
// other identities keep their hits; the window is configurable. Also: sampled requests and
// their opt-out. Over HTTP, with a vendor whose every answer is numbered, so replacing is seen.
import { afterAll, describe, expect, it } from 'vitest'
import { createAgentMesh } from '../core/index.ts'
import { definePlugin } from '../core/plugin.ts'
import type { CanonicalAnswer, MeshEvent, Plugin } from '../core/types.ts'
import { exactCache, type ExactCacheOptions } from '../plugins/exact-cache/index.ts'
import { normalise } from '../plugins/normalise/index.ts'
import { semanticCache, type SemanticCacheOptions } from '../plugins/semantic-cache/index.ts'

/** answers "answer #n", n counting every upstream call */
function numbered(): Plugin & { calls: () => number } {
  let n = 0
  const p = definePlugin({
    name: 'vendor:numbered',
    setup(mesh) {
      mesh.registerVendor({
        name: 'numbered',
        protocol: 'any',
        handles: () => true,
        async call(): Promise<CanonicalAnswer> {
          n++
          return {
            id: `msg_${n}`,
            model: 'claude-haiku-4-5',
            text: `answer #${n}`,
            toolCalls: [],
            stopReason: 'stop',
            usage: { inputTokens: 12, outputTokens: 30, cacheReadTokens: 0, cacheWriteTokens: 0 },
          }
        },
      })
    },
  })
  return Object.assign(p, { calls: () => n })
}

const closers: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of closers) await c()
})

async function proxy(caches: { exact?: ExactCacheOptions | false; semantic?: SemanticCacheOptions }) {
  const vendor = numbered()
  const semantic = caches.semantic ? semanticCache(caches.semantic) : undefined
  const plugins: Plugin[] = [
    normalise(),
    ...(caches.exact === false ? [] : [exactCache(caches.exact ?? {})]),
    ...(semantic ? [semantic] : []),
    vendor,
  ]
  const app = await createAgentMesh({
    preset: 'demo',
    disable: ['exact-cache', 'semantic-cache', 'quota', 'audit', 'keys'].filter(
      (n) => !plugins.some((p) => p.name === n),
    ),
    storage: { driver: 'memory' },
    log: { level: 'error' },
    plugins,
  })
  const events: MeshEvent[] = []
  app.mesh.on((e) => {
    events.push(e)
  })
  const server = await app.listen({ port: 0, host: '127.0.0.1' })
  closers.push(async () => {
    await server.close()
    await app.close()
  })
  const ask = async (content: string, user = 'alice', extra: Record<string, unknown> = {}) => {
    const res = await fetch(`${server.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-agentmesh-team': 'eng', 'x-agentmesh-user': user },
      body: JSON.stringify({
        model: 'claude-haiku-4-5',
        max_tokens: 256,
        messages: [{ role: 'user', content }],
        ...extra,
      }),
    })
    const json = (await res.json()) as any
    await semantic?.semantic.flush()
    return {
      status: res.status,
      cache: res.headers.get('x-agentmesh-cache'),
      retry: res.headers.get('x-agentmesh-cache-retry'),
      tokens: Number(res.headers.get('x-agentmesh-tokens')),
      text: json?.content?.[0]?.text as string,
    }
  }
  return { ask, vendor, events }
}

const Q = 'Return the list of EU capitals as JSON.'

describe('exact cache: a retry is not a repeat', () => {
  it('the same request from the same identity after a hit goes upstream, is billed, and replaces the entry', async () => {
    const { ask, vendor, events } = await proxy({})
    expect(await ask(Q)).toMatchObject({ cache: 'miss', text: 'answer #1' })
    const hit = await ask(Q)
    expect(hit).toMatchObject({ cache: 'exact', text: 'answer #1', retry: null })
    expect(hit.tokens).toBe(0)
    const retry = await ask(Q)
    expect(retry).toMatchObject({ cache: 'miss', text: 'answer #2', retry: '1' })
    expect(retry.tokens).toBeGreaterThan(0)
    expect(vendor.calls()).toBe(2)
    expect(events.filter((e) => e.type === 'cache_miss').at(-1)!.data).toMatchObject({ kind: 'exact', reason: 'retry' })
    // another identity of the team is served the fresh answer: it replaced the entry
    expect(await ask(Q, 'bob')).toMatchObject({ cache: 'exact', text: 'answer #2' })
    // a client retrying again inside the window gets another fresh answer, not the one it rejected
    expect(await ask(Q)).toMatchObject({ cache: 'miss', text: 'answer #3', retry: '1' })
    expect(vendor.calls()).toBe(3)
  })

  it('the window is configurable: after it, a repeat is a hit again; 0 turns retries off', async () => {
    const short = await proxy({ exact: { retryWindowSeconds: 0.3 } })
    await short.ask(Q)
    expect((await short.ask(Q)).cache).toBe('exact')
    await new Promise((r) => setTimeout(r, 400))
    expect((await short.ask(Q)).cache).toBe('exact')
    const off = await proxy({ exact: { retryWindowSeconds: 0 } })
    await off.ask(Q)
    for (let i = 0; i < 3; i++) expect((await off.ask(Q)).cache).toBe('exact')
    expect(off.vendor.calls()).toBe(1)
    expect(() => exactCache({ retryWindowSeconds: -1 })).toThrow(/retryWindowSeconds must be a number of seconds >= 0/)
  })

  it('a first request after a miss is not a retry: only an answer served from the cache makes one', async () => {
    const { ask, vendor } = await proxy({})
    await ask(Q)
    await ask('Another question entirely?')
    expect((await ask('Another question entirely?')).cache).toBe('exact')
    expect(vendor.calls()).toBe(2)
  })
})

describe('semantic cache: a retry is not a repeat', () => {
  it('the same prompt after a semantic hit goes upstream and its answer replaces the entry that served', async () => {
    const { ask, vendor, events } = await proxy({ exact: false, semantic: {} })
    await ask('How can I improve my English speaking skills?')
    const hit = await ask('How do I improve my English speaking skill?')
    expect(hit).toMatchObject({ cache: 'semantic', text: 'answer #1' })
    const retry = await ask('How do I improve my English speaking skill?')
    expect(retry).toMatchObject({ text: 'answer #2', retry: '1' })
    expect(retry.cache).not.toBe('semantic')
    expect(vendor.calls()).toBe(2)
    expect(
      events.some(
        (e) => e.type === 'cache_miss' && (e.data as any).kind === 'semantic' && (e.data as any).reason === 'retry',
      ),
    ).toBe(true)
    // the rejected answer is gone for everyone: bob is served the fresh one (or asks upstream)
    const bob = await ask('How can I improve my English speaking skills?', 'bob')
    expect(bob.text).not.toBe('answer #1')
  })

  it('behind the exact cache: a retry of an exact hit is not answered by the semantic cache either', async () => {
    const { ask, vendor } = await proxy({ semantic: {} })
    await ask(Q)
    expect((await ask(Q)).cache).toBe('exact')
    const retry = await ask(Q)
    expect(retry).toMatchObject({ cache: 'miss', text: 'answer #2', retry: '1' })
    expect(vendor.calls()).toBe(2)
  })
})

describe('sampling', () => {
  it('temperature > 0 is cached like any request by default; cacheSampled: false lets it bypass', async () => {
    const dflt = await proxy({ exact: { retryWindowSeconds: 0 } })
    await dflt.ask(Q, 'alice', { temperature: 0.8 })
    expect((await dflt.ask(Q, 'alice', { temperature: 0.8 })).cache).toBe('exact')
    const strict = await proxy({ exact: { cacheSampled: false, retryWindowSeconds: 0 } })
    await strict.ask(Q, 'alice', { temperature: 0.8 })
    expect((await strict.ask(Q, 'alice', { temperature: 0.8 })).cache).toBe('bypass')
    // temperature 0 asks for the same answer every time: still cached
    await strict.ask(Q, 'alice', { temperature: 0 })
    expect((await strict.ask(Q, 'alice', { temperature: 0 })).cache).toBe('exact')
    expect(strict.vendor.calls()).toBe(3)
    expect(() => exactCache({ cacheSampled: 'no' as any })).toThrow(/cacheSampled must be a boolean/)
    expect(() => semanticCache({ cacheSampled: 1 as any })).toThrow(/cacheSampled must be a boolean/)
  })
})
