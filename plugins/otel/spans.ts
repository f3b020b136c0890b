// One finished request as OpenTelemetry spans, built after the answer went out with the times the
// hooks noted: the request span (GenAI semantic conventions plus agentmesh.*), a child for the
// cache lookup and a child for the upstream call. Attribute names as in the GenAI conventions
// (gen_ai.*, still "development" there, so written out rather than imported from the incubating set).
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Tracer } from '@opentelemetry/api'
import { randomBytes } from 'node:crypto'
import { RandomIdGenerator, type IdGenerator } from '@opentelemetry/sdk-trace'
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
  parent?: Context
  upstream?: { traceId: string; spanId: string }
}

/**
 * Ids for the SDK's next span: the ones chosen ahead (the vendor already received them in its
 * traceparent), else random. emitSpans sets one right before the startSpan that takes it; both
 * are synchronous, so no other span can take it in between.
 */
export class ChosenIds implements IdGenerator {
  nextTraceId: string | undefined
  nextSpanId: string | undefined
  readonly #random = new RandomIdGenerator()
  generateTraceId(): string {
    const id = this.nextTraceId ?? this.#random.generateTraceId()
    this.nextTraceId = undefined
    return id
  }
  generateSpanId(): string {
    const id = this.nextSpanId ?? this.#random.generateSpanId()
    this.nextSpanId = undefined
    return id
  }
}

/**
 * The ids of the upstream call's span, chosen before the call: the client's trace (when it sent a
 * sampled traceparent) or a new one. undefined when the client's trace is not sampled: then no
 * span of ours is exported, and the vendor gets the client's traceparent as it came.
 */
export function chooseUpstreamIds(parent: Context | undefined): { traceId: string; spanId: string } | undefined {
  const p = parent && trace.getSpanContext(parent)
  if (p && !(p.traceFlags & 1)) return undefined
  const bytes = randomBytes(p ? 8 : 24).toString('hex')
  return p ? { traceId: p.traceId, spanId: bytes } : { traceId: bytes.slice(16), spanId: bytes.slice(0, 16) }
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** the client's W3C traceparent as the parent of the request span; malformed or all-zero ids are ignored */
export function parentOf(header: string | null): Context | undefined {
  const m = header ? TRACEPARENT.exec(header.trim()) : null
  if (!m || /^0+$/.test(m[1]!) || /^0+$/.test(m[2]!)) return undefined
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: m[1]!,
    spanId: m[2]!,
    traceFlags: Number.parseInt(m[3]!, 16) & 1,
    isRemote: true,
  })
}

const PROVIDERS: Record<string, string> = {
  openai: 'openai',
  anthropic: 'anthropic',
  google: 'gcp.gemini',
  demo: 'agentmesh.demo',
}
const epoch = (t: number) => performance.timeOrigin + t

export function emitSpans(tracer: Tracer, ids: ChosenIds, ctx: MeshContext, marks: Marks): void {
  const u = ctx.usage
  const operation = ctx.operation === 'embeddings' ? 'embeddings' : 'chat'
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
  const failed = (ctx.status ?? 0) >= 400 || ctx.aborted
  if (failed) attributes['error.type'] = ctx.error?.type ?? (ctx.aborted ? 'aborted' : String(ctx.status))
  // no client trace: the request span starts the trace the vendor was already told about
  if (!marks.parent && marks.upstream) ids.nextTraceId = marks.upstream.traceId
  const span = tracer.startSpan(
    `${operation} ${ctx.prompt?.model ?? ''}`.trim(),
    { kind: SpanKind.SERVER, attributes, startTime: epoch(marks.start) },
    marks.parent,
  )
  if (failed) span.setStatus({ code: SpanStatusCode.ERROR, message: ctx.error?.type })
  const inside = trace.setSpan(marks.parent ?? ROOT_CONTEXT, span)
  if (marks.cacheStart !== undefined) {
    const c = tracer.startSpan(
      'agentmesh.cache_lookup',
      {
        kind: SpanKind.INTERNAL,
        startTime: epoch(marks.cacheStart),
        attributes: { 'agentmesh.cache': ctx.cache.status },
      },
      inside,
    )
    c.end(epoch(marks.cacheEnd ?? marks.routeAt ?? marks.end))
  }
  if (ctx.upstream && marks.routeAt !== undefined) {
    // the span id the vendor received as the parent in its traceparent
    if (marks.upstream) ids.nextSpanId = marks.upstream.spanId
    const up = tracer.startSpan(
      `${operation} ${ctx.route.model}`,
      {
        kind: SpanKind.CLIENT,
        startTime: epoch(marks.routeAt),
        attributes: {
          'gen_ai.operation.name': operation,
          'gen_ai.provider.name': attributes['gen_ai.provider.name']!,
          'gen_ai.request.model': ctx.route.model,
          'http.response.status_code': ctx.upstream.status,
        },
      },
      inside,
    )
    up.end(epoch(marks.end))
  }
  span.end(epoch(marks.end))
}
