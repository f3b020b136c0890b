// Storage chosen in config, seen through createAgentMesh's mesh.storage: memory, fs under the
// data dir (survives a restart), redis (a real redis-server, shared between instances).
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, describe, expect, inject, it } from 'vitest'
import { createAgentMesh } from '../core/app.ts'
import { tempDir } from './helpers/core-harness.ts'

const dirs: string[] = []
const newDir = () => {
  const d = tempDir('agentmesh-storage-')
  dirs.push(d)
  return d
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

const quiet = { log: { level: 'silent' as const } }

describe('storage', () => {
  it('memory: items round-trip and are private to one instance', async () => {
    const a = await createAgentMesh({ ...quiet, dataDir: newDir(), storage: { driver: 'memory' } })
    const b = await createAgentMesh({ ...quiet, dataDir: newDir(), storage: { driver: 'memory' } })
    try {
      await a.mesh.storage.setItem('cache:k1', { answer: 'forty-two', n: 1 })
      expect(await a.mesh.storage.getItem('cache:k1')).toEqual({ answer: 'forty-two', n: 1 })
      expect(await a.mesh.storage.getKeys('cache')).toEqual(['cache:k1'])
      expect(await b.mesh.storage.hasItem('cache:k1')).toBe(false)
      const health = await (await a.fetch(new Request('http://x/agentmesh/health'))).json()
      expect(health.storage).toEqual({ driver: 'memory', location: 'memory', reachable: true })
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('fs: items are files under <dataDir>/storage and survive a restart', async () => {
    const dataDir = newDir()
    const first = await createAgentMesh({ ...quiet, dataDir, storage: { driver: 'fs' } })
    await first.mesh.storage.setItem('cache:entry1', { text: 'persisted' })
    await first.mesh.storage.setItem('keys:abc', 'v')
    expect(first.mesh.dataDir).toBe(dataDir)
    const health = await (await first.fetch(new Request('http://x/agentmesh/health'))).json()
    expect(health.storage).toEqual({ driver: 'fs', location: `fs ${join(dataDir, 'storage')}`, reachable: true })
    await first.close()
    const file = join(dataDir, 'storage', 'cache', 'entry1')
    expect(existsSync(file)).toBe(true)
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ text: 'persisted' })
    const second = await createAgentMesh({ ...quiet, dataDir, storage: { driver: 'fs' } })
    try {
      expect(await second.mesh.storage.getItem('cache:entry1')).toEqual({ text: 'persisted' })
      expect((await second.mesh.storage.getKeys()).sort()).toEqual(['cache:entry1', 'keys:abc'])
    } finally {
      await second.close()
    }
  })

  it('fs: a relative storage.base lives under the data dir', async () => {
    const dataDir = newDir()
    const mesh = await createAgentMesh({ ...quiet, dataDir, storage: { driver: 'fs', base: 'kv' } })
    try {
      await mesh.mesh.storage.setItem('x', 1)
      expect(existsSync(join(dataDir, 'kv', 'x'))).toBe(true)
    } finally {
      await mesh.close()
    }
  })

  it('redis: two instances on one redis share items and counters, under the configured prefix', async () => {
    const url = inject('redisUrl')
    const prefix = `amtest-${randomUUID().slice(0, 8)}`
    const config = { ...quiet, storage: { driver: 'redis' as const, url, prefix } }
    const a = await createAgentMesh({ ...config, dataDir: newDir() })
    const b = await createAgentMesh({ ...config, dataDir: newDir() })
    const raw = new Redis(url)
    try {
      await a.mesh.storage.setItem('cache:shared', { text: 'from a' })
      expect(await b.mesh.storage.getItem('cache:shared')).toEqual({ text: 'from a' })
      // what is really in redis: the prefix namespaces the keys
      expect(JSON.parse((await raw.get(`${prefix}:cache:shared`))!)).toEqual({ text: 'from a' })
      expect(await b.mesh.storage.getKeys('cache')).toEqual(['cache:shared'])

      await a.mesh.counters.incr('tokens:eng', 100)
      expect(await b.mesh.counters.incr('tokens:eng', 50)).toBe(150)
      expect(await a.mesh.counters.get('tokens:eng')).toBe(150)

      const health = await (await a.fetch(new Request('http://x/agentmesh/health'))).json()
      expect(health.storage.location).toMatch(/^redis redis:\/\/127\.0\.0\.1:\d+/)
      expect(health.storage.reachable).toBe(true)

      // another prefix sees none of it
      const other = await createAgentMesh({
        ...quiet,
        dataDir: newDir(),
        storage: { driver: 'redis', url, prefix: `${prefix}-other` },
      })
      try {
        expect(await other.mesh.storage.hasItem('cache:shared')).toBe(false)
        expect(await other.mesh.counters.get('tokens:eng')).toBe(0)
      } finally {
        await other.close()
      }
    } finally {
      await a.close()
      await b.close()
      const keys = await raw.keys(`${prefix}*`)
      if (keys.length) await raw.del(...keys)
      raw.disconnect()
    }
  })

  it('redis: close() releases the connection', async () => {
    const url = inject('redisUrl')
    const raw = new Redis(url)
    try {
      const clients = async () => ((await raw.client('LIST')) as string).trim().split('\n').length
      const before = await clients()
      const mesh = await createAgentMesh({
        ...quiet,
        dataDir: newDir(),
        storage: { driver: 'redis', url, prefix: `amtest-${randomUUID().slice(0, 8)}` },
      })
      await mesh.mesh.storage.setItem('k', 'v')
      expect(await clients()).toBeGreaterThan(before)
      await mesh.mesh.storage.removeItem('k')
      await mesh.close()
      const end = Date.now() + 2000
      while ((await clients()) > before && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
      expect(await clients()).toBe(before)
    } finally {
      raw.disconnect()
    }
  })
})
