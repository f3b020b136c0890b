// Atomic counters for quotas and rate limits (unstorage has no increment). In one process a Map is
// enough: JavaScript runs one task at a time and nothing below awaits between the check and the
// add. Across processes the check-and-add runs inside redis as one Lua script (EVALSHA), so two
// proxies on one redis can never both take the last of a budget.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import type { Redis } from 'ioredis'
import { Availability, reasonOf } from './storage-health.ts'
import { isRedisLink, linkTo, openRedisLink, type RedisLink } from './storage-redis.ts'
import type { Counters, Logger, StorageConfig } from './types.ts'

export interface CounterEntry {
  key: string
  delta: number
  /** reserveMany only: the value the key may reach */
  limit?: number
  ttl?: number
}

/**
 * Several keys in one step (one redis round trip). Not part of the Counters interface: plugins
 * use them when present (`'reserveMany' in mesh.counters`) and fall back to reserve/incr.
 */
export interface BatchCounters extends Counters {
  /** like reserve, with a delta and limit per key: every value(key) + delta <= limit, then all are added, or none */
  reserveMany(entries: CounterEntry[]): Promise<{ ok: boolean; values: number[] }>
  /** add each delta (ttl set on creation); returns the new values */
  incrMany(entries: CounterEntry[]): Promise<number[]>
}

export function hasBatch(c: Counters): c is BatchCounters {
  return (
    typeof (c as Partial<BatchCounters>).reserveMany === 'function' &&
    typeof (c as Partial<BatchCounters>).incrMany === 'function'
  )
}

/**
 * Batch steps that are done when they return (memory counters, file-backed ones too; redis has
 * none): a plugin that finds them keeps its hook synchronous, with no promise and no microtask
 * turn per request on the hot path.
 */
export interface SyncBatchCounters extends BatchCounters {
  reserveManySync(entries: CounterEntry[]): { ok: boolean; values: number[] }
  incrManySync(entries: CounterEntry[]): number[]
}

export function hasSyncBatch(c: Counters): c is SyncBatchCounters {
  return (
    typeof (c as Partial<SyncBatchCounters>).reserveManySync === 'function' &&
    typeof (c as Partial<SyncBatchCounters>).incrManySync === 'function'
  )
}

/** Counters plus the means to release what they hold; the core calls close() at shutdown. */
export interface ClosableCounters extends BatchCounters {
  /** write pending state (file-backed memory counters) and close connections this module opened */
  close(): Promise<void>
  /** whether what the counters are kept in works (the counters file, redis); absent for plain memory */
  readonly availability?: Availability
}

export interface MemoryCountersOptions {
  /**
   * Keep the counters in this JSON file, so a single-process deployment on fs storage keeps its
   * day's usage across restarts. Written at most every `flushMs` and at close. Not shared
   * safely between processes: several instances need redis.
   */
  file?: string
  flushMs?: number
  /** clock, for tests of expiry */
  now?: () => number
  /** where a failed save (a full disk) is reported, once per outage */
  log?: Logger
  /** writes the file's new content; the default writes a 0600 temporary file and renames it over */
  write?: (file: string, data: string) => void
}

/** the longest wait between two attempts to save the counters file while it cannot be written */
const MAX_SAVE_BACKOFF_MS = 10_000

function writeReplacing(file: string, data: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
  const tmp = `${file}.${process.pid}.tmp`
  try {
    writeFileSync(tmp, data, { mode: 0o600 })
    renameSync(tmp, file)
  } catch (err) {
    // a half-written temporary file would only take more of a full disk
    try {
      rmSync(tmp, { force: true })
    } catch {
      /* the save's own error is the one to report */
    }
    throw err
  }
}

interface Entry {
  v: number
  exp: number
}

