// The response path: a finished context becomes bytes for the client, in one place, as h3's
// toResponse does. respond() first settles what the answer is (a vendor body that is not an
// answer, or a stream that dies before its first byte, becomes an error, and the loop goes round
// once more), prices it and runs afterResponse, then writes it once: on the Node response when
// node:http serves the request (no Response object in between), as a web Response otherwise.
// Streams go through one relay whatever they are written to.
import type { ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import { FastResponse } from 'srvx'
import type { MeshInternals } from './app.ts'
import { clientGone, nodeResponseOf, onClientGone } from './client.ts'
import { embeddingsInputTokens } from './embeddings.ts'
import { isStorageUnavailable, StorageUnavailableError } from './errors.ts'
import { headerSafe, headersSafe } from './headers.ts'
import { PIECE_CHARS, parseBufferSliced, stringifySliced, utf8Sliced } from './json-sliced.ts'
import { maskSecrets } from './log.ts'
import { type ProtocolAdapter, ProtocolError, type StreamReader } from './protocols/index.ts'
import { type RenderSteps, SLICED_PARSE_CHARS } from './protocols/shared.ts'
import { recordChain } from './response-chains.ts'
import { Slicer } from './slicer.ts'
import { SseParser } from './stream.ts'
import {
  eventRewriter,
  rewriteAnswer,
  rewriteAnswerSliced,
  rewriteBody,
  rewriteBodySliced,
} from './translate/answer-text.ts'
import { recordTranslated, streamTranslator, type Translation } from './translate/index.ts'
import type { CanonicalAnswer, MeshContext, MeshResponse, Usage } from './types.ts'
import { UpstreamError } from './upstream.ts'

/** What the core keeps per request besides the context plugins see. */
export interface CoreState {
  /** a vendor was asked (even if it never answered): the headers then name it */
  vendorCalled: boolean
  /** the usage chunk the core asked for on the client's behalf is not relayed to it */
  hideUsageChunk: boolean
  /** set when the vendor speaks another protocol than the client (core/translate) */
  translation: Translation | undefined
  /** afterResponse once started: null before, undefined when no plugin hooks it */
  afterRun: Promise<void> | undefined | null
  /** its `request` event went out (or nobody took one then): a `response` event never comes first */
  announced: boolean
}
export type CoreContext = MeshContext & CoreState

export class PluginError extends Error {
  constructor(
    readonly plugin: string,
    readonly hook: string,
    readonly cause: unknown,
  ) {
    super(`plugin "${plugin}" failed in ${hook}: ${cause instanceof Error ? cause.message : String(cause)}`)
  }
}

// h3's marker for "the handler answered on the Node response itself" (what its fromNodeHandler
// resolves to): h3 then writes nothing more. The one place the core speaks h3's internals.
const ANSWERED_ON_NODE = Symbol.for('h3.handled') as unknown as Response

type Upstream = Extract<MeshResponse, { kind: 'upstream' }>
interface Body {
  status: number
  /** pieces: a large answer's bytes, rendered in slices (written in order, their lengths summed) */
  body: string | Buffer | Buffer[]
  contentType: string
  headers?: Record<string, string>
  /** a large answer to render in slices before sending (body is empty until then) */
  rendered?: unknown
  /** a large answer's stream events, rendered in slices before sending (body is empty until then) */
  events?: RenderSteps
  /** a large vendor body (the body) whose text a plugin rewrites (ctx.answerText), in slices before sending */
  rewrite?: true
  /** a large answer the core renders whose text a plugin rewrites: rewritten in slices, then rendered */
  toRewrite?: CanonicalAnswer
}

const zeroUsage = (): Usage => ({ inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 })

export async function respond(m: MeshInternals, ctx: CoreContext, adapter: ProtocolAdapter): Promise<Response> {
  for (;;) {
    const res = ctx.response!
    if (res.kind === 'upstream' && res.stream) {
      const out = await relay(m, ctx, adapter, res)
      if (!(out instanceof Error)) return out
      ctx.response = earlyStreamError(m, ctx, out)
      continue
    }
    if (
      res.kind === 'upstream' &&
      res.status === 200 &&
      !((res.body as Buffer).length > SLICED_PARSE_CHARS
        ? await readAnswerSliced(ctx, adapter, res.body as Buffer)
        : readAnswer(ctx, adapter, res.body as Buffer))
    ) {
      // relayed, a 200 that is not an answer would be the client's problem and unbilled; say so
      const message = `${ctx.route.vendor} answered 200 with a body that is not a ${ctx.protocol} answer`
      m.mesh.log.warn(message, { request: ctx.id })
      ctx.response = errorResponse(m, ctx, new UpstreamError(message, 502, 'upstream_invalid_response'))
      continue
    }
    let body = settle(m, ctx, adapter, res)
    if (body.toRewrite) {
      const rewritten = await rewriteAnswerSliced(ctx.answerText!, body.toRewrite, new Slicer(SLICE_MS))
      body = renderAnswer(ctx, adapter, rewritten, body.headers)
    }
    if (body.rendered !== undefined) body.body = await renderSliced(body.rendered)
    else if (body.events) body.body = await renderEventsSliced(body.events)
    else if (body.rewrite)
      body.body = await rewriteBodySliced(ctx.answerText!, ctx.protocol, body.body as Buffer, new Slicer(SLICE_MS))
    const done = after(m, ctx)
    if (done) await done
    return send(m, ctx, body)
  }
}

/** A whole (not streamed) answer: what it costs, what the events say, and its body. */
function settle(m: MeshInternals, ctx: CoreContext, adapter: ProtocolAdapter, res: MeshResponse): Body {
  switch (res.kind) {
    case 'error':
      ctx.error ??= { status: res.status, type: res.type, message: res.message }
      ctx.status = res.status
      m.mesh.emit('error', {
        id: ctx.id,
        status: res.status,
        type: res.type,
        message: res.message,
        plugin: ctx.error.plugin,
      })
      return {
        status: res.status,
        body: JSON.stringify(adapter.errorBody(res.status, res.type, res.message)),
        contentType: 'application/json',
        headers: res.headers,
      }
    case 'json':
      ctx.status = res.status
      return {
        status: res.status,
        body: JSON.stringify(res.body),
        contentType: 'application/json',
        headers: res.headers,
      }
    case 'answer':
      return settleAnswer(m, ctx, adapter, res)
    case 'upstream': {
      ctx.status = res.status
      if (res.status >= 400) {
        // the vendor's own error, passed through with its status and body
        ctx.error = {
          status: res.status,
          type: 'upstream_error',
          message: `${ctx.route.vendor} answered ${res.status}`,
        }
        m.mesh.emit('error', { id: ctx.id, status: res.status, type: 'upstream_error', message: ctx.error.message })
      }
      price(m, ctx)
      logCall(m, ctx, res.status)
      const raw = res.body as Buffer
      const large = ctx.answerText !== undefined && raw.length > SLICED_PARSE_CHARS
      const out: Body = {
        status: res.status,
        body: ctx.answerText && !large ? rewriteBody(ctx.answerText, ctx.protocol, raw) : raw,
        contentType: res.headers['content-type'] ?? 'application/json',
        headers: res.headers,
      }
      // a body of megabytes: parsed, rewritten and stringified in slices (80-140 ms in one go at 5 MB)
      if (large) out.rewrite = true
      return out
    }
  }
}

/** An answer the core renders: a cache hit, a plugin's or the demo vendor's. */
function settleAnswer(
  m: MeshInternals,
  ctx: CoreContext,
  adapter: ProtocolAdapter,
  res: Extract<MeshResponse, { kind: 'answer' }>,
): Body {
  const answer: CanonicalAnswer = { ...res.answer, model: res.answer.model || ctx.route.model }
  ctx.answer ??= answer
  if (ctx.cache.status === 'bypass' || ctx.cache.status === 'miss') ctx.usage = answer.usage
  price(m, ctx)
  ctx.status = 200
  // a vendor's answer (the demo's, or a translated one) is a call; a plugin's (a dry-run preview) is not
  if (
    ctx.vendorCalled &&
    (ctx.upstream === undefined || ctx.translation) &&
    ctx.cache.status !== 'exact' &&
    ctx.cache.status !== 'semantic'
  )
    logCall(m, ctx, 200)
  // the client's copy only: ctx.answer (what caches keep) stays as the vendor gave it
  if (!ctx.answerText) return renderAnswer(ctx, adapter, answer, res.headers)
  // an answer of megabytes: rewritten in slices before it is rendered (respond)
  if (answerChars(answer) > SLICED_PARSE_CHARS)
    return { status: 200, body: '', contentType: 'application/json', headers: res.headers, toRewrite: answer }
  return renderAnswer(ctx, adapter, rewriteAnswer(ctx.answerText, answer), res.headers)
}

function renderAnswer(
  ctx: CoreContext,
  adapter: ProtocolAdapter,
  answer: CanonicalAnswer,
  headers: Record<string, string> | undefined,
): Body {
  if (!ctx.prompt.stream) {
    const rendered = adapter.render(answer)
    // an answer of megabytes: one JSON.stringify and its encoding held the loop tens of ms
    if (answerChars(answer) > SLICED_PARSE_CHARS)
      return { status: 200, body: '', rendered, contentType: 'application/json', headers }
    return { status: 200, body: JSON.stringify(rendered), contentType: 'application/json', headers }
  }
  const large = answerChars(answer) > SLICED_PARSE_CHARS
  const array = adapter.renderArrayStream?.(answer, ctx.request.search)
  if (array) {
    if (large) return { status: 200, body: '', rendered: array, contentType: 'application/json', headers }
    return { status: 200, body: JSON.stringify(array), contentType: 'application/json', headers }
  }
  const includeUsage = ctx.request.body?.stream_options?.include_usage === true
  const sse = { status: 200, contentType: 'text/event-stream', headers: { 'cache-control': 'no-cache' } }
  // a stream of megabytes: tens of thousands of events, rendered and joined in one go held the loop 0.5 s
  if (large) return { ...sse, body: '', events: adapter.renderStreamSteps(answer, { includeUsage }) }
  return { ...sse, body: adapter.renderStream(answer, { includeUsage }) }
}

/** the characters of an answer's text and its tool calls' arguments (what its hash and its store read) */
export function answerTextChars(answer: CanonicalAnswer): number {
  let n = answer.text.length
  for (let i = 0; i < answer.toolCalls.length; i++) n += answer.toolCalls[i]!.arguments.length
  return n
}

/** answerTextChars and the thinking the vendor's body holds besides: what makes its rendering long */
function answerChars(answer: CanonicalAnswer): number {
  let n = answerTextChars(answer)
  // thinking the vendor's own body holds besides (an Anthropic block, Gemini's thought parts): rendered too
  const body = answer.raw?.body
  const blocks = Array.isArray(body?.content) ? body.content : body?.candidates?.[0]?.content?.parts
  if (Array.isArray(blocks))
    for (const b of blocks) {
      if (typeof b?.thinking === 'string') n += b.thinking.length
      else if (b?.thought === true && typeof b.text === 'string') n += b.text.length
    }
  return n
}

/** a large answer's JSON as UTF-8 pieces, stringified and encoded in slices: the bytes of JSON.stringify */
async function renderSliced(value: unknown): Promise<Buffer[]> {
  const slicer = new Slicer(SLICE_MS)
  // a slice of its own: the work before it in this turn (a cache read's, a translation's) is not counted in its slice
  await slicer.yield()
  const pieces = (await stringifySliced(value, slicer)) ?? []
  return utf8Sliced(pieces, slicer)
}

/** a large answer's stream events, made and joined into pieces of about PIECE_CHARS in slices, as UTF-8: the bytes of renderStream */
async function renderEventsSliced(events: RenderSteps): Promise<Buffer[]> {
  const slicer = new Slicer(SLICE_MS)
  await slicer.yield()
  const pieces: string[] = []
  let run: string[] = []
  let chars = 0
  let n = 0
  for (const e of events) {
    run.push(e)
    if ((chars += e.length) >= PIECE_CHARS) {
      pieces.push(run.join(''))
      run = []
      chars = 0
    }
    if ((++n & 63) === 0) await slicer.pause()
  }
  if (run.length) pieces.push(run.join(''))
  return utf8Sliced(pieces, slicer)
}

// the stream bytes read before the relay gives the loop back (64 KB of small translated events: ~5 ms)
const READ_IN_A_ROW = 128 * 1024
// one slice of the loop for a large answer's decoding, parse and rendering
const SLICE_MS = 10
/**
 * readAnswer for a body of megabytes: decoded and parsed in slices of the event loop (one
 * toString and JSON.parse of 5 MB held it 60 ms), the same value as JSON.parse of the whole.
 */
async function readAnswerSliced(ctx: MeshContext, adapter: ProtocolAdapter, buf: Buffer): Promise<boolean> {
  let json: unknown
  const slicer = new Slicer(SLICE_MS)
  try {
    json = await parseBufferSliced(buf, slicer)
  } catch {
    return false
  }
  // the vendor speaks the client's protocol here: the answer's arguments of megabytes, their text in slices
  await adapter.prepareRead?.(json, slicer)
  return readParsed(ctx, adapter, json)
}

/** Read a 200 body into ctx.answer and ctx.usage; false when it is not JSON of the protocol's answer. */
function readAnswer(ctx: MeshContext, adapter: ProtocolAdapter, buf: Buffer): boolean {
  let json: any
  try {
    json = JSON.parse(buf.toString('utf8'))
  } catch {
    return false
  }
  return readParsed(ctx, adapter, json)
}

function readParsed(ctx: MeshContext, adapter: ProtocolAdapter, json: any): boolean {
  if (ctx.operation === 'embeddings') {
    const tokens = embeddingsInputTokens(ctx.protocol, json)
    if (tokens === null) return false
    // without usage in the answer (Gemini) the estimate stands, marked estimated
    if (tokens !== undefined) ctx.usage = { ...zeroUsage(), inputTokens: tokens }
    return true
  }
  try {
    ctx.answer = adapter.read(json)
  } catch {
    return false
  }
  ctx.usage = reportedOrCounted(ctx, ctx.answer, ctx.usage)
  return true
}

/**
 * Run afterResponse once; a failing plugin there is logged, the client's answer stands.
 * undefined when no plugin hooks it: the caller then has nothing to await (no microtask hop).
 */
function after(m: MeshInternals, ctx: CoreContext): Promise<void> | undefined {
  if (ctx.afterRun !== null) return ctx.afterRun
  // before the plugins: a client's next turn may name this id as soon as it has the answer
  const recorded =
    ctx.protocol !== 'responses'
      ? undefined
      : ctx.translation
        ? recordTranslated(ctx, ctx.translation)
        : recordChain(ctx)
  let running = m.runPhase('afterResponse', ctx)?.catch((err) => {
    m.mesh.log.error(err instanceof Error ? err.message : String(err), { request: ctx.id })
  })
  if (recorded) running = running ? Promise.all([running, recorded]).then(() => {}) : recorded
  ctx.afterRun = running
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

/**
 * A latency in ms to the microsecond: performance.now()'s 17 digits cost every event's JSON (and
 * every dashboard's socket) ~20 bytes and a slow number-to-text, for precision nobody reads.
 */
function toMicros(ms: number): number {
  return Math.round(ms * 1000) / 1000
}

function logCall(m: MeshInternals, ctx: MeshContext, status: number) {
  if (m.hasListeners('llm_call'))
    m.mesh.emit('llm_call', {
      id: ctx.id,
      vendor: ctx.route.vendor,
      model: ctx.answer?.model || ctx.route.model,
      status,
      latencyMs: toMicros(ctx.upstream?.latencyMs ?? performance.now() - ctx.startedAt),
      usage: ctx.usage,
      costUsd: ctx.cost.usd,
      stream: ctx.prompt.stream,
    })
}

// ---------------------------------------------------------------- errors

/** Keys (by shape and the configured values) and URL credentials masked, for error text sent to clients. */
function clientSafe(m: MeshInternals, message: string): string {
  let out = maskSecrets(message)
  for (const v of Object.values(m.mesh.config.vendors ?? {})) {
    const key = v?.apiKey
    if (key && key.length >= 8 && out.includes(key)) out = out.split(key).join('***')
  }
  return out
}

export function errorResponse(m: MeshInternals, ctx: MeshContext, err: unknown): MeshResponse {
  if (err instanceof ProtocolError) return { kind: 'error', status: err.status, type: err.type, message: err.message }
  if (err instanceof UpstreamError) return { kind: 'error', status: err.status, type: err.type, message: err.message }
  if (err instanceof StorageUnavailableError)
    return { kind: 'error', status: 503, type: 'storage_unavailable', message: err.message }
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
  return {
    kind: 'error',
    status: 500,
    type: 'internal_error',
    message: 'internal error in AgentMesh; see the proxy log for request ' + ctx.id,
  }
}

/**
 * A stream that dies before its first bytes becomes a 502 in the client's protocol, not the
 * server's empty 500 or an empty 200 (no status has been sent yet).
 */
function earlyStreamError(m: MeshInternals, ctx: MeshContext, err: Error): MeshResponse {
  return errorResponse(
    m,
    ctx,
    clientGone(ctx)
      ? new UpstreamError('client closed the request', 499, 'client_closed_request')
      : new UpstreamError(
          `${ctx.route.vendor} stream failed before anything reached the client (${err.message})`,
          502,
          'upstream_stream_error',
        ),
  )
}

// ---------------------------------------------------------------- headers and writing

/** the governance headers (and the response's own), in one object: this runs on every response */
function responseHeaders(
  m: MeshInternals,
  ctx: CoreContext,
  contentType: string,
  extra?: Record<string, string>,
): Record<string, string> {
  const h: Record<string, string> = {}
  if (extra) for (const k in extra) h[k] = extra[k]!
  h['x-agentmesh-request-id'] = ctx.id
  // who was billed (from the key, the headers or the User-Agent)
  h['x-agentmesh-team'] = headerSafe(ctx.identity.team)
  h['x-agentmesh-user'] = headerSafe(ctx.identity.user)
  h['x-agentmesh-tool'] = headerSafe(ctx.identity.tool)
  h['x-agentmesh-model'] = headerSafe(ctx.answer?.model || ctx.route.model || ctx.prompt.model)
  if (ctx.response?.kind === 'error' && !ctx.vendorCalled) {
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

/**
 * The request's `request` event, once: when its lifecycle starts, or before its `response` for
 * one answered before that (a body that does not parse, a refused key). A live view that folds
 * (core/events-fold.ts) decides at `request` which requests it shows whole.
 */
export function announce(m: MeshInternals, ctx: CoreContext): void {
  if (ctx.announced) return
  ctx.announced = true
  // asked with the id: a folding live view decides here whether it shows this request
  if (m.hasListeners('request', ctx.id))
    m.mesh.emit('request', {
      id: ctx.id,
      identity: ctx.identity,
      protocol: ctx.protocol,
      model: ctx.prompt.model,
      stream: ctx.prompt.stream,
    })
}

/** the request's outcome, once settled: a whole body's when it is sent, a stream's at its end */
function emitResponse(m: MeshInternals, ctx: CoreContext, status: number) {
  announce(m, ctx)
  const u = ctx.usage
  m.mesh.emit('response', {
    id: ctx.id,
    status,
    cache: ctx.cache.status,
    latencyMs: toMicros(performance.now() - ctx.startedAt),
    identity: ctx.identity,
    protocol: ctx.protocol,
    stream: ctx.prompt.stream,
    requested: ctx.prompt.model,
    vendor: ctx.route.vendor,
    model: ctx.answer?.model || ctx.route.model,
    tokens: u.inputTokens + u.outputTokens,
    // the four counts alone: the usage object can carry an `estimated` flag and vendor extras
    usage: {
      inputTokens: u.inputTokens,
      outputTokens: u.outputTokens,
      cacheReadTokens: u.cacheReadTokens,
      cacheWriteTokens: u.cacheWriteTokens,
    },
    costUsd: ctx.cost.usd,
    savedUsd: ctx.cost.savedUsd,
    vendorCalled: ctx.vendorCalled,
    upstreamMs: ctx.upstream && toMicros(ctx.upstream.latencyMs),
    aborted: ctx.aborted || undefined,
  })
}

/**
 * Start the response: status and headers, with the response event for a whole body (a stream's
 * comes at its end, when its usage and cost are known: `streamed`).
 */
function head(
  m: MeshInternals,
  ctx: CoreContext,
  status: number,
  contentType: string,
  extra?: Record<string, string>,
  streamed = false,
): Record<string, string> {
  ctx.status = status
  const headers = responseHeaders(m, ctx, contentType, extra)
  if (!streamed && m.hasListeners('response')) emitResponse(m, ctx, status)
  return headers
}

/** A whole body, written once. Exported for the routes that answer without the lifecycle. */
export function send(m: MeshInternals, ctx: CoreContext, b: Body): Response {
  const headers = head(m, ctx, b.status, b.contentType, b.headers)
  const nodeRes = nodeResponseOf(ctx)
  if (Array.isArray(b.body)) return sendPieces(m, ctx, nodeRes, b.status, headers, b.body)
  if (!nodeRes) return new FastResponse(b.body as any, { status: b.status, headers }) as unknown as Response
  // served by node:http: one writeHead and one end, no Response object in between
  if (!nodeRes.destroyed && !nodeRes.headersSent) {
    headers['content-length'] = String(typeof b.body === 'string' ? Buffer.byteLength(b.body) : b.body.length)
    if (writeHead(m, ctx, nodeRes, b.status, headers)) nodeRes.end(b.body)
  }
  return ANSWERED_ON_NODE
}

/** A large body in pieces: written one after the other (corked: one syscall), the same bytes and length. */
function sendPieces(
  m: MeshInternals,
  ctx: CoreContext,
  nodeRes: ServerResponse | undefined,
  status: number,
  headers: Record<string, string>,
  pieces: Buffer[],
): Response {
  // a web Response: the pieces in one buffer (a copy, no encoding)
  if (!nodeRes) return new FastResponse(Buffer.concat(pieces) as any, { status, headers }) as unknown as Response
  if (nodeRes.destroyed || nodeRes.headersSent) return ANSWERED_ON_NODE
  let length = 0
  for (const p of pieces) length += p.length
  headers['content-length'] = String(length)
  if (!writeHead(m, ctx, nodeRes, status, headers)) return ANSWERED_ON_NODE
  nodeRes.cork()
  for (const p of pieces) nodeRes.write(p)
  nodeRes.end()
  return ANSWERED_ON_NODE
}

/**
 * writeHead that cannot throw into the stream path (a throw there once ended the process): a
 * value Node refuses is encoded and tried again; false when the response could not be started.
 */
function writeHead(
  m: MeshInternals,
  ctx: MeshContext,
  nodeRes: ServerResponse,
  status: number,
  headers: Record<string, string>,
): boolean {
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

// ---------------------------------------------------------------- streams

/** Where a relayed stream is written: the Node response, or a web stream for a web Response. */
interface Sink {
  /** status and headers; the response exists from here on */
  start(status: number, headers: Record<string, string>): void
  /** false: the client reads slowly; wait for onDrain before more */
  write(data: Buffer | string): boolean
  onDrain(fn: () => void): void
  end(): void
}

/**
 * Each upstream chunk goes out in the same tick it arrived (chunks of one tick share a syscall on
 * Node), its events are parsed after it is written, and there is no Transform or pipe in between.
 */
function nodeSink(m: MeshInternals, ctx: MeshContext, nodeRes: ServerResponse): Sink {
  let corked = false
  const uncork = () => {
    corked = false
    nodeRes.uncork()
  }
  return {
    start: (status, headers) => void writeHead(m, ctx, nodeRes, status, headers),
    write(data) {
      if (!corked) {
        corked = true
        nodeRes.cork()
        process.nextTick(uncork)
      }
      return nodeRes.write(data)
    },
    onDrain: (fn) => void nodeRes.once('drain', fn),
    end: () => void nodeRes.end(),
  }
}

/** A web Response whose body the relay fills; `opened` receives it when the stream starts. */
function webSink(opened: (res: Response) => void, cancelled: () => void): Sink {
  let controller!: ReadableStreamDefaultController<Uint8Array>
  let drained: (() => void) | undefined
  let closed = false
  const body = new ReadableStream<Uint8Array>(
    {
      start: (c) => void (controller = c),
      pull() {
        const fn = drained
        drained = undefined
        fn?.()
      },
      cancel() {
        closed = true
        cancelled()
      },
    },
    { highWaterMark: 64 * 1024, size: (chunk) => chunk.byteLength },
  )
  return {
    start: (status, headers) => opened(new FastResponse(body, { status, headers }) as unknown as Response),
    write(data) {
      if (closed) return true
      controller.enqueue(typeof data === 'string' ? Buffer.from(data) : data)
      return (controller.desiredSize ?? 1) > 0
    },
    onDrain: (fn) => void (drained = fn),
    end() {
      if (closed) return
      closed = true
      controller.close()
    },
  }
}

/**
 * How a relayed stream is read: by the client protocol's reader, the chunks forwarded as they came
 * (`forward`; the kept events only, when the core hides the usage chunk it asked for), or, for
 * another protocol's stream, by a translator whose events (`take`) replace every vendor event.
 */
function streamReading(
  ctx: CoreContext,
  adapter: ProtocolAdapter,
): { reader: StreamReader; parser: SseParser; forward: boolean; take?: () => string; end?: () => string } {
  const hide = ctx.hideUsageChunk
  if (ctx.translation) {
    const { reader, take, end } = streamTranslator(ctx.translation, ctx.answerText)
    return { reader, parser: new SseParser(reader, true), forward: false, take, end }
  }
  const reader = adapter.streamReader({ hideUsageChunk: hide })
  if (ctx.answerText) return rewrittenStream(ctx, reader, ctx.answerText)
  return { reader, parser: new SseParser(reader, hide), forward: !hide }
}

/**
 * A stream whose answer text a plugin rewrites (ctx.answerText): every event the protocol's reader
 * keeps is rewritten in the client's protocol instead of forwarded; the reader still builds the
 * vendor's own answer for usage, caches and the audit.
 */
function rewrittenStream(ctx: CoreContext, inner: StreamReader, at: NonNullable<CoreContext['answerText']>) {
  const rewriter = eventRewriter(ctx.protocol, at)
  let out = ''
  const reader: StreamReader = {
    event(data) {
      if (inner.event(data)) out += rewriter.event(data)
      return false
    },
    // an event of megabytes: rewritten in slices, handed on (flush) a piece at a time, a turn each:
    // the socket is corked for the turn, and all a turn writes is encoded at once when it uncorks
    async eventSliced(data, slicer, flush) {
      const keep = inner.eventSliced ? await inner.eventSliced(data, slicer, flush) : inner.event(data)
      // a small event (the reader is heavy: a tool input of megabytes waits for its stop) at once
      if (keep && data.length <= SLICED_PARSE_CHARS) out += rewriter.event(data)
      else if (keep)
        for (const piece of await rewriter.eventSliced(data, slicer)) {
          out += piece
          flush()
          await slicer.yield()
        }
      return false
    },
    // the rewriter parses each event of megabytes itself: the relay's parse is for the reader, which
    // may say it does not read some (a Responses stream's part events)
    readsValue: inner.readsValue && ((data) => inner.readsValue!(data)),
    heavy: () => inner.heavy?.() === true,
    finish: () => inner.finish(),
    partialUsage: () => inner.partialUsage(),
  }
  const take = () => {
    const s = out
    out = ''
    return s
  }
  return { reader, parser: new SseParser(reader, true), forward: false, take, end: () => rewriter.end() }
}

/**
 * Relay a vendor's stream to the client as it comes, reading its events for the answer and usage.
 * Resolves with the response (on Node, once the stream ended), or with the error when the stream
 * failed before its first byte: nothing was sent, so the caller answers an error instead.
 * One closure over 80 lines: its handlers (data, end, error, client gone) share the stream's state.
 */
function relay(m: MeshInternals, ctx: CoreContext, adapter: ProtocolAdapter, res: Upstream): Promise<Response | Error> {
  const body = res.body as Readable
  const { reader, parser, forward, take, end } = streamReading(ctx, adapter)
  const estimated = ctx.usage
  price(m, ctx)
  let ended!: () => void
  // a config reload or shutdown waits for streams in flight
  m.track(new Promise<void>((r) => (ended = r)))
  return new Promise<Response | Error>((resolve) => {
    let started = false
    let settled = false
    let waiting = false
    let stopWatching = () => {}
    const gone = () => {
      body.destroy()
      finishUp(true)
    }
    const nodeRes = nodeResponseOf(ctx)
    const sink = nodeRes ? nodeSink(m, ctx, nodeRes) : webSink(resolve, gone)
    const write = (data: Buffer | string) => {
      if (!sink.write(data) && !waiting) {
        // a slow client: stop reading upstream until it catches up
        waiting = true
        body.pause()
        sink.onDrain(() => {
          waiting = false
          body.resume()
        })
      }
    }
    const start = () => {
      started = true
      sink.start(
        res.status,
        head(
          m,
          ctx,
          res.status,
          res.headers['content-type'] ?? 'text/event-stream',
          { ...res.headers, 'cache-control': 'no-cache' },
          true,
        ),
      )
    }
    const stop = () => {
      settled = true
      body.off('data', onData)
      stopWatching()
    }
    const finishUp = (failed: boolean, answer?: CanonicalAnswer) => {
      if (settled) return
      stop()
      // ended only once afterResponse is done: close() must not run plugin closers under it
      void settleStream(m, ctx, reader, estimated, res.status, failed, answer).then(ended)
      // a web client that left before the first byte gets a response nobody reads
      resolve(nodeRes ? ANSWERED_ON_NODE : (new FastResponse(null, { status: 499 }) as unknown as Response))
    }
    // an event of megabytes coming: chunks are read in slices, in order, the upstream paused meanwhile
    let busy: Promise<void> | undefined
    let queued = 0
    let slicer: Slicer | undefined
    const kept = (k: string) => {
      const s = take ? k + take() : k
      if (s && !settled) write(s)
    }
    const feedLater = (chunk: Buffer) => {
      queued++
      body.pause()
      const s = (slicer ??= new Slicer(SLICE_MS))
      busy = (busy ?? Promise.resolve())
        .then(() => (settled ? undefined : parser.feedSliced(chunk, s, kept)))
        .catch((err: Error) => onError(err))
        .then(() => {
          if (--queued) return
          busy = undefined
          if (!waiting && !settled) body.resume()
        })
    }
    // undici reads all a socket holds in one turn: megabytes of small events would be read in one
    // go, so the loop is given back after every READ_IN_A_ROW bytes (a small stream never is)
    let inARow = 0
    const breathe = () => {
      inARow = 0
      if (!waiting && !busy && !settled) body.resume()
    }
    const onData = (chunk: Buffer) => {
      if (!started) start()
      if (forward) write(chunk)
      if (parser.heavy(chunk) || busy) return feedLater(chunk)
      kept(parser.feed(chunk))
      if ((inARow += chunk.length) > READ_IN_A_ROW) {
        body.pause()
        setImmediate(breathe)
      }
    }
    const onEnd = (): void => {
      if (busy) return void busy.then(onEnd)
      if (!started) start()
      const rest = parser.flush() + (take ? take() : '') + (end ? end() : '')
      if (rest) write(rest)
      // an upstream that closed cleanly without its last event ([DONE], message_stop, a
      // finishReason) did not complete: the client gets the protocol's error event, not a clean end
      // made once: each finish() builds the answer again (a flat copy of a text of megabytes)
      const answer = reader.finish()
      if (!answer) write(incompleteStreamEvent(ctx, adapter, 'ended before its final event'))
      sink.end()
      finishUp(!answer, answer)
    }
    const onError = (err: Error) => {
      if (settled) return
      if (!started) {
        stop()
        ended()
        resolve(err)
        return
      }
      // mid-stream: the status is sent, so the failure is told as the protocol's error event
      write(incompleteStreamEvent(ctx, adapter, `failed (${err.message})`))
      sink.end()
      finishUp(true)
    }
    body.on('data', onData)
    body.once('end', onEnd)
    body.on('error', onError)
    // the client left: stop reading upstream (aborts the vendor call)
    stopWatching = onClientGone(ctx, gone)
  })
}

function incompleteStreamEvent(ctx: MeshContext, adapter: ProtocolAdapter, what: string): string {
  return adapter.streamError(
    502,
    'upstream_stream_error',
    `${ctx.route.vendor} stream ${what}; the answer is incomplete`,
  )
}

/**
 * The usage the vendor reported; when it reported none (a server that ignores
 * `stream_options.include_usage`, a JSON answer without `usage`), the estimated input and the
 * counted answer, marked estimated: a call is never billed at zero.
 */
function reportedOrCounted(ctx: MeshContext, answer: CanonicalAnswer, estimated: Usage): Usage {
  const u = answer.usage
  if (u.inputTokens || u.outputTokens) return u
  let text = answer.text
  for (const t of answer.toolCalls) text += t.name + t.arguments
  return {
    inputTokens: estimated.inputTokens,
    outputTokens: ctx.mesh.tokens.count(text, answer.model || ctx.route.model),
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    estimated: true,
  }
}

/** What the stream's end means for the request: the answer and usage, or an aborted request. */
function settleStream(
  m: MeshInternals,
  ctx: CoreContext,
  reader: StreamReader,
  estimated: Usage,
  status: number,
  failed: boolean,
  finished?: CanonicalAnswer,
): Promise<void> {
  const answer = failed ? undefined : (finished ?? reader.finish())
  if (answer) {
    ctx.answer = answer
    ctx.usage = reportedOrCounted(ctx, answer, estimated)
  } else {
    ctx.aborted = true
    const seen = reader.partialUsage()
    // settle on what the vendor reported so far, at least the estimated input
    ctx.usage = {
      ...seen,
      inputTokens: Math.max(seen.inputTokens, estimated.inputTokens),
      estimated: !seen.inputTokens,
    }
    if (!clientGone(ctx))
      ctx.error = {
        status: 502,
        type: 'upstream_stream_error',
        message: `${ctx.route.vendor} stream ended before completion`,
      }
  }
  price(m, ctx)
  logCall(m, ctx, status)
  if (m.hasListeners('response')) emitResponse(m, ctx, status)
  return after(m, ctx) ?? Promise.resolve()
}
