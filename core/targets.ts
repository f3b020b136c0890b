// Targets: where a request may go and how each place is doing. A request's targets are its route
// and the route's fallbacks (ctx.route.fallbacks), tried in order (fastest first under
// `strategy: 'lowest-latency'`) until one answers. Per target (vendor/model) the proxy keeps the
// failures in a window, a cooldown with one half-open probe after it, a latency EWMA and the calls
// in flight; with redis storage the cooldowns are shared by instances. docs/routing.md has the rules.
//
// A request with one target and no retries takes the plain path (track/settle below): the same
// bookkeeping, a few field updates, no allocation.
import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import { clientGone, onClientGone } from './client.ts'
import { routingOf } from './config.ts'
import { ProtocolError } from './protocols/index.ts'
import type { CoreContext } from './respond.ts'
import { UpstreamError } from './upstream.ts'
import type { Attempt, Mesh, MeshResponse, ResolvedRoutingConfig } from './types.ts'

export type TargetStateName = 'healthy' | 'cooldown' | 'half-open'

/** One target's health. Fields, not getters: the plain path updates them on every call. */
export class TargetHealth {
  state: TargetStateName = 'healthy'
  /** failures counted in the window that started at windowStart */
  failures = 0
  windowStart = 0
  /** epoch ms; meaningful while not healthy */
  cooldownUntil = 0
  /** when it last went from healthy to cooling (epoch ms), for target_recovered's downMs */
  cooledAt = 0
  /** when its current cooldown began (epoch ms; a shared one's: when the instance that cooled it did) */
  coolStart = 0
  /** when it last recovered (epoch ms): a shared cooldown that began before is over */
  recoveredAt = 0
  reason = ''
  inFlight = 0
  latencyEwmaMs: number | undefined = undefined
  /** when a request last chose it (epoch ms): lowest-latency re-measures targets idle for a while */
  lastUsed = 0
  /** the half-open probe is out */
  probing = false
  calls = 0
  errors = 0
  lastError = ''
  /** redis: when the shared cooldown was last read, and the read in progress */
  syncedAt = 0
  syncing: Promise<void> | undefined = undefined
  readonly id: string
  /**
   * @param pooled the vendor balances several deployments (keys, base URLs) itself: a 429 is one
   * key's, not the model's, and another call may find a free deployment
   */
  constructor(
    readonly vendor: string,
    readonly model: string,
    readonly pooled = false,
  ) {
    this.id = `${vendor}/${model}`
  }
}

/** model names come from clients: the registry stays bounded, idle healthy targets make room */
const MAX_TARGETS = 1000
const EWMA_ALPHA = 0.3
/** under lowest-latency, a target not chosen for this long is tried once more, so a target that got faster wins its traffic back */
const LATENCY_REFRESH_MS = 10_000
/** a vendor's Retry-After is believed up to an hour */
const MAX_RETRY_AFTER_MS = 3_600_000
/** the first read of a shared cooldown is awaited, this long at most */
const SHARED_READ_TIMEOUT_MS = 250

const DEFAULT_ROUTING = routingOf({})

/**
 * A target's shared state in redis: a cooldown (until > 0, since when), or its end (until 0,
 * recoveredAt). Instances compare these times with their own clocks: skew between them shifts
 * when a recovery counts, by that skew at most.
 */
interface SharedCooldown {
  until: number
  reason: string
  failures: number
  at?: number
  recoveredAt?: number
}

export class Targets {
  #byVendor = new Map<string, Map<string, TargetHealth>>()
  #count = 0
  constructor(readonly mesh: Mesh) {}

  get config(): ResolvedRoutingConfig {
    // a config built by hand (not through resolveConfig) may lack it
    return this.mesh.config.routing ?? DEFAULT_ROUTING
  }

