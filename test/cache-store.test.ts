// The exact cache's two tiers on real drivers: bounded L1, L2 on fs and on a real redis-server,
// TTL honoured on each, corrupt entries detected and removed.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { createStorage, type Storage } from 'unstorage'
import fsLiteDriver from 'unstorage/drivers/fs-lite'
import memoryDriver from 'unstorage/drivers/memory'
import redisDriver from 'unstorage/drivers/redis'
import { afterAll, describe, expect, inject, it } from 'vitest'
import { fsDriver } from '../core/storage-fs.ts'
import { ExactStore, entryProblem, type CacheEntry } from '../plugins/exact-cache/store.ts'
import type { Logger } from '../core/types.ts'

const warnings: string[] = []
const log: Logger = {
  info() {},
  debug() {},
  error() {},
  warn: (m) => {
    warnings.push(m)
  },
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function entry(text: string, ttlMs = 60_000): CacheEntry {
  const now = Date.now()
  return {
    v: 1,
    createdAt: now,
    expiresAt: now + ttlMs,
    protocol: 'anthropic',
    answer: {
      id: 'msg_1',
      model: 'claude-haiku-4-5',
      text,
      toolCalls: [],
      stopReason: 'stop',
      usage: { inputTokens: 12, outputTokens: 30, cacheReadTokens: 0, cacheWriteTokens: 0 },
    },
  }
}
const hash = (i: number) => i.toString(16).padStart(64, '0')

const dirs: string[] = []
const storages: Storage[] = []
afterAll(async () => {
  for (const s of storages) await s.dispose()
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

function makeStorage(kind: 'fs' | 'redis' | 'memory'): Storage {
  let s: Storage
  if (kind === 'fs') {
    const dir = mkdtempSync(join(tmpdir(), 'am-exact-'))
    dirs.push(dir)
    s = createStorage({ driver: fsLiteDriver({ base: dir }) })
  } else if (kind === 'redis') {
    s = createStorage({
      driver: redisDriver({
        url: inject('redisUrl'),
        base: `t${process.pid}${Math.random().toString(36).slice(2, 8)}`,
      }),
    })
  } else s = createStorage({ driver: memoryDriver() })
  storages.push(s)
  return s
}

const store = (storage?: Storage, o: Partial<{ maxEntries: number; maxBytes: number }> = {}) =>
  new ExactStore({
    storage,
    prefix: 'cache:exact',
    maxEntries: o.maxEntries ?? 100,
    maxBytes: o.maxBytes ?? 1_000_000,
    ttlSeconds: 3600,
    log,
  })

describe('L1 (in-process)', () => {
  it('is bounded by entries', async () => {
    const s = store(undefined, { maxEntries: 3 })
    for (let i = 0; i < 5; i++) await s.set(hash(i), entry(`answer ${i}`))
    expect(s.l1.size).toBe(3)
    expect((await s.get(hash(0))).status).toBe('miss')
    expect((await s.get(hash(4))).status).toBe('hit')
  })

  it('is bounded by bytes', async () => {
    const s = store(undefined, { maxEntries: 1000, maxBytes: 20_000 })
    for (let i = 0; i < 10; i++) await s.set(hash(i), entry('x'.repeat(4000)))
    expect(s.l1.calculatedSize).toBeLessThanOrEqual(20_000)
    expect(s.l1.size).toBeLessThan(10)
    expect(s.l1.size).toBeGreaterThan(0)
  })

  it('expires entries by their own expiresAt', async () => {
    const s = store()
    await s.set(hash(1), entry('short-lived', 300))
    expect((await s.get(hash(1))).status).toBe('hit')
    await sleep(400)
    expect(['expired', 'miss']).toContain((await s.get(hash(1))).status)
  })
})

describe.each(['fs', 'redis', 'memory'] as const)('L2 on %s', (kind) => {
  it('a second store on the same storage (another instance) reads the entry and promotes it to L1', async () => {
    const storage = makeStorage(kind)
    const a = store(storage)
    await a.set(hash(7), entry('shared answer'))
    const b = store(storage)
    expect(b.l1.size).toBe(0)
    const got = await b.get(hash(7))
    expect(got.status).toBe('hit')
    if (got.status === 'hit') {
      expect(got.tier).toBe('l2')
      expect(got.entry.answer.text).toBe('shared answer')
    }
    const again = await b.get(hash(7))
    expect(again.status === 'hit' && again.tier).toBe('l1')
  })

  it('honours the TTL (an expired entry is a miss and is removed)', async () => {
    const storage = makeStorage(kind)
    const a = store(storage)
    await a.set(hash(8), entry('expires soon', 1000))
    expect((await store(storage).get(hash(8))).status).toBe('hit')
    await sleep(1300)
    const fresh = store(storage)
    expect(['expired', 'miss']).toContain((await fresh.get(hash(8))).status)
    expect(await storage.hasItem(a.storageKey(hash(8)))).toBe(false)
  })

  it('a corrupt entry is reported, not thrown, and deleted', async () => {
    const storage = makeStorage(kind)
    const s = store(storage)
    const k = s.storageKey(hash(9))
    for (const bad of [
      '{"v":1,"answer":',
      'not json at all',
      JSON.stringify({ v: 1, createdAt: 1, expiresAt: Date.now() + 1e6, answer: { text: 5 } }),
      JSON.stringify([1, 2]),
    ]) {
      await storage.setItemRaw(k, bad)
      const got = await store(storage).get(hash(9))
      expect(got.status, bad).toBe('corrupt')
      expect(await storage.hasItem(k)).toBe(false)
    }
  })
})

describe('fs: expired entries nobody reads are swept from disk', () => {
  it('sweep() deletes expired and unparsable entries, keeps live ones, in batches', async () => {
    const storage = makeStorage('fs')
    const s = store(storage)
    for (let i = 0; i < 5; i++) await s.set(hash(100 + i), entry(`live ${i}`))
    const past = { ...entry('old'), createdAt: Date.now() - 10_000, expiresAt: Date.now() - 1 }
    for (let i = 0; i < 4; i++) await storage.setItem(s.storageKey(hash(200 + i)), past as any)
    await storage.setItemRaw(s.storageKey(hash(300)), '{"v":1,"answer":')
    const r = await s.sweep(Date.now(), 3)
    expect(r).toEqual({ scanned: 10, removed: 5 })
    const left = await storage.getKeys('cache:exact')
    expect(left).toHaveLength(5)
    for (let i = 0; i < 5; i++) expect((await store(storage).get(hash(100 + i))).status).toBe('hit')
    // a later sweep finds the live ones expired in their turn
    expect((await s.sweep(Date.now() + 3600_000)).removed).toBe(5)
    expect(await storage.getKeys('cache:exact')).toHaveLength(0)
  })
})

describe("fs: an answer of megabytes is written in pieces (the proxy's own fs driver)", () => {
  it('reads back the same entry and the bytes writeFile would have written, pairs across piece edges', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'am-exact-big-'))
    dirs.push(dir)
    const storage = createStorage({ driver: fsDriver({ base: dir }) })
    storages.push(storage)
    const MB = 1024 * 1024
    // a surrogate pair whose halves lie on both sides of the first 1 MB cut of the entry's JSON
    const at = JSON.stringify(entry('@')).indexOf('@')
    const text = `${'a'.repeat(MB - 1 - at)}\u{1F98A}${'\u{1F98A}\ud800"\\\né'.repeat(1000)}${'b'.repeat(2 * MB)}`
    const e = entry(text)
    expect(JSON.stringify(e).charCodeAt(MB - 1)).toBe(0xd83e)
    const s = store(storage, { maxBytes: 50_000_000 })
    await s.set(hash(1), e)
    await s.flush()
    const file = join(dir, ...s.storageKey(hash(1)).split(':'))
    expect(readFileSync(file).equals(Buffer.from(JSON.stringify(e), 'utf8'))).toBe(true)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    // a fresh store: read from disk, not from its memory
    const got = await store(storage, { maxBytes: 50_000_000 }).get(hash(1))
    expect(got.status).toBe('hit')
    expect(got.status === 'hit' && got.entry.answer.text === text).toBe(true)
  })
})

