// The typed surface every plugin sees. Plugins read and write one MeshContext per request;
// they never import each other.
import type { Readable } from 'node:stream'
import type { Storage } from 'unstorage'
import type { PresetName } from './presets.ts'

export type ProtocolName = 'openai' | 'anthropic' | 'gemini' | 'responses'
export type Operation = 'chat' | 'count_tokens' | 'embeddings'
export type HookName = 'beforeRequest' | 'cacheLookup' | 'route' | 'afterResponse'

/** One message of the canonical view. `text` is what governance reads (normalise, embed, count). */
export interface CanonicalMessage {
  /** 'system': a system message mid-conversation (Anthropic's `mid-conversation-system` beta) */
  role: 'user' | 'assistant' | 'tool' | 'system'
  text: string
  /** tool calls / tool results / images flattened to a stable string for hashing, not for display */
  extra?: string
}

/** The protocol-neutral view of a request, used for governance. The original body is what goes upstream. */
export interface Prompt {
  /** model as the client asked for it */
  model: string
  system: string
  messages: CanonicalMessage[]
  tools?: unknown
  toolChoice?: unknown
  responseFormat?: unknown
  /** sampling and output parameters that change the answer (temperature, top_p, stop, seed, n, ...) */
  params: Record<string, unknown>
  stream: boolean
  maxTokens?: number
  hasImages: boolean
  /**
   * the request continues a conversation the vendor keeps (Responses `previous_response_id`,
   * `conversation`): its messages are not the whole question, so no semantic match is sound
   */
  stateful?: boolean
  /**
   * why no cache may answer or keep this request, set by the core (a `previous_response_id` whose
   * chain the proxy did not store for this team); caches bypass when it is set
   */
  noCache?: string
}

/**
 * Token usage in the vendor's own terms: for OpenAI and Gemini `inputTokens` includes
 * `cacheReadTokens`; for Anthropic it does not (cache reads and writes are counted apart).
 * core/pricing.ts prices each accordingly.
 */
export interface Usage {
  inputTokens: number
  outputTokens: number
  cacheReadTokens: number
  cacheWriteTokens: number
  /** true while the numbers are an estimate made before the call */
  estimated?: boolean
}

export interface ToolCall {
  id: string
  name: string
  /** JSON text of the arguments */
  arguments: string
}

/** A complete answer in neutral form: what caches store and what any protocol can render. */
export interface CanonicalAnswer {
  id: string
  model: string
  text: string
  toolCalls: ToolCall[]
  /** neutral stop reason: stop | length | tool_calls | content_filter */
  stopReason: 'stop' | 'length' | 'tool_calls' | 'content_filter'
  usage: Usage
  /**
   * The vendor's own answer body (a stream is rebuilt into it), kept so that a cached answer is
   * replayed to a client of the same protocol exactly as the vendor gave it: thinking blocks,
   * signatures, citations, unknown block types and the original usage survive. The neutral fields
   * above serve governance and clients of another protocol.
   */
  raw?: { protocol: ProtocolName; body: Record<string, any> }
}

export interface Identity {
  team: string
  user: string
  tool: string
  /** id of the virtual key that authenticated the request, never the key itself */
  keyId?: string
  source: 'header' | 'key' | 'default'
}

export type CacheStatus = 'exact' | 'semantic' | 'miss' | 'bypass'

/**
 * What a plugin sets to end the request. Plain data, so `ctx.response !== undefined` is the test
 * the core uses to stop the chain.
 */
export type MeshResponse =
  /** an error in the client's protocol error shape */
  | { kind: 'error'; status: number; type: string; message: string; headers?: Record<string, string> }
  /** a JSON body sent as is (e.g. a dry-run estimate, count_tokens) */
  | { kind: 'json'; status: number; body: unknown; headers?: Record<string, string> }
  /** a complete answer rendered in the client's protocol, streamed if the client asked to stream */
  | { kind: 'answer'; answer: CanonicalAnswer; headers?: Record<string, string> }
  /** a raw upstream response; the core passes it through (and taps it if it is a stream) */
  | { kind: 'upstream'; status: number; headers: Record<string, string>; body: Readable | Buffer; stream: boolean }

