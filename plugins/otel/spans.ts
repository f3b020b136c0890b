// One finished request as OpenTelemetry spans, written after the answer went out with the times
// the hooks noted: the request span (GenAI semantic conventions plus agentmesh.*), a child for the
// cache lookup and a child for the upstream call. Attribute names as in the GenAI conventions
// (gen_ai.*, still "development" there, so written out rather than imported from the incubating set).
//
// Each span is known whole only after the request ended, so none goes through a Tracer (whose
// live-span machinery was a third of the plugin's cost) nor through the SDK's span objects and
// exporter (whose serializer was 40% of what was left, see otlp.ts): each is written straight to
// its OTLP/JSON text. What is exported is what the SDK exported: the same fields, the parent-based
// sampler's decision (an unsampled client trace: no span of ours), the ids the vendor was told in
// its traceparent.
import { randomBytes } from 'node:crypto'
import type { MeshContext } from '../../core/types.ts'
import * as otlp from './otlp.ts'

// the imported functions taken once: under the TypeScript loader (jiti) every use of an imported
// binding is a property read through its module wrapper, several per span
const { nanos, num, str } = otlp
const repeatedStr = otlp.repeatedStr

/** a W3C trace context: the client's traceparent */
export interface TraceParent {
  traceId: string
  spanId: string
  /** the sampled bit */
  traceFlags: number
}

/**
 * performance.now() values the hooks noted on the request; `upstream`: the trace and span ids
 * chosen before the vendor call, sent to the vendor as its traceparent and given to the spans
 */
export interface Marks {
  start: number
  cacheStart?: number
  cacheEnd?: number
  routeAt?: number
  end: number
  /** the client's traceparent */
  parent?: TraceParent
  upstream?: { traceId: string; spanId: string }
}

// random ids sliced from a pooled hex text: one randomBytes and one hex conversion per ~128
// requests instead of a hex conversion (a call into C++) per id
const POOL_BYTES = 4096
let pool = ''
let poolAt = 0
const ZERO_TRACE = '0'.repeat(32)
const ZERO_SPAN = '0'.repeat(16)

/** `bytes` random bytes as hex; never all zeros (an invalid W3C id) */
function randomHex(bytes: 8 | 16): string {
  const chars = bytes * 2
  if (poolAt + chars > pool.length) {
    pool = randomBytes(POOL_BYTES).toString('hex')
    poolAt = 0
  }
  const id = pool.slice(poolAt, poolAt + chars)
  poolAt += chars
  return id === ZERO_TRACE || id === ZERO_SPAN ? randomHex(bytes) : id
}

/**
 * The ids of the upstream call's span, chosen before the call: the client's trace (when it sent a
 * sampled traceparent) or a new one. undefined when the client's trace is not sampled: then no
 * span of ours is exported, and the vendor gets the client's traceparent as it came.
 */
