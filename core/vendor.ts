// Shared shape of the HTTP vendors: where the key comes from, what is forwarded, how the body
// goes up unchanged unless a plugin changed it.
import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import { nodeResponseOf } from './client.ts'
import { cutString, stringifySliced, utf8Sliced } from './json-sliced.ts'
import { LARGE_BODY_CHARS, Slicer } from './slicer.ts'
import { chainChars } from './translate/chains.ts'
import type { Attempt, Mesh, MeshContext, Plugin, ProtocolName, UpstreamResponse, VendorConfig } from './types.ts'
import { callUpstream, UpstreamError } from './upstream.ts'

/** One key and/or base URL of a vendor; several spread the load and survive one's outage or rate limit. */
export interface Deployment {
  apiKey?: string
  /** the vendor's base URL for this deployment (default: the vendor's) */
  baseURL?: string
  /** share of the traffic relative to the others (default 1) */
  weight?: number
}

/** When a deployment is skipped: a 429, or `failures` failures (5xx, 401/403, timeouts, connection errors) within `windowMs`. */
export interface CooldownOptions {
  /** failures within the window that cool a deployment down (default 3) */
  failures?: number
  /** the window failures are counted in, ms (default 60 s) */
  windowMs?: number
  /** how long a deployment cools down when the vendor said nothing (no Retry-After), ms (default 30 s) */
  ms?: number
  /** the longest a Retry-After is honoured, ms (default 5 min) */
  maxMs?: number
}

export interface HttpVendorOptions extends VendorConfig {
  /** extra model ids for /v1/models and routing */
  models?: string[]
  /** several keys for the one base URL, equal weights (shorthand for `deployments`) */
  apiKeys?: string[]
  /** several keys and/or base URLs with weights; picked by weight and fewest requests in flight */
  deployments?: Deployment[]
  /** when a deployment of several is skipped, and for how long */
  cooldown?: CooldownOptions
}

export interface HttpVendorSpec {
  /** ctx.route.vendor; the built-in vendors' names also name their `vendors.<name>` config */
  name: string
  protocol: ProtocolName
  /** further protocols the vendor serves (OpenAI: the Responses API) */
  protocols?: ProtocolName[]
  /** forward requests the proxy does not govern (Responses retrieve, delete, cancel, input items) */
  forwardState?: boolean
  defaultBaseURL: string
  /** the environment variable with the key; none for servers that need none (a local Ollama) */
  keyEnv?: string
  /**
   * what happens without a configured key: 'forward' (default) spends the client's own key when
   * `forwardClientKeys` allows; 'none' calls without a key and never forwards the client's (a
   * client's OpenAI key must not reach another company's server)
   */
  withoutKey?: 'forward' | 'none'
  /** the base URL is used as given (OpenAI SDK style, `.../v1` included): paths are appended to it; default: a trailing /v1 or /v1beta is cut */
  baseAsGiven?: boolean
  handles: (model: string) => boolean
  models: string[]
  /** URL path and vendor-specific headers for one call */
  request: (ctx: MeshContext, key: string | undefined) => { path: string; headers: Record<string, string> }
  /** the embeddings endpoint; a function when it depends on the request (Gemini's model and method) */
  embeddingsPath?: string | ((ctx: MeshContext) => string)
  /** the vendor's token counting endpoint, used when a key is configured (the exact count) */
  countTokensPath?: string | ((ctx: MeshContext) => string)
  /** called before each call (after the route is known): per-request headers such as the unpriced-model note */
  beforeCall?: (ctx: MeshContext) => void
  /** the body's `model` when it is not the routed model (Azure's v1 API wants the deployment's name) */
  upstreamModel?: (ctx: MeshContext) => string
}

/**
 * The client's own credential in the header it came in (an OAuth `Authorization: Bearer` token,
 * how Claude subscriptions sign in, must stay a Bearer token), or from Gemini's `?key=`.
 */
