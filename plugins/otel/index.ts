// OpenTelemetry export over OTLP/HTTP (JSON): one span per request with the GenAI semantic
// conventions and agentmesh.* attributes, child spans for the cache lookup and the upstream call,
// the client's traceparent as parent; metrics gen_ai.client.token.usage and
// gen_ai.client.operation.duration. Off unless an endpoint is given (option or
// OTEL_EXPORTER_OTLP_ENDPOINT). Spans are built after the answer went out (setImmediate) and
// exported in batches: nothing waits on the collector.
import { performance } from 'node:perf_hooks'
// this mesh's providers are its own: the global OpenTelemetry API is left untouched
import type { Histogram } from '@opentelemetry/api'
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics'
import { BatchSpanProcessor } from '@opentelemetry/sdk-trace'
import { definePlugin } from '../../core/plugin.ts'
import type { MeshContext, Plugin } from '../../core/types.ts'
import { chooseUpstreamIds, emitSpans, parentOf, type Marks, type SpanSink } from './spans.ts'

export interface OtelOptions {
  /** OTLP/HTTP base URL, e.g. http://collector:4318 (default: env OTEL_EXPORTER_OTLP_ENDPOINT; none: off) */
  endpoint?: string
  /** service.name of the resource (default 'agentmesh') */
  serviceName?: string
  /** how often metrics are exported, ms (default 10,000) */
  metricsIntervalMs?: number
  /** longest wait before a batch of spans is sent, ms (default 2,000) */
  batchDelayMs?: number
}

interface Pipeline {
  spans: SpanSink
  attrSets: Map<string, AttrSet>
  tokens: Histogram
  duration: Histogram
  close(): Promise<void>
}

function start(endpoint: string, o: OtelOptions): Pipeline {
  const base = endpoint.replace(/\/+$/, '')
  const resource = resourceFromAttributes({ 'service.name': o.serviceName ?? 'agentmesh' })
  const processor = new BatchSpanProcessor({
    exporter: new OTLPTraceExporter({ url: `${base}/v1/traces` }),
    scheduledDelayMillis: o.batchDelayMs ?? 2000,
  })
  const meters = new MeterProvider({
    resource,
    readers: [
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter({ url: `${base}/v1/metrics` }),
        exportIntervalMillis: o.metricsIntervalMs ?? 10_000,
      }),
    ],
  })
  const meter = meters.getMeter('agentmesh')
  return {
    // the scope a Tracer got with getTracer('agentmesh') stamps on its spans
    spans: { processor, resource, scope: { name: 'agentmesh', version: undefined, schemaUrl: undefined } },
    attrSets: new Map(),
    tokens: meter.createHistogram('gen_ai.client.token.usage', {
      unit: '{token}',
      description: 'Tokens used, by gen_ai.token.type (input, output)',
    }),
    duration: meter.createHistogram('gen_ai.client.operation.duration', {
      unit: 's',
      description: 'GenAI operation duration',
    }),
    close: async () => {
      await Promise.allSettled([processor.shutdown(), meters.shutdown()])
    },
  }
}

type Attrs = Record<string, string>
/** a request's metric attributes, plain and with each token type: made once per distinct set */
interface AttrSet {
  plain: Attrs
  input: Attrs
  output: Attrs
}
// bounded: the request model is the client's to name; past the limit each request builds its own
const MAX_ATTR_SETS = 1000

function attrSet(p: Pipeline, ctx: MeshContext): AttrSet {
  const operation = ctx.operation === 'embeddings' ? 'embeddings' : 'chat'
  const requested = ctx.prompt?.model ?? ''
  const answered = ctx.answer?.model
  const key = `${operation}\u0000${ctx.route.vendor}\u0000${requested}\u0000${answered ?? ''}`
  let set = p.attrSets.get(key)
  if (set !== undefined) return set
  const plain: Attrs = {
    'gen_ai.operation.name': operation,
    'gen_ai.provider.name': ctx.route.vendor,
    'gen_ai.request.model': requested,
    ...(answered ? { 'gen_ai.response.model': answered } : {}),
  }
  set = {
    plain,
    input: { ...plain, 'gen_ai.token.type': 'input' },
    output: { ...plain, 'gen_ai.token.type': 'output' },
  }
  if (p.attrSets.size < MAX_ATTR_SETS) p.attrSets.set(key, set)
  return set
}

