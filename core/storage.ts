// unstorage chosen in config (memory, fs under the data dir, redis by URL) plus the atomic
// counters unstorage lacks. The core knows the interface; drivers are unstorage's.
import { join, resolve } from 'node:path'
import { createStorage, type Storage } from 'unstorage'
import memoryDriver from 'unstorage/drivers/memory'
import fsLiteDriver from 'unstorage/drivers/fs-lite'
import redisDriver from 'unstorage/drivers/redis'
import type { Counters, StorageConfig } from './types.ts'
import { createMemoryCounters, createRedisCounters } from './counters.ts'

export interface MeshStorage {
  storage: Storage
  counters: Counters
  describe: string
  close(): Promise<void>
}

export function createMeshStorage(config: StorageConfig, dataDir: string): MeshStorage {
  if (config.driver === 'redis') {
    const prefix = config.prefix ?? 'agentmesh'
    const driver = redisDriver({ url: config.url, base: prefix })
    const storage = createStorage({ driver })
    // the driver creates its ioredis client lazily; counters share it
    const redis = (driver as any).getInstance()
    return {
      storage,
      counters: createRedisCounters(redis, `${prefix}:counters:`),
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

function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch { return 'redis' }
}