export function clientCredential(ctx: MeshContext): { header: string; value: string } | undefined {
  const h = ctx.request.headers
  const auth = h.get('authorization')
  if (auth && /^Bearer\s+/i.test(auth) && !isVirtualKey(auth.replace(/^Bearer\s+/i, '')))
    return { header: 'authorization', value: auth }
  for (const header of ['x-api-key', 'x-goog-api-key']) {
    const v = h.get(header)
    if (v && !isVirtualKey(v)) return { header, value: v }
  }
  const q = ctx.request.search ? ctx.request.url.searchParams.get('key') : null
  return q && !isVirtualKey(q) ? { header: 'x-goog-api-key', value: q } : undefined
}

const isVirtualKey = (k: string) => k.trim().startsWith('am-')

// not forwarded: hop-by-hop and framing (the proxy's own connection to the vendor sets them),
// credentials (chosen below), browser context, and AgentMesh's own headers
const NOT_FORWARDED = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'accept-encoding',
  'expect',
  'authorization',
  'x-api-key',
  'x-goog-api-key',
  'cookie',
  'origin',
  'referer',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-real-ip',
])

/**
 * The client's request headers that go to the vendor unchanged: user-agent, x-stainless-*, betas,
 * versions, session ids and whatever a vendor adds next month. Read off Node's raw header list
 * when there is one (a flat array: no Headers iteration on the hot path).
 */
export function forwardedHeaders(ctx: MeshContext): Record<string, string> {
  const out: Record<string, string> = {}
  const raw = nodeResponseOf(ctx)?.req?.rawHeaders
  const add = (name: string, value: string) => {
    if (NOT_FORWARDED.has(name) || name.startsWith('x-agentmesh-') || name.startsWith('sec-')) return
    out[name] = out[name] === undefined ? value : `${out[name]}, ${value}`
  }
  if (raw) for (let i = 0; i + 1 < raw.length; i += 2) add(raw[i]!.toLowerCase(), raw[i + 1]!)
  else ctx.request.headers.forEach((value, name) => add(name, value))
  // a plugin's own headers for the vendor (otel's traceparent) replace the client's of that name
  const own = ctx.upstreamHeaders
  if (own) for (const k in own) out[k.toLowerCase()] = own[k]!
  return out
}

/** The client's query string for the vendor, without a `key` the vendor must not see. */
export function forwardedQuery(ctx: MeshContext): string {
  const search = ctx.request.search
  if (!search || !/[?&]key=/.test(search)) return search
  const params = new URLSearchParams(search)
  params.delete('key')
  const rest = params.toString()
  return rest ? `?${rest}` : ''
}

/** The body for the vendor; `model` is what its `model` field must say (Azure's v1 API: the deployment's name). */
export function upstreamBody(ctx: MeshContext, model = ctx.route.model): string {
  setUpstreamModel(ctx, model)
  return ctx.request.dirty ? JSON.stringify(ctx.request.body) : ctx.request.rawBody
}

function setUpstreamModel(ctx: MeshContext, model: string): void {
  if (model !== ctx.prompt.model && ctx.protocol !== 'gemini' && ctx.request.body?.model !== model) {
    ctx.request.body.model = model
    ctx.request.dirty = true
  }
}

// a body over LARGE_BODY_CHARS goes up as bytes made in slices of the event loop
const SLICE_MS = 10

/**
 * upstreamBody for a body of megabytes: the same bytes, as pieces made in slices of the event loop
 * (one JSON.stringify and one encoding of 10 MB held it for 30-200 ms each), with their length.
 */
export async function upstreamBodyPieces(
  ctx: MeshContext,
  model = ctx.route.model,
): Promise<{ pieces: Buffer[]; length: number } | undefined> {
  setUpstreamModel(ctx, model)
  const slicer = new Slicer(SLICE_MS)
  const text = ctx.request.dirty ? await stringifySliced(ctx.request.body, slicer) : cutString(ctx.request.rawBody)
  if (text === undefined) return undefined
  const pieces = await utf8Sliced(text, slicer)
  let length = 0
  for (const p of pieces) length += p.length
  return { pieces, length }
}

const pathFor = (path: string | ((ctx: MeshContext) => string), ctx: MeshContext) =>
  typeof path === 'string' ? path : path(ctx)

/** A deployment as the vendor code calls it: a base URL and the key for it. */
interface Target {
  base: string
  key: string | undefined
}

