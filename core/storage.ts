// unstorage chosen in config (memory, fs under the data dir, redis by URL) plus the atomic
// counters unstorage lacks. The core knows the interface; the drivers are small files of their own
// (core/storage-fs.ts, core/storage-redis.ts) so that files are private and an outage is a 503.
import { join, resolve } from 'node:path'
import { createStorage, type Storage } from 'unstorage'
import type { Redis } from 'ioredis'
import type { ChangeFeed, Counters, HealthCheck, Logger, StorageConfig } from './types.ts'
import { createMemoryCounters, createRedisCounters, type ClosableCounters } from './counters.ts'
import { fsDriver, secureDir } from './storage-fs.ts'
import { Availability, mergeHealth } from './storage-health.ts'
import { isRedisLink, linkTo, openRedisLink, redisDriver, type RedisLink } from './storage-redis.ts'

export interface MeshStorage {
  storage: Storage
  counters: Counters
  changes?: ChangeFeed
  describe: string
  /** for /agentmesh/health and /agentmesh/ready: not ok while redis, the fs storage or the counters file is down */
  health(): HealthCheck
  close(): Promise<void>
}

/**
 * `log` receives one line when a part of storage goes down and one when it is back. For fs
 * storage the data dir is created 0700 (an existing one of ours loses group and other rights).
 */
export function createMeshStorage(config: StorageConfig, dataDir: string, log?: Logger): MeshStorage {
  // the audit log and signing keys live in the data dir whatever the storage driver
  tighten(dataDir, config.driver === 'fs', log)
  if (config.driver === 'redis') return redisStorage(config, log)
  if (config.driver === 'fs') return fsStorage(config, dataDir, log)
  // no driver: unstorage's default is its memory driver (a default import of
  // 'unstorage/drivers/memory' would need the loader's default interop, off in bin/agentmesh.mjs)
  const storage = createStorage()
  return {
    storage,
    counters: createMemoryCounters(),
    describe: 'memory',
    health: () => mergeHealth([]),
    close: () => storage.dispose(),
  }
}

function redisStorage(config: StorageConfig, log?: Logger): MeshStorage {
  const prefix = config.prefix ?? 'agentmesh'
  const describe = `redis ${redactUrl(config.url!)}`
  const link = openRedisLink(config.url!, describe, log)
  const storage = createStorage({ driver: redisDriver({ link, base: prefix }) })
  return {
    storage,
    counters: createRedisCounters(link, `${prefix}:counters:`),
    changes: createRedisChangeFeed(link, `${prefix}:changes:`),
    describe,
    health: () => link.availability.health(),
    close: async () => {
      await storage.dispose()
      link.close()
    },
  }
}

function fsStorage(config: StorageConfig, dataDir: string, log?: Logger): MeshStorage {
  const base = resolve(dataDir, config.base ?? 'storage')
  tighten(base, true, log)
  const availability = new Availability(
    `fs ${base}`,
    log,
    'cache, key and grant writes fail until it can be written again',
  )
  const storage = createStorage({ driver: fsDriver({ base, availability }) })
  // budgets survive a restart of a single instance; several instances need redis
  const counters: ClosableCounters = createMemoryCounters({ file: join(dataDir, 'counters.json'), log })
  return {
    storage,
    counters,
    describe: `fs ${base}`,
    health: () => mergeHealth([availability, counters.availability!]),
    close: async () => {
      await counters.close()
      await storage.dispose()
    },
  }
}

/** the data dir and the storage dir: created 0700, or made 0700 when older versions left them open */
function tighten(dir: string, create: boolean, log?: Logger): void {
  const was = secureDir(dir, create)
  if (was !== undefined) log?.info(`storage: ${dir} was readable by other users (mode ${was.toString(8)}); now 700`)
}

/** A sorted set per feed: member `kind:id`, score the time it was recorded; older than an hour trimmed on write. */
export function createRedisChangeFeed(source: Redis | RedisLink, prefix: string, retentionMs = 3_600_000): ChangeFeed {
  const link = isRedisLink(source) ? source : linkTo(source)
  const redis = link.client
  return {
    retentionMs,
    async record(feed, id, kind) {
      link.assertUp()
      const now = Date.now()
      try {
        await redis
          .multi()
          .zadd(prefix + feed, now, `${kind}:${id}`)
          .zremrangebyscore(prefix + feed, '-inf', `(${now - retentionMs}`)
          .exec()
      } catch (err) {
        throw link.failure(err)
      }
    },
    async since(feed, fromMs) {
      link.assertUp()
      let flat: string[]
      try {
        flat = await redis.zrangebyscore(prefix + feed, Math.floor(fromMs), '+inf', 'WITHSCORES')
      } catch (err) {
        throw link.failure(err)
      }
      const out: Array<{ id: string; kind: 'set' | 'del'; at: number }> = []
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const m = flat[i]!
        const colon = m.indexOf(':')
        const kind = m.slice(0, colon)
        if (kind === 'set' || kind === 'del') out.push({ id: m.slice(colon + 1), kind, at: Number(flat[i + 1]) })
      }
      return out
    },
  }
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return 'redis'
  }
}
