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
import { randomFillSync } from 'node:crypto'
import type { MeshContext } from '../../core/types.ts'
import { nanos, num, repeatedStr, str } from './otlp.ts'

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

// random ids from a pooled buffer: one randomFillSync per ~170 requests instead of one per request
const pool = Buffer.allocUnsafe(4096)
let poolAt = pool.length
const ZERO_TRACE = '0'.repeat(32)
const ZERO_SPAN = '0'.repeat(16)

/** `bytes` random bytes as hex; never all zeros (an invalid W3C id) */
function randomHex(bytes: 8 | 16): string {
  if (poolAt + bytes > pool.length) {
    randomFillSync(pool)
    poolAt = 0
  }
  const id = pool.toString('hex', poolAt, poolAt + bytes)
  poolAt += bytes
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

/** one span as the official exporter's JSON writes it (its field order; no events, no links) */
function span(
  traceId: string,
  spanId: string,
  parentId: string | undefined,
  name: string,
  kind: number,
  start: number,
  end: number,
  attributes: string,
  status: string,
  flags: number,
): string {
  // as the SDK: an end before the start is a zero-length span
  const to = Math.max(end, start)
  return `{"traceId":"${traceId}","spanId":"${spanId}"${parentId ? `,"parentSpanId":"${parentId}"` : ''},"name":${JSON.stringify(name)},"kind":${kind},"startTimeUnixNano":"${nanos(start)}","endTimeUnixNano":"${nanos(to)}","attributes":[${attributes}],"droppedAttributesCount":0,"events":[],"droppedEventsCount":0,"status":${status},"links":[],"droppedLinksCount":0,"flags":${flags}}`
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

/** the request's spans, children first (as each was exported when it ended), to `out` */
export function emitSpans(out: (span: string) => void, ctx: MeshContext, marks: Marks): void {
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
  if (marks.cacheStart !== undefined)
    out(
      span(
        traceId,
        randomHex(8),
        self,
        'agentmesh.cache_lookup',
        INTERNAL,
        marks.cacheStart,
        marks.cacheEnd ?? marks.routeAt ?? marks.end,
        CACHE(ctx.cache.status),
        UNSET,
        LOCAL_PARENT,
      ),
    )
  if (ctx.upstream && marks.routeAt !== undefined)
    // the span id the vendor received as the parent in its traceparent
    out(
      span(
        traceId,
        marks.upstream?.spanId ?? randomHex(8),
        self,
        `${operation} ${ctx.route.model}`,
        CLIENT,
        marks.routeAt,
        marks.end,
        `${OPERATION(operation)},${PROVIDER(provider)},${REQUEST_MODEL(ctx.route.model)},${num('http.response.status_code', ctx.upstream.status)}`,
        UNSET,
        LOCAL_PARENT,
      ),
    )
  out(
    span(
      traceId,
      self,
      parent?.spanId,
      `${operation} ${ctx.prompt?.model ?? ''}`.trim(),
      SERVER,
      marks.start,
      marks.end,
      requestAttributes(ctx, operation, provider, error),
      status,
      parent ? REMOTE_PARENT : LOCAL_PARENT,
    ),
  )
}
