// A request's spans in OTLP/JSON (OTEL_EXPORTER_OTLP_PROTOCOL=http/json; the default is protobuf,
// proto.ts). With the SDK's BatchSpanProcessor and OTLPTraceExporter, about 40% of the plugin's
// added CPU (0.111 ms per request in bench:proxy's "metrics+tracing on vs off" line, 3 spans per
// request) went to the exporter's serializer building an object tree per span and then
// JSON.stringify-ing it. Here each finished span is written once, straight to its OTLP/JSON text,
// and that text into its batch's request body (batch.ts), which the official export delegate
// sends as it is (export.ts). The wire format is the one the official JS exporter sends (same field
// names and order, hex ids, nanosecond times as strings, kind = API kind + 1, flags with the
// has-is-remote bit), which test/observe-otel.test.ts decodes and checks.
import type { MeshContext } from '../../core/types.ts'
import type { Framing } from './batch.ts'
import * as spans from './spans.ts'
import type { Marks } from './spans.ts'

// taken once: under the TypeScript loader (jiti) every use of an imported binding is a property
// read through its module wrapper, several per span
const { conversationOf, errorOf, isCacheHit, operationOf, perModel, providerOf, randomHex } = spans

/** a string attribute; `key` is one of ours (no escaping needed), the value is escaped */
export const str = (key: string, v: string) => `{"key":"${key}","value":{"stringValue":${JSON.stringify(v)}}}`

/**
 * `text` as one flat string. A text made by joining (`${a}${b}`) is a tree of its pieces that V8
 * walks again each time the text is written into a batch (about 10-20 ns a piece, most of the cost
 * of a span): a text kept to be written again and again is flattened once, when it is made.
 */
export const flat = (text: string): string => Buffer.from(text, 'utf8').toString('utf8')

/**
 * str() for an attribute whose values repeat from request to request (models, teams, providers):
 * each value's text is made once, flat. Bounded: past `max` values the cache starts over.
 */
export function repeatedStr(key: string, max = 1000, lead = ''): (v: string) => string {
  const made = new Map<string, string>()
  return (v) => {
    let t = made.get(v)
    if (t === undefined) {
      if (made.size >= max) made.clear()
      t = flat(lead + str(key, v))
      made.set(v, t)
    }
    return t
  }
}

/** a number attribute as the SDK types it: intValue for an integer, doubleValue otherwise */
export function num(key: string, v: number): string {
  // JSON has no NaN or Infinity: the SDK's JSON.stringify wrote null
  if (!Number.isFinite(v)) return `{"key":"${key}","value":{"doubleValue":null}}`
  return Number.isInteger(v)
    ? `{"key":"${key}","value":{"intValue":${v}}}`
    : `{"key":"${key}","value":{"doubleValue":${v}}}`
}

/**
 * `,` and num() for one key, the text before the value made once: a span's text is then three
 * pieces per number instead of six (each piece is walked again when the span is written, see flat())
 */
export function numAfterComma(key: string): (v: number) => string {
  const int = flat(`,{"key":"${key}","value":{"intValue":`)
  const double = flat(`,{"key":"${key}","value":{"doubleValue":`)
  const none = flat(`,${num(key, Number.NaN)}`)
  return (v) => (!Number.isFinite(v) ? none : Number.isInteger(v) ? `${int}${v}}}` : `${double}${v}}}`)
}

/** `,` and str() for one key, as numAfterComma */
export function strAfterComma(key: string): (v: string) => string {
  const head = flat(`,{"key":"${key}","value":{"stringValue":`)
  return (v) => `${head}${JSON.stringify(v)}}}`
}

// performance.now() values as epoch nanoseconds, the origin split once (as the SDK's hrTime adds
// the origin and the offset as separate [s, ns] pairs, so no precision is lost to one float)
const ORIGIN_S = Math.trunc(performance.timeOrigin / 1000)
const ORIGIN_NS = Math.round((performance.timeOrigin % 1000) * 1e6)

let lastS = -1
let lastSText = ''
// '000'…'999': the nanoseconds written as three groups of three digits. Turning the number itself
// into text (a heap number, from the float arithmetic) was most of this function's cost
const DIGITS3 = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'))

