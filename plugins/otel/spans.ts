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
const { flat, nanos, numAfterComma, repeatedStr, strAfterComma } = otlp

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

// random ids sliced from a pooled hex text: one randomBytes and one hex conversion per ~1,000
// requests (32 random bytes each) instead of a hex conversion (a call into C++) per id. A fill
// costs ~6 µs plus the bytes: 4 KB pools were 55 ns a request, 32 KB ones are ~14
const POOL_BYTES = 32 * 1024
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
 * OTLP receiver reads them as absent); `start` and `end` are nanos() texts. The cache lookup's
 * span only: the other two are written from their model's texts (below).
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
const CACHE = repeatedStr('agentmesh.cache')
// the request span's other attributes, each text with the comma before it
const RESPONSE_MODEL = repeatedStr('gen_ai.response.model', 1000, ',')
const TEAM = repeatedStr('agentmesh.team', 1000, ',')
const USER = repeatedStr('agentmesh.user', 1000, ',')
const TOOL = repeatedStr('agentmesh.tool', 1000, ',')
const CACHE_AFTER = repeatedStr('agentmesh.cache', 1000, ',')
const COST = numAfterComma('agentmesh.cost_usd')
const SAVED = numAfterComma('agentmesh.saved_usd')
const REQUEST_ID = strAfterComma('agentmesh.request_id')
const STATUS_CODE = numAfterComma('http.response.status_code')
const INPUT_TOKENS = numAfterComma('gen_ai.usage.input_tokens')
const OUTPUT_TOKENS = numAfterComma('gen_ai.usage.output_tokens')
const CACHE_READ_TOKENS = numAfterComma('gen_ai.usage.cache_read.input_tokens')
const CACHE_WRITE_TOKENS = numAfterComma('gen_ai.usage.cache_creation.input_tokens')
const SIMILARITY = numAfterComma('agentmesh.cache.similarity')
const CONVERSATION = strAfterComma('gen_ai.conversation.id')
const ERROR_TYPE = strAfterComma('error.type')

/**
 * The text around a span's times that only its operation, vendor and model decide: its name and
 * kind, and the first attributes (operation, provider, model). Made once per model, flat: a span
 * is then a few dozen pieces instead of a hundred (each piece is walked again when the text is
 * written into its batch, see otlp.ts flat()).
 */
interface ModelTexts {
  /** `","name":…,"kind":3,"startTimeUnixNano":"` of the upstream call's span */
  clientHead: string
  /** `","attributes":[operation,provider,model,{status code's key}` up to its value */
  clientAttributes: string
  /** the request span's name and kind, as clientHead */
  requestHead: string
  /** `","attributes":[operation,provider,request model` */
  requestAttributes: string
}

// by operation, then vendor, then model; models are the client's to name: bounded as repeatedStr
const MAX_MODELS = 1000
const byOperation = new Map<string, Map<string, Map<string, ModelTexts>>>()

function textsOf(operation: string, vendor: string, model: string): ModelTexts {
  let byVendor = byOperation.get(operation)
  if (byVendor === undefined) byOperation.set(operation, (byVendor = new Map()))
  let byModel = byVendor.get(vendor)
  if (byModel === undefined) byVendor.set(vendor, (byModel = new Map()))
  let t = byModel.get(model)
  if (t === undefined) {
    if (byModel.size >= MAX_MODELS) byModel.clear()
    const provider = PROVIDERS[vendor] ?? vendor
    const first = `${OPERATION(operation)},${PROVIDER(provider)},${REQUEST_MODEL(model)}`
    t = {
      clientHead: flat(`","name":${JSON.stringify(`${operation} ${model}`)},"kind":${CLIENT},"startTimeUnixNano":"`),
      clientAttributes: flat(`","attributes":[${first},{"key":"http.response.status_code","value":{"intValue":`),
      requestHead: flat(
        `","name":${JSON.stringify(`${operation} ${model}`.trim())},"kind":${SERVER},"startTimeUnixNano":"`,
      ),
      requestAttributes: flat(`","attributes":[${first}`),
    }
    byModel.set(model, t)
  }
  return t
}

