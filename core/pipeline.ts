// One LLM request, start to end: parse, identity, the four lifecycle hooks and the vendor call;
// core/respond.ts then turns the finished context into the response in the client's protocol.
import type { ServerResponse } from 'node:http'
import type { MeshInternals } from './app.ts'
import { attachNodeResponse } from './client.ts'
import { embeddingsPrompt } from './embeddings.ts'
import { isStorageUnavailable } from './errors.ts'
import { ProtocolError, protocols } from './protocols/index.ts'
import { jsonDepthExceeds, MAX_JSON_DEPTH, parseJsonSliced, SLICED_PARSE_CHARS } from './protocols/shared.ts'
import { newRequestId } from './request-id.ts'
import { announce, answerTextChars, type CoreContext, errorResponse, PluginError, respond, send } from './respond.ts'
import { checkChain, vendorIdFor } from './response-chains.ts'
import { LARGE_BODY_CHARS, Slicer } from './slicer.ts'
import { runAttempts, targetsOf } from './targets.ts'
import { continueTranslatedChain, type Translation, translateRequest, translateWhole } from './translate/index.ts'
import type {
  Identity,
  Logger,
  MeshContext,
  MeshResponse,
  MeshState,
  Operation,
  ProtocolName,
  RequestInfo,
  Usage,
  Vendor,
} from './types.ts'

export { PluginError } from './respond.ts'

export interface LlmRequest {
  protocol: ProtocolName
  operation: Operation
  request: Request
  rawBody: string
  /** Gemini: model and streaming come from the path */
  pathModel?: string
  pathStream?: boolean
  /** the URL path, without the query */
  path: string
  /** the query string with its '?', '' when there is none */
  search: string
  /** the Node response when served by node:http: disconnects are read off it */
  nodeResponse?: ServerResponse
}

const zeroUsage = (): Usage => ({ inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 })

/** whether a vendor answers a protocol without translation */
const speaks = (v: Vendor, protocol: ProtocolName) =>
  v.protocol === protocol || v.protocol === 'any' || v.protocols?.includes(protocol) === true

/**
 * The vendor that serves the model, whatever protocol the client speaks: one that also speaks the
 * client's protocol first (no translation), then any other (translated); a model nobody claims
 * goes to the first vendor of the client's protocol.
 */
export function defaultRoute(m: MeshInternals, protocol: ProtocolName, model: string): MeshContext['route'] {
  let fallback: Vendor | undefined
  let other: Vendor | undefined
  for (const v of m.mesh.vendors.values()) {
    if (!speaks(v, protocol)) {
      if (!other && v.handles(model)) other = v
      continue
    }
    if (v.handles(model)) return { vendor: v.name, model }
    fallback ??= v
  }
  return { vendor: (other ?? fallback)?.name ?? 'none', model }
}

/**
 * The request as plugins see it; its URL is parsed only when read. Classes rather than object
 * literals with getters: V8 keeps such a literal as a slow dictionary object, so every property
 * read on it (in the core and in every plugin) was a hash lookup.
 */