/**
 * A body of megabytes to send: the client's, or a Responses client's small turn expanded with the
 * chain of megabytes before it (only a Responses request has a chain: the others skip the lookup)
 */
function isLarge(ctx: MeshContext): boolean {
  const own = ctx.request.rawBody.length
  if (own > LARGE_BODY_CHARS) return true
  return ctx.protocol === 'responses' && own + chainChars(ctx.request) > LARGE_BODY_CHARS
}

export function defineHttpVendor(spec: HttpVendorSpec, options: HttpVendorOptions = {}): Plugin {
  const listed = deploymentList(spec.name, options)
  for (const url of [options.baseURL, ...listed.map((d) => d.baseURL)]) {
    if (url !== undefined && !/^https?:\/\//.test(url))
      throw new Error(`${spec.name}: baseURL must be an http(s) URL, got "${url}"`)
  }
  return {
    name: `vendor:${spec.name}`,
    enforce: 'post',
    options: shownOptions(spec, options, listed),
    setup(mesh: Mesh) {
      const conf = (mesh.config.vendors as Record<string, VendorConfig | undefined>)[spec.name] ?? {}
      const baseOf = (url: string) =>
        spec.baseAsGiven ? url.replace(/\/+$/, '') : url.replace(/\/+$/, '').replace(/\/v1(beta)?$/, '')
      const base = baseOf(
        options.baseURL ??
          conf.baseURL ??
          process.env[`AGENTMESH_${envName(spec.name)}_BASE_URL`] ??
          spec.defaultBaseURL,
      )
      const configured = options.apiKey ?? conf.apiKey ?? (spec.keyEnv ? process.env[spec.keyEnv] : undefined)
      const targets: Target[] = listed.map((d) => ({
        base: d.baseURL ? baseOf(d.baseURL) : base,
        key: d.apiKey ?? configured,
      }))
      // one deployment (the usual case) is called directly: no balancer on the hot path
      const single: Target = targets.length === 1 ? targets[0]! : { base, key: configured }
      const pool =
        targets.length > 1
          ? createBalancer(
              mesh,
              spec.name,
              targets.map((t, i) => ({ ...t, weight: listed[i]!.weight ?? 1 })),
              options.cooldown,
            )
          : undefined
      const models = [...spec.models, ...(options.models ?? [])]
      const forward = mesh.config.forwardClientKeys
      /** the client's headers, then the vendor's own (version, key) over them */
      const headersFor = (
        ctx: MeshContext,
        configuredKey: string | undefined,
      ): { key: string | undefined; headers: Record<string, string> } => {
        const headers = forwardedHeaders(ctx)
        if (configuredKey || spec.withoutKey === 'none') return { key: configuredKey, headers }
        if (!forward) {
          // a shared deployment never spends a client's own key, and never calls without one
          throw new UpstreamError(
            `no API key is configured for ${spec.name}: set ${spec.keyEnv ?? 'its apiKey option'} or vendors.${spec.name}.apiKey (this deployment does not forward clients' keys)`,
            503,
            'vendor_key_missing',
          )
        }
        const own = clientCredential(ctx)
        // a Bearer token (an OAuth one for a Claude subscription or Google) stays a Bearer
        // token; a plain key goes in the vendor's own key header
        if (own?.header === 'authorization') {
          headers.authorization = own.value
          return { key: undefined, headers }
        }
        return { key: own?.value, headers }
      }
      const callWith = (ctx: MeshContext, t: Target, path?: string): Promise<UpstreamResponse> => {
        spec.beforeCall?.(ctx)
        const { key, headers } = headersFor(ctx, t.key)
        const r = spec.request(ctx, key)
        Object.assign(headers, r.headers)
        headers['content-type'] ??= 'application/json'
        const url = t.base + (path ?? r.path)
        if (isLarge(ctx)) return callLarge(ctx, url, headers)
        return callUpstream(ctx, { url, headers, body: upstreamBody(ctx, spec.upstreamModel?.(ctx)) })
      }
      const callLarge = async (ctx: MeshContext, url: string, headers: Record<string, string>) => {
        const body = await upstreamBodyPieces(ctx, spec.upstreamModel?.(ctx))
        // pieces are sent one after the other, so the length is said up front
        if (body) headers['content-length'] = String(body.length)
        return callUpstream(ctx, { url, headers, body: body?.pieces })
      }
      const forwardAs = (ctx: MeshContext, t: Target, { method, path }: { method: string; path: string }) => {
        const { key, headers } = headersFor(ctx, t.key)
        Object.assign(headers, spec.request(ctx, key).headers)
        // a GET or DELETE has no body; a cancel's (usually none) goes as it came
        const body = ctx.request.rawBody || undefined
        if (body) headers['content-type'] ??= 'application/json'
        return callUpstream(ctx, { url: t.base + path, method, headers, body })
      }
      const via = pool
        ? (ctx: MeshContext, fn: (t: Target) => Promise<UpstreamResponse>) => pool.run(ctx, fn)
        : (_ctx: MeshContext, fn: (t: Target) => Promise<UpstreamResponse>) => fn(single)
      const embeddingsPath = spec.embeddingsPath
      const countPath = spec.countTokensPath
      mesh.registerVendor({
        name: spec.name,
        protocol: spec.protocol,
        protocols: spec.protocols,
        handles: (m) => spec.handles(m) || models.includes(m),
        models: () => models,
        call: pool ? (ctx) => pool.run(ctx, (t) => callWith(ctx, t)) : (ctx) => callWith(ctx, single),
        embeddings: embeddingsPath
          ? (ctx) => via(ctx, (t) => callWith(ctx, t, withQuery(pathFor(embeddingsPath, ctx), forwardedQuery(ctx))))
          : undefined,
        countTokens:
          countPath && (pool || single.key)
            ? (ctx) => via(ctx, (t) => callWith(ctx, t, withQuery(pathFor(countPath, ctx), forwardedQuery(ctx))))
            : undefined,
        forward: spec.forwardState ? (ctx, call) => via(ctx, (t) => forwardAs(ctx, t, call)) : undefined,
        targets: pool ? () => pool.targets() : undefined,
      })
    },
  }
}

/** a path that may have its own query (Azure's api-version), and the client's */
const withQuery = (path: string, query: string) =>
  query && path.includes('?') ? `${path}&${query.slice(1)}` : path + query

/** What a response says when its model has no price: the $0 is a missing price, not a free call. */
export const UNPRICED_HEADER = 'x-agentmesh-price'
export const UNPRICED_NOTE = 'none: counted as $0'

/** For vendors whose models may have no price (a local server): a call to one says so in X-AgentMesh-Price. */
export function noteUnpriced(ctx: MeshContext): void {
  if (!ctx.mesh.pricing.price(ctx.route.model)) ctx.headers[UNPRICED_HEADER] = UNPRICED_NOTE
}

/** `my-vendor` -> `MY_VENDOR`, for AGENTMESH_<NAME>_BASE_URL */
const envName = (name: string) => name.toUpperCase().replace(/[^A-Z0-9]/g, '_')

/** `deployments`, or `apiKeys` as deployments of the one base URL; [] for the plain single-key config. */
function deploymentList(vendor: string, options: HttpVendorOptions): Deployment[] {
  if (options.deployments !== undefined && options.apiKeys !== undefined)
    throw new Error(`${vendor}: give \`deployments\` or \`apiKeys\`, not both`)
  const list: Deployment[] | undefined = options.deployments ?? options.apiKeys?.map((apiKey) => ({ apiKey }))
  if (list === undefined) return []
  if (!Array.isArray(list) || list.length === 0)
    throw new Error(`${vendor}: \`deployments\` (or \`apiKeys\`) must be a non-empty array`)
  list.forEach((d, i) => {
    if (!d || typeof d !== 'object')
      throw new Error(`${vendor}: deployments[${i}] must be an object { apiKey?, baseURL?, weight? }`)
    if (d.apiKey !== undefined && (typeof d.apiKey !== 'string' || !d.apiKey))
      throw new Error(`${vendor}: deployments[${i}].apiKey must be a non-empty string`)
    if (d.weight !== undefined && !(typeof d.weight === 'number' && d.weight > 0 && Number.isFinite(d.weight)))
      throw new Error(`${vendor}: deployments[${i}].weight must be a positive number, got ${String(d.weight)}`)
  })
  return list
}

/** The options `agentmesh config` prints: deployments by their id (host and key fingerprint), never a key. */
function shownOptions(spec: HttpVendorSpec, options: HttpVendorOptions, listed: Deployment[]): Record<string, unknown> {
  const shown: Record<string, unknown> = { baseURL: options.baseURL, apiKey: options.apiKey, models: options.models }
  if (listed.length) {
    const base = options.baseURL ?? spec.defaultBaseURL
    shown.deployments = listed.map((d) => ({ id: deploymentId(d.baseURL ?? base, d.apiKey), weight: d.weight ?? 1 }))
  }
  if (options.cooldown) shown.cooldown = options.cooldown
  return shown
}

/**
 * How a deployment is named wherever it is shown (admin listing, events, `agentmesh config`): the
 * base URL's host and a short hash of its key. Never the key, nor any characters of it.
 */
export function deploymentId(baseURL: string, key: string | undefined): string {
  let host = baseURL
  try {
    host = new URL(baseURL).host
  } catch {}
  return key ? `${host}#${createHash('sha256').update(key).digest('hex').slice(0, 8)}` : host
}

// ---------------------------------------------------------------- several deployments

/** A deployment's health as `targets()` reports it. */
type DeploymentHealth = 'healthy' | 'cooldown' | 'half-open'

class DeploymentState implements Target {
  inFlight = 0
  state: DeploymentHealth = 'healthy'
  /** failures in the current window */
  failures = 0
  windowStart = 0
  cooldownUntil = 0
  /** when it went from healthy to cooling (epoch ms), for target_recovered's downMs */
  cooledAt = 0
  /** when its current cooldown began (epoch ms; a shared one's: when the instance that cooled it did) */
  coolStart = 0
  /** when it last recovered (epoch ms): a shared cooldown that began before is over */
  recoveredAt = 0
  /** the one request let through after a cooldown is on its way */
  probing = false
  latencyEwmaMs: number | undefined = undefined
  /** smooth weighted round robin's running score */
  current = 0
  /** redis: when the shared cooldown was last read, and the read in progress */
  syncedAt = 0
  syncing: Promise<void> | undefined = undefined
  constructor(
    readonly id: string,
    readonly base: string,
    readonly key: string | undefined,
    readonly weight: number,
  ) {}
}

/** Retry-After as ms: OpenAI's `retry-after-ms`, or `retry-after` in seconds or as an HTTP date. */
export function retryAfterMs(headers: Record<string, string> | undefined, now = Date.now()): number | undefined {
  const ms = Number(headers?.['retry-after-ms'])
  if (headers?.['retry-after-ms'] && Number.isFinite(ms) && ms >= 0) return ms
  const v = headers?.['retry-after']
  if (!v) return undefined
  const s = Number(v)
  if (Number.isFinite(s) && s >= 0) return s * 1000
  const at = Date.parse(v)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

const EWMA_ALPHA = 0.2
/** redis: the first read of a deployment's shared cooldown is awaited, this long at most */
const SHARED_READ_TIMEOUT_MS = 250

/**
 * A key's shared state in redis: a cooldown (until > 0, since when), or its end (until 0,
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

/** a call that failed before its first byte in a way another key may not: unreachable, reset, timed out */
const RETRIED_ERRORS = new Set(['upstream_unreachable', 'upstream_timeout', 'upstream_stream_error'])
const anotherKeyMayServe = (err: unknown) => err instanceof UpstreamError && RETRIED_ERRORS.has(err.type)

/**
 * Spreads one vendor's calls over its deployments: the least loaded by requests in flight per
 * unit of weight, ties broken by smooth weighted round robin (so sequential calls follow the
 * weights exactly). A 429 cools a deployment down until its Retry-After (or `ms`); `failures`
 * failures within `windowMs` do too. When the time is up, one request goes through as a probe
 * (half-open): success makes it healthy again, failure cools it down again. A call that one key
 * answers with 429 or 5xx, or that fails before its first byte (connection error, reset, timeout),
 * is made again at once with another free key (each key once per request), before anything
 * reached the client; other 4xx are the request's own and passed on. With redis storage the
 * cooldowns are shared by instances, and so is a key's recovery.
 */
function createBalancer(
  mesh: Mesh,
  vendor: string,
  targets: Array<Target & { weight: number }>,
  opts: CooldownOptions = {},
) {
  const limit = opts.failures ?? 3
  const windowMs = opts.windowMs ?? 60_000
  const coolMs = opts.ms ?? 30_000
  const maxMs = opts.maxMs ?? 300_000
  const shared = mesh.config.storage?.driver === 'redis'
  const syncMs = mesh.config.routing?.cooldown.syncMs ?? 1000
  const seen = new Set<string>()
  const list = targets.map((t, i) => {
    let id = deploymentId(t.base, t.key)
    if (seen.has(id)) id = `${id}~${i}`
    seen.add(id)
    return new DeploymentState(id, t.base, t.key, t.weight)
  })

  /** may be called now: healthy, or cooled and its one probe not yet out */
  const free = (d: DeploymentState, now: number) => d.state === 'healthy' || (now >= d.cooldownUntil && !d.probing)

  function pick(now: number, skip: DeploymentState[] | undefined): DeploymentState | undefined {
    let best: DeploymentState[] = []
    let bestLoad = Number.POSITIVE_INFINITY
    for (const d of list) {
      if (!free(d, now) || skip?.includes(d)) continue
      const load = d.inFlight / d.weight
      if (load < bestLoad) {
        bestLoad = load
        best = [d]
      } else if (load === bestLoad) best.push(d)
    }
    if (best.length <= 1) return best[0]
    let total = 0
    let chosen = best[0]!
    for (const d of best) {
      d.current += d.weight
      total += d.weight
      if (d.current > chosen.current) chosen = d
    }
    chosen.current -= total
    return chosen
  }

  function coolDown(d: DeploymentState, ms: number, reason: string, fromShared = false, since = Date.now()) {
    d.state = 'cooldown'
    d.probing = false
    d.cooldownUntil = Date.now() + Math.min(ms, maxMs)
    d.coolStart = since
    if (!d.cooledAt) d.cooledAt = Date.now()
    mesh.log.warn(`${vendor} deployment ${d.id} cools down for ${Math.ceil(Math.min(ms, maxMs) / 1000)} s: ${reason}`)
    // the attempt loop's events; a deployment serves every model of its vendor: '*'
    mesh.emit('target_cooldown', {
      target: `${vendor}/${d.id}`,
      vendor,
      model: '*',
      until: d.cooldownUntil,
      failures: d.failures,
      reason,
      ...(fromShared ? { shared: true } : {}),
    })
    if (shared && !fromShared) share(d, reason)
  }

  // ---- shared cooldowns (redis): written when one cools, read every syncMs before a call

  /** the deployment's id names it (host and a hash of its key), never the key itself */
  const keyOf = (d: DeploymentState) =>
    `routing:cooldown:deployment:${encodeURIComponent(vendor)}:${encodeURIComponent(d.id)}`

  function share(d: DeploymentState, reason: string): void {
    const value: SharedCooldown = {
      until: d.cooldownUntil,
      reason: reason.slice(0, 300),
      failures: d.failures,
      at: d.coolStart,
    }
    store(d, value, Math.ceil((d.cooldownUntil - Date.now()) / 1000))
  }

  /** a key that answered again: its cooldown ends for every instance (one that began later stays) */
  function shareRecovery(d: DeploymentState): void {
    const value: SharedCooldown = { until: 0, reason: 'recovered', failures: 0, recoveredAt: d.recoveredAt }
    // kept as long as any instance's copy of a cooldown that began before it can last
    store(d, value, Math.ceil(maxMs / 1000))
  }

  function store(d: DeploymentState, value: SharedCooldown, ttl: number): void {
    mesh.storage.setItem(keyOf(d), value as any, { ttl: Math.max(1, ttl) }).catch((err: Error) => {
      mesh.log.debug(`${vendor} deployment ${d.id}: state not shared: ${err.message}`)
    })
  }

  async function read(d: DeploymentState): Promise<void> {
    let v: SharedCooldown | null
    try {
      v = (await mesh.storage.getItem(keyOf(d))) as SharedCooldown | null
    } catch (err) {
      mesh.log.debug(`${vendor} deployment ${d.id}: shared cooldown not read: ${(err as Error).message}`)
      return
    }
    const now = Date.now()
    if (!v || typeof v.until !== 'number') return
    if (typeof v.recoveredAt === 'number') {
      // another instance's call on it succeeded after this cooldown began: it is over here too
      if (d.state !== 'healthy' && d.coolStart <= v.recoveredAt) recover(d, true)
      return
    }
    // a cooldown that began before this instance saw the key recover is over (its own, read back)
    if (v.until <= now || (typeof v.at === 'number' && v.at <= d.recoveredAt)) return
    if (d.state === 'healthy' || v.until > d.cooldownUntil)
      coolDown(d, v.until - now, `shared: ${String(v.reason)}`, true, typeof v.at === 'number' ? v.at : now)
  }

  /** each deployment's shared cooldown, read at most every syncMs; only the first read is awaited (briefly) */
  function sync(): Promise<void> | undefined {
    const now = Date.now()
    let first: Array<Promise<void>> | undefined
    for (const d of list) {
      if (!d.syncing && now - d.syncedAt >= syncMs) {
        d.syncing = read(d).finally(() => {
          d.syncing = undefined
          d.syncedAt = Date.now()
        })
      }
      if (d.syncedAt === 0 && d.syncing) (first ??= []).push(d.syncing)
    }
    if (!first) return undefined
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<void>((r) => (timer = setTimeout(r, SHARED_READ_TIMEOUT_MS)))
    return Promise.race([Promise.all(first), late]).then(() => clearTimeout(timer))
  }

  function failed(d: DeploymentState, reason: string, retryAfter?: number) {
    const now = Date.now()
    if (now - d.windowStart > windowMs) {
      d.windowStart = now
      d.failures = 0
    }
    d.failures++
    if (retryAfter !== undefined) coolDown(d, retryAfter, reason)
    else if (d.probing) coolDown(d, coolMs, `probe failed: ${reason}`)
    else if (d.failures >= limit)
      coolDown(d, coolMs, `${d.failures} failures within ${windowMs / 1000} s, the last: ${reason}`)
  }

  function succeeded(d: DeploymentState) {
    if (d.state !== 'healthy') recover(d, false)
  }

  function recover(d: DeploymentState, fromShared: boolean) {
    d.state = 'healthy'
    d.probing = false
    d.failures = 0
    d.windowStart = 0
    d.recoveredAt = Date.now()
    const downMs = d.cooledAt ? d.recoveredAt - d.cooledAt : 0
    d.cooledAt = 0
    mesh.log.info(
      `${vendor} deployment ${d.id} recovered after ${Math.round(downMs / 1000)} s${fromShared ? ' (on another instance)' : ''}`,
    )
    mesh.emit('target_recovered', { target: `${vendor}/${d.id}`, vendor, model: '*', downMs })
    if (shared && !fromShared) shareRecovery(d)
  }

  /** what an answer says about the deployment: a 429 cools it at once, 5xx and 401/403 count as failures */
  function judge(d: DeploymentState, res: UpstreamResponse) {
    const s = res.status
    if (s === 429) failed(d, 'rate limited (429)', retryAfterMs(res.headers) ?? coolMs)
    else if (s >= 500 || s === 401 || s === 403) failed(d, `status ${s}`)
    else succeeded(d)
  }

  /** one call on deployment d, its outcome counted for d's health */
  async function callOn(d: DeploymentState, fn: (t: Target) => Promise<UpstreamResponse>) {
    if (d.state !== 'healthy') {
      d.state = 'half-open'
      d.probing = true
    }
    d.inFlight++
    const started = performance.now()
    let res: UpstreamResponse
    try {
      res = await fn(d)
    } catch (err) {
      d.inFlight--
      const status = (err as UpstreamError).status
      // the client left: that says nothing about the deployment, and the probe is not spent
      if (status === 499 || !(err instanceof UpstreamError)) d.probing = false
      else failed(d, err.message)
      throw err
    }
    const ms = performance.now() - started
    d.latencyEwmaMs = d.latencyEwmaMs === undefined ? ms : d.latencyEwmaMs + EWMA_ALPHA * (ms - d.latencyEwmaMs)
    judge(d, res)
    // a stream is in flight until it ends or is torn down
    if (res.stream && typeof (res.body as Readable).once === 'function')
      (res.body as Readable).once('close', () => d.inFlight--)
    else d.inFlight--
    return { res, ms }
  }

  function allCooling(): UpstreamError {
    const next = Math.max(0, Math.min(...list.map((x) => x.cooldownUntil)) - Date.now())
    return new UpstreamError(
      `every deployment of ${vendor} is cooling down (the first is back in ${Math.ceil(next / 1000)} s)`,
      503,
      'vendor_cooling_down',
    )
  }

  return {
    async run(ctx: MeshContext, fn: (t: Target) => Promise<UpstreamResponse>): Promise<UpstreamResponse> {
      if (shared) {
        const synced = sync()
        if (synced) await synced
      }
      // the attempt loop (core/targets.ts) records the calls it makes; on the plain path this does
      const loop = ctx.attempts !== undefined
      let skip: DeploymentState[] | undefined
      let own: Attempt[] | undefined
      /** d failed in a way another key may not: if one is free, list the call and move on */
      const another = (d: DeploymentState, status: number, why: string, ms: number): boolean => {
        ;(skip ??= []).push(d)
        const now = Date.now()
        if (!list.some((x) => free(x, now) && !skip!.includes(x))) return false
        const a = attemptOf(ctx, vendor, status, `${why}: another key tried at once`, ms)
        if (loop) ctx.attempts!.push(a)
        else (own ??= []).push(a)
        return true
      }
      for (;;) {
        const d = pick(Date.now(), skip)
        if (!d) throw allCooling()
        const started = performance.now()
        let called: Awaited<ReturnType<typeof callOn>>
        try {
          called = await callOn(d, fn)
        } catch (err) {
          const why = String((err as Error).message).slice(0, 300)
          const ms = performance.now() - started
          // unreachable, reset or timed out before its first byte: nothing reached the client
          if (anotherKeyMayServe(err) && another(d, 0, `${why} (deployment ${d.id})`, ms)) continue
          // the list still says what was tried before
          if (own) listOwn(ctx, own, attemptOf(ctx, vendor, 0, why, ms))
          throw err
        }
        const { res, ms } = called
        // one key's rate limit or server error, nothing sent to the client yet (an error is
        // never a stream): another free key at once, each key once per request
        if ((res.status === 429 || res.status >= 500) && !res.stream) {
          if (another(d, res.status, `${res.status} from ${vendor} deployment ${d.id}`, ms)) continue
        }
        if (own)
          listOwn(
            ctx,
            own,
            attemptOf(ctx, vendor, res.status, res.status < 400 ? 'ok' : `${res.status} from ${vendor}`, ms),
          )
        return res
      }
    },
    targets() {
      const now = Date.now()
      return list.map((d) => ({
        id: `${vendor}/${d.id}`,
        state: d.state === 'cooldown' && now >= d.cooldownUntil ? 'half-open' : d.state,
        failures: d.failures,
        inFlight: d.inFlight,
        weight: d.weight,
        ...(d.latencyEwmaMs !== undefined ? { latencyEwmaMs: Math.round(d.latencyEwmaMs * 10) / 10 } : {}),
        ...(d.state !== 'healthy' && d.cooldownUntil > now ? { cooldownUntil: d.cooldownUntil } : {}),
      }))
    },
  }
}

/** the plain path: this request's calls, as the attempt loop would have listed them */
function listOwn(ctx: MeshContext, own: Attempt[], last: Attempt): void {
  own.push(last)
  ctx.attempts = own
  ctx.headers['x-agentmesh-attempts'] = String(own.length)
}

function attemptOf(ctx: MeshContext, vendor: string, status: number, outcome: string, ms: number): Attempt {
  return { vendor, model: ctx.route?.model ?? '', status, outcome, ms: Math.round(ms), called: true }
}