// one closure over 80 lines, as unstorage's drivers are: every method shares the map, the expiry
// timer and the file-save state; each method itself is short
export function createMemoryCounters(options: MemoryCountersOptions = {}): ClosableCounters & SyncBatchCounters {
  const now = options.now ?? Date.now
  const map = new Map<string, Entry>()
  const file = options.file
  let dirty = false
  let timer: NodeJS.Timeout | undefined
  let ops = 0

  if (file) {
    try {
      const saved = JSON.parse(readFileSync(file, 'utf8')) as { entries?: Array<[string, number, number]> }
      const t = now()
      for (const [k, v, exp] of saved.entries ?? [])
        if (typeof k === 'string' && Number.isFinite(v) && (!exp || exp > t)) map.set(k, { v, exp: exp || 0 })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new Error(`cannot read counters file ${file}: ${(err as Error).message}`)
    }
  }

  const flushMs = options.flushMs ?? 1000
  const write = options.write ?? writeReplacing
  const availability = file
    ? new Availability(
        `counters file ${file}`,
        options.log,
        'quota counters are kept in memory and saved when it can be written again',
      )
    : undefined
  let failedSaves = 0
  const schedule = (ms: number) => {
    timer = setTimeout(flush, ms)
    timer.unref?.()
  }
  /** saves the counters; runs from a timer, so it must never throw (a full disk crash-looped the proxy) */
  const flush = (): boolean => {
    timer = undefined
    if (!file || !dirty) return true
    const t = now()
    const entries: Array<[string, number, number]> = []
    for (const [k, e] of map) if (!e.exp || e.exp > t) entries.push([k, e.v, e.exp])
    try {
      write(file, JSON.stringify({ version: 1, savedAt: new Date(t).toISOString(), entries }))
    } catch (err) {
      // the counters stay in memory, dirty: the next attempt, later each time, saves them all
      availability!.markDown(reasonOf(err))
      schedule(Math.min(flushMs * 2 ** failedSaves++, MAX_SAVE_BACKOFF_MS))
      return false
    }
    dirty = false
    failedSaves = 0
    availability!.markUp()
    return true
  }
  const touched = () => {
    if (!file) return
    dirty = true
    if (!timer) schedule(flushMs)
  }

  /** current entry, dropping it if expired; sweeps the whole map now and then */
  const live = (key: string, t: number): Entry | undefined => {
    if (++ops % 4096 === 0 && map.size > 10_000) {
      for (const [k, e] of map) if (e.exp && e.exp <= t) map.delete(k)
    }
    const e = map.get(key)
    if (e && e.exp && e.exp <= t) {
      map.delete(key)
      return undefined
    }
    return e
  }

  const add = (key: string, delta: number, ttlSeconds: number | undefined, t: number): number => {
    const e = live(key, t)
    if (e) {
      e.v += delta
      if (!e.exp && ttlSeconds && ttlSeconds > 0) e.exp = t + ttlSeconds * 1000
      return e.v
    }
    map.set(key, { v: delta, exp: ttlSeconds && ttlSeconds > 0 ? t + ttlSeconds * 1000 : 0 })
    return delta
  }

  // reserveManySync's entries found while checking, so the add needs no second lookup; reused:
  // nothing between filling and reading it awaits
  const found: Array<Entry | undefined> = []
  const reserveManySync = (entries: CounterEntry[]): { ok: boolean; values: number[] } => {
    const t = now()
    const n = entries.length
    const values = new Array<number>(n)
    found.length = n
    for (let i = 0; i < n; i++) {
      const e = live(entries[i]!.key, t)
      found[i] = e
      values[i] = e ? e.v : 0
    }
    for (let i = 0; i < n; i++) {
      const e = entries[i]!
      if (!(values[i]! + e.delta <= (e.limit ?? Infinity))) {
        found.fill(undefined)
        return { ok: false, values }
      }
    }
    for (let i = 0; i < n; i++) {
      const e = entries[i]!
      const f = found[i]
      found[i] = undefined
      // a key not there yet (or listed twice) is looked up again: an earlier entry may have made it
      if (!f) values[i] = add(e.key, e.delta, e.ttl, t)
      else {
        f.v += e.delta
        if (!f.exp && e.ttl && e.ttl > 0) f.exp = t + e.ttl * 1000
        values[i] = f.v
      }
    }
    touched()
    return { ok: true, values }
  }
  const incrManySync = (entries: CounterEntry[]): number[] => {
    const t = now()
    const after = new Array<number>(entries.length)
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!
      after[i] = add(e.key, e.delta, e.ttl, t)
    }
    touched()
    return after
  }
  return {
    async incr(key, delta, ttlSeconds) {
      const v = add(key, delta, ttlSeconds, now())
      touched()
      return v
    },
    async get(key) {
      return live(key, now())?.v ?? 0
    },
    async reserve(keys, delta, limits, ttlSeconds) {
      // no await from here to the return: the check and the add are one step for this process
      const t = now()
      const values = keys.map((k) => live(k, t)?.v ?? 0)
      for (let i = 0; i < keys.length; i++) {
        if (!(values[i]! + delta <= (limits[i] ?? Infinity))) return { ok: false, values }
      }
      const after = keys.map((k, i) => add(k, delta, ttlSeconds[i], t))
      touched()
      return { ok: true, values: after }
    },
    async reserveMany(entries) {
      return reserveManySync(entries)
    },
    async incrMany(entries) {
      return incrManySync(entries)
    },
    reserveManySync,
    incrManySync,
    async del(key) {
      map.delete(key)
      touched()
    },
    async close() {
      if (timer) clearTimeout(timer)
      const saved = flush()
      if (timer) clearTimeout(timer)
      if (!saved)
        options.log?.error(`counters: could not save ${file} at shutdown; usage counted since the last save is lost`)
    },
    availability,
  }
}