export function chooseUpstreamIds(parent: TraceParent | undefined): { traceId: string; spanId: string } | undefined {
  if (parent && !(parent.traceFlags & 1)) return undefined
  return { traceId: parent ? parent.traceId : randomHex(16), spanId: randomHex(8) }
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** the client's W3C traceparent as the parent of the request span; malformed or all-zero ids are ignored */
export function parentOf(header: string | null): TraceParent | undefined {
  const m = header ? TRACEPARENT.exec(header.trim()) : null
  if (!m || m[1] === ZERO_TRACE || m[2] === ZERO_SPAN) return undefined
  return { traceId: m[1]!, spanId: m[2]!, traceFlags: Number.parseInt(m[3]!, 16) & 1 }
}

const PROVIDERS: Record<string, string> = {
  openai: 'openai',
  anthropic: 'anthropic',
  google: 'gcp.gemini',
  demo: 'agentmesh.demo',
}

// OTLP's span kinds (the API's + 1) and flags: the sampled bit, and "whether the parent is
// remote is known" (0x100), with "it is" (0x200) when the parent is the client's
const INTERNAL = 1
const SERVER = 2
const CLIENT = 3
const LOCAL_PARENT = 0x101
const REMOTE_PARENT = 0x301
const UNSET = '{"code":0}'

/**
 * one span as the official exporter's JSON writes it (its field order), without the fields that
 * hold OTLP's defaults (no dropped counts, no events, no links: proto3 JSON omits them, and every
 * OTLP receiver reads them as absent); `start` and `end` are nanos() texts
 */
function span(
  traceId: string,
  spanId: string,
  parentId: string | undefined,
  name: string,
  kind: number,
  start: string,
  end: string,
  attributes: string,
  status: string,
  flags: number,
): string {
  return `{"traceId":"${traceId}","spanId":"${spanId}"${parentId ? `,"parentSpanId":"${parentId}"` : ''},"name":${JSON.stringify(name)},"kind":${kind},"startTimeUnixNano":"${start}","endTimeUnixNano":"${end}","attributes":[${attributes}],"status":${status},"flags":${flags}}`
}

// the attributes whose values repeat across requests, each value's text made once
const OPERATION = repeatedStr('gen_ai.operation.name')
const PROVIDER = repeatedStr('gen_ai.provider.name')
const REQUEST_MODEL = repeatedStr('gen_ai.request.model')
const RESPONSE_MODEL = repeatedStr('gen_ai.response.model')
const TEAM = repeatedStr('agentmesh.team')
const USER = repeatedStr('agentmesh.user')
const TOOL = repeatedStr('agentmesh.tool')
const CACHE = repeatedStr('agentmesh.cache')

/** the request span's attributes, in the order the SDK's span kept them */
function requestAttributes(ctx: MeshContext, operation: string, provider: string, error: string | undefined): string {
  const u = ctx.usage
  const hit = ctx.cache.status === 'exact' || ctx.cache.status === 'semantic'
  let a = `${OPERATION(operation)},${PROVIDER(provider)},${REQUEST_MODEL(ctx.prompt?.model ?? '')},${TEAM(ctx.identity.team)},${USER(ctx.identity.user)},${TOOL(ctx.identity.tool)},${CACHE(ctx.cache.status)},${num('agentmesh.cost_usd', ctx.cost.usd)},${num('agentmesh.saved_usd', ctx.cost.savedUsd)},${str('agentmesh.request_id', ctx.id)},${num('http.response.status_code', ctx.status ?? 0)}`
  if (ctx.answer?.model) a += `,${RESPONSE_MODEL(ctx.answer.model)}`
  if (!hit && !u.estimated) {
    a += `,${num('gen_ai.usage.input_tokens', u.inputTokens)},${num('gen_ai.usage.output_tokens', u.outputTokens)}`
    if (u.cacheReadTokens) a += `,${num('gen_ai.usage.cache_read.input_tokens', u.cacheReadTokens)}`
    if (u.cacheWriteTokens) a += `,${num('gen_ai.usage.cache_creation.input_tokens', u.cacheWriteTokens)}`
  }
  if (ctx.cache.similarity !== undefined) a += `,${num('agentmesh.cache.similarity', ctx.cache.similarity)}`
  const conversation = ctx.request.headers.get('x-agentmesh-session') ?? ctx.request.headers.get('x-session-id')
  if (conversation) a += `,${str('gen_ai.conversation.id', conversation.slice(0, 128))}`
  if (error !== undefined) a += `,${str('error.type', error)}`
  return a
}

/** the request's spans, children first (as each was exported when it ended), to `out` in one text */
export function emitSpans(out: (spans: string, count: number) => void, ctx: MeshContext, marks: Marks): void {
  const parent = marks.parent
  // the parent-based sampler: an unsampled client trace records no span of ours
  if (parent && !(parent.traceFlags & 1)) return
  const operation = ctx.operation === 'embeddings' ? 'embeddings' : 'chat'
  const provider = PROVIDERS[ctx.route.vendor] ?? ctx.route.vendor
  const failed = (ctx.status ?? 0) >= 400 || ctx.aborted
  const error = failed ? (ctx.error?.type ?? (ctx.aborted ? 'aborted' : String(ctx.status))) : undefined
  const status = !failed
    ? UNSET
    : ctx.error?.type === undefined
      ? '{"code":2}'
      : `{"code":2,"message":${JSON.stringify(ctx.error.type)}}`
  // no client trace: the request span starts the trace the vendor was already told about
  const traceId = parent?.traceId ?? marks.upstream?.traceId ?? randomHex(16)
  const self = randomHex(8)
  // each distinct time's text made once (the spans share their ends); as the SDK, an end before
  // the start is a zero-length span
  const { start, end, routeAt, cacheStart } = marks
  const startN = nanos(start)
  const endN = end > start ? nanos(end) : startN
  const routeN = routeAt === undefined ? undefined : nanos(routeAt)
  let text = ''
  let count = 1
  if (cacheStart !== undefined) {
    const to = marks.cacheEnd ?? routeAt ?? end
    const fromN = nanos(cacheStart)
    const toN = !(to > cacheStart) ? fromN : to === routeAt ? routeN! : to === end ? endN : nanos(to)
    text = `${span(traceId, randomHex(8), self, 'agentmesh.cache_lookup', INTERNAL, fromN, toN, CACHE(ctx.cache.status), UNSET, LOCAL_PARENT)},`
    count++
  }
  if (ctx.upstream && routeAt !== undefined) {
    // the span id the vendor received as the parent in its traceparent
    const attributes = `${OPERATION(operation)},${PROVIDER(provider)},${REQUEST_MODEL(ctx.route.model)},${num('http.response.status_code', ctx.upstream.status)}`
    const spanId = marks.upstream?.spanId ?? randomHex(8)
    const toN = end > routeAt ? (end > start ? endN : nanos(end)) : routeN!
    text += `${span(traceId, spanId, self, `${operation} ${ctx.route.model}`, CLIENT, routeN!, toN, attributes, UNSET, LOCAL_PARENT)},`
    count++
  }
  const name = `${operation} ${ctx.prompt?.model ?? ''}`.trim()
  const attributes = requestAttributes(ctx, operation, provider, error)
  const flags = parent ? REMOTE_PARENT : LOCAL_PARENT
  out(text + span(traceId, self, parent?.spanId, name, SERVER, startN, endN, attributes, status, flags), count)
}
