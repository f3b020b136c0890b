// Two tiers: a bounded in-process LRU (L1) over unstorage (L2: fs or redis) shared by every
// instance on the same storage. Only redis expires keys by itself, so every entry carries its
// own expiresAt and a read past it is a miss on any driver.
import { LRUCache } from 'lru-cache'
import type { Storage } from 'unstorage'
import { stringifySliced } from '../../core/json-sliced.ts'
import { Slicer } from '../../core/slicer.ts'
import type { CanonicalAnswer, Logger } from '../../core/types.ts'

export interface CacheEntry {
  v: 1
  answer: CanonicalAnswer
  /** ms since epoch */
  createdAt: number
  expiresAt: number
  protocol: string
}

export type LookupResult =
  | { status: 'hit'; entry: CacheEntry; tier: 'l1' | 'l2' }
  | { status: 'miss' }
  | { status: 'expired' }
  | { status: 'corrupt'; reason: string }

export interface ExactStoreOptions {
  storage?: Storage
  /** storage key prefix */
  prefix: string
  maxEntries: number
  maxBytes: number
  ttlSeconds: number
  log: Logger
}

const STOP_REASONS = new Set(['stop', 'length', 'tool_calls', 'content_filter'])

/** Checks the shape of a stored entry; returns why it is unusable, or undefined when it is fine. */
export function entryProblem(x: unknown): string | undefined {
  if (!x || typeof x !== 'object' || Array.isArray(x)) return `not an object (${typeof x})`
  const e = x as Partial<CacheEntry>
  if (e.v !== 1) return `unknown version ${JSON.stringify(e.v)}`
  if (typeof e.expiresAt !== 'number' || !Number.isFinite(e.expiresAt)) return 'expiresAt missing'
  if (typeof e.createdAt !== 'number') return 'createdAt missing'
  const a = e.answer as Partial<CanonicalAnswer> | undefined
  if (!a || typeof a !== 'object') return 'answer missing'
  if (typeof a.text !== 'string' || typeof a.model !== 'string' || typeof a.id !== 'string')
    return 'answer text/model/id missing'
  if (
    !Array.isArray(a.toolCalls) ||
    a.toolCalls.some(
      (t) => !t || typeof t.id !== 'string' || typeof t.name !== 'string' || typeof t.arguments !== 'string',
    )
  )
    return 'answer toolCalls malformed'
  if (!STOP_REASONS.has(a.stopReason as string)) return `answer stopReason ${JSON.stringify(a.stopReason)}`
  const u = a.usage
  if (
    !u ||
    typeof u !== 'object' ||
    !['inputTokens', 'outputTokens', 'cacheReadTokens', 'cacheWriteTokens'].every(
      (k) => typeof (u as any)[k] === 'number',
    )
  )
    return 'answer usage malformed'
  return undefined
}

/** an entry this large (entrySize: about twice its characters) is serialized in slices */
const LARGE_ENTRY_BYTES = 512 * 1024
const SLICE_MS = 10

function entrySize(e: CacheEntry): number {
  let n = 256 + e.answer.text.length * 2 + e.answer.model.length * 2
  for (const t of e.answer.toolCalls) n += (t.id.length + t.name.length + t.arguments.length) * 2 + 64
  return n
}

export class ExactStore {
  readonly l1: LRUCache<string, CacheEntry>
  private readonly storage?: Storage
  private readonly opts: ExactStoreOptions
  private readonly pending = new Set<Promise<unknown>>()

  constructor(opts: ExactStoreOptions) {
    this.opts = opts
    this.storage = opts.storage
    this.l1 = new LRUCache<string, CacheEntry>({
      max: opts.maxEntries,
      maxSize: opts.maxBytes,
      sizeCalculation: (e) => Math.max(1, Math.min(entrySize(e), opts.maxBytes)),
    })
  }

  storageKey(hash: string): string {
    // two hex chars of fan-out keep fs directories small
    return `${this.opts.prefix}:${hash.slice(0, 2)}:${hash}`
  }