export interface RequestInfo {
  method: string
  path: string
  /** the query string with its '?', '' when there is none */
  search: string
  /** built on first read */
  url: URL
  headers: Headers
  /** parsed JSON body; plugins that change it must set `dirty` so the core re-serialises it */
  body: any
  rawBody: string
  dirty: boolean
}

export interface MeshContext {
  id: string
  /** performance.now() at arrival */
  startedAt: number
  time: Date
  protocol: ProtocolName
  operation: Operation
  request: RequestInfo
  identity: Identity
  prompt: Prompt
  /**
   * cache-key view of the prompt, set by the normalise plugin; never sent upstream.
   * Cache plugins fall back to `prompt` when it is absent.
   */
  normalised?: { system: string; messages: CanonicalMessage[] }
  /**
   * vendor and model that will answer; plugins in `route` may change it. `fallbacks`: further
   * targets tried in order when this one fails before its first byte; `strategy: 'lowest-latency'`
   * treats this target and its fallbacks as equals and tries the fastest first (docs/routing.md).
   * After the call it names the target that answered (what quota and audit settle on).
   */
  route: {
    vendor: string
    model: string
    reason?: string
    fallbacks?: Array<{ vendor: string; model: string }>
    strategy?: 'ordered' | 'lowest-latency'
  }
  /** estimated before the call, actual after it */
  usage: Usage
  cost: { usd: number; savedUsd: number; estimated: boolean }
  cache: { status: CacheStatus; similarity?: number; key?: string; savedTokens?: number; namespace?: string }
  /** extra governance headers for the response, set by plugins (`X-AgentMesh-*`) */
  headers: Record<string, string>
  response?: MeshResponse
  /** the complete answer once known (cache hit, upstream body, or a finished stream) */
  answer?: CanonicalAnswer
  upstream?: { status: number; latencyMs: number }
  /**
   * the upstream calls made for this request when it had fallbacks or retries (core/targets.ts),
   * in order, the last one the answer's: target, HTTP status (0: no answer), why it failed
   */
  attempts?: Attempt[]
  /**
   * headers a plugin sends to the vendor on this request, replacing the client's of the same name
   * (otel's traceparent naming the proxy's own span); the client's own headers are never rewritten
   */
  upstreamHeaders?: Record<string, string>
  /** set when the request failed; what afterResponse plugins (audit, quota) see */
  error?: { status: number; type: string; message: string; plugin?: string }
  /** final HTTP status sent to the client (set by the core before afterResponse) */
  status?: number
  /** true when a stream ended early (client disconnect or upstream error) */
  aborted?: boolean
  /** what plugins publish for one another on this request, typed where each is declared (see MeshState) */
  state: MeshState
  /** a plugin's own per-request scratch space, namespaced by plugin name by convention */
  meta: Record<string, any>
  /**
   * set by a plugin (masking) to rewrite the answer text the client receives: whole answers, and
   * streamed text and tool-argument deltas (JSON text: keep it valid), one rewriter per text stream.
   * What the core keeps (ctx.answer, caches, the audit) stays the vendor's own text.
   */
  answerText?: { open(): AnswerTextRewriter }
  signal: AbortSignal
  mesh: Mesh
}

/** One upstream call of a request with fallbacks or retries. */
export interface Attempt {
  vendor: string
  model: string
  /** the vendor's status; 0 when it never answered (connection error, timeout) */
  status: number
  /** 'ok', or why it failed / was skipped ('500 from the vendor', 'timed out', 'cooling down until ...') */
  outcome: string
  /** time to the answer (or the failure) */
  ms: number
  /** false: skipped without a call (cooling down, cannot be translated, no such vendor) */
  called: boolean
}

/** Rewrites one text stream; may hold back a tail that the next delta could complete. */
export interface AnswerTextRewriter {
  rewrite(delta: string): string
  /** the end of the text: what is still held back */
  flush(): string
}

export type Hook = (ctx: MeshContext) => void | Promise<void>

export interface PluginHooks {
  beforeRequest?: Hook
  cacheLookup?: Hook
  route?: Hook
  afterResponse?: Hook
}

/** A CLI subcommand a plugin contributes, e.g. `keys create`; run with a mesh that does not listen. */
export interface PluginCommand {
  /**
   * cac command syntax: one command word, then args, e.g. 'grant' or 'keys <action> [id]'
   * (cac matches on the first word only, so sub-commands are an `<action>` argument)
   */
  name: string
  description: string
  options?: Array<{ flags: string; description: string; default?: unknown }>
  run: (input: {
    mesh: Mesh
    args: string[]
    options: Record<string, any>
    print: (line: string) => void
  }) => Promise<number | void> | number | void
}

