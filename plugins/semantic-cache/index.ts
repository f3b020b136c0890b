// semanticCache(): answers a prompt with a stored answer to a differently worded prompt that
// asks the same thing, inside a partition where everything else about the request matches.
// See README.md for how a hit is decided and what the defaults were measured at.
import { randomBytes } from 'node:crypto'
import { definePlugin } from '../../core/plugin.ts'
import type { CanonicalAnswer, Mesh, MeshContext, Plugin } from '../../core/types.ts'
import { transformersEmbedder, useLiteEmbedder, type Embedder, type TransformersOptions } from './embedders.ts'
import { createJudge, type Judge, type JudgeSettings, type Vetoes } from './judge.ts'
import { cacheControl } from '../../core/cache-control.ts'
import { isDryRun } from '../../core/dry-run.ts'
import { isStorageUnavailable } from '../../core/errors.ts'
import { partitionOf, type Scope } from './partition.ts'
import { SemanticStore, type LookupResult } from './store.ts'
import { promptChars } from './text.ts'
import { isSampled, RecentAnswers, retryKey } from './retry.ts'

export type { Embedder } from './embedders.ts'
export { useLiteEmbedder, transformersEmbedder, useLiteInThread, transformersInThread } from './embedders.ts'
export { workerEmbedder, type WorkerEmbedderSpec } from './worker-host.ts'
export { SemanticStore } from './store.ts'
export { createJudge } from './judge.ts'

export interface SemanticCacheOptions {
  /** an Embedder, 'use-lite' (default, bundled, offline) or transformers.js options */
  embedder?: Embedder | 'use-lite' | ({ kind: 'transformers' } & TransformersOptions)
  /** who may share answers: 'team' (default), 'user' or 'global' */
  scope?: Scope
  /** entry lifetime (default 7 days) */
  ttlSeconds?: number
  /** entries kept in memory and storage across all partitions (default 100,000); oldest go first */
  maxEntries?: number
  /** cosine floor for candidates; overrides the embedder's calibrated default */
  minSimilarity?: number
  /** floor of the learned judgement (0..1, higher is stricter); overrides the embedder's default */
  strictness?: number
  /** per embedder id: { minSimilarity, minScore, vetoes } (top-level settings win) */
  perEmbedder?: Record<string, JudgeSettings>
  /** hard rules that refuse a candidate (all true by default): number, entity, language, negation, swap, opposite */
  vetoes?: Partial<Vetoes>
  /**
   * store answers that are tool calls (default false): the arguments of a call are read off the
   * exact wording (ids, paths, amounts) and a call acts on the world, so a reworded prompt should
   * make its own call. The exact cache still serves repeated tool-call requests.
   */
  cacheToolCalls?: boolean
  /** candidates judged per lookup (default 5) */
  candidates?: number
  /** storage key prefix (default 'semantic') */
  prefix?: string
  /** load the model in the background at start instead of on the first request (default true) */
  warmup?: boolean
  /** largest embedding batch (default 16) */
  maxBatch?: number
  /**
   * how long a lookup waits for its embedding before the request goes upstream as a miss, in ms
   * (default 2,000; an embedding takes 15-100 ms here, a cold model load 0.5-2 s). The embedding
   * still serves the store afterwards. Under a flood of long prompts the queue grows: this keeps
   * a request from waiting on the others
   */
  lookupTimeoutMs?: number
  /**
   * prompts longer than this many characters (system prompt, every message, tools and parameters)
   * skip the semantic cache, lookup and store (default 200,000): hashing and comparing them costs
   * event-loop time in proportion, and a long prompt reworded is rarely the same request
   */
  maxPromptChars?: number
  /**
   * on redis, how often to pick up entries other instances stored, in seconds (default 5; 0 = only
   * at start). Other drivers are not shared between instances.
   */
  syncSeconds?: number
  /**
   * a prompt answered from this cache and sent again, word for word, by the same team, user and
   * key within this many seconds is a retry (default 120; 0 = off): it goes upstream and its
   * answer replaces the entry that served it. Further identical requests inside the window too.
   */
  retryWindowSeconds?: number
  /** cache requests that sample (temperature above 0, or the vendor's default) like any other (default true) */
  cacheSampled?: boolean
}

export interface SemanticCachePlugin extends Plugin {
  /** the live state after setup (undefined in command mode), for tests, benchmarks and admin tools */
  semantic: {
    readonly store: SemanticStore | undefined
    readonly embedder: Embedder
    /** wait for queued stores */
    flush(): Promise<void>
  }
}

const NAME = 'semantic-cache'

