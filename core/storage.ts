// unstorage chosen in config (memory, fs under the data dir, redis by URL) plus the atomic
// counters unstorage lacks. The core knows the interface; drivers are unstorage's.
import { join, resolve } from 'node:path'
import { createStorage, type Storage } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import fsLiteDriver from 'unstorage/drivers/fs-lite'
import redisDriver from 'unstorage/drivers/redis'
import type { ChangeFeed, Counters, StorageConfig } from './types.ts'
import { createMemoryCounters, createRedisCounters } from './counters.ts'

export interface MeshStorage {
  storage: Storage
  counters: Counters
  changes?: ChangeFeed
  describe: string
  close(): Promise<void>
}

export function createMeshStorage(config: StorageConfig, dataDir: string): MeshStorage {
  if (config.driver === 'redis') {
    const prefix = config.prefix ?? 'agentmesh'
    // SCAN asks for 1,000 keys a round trip: redis's default of 10 made listing 100,000 keys
    // take 10,000 round trips (1.4 s) instead of 100 (0.4 s)
    const driver = redisDriver({ url: config.url, base: prefix, scanCount: 1000 })
    const storage = createStorage({ driver })
    // the driver creates its ioredis client lazily; counters share it
    const redis = (driver as any).getInstance()
    return {
      storage,
      counters: createRedisCounters(redis, `${prefix}:counters:`),
      changes: createRedisChangeFeed(redis, `${prefix}:changes:`),
      describe: `redis ${redactUrl(config.url!)}`,
      close: async () => { await storage.dispose(); redis.disconnect() },
    }
  }
  if (config.driver === 'fs') {
    const base = resolve(dataDir, config.base ?? 'storage')
    const storage = createStorage({ driver: fsLiteDriver({ base }) })
    // budgets survive a restart of a single instance; several instances need redis
    const counters = createMemoryCounters({ file: join(dataDir, 'counters.json') })
    return { storage, counters, describe: `fs ${base}`, close: async () => { await counters.close(); await storage.dispose() } }
  }
  const storage = createStorage({ driver: memoryDriver() })
  return { storage, counters: createMemoryCounters(), describe: 'memory', close: () => storage.dispose() }
}

/** A sorted set per feed: member `kind:id`, score the time it was recorded; older than an hour trimmed on write. */
export function createRedisChangeFeed(redis: any, prefix: string, retentionMs = 3_600_000): ChangeFeed {
  return {
    retentionMs,
    async record(feed, id, kind) {
      const now = Date.now()
      await redis.multi().zadd(prefix + feed, now, `${kind}:${id}`).zremrangebyscore(prefix + feed, '-inf', `(${now - retentionMs}`).exec()
    },
    async since(feed, fromMs) {
      const flat: string[] = await redis.zrangebyscore(prefix + feed, Math.floor(fromMs), '+inf', 'WITHSCORES')
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
  } catch { return 'redis' }
}