export interface Plugin {
  name: string
  enforce?: 'pre' | 'post'
  /** called once at start; may register vendors, routes, an identity resolver, or return a disposer */
  setup?: (mesh: Mesh) => void | (() => void | Promise<void>) | Promise<void | (() => void | Promise<void>)>
  hooks?: PluginHooks
  /** options as given, for `agentmesh config` (secrets are masked there) */
  options?: Record<string, unknown>
  /** CLI subcommands this plugin adds */
  commands?: PluginCommand[]
}

/** What a vendor returns: the raw upstream response, not yet read. */
export interface UpstreamResponse {
  status: number
  headers: Record<string, string>
  body: Readable | Buffer
  stream: boolean
}

export interface Vendor {
  /** vendor name used in ctx.route.vendor: openai | anthropic | google | demo | ... */
  name: string
  /** the wire protocol the vendor speaks; 'any' for vendors that answer in every protocol (demo) */
  protocol: ProtocolName | 'any'
  /** further protocols it speaks natively (OpenAI: Responses besides Chat Completions) */
  protocols?: ProtocolName[]
  /** models this vendor answers for, used by the default route; a predicate or prefix list */
  handles: (model: string) => boolean
  /** model list for GET /v1/models */
  models?: () => string[]
  /**
   * Make the call for ctx (same protocol as the client unless a router translated it) and
   * return the upstream response, or an answer for vendors that do not speak HTTP (demo).
   */
  call: (ctx: MeshContext) => Promise<UpstreamResponse | CanonicalAnswer>
  /** embeddings pass-through, OpenAI shape */
  embeddings?: (ctx: MeshContext) => Promise<UpstreamResponse>
  /** the vendor's own token count for a request (Anthropic count_tokens), where it has one and a key for it */
  countTokens?: (ctx: MeshContext) => Promise<UpstreamResponse>
  /**
   * a request the proxy does not govern, passed to the vendor as it came (the Responses API's
   * retrieve, delete, cancel and input items): method and path with the client's query
   */
  forward?: (ctx: MeshContext, call: { method: string; path: string }) => Promise<UpstreamResponse>
  /**
   * the vendor's own deployments (keys, base URLs) and their health, for
   * `GET /agentmesh/admin/targets`; vendors with one deployment leave it out
   */
  targets?: () => Array<{
    id: string
    state: string
    failures: number
    inFlight: number
    latencyEwmaMs?: number
    cooldownUntil?: number
  }>
}

export type IdentityResolver = (ctx: MeshContext) => Identity | MeshResponse | Promise<Identity | MeshResponse>

/**
 * What one plugin publishes for others on a request (the quota decision the audit log records, a
 * cache's verdict), one optional field per plugin, declared by the plugin that writes it, as h3's
 * H3EventContext is:
 *
 *   declare module 'agentmesh' { interface MeshState { quota?: QuotaDecision } }
 *
 * (inside this repository: `declare module '../../core/types.ts'`). A reader then gets the type
 * without importing the writer: plugins never import each other.
 */
// biome-ignore lint/suspicious/noEmptyInterface: filled by declaration merging
export interface MeshState {}