  /** the target's health record; a registry full of busy or cooling targets hands out an untracked one */
  get(vendor: string, model: string): TargetHealth {
    let models = this.#byVendor.get(vendor)
    const known = models?.get(model)
    if (known) return known
    const t = new TargetHealth(vendor, model, this.mesh.vendors.get(vendor)?.targets !== undefined)
    if (this.#count >= MAX_TARGETS && !this.#evict()) return t
    if (!models) this.#byVendor.set(vendor, (models = new Map()))
    models.set(model, t)
    this.#count++
    return t
  }

  list(): TargetHealth[] {
    const out: TargetHealth[] = []
    for (const models of this.#byVendor.values()) for (const t of models.values()) out.push(t)
    return out
  }

  #evict(): boolean {
    for (const [vendor, models] of this.#byVendor) {
      for (const [model, t] of models) {
        if (t.state !== 'healthy' || t.inFlight > 0) continue
        models.delete(model)
        if (!models.size) this.#byVendor.delete(vendor)
        this.#count--
        return true
      }
    }
    return false
  }

  // ---------------------------------------------------------------- the plain path

  /** a single call begins (a configured vendor only: a model nobody serves is not a target) */
  track(vendor: string, model: string): TargetHealth | undefined {
    if (!this.mesh.vendors.has(vendor)) return undefined
    const t = this.get(vendor, model)
    t.inFlight++
    return t
  }

  /** the call threw: a connection error or timeout counts against the target */
  threw(t: TargetHealth, err: unknown): void {
    t.inFlight--
    const v = verdictOfError(err)
    if (v.kind === 'retry') this.failed(t, v.why, v.status, undefined)
    else if (t.probing) t.probing = false
  }

  /** the call answered (ctx.response is set): counted, and a stream stays in flight until it closes */
  settled(t: TargetHealth, ctx: CoreContext, latencyMs: number | undefined): void {
    const res = ctx.response
    const v = res ? verdictOfResponse(res, ctx.route.vendor) : undefined
    if (v?.kind === 'retry') this.failed(t, v.why, v.status, v.retryAfterMs)
    else this.succeeded(t, latencyMs)
    if (res?.kind === 'upstream' && res.stream && typeof (res.body as Readable).once === 'function')
      this.#watchStream(t, ctx, res.body as Readable)
    else t.inFlight--
  }

  #watchStream(t: TargetHealth, ctx: CoreContext, body: Readable): void {
    body.once('close', () => {
      t.inFlight--
      // cut mid-stream by the vendor (not by a client that left): a failure of the target
      if (body.errored && !clientGone(ctx))
        this.failed(t, `stream failed midway (${body.errored.message})`, 502, undefined)
    })
  }

  // ---------------------------------------------------------------- health

  succeeded(t: TargetHealth, latencyMs: number | undefined): void {
    t.calls++
    if (latencyMs !== undefined)
      t.latencyEwmaMs =
        t.latencyEwmaMs === undefined ? latencyMs : t.latencyEwmaMs + EWMA_ALPHA * (latencyMs - t.latencyEwmaMs)
    if (t.state !== 'healthy') this.#recover(t)
  }

