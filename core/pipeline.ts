// One LLM request, start to end: parse, identity, the four lifecycle hooks, the vendor call,
// and the response in the client's protocol with governance headers.
import { randomUUID } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import { Readable, pipeline } from 'node:stream'
import { FastResponse } from 'srvx'
import { StorageUnavailableError, isStorageUnavailable } from './errors.ts'
import { headerSafe, headersSafe } from './headers.ts'
import { maskSecrets } from './log.ts'
import { attachNodeResponse, clientGone, nodeResponseOf, onClientGone } from './client.ts'
import { ProtocolError, protocols, type ProtocolAdapter } from './protocols/index.ts'
import { MAX_JSON_DEPTH, jsonDepthExceeds } from './protocols/shared.ts'
import { SseParser, SseTap } from './stream.ts'
import { checkChain, recordChain, vendorIdFor } from './response-chains.ts'
import { UpstreamError } from './upstream.ts'
import type { CanonicalAnswer, Logger, MeshContext, MeshResponse, Operation, ProtocolName, RequestInfo, Usage, Vendor } from './types.ts'
import type { MeshInternals } from './app.ts'

export class PluginError extends Error {
  constructor(readonly plugin: string, readonly hook: string, readonly cause: unknown) {
    super(`plugin "${plugin}" failed in ${hook}: ${cause instanceof Error ? cause.message : String(cause)}`)
  }
}

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

// h3's marker for "the handler answered on the Node response itself" (what fromNodeHandler returns)
const kHandled = Symbol.for('h3.handled')

const zeroUsage = (): Usage => ({ inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 })

/** whether a vendor answers a protocol without translation */
const speaks = (v: Vendor, protocol: ProtocolName) => v.protocol === protocol || v.protocol === 'any' || v.protocols?.includes(protocol) === true

