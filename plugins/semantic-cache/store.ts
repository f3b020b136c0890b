// The semantic cache's state: entries persisted in mesh.storage (the source of truth, rebuilt
// into memory at start), the in-memory vector index over them, the judge, and the embedding
// queue. Kept free of MeshContext so benchmarks can drive it directly.
import { randomBytes } from 'node:crypto'
import type { Storage } from 'unstorage'
import type { CanonicalAnswer, ChangeFeed, Logger } from '../../core/types.ts'
import type { Embedder } from './embedders.ts'
import { analyse, type TextInfo } from './features.ts'
import { ROLE_REASONS, type Judge } from './judge.ts'
import { embeddingText, textWindow } from './text.ts'
import { dequantise, inverseNorm, quantise, VectorIndex } from './vector-index.ts'

export interface StoredEntry {
  v: 1
  embedder: string
  dim: number
  partition: string
  /** the prompt as the cache saw it (normalised view when the normalise plugin ran) */
  text: string
  /** the original wording, when different: read only to spot proper names */
  hint?: string
  /** int8 vector, base64 */
  vec: string
  answer: CanonicalAnswer
  createdAt: number
  /** ms epoch; memory and fs drivers have no TTL, so expiry is checked on read */
  expiresAt: number
}

export interface QueryText {
  text: string
  hint?: string
}

export type LookupResult =
  | { hit: true; id: string; entry: StoredEntry; similarity: number; score: number }
  | { hit: false; reason: string; best?: number }

export interface StoreOptions {
  storage: Storage
  embedder: Embedder
  judge: Judge
  log: Logger
  maxEntries: number
  ttlMs: number
  /** storage key prefix */
  prefix: string
  /** candidates above the similarity floor that are judged per lookup */
  candidates: number
  /** largest embedding batch sent to the model at once */
  maxBatch: number
  /** shared storage's change feed (redis): refresh() reads it instead of listing every key */
  changes?: ChangeFeed
  /** with a change feed, still list every key this often (deletions made outside the cache); default 10 minutes */
  fullSyncMs?: number
}

// changes are read from a little before the last sync: instances' clocks differ, and an entry
// recorded just before the last read may not have been visible to it
const CLOCK_SLACK_MS = 30_000

const ANSWER_KEYS = ['id', 'model', 'text', 'toolCalls', 'stopReason', 'usage'] as const

/** A stored entry we can trust enough to serve; anything else is corrupt. */
export function validEntry(e: unknown): e is StoredEntry {
  if (!e || typeof e !== 'object') return false
  const x = e as StoredEntry
  if (x.v !== 1 || typeof x.embedder !== 'string' || !Number.isInteger(x.dim) || typeof x.partition !== 'string')
    return false
  if (
    typeof x.text !== 'string' ||
    typeof x.vec !== 'string' ||
    typeof x.expiresAt !== 'number' ||
    typeof x.createdAt !== 'number'
  )
    return false
  if (x.hint !== undefined && typeof x.hint !== 'string') return false
  const a = x.answer as CanonicalAnswer | undefined
  if (!a || typeof a !== 'object' || ANSWER_KEYS.some((k) => !(k in a))) return false
  if (typeof a.text !== 'string' || typeof a.model !== 'string' || !Array.isArray(a.toolCalls)) return false
  if (!a.usage || typeof a.usage.inputTokens !== 'number' || typeof a.usage.outputTokens !== 'number') return false
  return true
}

function decodeVec(e: StoredEntry): Int8Array | undefined {
  const buf = Buffer.from(e.vec, 'base64')
  if (buf.length !== e.dim) return undefined
  return new Int8Array(buf.buffer, buf.byteOffset, buf.length).slice()
}

// characters one model call may take (four windows; see text.ts): under a flood of long prompts
// a call stays well under a second, so a short lookup arriving meanwhile does not wait for sixteen
const BATCH_CHARS = 16_384

type Waiting = { text: string; resolve: (v: Float32Array) => void; reject: (e: unknown) => void }

/**
 * Remove and return the first of `queue` that fit in `n` texts and `chars` characters; with
 * `one`, the first is taken even if it alone is longer.
 */
function take(queue: Waiting[], n: number, chars: number, one: boolean): Waiting[] {
  let i = 0
  while (i < queue.length && i < n && ((one && i === 0) || queue[i]!.text.length <= chars))
    chars -= queue[i++]!.text.length
  return queue.splice(0, i)
}

/**
 * Embeds texts one model call at a time: whatever arrives while a call runs goes into the next
 * batch, so a lone request pays no wait and a burst is batched. Lookups go before stores.
 */