  /** a failure of the target (connection, timeout, 429, 5xx); may start a cooldown */
  failed(t: TargetHealth, why: string, status: number, retryAfterMs: number | undefined): void {
    const now = Date.now()
    const c = this.config.cooldown
    t.calls++
    t.errors++
    t.lastError = why
    if (t.state !== 'healthy') {
      // its probe, or a call made while it cooled because nothing else was left, failed
      if (t.probing || now >= t.cooldownUntil)
        this.#cool(t, now, Math.max(c.cooldownMs, retryAfterMs ?? 0), `probe failed: ${why}`)
      else if (retryAfterMs !== undefined && now + retryAfterMs > t.cooldownUntil) this.#cool(t, now, retryAfterMs, why)
      return
    }
    if (now - t.windowStart > c.windowMs) {
      t.windowStart = now
      t.failures = 0
    }
    t.failures++
    // a pooled vendor's 429 is one deployment's, which the vendor cools itself
    if (status === 429 && !t.pooled) this.#cool(t, now, retryAfterMs ?? c.cooldownMs, why)
    else if (t.failures >= c.failures)
      this.#cool(
        t,
        now,
        Math.max(c.cooldownMs, retryAfterMs ?? 0),
        `${t.failures} failure${t.failures === 1 ? '' : 's'} within ${c.windowMs} ms, the last: ${why}`,
      )
  }

  /** a probe ended without saying anything about the target (a 4xx of the request's own, a skip) */
  release(t: TargetHealth): void {
    t.probing = false
  }

  #cool(t: TargetHealth, now: number, ms: number, reason: string, shared = false, since = now): void {
    if (t.state === 'healthy') t.cooledAt = now
    t.state = 'cooldown'
    t.cooldownUntil = now + ms
    t.coolStart = since
    t.probing = false
    t.reason = reason
    this.mesh.emit('target_cooldown', {
      target: t.id,
      vendor: t.vendor,
      model: t.model,
      until: t.cooldownUntil,
      failures: t.failures,
      reason,
      ...(shared ? { shared } : {}),
    })
    if (!shared && this.#shared()) this.#write(t, ms)
  }

  /** back to healthy; with redis, for every instance (fromShared: another instance said so) */
  #recover(t: TargetHealth, fromShared = false): void {
    t.recoveredAt = Date.now()
    const downMs = t.recoveredAt - t.cooledAt
    t.state = 'healthy'
    t.failures = 0
    t.windowStart = 0
    t.cooldownUntil = 0
    t.probing = false
    t.reason = ''
    this.mesh.emit('target_recovered', { target: t.id, vendor: t.vendor, model: t.model, downMs })
    if (!fromShared && this.#shared()) {
      const value: SharedCooldown = { until: 0, reason: 'recovered', failures: 0, recoveredAt: t.recoveredAt }
      // kept as long as any instance's copy of a cooldown that began before it can last
      this.#store(t, value, Math.max(this.config.cooldown.cooldownMs, MAX_RETRY_AFTER_MS))
    }
  }

  /**
   * Whether a request may call t now: healthy, or cooled down and its half-open probe not yet out
   * (taken here: the caller makes the probe).
   */
  take(t: TargetHealth, now: number): boolean {
    if (t.state === 'healthy') return true
    if (now < t.cooldownUntil || t.probing) return false
    t.state = 'half-open'
    t.probing = true
    return true
  }

  stateOf(t: TargetHealth, now: number): TargetStateName {
    return t.state === 'cooldown' && now >= t.cooldownUntil ? 'half-open' : t.state
  }

  // ---------------------------------------------------------------- shared cooldowns (redis)

  #shared(): boolean {
    return this.mesh.config.storage.driver === 'redis'
  }

  #key(t: TargetHealth): string {
    const id = encodeURIComponent(t.vendor) + ':' + encodeURIComponent(t.model)
    // a client's model name can be long; the key stays short
    return 'routing:cooldown:' + (id.length <= 200 ? id : createHash('sha256').update(id).digest('hex'))
  }

  #write(t: TargetHealth, ms: number): void {
    const value: SharedCooldown = {
      until: t.cooldownUntil,
      reason: t.reason.slice(0, 300),
      failures: t.failures,
      at: t.coolStart,
    }
    this.#store(t, value, ms)
  }

  #store(t: TargetHealth, value: SharedCooldown, ms: number): void {
    this.mesh.storage
      .setItem(this.#key(t), value as any, { ttl: Math.max(1, Math.ceil(ms / 1000)) })
      .catch((err: Error) => {
        this.mesh.log.debug(`routing: state of ${t.id} not shared: ${err.message}`)
      })
  }

  /**
   * redis: these targets' shared cooldowns, each read at most every `cooldown.syncMs`. A target's
   * first read is awaited (briefly), later ones refresh in the background: the hot path never
   * waits for redis once a target is known.
   */
  sync(ts: TargetHealth[]): Promise<void> | undefined {
    if (!this.#shared()) return undefined
    const now = Date.now()
    let first: Array<Promise<void>> | undefined
    for (const t of ts) {
      if (!t.syncing && now - t.syncedAt >= this.config.cooldown.syncMs) {
        t.syncing = this.#read(t).finally(() => {
          t.syncing = undefined
          t.syncedAt = Date.now()
        })
      }
      if (t.syncedAt === 0 && t.syncing) (first ??= []).push(t.syncing)
    }
    if (!first) return undefined
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<void>((r) => (timer = setTimeout(r, SHARED_READ_TIMEOUT_MS)))
    return Promise.race([Promise.all(first), late]).then(() => clearTimeout(timer))
  }

  async #read(t: TargetHealth): Promise<void> {
    let v: SharedCooldown | null
    try {
      v = (await this.mesh.storage.getItem(this.#key(t))) as SharedCooldown | null
    } catch (err) {
      this.mesh.log.debug(`routing: shared cooldown of ${t.id} not read: ${(err as Error).message}`)
      return
    }
    const now = Date.now()
    if (!v || typeof v.until !== 'number') return
    if (typeof v.recoveredAt === 'number') {
      // another instance's call on it succeeded after this cooldown began: it is over here too
      if (t.state !== 'healthy' && t.coolStart <= v.recoveredAt) this.#recover(t, true)
      return
    }
    // a cooldown that began before this instance saw the target recover is over (its own, read back)
    if (v.until <= now || (typeof v.at === 'number' && v.at <= t.recoveredAt)) return
    if (t.state === 'healthy' || v.until > t.cooldownUntil)
      this.#cool(t, now, v.until - now, `shared: ${String(v.reason)}`, true, typeof v.at === 'number' ? v.at : now)
  }
}

