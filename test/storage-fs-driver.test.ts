// AgentMesh's own fs driver (core/storage-fs.ts): the fs-lite layout and behaviour, private modes,
// and a disk that refuses writes (ENOSPC from /dev/full) as a 503-type error, reported once in
// the log and in health, noticed to work again by a probe without waiting for traffic.
import { existsSync, readdirSync, rmSync, statSync, symlinkSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { StorageUnavailableError } from '../core/errors.ts'
import { createLogger } from '../core/log.ts'
import { createMeshStorage } from '../core/storage.ts'
import { tempDir } from './helpers/core-harness.ts'

const dirs: string[] = []
const newDir = () => {
  const d = tempDir('agentmesh-fsdriver-')
  dirs.push(d)
  return d
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

describe('fs driver', () => {
  it('keeps the fs-lite layout: keys are paths, prefixes list their directory only, missing keys read as null', async () => {
    const dataDir = newDir()
    const { storage, close } = createMeshStorage({ driver: 'fs' }, dataDir)
    try {
      await storage.setItem('cache:exact:ab:abc', { a: 1 })
      await storage.setItem('cache:exact:cd:cde', 'text')
      await storage.setItem('agentmesh:keys:id:key_1', { id: 'key_1' })
      await storage.setItemRaw('blob', Buffer.from([1, 2, 3]))
      expect(existsSync(join(dataDir, 'storage', 'cache', 'exact', 'ab', 'abc'))).toBe(true)
      expect((await storage.getKeys('cache:exact')).sort()).toEqual(['cache:exact:ab:abc', 'cache:exact:cd:cde'])
      expect(await storage.getKeys('agentmesh:keys:id')).toEqual(['agentmesh:keys:id:key_1'])
      expect(await storage.getKeys('nothing:here')).toEqual([])
      expect((await storage.getKeys()).sort()).toEqual([
        'agentmesh:keys:id:key_1',
        'blob',
        'cache:exact:ab:abc',
        'cache:exact:cd:cde',
      ])
      expect(await storage.getItem('cache:exact:ab:abc')).toEqual({ a: 1 })
      expect([...((await storage.getItemRaw('blob')) as Buffer)]).toEqual([1, 2, 3])
      expect(await storage.getItem('cache:missing')).toBeNull()
      // a directory of keys is not an item
      expect(await storage.getItem('cache:exact')).toBeNull()
      expect(await storage.hasItem('cache:exact:cd:cde')).toBe(true)
      expect(await storage.hasItem('cache:missing')).toBe(false)
      await storage.removeItem('cache:exact:cd:cde')
      await storage.removeItem('cache:missing')
      expect(await storage.hasItem('cache:exact:cd:cde')).toBe(false)
      await expect(storage.setItem('../escape', 'x')).rejects.toThrow(/Invalid key/)
      await storage.clear()
      expect(await storage.getKeys()).toEqual([])
      expect(readdirSync(join(dataDir, 'storage'))).toEqual([])
    } finally {
      await close()
    }
  })

  it('creates every directory 0700 and every file 0600', async () => {
    const dataDir = join(newDir(), 'fresh')
    const { storage, close } = createMeshStorage({ driver: 'fs' }, dataDir)
    try {
      await storage.setItem('a:b:c:d', 'x')
      for (const d of [
        dataDir,
        join(dataDir, 'storage'),
        join(dataDir, 'storage', 'a'),
        join(dataDir, 'storage', 'a', 'b', 'c'),
      ])
        expect(statSync(d).mode & 0o777).toBe(0o700)
      expect(statSync(join(dataDir, 'storage', 'a', 'b', 'c', 'd')).mode & 0o777).toBe(0o600)
    } finally {
      await close()
    }
  })

  it('a full disk is StorageUnavailableError, reported once, and noticed to work again by itself', async () => {
    const dataDir = newDir()
    const lines: string[] = []
    const store = createMeshStorage(
      { driver: 'fs' },
      dataDir,
      createLogger('info', (l) => lines.push(l)),
    )
    try {
      // a write to /dev/full fails with ENOSPC, as on a full disk
      mkdirSync(join(dataDir, 'storage', 'cache'), { recursive: true })
      symlinkSync('/dev/full', join(dataDir, 'storage', 'cache', 'full'))
      const err = await store.storage.setItem('cache:full', { text: 'an answer' }).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(StorageUnavailableError)
      expect((err as Error).message).toMatch(/^storage unavailable: fs .*storage: ENOSPC: no space left on device$/)
      expect(((err as Error).cause as NodeJS.ErrnoException).code).toBe('ENOSPC')
      await expect(store.storage.setItem('cache:full', 'again')).rejects.toBeInstanceOf(StorageUnavailableError)
      expect(store.health()).toMatchObject({
        ok: false,
        message: expect.stringMatching(/^fs .*storage unavailable: ENOSPC: no space left on device$/),
        since: expect.any(Number),
      })
      // reads go on
      await store.storage.getItem('cache:other')
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatch(
        /warn: storage: fs .*storage unavailable \(ENOSPC: no space left on device\); cache, key and grant writes fail/,
      )

      // space is freed; nothing writes meanwhile: the probe finds the storage writable again (in
      // about a second)
      rmSync(join(dataDir, 'storage', 'cache', 'full'))
      const end = Date.now() + 4000
      while (!store.health().ok && Date.now() < end) await new Promise((r) => setTimeout(r, 25))
      expect(store.health().ok).toBe(true)
      expect(lines[1]).toMatch(/warn: storage: fs .*storage available again after \d+\.\d s/)
      // the probe leaves nothing behind and is never a key
      expect(await store.storage.getKeys()).toEqual([])
      expect(readdirSync(join(dataDir, 'storage'))).toEqual(['cache'])
    } finally {
      await store.close()
    }
  })
})
