// One finished request as OpenTelemetry spans, built after the answer went out with the times the
// hooks noted: the request span (GenAI semantic conventions plus agentmesh.*), a child for the
// cache lookup and a child for the upstream call. Attribute names as in the GenAI conventions
// (gen_ai.*, still "development" there, so written out rather than imported from the incubating set).
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Tracer } from '@opentelemetry/api'
import type { MeshContext } from '../../core/types.ts'

/** performance.now() values the hooks noted on the request */
export interface Marks { start: number; cacheStart?: number; cacheEnd?: number; routeAt?: number; end: number; parent?: Context }

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** the client's W3C traceparent as the parent of the request span; malformed or all-zero ids are ignored */
export function parentOf(header: string | null): Context | undefined {
  const m = header ? TRACEPARENT.exec(header.trim()) : null
  if (!m || /^0+$/.test(m[1]!) || /^0+$/.test(m[2]!)) return undefined
  return trace.setSpanContext(ROOT_CONTEXT, { traceId: m[1]!, spanId: m[2]!, traceFlags: Number.parseInt(m[3]!, 16) & 1, isRemote: true })
}

const PROVIDERS: Record<string, string> = { openai: 'openai', anthropic: 'anthropic', google: 'gcp.gemini', demo: 'agentmesh.demo' }
const epoch = (t: number) => performance.timeOrigin + t

export function emitSpans(tracer: Tracer, ctx: MeshContext, marks: Marks): void {
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
  const span = tracer.startSpan(`${operation} ${ctx.prompt?.model ?? ''}`.trim(), { kind: SpanKind.SERVER, attributes, startTime: epoch(marks.start) }, marks.parent)
  if (failed) span.setStatus({ code: SpanStatusCode.ERROR, message: ctx.error?.type })
  const inside = trace.setSpan(marks.parent ?? ROOT_CONTEXT, span)
  if (marks.cacheStart !== undefined) {
    const c = tracer.startSpan('agentmesh.cache_lookup', { kind: SpanKind.INTERNAL, startTime: epoch(marks.cacheStart), attributes: { 'agentmesh.cache': ctx.cache.status } }, inside)
    c.end(epoch(marks.cacheEnd ?? marks.routeAt ?? marks.end))
  }
  if (ctx.upstream && marks.routeAt !== undefined) {
    const up = tracer.startSpan(`${operation} ${ctx.route.model}`, { kind: SpanKind.CLIENT, startTime: epoch(marks.routeAt), attributes: { 'gen_ai.operation.name': operation, 'gen_ai.provider.name': attributes['gen_ai.provider.name']!, 'gen_ai.request.model': ctx.route.model, 'http.response.status_code': ctx.upstream.status } }, inside)
    up.end(epoch(marks.end))
  }
  span.end(epoch(marks.end))
}