/** The events and their payloads; a plugin adds its own by augmenting this interface, as MeshState. */
export interface MeshEvents {
  request: { id: string; identity: Identity; protocol: ProtocolName; model: string; stream: boolean }
  cache_hit: { id: string; kind: 'exact' | 'semantic'; similarity?: number; savedTokens: number; savedUsd: number }
  /** kind: which cache missed; reason: why, when it is worth saying ('roles differ', 'retry', 'no-cache') */
  cache_miss: { id: string; kind?: 'exact' | 'semantic'; reason?: string; similarity?: number }
  llm_call: {
    id: string
    vendor: string
    model: string
    status: number
    latencyMs: number
    usage: Usage
    costUsd: number
    stream: boolean
  }
  /**
   * A request's outcome, once it is known: for a whole body as it is sent, for a stream at its end
   * (or when it failed or the client left), with the usage and cost that were settled, so one
   * event says everything a summary needs (the dashboard reads it alone). `latencyMs`: until the
   * body was sent or the stream ended. `model` is the one that answered, `requested` the client's.
   */
  response: {
    id: string
    status: number
    cache: CacheStatus
    latencyMs: number
    identity: Identity
    protocol: ProtocolName
    stream: boolean
    requested: string
    vendor: string
    model: string
    tokens: number
    usage: Usage
    costUsd: number
    /** what answering from a cache saved (its `cache_hit` says the same; 0 when no cache answered) */
    savedUsd: number
    /** a vendor was asked (false: answered from a cache, or refused before any vendor was) */
    vendorCalled: boolean
    /** the vendor's time to answer (to its headers), over HTTP */
    upstreamMs?: number
    /** a stream that did not complete (the vendor's failed, or the client left) */
    aborted?: true
  }
  /**
   * The sums of a team's responses that a live view asking `?fold=N` was not sent one by one (past
   * N requests in one flush of the event stream): what its counters add up. Made by the stream,
   * never emitted on the bus.
   */
  responses_folded: {
    identity: { team: string }
    requests: number
    /** responses with a status of 400 or more */
    errors: number
    /** input + output */
    tokens: number
    usd: number
    /** what the exact and semantic hits among them saved */
    savedUsd: number
    /** responses that looked in a cache (cache status other than bypass) */
    lookups: number
    /** exact and semantic hits; vendor: answers with prompt-cache reads */
    hits: { exact: number; semantic: number; vendor: number }
    vendorCalls: number
  }
  error: { id: string; status: number; type: string; message: string; plugin?: string }
  config_reload: { plugins: string[] }
  /**
   * a target (vendor/model) is skipped by requests with fallbacks until `until` (epoch ms): it
   * answered 429, or failed `failures` times in the window, or its half-open probe failed;
   * `shared`: another instance put it there (redis storage)
   */
  target_cooldown: {
    target: string
    vendor: string
    model: string
    until: number
    failures: number
    reason: string
    shared?: boolean
  }
  /** a target's half-open probe (or any call) succeeded after a cooldown */
  target_recovered: { target: string; vendor: string; model: string; downMs: number }
  [custom: `x-${string}`]: Record<string, unknown>
}
export type MeshEventName = keyof MeshEvents
/** `id`: the bus's sequence number, what SSE clients resume from with Last-Event-ID */
export interface MeshEvent<K extends MeshEventName = MeshEventName> {
  id?: number
  type: K
  time: number
  data: MeshEvents[K]
}

export interface Logger {
  info: (msg: string, data?: Record<string, unknown>) => void
  warn: (msg: string, data?: Record<string, unknown>) => void
  error: (msg: string, data?: Record<string, unknown>) => void
  debug: (msg: string, data?: Record<string, unknown>) => void
}

/** Atomic counters: unstorage has no increment, so quota and rate limits use this. */
export interface Counters {
  /** add delta to key and return the new value; ttlSeconds sets expiry when the key is created */
  incr(key: string, delta: number, ttlSeconds?: number): Promise<number>
  get(key: string): Promise<number>
  /**
   * Atomically add delta to every key only if, for each i, value(keys[i]) + delta <= limits[i].
   * Returns ok and the values after (ok) or before (refused).
   */
  reserve(
    keys: string[],
    delta: number,
    limits: number[],
    ttlSeconds: number[],
  ): Promise<{ ok: boolean; values: number[] }>
  del(key: string): Promise<void>
}

/**
 * What changed lately in storage that several instances share (redis): ids recorded as stored or
 * deleted, kept for `retentionMs`, so an instance catches up by reading the changes instead of
 * listing every key. Absent on memory and fs storage, which one process owns.
 */
export interface ChangeFeed {
  readonly retentionMs: number
  /** record that `id` of `feed` was stored or deleted, now */
  record(feed: string, id: string, kind: 'set' | 'del'): Promise<void>
  /** changes recorded at or after `fromMs` (epoch ms, by the recording instance's clock), oldest first */
  since(feed: string, fromMs: number): Promise<Array<{ id: string; kind: 'set' | 'del'; at: number }>>
}

