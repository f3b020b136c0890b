// exact-cache: serves a stored answer when the canonical request (see key.ts) was answered
// before in the same scope. A hit is rendered by the core in the client's protocol (as a stream
// when the client streams), bills 0 tokens and reports what it saved.
import { isStorageUnavailable } from '../../core/errors.ts'
import { randomUUID } from 'node:crypto'
import { cacheControl } from '../../core/cache-control.ts'
import { isDryRun } from '../../core/dry-run.ts'
import { definePlugin } from '../../core/plugin.ts'
import type { CanonicalAnswer, Mesh, MeshContext, Plugin, Usage } from '../../core/types.ts'
import { cacheKey, cacheKeyAsync, namespaceOf, type CacheScope } from './key.ts'
import { ExactStore, type CacheEntry, type LookupResult } from './store.ts'
import { askerOf, isSampled, RecentAnswers } from './retry.ts'

export { cacheKey, canonicalRequest, scopeOf, NAMESPACE_HEADER, type CacheScope } from './key.ts'
export { ExactStore, entryProblem, type CacheEntry } from './store.ts'
export { cacheControl }

export interface ExactCacheOptions {
  /** who shares answers: everyone, a team (default), or one user */
  scope?: CacheScope
  /** time to live of an entry in seconds (default 7 days), honoured on every storage driver */
  ttlSeconds?: number
  /** in-process tier bounds (default 10,000 entries, 64 MB) */
  maxEntries?: number
  maxBytes?: number
  /**
   * keep entries in mesh.storage too (L2), shared by every instance on the same redis.
   * Default: on for fs and redis, off for the memory driver (it would only duplicate L1, unbounded).
   */
  persist?: boolean
  /** storage key prefix (default `cache:exact`) */
  prefix?: string
  /**
   * how often expired entries are deleted from storage that does not expire keys itself (fs),
   * in minutes (default 60, first sweep a minute after start; 0 = never). Redis needs none.
   */
  sweepMinutes?: number
  /**
   * identical requests in flight at once go upstream once (default true): the others wait for that
   * answer and get it as an exact hit (`X-AgentMesh-Cache-Coalesced: 1`). Streaming requests do
   * not wait unless 'all' (a waiting stream gets nothing until the first one ends). Per process.
   */
  coalesce?: boolean | 'all'
  /**
   * a request answered from the cache and sent again by the same team, user and key within this
   * many seconds is a retry (default 120; 0 = off): it goes upstream, billed as usual, and its
   * answer replaces the entry. Further identical requests inside the window are retries too.
   */
  retryWindowSeconds?: number
  /**
   * cache requests that sample (temperature above 0, or left to the vendor's default) like any
   * other (default true); false: such requests bypass the cache, lookup and store
   */
  cacheSampled?: boolean
}

const DEFAULTS = {
  scope: 'team' as CacheScope,
  ttlSeconds: 7 * 24 * 3600,
  maxEntries: 10_000,
  maxBytes: 64 * 1024 * 1024,
  prefix: 'cache:exact',
  sweepMinutes: 60,
  coalesce: true as boolean | 'all',
  retryWindowSeconds: 120,
  cacheSampled: true,
}
const KNOWN = new Set([
  'scope',
  'ttlSeconds',
  'maxEntries',
  'maxBytes',
  'persist',
  'prefix',
  'sweepMinutes',
  'coalesce',
  'retryWindowSeconds',
  'cacheSampled',
])