export class EmbedQueue {
  private lookups: Waiting[] = []
  private stores: Waiting[] = []
  private running = false
  constructor(
    private embedder: Embedder,
    private maxBatch: number,
  ) {}

  embed(text: string, priority: 'lookup' | 'store' = 'lookup'): Promise<Float32Array> {
    return new Promise((resolve, reject) => {
      ;(priority === 'lookup' ? this.lookups : this.stores).push({ text, resolve, reject })
      if (!this.running) void this.pump()
    })
  }

  private async pump(): Promise<void> {
    this.running = true
    try {
      while (this.lookups.length || this.stores.length) {
        const batch = take(this.lookups, this.maxBatch, BATCH_CHARS, true)
        const room = BATCH_CHARS - batch.reduce((n, b) => n + b.text.length, 0)
        batch.push(...take(this.stores, this.maxBatch - batch.length, room, batch.length === 0))
        try {
          const vecs = await this.embedder.embed(batch.map((b) => b.text))
          batch.forEach((b, i) => b.resolve(vecs[i]!))
        } catch (err) {
          for (const b of batch) b.reject(err)
        }
      }
    } finally {
      this.running = false
    }
  }
}

export class SemanticStore {
  readonly index: VectorIndex
  readonly queue: EmbedQueue
  private pending = new Set<Promise<unknown>>()
  private infoCache = new Map<string, TextInfo>()
  constructor(readonly opts: StoreOptions) {
    this.index = new VectorIndex({ maxEntries: opts.maxEntries })
    this.queue = new EmbedQueue(opts.embedder, opts.maxBatch)
  }

  /**
   * embed a prompt in the form the cache compares (see text.ts); a text longer than the window
   * (the plugin cuts its own before this) is cut here too, so no caller can make the model slow
   */
  embed(text: string, priority: 'lookup' | 'store' = 'lookup'): Promise<Float32Array> {
    return this.queue.embed(embeddingText(textWindow(text).text), priority)
  }

  private key(id: string): string {
    return `${this.opts.prefix}:${id}`
  }

  /**
   * Read stored entries by key, in chunks, and sort out the ones this index can use: valid, not
   * expired (those are deleted), of this embedder; oldest first. `log` says whether corrupt ones
   * are reported (at start) or only counted (on every sync).
   */
  private async readEntries(keys: string[], now: number, log: boolean) {
    const live: Array<{ id: string; e: StoredEntry; q: Int8Array }> = []
    const unusable: string[] = []
    let expired = 0,
      corrupt = 0,
      otherEmbedder = 0
    for (let i = 0; i < keys.length; i += 500) {
      const chunk = keys.slice(i, i + 500)
      let items: Array<{ key: string; value: unknown }>
      try {
        items = await this.opts.storage.getItems(chunk)
      } catch {
        // one unreadable item fails the batch on some drivers: read those one by one
        items = await Promise.all(
          chunk.map(async (key) => ({ key, value: await this.opts.storage.getItem(key).catch(() => undefined) })),
        )
      }
      for (const { key, value } of items) {
        const id = key.slice(key.lastIndexOf(':') + 1)
        if (value === null || value === undefined) continue // deleted since the keys were listed
        const q = validEntry(value) ? decodeVec(value) : undefined
        if (!q) {
          corrupt++
          unusable.push(id)
          if (log) this.opts.log.warn('semantic-cache: skipping a corrupt stored entry', { key })
          continue
        }
        const e = value as StoredEntry
        if (e.expiresAt <= now) {
          expired++
          unusable.push(id)
          this.dropStored(id)
          continue
        }
        if (e.embedder !== this.opts.embedder.id || e.dim !== this.opts.embedder.dimension) {
          otherEmbedder++
          unusable.push(id)
          continue
        }
        live.push({ id, e, q })
      }
    }
    live.sort((a, b) => a.e.createdAt - b.e.createdAt)
    return { live, unusable, expired, corrupt, otherEmbedder }
  }

  /** Load every live entry of this embedder from storage into the index, newest kept first. */
  async rebuild(
    now = Date.now(),
  ): Promise<{ loaded: number; expired: number; corrupt: number; otherEmbedder: number }> {
    this.index.clear()
    // changes from here on are what the next refresh reads
    this.lastSync = this.lastFull = now
    const { live, expired, corrupt, otherEmbedder } = await this.readEntries(
      await this.opts.storage.getKeys(this.opts.prefix),
      now,
      true,
    )
    // oldest first, so that eviction during the rebuild drops the oldest ones
    for (const { id, e, q } of live.slice(-this.opts.maxEntries))
      this.index.add(e.partition, id, q, inverseNorm(q), e.expiresAt)
    return { loaded: this.index.size, expired, corrupt, otherEmbedder }
  }