describe('redis TTL is set on the key itself', () => {
  it('passes ttl to redis (EX), so redis expires entries without a reader', async () => {
    const url = inject('redisUrl')
    const base = `ttl${process.pid}`
    const storage = createStorage({ driver: redisDriver({ url, base }) })
    storages.push(storage)
    const s = store(storage)
    await s.set(hash(3), entry('with ttl', 120_000))
    const redis = new Redis(url)
    const ttl = await redis.ttl(`${base}:${s.storageKey(hash(3))}`)
    redis.disconnect()
    expect(ttl).toBeGreaterThan(100)
    expect(ttl).toBeLessThanOrEqual(120)
  })
})

describe('entryProblem', () => {
  it('accepts a good entry and names what is wrong with a bad one', () => {
    expect(entryProblem(entry('ok'))).toBeUndefined()
    expect(entryProblem('text')).toMatch(/not an object/)
    expect(entryProblem({ ...entry('x'), v: 2 })).toMatch(/version/)
    expect(entryProblem({ ...entry('x'), answer: { ...entry('x').answer, toolCalls: [{ id: 1 }] } })).toMatch(
      /toolCalls/,
    )
    expect(entryProblem({ ...entry('x'), answer: { ...entry('x').answer, usage: {} } })).toMatch(/usage/)
  })
})