function validate(o: ExactCacheOptions): void {
  if (o === null || typeof o !== 'object' || Array.isArray(o))
    throw new Error(`exact-cache: options must be an object, got ${JSON.stringify(o)}`)
  for (const k of Object.keys(o))
    if (!KNOWN.has(k)) throw new Error(`exact-cache: unknown option "${k}" (expected one of ${[...KNOWN].join(', ')})`)
  if (o.scope !== undefined && !['global', 'team', 'user'].includes(o.scope))
    throw new Error(`exact-cache: scope must be "global", "team" or "user", got ${JSON.stringify(o.scope)}`)
  const positive = (name: keyof ExactCacheOptions, integer: boolean) => {
    const v = o[name]
    if (v === undefined) return
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
      throw new Error(
        `exact-cache: ${name} must be a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(v)}`,
      )
    }
  }
  positive('ttlSeconds', false)
  positive('maxEntries', true)
  positive('maxBytes', true)
  if (
    o.sweepMinutes !== undefined &&
    (typeof o.sweepMinutes !== 'number' || !Number.isFinite(o.sweepMinutes) || o.sweepMinutes < 0)
  ) {
    throw new Error(`exact-cache: sweepMinutes must be a number of minutes >= 0, got ${JSON.stringify(o.sweepMinutes)}`)
  }
  if (o.coalesce !== undefined && typeof o.coalesce !== 'boolean' && o.coalesce !== 'all')
    throw new Error(`exact-cache: coalesce must be true, false or 'all', got ${JSON.stringify(o.coalesce)}`)
  if (
    o.retryWindowSeconds !== undefined &&
    (typeof o.retryWindowSeconds !== 'number' || !Number.isFinite(o.retryWindowSeconds) || o.retryWindowSeconds < 0)
  ) {
    throw new Error(
      `exact-cache: retryWindowSeconds must be a number of seconds >= 0, got ${JSON.stringify(o.retryWindowSeconds)}`,
    )
  }
  if (o.cacheSampled !== undefined && typeof o.cacheSampled !== 'boolean')
    throw new Error(`exact-cache: cacheSampled must be a boolean, got ${JSON.stringify(o.cacheSampled)}`)
  if (o.persist !== undefined && typeof o.persist !== 'boolean')
    throw new Error(`exact-cache: persist must be a boolean, got ${JSON.stringify(o.persist)}`)
  if (o.prefix !== undefined && (typeof o.prefix !== 'string' || !o.prefix))
    throw new Error(`exact-cache: prefix must be a non-empty string, got ${JSON.stringify(o.prefix)}`)
}

const ZERO: Usage = { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 }

function freshId(protocol: string): string {
  // randomUUID draws from a pooled buffer; randomBytes(12) makes a syscall per hit
  const r = randomUUID().replace(/-/g, '').slice(0, 24)
  return protocol === 'anthropic'
    ? `msg_cache_${r}`
    : protocol === 'openai'
      ? `chatcmpl-cache-${r}`
      : protocol === 'responses'
        ? `resp_cache_${r}`
        : `cache-${r}`
}

function totalTokens(u: Usage): number {
  return (u.inputTokens || 0) + (u.outputTokens || 0) + (u.cacheReadTokens || 0) + (u.cacheWriteTokens || 0)
}

interface ExactMeta {
  hash: string
  /** this request went upstream first; identical ones wait for it */
  leader?: boolean
}

/** the exact cache's retry verdict: miss, go upstream, and tell later caches not to serve it */
function markRetry(ctx: MeshContext): void {
  ctx.cache.status = 'miss'
  ctx.state.cacheRetry = { by: 'exact-cache' }
  ctx.headers['X-AgentMesh-Cache-Retry'] = '1'
  ctx.mesh.emit('cache_miss', { id: ctx.id, kind: 'exact', reason: 'retry' })
}

/** deletes expired entries now and then on storage that does not expire keys itself (fs) */
function startSweeps(mesh: Mesh, store: ExactStore, minutes: number): () => Promise<void> {
  let sweeping: Promise<unknown> | undefined
  const sweep = () => {
    if (sweeping) return
    sweeping = store
      .sweep()
      .then((r) => {
        if (r.removed) mesh.log.info(`exact-cache: removed ${r.removed} expired entries of ${r.scanned}`)
      })
      .catch((err) => mesh.log.warn('exact-cache: sweep failed', { error: String((err as Error)?.message ?? err) }))
      .finally(() => {
        sweeping = undefined
      })
  }
  const first = setTimeout(sweep, Math.min(60_000, minutes * 60_000))
  const every = setInterval(sweep, minutes * 60_000)
  first.unref()
  every.unref()
  return async () => {
    clearTimeout(first)
    clearInterval(every)
    await sweeping
  }
}

/** the stored entry, or a miss when it is absent, corrupt (deleted) or storage is down */
async function lookupEntry(store: ExactStore, ctx: MeshContext, hash: string): Promise<LookupResult> {
  try {
    const r = await store.get(hash)
    if (r.status === 'corrupt')
      ctx.mesh.log.warn('exact-cache: corrupt entry deleted, treated as a miss', {
        id: ctx.id,
        key: hash,
        reason: r.reason,
      })
    return r
  } catch (err) {
    // storage down: serve from upstream rather than fail the request
    // a storage outage is logged once by the storage layer, not once per request here
    ;(isStorageUnavailable(err) ? ctx.mesh.log.debug : ctx.mesh.log.warn)(
      'exact-cache: lookup failed, treated as a miss',
      { id: ctx.id, error: String((err as Error)?.message ?? err) },
    )
    return { status: 'miss' }
  }
}

