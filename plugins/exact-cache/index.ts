// exact-cache: serves a stored answer when the canonical request (see key.ts) was answered
// before in the same scope. A hit is rendered by the core in the client's protocol (as a stream
// when the client streams), bills 0 tokens and reports what it saved.
import { isStorageUnavailable } from '../../core/errors.ts'
import { randomUUID } from 'node:crypto'
import { cacheControl } from '../../core/cache-control.ts'
import { isDryRun } from '../../core/dry-run.ts'
import { definePlugin } from '../../core/plugin.ts'
import type { CanonicalAnswer, MeshContext, Plugin, Usage } from '../../core/types.ts'
import { cacheKey, namespaceOf, type CacheScope } from './key.ts'
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

const DEFAULTS = { scope: 'team' as CacheScope, ttlSeconds: 7 * 24 * 3600, maxEntries: 10_000, maxBytes: 64 * 1024 * 1024, prefix: 'cache:exact', sweepMinutes: 60, coalesce: true as boolean | 'all', retryWindowSeconds: 120, cacheSampled: true }
const KNOWN = new Set(['scope', 'ttlSeconds', 'maxEntries', 'maxBytes', 'persist', 'prefix', 'sweepMinutes', 'coalesce', 'retryWindowSeconds', 'cacheSampled'])

function validate(o: ExactCacheOptions): void {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new Error(`exact-cache: options must be an object, got ${JSON.stringify(o)}`)
  for (const k of Object.keys(o)) if (!KNOWN.has(k)) throw new Error(`exact-cache: unknown option "${k}" (expected one of ${[...KNOWN].join(', ')})`)
  if (o.scope !== undefined && !['global', 'team', 'user'].includes(o.scope)) throw new Error(`exact-cache: scope must be "global", "team" or "user", got ${JSON.stringify(o.scope)}`)
  const positive = (name: keyof ExactCacheOptions, integer: boolean) => {
    const v = o[name]
    if (v === undefined) return
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
      throw new Error(`exact-cache: ${name} must be a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(v)}`)
    }
  }
  positive('ttlSeconds', false)
  positive('maxEntries', true)
  positive('maxBytes', true)
  if (o.sweepMinutes !== undefined && (typeof o.sweepMinutes !== 'number' || !Number.isFinite(o.sweepMinutes) || o.sweepMinutes < 0)) {
    throw new Error(`exact-cache: sweepMinutes must be a number of minutes >= 0, got ${JSON.stringify(o.sweepMinutes)}`)
  }
  if (o.coalesce !== undefined && typeof o.coalesce !== 'boolean' && o.coalesce !== 'all') throw new Error(`exact-cache: coalesce must be true, false or 'all', got ${JSON.stringify(o.coalesce)}`)
  if (o.retryWindowSeconds !== undefined && (typeof o.retryWindowSeconds !== 'number' || !Number.isFinite(o.retryWindowSeconds) || o.retryWindowSeconds < 0)) {
    throw new Error(`exact-cache: retryWindowSeconds must be a number of seconds >= 0, got ${JSON.stringify(o.retryWindowSeconds)}`)
  }
  if (o.cacheSampled !== undefined && typeof o.cacheSampled !== 'boolean') throw new Error(`exact-cache: cacheSampled must be a boolean, got ${JSON.stringify(o.cacheSampled)}`)
  if (o.persist !== undefined && typeof o.persist !== 'boolean') throw new Error(`exact-cache: persist must be a boolean, got ${JSON.stringify(o.persist)}`)
  if (o.prefix !== undefined && (typeof o.prefix !== 'string' || !o.prefix)) throw new Error(`exact-cache: prefix must be a non-empty string, got ${JSON.stringify(o.prefix)}`)
}

const ZERO: Usage = { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 }