function record(p: Pipeline, ctx: MeshContext, marks: Marks) {
  emitSpans(p.spans, ctx, marks)
  const attrs = attrSet(p, ctx)
  p.duration.record(
    (marks.end - marks.start) / 1000,
    (ctx.status ?? 0) >= 400 ? { ...attrs.plain, 'error.type': ctx.error?.type ?? String(ctx.status) } : attrs.plain,
  )
  const hit = ctx.cache.status === 'exact' || ctx.cache.status === 'semantic'
  if (!hit && !ctx.usage.estimated) {
    p.tokens.record(ctx.usage.inputTokens, attrs.input)
    p.tokens.record(ctx.usage.outputTokens, attrs.output)
  }
}

/** The vendor's traceparent names our upstream span, not the client's (the core sends ctx.upstreamHeaders over the client's). */
function setTraceparent(ctx: MeshContext, value: string): void {
  ctx.upstreamHeaders = { ...ctx.upstreamHeaders, traceparent: value }
}

export function otel(options: OtelOptions = {}): Plugin {
  if (!options || typeof options !== 'object') throw new Error('otel: options must be an object')
  for (const k of Object.keys(options))
    if (!['endpoint', 'serviceName', 'metricsIntervalMs', 'batchDelayMs'].includes(k))
      throw new Error(`otel: unknown option "${k}" (expected endpoint, serviceName, metricsIntervalMs, batchDelayMs)`)
  const endpoint = options.endpoint ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT
  // off: no hooks at all, so no phase pays for a plugin that does nothing
  if (!endpoint) return definePlugin({ name: 'otel', options: { ...options } })
  if (!/^https?:\/\//.test(endpoint))
    throw new Error(`otel: endpoint must be an http(s) URL, got ${JSON.stringify(endpoint)}`)
  let p: Pipeline | undefined
  const marks = new WeakMap<MeshContext, Marks>()
  let queue: MeshContext[] = []
  const drain = () => {
    const done = queue
    queue = []
    for (const ctx of done) {
      const m = marks.get(ctx)
      if (!p || !m) continue
      try {
        record(p, ctx, m)
      } catch (err) {
        ctx.mesh.log.warn('otel: could not record a request', { error: (err as Error).message })
      }
    }
  }
  return definePlugin({
    name: 'otel',
    // first in every phase, so its marks bracket the other plugins' work
    enforce: 'pre',
    options: { ...options },
    setup(mesh) {
      if (mesh.mode !== 'serve') return
      p = start(endpoint, options)
      return () => p?.close()
    },
    hooks: {
      beforeRequest(ctx) {
        if (p)
          marks.set(ctx, { start: ctx.startedAt, end: 0, parent: parentOf(ctx.request.headers.get('traceparent')) })
      },
      cacheLookup(ctx) {
        const m = p && marks.get(ctx)
        if (m) m.cacheStart = performance.now()
      },
      route(ctx) {
        const m = p && marks.get(ctx)
        if (!m) return
        m.routeAt = m.cacheEnd = performance.now()
        m.upstream = chooseUpstreamIds(m.parent)
        if (m.upstream) setTraceparent(ctx, `00-${m.upstream.traceId}-${m.upstream.spanId}-01`)
      },
      afterResponse(ctx) {
        const m = p && marks.get(ctx)
        if (!m || !p) return
        m.end = performance.now()
        // off the response path: the spans are built on a later turn of the event loop, one turn
        // for all the requests that ended before it
        if (queue.push(ctx) === 1) setImmediate(drain)
      },
    },
  })
}