  private info(text: string, hint?: string): TextInfo {
    // the judge's word alignment is quadratic in the words: only the window is compared (the
    // plugin's texts are windows already; this bounds other callers)
    const t = textWindow(text).text
    const h = hint === undefined ? undefined : textWindow(hint).text
    const k = h === undefined ? t : t + '\u0000' + h
    let x = this.infoCache.get(k)
    if (!x) {
      x = analyse(t, h)
      if (this.infoCache.size > 1000) this.infoCache.clear()
      this.infoCache.set(k, x)
    }
    return x
  }

  /**
   * Find a stored answer for the query in its partition: candidates above the similarity floor,
   * best first, each judged against the query; the first that passes is the hit.
   */
  async lookup(
    partition: string,
    query: QueryText,
    vector: Float32Array,
    opts: { maxOutputTokens?: number; now?: number } = {},
  ): Promise<LookupResult> {
    const now = opts.now ?? Date.now()
    const { q, inv } = quantise(vector)
    const judge = this.opts.judge
    const found = this.index.search(partition, q, inv, judge.minSimilarity, this.opts.candidates, now)
    if (!found.length) return { hit: false, reason: 'no candidate' }
    const qi = this.info(query.text, query.hint)
    const qv = dequantise(q, inv)
    let reason = 'judged different'
    for (const c of found) {
      let raw: unknown
      try {
        raw = await this.opts.storage.getItem(this.key(c.id))
      } catch (err) {
        this.opts.log.warn('semantic-cache: cannot read a stored entry', { id: c.id, error: (err as Error).message })
        continue
      }
      if (raw === null || raw === undefined) {
        this.index.remove(c.id)
        continue
      }
      if (!validEntry(raw) || raw.partition !== partition || raw.embedder !== this.opts.embedder.id) {
        this.opts.log.warn('semantic-cache: corrupt stored entry treated as a miss', { id: c.id })
        this.index.remove(c.id)
        this.dropStored(c.id)
        continue
      }
      if (raw.expiresAt <= now) {
        this.forget(c.id)
        continue
      }
      if (opts.maxOutputTokens !== undefined && raw.answer.usage.outputTokens > opts.maxOutputTokens) {
        reason = 'stored answer longer than max_tokens'
        continue
      }
      const sq = decodeVec(raw)
      if (!sq) {
        this.opts.log.warn('semantic-cache: corrupt stored entry treated as a miss', { id: c.id })
        this.forget(c.id)
        continue
      }
      const verdict = judge.judge(qi, this.info(raw.text, raw.hint), c.similarity, {
        query: qv,
        stored: dequantise(sq),
      })
      if (verdict.ok) return { hit: true, id: c.id, entry: raw, similarity: c.similarity, score: verdict.score }
      // same words in another order is the refusal a user tuning strictness most needs to see
      if (reason !== 'roles differ')
        reason = ROLE_REASONS.has(verdict.reason ?? '') ? 'roles differ' : `judged different (${verdict.reason})`
    }
    return { hit: false, reason, best: found[0]!.similarity }
  }

  /**
   * Store an answer now (embedding first if no vector is given; a lookup's embedding still on its
   * way is waited for). Returns the entry id.
   */
  async insert(
    partition: string,
    query: QueryText,
    vector: Float32Array | Promise<Float32Array> | undefined,
    answer: CanonicalAnswer,
    now = Date.now(),
  ): Promise<string> {
    const v = (await vector) ?? (await this.embed(query.text, 'store'))
    const { q, inv } = quantise(v)
    // the same prompt stored again (no-cache requests) replaces the old entry instead of piling up
    for (const c of this.index.search(partition, q, inv, 0.9999, 4, now)) this.forget(c.id)
    const id = randomBytes(12).toString('hex')
    const entry: StoredEntry = {
      v: 1,
      embedder: this.opts.embedder.id,
      dim: q.length,
      partition,
      text: query.text,
      ...(query.hint !== undefined && query.hint !== query.text ? { hint: query.hint } : {}),
      vec: Buffer.from(q.buffer, q.byteOffset, q.length).toString('base64'),
      answer,
      createdAt: now,
      expiresAt: now + this.opts.ttlMs,
    }
    await this.opts.storage.setItem(this.key(id), entry, { ttl: Math.ceil(this.opts.ttlMs / 1000) })
    await this.note(id, 'set')
    const evicted = this.index.add(partition, id, q, inv, entry.expiresAt)
    for (const e of evicted) this.dropStored(e)
    return id
  }