/** waits for the request already on its way upstream with this key, at most the upstream timeout */
async function waitFor(leader: { done: Promise<void> }, ctx: MeshContext): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    leader.done,
    new Promise<void>((r) => {
      timer = setTimeout(r, ctx.mesh.config.limits.upstreamTimeoutMs)
    }),
  ])
  clearTimeout(timer)
}

/** what a hit saves, said in ctx.cache, ctx.cost and the headers (a dry run's preview says it too); returns the tokens */
function reportSavings(ctx: MeshContext, stored: CanonicalAnswer): number {
  const savedTokens = totalTokens(stored.usage)
  const savedUsd = ctx.mesh.pricing.cost(stored.model, stored.usage)
  ctx.cache.status = 'exact'
  ctx.cache.savedTokens = savedTokens
  ctx.cost.savedUsd = savedUsd
  ctx.headers['X-AgentMesh-Tokens-Saved'] = String(savedTokens)
  ctx.headers['X-AgentMesh-Cost-Saved-USD'] = savedUsd.toFixed(6)
  return savedTokens
}

/** answers the request with the stored answer, billed nothing */
function serveHit(ctx: MeshContext, stored: CanonicalAnswer): void {
  // the body reports the usage of the call it replays (clients size their context from it);
  // what this request was billed, nothing, is ctx.usage and the headers
  const answer: CanonicalAnswer = { ...stored, id: freshId(ctx.protocol), usage: { ...stored.usage } }
  const savedTokens = reportSavings(ctx, stored)
  ctx.usage = { ...ZERO }
  ctx.answer = answer
  ctx.response = { kind: 'answer', answer }
  ctx.mesh.emit('cache_hit', { id: ctx.id, kind: 'exact', savedTokens, savedUsd: ctx.cost.savedUsd })
}

/** the answer to store: a non-empty one, with the usage of the upstream call that made it */
function answerOf(ctx: MeshContext): CanonicalAnswer | undefined {
  const a = ctx.answer
  if (!a) return undefined
  if (!a.text && a.toolCalls.length === 0) return undefined
  // the answer's own usage is the upstream's; fall back to the context's actual usage
  const usage = totalTokens(a.usage ?? ZERO) > 0 ? a.usage : !ctx.usage.estimated ? ctx.usage : a.usage
  return { ...a, usage: { ...ZERO, ...usage, estimated: undefined } }
}

/** one exact cache's state, shared by its hooks and the steps below */
interface ExactState {
  o: typeof DEFAULTS
  store?: ExactStore
  /** keys on their way upstream in this process, and how to wake those waiting for them */
  inflight: Map<string, { done: Promise<void>; resolve: () => void }>
  recent: RecentAnswers
}

// The plugin: options, the store opened in setup, two hooks. Each step is a module function over
// the plugin's state (ExactState), so a lookup allocates no closures.
export function exactCache(options: ExactCacheOptions = {}): Plugin {
  validate(options)
  const o = { ...DEFAULTS, ...options }
  const st: ExactState = { o, inflight: new Map(), recent: new RecentAnswers(o.retryWindowSeconds * 1000) }

  return definePlugin({
    name: 'exact-cache',
    options: { ...options },
    setup(mesh) {
      const persist = options.persist ?? mesh.config.storage.driver !== 'memory'
      const s = new ExactStore({
        storage: persist ? mesh.storage : undefined,
        prefix: o.prefix,
        maxEntries: o.maxEntries,
        maxBytes: o.maxBytes,
        ttlSeconds: o.ttlSeconds,
        log: mesh.log,
      })
      st.store = s
      const sweeps = persist && mesh.mode === 'serve' && mesh.config.storage.driver !== 'redis' && o.sweepMinutes > 0
      const stopSweeps = sweeps ? startSweeps(mesh, s, o.sweepMinutes) : undefined
      mesh.onClose(async () => {
        await stopSweeps?.()
        await s.flush()
      })
    },
    hooks: {
      async cacheLookup(ctx) {
        // noCache: the core found state this cache cannot see (a Responses chain it did not answer)
        if (ctx.operation !== 'chat' || !st.store || ctx.prompt.noCache) return
        const cc = cacheControl(ctx.request.headers)
        const n = Number(ctx.prompt.params?.n ?? 1)
        // one stored answer cannot render n > 1 choices
        if (cc.noStore || n > 1 || (!o.cacheSampled && isSampled(ctx.prompt.params))) {
          ctx.cache.status = 'bypass'
          return
        }
        // a request of megabytes is hashed over several turns of the event loop, not in one go
        const hash =
          ctx.request.rawBody.length >= 1024 * 1024 ? await cacheKeyAsync(ctx, o.scope) : cacheKey(ctx, o.scope)
        if (isDryRun(ctx)) return previewLookup(st, ctx, hash, cc.noCache)
        return lookup(st, ctx, hash, cc.noCache)
      },
      async afterResponse(ctx) {
        const meta = ctx.meta['exact-cache'] as ExactMeta | undefined
        if (!meta || !st.store) return
        try {
          await storeAnswer(st, ctx, meta)
        } finally {
          // followers look again once the answer is stored (or know there is none)
          if (meta.leader) {
            st.inflight.get(meta.hash)?.resolve()
            st.inflight.delete(meta.hash)
          }
        }
      },
    },
  })
}