/** what cacheLookup leaves in ctx.meta['semantic-cache'] for afterResponse (and for other plugins to read) */
type Looked = {
  partition: string
  text: string
  hint?: string
  vector?: Float32Array
  embedding?: Promise<Float32Array>
  retryOf?: string
}
type LookupMeta =
  /** retryOf: the entry whose answer this request retries ('' if none), replaced by the fresh answer */
  | Looked
  /** the semantic cache did not look and will not store, and why */
  | { skipped: string }

function fail(field: string, expected: string, got: unknown): never {
  throw new Error(`semanticCache: ${field} must be ${expected}, got ${JSON.stringify(got)}`)
}

function resolveEmbedder(e: SemanticCacheOptions['embedder']): Embedder {
  if (e === undefined || e === 'use-lite') return useLiteEmbedder()
  if (typeof e === 'object' && e !== null && 'kind' in e && (e as any).kind === 'transformers') {
    const { kind: _kind, ...rest } = e as { kind: 'transformers' } & TransformersOptions
    return transformersEmbedder(rest)
  }
  if (
    typeof e === 'object' &&
    e !== null &&
    typeof (e as Embedder).embed === 'function' &&
    typeof (e as Embedder).id === 'string'
  )
    return e as Embedder
  return fail('embedder', `'use-lite', { kind: 'transformers', ... } or an Embedder`, e)
}

/** the promise's value, or undefined once `ms` have passed */
function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms)
  })
  return Promise.race([p, late]).finally(() => clearTimeout(timer))
}

function checkUnit(field: string, v: unknown): void {
  if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < -1 || v > 1))
    fail(field, 'a number between 0 and 1', v)
}

function freshId(old: string): string {
  const prefix = /^([A-Za-z]+[-_])/.exec(old)?.[1] ?? 'cache-'
  return prefix + randomBytes(12).toString('hex')
}

/** the options with defaults filled in; a wrong one fails here, naming the field */
function settle(options: SemanticCacheOptions) {
  const scope = options.scope ?? 'team'
  if (!['global', 'team', 'user'].includes(scope)) fail('scope', `'global', 'team' or 'user'`, scope)
  const ttlSeconds = options.ttlSeconds ?? 7 * 24 * 3600
  if (typeof ttlSeconds !== 'number' || !(ttlSeconds > 0)) fail('ttlSeconds', 'a positive number', options.ttlSeconds)
  const maxEntries = options.maxEntries ?? 100_000
  if (!Number.isInteger(maxEntries) || maxEntries < 1) fail('maxEntries', 'a positive integer', options.maxEntries)
  const candidates = options.candidates ?? 5
  if (!Number.isInteger(candidates) || candidates < 1) fail('candidates', 'a positive integer', options.candidates)
  const maxBatch = options.maxBatch ?? 16
  if (!Number.isInteger(maxBatch) || maxBatch < 1) fail('maxBatch', 'a positive integer', options.maxBatch)
  const lookupTimeoutMs = options.lookupTimeoutMs ?? 2000
  if (typeof lookupTimeoutMs !== 'number' || !(lookupTimeoutMs > 0) || lookupTimeoutMs === Infinity)
    fail('lookupTimeoutMs', 'a positive number of milliseconds', options.lookupTimeoutMs)
  const maxPromptChars = options.maxPromptChars ?? 200_000
  if (!Number.isInteger(maxPromptChars) || maxPromptChars < 1)
    fail('maxPromptChars', 'a positive integer', options.maxPromptChars)
  const retryWindowSeconds = options.retryWindowSeconds ?? 120
  if (typeof retryWindowSeconds !== 'number' || !Number.isFinite(retryWindowSeconds) || retryWindowSeconds < 0)
    fail('retryWindowSeconds', 'a number of seconds >= 0', options.retryWindowSeconds)
  if (options.cacheSampled !== undefined && typeof options.cacheSampled !== 'boolean')
    fail('cacheSampled', 'a boolean', options.cacheSampled)
  if (
    options.syncSeconds !== undefined &&
    (typeof options.syncSeconds !== 'number' || !Number.isFinite(options.syncSeconds) || options.syncSeconds < 0)
  )
    fail('syncSeconds', 'a number of seconds >= 0', options.syncSeconds)
  checkUnit('minSimilarity', options.minSimilarity)
  checkUnit('strictness', options.strictness)
  if (options.strictness !== undefined && options.strictness < 0)
    fail('strictness', 'a number between 0 and 1', options.strictness)
  if (options.prefix !== undefined && (typeof options.prefix !== 'string' || !/^[\w-]+$/.test(options.prefix)))
    fail('prefix', 'letters, digits, - or _', options.prefix)
  if (options.vetoes !== undefined && (typeof options.vetoes !== 'object' || options.vetoes === null))
    fail('vetoes', 'an object of booleans', options.vetoes)
  for (const [id, s] of Object.entries(options.perEmbedder ?? {})) {
    checkUnit(`perEmbedder.${id}.minSimilarity`, s?.minSimilarity)
    checkUnit(`perEmbedder.${id}.minScore`, s?.minScore)
    checkUnit(`perEmbedder.${id}.rolesMinScore`, s?.rolesMinScore)
  }
  return { scope, ttlSeconds, maxEntries, candidates, maxBatch, lookupTimeoutMs, maxPromptChars, retryWindowSeconds }
}