export interface TokenCounter {
  /** input tokens of a request, estimated before the call for the model that will answer */
  estimateInput(prompt: Prompt, model: string): number
  /** the same number, with the tokenizer's work given the event loop back every few ms (large prompts) */
  estimateInputAsync(prompt: Prompt, model: string): Promise<number>
  /** tokens of a text for a model */
  count(text: string, model: string): number
  /** the same number, the tokenizer's work giving the event loop back every few ms (a text of megabytes) */
  countAsync?(text: string, model: string): Promise<number>
}

export interface ModelPrice {
  /** USD per million tokens */
  input: number
  output: number
  cacheRead?: number
  cacheWrite?: number
}

export interface Pricing {
  /** USD for usage answered by model; unknown models cost 0 and are reported once in the log */
  cost(model: string, usage: Usage): number
  price(model: string): ModelPrice | undefined
}

export interface Mesh {
  /** 'serve' when handling HTTP, 'command' inside a CLI subcommand (plugins skip heavy start-up work) */
  mode: 'serve' | 'command'
  config: ResolvedMeshConfig
  tokens: TokenCounter
  pricing: Pricing
  storage: Storage
  counters: Counters
  /** recent changes to shared storage (redis only): lets instances sync without listing keys */
  changes?: ChangeFeed
  log: Logger
  vendors: Map<string, Vendor>
  registerVendor(vendor: Vendor): void
  /** replace the identity resolver (the default reads X-AgentMesh-* headers and the User-Agent) */
  setIdentityResolver(resolver: IdentityResolver): void
  emit<K extends MeshEventName>(type: K, data: MeshEvents[K]): void
  /** `types`: the event types the listener takes (all when absent; events nobody takes are not built) */
  on(listener: (event: MeshEvent) => void, types?: (type: string) => boolean): () => void
  /**
   * run a request through this proxy's own routes in-process (no socket): a plugin route that
   * answers by way of the pipeline (the dry-run preview) calls it; absent on a mesh built without an app
   */
  fetch?(request: Request): Promise<Response>
  /** extra HTTP routes (admin APIs, dashboards): method, path (rou3 syntax), handler */
  addRoute(
    method: string,
    path: string,
    handler: (request: Request, params: Record<string, string>) => Response | Promise<Response>,
  ): void
  /** register work to await at shutdown (flush queues) */
  onClose(fn: () => void | Promise<void>): void
  /**
   * Report a part's state in `/agentmesh/health` and `/agentmesh/ready` (storage, the audit log):
   * the check runs on every probe, so it reads state, it does not probe
   */
  addHealthCheck(name: string, check: () => HealthCheck): void
  dataDir: string
}

/** One part's state for `/agentmesh/health`; `ok: false` makes `/agentmesh/ready` answer 503. */
export interface HealthCheck {
  ok: boolean
  /** why not ok (no secrets: it is shown to anyone who can reach the port) */
  message?: string
  /** since when it is not ok (epoch ms) */
  since?: number
}

export interface StorageConfig {
  driver: 'memory' | 'fs' | 'redis'
  /** fs: base directory (default `<dataDir>/storage`) */
  base?: string
  /** redis: connection URL, e.g. redis://127.0.0.1:6379/0 */
  url?: string
  /** redis: key prefix, so several deployments can share one server */
  prefix?: string
}

export interface VendorConfig {
  baseURL?: string
  apiKey?: string
}

/** The short CLI form of quota limits (`--team-limit eng=2000000 --warn-at 80 --hard-stop-at 100`); the quota plugin merges it over its options. */
export interface QuotaShortConfig {
  /** daily token limit per team */
  teamDailyTokens: Record<string, number>
  /** warn at this percentage of a limit (default 80) */
  warnAt?: number
  /** block at this percentage of a limit (default 100) */
  hardStopAt?: number
}

/** Retries, backoff and cooldowns of upstream calls (core/targets.ts, docs/routing.md). */
export interface RoutingConfig {
  /**
   * further attempts per request beyond one per target, after a failure before the first byte
   * (connection error, timeout, 429, 5xx); 0 (default): each target once, fallbacks only
   */
  retries?: number
  /** first retry's wait in ms (default 250), doubled per retry, with jitter */
  backoffMs?: number
  /** the longest backoff wait in ms (default 5000) */
  maxBackoffMs?: number
  /** the longest Retry-After the proxy waits for before retrying, ms (default 10000); longer is not waited for */
  retryAfterCapMs?: number
  cooldown?: {
    /** failures (connection errors, timeouts, 5xx) within `windowMs` that cool a target down (default 3); a 429 cools at once */
    failures?: number
    /** the window those failures are counted in, ms (default 60000) */
    windowMs?: number
    /** how long a target is skipped, ms (default 30000; a 429's Retry-After when it gives one) */
    cooldownMs?: number
    /** redis storage: how often an instance re-reads a target's shared cooldown, ms (default 1000) */
    syncMs?: number
  }
}

