// Two tiers: a bounded in-process LRU (L1) over unstorage (L2: fs or redis) shared by every
// instance on the same storage. Only redis expires keys by itself, so every entry carries its
// own expiresAt and a read past it is a miss on any driver.
import { isAscii } from 'node:buffer'
import { LRUCache } from 'lru-cache'
import type { Storage } from 'unstorage'
import { stringifySliced } from '../../core/json-sliced.ts'
import { SLICED_PARSE_CHARS, parseJsonSliced } from '../../core/protocols/shared.ts'
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

// destr's tests (unstorage reads stored values with destr): a key that could pollute a prototype
const SUSPECT_PROTO =
  /"(?:_|\\u0{2}5[Ff]){2}(?:p|\\u0{2}70)(?:r|\\u0{2}72)(?:o|\\u0{2}6[Ff])(?:t|\\u0{2}74)(?:o|\\u0{2}6[Ff])(?:_|\\u0{2}5[Ff]){2}"\s*:/
const SUSPECT_CONSTRUCTOR =
  /"(?:c|\\u0063)(?:o|\\u006[Ff])(?:n|\\u006[Ee])(?:s|\\u0073)(?:t|\\u0074)(?:r|\\u0072)(?:u|\\u0075)(?:c|\\u0063)(?:t|\\u0074)(?:o|\\u006[Ff])(?:r|\\u0072)"\s*:/

/**
 * The bytes as UTF-8 text. Pure ASCII (most entries) decodes alike as Latin-1, which Node keeps
 * outside the JS heap for a long text: no string of megabytes to allocate (45 ms of CPU for 10 MB
 * as UTF-8 here, 1-15 as Latin-1). Other long texts are decoded a piece at a time.
 */
async function decode(b: Uint8Array): Promise<string> {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength)
  if (isAscii(buf)) return buf.toString('latin1')
  if (buf.length <= SLICED_PARSE_CHARS) return buf.toString('utf8')
  // ignoreBOM keeps a leading BOM, as Buffer#toString does
  const decoder = new TextDecoder('utf-8', { ignoreBOM: true })
  const slicer = new Slicer(SLICE_MS)
  const parts: string[] = []
  for (let at = 0; at < buf.length; at += RUN_CHARS) {
    parts.push(decoder.decode(buf.subarray(at, at + RUN_CHARS), { stream: true }))
    await slicer.pause()
  }
  parts.push(decoder.decode())
  await slicer.yield()
  return parts.join('')
}

/** what destr gives for a stored entry's text: JSON.parse, without prototype keys when it may hold one; else the text */
function destrLike(text: string): unknown {
  const t = text.trim()
  if (!t.startsWith('{') && !t.startsWith('[')) return destrScalar(text, t)
  try {
    if (SUSPECT_PROTO.test(text) || SUSPECT_CONSTRUCTOR.test(text)) return JSON.parse(text, dropPrototypeKeys)
    return JSON.parse(text)
  } catch {
    return text
  }
}

/** a text that is not an object or an array: no entry, whatever destr makes of it */
function destrScalar(text: string, t: string): unknown {
  try {
    return JSON.parse(t)
  } catch {
    return text
  }
}

function dropPrototypeKeys(key: string, value: unknown): unknown {
  if (key === '__proto__' || (key === 'constructor' && value && typeof value === 'object' && 'prototype' in value))
    return undefined
  return value
}

/** destr's prototype tests over a long text, a run at a time (a match is some tens of characters: runs overlap) */
async function mayPollute(text: string): Promise<boolean> {
  const slicer = new Slicer(SLICE_MS)
  for (let at = 0; at < text.length; at += RUN_CHARS) {
    const run = text.slice(at, at + RUN_CHARS + 256)
    if (SUSPECT_PROTO.test(run) || SUSPECT_CONSTRUCTOR.test(run)) return true
    await slicer.pause()
  }
  return false
}
const RUN_CHARS = 256 * 1024

// the end of an entry this store wrote (its keys in CacheEntry's order): the entry's own expiry
const TAIL = /,"createdAt":\d+,"expiresAt":(\d+),"protocol":"[^"\\]*"\}$/

/**
 * A sweep's look at a stored entry of megabytes: its expiry read from the end of its text, with no
 * parse of the whole (the last `}` closes the entry, so the members before it are the entry's).
 * Undefined for a small entry or one that does not end so: then it is parsed as get() would.
 */
function tailExpiry(stored: unknown): number | undefined {
  const size = stored instanceof Uint8Array ? stored.length : typeof stored === 'string' ? stored.length : 0
  if (size <= SLICED_PARSE_CHARS) return undefined
  const end =
    typeof stored === 'string'
      ? stored.slice(-256)
      : Buffer.from((stored as Uint8Array).buffer, (stored as Uint8Array).byteOffset, size).toString(
          'latin1',
          size - 256,
        )
  const m = TAIL.exec(end)
  return m ? Number(m[1]) : undefined
}

const expiryOf = (raw: unknown): number => (entryProblem(raw) ? 0 : (raw as CacheEntry).expiresAt)

/**
 * drivers that keep raw bytes as they are and read them back as the same text (UTF-8) by getItem:
 * a file, or the core's redis driver (SET of the bytes; GET decodes them)
 */
