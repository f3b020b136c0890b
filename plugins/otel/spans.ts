// One finished request as OpenTelemetry spans, built after the answer went out with the times the
// hooks noted: the request span (GenAI semantic conventions plus agentmesh.*), a child for the
// cache lookup and a child for the upstream call. Attribute names as in the GenAI conventions
// (gen_ai.*, still "development" there, so written out rather than imported from the incubating set).
//
// The spans are finished records handed straight to the SDK's BatchSpanProcessor (which the
// official OTLP exporter drains), not made through a Tracer: each is known whole only after the
// request ended, so the Tracer's live-span machinery (context, sampler call, attribute copy and
// checks, timing) was pure cost, about a third of the plugin's. What is exported is the same: the
// fields the SDK's spans had, the sampler's parent-based decision (an unsampled client trace: no
// span of ours), the ids the vendor was told in its traceparent.
import { SpanKind, SpanStatusCode, type HrTime, type SpanContext, type SpanStatus } from '@opentelemetry/api'
import { randomFillSync } from 'node:crypto'
import type { Resource } from '@opentelemetry/resources'
import type { ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace'
import type { MeshContext } from '../../core/types.ts'

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
  parent?: SpanContext
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
export function chooseUpstreamIds(parent: SpanContext | undefined): { traceId: string; spanId: string } | undefined {
  if (parent && !(parent.traceFlags & 1)) return undefined
  return { traceId: parent ? parent.traceId : randomHex(16), spanId: randomHex(8) }
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** the client's W3C traceparent as the parent of the request span; malformed or all-zero ids are ignored */
export function parentOf(header: string | null): SpanContext | undefined {
  const m = header ? TRACEPARENT.exec(header.trim()) : null
  if (!m || m[1] === ZERO_TRACE || m[2] === ZERO_SPAN) return undefined
  return { traceId: m[1]!, spanId: m[2]!, traceFlags: Number.parseInt(m[3]!, 16) & 1, isRemote: true }
}

const PROVIDERS: Record<string, string> = {
  openai: 'openai',
  anthropic: 'anthropic',
  google: 'gcp.gemini',
  demo: 'agentmesh.demo',
}

/** a performance.now() value as the epoch HrTime the SDK makes of the same instant (its millisToHrTime) */
function hrTime(t: number): HrTime {
  const ms = performance.timeOrigin + t
  return [Math.trunc(ms / 1000), Math.round((ms % 1000) * 1e6)]
}

const NONE: never[] = []
const UNSET: SpanStatus = { code: SpanStatusCode.UNSET }

/** an ended span, as the SDK's Span reads once ended (its ReadableSpan side) */
class FinishedSpan implements ReadableSpan {
  readonly links = NONE
  readonly events = NONE
  readonly ended = true
  readonly droppedAttributesCount = 0
  readonly droppedEventsCount = 0
  readonly droppedLinksCount = 0
  readonly endTime: HrTime
  readonly duration: HrTime
  readonly status: SpanStatus = UNSET
  constructor(
    readonly context: SpanContext,
    readonly parentSpanContext: SpanContext | undefined,
    readonly name: string,
    readonly kind: SpanKind,
    readonly startTime: HrTime,
    endTime: HrTime,
    readonly attributes: Record<string, string | number | boolean>,
    readonly resource: Resource,
    readonly instrumentationScope: ReadableSpan['instrumentationScope'],
    status?: SpanStatus,
  ) {
    if (status) this.status = status
    let s = endTime[0] - startTime[0]
    let ns = endTime[1] - startTime[1]
    if (ns < 0) {
      s -= 1
      ns += 1e9
    }
    // as the SDK: an end before the start is a zero-length span
    if (s < 0) {
      this.endTime = [startTime[0], startTime[1]]
      this.duration = [0, 0]
    } else {
      this.endTime = endTime
      this.duration = [s, ns]
    }
  }
  spanContext(): SpanContext {
    return this.context
  }
}

/** where finished spans go: the batch processor, and what the SDK's Tracer would have stamped on them */
export interface SpanSink {
  processor: SpanProcessor
  resource: Resource
  scope: ReadableSpan['instrumentationScope']
}

function requestAttributes(ctx: MeshContext, operation: string): Record<string, string | number | boolean> {
  const u = ctx.usage
  const hit = ctx.cache.status === 'exact' || ctx.cache.status === 'semantic'
  const attributes: Record<string, string | number | boolean> = {
    'gen_ai.operation.name': operation,
    'gen_ai.provider.name': PROVIDERS[ctx.route.vendor] ?? ctx.route.vendor,
    'gen_ai.request.model': ctx.prompt?.model ?? '',
    'agentmesh.team': ctx.identity.team,
    'agentmesh.user': ctx.identity.user,
    'agentmesh.tool': ctx.identity.tool,
    'agentmesh.cache': ctx.cache.status,
    'agentmesh.cost_usd': ctx.cost.usd,
    'agentmesh.saved_usd': ctx.cost.savedUsd,
    'agentmesh.request_id': ctx.id,
    'http.response.status_code': ctx.status ?? 0,
  }
  if (ctx.answer?.model) attributes['gen_ai.response.model'] = ctx.answer.model
  if (!hit && !u.estimated) {
    attributes['gen_ai.usage.input_tokens'] = u.inputTokens
    attributes['gen_ai.usage.output_tokens'] = u.outputTokens
    if (u.cacheReadTokens) attributes['gen_ai.usage.cache_read.input_tokens'] = u.cacheReadTokens
    if (u.cacheWriteTokens) attributes['gen_ai.usage.cache_creation.input_tokens'] = u.cacheWriteTokens
  }
  if (ctx.cache.similarity !== undefined) attributes['agentmesh.cache.similarity'] = ctx.cache.similarity
  const conversation = ctx.request.headers.get('x-agentmesh-session') ?? ctx.request.headers.get('x-session-id')
  if (conversation) attributes['gen_ai.conversation.id'] = conversation.slice(0, 128)
  return attributes
}

export function emitSpans(sink: SpanSink, ctx: MeshContext, marks: Marks): void {
  const parent = marks.parent
  // the parent-based sampler: an unsampled client trace records no span of ours
  if (parent && !(parent.traceFlags & 1)) return
  const operation = ctx.operation === 'embeddings' ? 'embeddings' : 'chat'
  const attributes = requestAttributes(ctx, operation)
  const failed = (ctx.status ?? 0) >= 400 || ctx.aborted
  if (failed) attributes['error.type'] = ctx.error?.type ?? (ctx.aborted ? 'aborted' : String(ctx.status))
  const status: SpanStatus | undefined = failed
    ? ctx.error?.type === undefined
      ? { code: SpanStatusCode.ERROR }
      : { code: SpanStatusCode.ERROR, message: ctx.error.type }
    : undefined
  // no client trace: the request span starts the trace the vendor was already told about
  const traceId = parent?.traceId ?? marks.upstream?.traceId ?? randomHex(16)
  const self: SpanContext = { traceId, spanId: randomHex(8), traceFlags: 1, traceState: parent?.traceState }
  const end = hrTime(marks.end)
  const { processor, resource, scope } = sink
  const span = (
    c: SpanContext,
    p: SpanContext | undefined,
    name: string,
    kind: SpanKind,
    start: HrTime,
    to: HrTime,
    a: Record<string, string | number | boolean>,
    st?: SpanStatus,
  ) => processor.onEnd(new FinishedSpan(c, p, name, kind, start, to, a, resource, scope, st))
  const child = (spanId: string): SpanContext => ({ traceId, spanId, traceFlags: 1, traceState: self.traceState })
  // children end first, as they did through the SDK (each was exported when it ended)
  if (marks.cacheStart !== undefined)
    span(
      child(randomHex(8)),
      self,
      'agentmesh.cache_lookup',
      SpanKind.INTERNAL,
      hrTime(marks.cacheStart),
      hrTime(marks.cacheEnd ?? marks.routeAt ?? marks.end),
      { 'agentmesh.cache': ctx.cache.status },
    )
  if (ctx.upstream && marks.routeAt !== undefined)
    // the span id the vendor received as the parent in its traceparent
    span(
      child(marks.upstream?.spanId ?? randomHex(8)),
      self,
      `${operation} ${ctx.route.model}`,
      SpanKind.CLIENT,
      hrTime(marks.routeAt),
      end,
      {
        'gen_ai.operation.name': operation,
        'gen_ai.provider.name': attributes['gen_ai.provider.name']!,
        'gen_ai.request.model': ctx.route.model,
        'http.response.status_code': ctx.upstream.status,
      },
    )
  span(
    self,
    parent,
    `${operation} ${ctx.prompt?.model ?? ''}`.trim(),
    SpanKind.SERVER,
    hrTime(marks.start),
    end,
    attributes,
    status,
  )
}