export interface ResolvedRoutingConfig {
  retries: number
  backoffMs: number
  maxBackoffMs: number
  retryAfterCapMs: number
  cooldown: { failures: number; windowMs: number; cooldownMs: number; syncMs: number }
}

export interface MeshConfig {
  /** ready-made config to layer under this one: demo (no keys), solo, team, or a preset file's path */
  preset?: PresetName | (string & {})
  /** more layers under this one (c12 `extends`): preset names or files, e.g. ['./my-preset.ts'] */
  extends?: string | string[]
  port?: number
  host?: string
  /** where fs storage, keys and logs live (default `.agentmesh` in the working directory) */
  dataDir?: string
  storage?: StorageConfig
  plugins?: Plugin[]
  /** names of the presets' plugins to leave out (plugins this config lists itself stay) */
  disable?: string[]
  /** vendor endpoints and keys; keys default to ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY */
  vendors?: { openai?: VendorConfig; anthropic?: VendorConfig; google?: VendorConfig }
  limits?: {
    /** request body limit in bytes (default 10 MB) */
    bodyBytes?: number
    /** upstream time limit in ms until the first byte, per attempt (default 120 s) */
    upstreamTimeoutMs?: number
  }
  /** retries, backoff and cooldowns of upstream calls; fallbacks come from the route (docs/routing.md) */
  routing?: RoutingConfig
  /**
   * browser origins allowed to call the proxy (CORS); default the extensions and loopback pages:
   * `['chrome-extension://*', 'http://localhost:*', 'http://127.0.0.1:*', 'http://[::1]:*']`
   */
  cors?: { origins?: string[] | '*' }
  /**
   * host names accepted in the Host header besides loopback names and IP addresses (a guard
   * against DNS rebinding); `true` accepts any. A leading dot allows subdomains: '.corp.example'
   */
  allowedHosts?: string[] | true
  /** forward a client's own vendor key when config and env have none (default true; team: false) */
  forwardClientKeys?: boolean
  /** who may read GET /agentmesh/events: anyone who reaches the port, or (team) the admin token and virtual keys, each key its own team's events */
  events?: { access?: 'open' | 'authenticated' }
  /** trust X-AgentMesh-Team/User/Tool headers for identity (off under the team preset) */
  trustIdentityHeaders?: boolean
  /** the team and user used when a request names none */
  defaultIdentity?: { team?: string; user?: string }
  log?: { level?: 'debug' | 'info' | 'warn' | 'error' | 'silent' }
  /** per-model prices overriding the built-in table, USD per million tokens */
  pricing?: Record<string, ModelPrice>
  /** daily token limits per team and warn/stop percentages, usually from CLI flags; read by the quota plugin */
  quota?: QuotaShortConfig
  /** hooks in config, run after plugin hooks of the same name */
  hooks?: PluginHooks
}

export interface ResolvedMeshConfig
  extends Required<Pick<MeshConfig, 'port' | 'host' | 'dataDir' | 'plugins' | 'trustIdentityHeaders'>> {
  /** the preset the config is built on (its first named layer), 'none' without one */
  preset: PresetName | 'none' | (string & {})
  storage: StorageConfig
  vendors: NonNullable<MeshConfig['vendors']>
  limits: Required<NonNullable<MeshConfig['limits']>>
  routing: ResolvedRoutingConfig
  cors: { origins: string[] | '*' }
  allowedHosts: string[] | true
  forwardClientKeys: boolean
  events: { access: 'open' | 'authenticated' }
  defaultIdentity: { team: string; user: string }
  log: { level: 'debug' | 'info' | 'warn' | 'error' | 'silent' }
  hooks: PluginHooks
  pricing: Record<string, ModelPrice>
  disable: string[]
  /** where the config came from, for the start banner */
  sources: string[]
  quota?: QuotaShortConfig
}
