// Atomic counters: the in-process Map and the redis Lua scripts, against a real redis-server.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { inject } from 'vitest'
import { createCounters, createMemoryCounters, createRedisCounters, type BatchCounters } from '../core/counters.ts'

const url = inject('redisUrl')
const clients: Redis[] = []
const client = () => {
  const r = new Redis(url, { maxRetriesPerRequest: 2 })
  clients.push(r)
  return r
}
let prefixN = 0
const prefix = () => `test:counters:${process.pid}:${Date.now()}:${prefixN++}:`

afterAll(async () => {
  await Promise.all(clients.map((c) => c.quit()))
})

/** the same behaviour is required of both implementations */
function contract(name: string, make: () => BatchCounters) {
  describe(`${name} counters`, () => {
    it('incr adds and returns the new value; get reads it; del removes it', async () => {
      const c = make()
      expect(await c.get('a')).toBe(0)
      expect(await c.incr('a', 5)).toBe(5)
      expect(await c.incr('a', -2)).toBe(3)
      expect(await c.incr('a', 0.25)).toBe(3.25)
      expect(await c.get('a')).toBe(3.25)
      await c.del('a')
      expect(await c.get('a')).toBe(0)
    })

    it('reserve adds to every key or to none', async () => {
      const c = make()
      await c.incr('t', 90)
      const refused = await c.reserve(['u', 't', 'g'], 20, [1000, 100, 1000], [60, 60, 60])
      expect(refused).toEqual({ ok: false, values: [0, 90, 0] })
      // nothing was added anywhere
      expect([await c.get('u'), await c.get('t'), await c.get('g')]).toEqual([0, 90, 0])
      const taken = await c.reserve(['u', 't', 'g'], 10, [1000, 100, 1000], [60, 60, 60])
      expect(taken).toEqual({ ok: true, values: [10, 100, 10] })
      // exactly at the limit is allowed; one more is not
      expect((await c.reserve(['t'], 1, [100], [60])).ok).toBe(false)
    })

    it('a limit of 0 refuses any positive reservation and does not fail', async () => {
      const c = make()
      const r = await c.reserve(['zero'], 1, [0], [60])
      expect(r.ok).toBe(false)
      expect(await c.get('zero')).toBe(0)
    })

    it('an unlimited key (huge limit) always takes the reservation', async () => {
      const c = make()
      const r = await c.reserve(['x'], 1e9, [Number.MAX_SAFE_INTEGER], [60])
      expect(r).toEqual({ ok: true, values: [1e9] })
    })

    it('reserveMany checks each key against its own delta and limit, all or none; incrMany adds in one step', async () => {
      const c = make()
      const entries = [
        { key: 'tok', delta: 100, limit: 250, ttl: 60 },
        { key: 'usd', delta: 7, limit: 20, ttl: 60 },
        { key: 'req', delta: 1, limit: Number.MAX_SAFE_INTEGER, ttl: 60 },
      ]
      expect(await c.reserveMany(entries)).toEqual({ ok: true, values: [100, 7, 1] })
      expect(await c.reserveMany(entries)).toEqual({ ok: true, values: [200, 14, 2] })
      // tokens would still fit (300 > 250 does not), usd would not: nothing moves
      expect(await c.reserveMany(entries)).toEqual({ ok: false, values: [200, 14, 2] })
      expect(
        await c.incrMany([
          { key: 'tok', delta: -150, ttl: 60 },
          { key: 'new', delta: 2.5, ttl: 60 },
        ]),
      ).toEqual([50, 2.5])
      expect(await c.get('tok')).toBe(50)
    })

    it('reserveMany with a key listed twice: both checked against the value before, added one after the other', async () => {
      const c = make()
      await c.incr('dup', 5)
      expect(
        await c.reserveMany([
          { key: 'dup', delta: 2, limit: 100, ttl: 60 },
          { key: 'fresh', delta: 1, limit: 100, ttl: 60 },
          { key: 'dup', delta: 3, limit: 100, ttl: 60 },
          { key: 'fresh', delta: 1, limit: 100, ttl: 60 },
        ]),
      ).toEqual({ ok: true, values: [7, 1, 10, 2] })
      // each entry is checked against the value before the step: 10 + 3 fits 12, 10 + 2 + 3 would not
      expect(
        await c.reserveMany([
          { key: 'dup', delta: 2, limit: 12, ttl: 60 },
          { key: 'dup', delta: 3, limit: 13, ttl: 60 },
        ]),
      ).toEqual({ ok: true, values: [12, 15] })
      expect(await c.get('dup')).toBe(15)
      expect(await c.get('fresh')).toBe(2)
    })

    it('200 concurrent reservations against a budget for 50: exactly 50 succeed, no overspend', async () => {
      const c = make()
      const results = await Promise.all(
        Array.from({ length: 200 }, () =>
          c.reserve(['budget:team', 'budget:global'], 120, [50 * 120, 1_000_000], [60, 60]),
        ),
      )
      expect(results.filter((r) => r.ok)).toHaveLength(50)
      expect(await c.get('budget:team')).toBe(6000)
      expect(await c.get('budget:global')).toBe(6000)
      const many = await Promise.all(
        Array.from({ length: 200 }, () =>
          c.reserveMany([
            { key: 'm:tok', delta: 120, limit: 6000, ttl: 60 },
            { key: 'm:usd', delta: 3, limit: 1e9, ttl: 60 },
          ]),
        ),
      )
      expect(many.filter((r) => r.ok)).toHaveLength(50)
      expect([await c.get('m:tok'), await c.get('m:usd')]).toEqual([6000, 150])
    })
  })
}