export function defaultRoute(m: MeshInternals, protocol: ProtocolName, model: string): MeshContext['route'] {
  let fallback: Vendor | undefined
  for (const v of m.mesh.vendors.values()) {
    if (!speaks(v, protocol)) continue
    if (v.handles(model)) return { vendor: v.name, model }
    fallback ??= v
  }
  return { vendor: fallback?.name ?? 'none', model }
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
  constructor(source: Request, public method: string, public path: string, public search: string, public headers: Headers, public rawBody: string) {
    this.#source = source
  }
  get url(): URL {
    return (this.#url ??= new URL(this.#source.url))
  }
}

class Context implements MeshContext {
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
  meta: Record<string, any> = {}
  mesh: MeshContext['mesh']
  // set later by the core or plugins; declared so every context keeps one hidden class and the
  // property reads in hooks stay monomorphic
  normalised: MeshContext['normalised'] = undefined
  response: MeshContext['response'] = undefined
  answer: MeshContext['answer'] = undefined
  upstream: MeshContext['upstream'] = undefined
  error: MeshContext['error'] = undefined
  status: MeshContext['status'] = undefined
  aborted: MeshContext['aborted'] = undefined
  /** a vendor was asked (even if it never answered): the headers then name it */
  vendorCalled = false
  #source: Request
  constructor(m: MeshInternals, req: LlmRequest) {
    const request = (this.#source = req.request)
    this.id = request.headers.get('x-agentmesh-request-id')?.slice(0, 64).replace(/[^\w.-]/g, '') || randomUUID()
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

function newContext(m: MeshInternals, req: LlmRequest): MeshContext {
  const ctx = new Context(m, req)
  attachNodeResponse(ctx, req.nodeResponse)
  return ctx
}

/**
 * Who sent a request that is not an LLM call (the events stream): the configured identity
 * resolver (virtual keys, headers) run on a context of its own.
 */
export function resolveCallerIdentity(m: MeshInternals, request: Request): ReturnType<MeshInternals['resolveIdentity']> {
  const url = new URL(request.url)
  const ctx = newContext(m, { protocol: 'openai', operation: 'chat', request, rawBody: '', path: url.pathname, search: url.search })
  return m.resolveIdentity(ctx)
}

/**
 * The vendor's own count for a count_tokens request, when the vendor that serves the model has
 * one: undefined when it has none or the call failed (the caller then estimates locally).
 */
export async function vendorTokenCount(m: MeshInternals, req: LlmRequest, body: unknown, model: string): Promise<{ status: number; body: Buffer; headers: Record<string, string> } | undefined> {
  const ctx = newContext(m, req)
  ctx.route = defaultRoute(m, req.protocol, model)
  ctx.request.body = body
  const vendor = m.mesh.vendors.get(ctx.route.vendor)
  if (!vendor?.countTokens) return undefined
  try {
    const res = await vendor.countTokens(ctx)
    if (res.status !== 200 || res.stream) return undefined
    return { status: res.status, body: res.body as Buffer, headers: res.headers }
  } catch (err) {
    m.mesh.log.warn(`count_tokens at ${vendor.name} failed, estimated locally: ${(err as Error).message}`, { request: ctx.id })
    return undefined
  }
}

export async function handleLlmRequest(m: MeshInternals, req: LlmRequest): Promise<Response> {
  const ctx = newContext(m, req)
  const adapter = protocols[req.protocol]
  try {
    const body = parseBody(req.rawBody)
    ctx.request.body = body
    if (req.operation === 'embeddings') {
      const model = (body as any)?.model
      if (typeof model !== 'string' || !model) throw new ProtocolError('`model` is required and must be a non-empty string')
      if ((body as any).input === undefined) throw new ProtocolError('`input` is required')
      const input = (body as any).input
      const text = Array.isArray(input) ? input.filter((s) => typeof s === 'string').join('\n') : typeof input === 'string' ? input : ''
      ctx.prompt = { model, system: '', messages: [{ role: 'user', text }], params: {}, stream: false, hasImages: false }
    } else {
      ctx.prompt = adapter.parse(body, { pathModel: req.pathModel, stream: req.pathStream })
    }
    if (isLarge(ctx)) await nextTurn()
    ctx.route = defaultRoute(m, req.protocol, ctx.prompt.model)

    const resolved = m.resolveIdentity(ctx)
    const who = isThenable(resolved) ? await resolved : resolved
    if ('kind' in who) ctx.response = who
    else ctx.identity = who
    // a Responses chain decides whether any cache may answer, before the caches look
    if (!ctx.response && req.protocol === 'responses' && req.operation === 'chat') await checkChain(ctx)
    if (!ctx.response) {
      ctx.usage = { inputTokens: m.mesh.tokens.estimateInput(ctx.prompt, ctx.route.model), outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0, estimated: true }
      ctx.cost.usd = m.mesh.pricing.cost(ctx.route.model, ctx.usage)
      if (isLarge(ctx)) await nextTurn()
      if (m.hasListeners()) m.mesh.emit('request', { id: ctx.id, identity: ctx.identity, protocol: ctx.protocol, model: ctx.prompt.model, stream: ctx.prompt.stream })
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
  return finish(m, ctx, adapter)
}

/**
 * The Responses API's stored state (retrieve, delete, cancel, input items): the caller's identity
 * is checked as for any call, then the request goes to the vendor as it came; a cached answer's
 * id becomes the vendor's. No hooks run: nothing is generated, so nothing is billed or cached.
 */
export async function forwardResponsesState(m: MeshInternals, req: LlmRequest, call: { method: string; id: string; tail: string }): Promise<Response> {
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
      if (!vendor?.forward) throw new ProtocolError(`response "${call.id.slice(0, 128)}" not found: no vendor here keeps responses (OpenAI does)`, 404, 'not_found_error')
      const id = await vendorIdFor(ctx, call.id)
      ;(ctx as Context).vendorCalled = true
      const up = await vendor.forward(ctx, { method: call.method, path: `/v1/responses/${encodeURIComponent(id)}${call.tail}${req.search}` })
      res = { kind: 'upstream', ...up }
    }
  } catch (err) {
    res = errorResponse(m, ctx, err)
  }
  ctx.response = res
  if (res.kind === 'upstream') return send(m, ctx, res.status, res.body as Buffer, res.headers['content-type'] ?? 'application/json', res.headers)
  if (res.kind === 'error') return send(m, ctx, res.status, JSON.stringify(protocols.responses.errorBody(res.status, res.type, res.message)), 'application/json', res.headers)
  return send(m, ctx, 500, JSON.stringify(protocols.responses.errorBody(500, 'internal_error', 'unexpected answer')), 'application/json')
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

/** Keys (by shape and the configured values) and URL credentials masked, for error text sent to clients. */
function clientSafe(m: MeshInternals, message: string): string {
  let out = maskSecrets(message)
  for (const v of Object.values(m.mesh.config.vendors ?? {})) {
    const key = v?.apiKey
    if (key && key.length >= 8 && out.includes(key)) out = out.split(key).join('***')
  }
  return out
}

function errorResponse(m: MeshInternals, ctx: MeshContext, err: unknown): MeshResponse {
  if (err instanceof ProtocolError) return { kind: 'error', status: err.status, type: err.type, message: err.message }
  if (err instanceof UpstreamError) return { kind: 'error', status: err.status, type: err.type, message: err.message }
  if (err instanceof StorageUnavailableError) return { kind: 'error', status: 503, type: 'storage_unavailable', message: err.message }
  if (err instanceof PluginError && isStorageUnavailable(err.cause)) {
    // storage down is the deployment's state, not a plugin bug: a 503 the client may retry, and
    // the storage layer logs the outage once rather than once per request
    const message = clientSafe(m, (err.cause as Error).message)
    ctx.error = { status: 503, type: 'storage_unavailable', message, plugin: err.plugin }
    return { kind: 'error', status: 503, type: 'storage_unavailable', message }
  }
  if (err instanceof PluginError) {
    m.mesh.log.error(err.message, { request: ctx.id })
    // a plugin's error text can carry what the client must not see (a storage URL's password, a key)
    const message = clientSafe(m, err.message)
    ctx.error = { status: 500, type: 'plugin_error', message, plugin: err.plugin }
    return { kind: 'error', status: 500, type: 'plugin_error', message }
  }
  m.mesh.log.error(`internal error: ${(err as Error)?.message ?? String(err)}`, { request: ctx.id })
  return { kind: 'error', status: 500, type: 'internal_error', message: 'internal error in AgentMesh; see the proxy log for request ' + ctx.id }
}

async function callVendor(m: MeshInternals, ctx: MeshContext): Promise<void> {
  const vendor = m.mesh.vendors.get(ctx.route.vendor)
  if (!vendor) {
    throw new ProtocolError(`no vendor is configured for model "${ctx.route.model}" over the ${ctx.protocol} protocol; add one to \`plugins\` in agentmesh.config.ts`, 404, 'not_found_error')
  }
  if (!speaks(vendor, ctx.protocol)) {
    throw new ProtocolError(`route sends a ${ctx.protocol} request to ${vendor.name} (${vendor.protocol}); cross-protocol translation is not available`, 501, 'not_implemented')
  }
  ;(ctx as Context).vendorCalled = true
  if (ctx.operation === 'embeddings') {
    if (!vendor.embeddings) throw new ProtocolError(`vendor ${vendor.name} does not serve embeddings`, 404, 'not_found_error')
    const res = await vendor.embeddings(ctx)
    ctx.response = { kind: 'upstream', ...res }
    return
  }
  // 'any' (demo) streams through the same tap, so its usage chunk is hidden the same way
  if (ctx.protocol === 'openai' && ctx.prompt.stream && (vendor.protocol === 'openai' || vendor.protocol === 'any') && ctx.request.body.stream_options?.include_usage !== true) {
    // usage only arrives in streams when asked for; ask, and hide that chunk from this client
    ctx.request.body.stream_options = { ...ctx.request.body.stream_options, include_usage: true }
    ctx.request.dirty = true
    ctx.meta.core = { hideUsageChunk: true }
  }
  const res = await vendor.call(ctx)
  if ('status' in res) ctx.response = { kind: 'upstream', status: res.status, headers: res.headers, body: res.body, stream: res.stream }
  else {
    ctx.answer = res
    ctx.usage = res.usage
    ctx.response = { kind: 'answer', answer: res }
  }
}

/**
 * Run afterResponse once; a failing plugin there is logged, the client's answer stands.
 * undefined when no plugin hooks it: the caller then has nothing to await (no microtask hop).
 */
function after(m: MeshInternals, ctx: MeshContext): Promise<void> | undefined {
  if ('__after' in ctx.meta) return ctx.meta.__after
  // before the plugins: a client's next turn may name this id as soon as it has the answer
  const recorded = ctx.protocol === 'responses' ? recordChain(ctx) : undefined
  let running = m.runPhase('afterResponse', ctx)?.catch((err) => {
    m.mesh.log.error(err instanceof Error ? err.message : String(err), { request: ctx.id })
  })
  if (recorded) running = running ? Promise.all([running, recorded]).then(() => {}) : recorded
  ctx.meta.__after = running
  if (running) m.track(running)
  return running
}

function price(m: MeshInternals, ctx: MeshContext) {
  const hit = ctx.cache.status === 'exact' || ctx.cache.status === 'semantic'
  if (hit) {
    ctx.usage = zeroUsage()
    ctx.cost.usd = 0
  } else {
    ctx.cost.usd = m.mesh.pricing.cost(ctx.answer?.model || ctx.route.model, ctx.usage)
  }
  ctx.cost.estimated = !!ctx.usage.estimated
}

/** the governance headers (and the response's own), in one object: this runs on every response */
function responseHeaders(m: MeshInternals, ctx: MeshContext, contentType: string, extra?: Record<string, string>): Record<string, string> {
  const h: Record<string, string> = {}
  if (extra) for (const k in extra) h[k] = extra[k]!
  h['x-agentmesh-request-id'] = ctx.id
  // who was billed (from the key, the headers or the User-Agent)
  h['x-agentmesh-team'] = headerSafe(ctx.identity.team)
  h['x-agentmesh-user'] = headerSafe(ctx.identity.user)
  h['x-agentmesh-tool'] = headerSafe(ctx.identity.tool)
  h['x-agentmesh-model'] = headerSafe(ctx.answer?.model || ctx.route.model || ctx.prompt.model)
  if (ctx.response?.kind === 'error' && !(ctx as Context).vendorCalled) {
    // refused before any vendor answered: nothing was spent; the estimate it was judged on apart
    h['x-agentmesh-vendor'] = 'none'
    h['x-agentmesh-tokens'] = '0'
    h['x-agentmesh-cost-usd'] = '0.000000'
    h['x-agentmesh-estimated-tokens'] = String(ctx.usage.inputTokens + ctx.usage.outputTokens)
  } else {
    // the route can come from the client (a model name) or a plugin: encoded if unsafe
    h['x-agentmesh-vendor'] = headerSafe(ctx.route.vendor)
    h['x-agentmesh-tokens'] = String(ctx.usage.inputTokens + ctx.usage.outputTokens)
    h['x-agentmesh-cost-usd'] = ctx.cost.usd.toFixed(6)
  }
  h['x-agentmesh-cache'] = ctx.cache.status
  h['x-agentmesh-latency-ms'] = (performance.now() - ctx.startedAt).toFixed(1)
  if (ctx.usage.estimated) h['x-agentmesh-usage'] = 'estimated'
  if (ctx.usage.cacheReadTokens) h['x-agentmesh-cache-read-tokens'] = String(ctx.usage.cacheReadTokens)
  if (ctx.usage.cacheWriteTokens) h['x-agentmesh-cache-write-tokens'] = String(ctx.usage.cacheWriteTokens)
  for (const k in ctx.headers) h[k.toLowerCase()] = headerSafe(String(ctx.headers[k]))
  const origin = ctx.request.headers.get('origin')
  if (origin) Object.assign(h, m.corsHeaders(origin))
  h['content-type'] = contentType
  return h
}

function emitResponse(m: MeshInternals, ctx: MeshContext, status: number) {
  m.mesh.emit('response', { id: ctx.id, status, cache: ctx.cache.status, latencyMs: performance.now() - ctx.startedAt, identity: ctx.identity, vendor: ctx.route.vendor, model: ctx.answer?.model || ctx.route.model, tokens: ctx.usage.inputTokens + ctx.usage.outputTokens, costUsd: ctx.cost.usd })
}

function send(m: MeshInternals, ctx: MeshContext, status: number, body: string | Buffer | Readable, contentType: string, extra?: Record<string, string>): Response {
  ctx.status = status
  const headers = responseHeaders(m, ctx, contentType, extra)
  if (m.hasListeners()) emitResponse(m, ctx, status)
  const nodeRes = nodeResponseOf(ctx)
  if (nodeRes && !(body instanceof Readable)) {
    // served by node:http: one writeHead and one end, no Response object in between
    if (!nodeRes.destroyed && !nodeRes.headersSent) {
      headers['content-length'] = String(typeof body === 'string' ? Buffer.byteLength(body) : body.length)
      if (writeHead(m, ctx, nodeRes, status, headers)) nodeRes.end(body)
    }
    return kHandled as unknown as Response
  }
  return new FastResponse(body as any, { status, headers }) as unknown as Response
}

/**
 * writeHead that cannot throw into the stream path (a throw there once ended the process): a
 * value Node refuses is encoded and tried again; false when the response could not be started.
 */
function writeHead(m: MeshInternals, ctx: MeshContext, nodeRes: ServerResponse, status: number, headers: Record<string, string>): boolean {
  try {
    nodeRes.writeHead(status, headers)
    return true
  } catch (err) {
    m.mesh.log.error(`response headers refused (${(err as Error).message}); sending them encoded`, { request: ctx.id })
  }
  try {
    nodeRes.writeHead(status, headersSafe(headers))
    return true
  } catch {
    nodeRes.destroy()
    return false
  }
}

async function finish(m: MeshInternals, ctx: MeshContext, adapter: ProtocolAdapter): Promise<Response> {
  const res = ctx.response!
  switch (res.kind) {
    case 'error': {
      ctx.error ??= { status: res.status, type: res.type, message: res.message }
      ctx.status = res.status
      m.mesh.emit('error', { id: ctx.id, status: res.status, type: res.type, message: res.message, plugin: ctx.error.plugin })
      const done = after(m, ctx)
      if (done) await done
      return send(m, ctx, res.status, JSON.stringify(adapter.errorBody(res.status, res.type, res.message)), 'application/json', res.headers)
    }
    case 'json': {
      ctx.status = res.status
      const done = after(m, ctx)
      if (done) await done
      return send(m, ctx, res.status, JSON.stringify(res.body), 'application/json', res.headers)
    }
    case 'answer': {
      const answer: CanonicalAnswer = { ...res.answer, model: res.answer.model || ctx.route.model }
      ctx.answer ??= answer
      if (ctx.cache.status === 'bypass' || ctx.cache.status === 'miss') ctx.usage = answer.usage
      price(m, ctx)
      ctx.status = 200
      if (ctx.upstream === undefined && ctx.cache.status !== 'exact' && ctx.cache.status !== 'semantic') logCall(m, ctx, 200)
      const done = after(m, ctx)
      if (done) await done
      if (!ctx.prompt.stream) return send(m, ctx, 200, JSON.stringify(adapter.render(answer)), 'application/json', res.headers)
      const array = adapter.renderArrayStream?.(answer, ctx.request.search)
      return array
        ? send(m, ctx, 200, JSON.stringify(array), 'application/json', res.headers)
        : send(m, ctx, 200, adapter.renderStream(answer, { includeUsage: ctx.request.body?.stream_options?.include_usage === true }), 'text/event-stream', { 'cache-control': 'no-cache' })
    }
    case 'upstream': {
      if (!res.stream) return finishBody(m, ctx, adapter, res)
      const nodeRes = nodeResponseOf(ctx)
      if (nodeRes) return streamToNode(m, ctx, adapter, res, nodeRes)
      const early = await firstBytes(res.body as Readable)
      if (!early) return finishStream(m, ctx, adapter, res)
      ctx.response = earlyStreamError(m, ctx, early)
      return finish(m, ctx, adapter)
    }
  }
}

function logCall(m: MeshInternals, ctx: MeshContext, status: number) {
  if (m.hasListeners()) m.mesh.emit('llm_call', { id: ctx.id, vendor: ctx.route.vendor, model: ctx.answer?.model || ctx.route.model, status, latencyMs: ctx.upstream?.latencyMs ?? performance.now() - ctx.startedAt, usage: ctx.usage, costUsd: ctx.cost.usd, stream: ctx.prompt.stream })
}

async function finishBody(m: MeshInternals, ctx: MeshContext, adapter: ProtocolAdapter, res: Extract<MeshResponse, { kind: 'upstream' }>): Promise<Response> {
  const buf = res.body as Buffer
  ctx.status = res.status
  if (res.status >= 400) {
    // the vendor's own error, passed through with its status and body
    ctx.error = { status: res.status, type: 'upstream_error', message: `${ctx.route.vendor} answered ${res.status}` }
    m.mesh.emit('error', { id: ctx.id, status: res.status, type: 'upstream_error', message: ctx.error.message })
  } else if (res.status === 200 && !readAnswer(ctx, adapter, buf)) {
    // relayed, a 200 that is not an answer would be the client's problem and unbilled; say so
    m.mesh.log.warn(`${ctx.route.vendor} answered 200 with a body that is not a ${ctx.protocol} answer`, { request: ctx.id })
    ctx.response = errorResponse(m, ctx, new UpstreamError(`${ctx.route.vendor} answered 200 with a body that is not a ${ctx.protocol} answer`, 502, 'upstream_invalid_response'))
    return finish(m, ctx, adapter)
  }
  price(m, ctx)
  logCall(m, ctx, res.status)
  const done = after(m, ctx)
  if (done) await done
  return send(m, ctx, res.status, buf, res.headers['content-type'] ?? 'application/json', res.headers)
}

/** Read a 200 body into ctx.answer and ctx.usage; false when it is not JSON of the protocol's answer. */
function readAnswer(ctx: MeshContext, adapter: ProtocolAdapter, buf: Buffer): boolean {
  let json: any
  try {
    json = JSON.parse(buf.toString('utf8'))
  } catch {
    return false
  }
  if (ctx.operation === 'embeddings') {
    if (json === null || typeof json !== 'object' || !Array.isArray(json.data)) return false
    ctx.usage = { ...zeroUsage(), inputTokens: Number(json.usage?.prompt_tokens ?? ctx.usage.inputTokens) }
    return true
  }
  try {
    ctx.answer = adapter.read(json)
  } catch {
    return false
  }
  ctx.usage = ctx.answer.usage
  return true
}

/**
 * A stream that dies before its first bytes becomes a 502 in the client's protocol, not the
 * server's empty 500 or an empty 200 (no status has been sent yet).
 */
function earlyStreamError(m: MeshInternals, ctx: MeshContext, err: Error): MeshResponse {
  return errorResponse(m, ctx, clientGone(ctx)
    ? new UpstreamError('client closed the request', 499, 'client_closed_request')
    : new UpstreamError(`${ctx.route.vendor} stream failed before anything reached the client (${err.message})`, 502, 'upstream_stream_error'))
}

/** What the stream's end means for the request: the answer and usage, or an aborted request. */
function settleStream(m: MeshInternals, ctx: MeshContext, reader: ReturnType<ProtocolAdapter['streamReader']>, estimated: Usage, status: number, failed: boolean): Promise<void> {
  const answer = failed ? undefined : reader.finish()
  if (answer) {
    ctx.answer = answer
    ctx.usage = answer.usage
  } else {
    ctx.aborted = true
    const seen = reader.partialUsage()
    // settle on what the vendor reported so far, at least the estimated input
    ctx.usage = { ...seen, inputTokens: Math.max(seen.inputTokens, estimated.inputTokens), estimated: !seen.inputTokens }
    if (!clientGone(ctx)) ctx.error = { status: 502, type: 'upstream_stream_error', message: `${ctx.route.vendor} stream ended before completion` }
  }
  price(m, ctx)
  logCall(m, ctx, status)
  return after(m, ctx) ?? Promise.resolve()
}

/**
 * A stream served by node:http is written straight to the socket: each upstream chunk goes out
 * in the same tick it arrived (chunks of one tick share a syscall), the events are parsed after
 * it is written, and there is no Transform or pipe in between. bench:proxy: about half the CPU
 * of the piped path and a few hundred microseconds less to the first chunk.
 */
function streamToNode(m: MeshInternals, ctx: MeshContext, adapter: ProtocolAdapter, res: Extract<MeshResponse, { kind: 'upstream' }>, nodeRes: ServerResponse): Promise<Response> {
  const body = res.body as Readable
  const hide = !!ctx.meta.core?.hideUsageChunk
  const reader = adapter.streamReader({ hideUsageChunk: hide })
  const parser = new SseParser(reader, hide)
  const estimated = ctx.usage
  price(m, ctx)
  let ended!: () => void
  // a config reload or shutdown waits for streams in flight
  m.track(new Promise<void>((r) => (ended = r)))
  return new Promise<Response>((resolve) => {
    let started = false
    let settled = false
    let corked = false
    let waiting = false
    let stopWatching = () => {}
    const uncork = () => {
      corked = false
      nodeRes.uncork()
    }
    const start = () => {
      started = true
      ctx.status = res.status
      const headers = responseHeaders(m, ctx, res.headers['content-type'] ?? 'text/event-stream', { ...res.headers, 'cache-control': 'no-cache' })
      if (m.hasListeners()) emitResponse(m, ctx, res.status)
      writeHead(m, ctx, nodeRes, res.status, headers)
    }
    const write = (data: Buffer | string) => {
      if (!corked) {
        corked = true
        nodeRes.cork()
        process.nextTick(uncork)
      }
      if (!nodeRes.write(data) && !waiting) {
        // a slow client: stop reading upstream until its socket drains
        waiting = true
        body.pause()
        nodeRes.once('drain', () => {
          waiting = false
          body.resume()
        })
      }
    }
    const onData = (chunk: Buffer) => {
      if (!started) start()
      if (!hide) write(chunk)
      const kept = parser.feed(chunk)
      if (kept) write(kept)
    }
    const finishUp = (failed: boolean) => {
      if (settled) return
      settled = true
      body.off('data', onData)
      stopWatching()
      // ended only once afterResponse is done: close() must not run plugin closers under it
      void settleStream(m, ctx, reader, estimated, res.status, failed).then(ended)
      resolve(kHandled as unknown as Response)
    }
    const onEnd = () => {
      if (!started) start()
      const rest = parser.flush()
      if (rest) write(rest)
      // an upstream that closed cleanly without its last event ([DONE], message_stop, a
      // finishReason) did not complete: the client gets the protocol's error event, not a clean end
      const complete = reader.finish() !== undefined
      if (!complete) write(incompleteStreamEvent(ctx, adapter, 'ended before its final event'))
      nodeRes.end()
      finishUp(!complete)
    }
    const onError = (err: Error) => {
      if (settled) return
      if (!started) {
        settled = true
        body.off('data', onData)
        stopWatching()
        ctx.response = earlyStreamError(m, ctx, err)
        finish(m, ctx, adapter).then(resolve, () => resolve(kHandled as unknown as Response)).finally(ended)
        return
      }
      // mid-stream: the status is sent, so the failure is told as the protocol's error event
      write(incompleteStreamEvent(ctx, adapter, `failed (${err.message})`))
      nodeRes.end()
      finishUp(true)
    }
    body.on('data', onData)
    body.once('end', onEnd)
    body.on('error', onError)
    // the client left: stop reading upstream (aborts the vendor call)
    stopWatching = onClientGone(ctx, () => {
      body.destroy()
      finishUp(true)
    })
  })
}

function incompleteStreamEvent(ctx: MeshContext, adapter: ProtocolAdapter, what: string): string {
  return adapter.streamError(502, 'upstream_stream_error', `${ctx.route.vendor} stream ${what}; the answer is incomplete`)
}

function finishStream(m: MeshInternals, ctx: MeshContext, adapter: ProtocolAdapter, res: Extract<MeshResponse, { kind: 'upstream' }>): Response {
  const hide = !!ctx.meta.core?.hideUsageChunk
  const reader = adapter.streamReader({ hideUsageChunk: hide })
  const tap = new SseTap(reader, hide, () => (reader.finish() ? '' : incompleteStreamEvent(ctx, adapter, 'ended before its final event')))
  const estimated = ctx.usage
  let ended!: () => void
  // a config reload or shutdown waits for streams in flight
  m.track(new Promise<void>((r) => (ended = r)))
  pipeline(res.body as Readable, tap, (err) => {
    // ended only once afterResponse is done: close() must not run plugin closers under it
    void settleStream(m, ctx, reader, estimated, res.status, !!err).then(ended)
  })
  price(m, ctx)
  return send(m, ctx, res.status, tap, res.headers['content-type'] ?? 'text/event-stream', { ...res.headers, 'cache-control': 'no-cache' })
}

/** Resolves when the stream has data (or ends), with the error if it fails first. */
function firstBytes(body: Readable): Promise<Error | undefined> {
  if (body.readableLength > 0 || body.readableEnded) return Promise.resolve(undefined)
  return new Promise((resolve) => {
    const ready = () => {
      body.off('readable', ready)
      resolve(undefined)
    }
    body.on('readable', ready)
    // stays attached: an error between here and pipeline() must not go unhandled
    body.once('error', (err) => {
      body.off('readable', ready)
      resolve(err)
    })
  })
}

// A multi-megabyte prompt costs each plugin tens of milliseconds (hashing, counting, copying):
// for such a request every hook runs in its own turn of the event loop, so the other requests'
// I/O runs in between instead of waiting for the sum
const LARGE_BODY_CHARS = 256 * 1024
const isLarge = (ctx: MeshContext) => (ctx.request?.rawBody?.length ?? 0) > LARGE_BODY_CHARS
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

/**
 * Run a phase's hooks in order; the first hook that answers ends the chain. Stays synchronous
 * until a hook returns a promise, so a phase of sync hooks adds no microtask.
 */
export function runHooks(hooks: Array<(ctx: MeshContext) => unknown>, ctx: MeshContext, from = 0, turned = false): Promise<void> | undefined {
  if (!turned && from < hooks.length && isLarge(ctx)) return nextTurn().then(() => runHooks(hooks, ctx, from, true))
  for (let i = from; i < hooks.length; i++) {
    const r = hooks[i]!(ctx)
    if (isThenable(r)) return Promise.resolve(r).then(() => (ctx.response ? undefined : runHooks(hooks, ctx, i + 1)))
    if (ctx.response) return
    if (i + 1 < hooks.length && isLarge(ctx)) return runHooks(hooks, ctx, i + 1)
  }
}

/** afterResponse: every hook runs even if one fails; failures are logged */
export function runAll(hooks: Array<(ctx: MeshContext) => unknown>, ctx: MeshContext, log: Logger, from = 0, turned = false): Promise<void> | undefined {
  if (!turned && from < hooks.length && isLarge(ctx)) return nextTurn().then(() => runAll(hooks, ctx, log, from, true))
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
    if (i + 1 < hooks.length && isLarge(ctx)) return runAll(hooks, ctx, log, i + 1)
  }
}

/**
 * A storage outage is logged once by the storage layer when it starts; the afterResponse hooks it
 * fails (one per request in flight) would otherwise add a line each
 */
function logAfterFailure(log: Logger, ctx: MeshContext, err: unknown): void {
  if (isStorageUnavailable(err) || (err instanceof PluginError && isStorageUnavailable(err.cause))) log.debug((err as Error).message, { request: ctx.id })
  else log.error((err as Error).message, { request: ctx.id })
}

export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as PromiseLike<unknown>).then === 'function'
}