// KEYS: the counters. ARGV: delta, then one limit per key, then one ttl per key.
// Values travel as strings: redis turns Lua numbers into integers, which would truncate fractions.
const INCR_LUA = `
local v = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if ttl > 0 and redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return v
`

// KEYS: the counters. ARGV: n deltas, n limits, n ttls.
const RESERVE_MANY_LUA = `
local n = #KEYS
for i = 1, n do
  if (tonumber(redis.call('GET', KEYS[i])) or 0) + tonumber(ARGV[i]) > tonumber(ARGV[n + i]) then
    local out = {0}
    for j = 1, n do out[j + 1] = redis.call('GET', KEYS[j]) or '0' end
    return out
  end
end
local out = {1}
for i = 1, n do
  out[i + 1] = redis.call('INCRBYFLOAT', KEYS[i], ARGV[i])
  local ttl = tonumber(ARGV[2 * n + i])
  if ttl > 0 and redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], ttl) end
end
return out
`

// KEYS: the counters. ARGV: n deltas, n ttls.
const INCR_MANY_LUA = `
local n = #KEYS
local out = {}
for i = 1, n do
  out[i] = redis.call('INCRBYFLOAT', KEYS[i], ARGV[i])
  local ttl = tonumber(ARGV[n + i])
  if ttl > 0 and redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], ttl) end
end
return out
`

type ScriptClient = Redis & {
  agentmeshIncr(numKeys: number, ...args: Array<string | number>): Promise<string>
  agentmeshReserveMany(numKeys: number, ...args: Array<string | number>): Promise<Array<string | number>>
  agentmeshIncrMany(numKeys: number, ...args: Array<string | number>): Promise<string[]>
}

const num = (v: unknown) => {
  const n = Number(v)
  return Number.isFinite(n) ? n : 0
}
// Lua reads limits with tonumber(); 'inf' is not portable, a huge finite number is
const limitArg = (l: number | undefined) => (l === undefined || !Number.isFinite(l) ? '1e300' : String(l))

/**
 * Counters on redis. Every key is `prefix + key`. Both scripts are loaded once per connection and
 * run by SHA (ioredis falls back to EVAL after a NOSCRIPT, e.g. when redis restarted). All keys of
 * one reserve() must live on one redis node (no Redis Cluster slot spreading). On a RedisLink a
 * call fails at once while redis is down; connection failures throw StorageUnavailableError.
 */