/** a cacheable request: a retry, a hit (possibly after waiting for an identical one) or a miss */
async function lookup(st: ExactState, ctx: MeshContext, hash: string, noCache: boolean): Promise<void> {
  const meta: ExactMeta = { hash }
  ctx.meta['exact-cache'] = meta
  ctx.cache.key = hash
  const ns = namespaceOf(ctx)
  if (ns) ctx.cache.namespace = ns
  if (noCache) {
    ctx.cache.status = 'miss'
    ctx.mesh.emit('cache_miss', { id: ctx.id, kind: 'exact', reason: 'no-cache' })
    return
  }
  const asker = askerOf(ctx)
  if (st.recent.isRetry(asker, hash)) {
    st.recent.note(asker, hash)
    markRetry(ctx)
    return
  }
  let found = await lookupEntry(st.store!, ctx, hash)
  const coalescing = st.o.coalesce === 'all' || (st.o.coalesce && !ctx.prompt.stream)
  // the same request is already on its way upstream: wait for that answer instead of paying twice
  const leader = found.status !== 'hit' && coalescing ? st.inflight.get(hash) : undefined
  if (leader) {
    await waitFor(leader, ctx)
    found = await lookupEntry(st.store!, ctx, hash)
    if (found.status === 'hit') ctx.headers['X-AgentMesh-Cache-Coalesced'] = '1'
  }
  if (found.status !== 'hit') return miss(st, ctx, meta)
  st.recent.note(asker, hash)
  serveHit(ctx, found.entry.answer)
}

/** a miss goes upstream; with coalescing on, the first one leads and identical ones wait for it */
function miss(st: ExactState, ctx: MeshContext, meta: ExactMeta): void {
  if (st.o.coalesce && !st.inflight.has(meta.hash)) {
    let resolve!: () => void
    const done = new Promise<void>((r) => (resolve = r))
    st.inflight.set(meta.hash, { done, resolve })
    meta.leader = true
  }
  ctx.cache.status = 'miss'
  ctx.mesh.emit('cache_miss', { id: ctx.id, kind: 'exact' })
}

/**
 * A dry run: would this request be a hit? Said in ctx.cache and the headers as a hit would say
 * it, but nothing is answered (the preview is), stored, waited for or noted as asked.
 */
async function previewLookup(st: ExactState, ctx: MeshContext, hash: string, noCache: boolean): Promise<void> {
  ctx.cache.key = hash
  ctx.cache.status = 'miss'
  if (noCache || st.recent.isRetry(askerOf(ctx), hash)) return
  const found = await st.store!.get(hash).catch(() => ({ status: 'miss' as const }))
  if (found.status !== 'hit') return
  reportSavings(ctx, found.entry.answer)
}

async function storeAnswer(st: ExactState, ctx: MeshContext, meta: ExactMeta): Promise<void> {
  if (!st.store) return
  // only a complete, successful, upstream answer is stored: never an aborted stream,
  // an error, or an answer that itself came from a cache
  if (ctx.status !== 200 || ctx.aborted || ctx.error || ctx.cache.status !== 'miss') return
  const answer = answerOf(ctx)
  if (!answer || answer.stopReason === 'content_filter') return
  const now = Date.now()
  const entry: CacheEntry = {
    v: 1,
    answer,
    createdAt: now,
    expiresAt: now + st.o.ttlSeconds * 1000,
    protocol: ctx.protocol,
  }
  try {
    await st.store.set(meta.hash, entry)
    ctx.mesh.emit('x-cache_store', { id: ctx.id, kind: 'exact', key: meta.hash })
  } catch (err) {
    ;(isStorageUnavailable(err) ? ctx.mesh.log.debug : ctx.mesh.log.warn)('exact-cache: store failed', {
      id: ctx.id,
      error: String((err as Error)?.message ?? err),
    })
  }
}

export default exactCache
