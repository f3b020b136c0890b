// The bounded caches that moved to lru-cache (issue 15, item 7) keep their old semantics: a
// verified virtual key is trusted for cacheTtlMs and no longer (0: not cached at all), and a model
// without a price stays at $0 with one warning however often it is asked for.
import { createStorage } from 'unstorage'
import { describe, expect, it } from 'vitest'
import { createPricing } from '../core/pricing.ts'
import type { Identity, Mesh, MeshContext, MeshResponse } from '../core/types.ts'
import { virtualKeys } from '../plugins/keys/index.ts'
import { createKeyStore } from '../plugins/keys/store.ts'

type Resolver = (ctx: MeshContext) => Identity | MeshResponse | Promise<Identity | MeshResponse>

async function keysWithTtl(cacheTtlMs: number) {
  const storage = createStorage()
  let resolve: Resolver | undefined
  const mesh = {
    storage,
    setIdentityResolver: (r: Resolver) => {
      resolve = r
    },
    addRoute: () => {},
  } as unknown as Mesh
  await virtualKeys({ cacheTtlMs }).setup!(mesh)
  const store = createKeyStore(storage)
  const { key, record } = await store.create({ team: 'eng', user: 'alice' })
  const ask = async () => {
    const url = new URL('http://x/v1/chat/completions')
    const ctx = {
      request: { headers: new Headers({ authorization: `Bearer ${key}` }), search: '', url },
    } as unknown as MeshContext
    return (await resolve!(ctx)) as { team?: string; status?: number }
  }
  // revoked straight in storage, as another instance or the CLI does: this process is not told
  const revokeElsewhere = () => store.revoke(record.id)
  return { ask, revokeElsewhere }
}

describe('virtual keys cache', () => {
  it('trusts a verified key for cacheTtlMs, then reads storage again', async () => {
    const { ask, revokeElsewhere } = await keysWithTtl(150)
    expect((await ask()).team).toBe('eng')
    await revokeElsewhere()
    expect((await ask()).team).toBe('eng')
    await new Promise((r) => setTimeout(r, 200))
    expect((await ask()).status).toBe(401)
  })

  it('cacheTtlMs 0 caches nothing: a revoke elsewhere applies to the next request', async () => {
    const { ask, revokeElsewhere } = await keysWithTtl(0)
    expect((await ask()).team).toBe('eng')
    await revokeElsewhere()
    expect((await ask()).status).toBe(401)
  })

  it('a fractional or infinite cacheTtlMs is accepted as before', async () => {
    expect((await (await keysWithTtl(1500.5)).ask()).team).toBe('eng')
    expect((await (await keysWithTtl(Infinity)).ask()).team).toBe('eng')
  })
})

describe('pricing lookup cache', () => {
  it('an unknown model is cached as unpriced: $0, one warning, known models unaffected', () => {
    const warnings: string[] = []
    const p = createPricing({}, { warn: (m: string) => warnings.push(m) })
    const usage = { inputTokens: 1000, outputTokens: 1000, cacheReadTokens: 0, cacheWriteTokens: 0 }
    for (let i = 0; i < 3; i++) expect(p.cost('no-such-model', usage)).toBe(0)
    expect(p.price('no-such-model')).toBeUndefined()
    expect(warnings).toHaveLength(1)
    expect(p.cost('gpt-4o-mini', usage)).toBeCloseTo((1000 * 0.15 + 1000 * 0.6) / 1e6, 12)
  })

  it('stays bounded and correct past 10,000 distinct model names', () => {
    const p = createPricing()
    const usage = { inputTokens: 1e6, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 }
    for (let i = 0; i < 12_000; i++) p.cost(`made-up-${i}`, usage)
    expect(p.cost('gpt-4o', usage)).toBeCloseTo(2.5, 9)
    expect(p.cost('made-up-0', usage)).toBe(0)
  })
})