const FILE_DRIVERS = new Set(['agentmesh-fs', 'fs', 'fs-lite', 'agentmesh-redis'])

/** the UTF-8 bytes of pieces of text, one buffer filled a piece per step (each piece has no lone surrogate at its ends) */
async function utf8Joined(pieces: readonly string[], slicer: Slicer): Promise<Buffer> {
  let size = 0
  for (const p of pieces) size += Buffer.byteLength(p, 'utf8')
  // not zeroed: its pages are first touched as the pieces are written, a slice at a time
  const out = Buffer.allocUnsafeSlow(size)
  let at = 0
  for (const p of pieces) {
    at += out.write(p, at, 'utf8')
    await slicer.pause()
  }
  if (at !== size) throw new Error(`exact-cache: encoded ${at} of ${size} bytes`)
  return out
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
    const raw = await this.read(this.storageKey(hash))
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

  /**
   * A stored entry as unstorage's getItem gives it (destr: JSON.parse of the text, keys that could
   * pollute a prototype dropped, the text itself when it is not JSON), the text of an answer of
   * megabytes parsed in slices of the event loop (one JSON.parse of 10 MB held it for 75-80 ms).
   */
  private async read(key: string): Promise<unknown> {
    return this.parse(await this.storage!.getItemRaw(key))
  }

  /** read()'s reading of what getItemRaw gave */
  private async parse(raw: unknown): Promise<unknown> {
    // fs gives bytes; memory and redis give the text they keep
    const text = raw instanceof Uint8Array ? await decode(raw) : raw
    if (typeof text !== 'string') return text
    try {
      if (text.length <= SLICED_PARSE_CHARS || !text.startsWith('{')) return destrLike(text)
      // unstorage's own reader for a text that may hold a prototype key (never one this store wrote)
      if (await mayPollute(text)) return destrLike(text)
      const parsed = await parseJsonSliced(text, Number.POSITIVE_INFINITY, new Slicer(SLICE_MS))
      return parsed.deep ? undefined : parsed.value
    } catch {
      return text
    }
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
   * string is stored as it is, and read back with JSON.parse as before. On a file driver the
   * text goes as its UTF-8 bytes, encoded a piece at a time into one buffer: joining the pieces
   * made a string of 5-10 MB in one go, its fresh pages touched at ~3 ms a MB here (70-85 ms of
   * CPU in one block for a 5 MB answer of non-Latin-1 text, test/large-stream-miss.test.ts).
   */
  private async setLarge(hash: string, entry: CacheEntry, ttl: number): Promise<void> {
    const slicer = new Slicer(SLICE_MS)
    // a streamed answer's text is a rope of its deltas until something reads it: made one string
    // here, in a turn of its own, not in the turn that ended the stream and ran the other hooks.
    // Two yields: the stream's end is an I/O callback, and the immediates queued there run right
    // after it, before the loop's timers and other sockets
    await slicer.yield()
    await slicer.yield()
    entry.answer.text.charCodeAt(0)
    await slicer.yield()
    const pieces = (await stringifySliced(entry, slicer))!
    const key = this.storageKey(hash)
    await slicer.yield()
    if (FILE_DRIVERS.has(this.storage!.getMount(key).driver.name ?? '')) {
      await this.storage!.setItemRaw(key, await utf8Joined(pieces, slicer), { ttl })
      return
    }
    // memory (and other drivers) keep the text itself: one string, in a turn of its own
    const text = pieces.join('')
    await slicer.yield()
    await this.storage!.setItem(key, text, { ttl })
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
   * would stay on disk forever. Entries are read one at a time, as get() reads them (one of
   * megabytes parsed in slices: unstorage's getItem parsed a 10 MB entry in one go, 170-490 ms of
   * CPU in one block under load), the loop given back after every `batch`, so a large cache never
   * stalls it. Returns how many entries were removed.
   */
  async sweep(now = Date.now(), batch = 200): Promise<{ scanned: number; removed: number }> {
    if (!this.storage) return { scanned: 0, removed: 0 }
    const keys = await this.storage.getKeys(this.opts.prefix)
    let removed = 0
    for (let i = 0; i < keys.length; i++) {
      if (await this.sweepOne(keys[i]!, now)) removed++
      if ((i + 1) % batch === 0) await new Promise<void>((r) => setImmediate(r))
    }
    return { scanned: keys.length, removed }
  }

  /** one key of a sweep: removed when it is expired or unusable; whether it was */
  private async sweepOne(key: string, now: number): Promise<boolean> {
    try {
      const stored = await this.storage!.getItemRaw(key)
      if (stored === null || stored === undefined) return false
      // an unusable entry (corrupt, or nested too deep to parse) expired long ago
      const expiresAt = tailExpiry(stored) ?? expiryOf(await this.parse(stored))
      if (expiresAt > now) return false
      await this.storage!.removeItem(key)
      const hash = key.slice(key.lastIndexOf(':') + 1)
      const hot = this.l1.peek(hash)
      if (hot && hot.expiresAt <= now) this.l1.delete(hash)
      return true
    } catch (err) {
      this.opts.log.warn('exact-cache: sweep could not check an entry', {
        key,
        error: String((err as Error)?.message ?? err),
      })
      return false
    }
  }

  /** wait for writes in flight (shutdown) */
  async flush(): Promise<void> {
    await Promise.all([...this.pending])
  }
}