  async get(hash: string, now = Date.now()): Promise<LookupResult> {
    const hot = this.l1.get(hash)
    if (hot) {
      if (hot.expiresAt > now) return { status: 'hit', entry: hot, tier: 'l1' }
      this.l1.delete(hash)
      if (this.storage) this.track(this.storage.removeItem(this.storageKey(hash)))
      return { status: 'expired' }
    }
    if (!this.storage) return { status: 'miss' }
    const raw = await this.storage.getItem(this.storageKey(hash))
    if (raw === null || raw === undefined) return { status: 'miss' }
    const problem = entryProblem(raw)
    if (problem) {
      await this.remove(hash)
      return { status: 'corrupt', reason: problem }
    }
    const entry = raw as CacheEntry
    if (entry.expiresAt <= now) {
      await this.remove(hash)
      return { status: 'expired' }
    }
    this.l1.set(hash, entry, { ttl: entry.expiresAt - now })
    return { status: 'hit', entry, tier: 'l2' }
  }

  async set(hash: string, entry: CacheEntry): Promise<void> {
    const ttlMs = entry.expiresAt - Date.now()
    if (ttlMs <= 0) return
    this.l1.set(hash, entry, { ttl: ttlMs })
    if (!this.storage) return
    // redis expires the key itself; memory and fs rely on expiresAt checked at read time
    const ttl = Math.max(1, Math.ceil(ttlMs / 1000))
    if (entrySize(entry) < LARGE_ENTRY_BYTES) {
      await this.track(this.storage.setItem(this.storageKey(hash), entry as any, { ttl }))
      return
    }
    await this.track(this.setLarge(hash, entry, ttl))
  }

  /**
   * An answer of megabytes: its JSON made in slices of the event loop (unstorage's one
   * JSON.stringify of a 5 MB entry held it for 6-100 ms). The same text unstorage would write: a
   * string is stored as it is, and read back with JSON.parse as before.
   */
  private async setLarge(hash: string, entry: CacheEntry, ttl: number): Promise<void> {
    const pieces = await stringifySliced(entry, new Slicer(SLICE_MS))
    await this.storage!.setItem(this.storageKey(hash), pieces!.join(''), { ttl })
  }

  async remove(hash: string): Promise<void> {
    this.l1.delete(hash)
    if (this.storage) {
      try {
        await this.storage.removeItem(this.storageKey(hash))
      } catch (err) {
        this.opts.log.warn('exact-cache: could not delete an entry', { error: String((err as Error)?.message ?? err) })
      }
    }
  }

  private track<T>(p: Promise<T>): Promise<T> {
    const tracked = p.catch((err) => {
      this.opts.log.warn('exact-cache: storage write failed', { error: String((err as Error)?.message ?? err) })
    }) as Promise<any>
    this.pending.add(tracked)
    tracked.finally(() => this.pending.delete(tracked))
    return tracked
  }

  /**
   * Delete stored entries past their expiry (and any that do not parse). Redis expires keys by
   * itself; fs keeps a file until it is read, so without a sweep entries nobody asks for again
   * would stay on disk forever. Reads in small batches, yielding between them, so a large cache
   * never stalls the event loop. Returns how many entries were removed.
   */
  async sweep(now = Date.now(), batch = 200): Promise<{ scanned: number; removed: number }> {
    if (!this.storage) return { scanned: 0, removed: 0 }
    const keys = await this.storage.getKeys(this.opts.prefix)
    let removed = 0
    for (let i = 0; i < keys.length; i += batch) {
      await Promise.all(
        keys.slice(i, i + batch).map(async (key) => {
          try {
            const raw = await this.storage!.getItem(key)
            if (raw === null || raw === undefined) return
            if (entryProblem(raw) || (raw as CacheEntry).expiresAt <= now) {
              await this.storage!.removeItem(key)
              const hash = key.slice(key.lastIndexOf(':') + 1)
              const hot = this.l1.peek(hash)
              if (hot && hot.expiresAt <= now) this.l1.delete(hash)
              removed++
            }
          } catch (err) {
            this.opts.log.warn('exact-cache: sweep could not check an entry', {
              key,
              error: String((err as Error)?.message ?? err),
            })
          }
        }),
      )
      await new Promise<void>((r) => setImmediate(r))
    }
    return { scanned: keys.length, removed }
  }

  /** wait for writes in flight (shutdown) */
  async flush(): Promise<void> {
    await Promise.all([...this.pending])
  }
}