const registries = new WeakMap<Mesh, Targets>()

/** the mesh's target registry, made on first use */
export function targetsOf(mesh: Mesh): Targets {
  let t = registries.get(mesh)
  if (!t) registries.set(mesh, (t = new Targets(mesh)))
  return t
}

/** GET /agentmesh/admin/targets: every target the proxy has called, and the vendors' own deployments */
export function targetsReport(mesh: Mesh): { targets: Array<Record<string, unknown>> } {
  const reg = targetsOf(mesh)
  const now = Date.now()
  const windowMs = reg.config.cooldown.windowMs
  const out: Array<Record<string, unknown>> = []
  for (const t of reg.list()) {
    const state = reg.stateOf(t, now)
    out.push({
      id: t.id,
      kind: 'model',
      vendor: t.vendor,
      model: t.model,
      state,
      failures: now - t.windowStart > windowMs ? 0 : t.failures,
      inFlight: t.inFlight,
      latencyEwmaMs: t.latencyEwmaMs === undefined ? null : Math.round(t.latencyEwmaMs * 10) / 10,
      ...(state !== 'healthy' ? { cooldownUntil: t.cooldownUntil, reason: t.reason } : {}),
      calls: t.calls,
      errors: t.errors,
      ...(t.lastError ? { lastError: t.lastError } : {}),
    })
  }
  for (const v of mesh.vendors.values()) {
    let deployments: ReturnType<NonNullable<typeof v.targets>> | undefined
    try {
      deployments = v.targets?.()
    } catch (err) {
      mesh.log.warn(`routing: ${v.name}.targets() failed: ${(err as Error).message}`)
    }
    for (const d of deployments ?? []) out.push({ ...d, kind: 'deployment', vendor: v.name })
  }
  return { targets: out }
}

// ---------------------------------------------------------------- outcomes

type Verdict =
  /** an answer to keep: success, or a 4xx that is the request's own */
  | { kind: 'answer' }
  /** a failure of the target before the first byte: another attempt may follow */
  | { kind: 'retry'; status: number; why: string; retryAfterMs?: number; timeout?: boolean }
  /** this target cannot serve this request (translation, no such vendor, no key): the next may */
  | { kind: 'skip'; why: string }
  /** nothing more to try (the client left, storage is down, a bug) */
  | { kind: 'stop' }

function verdictOfResponse(res: MeshResponse, vendor: string): Verdict {
  // kind 'error' here is a vendor's error translated into the client's protocol
  if (res.kind !== 'upstream' && res.kind !== 'error') return { kind: 'answer' }
  const status = res.status
  if (status !== 429 && status < 500) return { kind: 'answer' }
  return { kind: 'retry', status, why: `${status} from ${vendor}`, retryAfterMs: retryAfterOf(res.headers) }
}