/** a performance.now() value as OTLP's epoch nanoseconds, a decimal string */
export function nanos(t: number): string {
  let s = ORIGIN_S + Math.trunc(t / 1000)
  // an integer below 2e9: int32 arithmetic from here
  let ns = (ORIGIN_NS + Math.round((t % 1000) * 1e6)) | 0
  if (ns >= 1e9) {
    s += 1
    ns -= 1e9
  }
  // the seconds' text changes once a second
  if (s !== lastS) {
    lastS = s
    lastSText = String(s)
  }
  const hi = (ns / 1e6) | 0
  const rest = ns - hi * 1e6
  const mid = (rest / 1000) | 0
  return lastSText + DIGITS3[hi]! + DIGITS3[mid]! + DIGITS3[rest - mid * 1000]!
}

/** the OTLP resource and scope around a batch's spans, which are separated by commas */
export function jsonFraming(serviceName: string): Framing {
  const resource = `{"attributes":[${str('service.name', serviceName)}],"droppedAttributesCount":0}`
  const head = Buffer.from(
    `{"resourceSpans":[{"resource":${resource},"scopeSpans":[{"scope":{"name":"agentmesh"},"spans":[`,
  )
  const tail = Buffer.from(']}]}]}')
  return {
    reserve: head.length,
    separator: 0x2c, // ','
    trailer: tail.length,
    seal(body, spansStart, spansEnd) {
      head.copy(body, spansStart - head.length)
      return { start: spansStart - head.length, end: spansEnd + tail.copy(body, spansEnd) }
    },
  }
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
 * written into its batch, see flat() above).
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

const textsOf = perModel((operation, vendor, model): ModelTexts => {
  const first = `${OPERATION(operation)},${PROVIDER(providerOf(vendor))},${REQUEST_MODEL(model)}`
  return {
    clientHead: flat(`","name":${JSON.stringify(`${operation} ${model}`)},"kind":${CLIENT},"startTimeUnixNano":"`),
    clientAttributes: flat(`","attributes":[${first},{"key":"http.response.status_code","value":{"intValue":`),
    requestHead: flat(
      `","name":${JSON.stringify(`${operation} ${model}`.trim())},"kind":${SERVER},"startTimeUnixNano":"`,
    ),
    requestAttributes: flat(`","attributes":[${first}`),
  }
})

// what ends a span whose status is unset, by its flags
const UNSET_LOCAL_END = `],"status":${UNSET},"flags":${LOCAL_PARENT}}`
const UNSET_REMOTE_END = `],"status":${UNSET},"flags":${REMOTE_PARENT}}`
// the upstream call's span after its status code's value
const CLIENT_END = `}}${UNSET_LOCAL_END}`

/** the request span's attributes after its first three (ModelTexts), in the order the SDK's span kept them */
function requestAttributes(ctx: MeshContext, error: string | undefined): string {
  const u = ctx.usage
  let a = `${TEAM(ctx.identity.team)}${USER(ctx.identity.user)}${TOOL(ctx.identity.tool)}${CACHE_AFTER(ctx.cache.status)}${COST(ctx.cost.usd)}${SAVED(ctx.cost.savedUsd)}${REQUEST_ID(ctx.id)}${STATUS_CODE(ctx.status ?? 0)}`
  if (ctx.answer?.model) a += RESPONSE_MODEL(ctx.answer.model)
  if (!isCacheHit(ctx) && !u.estimated) {
    a += `${INPUT_TOKENS(u.inputTokens)}${OUTPUT_TOKENS(u.outputTokens)}`
    if (u.cacheReadTokens) a += CACHE_READ_TOKENS(u.cacheReadTokens)
    if (u.cacheWriteTokens) a += CACHE_WRITE_TOKENS(u.cacheWriteTokens)
  }
  if (ctx.cache.similarity !== undefined) a += SIMILARITY(ctx.cache.similarity)
  const conversation = conversationOf(ctx)
  if (conversation) a += CONVERSATION(conversation)
  if (error !== undefined) a += ERROR_TYPE(error)
  return a
}

/** the request's spans, children first (as each was exported when it ended), to `out` in one text */
export function emitJsonSpans(out: (spans: string, count: number) => void, ctx: MeshContext, marks: Marks): void {
  const parent = marks.parent
  // the parent-based sampler: an unsampled client trace records no span of ours
  if (parent && !(parent.traceFlags & 1)) return
  const operation = operationOf(ctx)
  const vendor = ctx.route.vendor
  const error = errorOf(ctx)
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
  const ending =
    error !== undefined
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