/** one semantic cache's state, shared by its hooks and the steps below */
interface SemanticState {
  options: SemanticCacheOptions
  settings: ReturnType<typeof settle>
  embedder: Embedder
  judge: Judge
  recent: RecentAnswers
  /** set once setup has rebuilt the index (or found storage down) */
  store?: SemanticStore
  /** a lookup failure is logged once */
  loadFailed: boolean
}

function judgeFor(options: SemanticCacheOptions, embedder: Embedder): Judge {
  const per = options.perEmbedder?.[embedder.id] ?? {}
  return createJudge(embedder.id, {
    minSimilarity: options.minSimilarity ?? per.minSimilarity,
    minScore: options.strictness ?? per.minScore,
    vetoes: { ...per.vetoes, ...options.vetoes },
    ...(per.rolesMinScore !== undefined ? { rolesMinScore: per.rolesMinScore } : {}),
  })
}

// The plugin: settled options, the store opened in setup, two hooks. Each step is a module
// function over the plugin's state (SemanticState).
export function semanticCache(options: SemanticCacheOptions = {}): SemanticCachePlugin {
  const settings = settle(options)
  const { scope, ttlSeconds, maxEntries, maxPromptChars, lookupTimeoutMs, retryWindowSeconds } = settings
  const embedder = resolveEmbedder(options.embedder)
  // fail at creation, not at the first request, if the shipped weights are missing
  const judge = judgeFor(options, embedder)
  const st: SemanticState = {
    options,
    settings,
    embedder,
    judge,
    recent: new RecentAnswers(retryWindowSeconds * 1000),
    loadFailed: false,
  }
  return definePlugin({
    name: NAME,
    options: {
      ...options,
      embedder: embedder.id,
      scope,
      ttlSeconds,
      maxEntries,
      maxPromptChars,
      lookupTimeoutMs,
      retryWindowSeconds,
      minSimilarity: judge.minSimilarity,
      strictness: judge.minScore,
      judgeModel: judge.modelName,
    },
    setup: (m: Mesh) => openStore(st, m),
    hooks: { cacheLookup: (ctx) => lookup(st, ctx), afterResponse: (ctx) => storeAnswer(st, ctx) },
    semantic: {
      get store() {
        return st.store
      },
      embedder,
      async flush() {
        await st.store?.flush()
      },
    },
  })
}

/** setup: the store, its index rebuilt from storage, the model warmed, sweeps and (on redis) sync */
async function openStore(st: SemanticState, m: Mesh): Promise<(() => Promise<void>) | undefined> {
  // CLI subcommands need neither the model (230 MB) nor the index
  if (m.mode === 'command') return
  const { options, embedder } = st
  const s = new SemanticStore({
    storage: m.storage,
    embedder,
    judge: st.judge,
    log: m.log,
    maxEntries: st.settings.maxEntries,
    ttlMs: st.settings.ttlSeconds * 1000,
    prefix: options.prefix ?? 'semantic',
    candidates: st.settings.candidates,
    maxBatch: st.settings.maxBatch,
    ...(m.changes ? { changes: m.changes } : {}),
  })
  const retry = await rebuildIndex(s, m, embedder.id)
  st.store = s
  if (options.warmup ?? true)
    embedder
      .load()
      .catch((err) =>
        m.log.warn('semantic-cache: embedder failed to load', { embedder: embedder.id, error: (err as Error).message }),
      )
  const sweep = setInterval(() => s.sweep(), 10 * 60_000)
  sweep.unref()
  const timers = retry ? [sweep, retry] : [sweep]
  const syncSeconds = options.syncSeconds ?? 5
  if (m.config.storage.driver === 'redis' && syncSeconds > 0) timers.push(startSync(s, m, syncSeconds))
  return async () => {
    for (const t of timers) clearInterval(t)
    // queued stores still need the model: the worker thread stops after them
    await s.flush()
    await embedder.close?.()
  }
}