function verdictOfError(err: unknown): Verdict {
  if (err instanceof UpstreamError) {
    if (err.status === 499) return { kind: 'stop' }
    // no key here, or every deployment of the vendor cooling: another target may serve
    if (err.type === 'vendor_key_missing' || err.type === 'vendor_cooling_down')
      return { kind: 'skip', why: err.message }
    return { kind: 'retry', status: 0, why: err.message, timeout: err.status === 504 }
  }
  if (err instanceof ProtocolError) return { kind: 'skip', why: err.message }
  return { kind: 'stop' }
}

/** Retry-After (seconds or an HTTP date) or OpenAI's retry-after-ms, in ms */
export function retryAfterOf(headers: Record<string, string> | undefined): number | undefined {
  if (!headers) return undefined
  const ms = headers['retry-after-ms']
  let v = ms !== undefined ? Number(ms) : undefined
  const ra = headers['retry-after']
  if ((v === undefined || !Number.isFinite(v)) && ra !== undefined) {
    v = /^\s*\d+(\.\d+)?\s*$/.test(ra) ? Number(ra) * 1000 : Date.parse(ra) - Date.now()
  }
  if (v === undefined || !Number.isFinite(v) || v < 0) return undefined
  return Math.min(Math.round(v), MAX_RETRY_AFTER_MS)
}

/** exponential, with "equal jitter": half the step fixed, half random, so instances do not retry in step */
export function backoffMs(cfg: ResolvedRoutingConfig, retry: number): number {
  const step = Math.min(cfg.maxBackoffMs, cfg.backoffMs * 2 ** retry)
  return Math.round(step / 2 + Math.random() * (step / 2))
}

// ---------------------------------------------------------------- the attempt loop

/** what each attempt starts from: the request as it was before the first (translation and calls change it) */
interface Snapshot {
  copy: unknown
  dirty: boolean
  usage: CoreContext['usage']
  translated: string | undefined
  dropped: string | undefined
}

const isPlain = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)

function snapshot(ctx: CoreContext): Snapshot {
  const body = ctx.request.body
  // top level only: what the core and vendors change in place is top-level (model, stream_options);
  // translation builds a new body and leaves the client's alone
  return {
    copy: isPlain(body) ? { ...body } : body,
    dirty: ctx.request.dirty,
    usage: ctx.usage,
    translated: ctx.headers['x-agentmesh-translated'],
    dropped: ctx.headers['x-agentmesh-translation-dropped'],
  }
}

/** ctx as the next attempt must see it: its target, and the request as it was before any attempt */
function prepare(ctx: CoreContext, s: Snapshot, t: TargetHealth, again: boolean): void {
  ctx.route.vendor = t.vendor
  ctx.route.model = t.model
  if (!again) return
  ctx.request.body = isPlain(s.copy) ? { ...s.copy } : s.copy
  ctx.request.dirty = s.dirty
  ctx.translation = undefined
  ctx.hideUsageChunk = false
  ctx.upstream = undefined
  ctx.answer = undefined
  ctx.response = undefined
  ctx.usage = s.usage
  setHeader(ctx, 'x-agentmesh-translated', s.translated)
  setHeader(ctx, 'x-agentmesh-translation-dropped', s.dropped)
}

function setHeader(ctx: CoreContext, name: string, value: string | undefined): void {
  if (value === undefined) delete ctx.headers[name]
  else ctx.headers[name] = value
}

/** the route and its fallbacks, each once, in the order they are tried */
function targetList(reg: Targets, ctx: CoreContext): TargetHealth[] {
  const r = ctx.route
  const out = [reg.get(r.vendor, r.model)]
  for (const f of r.fallbacks ?? []) {
    if (!f || typeof f.vendor !== 'string' || typeof f.model !== 'string') continue
    const t = reg.get(f.vendor, f.model)
    if (!out.includes(t)) out.push(t)
  }
  if (r.strategy === 'lowest-latency' && out.length > 1) {
    const now = Date.now()
    // unmeasured and long-unused targets first (to measure them), then the fastest; sort is stable
    const rank = (t: TargetHealth) =>
      t.latencyEwmaMs === undefined || now - t.lastUsed > LATENCY_REFRESH_MS ? -1 : t.latencyEwmaMs
    out.sort((a, b) => rank(a) - rank(b))
  }
  return out
}