contract('memory', () => createMemoryCounters())
contract('redis', () => createRedisCounters(client(), prefix()))

describe('memory counters', () => {
  it('expire keys created with a ttl, and keep the first expiry on later adds', async () => {
    let now = 1_000_000
    const c = createMemoryCounters({ now: () => now })
    await c.incr('k', 1, 10)
    now += 5_000
    await c.incr('k', 1, 10)
    expect(await c.get('k')).toBe(2)
    now += 5_001
    expect(await c.get('k')).toBe(0)
    // reserve sets the ttl on creation too
    await c.reserve(['r'], 3, [10], [1])
    now += 999
    expect(await c.get('r')).toBe(3)
    now += 2
    expect(await c.get('r')).toBe(0)
  })

  it('reserveManySync and incrManySync: done when they return, the same steps as reserveMany and incrMany', () => {
    let now = 1_000_000
    const c = createMemoryCounters({ now: () => now })
    const step = [
      { key: 'calls', delta: 1, limit: 3, ttl: 10 },
      { key: 'body', delta: 1, limit: Number.MAX_SAFE_INTEGER, ttl: 2 },
      { key: 'trip', delta: 0, limit: 0, ttl: 10 },
    ]
    expect(c.reserveManySync(step)).toEqual({ ok: true, values: [1, 1, 0] })
    now += 1_000
    expect(c.reserveManySync(step)).toEqual({ ok: true, values: [2, 2, 0] })
    // body expired (ttl 2 s from its creation): it starts again from 0 with a new ttl
    now += 1_500
    expect(c.reserveManySync(step)).toEqual({ ok: true, values: [3, 1, 0] })
    // calls at its limit: refused, the values before, nothing added anywhere
    expect(c.reserveManySync(step)).toEqual({ ok: false, values: [3, 1, 0] })
    expect(c.incrManySync([{ key: 'body', delta: 0, ttl: 2 }])).toEqual([1])
    // a tripped run: trip above its limit of 0 refuses, whatever the others say
    expect(
      c.incrManySync([
        { key: 'trip', delta: 1, ttl: 10 },
        { key: 'calls', delta: -3, ttl: 10 },
      ]),
    ).toEqual([1, 0])
    expect(c.reserveManySync(step)).toEqual({ ok: false, values: [0, 1, 1] })
    // calls keeps the expiry of its creation (1_000_000 + 10 s) through the adds
    now = 1_000_000 + 10_000
    expect(c.reserveManySync([{ key: 'calls', delta: 1, limit: 3, ttl: 10 }])).toEqual({ ok: true, values: [1] })
    now += 9_999
    expect(c.incrManySync([{ key: 'calls', delta: 1, ttl: 10 }])).toEqual([2])
    now += 1
    expect(c.incrManySync([{ key: 'calls', delta: 1 }])).toEqual([1])
  })

  it('persist to a file and come back after a restart (fs storage)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentmesh-counters-'))
    try {
      const file = join(dir, 'counters.json')
      const a = createMemoryCounters({ file, flushMs: 10 })
      await a.incr('day:team:eng', 1234, 3600)
      await a.incr('gone', 1, 1)
      await a.close()
      const saved = JSON.parse(readFileSync(file, 'utf8'))
      expect(saved.entries.map((e: unknown[]) => e[0]).sort()).toEqual(['day:team:eng', 'gone'])
      const b = createMemoryCounters({ file, now: () => Date.now() + 2000 })
      expect(await b.get('day:team:eng')).toBe(1234)
      expect(await b.get('gone')).toBe(0)
      await b.close()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('redis counters', () => {
  it('set the ttl when a key is created, through reserve and incr', async () => {
    const r = client()
    const p = prefix()
    const c = createRedisCounters(r, p)
    await c.reserve(['a', 'b'], 5, [100, 100], [120, 0])
    await c.incr('c', 1, 30)
    const [ta, tb, tc] = await Promise.all([r.ttl(p + 'a'), r.ttl(p + 'b'), r.ttl(p + 'c')])
    expect(ta).toBeGreaterThan(100)
    expect(ta).toBeLessThanOrEqual(120)
    expect(tb).toBe(-1)
    expect(tc).toBeGreaterThan(20)
    // a later add does not push the expiry out
    await r.expire(p + 'a', 50)
    await c.incr('a', 1, 120)
    expect(await r.ttl(p + 'a')).toBeLessThanOrEqual(50)
  })

  it('two proxies (two connections) share one budget: 200 concurrent reservations for 50 slots give exactly 50', async () => {
    const p = prefix()
    const a = createRedisCounters(client(), p)
    const b = createRedisCounters(client(), p)
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).reserve(['team:eng'], 100, [5000], [60])),
    )
    expect(results.filter((r) => r.ok)).toHaveLength(50)
    expect(await a.get('team:eng')).toBe(5000)
    const many = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        (i % 2 ? a : b).reserveMany([{ key: 'team:ops', delta: 100, limit: 5000, ttl: 60 }]),
      ),
    )
    expect(many.filter((r) => r.ok)).toHaveLength(50)
    expect(await b.get('team:ops')).toBe(5000)
  })

  it('createCounters opens its own client from storage.url and closes it', async () => {
    const c = await createCounters({ driver: 'redis', url, prefix: `test:own:${process.pid}:${Date.now()}` })
    expect(await c.incr('n', 2, 60)).toBe(2)
    await c.close()
  })
})