/**
 * Loads the index from storage. Storage down at start (redis not up yet): serve with an empty
 * index and rebuild once it is back, rather than refuse to start; returns that retry's timer.
 */
async function rebuildIndex(s: SemanticStore, m: Mesh, embedderId: string): Promise<NodeJS.Timeout | undefined> {
  const rebuild = async () => {
    const r = await s.rebuild()
    if (r.loaded || r.corrupt) m.log.info('semantic-cache: index rebuilt from storage', { ...r, embedder: embedderId })
  }
  try {
    await rebuild()
    return undefined
  } catch (err) {
    if (!isStorageUnavailable(err)) throw err
    m.log.warn('semantic-cache: storage unavailable at start; the index is rebuilt when it returns', {
      error: (err as Error).message,
    })
    const retry: NodeJS.Timeout = setInterval(() => {
      rebuild().then(
        () => clearInterval(retry),
        () => {},
      )
    }, 5_000)
    retry.unref()
    return retry
  }
}

/** picks up what other instances stored (and deleted) every syncSeconds */
function startSync(s: SemanticStore, m: Mesh, syncSeconds: number): NodeJS.Timeout {
  let syncing = false
  const sync = setInterval(() => {
    if (syncing) return
    syncing = true
    s.refresh()
      .then((r) => {
        if (r.added || r.removed) m.log.debug('semantic-cache: synced with storage', r)
      })
      // an outage is logged once by the storage layer, not every syncSeconds here
      .catch((err) =>
        (isStorageUnavailable(err) ? m.log.debug : m.log.warn)('semantic-cache: sync with storage failed', {
          error: (err as Error).message,
        }),
      )
      .finally(() => {
        syncing = false
      })
  }, syncSeconds * 1000)
  sync.unref()
  return sync
}

/**
 * Is this request a retry of an answer served from a cache (this one, or an earlier cache that
 * said so in ctx.state.cacheRetry)? Then it goes upstream and its answer replaces the entry that served.
 */
function isRetry(st: SemanticState, ctx: MeshContext, meta: Looked): boolean {
  const key = retryKey(ctx, meta.partition, meta.text)
  const retryOf = ctx.state.cacheRetry ? '' : st.recent.retryOf(key)
  if (retryOf === undefined) return false
  meta.retryOf = retryOf
  st.recent.note(key)
  if (!ctx.state.cacheRetry) {
    ctx.state.cacheRetry = { by: NAME }
    ctx.headers['X-AgentMesh-Cache-Retry'] = '1'
    ctx.mesh.emit('cache_miss', { id: ctx.id, kind: 'semantic', reason: 'retry' })
  }
  return true
}

/** a dry run: would this request be taken for a retry (and so go upstream)? Nothing noted */
function wouldRetry(st: SemanticState, ctx: MeshContext, meta: Looked): boolean {
  return !ctx.state.cacheRetry && st.recent.retryOf(retryKey(ctx, meta.partition, meta.text)) !== undefined
}

/** why this request skips the semantic cache altogether (lookup and store), if it does */
function skipReason(st: SemanticState, ctx: MeshContext): string | undefined {
  if (st.options.cacheSampled === false && isSampled(ctx.prompt.params)) return 'sampled request (cacheSampled: false)'
  const max = st.settings.maxPromptChars
  // counted only up to the limit: a 9 MB prompt costs what a 200,000-character one does
  if (promptChars(ctx.prompt, max) > max) {
    ctx.mesh.log.debug('semantic-cache: skipped, prompt too long', { id: ctx.id, maxPromptChars: max })
    return `prompt longer than maxPromptChars (${max})`
  }
  return undefined
}

/** cacheLookup: the request's partition and text, a retry check, then a search and maybe a hit */
async function lookup(st: SemanticState, ctx: MeshContext): Promise<void> {
  // a stateful request's messages are not the whole question (Responses previous_response_id)
  if (!st.store || ctx.response || ctx.operation !== 'chat' || ctx.prompt.stateful || ctx.prompt.noCache) return
  if (ctx.cache.status === 'exact' || ctx.cache.status === 'semantic') return
  const cc = cacheControl(ctx.request.headers)
  if (cc.noStore) return
  const skipped = skipReason(st, ctx)
  if (skipped !== undefined) {
    ctx.meta[NAME] = { skipped } satisfies LookupMeta
    return
  }
  const part = partitionOf(ctx, st.settings.scope, st.embedder.id)
  if (!part.ok) return
  const meta: Looked = { partition: part.key, text: part.text, ...(part.hint !== undefined ? { hint: part.hint } : {}) }
  // a dry run looks but keeps nothing: no meta for afterResponse to store from, no retry noted
  const dry = isDryRun(ctx)
  if (!dry) ctx.meta[NAME] = meta
  if (cc.noCache) return
  if (dry ? wouldRetry(st, ctx, meta) : isRetry(st, ctx, meta)) return
  const result = await search(st, st.store, ctx, meta)
  if (!result) return
  if (!result.hit) {
    ctx.mesh.log.debug('semantic-cache: miss', { id: ctx.id, reason: result.reason })
    // only when a candidate was close enough to be judged: why it was refused is worth telling
    if (result.best !== undefined && !dry)
      ctx.mesh.emit('cache_miss', {
        id: ctx.id,
        kind: 'semantic',
        reason: result.reason,
        similarity: Math.round(result.best * 10_000) / 10_000,
      })
    return
  }
  if (!dry) st.recent.note(retryKey(ctx, meta.partition, meta.text), result.id)
  serveHit(ctx, result, dry)
}

