// An answer of megabytes in the exact cache: its entry is serialized in slices of the event loop
// (plugins/exact-cache/store.ts setLarge). Stored, it is the text unstorage's own JSON.stringify
// would have written, and another instance (an empty in-process tier) reads it back whole.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createMeshStorage } from '../core/storage.ts'
import type { Logger } from '../core/types.ts'
import { ExactStore, type CacheEntry } from '../plugins/exact-cache/store.ts'

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger

function entry(chars: number): CacheEntry {
  const text = `${'an answer of megabytes, 😀 "quoted" \\ and\nlines '.repeat(Math.ceil(chars / 48)).slice(0, chars)}\ud800`
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
    ['2 MB', 2_000_000],
    ['just over the threshold', 300_000],
    ['small (one JSON.stringify by unstorage)', 1000],
  ])('%s: stored as JSON.stringify writes it, read back whole by another instance', async (_name, chars) => {
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
    const e = entry(chars)
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
})