/** wait ms, or less if the client leaves (then the request ends as a 499) */
function pause(ctx: CoreContext, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      off()
      resolve()
    }, ms)
    const off = onClientGone(ctx, () => {
      clearTimeout(timer)
      resolve()
    })
  }).then(() => {
    if (clientGone(ctx)) throw new UpstreamError('client closed the request', 499, 'client_closed_request')
  })
}

type Retry = Extract<Verdict, { kind: 'retry' }>

/** One request's attempts: what was tried, what failed and how. */
class AttemptRun {
  readonly attempts: Attempt[] = []
  readonly failures: Retry[] = []
  /** the last failed call of each target tried */
  readonly tried = new Map<TargetHealth, Verdict>()
  readonly skipped = new Set<TargetHealth>()
  calls = 0
  retries = 0
  touched = false
  firstSkip: unknown = undefined
  /** the last failed call's own answer or error, passed on as it is when it was the only call */
  last: { response?: MeshResponse; error?: unknown } | undefined = undefined
  constructor(
    readonly reg: Targets,
    readonly list: TargetHealth[],
  ) {}

  record(t: TargetHealth, status: number, outcome: string, ms: number, called: boolean): void {
    this.attempts.push({
      vendor: t.vendor,
      model: t.model,
      status,
      outcome: outcome.slice(0, 300),
      ms: Math.round(ms),
      called,
    })
  }

  /**
   * The next target and how long to wait first: a fresh one at once, else a retry after its
   * backoff. (A pooled target is not called again at once here: its vendor already tried each of
   * its free keys within the call.)
   */
  next(): { t: TargetHealth; waitMs: number } | undefined {
    const now = Date.now()
    const cooling: TargetHealth[] = []
    let fresh: TargetHealth | undefined
    for (const t of this.list) {
      if (this.tried.has(t) || this.skipped.has(t)) continue
      if (this.reg.take(t, now)) {
        fresh = t
        break
      }
      cooling.push(t)
    }
    // every target cools and none was called: the one back soonest is called anyway (a cooldown
    // steers traffic between targets; it does not refuse a request that has nowhere else to go)
    if (!fresh && this.calls === 0 && cooling.length)
      fresh = cooling.reduce((a, b) => (b.cooldownUntil < a.cooldownUntil ? b : a))
    for (const t of cooling) {
      if (t === fresh) continue
      this.skipped.add(t)
      this.record(
        t,
        0,
        `skipped: cooling down for ${Math.max(0, Math.ceil((t.cooldownUntil - now) / 1000))} s (${t.reason})`,
        0,
        false,
      )
    }
    if (fresh) return { t: fresh, waitMs: 0 }
    return this.retry()
  }

  /** a target that failed is called again, after its backoff or its Retry-After (up to the cap) */
  retry(): { t: TargetHealth; waitMs: number } | undefined {
    const cfg = this.reg.config
    if (this.retries >= cfg.retries) return undefined
    let best: { t: TargetHealth; waitMs: number } | undefined
    const backoff = backoffMs(cfg, this.retries)
    for (const [t, v] of this.tried) {
      if (v.kind !== 'retry' || (!t.pooled && (v.retryAfterMs ?? 0) > cfg.retryAfterCapMs)) continue
      // a pooled vendor's Retry-After is one deployment's: another may be free sooner
      const waitMs = t.pooled ? backoff : Math.max(backoff, v.retryAfterMs ?? 0)
      if (!best || waitMs < best.waitMs) best = { t, waitMs }
    }
    if (best) this.retries++
    return best
  }
}

/**
 * Call ctx's targets in turn until one answers. `call` makes one call at ctx.route (it sets
 * ctx.response or throws). Retried: connection errors, timeouts before the first byte, 429, 5xx.
 * Kept: any answer, and any other 4xx. A target that cannot serve the request (a feature its
 * protocol lacks, no key) is skipped. When nothing answers: the one call's own error if there was
 * one call only, else a 502/503/504 naming each attempt.
 */