/**
 * Embeds the text (waiting at most lookupTimeoutMs) and asks the store. Undefined when the
 * embedding came too late or the lookup failed: the request goes upstream as a miss.
 */
async function search(
  st: SemanticState,
  store: SemanticStore,
  ctx: MeshContext,
  meta: Looked,
): Promise<LookupResult | undefined> {
  const lookupTimeoutMs = st.settings.lookupTimeoutMs
  try {
    const embedding = store.embed(meta.text, 'lookup')
    // kept for the store; a failure is seen there or here, never left unhandled
    embedding.catch(() => {})
    meta.embedding = embedding
    const vector = await within(embedding, lookupTimeoutMs)
    if (!vector) {
      ctx.mesh.log.debug('semantic-cache: miss, the embedding took longer than lookupTimeoutMs', {
        id: ctx.id,
        lookupTimeoutMs,
      })
      return undefined
    }
    meta.vector = vector
    return await store.lookup(meta.partition, { text: meta.text, hint: meta.hint }, vector, {
      maxOutputTokens: ctx.prompt.maxTokens,
    })
  } catch (err) {
    if (!st.loadFailed)
      ctx.mesh.log.warn('semantic-cache: lookup failed, answering from upstream', { error: (err as Error).message })
    st.loadFailed = true
    return undefined
  }
}

/** a hit: said in ctx.cache, ctx.cost and the headers; answered unless this is a dry run's preview */
function serveHit(ctx: MeshContext, result: Extract<LookupResult, { hit: true }>, dry: boolean): void {
  const stored = result.entry.answer
  const answer: CanonicalAnswer = {
    ...stored,
    id: freshId(stored.id),
    toolCalls: stored.toolCalls.map((t) => ({ ...t })),
    usage: { ...stored.usage },
  }
  const similarity = Math.round(result.similarity * 10_000) / 10_000
  const savedTokens = stored.usage.inputTokens + stored.usage.outputTokens
  const savedUsd = ctx.mesh.pricing.cost(stored.model, stored.usage)
  ctx.cache.status = 'semantic'
  ctx.cache.similarity = similarity
  ctx.cache.savedTokens = savedTokens
  ctx.cache.key = result.id
  ctx.cost.savedUsd = savedUsd
  ctx.headers['X-AgentMesh-Similarity'] = similarity.toFixed(4)
  // a dry run's preview says what would be served; the answer itself is not
  if (dry) return
  ctx.answer = answer
  ctx.mesh.emit('cache_hit', { id: ctx.id, kind: 'semantic', similarity, savedTokens, savedUsd })
  ctx.response = { kind: 'answer', answer }
}

/** afterResponse: a fresh, complete, successful upstream answer is queued for the store */
async function storeAnswer(st: SemanticState, ctx: MeshContext): Promise<void> {
  const meta = ctx.meta[NAME] as LookupMeta | undefined
  const store = st.store
  if (!store || !meta || 'skipped' in meta) return
  if (ctx.status !== 200 || ctx.aborted || ctx.error || !ctx.answer) return
  if (ctx.cache.status !== 'miss' && ctx.cache.status !== 'bypass') return
  const a = ctx.answer
  if (a.stopReason === 'tool_calls' ? !(st.options.cacheToolCalls ?? false) : a.stopReason !== 'stop') return
  if (!a.text && !a.toolCalls.length) return
  // a retry's fresh answer replaces the one that was rejected (the same wording is replaced by insert())
  if (meta.retryOf) store.forget(meta.retryOf)
  store.enqueue(meta.partition, { text: meta.text, hint: meta.hint }, meta.vector ?? meta.embedding, a)
}

export default semanticCache