function freshId(protocol: string): string {
  // randomUUID draws from a pooled buffer; randomBytes(12) makes a syscall per hit
  const r = randomUUID().replace(/-/g, '').slice(0, 24)
  return protocol === 'anthropic' ? `msg_cache_${r}` : protocol === 'openai' ? `chatcmpl-cache-${r}` : protocol === 'responses' ? `resp_cache_${r}` : `cache-${r}`
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

export function exactCache(options: ExactCacheOptions = {}): Plugin {
  validate(options)
  const o = { ...DEFAULTS, ...options }
  let store: ExactStore | undefined
  /** keys on their way upstream in this process, and how to wake those waiting for them */
  const inflight = new Map<string, { done: Promise<void>; resolve: () => void }>()
  const recent = new RecentAnswers(o.retryWindowSeconds * 1000)

  const answerOf = (ctx: MeshContext): CanonicalAnswer | undefined => {
    const a = ctx.answer
    if (!a) return undefined
    if (!a.text && a.toolCalls.length === 0) return undefined
    // the answer's own usage is the upstream's; fall back to the context's actual usage
    const usage = totalTokens(a.usage ?? ZERO) > 0 ? a.usage : !ctx.usage.estimated ? ctx.usage : a.usage
    return { ...a, usage: { ...ZERO, ...usage, estimated: undefined } }
  }

  return definePlugin({
    name: 'exact-cache',
    options: { ...options },
    setup(mesh) {
      const persist = options.persist ?? mesh.config.storage.driver !== 'memory'
      store = new ExactStore({
        storage: persist ? mesh.storage : undefined,
        prefix: o.prefix,
        maxEntries: o.maxEntries,
        maxBytes: o.maxBytes,
        ttlSeconds: o.ttlSeconds,
        log: mesh.log,
      })
      const s = store
      let sweeping: Promise<unknown> | undefined
      const timers: NodeJS.Timeout[] = []
      if (persist && mesh.mode === 'serve' && mesh.config.storage.driver !== 'redis' && o.sweepMinutes > 0) {
        const sweep = () => {
          if (sweeping) return
          sweeping = s.sweep()
            .then((r) => { if (r.removed) mesh.log.info(`exact-cache: removed ${r.removed} expired entries of ${r.scanned}`) })
            .catch((err) => mesh.log.warn('exact-cache: sweep failed', { error: String((err as Error)?.message ?? err) }))
            .finally(() => { sweeping = undefined })
        }
        const first = setTimeout(sweep, Math.min(60_000, o.sweepMinutes * 60_000))
        const every = setInterval(sweep, o.sweepMinutes * 60_000)
        first.unref()
        every.unref()
        timers.push(first, every)
      }
      mesh.onClose(async () => {
        for (const t of timers) clearTimeout(t)
        await sweeping
        await s.flush()
      })
    },
    hooks: {
      async cacheLookup(ctx) {
        // noCache: the core found state this cache cannot see (a Responses chain it did not answer)
        if (ctx.operation !== 'chat' || !store || ctx.prompt.noCache) return
        const cc = cacheControl(ctx.request.headers)
        const n = Number(ctx.prompt.params?.n ?? 1)
        // one stored answer cannot render n > 1 choices
        if (cc.noStore || n > 1 || (!o.cacheSampled && isSampled(ctx.prompt.params))) {
          ctx.cache.status = 'bypass'
          return
        }
        const hash = cacheKey(ctx, o.scope)
        if (isDryRun(ctx)) return previewLookup(ctx, hash, cc.noCache)
        ctx.meta['exact-cache'] = { hash } satisfies ExactMeta
        ctx.cache.key = hash
        const ns = namespaceOf(ctx)
        if (ns) ctx.cache.namespace = ns
        if (cc.noCache) {
          ctx.cache.status = 'miss'
          ctx.mesh.emit('cache_miss', { id: ctx.id, kind: 'exact', reason: 'no-cache' })
          return
        }
        const asker = askerOf(ctx)
        if (recent.isRetry(asker, hash)) {
          recent.note(asker, hash)
          markRetry(ctx)
          return
        }
        const lookup = async (): Promise<LookupResult> => {
          try {
            const r = await store!.get(hash)
            if (r.status === 'corrupt') ctx.mesh.log.warn('exact-cache: corrupt entry deleted, treated as a miss', { id: ctx.id, key: hash, reason: r.reason })
            return r
          } catch (err) {
            // storage down: serve from upstream rather than fail the request
            // a storage outage is logged once by the storage layer, not once per request here
            ;(isStorageUnavailable(err) ? ctx.mesh.log.debug : ctx.mesh.log.warn)('exact-cache: lookup failed, treated as a miss', { id: ctx.id, error: String((err as Error)?.message ?? err) })
            return { status: 'miss' }
          }
        }
        let found = await lookup()
        const coalescing = o.coalesce === 'all' || (o.coalesce && !ctx.prompt.stream)
        if (found.status !== 'hit' && coalescing) {
          // the same request is already on its way upstream: wait for that answer instead of paying twice
          const leader = inflight.get(hash)
          if (leader) {
            let timer: NodeJS.Timeout | undefined
            await Promise.race([leader.done, new Promise<void>((r) => { timer = setTimeout(r, ctx.mesh.config.limits.upstreamTimeoutMs) })])
            clearTimeout(timer)
            found = await lookup()
            if (found.status === 'hit') ctx.headers['X-AgentMesh-Cache-Coalesced'] = '1'
          }
        }
        if (found.status !== 'hit') {
          if (o.coalesce && !inflight.has(hash)) {
            let resolve!: () => void
            const done = new Promise<void>((r) => (resolve = r))
            inflight.set(hash, { done, resolve })
            ;(ctx.meta['exact-cache'] as ExactMeta).leader = true
          }
          ctx.cache.status = 'miss'
          ctx.mesh.emit('cache_miss', { id: ctx.id, kind: 'exact' })
          return
        }
        recent.note(asker, hash)
        const stored = found.entry.answer
        const savedTokens = totalTokens(stored.usage)
        const savedUsd = ctx.mesh.pricing.cost(stored.model, stored.usage)
        // the body reports the usage of the call it replays (clients size their context from it);
        // what this request was billed, nothing, is ctx.usage and the headers
        const answer: CanonicalAnswer = { ...stored, id: freshId(ctx.protocol), usage: { ...stored.usage } }
        ctx.cache.status = 'exact'
        ctx.cache.savedTokens = savedTokens
        ctx.cost.savedUsd = savedUsd
        ctx.usage = { ...ZERO }
        ctx.headers['X-AgentMesh-Tokens-Saved'] = String(savedTokens)
        ctx.headers['X-AgentMesh-Cost-Saved-USD'] = savedUsd.toFixed(6)
        ctx.answer = answer
        ctx.response = { kind: 'answer', answer }
        ctx.mesh.emit('cache_hit', { id: ctx.id, kind: 'exact', savedTokens, savedUsd })
      },
      async afterResponse(ctx) {
        const meta = ctx.meta['exact-cache'] as ExactMeta | undefined
        if (!meta || !store) return
        try {
          await storeAnswer(ctx, meta)
        } finally {
          // followers look again once the answer is stored (or know there is none)
          if (meta.leader) {
            inflight.get(meta.hash)?.resolve()
            inflight.delete(meta.hash)
          }
        }
      },
    },
  })

  /**
   * A dry run: would this request be a hit? Said in ctx.cache and the headers as a hit would say
   * it, but nothing is answered (the preview is), stored, waited for or noted as asked.
   */
  async function previewLookup(ctx: MeshContext, hash: string, noCache: boolean): Promise<void> {
    ctx.cache.key = hash
    ctx.cache.status = 'miss'
    if (noCache || recent.isRetry(askerOf(ctx), hash)) return
    const found = await store!.get(hash).catch(() => ({ status: 'miss' as const }))
    if (found.status !== 'hit') return
    const stored = found.entry.answer
    const savedTokens = totalTokens(stored.usage)
    const savedUsd = ctx.mesh.pricing.cost(stored.model, stored.usage)
    ctx.cache.status = 'exact'
    ctx.cache.savedTokens = savedTokens
    ctx.cost.savedUsd = savedUsd
    ctx.headers['X-AgentMesh-Tokens-Saved'] = String(savedTokens)
    ctx.headers['X-AgentMesh-Cost-Saved-USD'] = savedUsd.toFixed(6)
  }

  async function storeAnswer(ctx: MeshContext, meta: ExactMeta): Promise<void> {
    if (!store) return
    // only a complete, successful, upstream answer is stored: never an aborted stream,
    // an error, or an answer that itself came from a cache
    if (ctx.status !== 200 || ctx.aborted || ctx.error || ctx.cache.status !== 'miss') return
    const answer = answerOf(ctx)
    if (!answer || answer.stopReason === 'content_filter') return
    const now = Date.now()
    const entry: CacheEntry = { v: 1, answer, createdAt: now, expiresAt: now + o.ttlSeconds * 1000, protocol: ctx.protocol }
    try {
      await store.set(meta.hash, entry)
      ctx.mesh.emit('x-cache_store', { id: ctx.id, kind: 'exact', key: meta.hash })
    } catch (err) {
      ;(isStorageUnavailable(err) ? ctx.mesh.log.debug : ctx.mesh.log.warn)('exact-cache: store failed', { id: ctx.id, error: String((err as Error)?.message ?? err) })
    }
  }
}

export default exactCache