  /** Store off the response path; flush() waits for everything queued. */
  enqueue(
    partition: string,
    query: QueryText,
    vector: Float32Array | Promise<Float32Array> | undefined,
    answer: CanonicalAnswer,
  ): void {
    const p = this.insert(partition, query, vector, answer).catch((err) => {
      this.opts.log.warn('semantic-cache: could not store an answer', { error: (err as Error).message })
    })
    this.pending.add(p)
    void p.finally(() => this.pending.delete(p))
  }

  async flush(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending])
  }

  forget(id: string): void {
    this.index.remove(id)
    this.dropStored(id)
  }

  /** delete from storage, and tell the other instances */
  private dropStored(id: string): void {
    void this.opts.storage.removeItem(this.key(id)).then(
      () => this.note(id, 'del'),
      () => {},
    )
  }

  private feedFailed = false
  /** record a change for the other instances; a failure only delays them until the next full sync */
  private async note(id: string, kind: 'set' | 'del'): Promise<void> {
    if (!this.opts.changes) return
    try {
      await this.opts.changes.record(this.opts.prefix, id, kind)
    } catch (err) {
      if (!this.feedFailed)
        this.opts.log.warn('semantic-cache: could not record a change for other instances', {
          error: (err as Error).message,
        })
      this.feedFailed = true
    }
  }

  private lastSync = 0
  private lastFull = 0

  // ids of stored entries refresh() will not load (another embedder, corrupt, expired)
  private skipped = new Set<string>()

  /**
   * Catch up with the other instances on the same storage (several proxies on one redis): load
   * the entries they stored since the last look, drop from memory the ones they deleted. With a
   * change feed only the changes since the last sync are read; every `fullSyncMs` (and without a
   * feed, every time) the keys are listed, which also notices deletions made outside the cache.
   */
  async refresh(
    now = Date.now(),
    opts: { full?: boolean } = {},
  ): Promise<{ added: number; removed: number; full: boolean }> {
    const feed = this.opts.changes
    const fullEvery = this.opts.fullSyncMs ?? 600_000
    if (
      !opts.full &&
      feed &&
      this.lastSync &&
      now - this.lastSync < feed.retentionMs - 2 * CLOCK_SLACK_MS &&
      now - this.lastFull < fullEvery
    ) {
      const changes = await feed.since(this.opts.prefix, this.lastSync - CLOCK_SLACK_MS)
      this.lastSync = now
      const fresh: string[] = []
      let removed = 0
      for (const c of changes) {
        if (c.kind === 'del') {
          if (this.index.remove(c.id)) removed++
        } else if (!this.index.has(c.id) && !this.skipped.has(c.id)) fresh.push(this.key(c.id))
      }
      const added = await this.load(fresh, now)
      return { added, removed, full: false }
    }
    this.lastSync = this.lastFull = now
    // ids known before listing: anything this instance adds meanwhile is never mistaken for deleted
    const before = new Set(this.index.ids())
    const keys = await this.opts.storage.getKeys(this.opts.prefix)
    const listed = new Set<string>()
    const fresh: string[] = []
    for (const key of keys) {
      const id = key.slice(key.lastIndexOf(':') + 1)
      listed.add(id)
      if (!this.index.has(id) && !this.skipped.has(id)) fresh.push(key)
    }
    let removed = 0
    for (const id of before) {
      if (!listed.has(id) && this.index.remove(id)) removed++
    }
    const added = await this.load(fresh, now)
    return { added, removed, full: true }
  }

  /** read entries other instances stored into memory; the unusable ones are not read again */
  private async load(keys: string[], now: number): Promise<number> {
    if (!keys.length) return 0
    if (this.skipped.size > 100_000) this.skipped.clear()
    const { live, unusable } = await this.readEntries(keys, now, false)
    for (const id of unusable) this.skipped.add(id)
    // the instance that stored an entry also evicts for it: here only memory follows
    let added = 0
    for (const { id, e, q } of live)
      if (!this.index.has(id)) {
        this.index.add(e.partition, id, q, inverseNorm(q), e.expiresAt)
        added++
      }
    return added
  }

  /** drop expired entries from memory and storage */
  sweep(now = Date.now()): number {
    const gone = this.index.sweep(now)
    for (const id of gone) this.dropStored(id)
    return gone.length
  }
}
