// An answer of megabytes in the exact cache: its entry is serialized in slices of the event loop
// (plugins/exact-cache/store.ts setLarge). Stored, it is the text unstorage's own JSON.stringify
// would have written, and another instance (an empty in-process tier) reads it back whole, as
// unstorage's reader would, the loop given back while it parses.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createMeshStorage } from '../core/storage.ts'
import type { Logger } from '../core/types.ts'
import { ExactStore, type CacheEntry } from '../plugins/exact-cache/store.ts'
import { longestBlock } from './helpers/longest-block.ts'

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger

function entry(chars: number, ascii = false): CacheEntry {
  const line = ascii
    ? 'an answer of megabytes, "quoted" \\ and\nlines '
    : 'an answer of megabytes, 😀 "quoted" \\ and\nlines '
  const text = `${line.repeat(Math.ceil(chars / 46)).slice(0, chars)}${ascii ? '' : '\ud800'}`
  const now = Date.now()
  return {
    v: 1,
    answer: {
      id: 'msg_1',
      model: 'claude-3-5-haiku-latest',
      text,
      toolCalls: [{ id: 't', name: 'f', arguments: '{"a":1}' }],
      stopReason: 'stop',
      usage: { inputTokens: 10, outputTokens: 20, cacheReadTokens: 0, cacheWriteTokens: 0 },
      raw: {
        protocol: 'anthropic',
        body: { id: 'msg_1', content: [{ type: 'text', text }], stop_reason: 'end_turn', usage: { input_tokens: 10 } },
      },
    } as CacheEntry['answer'],
    createdAt: now,
    expiresAt: now + 60_000,
    protocol: 'anthropic',
  }
}

/** every file under a directory, recursively */
const files = (dir: string): string[] =>
  readdirSync(dir).flatMap((f) => {
    const p = join(dir, f)
    return statSync(p).isDirectory() ? files(p) : [p]
  })

describe('a large exact-cache entry', () => {
  const dirs: string[] = []
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })

  it.each([
    ['2 MB', 2_000_000, false],
    ['2 MB of ASCII (read as Latin-1)', 2_000_000, true],
    ['just over the threshold', 300_000, false],
    ['small (one JSON.stringify by unstorage)', 1000, false],
  ])('%s: stored as JSON.stringify writes it, read back whole by another instance', async (_name, chars, ascii) => {
    const dir = mkdtempSync(join(tmpdir(), 'agentmesh-exact-large-'))
    dirs.push(dir)
    const ms = createMeshStorage({ driver: 'fs' }, dir, quiet)
    const opts = {
      storage: ms.storage,
      prefix: 'cache:exact',
      maxEntries: 10,
      maxBytes: 64 * 1024 * 1024,
      ttlSeconds: 60,
      log: quiet,
    }
    const e = entry(chars, ascii)
    const hash = 'ab'.repeat(32)
    await new ExactStore(opts).set(hash, e)
    const stored = files(dir).filter((f) => f.includes(hash))
    expect(stored).toHaveLength(1)
    expect(readFileSync(stored[0]!, 'utf8') === JSON.stringify(e)).toBe(true)
    // a second instance: nothing in its in-process tier, the entry comes from storage
    const found = await new ExactStore(opts).get(hash)
    expect(found.status).toBe('hit')
    expect(found.status === 'hit' && found.tier).toBe('l2')
    expect(found.status === 'hit' && found.entry).toEqual(e)
    await ms.close()
  })

  it('read back from storage as unstorage reads it: prototype keys dropped, a text that is not JSON corrupt', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentmesh-exact-large-'))
    dirs.push(dir)
    const ms = createMeshStorage({ driver: 'fs' }, dir, quiet)
    const opts = {
      storage: ms.storage,
      prefix: 'cache:exact',
      maxEntries: 10,
      maxBytes: 64 * 1024 * 1024,
      ttlSeconds: 60,
      log: quiet,
    }
    const store = new ExactStore(opts)
    for (const chars of [1000, 2_000_000]) {
      const e = entry(chars)
      // a vendor body with an own __proto__ key (as JSON.parse makes it), and constructor.prototype
      const text = JSON.stringify(e).replace(
        '"stop_reason"',
        '"__proto__":{"polluted":1},"constructor":{"prototype":{}},"stop_reason"',
      )
      const key = store.storageKey('cd'.repeat(32))
      await ms.storage.setItem(key, text)
      // unstorage's own reader (destr) is the reference
      const want = await ms.storage.getItem(key)
      const found = await new ExactStore(opts).get('cd'.repeat(32))
      expect(found.status).toBe('hit')
      expect(found.status === 'hit' && found.entry).toEqual(want)
      expect(found.status === 'hit' && Object.keys((found.entry.answer.raw as any).body)).not.toContain('__proto__')
      expect(({} as any).polluted).toBeUndefined()
      // cut short: not JSON, a corrupt entry, deleted
      await ms.storage.setItem(key, text.slice(0, -10))
      expect((await new ExactStore(opts).get('cd'.repeat(32))).status).toBe('corrupt')
    }
    await ms.close()
  })

  it('a 10 MB entry read back from storage holds the loop for less than unstorage reading it in one go', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentmesh-exact-large-'))
    dirs.push(dir)
    const ms = createMeshStorage({ driver: 'fs' }, dir, quiet)
    const opts = {
      storage: ms.storage,
      prefix: 'cache:exact',
      maxEntries: 10,
      maxBytes: 64 * 1024 * 1024,
      ttlSeconds: 60,
      log: quiet,
    }
    const e = entry(5_000_000)
    const hash = 'ef'.repeat(32)
    await new ExactStore(opts).set(hash, e)
    const sliced: number[] = []
    const oneGo: number[] = []
    // warmed up, then the best of two each: the machine's load falls on both alike
    for (let round = 0; round < 3; round++) {
      const a = await longestBlock(() => new ExactStore(opts).get(hash))
      expect(a.value.status === 'hit' && a.value.entry).toEqual(e)
      const b = await longestBlock(() => ms.storage.getItem(new ExactStore(opts).storageKey(hash)))
      expect(b.value).toEqual(e)
      if (round) {
        sliced.push(a.maxMs)
        oneGo.push(b.maxMs)
      }
    }
    console.log(
      `10 MB entry from fs: longest block ${Math.min(...sliced).toFixed(0)} ms of CPU, unstorage's getItem ${Math.min(...oneGo).toFixed(0)} ms`,
    )
    expect(Math.min(...sliced)).toBeLessThan(Math.min(...oneGo))
    await ms.close()
  })
})