class RequestView implements RequestInfo {
  body: any = undefined
  dirty = false
  #source: Request
  #url: URL | undefined
  constructor(
    source: Request,
    public method: string,
    public path: string,
    public search: string,
    public headers: Headers,
    public rawBody: string,
  ) {
    this.#source = source
  }
  get url(): URL {
    return (this.#url ??= new URL(this.#source.url))
  }
}

class Context implements CoreContext {
  id: string
  startedAt = performance.now()
  time = new Date()
  protocol: ProtocolName
  operation: Operation
  request: RequestView
  identity: MeshContext['identity']
  prompt: MeshContext['prompt']
  route: MeshContext['route']
  usage: Usage = zeroUsage()
  cost = { usd: 0, savedUsd: 0, estimated: true }
  cache: MeshContext['cache'] = { status: 'bypass' }
  headers: Record<string, string> = {}
  state: MeshState = {}
  meta: Record<string, any> = {}
  mesh: MeshContext['mesh']
  // set later by the core or plugins; declared so every context keeps one hidden class and the
  // property reads in hooks stay monomorphic
  normalised: MeshContext['normalised'] = undefined
  response: MeshContext['response'] = undefined
  answer: MeshContext['answer'] = undefined
  upstream: MeshContext['upstream'] = undefined
  attempts: MeshContext['attempts'] = undefined
  upstreamHeaders: MeshContext['upstreamHeaders'] = undefined
  error: MeshContext['error'] = undefined
  status: MeshContext['status'] = undefined
  aborted: MeshContext['aborted'] = undefined
  // the core's own state (see CoreState)
  vendorCalled = false
  hideUsageChunk = false
  translation: Translation | undefined = undefined
  afterRun: Promise<void> | undefined | null = null
  announced = false
  #source: Request
  constructor(m: MeshInternals, req: LlmRequest) {
    const request = (this.#source = req.request)
    this.id =
      request.headers
        .get('x-agentmesh-request-id')
        ?.slice(0, 64)
        .replace(/[^\w.-]/g, '') || newRequestId()
    this.protocol = req.protocol
    this.operation = req.operation
    this.request = new RequestView(request, request.method, req.path, req.search, request.headers, req.rawBody)
    const who = m.mesh.config.defaultIdentity
    this.identity = { team: who.team, user: who.user, tool: 'unknown', source: 'default' }
    this.prompt = { model: req.pathModel ?? '', system: '', messages: [], params: {}, stream: false, hasImages: false }
    this.route = { vendor: 'none', model: req.pathModel ?? '' }
    this.mesh = m.mesh
  }
  // read on demand: srvx builds a request's AbortController and its close listeners on first
  // access, and most requests never need one
  get signal(): AbortSignal {
    return this.#source.signal
  }
}

function newContext(m: MeshInternals, req: LlmRequest): Context {
  const ctx = new Context(m, req)
  attachNodeResponse(ctx, req.nodeResponse)
  return ctx
}

/**
 * Who sent a request that is not an LLM call (the events stream): the configured identity
 * resolver (virtual keys, headers) run on a context of its own.
 */
export function resolveCallerIdentity(
  m: MeshInternals,
  request: Request,
): ReturnType<MeshInternals['resolveIdentity']> {
  const url = new URL(request.url)
  const ctx = newContext(m, {
    protocol: 'openai',
    operation: 'chat',
    request,
    rawBody: '',
    path: url.pathname,
    search: url.search,
  })
  return m.resolveIdentity(ctx)
}

/**
 * Who sends an LLM request that does not go through the lifecycle (count_tokens): the identity
 * resolver as for a call, so a deployment that requires virtual keys refuses an anonymous count
 * (which the vendor's count endpoint would otherwise make on the operator's key).
 */
export async function requestIdentity(m: MeshInternals, req: LlmRequest): Promise<Identity | MeshResponse> {
  return m.resolveIdentity(newContext(m, req))
}

/**
 * The vendor's own count for a count_tokens request, when the vendor that serves the model has
 * one: undefined when it has none, the call failed, or the prompt may not leave as it is (the
 * caller then estimates locally).
 */
export async function vendorTokenCount(
  m: MeshInternals,
  req: LlmRequest,
  count: { body: unknown; prompt: MeshContext['prompt']; identity: Identity },
): Promise<{ status: number; body: Buffer; headers: Record<string, string> } | undefined> {
  const ctx = newContext(m, req)
  ctx.route = defaultRoute(m, req.protocol, count.prompt.model)
  ctx.request.body = count.body
  ctx.prompt = count.prompt
  ctx.identity = count.identity
  const vendor = m.mesh.vendors.get(ctx.route.vendor)
  // a vendor of another protocol counts a body of its own protocol: estimated locally instead
  if (!vendor?.countTokens || !speaks(vendor, req.protocol)) return undefined
  if (!(await mayLeaveAsIs(m, ctx))) return undefined
  try {
    const res = await vendor.countTokens(ctx)
    if (res.status !== 200 || res.stream) return undefined
    return { status: res.status, body: res.body as Buffer, headers: res.headers }
  } catch (err) {
    m.mesh.log.warn(`count_tokens at ${vendor.name} failed, estimated locally: ${(err as Error).message}`, {
      request: ctx.id,
    })
    return undefined
  }
}

/**
 * Whether a prompt may go to the vendor's count endpoint unchanged: the beforeRequest plugins run
 * on it as on a call (operation 'count_tokens'; quota and the chat-only guards leave it alone), and
 * one that would change it (a secret redacted, personal data masked) or refuse it keeps it home.
 */
async function mayLeaveAsIs(m: MeshInternals, ctx: CoreContext): Promise<boolean> {
  try {
    const phase = m.runPhase('beforeRequest', ctx)
    if (phase) await phase
  } catch {
    return false
  }
  return !ctx.response && !ctx.request.dirty
}

export async function handleLlmRequest(m: MeshInternals, req: LlmRequest): Promise<Response> {
  const ctx = newContext(m, req)
  const adapter = protocols[req.protocol]
  try {
    // a large body is parsed in slices, and the adapter reads it in slices of turns of its own
    const large = isLarge(ctx)
    const body = large ? await parseBodySliced(req.rawBody) : parseBody(req.rawBody)
    if (large) await nextTurn()
    ctx.request.body = body
    const opts = { pathModel: req.pathModel, stream: req.pathStream }
    ctx.prompt =
      req.operation === 'embeddings'
        ? embeddingsPrompt(req.protocol, body, req.pathModel)
        : large
          ? await adapter.parseSliced(body, opts, new Slicer(PARSE_SLICE_MS))
          : adapter.parse(body, opts)
    if (large) await nextTurn()
    ctx.route = defaultRoute(m, req.protocol, ctx.prompt.model)

    const resolved = m.resolveIdentity(ctx)
    const who = isThenable(resolved) ? await resolved : resolved
    if ('kind' in who) ctx.response = who
    else ctx.identity = who
    // a Responses chain decides whether any cache may answer, before the caches look
    if (!ctx.response && req.protocol === 'responses' && req.operation === 'chat') await checkChain(ctx)
    if (!ctx.response) {
      ctx.usage = {
        // over a few KB the tokenizer's work is sliced: novel text costs it 2-4 µs a character
        inputTokens:
          (ctx.request.rawBody?.length ?? 0) > SLICED_ESTIMATE_CHARS
            ? await m.mesh.tokens.estimateInputAsync(ctx.prompt, ctx.route.model)
            : m.mesh.tokens.estimateInput(ctx.prompt, ctx.route.model),
        outputTokens: 0,
        cacheReadTokens: 0,
        cacheWriteTokens: 0,
        estimated: true,
      }
      ctx.cost.usd = m.mesh.pricing.cost(ctx.route.model, ctx.usage)
      if (isLarge(ctx)) await nextTurn()
      announce(m, ctx)
      // a phase nobody hooks (or whose hooks all ran synchronously) is not awaited: no microtask hop
      let phase = m.runPhase('beforeRequest', ctx)
      if (phase) await phase
      if (!ctx.response && req.operation === 'chat' && (phase = m.runPhase('cacheLookup', ctx))) await phase
      if (!ctx.response && (phase = m.runPhase('route', ctx))) await phase
      if (!ctx.response) await callVendor(m, ctx)
    }
  } catch (err) {
    ctx.response = errorResponse(m, ctx, err)
  }
  return respond(m, ctx, adapter)
}

/**
 * The Responses API's stored state (retrieve, delete, cancel, input items): the caller's identity
 * is checked as for any call, then the request goes to the vendor as it came; a cached answer's
 * id becomes the vendor's. No hooks run: nothing is generated, so nothing is billed or cached.
 */
export async function forwardResponsesState(
  m: MeshInternals,
  req: LlmRequest,
  call: { method: string; id: string; tail: string },
): Promise<Response> {
  const ctx = newContext(m, req)
  ctx.route = defaultRoute(m, 'responses', '')
  let res: MeshResponse
  try {
    if (req.rawBody) ctx.request.body = parseBody(req.rawBody)
    const resolved = m.resolveIdentity(ctx)
    const who = isThenable(resolved) ? await resolved : resolved
    if ('kind' in who) res = who
    else {
      ctx.identity = who
      const vendor = m.mesh.vendors.get(ctx.route.vendor)
      if (!vendor?.forward)
        throw new ProtocolError(
          `response "${call.id.slice(0, 128)}" not found: no vendor here keeps responses (OpenAI does)`,
          404,
          'not_found_error',
        )
      const id = await vendorIdFor(ctx, call.id)
      ctx.vendorCalled = true
      const up = await vendor.forward(ctx, {
        method: call.method,
        path: `/v1/responses/${encodeURIComponent(id)}${call.tail}${req.search}`,
      })
      res = { kind: 'upstream', ...up }
    }
  } catch (err) {
    res = errorResponse(m, ctx, err)
  }
  ctx.response = res
  if (res.kind === 'upstream')
    return send(m, ctx, {
      status: res.status,
      body: res.body as Buffer,
      contentType: res.headers['content-type'] ?? 'application/json',
      headers: res.headers,
    })
  if (res.kind === 'error')
    return send(m, ctx, {
      status: res.status,
      body: JSON.stringify(protocols.responses.errorBody(res.status, res.type, res.message)),
      contentType: 'application/json',
      headers: res.headers,
    })
  return send(m, ctx, {
    status: 500,
    body: JSON.stringify(protocols.responses.errorBody(500, 'internal_error', 'unexpected answer')),
    contentType: 'application/json',
  })
}

/** The request's JSON, or a 400 for malformed or too deeply nested text. */
export function parseBody(text: string): unknown {
  if (jsonDepthExceeds(text)) throw new ProtocolError(`request body nests deeper than ${MAX_JSON_DEPTH} levels`)
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new ProtocolError(`malformed JSON body: ${(err as Error).message}`)
  }
}

/**
 * parseBody for a body of megabytes: the same value or the same 400, the work spread over turns of
 * the event loop (slices of about 10 ms) so that other requests are served in between.
 */
export async function parseBodySliced(text: string): Promise<unknown> {
  if (text.length <= SLICED_PARSE_CHARS) return parseBody(text)
  let parsed: Awaited<ReturnType<typeof parseJsonSliced>>
  try {
    parsed = await parseJsonSliced(text, MAX_JSON_DEPTH, new Slicer(PARSE_SLICE_MS))
  } catch (err) {
    throw new ProtocolError(`malformed JSON body: ${(err as Error).message}`)
  }
  if (parsed.deep) throw new ProtocolError(`request body nests deeper than ${MAX_JSON_DEPTH} levels`)
  return parsed.value
}
const PARSE_SLICE_MS = 10

/**
 * The vendor call: with fallbacks or retries, the attempt loop (core/targets.ts); otherwise one
 * call, its outcome counted for the target's health at the cost of a few field updates.
 */
async function callVendor(m: MeshInternals, ctx: CoreContext): Promise<void> {
  const targets = targetsOf(m.mesh)
  if (ctx.route.fallbacks?.length || targets.config.retries > 0)
    return runAttempts(targets, ctx, () => callOnce(m, ctx))
  const t = targets.track(ctx.route.vendor, ctx.route.model)
  if (!t) return callOnce(m, ctx)
  try {
    await callOnce(m, ctx)
  } catch (err) {
    targets.threw(t, err)
    throw err
  }
  targets.settled(t, ctx, ctx.upstream?.latencyMs)
}

/** One call at ctx.route's target: sets ctx.response, or throws (connection error, timeout, a request the vendor cannot take). */
async function callOnce(m: MeshInternals, ctx: CoreContext): Promise<void> {
  const vendor = m.mesh.vendors.get(ctx.route.vendor)
  if (!vendor) {
    throw new ProtocolError(
      `no vendor is configured for model "${ctx.route.model}" over the ${ctx.protocol} protocol; add one to \`plugins\` in agentmesh.config.ts`,
      404,
      'not_found_error',
    )
  }
  // another protocol: the body is translated here, the answer in respond.ts (core/translate)
  if (!speaks(vendor, ctx.protocol) && ctx.operation === 'chat') ctx.translation = await translateRequest(ctx, vendor)
  else if (ctx.protocol === 'responses' && typeof ctx.request.body?.previous_response_id === 'string')
    await continueTranslatedChain(ctx)
  else if (!speaks(vendor, ctx.protocol))
    throw new ProtocolError(
      `route sends a ${ctx.protocol} ${ctx.operation} request to ${vendor.name} (${vendor.protocol}), which only chat requests are translated for`,
      501,
      'not_implemented',
    )
  ctx.vendorCalled = true
  if (ctx.operation === 'embeddings') {
    if (!vendor.embeddings)
      throw new ProtocolError(`vendor ${vendor.name} does not serve embeddings`, 404, 'not_found_error')
    const res = await vendor.embeddings(ctx)
    ctx.response = { kind: 'upstream', ...res }
    return
  }
  // 'any' (demo) streams through the same tap, so its usage chunk is hidden the same way
  if (
    ctx.protocol === 'openai' &&
    ctx.prompt.stream &&
    (vendor.protocol === 'openai' || vendor.protocol === 'any') &&
    ctx.request.body.stream_options?.include_usage !== true
  ) {
    // usage only arrives in streams when asked for; ask, and hide that chunk from this client
    ctx.request.body.stream_options = { ...ctx.request.body.stream_options, include_usage: true }
    ctx.request.dirty = true
    ctx.hideUsageChunk = true
  }
  const res = await vendor.call(ctx)
  if ('status' in res && ctx.translation && !res.stream) {
    // a promise for an answer of megabytes only (read in slices)
    const whole = translateWhole(ctx, ctx.translation, res)
    ctx.response = whole instanceof Promise ? await whole : whole
  } else if ('status' in res)
    ctx.response = { kind: 'upstream', status: res.status, headers: res.headers, body: res.body, stream: res.stream }
  else {
    ctx.answer = res
    ctx.usage = res.usage
    ctx.response = { kind: 'answer', answer: res }
  }
}

// A multi-megabyte prompt costs each plugin tens of milliseconds (hashing, counting, copying):
// for such a request (LARGE_BODY_CHARS) every hook runs in its own turn of the event loop, so the
// other requests' I/O runs in between instead of waiting for the sum
/** bodies over this get the token estimate in slices (8 KB of the most novel text: ~30 ms in one go) */
const SLICED_ESTIMATE_CHARS = 8 * 1024
const isLarge = (ctx: MeshContext) => (ctx.request?.rawBody?.length ?? 0) > LARGE_BODY_CHARS
/** afterResponse's hooks read the answer too (cache store, audit hash): one of megabytes also gets a turn per hook */
const isLargeExchange = (ctx: MeshContext) =>
  isLarge(ctx) || (ctx.answer !== undefined && answerTextChars(ctx.answer) > LARGE_BODY_CHARS)
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

/**
 * Run a phase's hooks in order; the first hook that answers ends the chain. Stays synchronous
 * until a hook returns a promise, so a phase of sync hooks adds no microtask.
 */
export function runHooks(
  hooks: Array<(ctx: MeshContext) => unknown>,
  ctx: MeshContext,
  from = 0,
  turned = false,
): Promise<void> | undefined {
  if (!turned && from < hooks.length && isLarge(ctx)) return nextTurn().then(() => runHooks(hooks, ctx, from, true))
  for (let i = from; i < hooks.length; i++) {
    const r = hooks[i]!(ctx)
    if (isThenable(r)) return Promise.resolve(r).then(() => (ctx.response ? undefined : runHooks(hooks, ctx, i + 1)))
    if (ctx.response) return
    if (i + 1 < hooks.length && isLarge(ctx)) return runHooks(hooks, ctx, i + 1)
  }
}

/** afterResponse: every hook runs even if one fails; failures are logged */
export function runAll(
  hooks: Array<(ctx: MeshContext) => unknown>,
  ctx: MeshContext,
  log: Logger,
  from = 0,
  turned = false,
): Promise<void> | undefined {
  if (!turned && from < hooks.length && isLargeExchange(ctx))
    return nextTurn().then(() => runAll(hooks, ctx, log, from, true))
  for (let i = from; i < hooks.length; i++) {
    let r: unknown
    try {
      r = hooks[i]!(ctx)
    } catch (err) {
      logAfterFailure(log, ctx, err)
      continue
    }
    if (isThenable(r)) {
      return Promise.resolve(r).then(
        () => runAll(hooks, ctx, log, i + 1),
        (err) => {
          logAfterFailure(log, ctx, err)
          return runAll(hooks, ctx, log, i + 1)
        },
      )
    }
    if (i + 1 < hooks.length && isLargeExchange(ctx)) return runAll(hooks, ctx, log, i + 1)
  }
}

/**
 * A storage outage is logged once by the storage layer when it starts; the afterResponse hooks it
 * fails (one per request in flight) would otherwise add a line each
 */
function logAfterFailure(log: Logger, ctx: MeshContext, err: unknown): void {
  if (isStorageUnavailable(err) || (err instanceof PluginError && isStorageUnavailable(err.cause)))
    log.debug((err as Error).message, { request: ctx.id })
  else log.error((err as Error).message, { request: ctx.id })
}

export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as PromiseLike<unknown>).then === 'function'
}