export async function runAttempts(reg: Targets, ctx: CoreContext, call: () => Promise<void>): Promise<void> {
  const list = targetList(reg, ctx)
  const routed = { vendor: ctx.route.vendor, model: ctx.route.model }
  const snap = snapshot(ctx)
  const run = new AttemptRun(reg, list)
  ctx.attempts = run.attempts
  const synced = reg.sync(list)
  if (synced) await synced
  for (let next = run.next(); next; next = run.next()) {
    const t = next.t
    if (next.waitMs > 0) await pause(ctx, next.waitMs)
    prepare(ctx, snap, t, run.touched)
    run.touched = true
    t.inFlight++
    t.lastUsed = Date.now()
    const started = performance.now()
    const listed = run.attempts.length
    let thrown: unknown
    let v: Verdict
    try {
      await call()
      v = ctx.response ? verdictOfResponse(ctx.response, t.vendor) : { kind: 'answer' }
    } catch (err) {
      thrown = err
      v = verdictOfError(err)
    }
    // calls a vendor with several keys made within this one (a key's 429, another key at once)
    run.calls += run.attempts.length - listed
    const ms = performance.now() - started
    if (v.kind === 'answer') {
      run.calls++
      run.record(t, statusOf(ctx.response), 'ok', ms, true)
      reg.settled(t, ctx, ctx.upstream?.latencyMs ?? ms)
      answered(ctx, run, t, list[0]!)
      return
    }
    t.inFlight--
    if (v.kind === 'stop') {
      reg.release(t)
      throw thrown
    }
    if (v.kind === 'skip') {
      reg.release(t)
      run.firstSkip ??= thrown
      run.tried.set(t, v)
      run.record(t, 0, `skipped: ${v.why}`, ms, false)
      continue
    }
    run.calls++
    reg.failed(t, v.why, v.status, v.retryAfterMs)
    run.tried.set(t, v)
    run.failures.push(v)
    run.record(t, v.status, v.why, ms, true)
    run.last = thrown !== undefined ? { error: thrown } : { response: ctx.response }
    ctx.response = undefined
  }
  ctx.route.vendor = routed.vendor
  ctx.route.model = routed.model
  nothingAnswered(ctx, run)
}

const statusOf = (res: MeshResponse | undefined): number => (res && 'status' in res ? res.status : 200)

function answered(ctx: CoreContext, run: AttemptRun, t: TargetHealth, first: TargetHealth): void {
  ctx.headers['x-agentmesh-attempts'] = String(run.calls)
  if (t !== first) ctx.headers['x-agentmesh-fallback-from'] = first.id
}

/** every target failed or was skipped: one error that names each attempt */
function nothingAnswered(ctx: CoreContext, run: AttemptRun): void {
  ctx.headers['x-agentmesh-attempts'] = String(run.calls)
  // one call and nothing else tried: the vendor's own answer, as a request without fallbacks gets it
  if (run.calls === 1 && run.attempts.length === 1 && run.last) {
    if (run.last.error !== undefined) throw run.last.error
    ctx.response = run.last.response
    return
  }
  if (run.calls === 0)
    throw run.firstSkip ?? new UpstreamError('no target could be called for this request', 502, 'all_targets_failed')
  const f = run.failures
  const status = f.every((x) => x.timeout)
    ? 504
    : f.every((x) => x.status === 429 || x.status === 503 || x.status === 529)
      ? 503
      : 502
  const named = run.attempts.map(
    (a, i) => `${i + 1}) ${a.vendor}/${a.model}: ${a.outcome}${a.called ? ` (${a.ms} ms)` : ''}`,
  )
  const message = `no target answered (${run.calls} call${run.calls === 1 ? '' : 's'}): ${named.join('; ')}`
  const now = Date.now()
  const back = Math.min(...run.list.map((t) => (t.state === 'healthy' ? Number.POSITIVE_INFINITY : t.cooldownUntil)))
  const headers =
    status === 503 && Number.isFinite(back)
      ? { 'retry-after': String(Math.max(1, Math.ceil((back - now) / 1000))) }
      : undefined
  ctx.response = { kind: 'error', status, type: 'all_targets_failed', message, ...(headers ? { headers } : {}) }
}