// what ends a span whose status is unset, by its flags
const UNSET_LOCAL_END = `],"status":${UNSET},"flags":${LOCAL_PARENT}}`
const UNSET_REMOTE_END = `],"status":${UNSET},"flags":${REMOTE_PARENT}}`
// the upstream call's span after its status code's value
const CLIENT_END = `}}${UNSET_LOCAL_END}`

/** the request span's attributes after its first three (ModelTexts), in the order the SDK's span kept them */
function requestAttributes(ctx: MeshContext, error: string | undefined): string {
  const u = ctx.usage
  const hit = ctx.cache.status === 'exact' || ctx.cache.status === 'semantic'
  let a = `${TEAM(ctx.identity.team)}${USER(ctx.identity.user)}${TOOL(ctx.identity.tool)}${CACHE_AFTER(ctx.cache.status)}${COST(ctx.cost.usd)}${SAVED(ctx.cost.savedUsd)}${REQUEST_ID(ctx.id)}${STATUS_CODE(ctx.status ?? 0)}`
  if (ctx.answer?.model) a += RESPONSE_MODEL(ctx.answer.model)
  if (!hit && !u.estimated) {
    a += `${INPUT_TOKENS(u.inputTokens)}${OUTPUT_TOKENS(u.outputTokens)}`
    if (u.cacheReadTokens) a += CACHE_READ_TOKENS(u.cacheReadTokens)
    if (u.cacheWriteTokens) a += CACHE_WRITE_TOKENS(u.cacheWriteTokens)
  }
  if (ctx.cache.similarity !== undefined) a += SIMILARITY(ctx.cache.similarity)
  const conversation = ctx.request.headers.get('x-agentmesh-session') ?? ctx.request.headers.get('x-session-id')
  if (conversation) a += CONVERSATION(conversation.slice(0, 128))
  if (error !== undefined) a += ERROR_TYPE(error)
  return a
}

/** the request's spans, children first (as each was exported when it ended), to `out` in one text */
export function emitSpans(out: (spans: string, count: number) => void, ctx: MeshContext, marks: Marks): void {
  const parent = marks.parent
  // the parent-based sampler: an unsampled client trace records no span of ours
  if (parent && !(parent.traceFlags & 1)) return
  const operation = ctx.operation === 'embeddings' ? 'embeddings' : 'chat'
  const vendor = ctx.route.vendor
  const failed = (ctx.status ?? 0) >= 400 || ctx.aborted
  const error = failed ? (ctx.error?.type ?? (ctx.aborted ? 'aborted' : String(ctx.status))) : undefined
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
  const up = ctx.upstream
  if (up && routeAt !== undefined) {
    const t = textsOf(operation, vendor, ctx.route.model)
    // the span id the vendor received as the parent in its traceparent
    const spanId = marks.upstream?.spanId ?? randomHex(8)
    const toN = end > routeAt ? (end > start ? endN : nanos(end)) : routeN!
    // an HTTP status is an integer: its intValue as num() writes it
    text += `{"traceId":"${traceId}","spanId":"${spanId}","parentSpanId":"${self}${t.clientHead}${routeN}","endTimeUnixNano":"${toN}${t.clientAttributes}${up.status}${CLIENT_END},`
    count++
  }
  const t = textsOf(operation, vendor, ctx.prompt?.model ?? '')
  const ending = failed
    ? `],"status":${ctx.error?.type === undefined ? '{"code":2}' : `{"code":2,"message":${JSON.stringify(ctx.error.type)}}`},"flags":${parent ? REMOTE_PARENT : LOCAL_PARENT}}`
    : parent
      ? UNSET_REMOTE_END
      : UNSET_LOCAL_END
  const ids = parent ? `${self}","parentSpanId":"${parent.spanId}` : self
  out(
    `${text}{"traceId":"${traceId}","spanId":"${ids}${t.requestHead}${startN}","endTimeUnixNano":"${endN}${t.requestAttributes}${requestAttributes(ctx, error)}${ending}`,
    count,
  )
}