export function createRedisCounters(source: Redis | RedisLink, prefix: string, ownsClient = false): ClosableCounters {
  const link = isRedisLink(source) ? source : linkTo(source)
  const redis = link.client
  const r = redis as ScriptClient
  if (typeof r.agentmeshReserveMany !== 'function') {
    redis.defineCommand('agentmeshIncr', { lua: INCR_LUA, numberOfKeys: 1 })
    redis.defineCommand('agentmeshReserveMany', { lua: RESERVE_MANY_LUA })
    redis.defineCommand('agentmeshIncrMany', { lua: INCR_MANY_LUA })
  }
  const k = (key: string) => prefix + key
  // each call checks the link first and converts its error inside the async function it already
  // is: no extra promise per call
  const self: ClosableCounters = {
    async incr(key, delta, ttlSeconds) {
      link.assertUp()
      try {
        return num(await (r.agentmeshIncr as any)(k(key), String(delta), String(Math.ceil(ttlSeconds ?? 0))))
      } catch (err) {
        throw link.failure(err)
      }
    },
    async get(key) {
      link.assertUp()
      try {
        return num(await redis.get(k(key)))
      } catch (err) {
        throw link.failure(err)
      }
    },
    // the same delta on every key: the general script, one entry per key
    reserve(keys, delta, limits, ttlSeconds) {
      return self.reserveMany(keys.map((key, i) => ({ key, delta, limit: limits[i], ttl: ttlSeconds[i] })))
    },
    async reserveMany(entries) {
      if (entries.length === 0) return { ok: true, values: [] }
      link.assertUp()
      const args: Array<string | number> = [
        entries.length,
        ...entries.map((e) => k(e.key)),
        ...entries.map((e) => String(e.delta)),
        ...entries.map((e) => limitArg(e.limit)),
        ...entries.map((e) => String(Math.ceil(e.ttl ?? 0))),
      ]
      try {
        const out = await r.agentmeshReserveMany(...(args as [number, ...Array<string | number>]))
        return { ok: Number(out[0]) === 1, values: out.slice(1).map(num) }
      } catch (err) {
        throw link.failure(err)
      }
    },
    async incrMany(entries) {
      if (entries.length === 0) return []
      link.assertUp()
      const args: Array<string | number> = [
        entries.length,
        ...entries.map((e) => k(e.key)),
        ...entries.map((e) => String(e.delta)),
        ...entries.map((e) => String(Math.ceil(e.ttl ?? 0))),
      ]
      try {
        return (await r.agentmeshIncrMany(...(args as [number, ...Array<string | number>]))).map(num)
      } catch (err) {
        throw link.failure(err)
      }
    },
    async del(key) {
      link.assertUp()
      try {
        await redis.del(k(key))
      } catch (err) {
        throw link.failure(err)
      }
    },
    async close() {
      if (ownsClient) link.close()
    },
    availability: link.availability,
  }
  return self
}

/**
 * Counters for a storage config: redis when storage is redis (sharing `redisClient` when given,
 * else opening one from storage.url), otherwise in process memory, kept in
 * `<dataDir>/counters.json` for fs storage so a restart does not reset the day's budgets.
 */
export async function createCounters(
  storage: StorageConfig,
  redisClient?: Redis | RedisLink,
  opts: { dataDir?: string; log?: Logger } = {},
): Promise<ClosableCounters> {
  if (storage.driver === 'redis') {
    const prefix = `${storage.prefix ?? 'agentmesh'}:counters:`
    if (redisClient) return createRedisCounters(redisClient, prefix)
    if (!storage.url) throw new Error('storage.url is required when storage.driver is redis')
    return createRedisCounters(openRedisLink(storage.url, 'redis (counters)', opts.log), prefix, true)
  }
  if (storage.driver === 'fs') {
    const dataDir = resolve(opts.dataDir ?? '.agentmesh')
    return createMemoryCounters({ file: join(dataDir, 'counters.json'), log: opts.log })
  }
  return createMemoryCounters()
}
