// OpenTelemetry export over OTLP/HTTP (protobuf by default, or JSON): one span per request with the
// GenAI semantic conventions and agentmesh.* attributes, child spans for the cache lookup and the
// upstream call, the client's traceparent as parent; metrics gen_ai.client.token.usage and
// gen_ai.client.operation.duration. Off unless an endpoint is given (option, or
// OTEL_EXPORTER_OTLP_ENDPOINT / _TRACES_ENDPOINT / _METRICS_ENDPOINT). Spans are written after the
// answer went out (DRAIN_MS) and exported in batches: nothing waits on the collector.
//
// The span encoding and the metric aggregation are this plugin's own: bench:proxy's
// "metrics+tracing on vs off" measured 0.111 ms of added CPU per request through the SDK, 40% of it
// the exporter's serializer and 18% the metrics SDK's attribute hashing (proto.ts, json.ts and
// histograms.ts say how each is done instead). The export is the official packages' (export.ts):
// the OTLP/HTTP export delegate sends the batches as written, OTLPMetricExporter the metrics.
import { definePlugin } from '../../core/plugin.ts'
import type { Logger, MeshContext, Plugin } from '../../core/types.ts'
import { SpanBatcher } from './batch.ts'
import { GenAiHistograms } from './histograms.ts'
import {
  checkHeaders,
  type ExportSettings,
  Health,
  MetricExport,
  resolveProtocol,
  resolveSignal,
  TraceExport,
} from './export.ts'
import * as json from './json.ts'
import * as proto from './proto.ts'
import { resourceFromAttributes } from '@opentelemetry/resources'
import * as spans from './spans.ts'
import type { Marks } from './spans.ts'

// what the hooks call on every request, taken once: under the TypeScript loader (jiti) every use of
// an imported binding is a property read through its module wrapper. `performance` is the global.
const { chooseUpstreamIds, parentOf } = spans
const { emitJsonSpans, jsonFraming } = json
const { emitProtoSpans, protoFraming } = proto

export interface OtelOptions {
  /**
   * OTLP/HTTP base URL, e.g. http://collector:4318 (default: env OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
   * and _METRICS_ENDPOINT, each as it is, else the base URL OTEL_EXPORTER_OTLP_ENDPOINT; none: off)
   */
  endpoint?: string
  /** service.name of the resource (default 'agentmesh') */
  serviceName?: string
  /** how often metrics are exported, ms (default 10,000) */
  metricsIntervalMs?: number
  /** longest wait before a batch of spans is sent, ms (default 2,000) */
  batchDelayMs?: number
  /**
   * extra headers on every export, e.g. a collector's `{ authorization: 'Bearer …' }`, over those
   * of env OTEL_EXPORTER_OTLP_HEADERS (`k1=v1,k2=v2`) and OTEL_EXPORTER_OTLP_TRACES_HEADERS /
   * _METRICS_HEADERS. Never logged, shown by name only.
   */
  headers?: Record<string, string>
  /** per export, retries included, ms (default: env OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]TIMEOUT, else 10,000) */
  timeoutMs?: number
  /**
   * the encoding, both signals (default: env OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]PROTOCOL, else
   * 'http/protobuf', the OTLP default; 'http/json' for a receiver that takes JSON only)
   */
  protocol?: 'http/protobuf' | 'http/json'
}

const OPTION_NAMES = [
  'endpoint',
  'serviceName',
  'metricsIntervalMs',
  'batchDelayMs',
  'headers',
  'timeoutMs',
  'protocol',
]

interface Pipeline {
  spans: SpanBatcher | undefined
  /** the spans' encoder for the trace protocol */
  emit: typeof emitProtoSpans | typeof emitJsonSpans
  metrics: GenAiHistograms | undefined
  close(): Promise<void>
}

// the SDK's batch defaults: 512 spans a batch, 2048 waiting at most
const MAX_BATCH = 512
const MAX_QUEUE = 2048
// exports in flight per signal (more batches wait in the queue)
const MAX_IN_FLIGHT = 4
// what shutdown waits for the last exports at most
const CLOSE_MS = 5_000
// The requests that ended are turned into spans together, this long after the first of them.
// Side by side under load (two proxies on one CPU, /proc ticks), building them on the next turn of
// the event loop (setImmediate: one or two requests at a time, each with cold caches) added 24-26
// µs of CPU a request against both off, and a 10 ms wait 14-16 (3 and 25 ms: the same as 10 within
// noise). What waits is a few dozen requests' contexts; the spans' batches wait up to 2 s anyway.
const DRAIN_MS = 10
// ...and no more than this many wait (their contexts hold their bodies): past it, the next turn
const MAX_WAITING = 256

/** the exporters, for the signals that have an endpoint (the option's, else the environment's) */
async function start(o: OtelOptions, s: ExportSettings, log: () => Logger | undefined): Promise<Pipeline> {
  const [tracesUrl, metricsUrl] = await Promise.all([resolveSignal(s, 'TRACES'), resolveSignal(s, 'METRICS')])
  const serviceName = o.serviceName ?? 'agentmesh'
  const health = new Health(log)
  const traces = tracesUrl ? new TraceExport(tracesUrl, s, health) : undefined
  const spans = traces
    ? new SpanBatcher(
        traces,
        s.traces === 'http/json' ? jsonFraming(serviceName) : protoFraming(serviceName),
        { delayMs: o.batchDelayMs ?? 2000, maxBatch: MAX_BATCH, maxQueue: MAX_QUEUE },
        log,
      )
    : undefined
  const exporter = metricsUrl ? new MetricExport(metricsUrl, s, health) : undefined
  const metrics = exporter && new GenAiHistograms(resourceFromAttributes({ 'service.name': serviceName }))
  const data = () => metrics?.collect(Date.now())
  const timer = exporter && setInterval(() => exporter.send(data), o.metricsIntervalMs ?? 10_000).unref()
  return {
    spans,
    emit: s.traces === 'http/json' ? emitJsonSpans : emitProtoSpans,
    metrics,
    close: async () => {
      clearInterval(timer)
      const deadline = Date.now() + CLOSE_MS
      await Promise.all([
        exporter?.close(data, deadline),
        (async () => {
          await spans?.flush(deadline)
          await traces?.close(deadline)
        })(),
      ])
    },
  }
}

function record(p: Pipeline, ctx: MeshContext, marks: Marks) {
  if (p.spans) p.emit(p.spans.out, ctx, marks)
  p.metrics?.record(ctx, (marks.end - marks.start) / 1000)
}

/** The vendor's traceparent names our upstream span, not the client's (the core sends ctx.upstreamHeaders over the client's). */
function setTraceparent(ctx: MeshContext, value: string): void {
  ctx.upstreamHeaders = ctx.upstreamHeaders ? { ...ctx.upstreamHeaders, traceparent: value } : { traceparent: value }
}

// the request's marks live in ctx.meta (the plugins' per-request scratch space), not in a WeakMap,
// whose entry per request means an identity hash on every context and ephemeron work in scavenges
const marksOf = (ctx: MeshContext): Marks | undefined => ctx.meta.otel

export function otel(options: OtelOptions = {}): Plugin {
  if (!options || typeof options !== 'object') throw new Error('otel: options must be an object')
  for (const k of Object.keys(options))
    if (!OPTION_NAMES.includes(k)) throw new Error(`otel: unknown option "${k}" (expected ${OPTION_NAMES.join(', ')})`)
  if (options.headers !== undefined && (typeof options.headers !== 'object' || options.headers === null))
    throw new Error('otel: headers must be an object of header names and values')
  // what `agentmesh config` prints: the headers' names, never their values (a collector's token)
  const shown = options.headers
    ? { ...options, headers: Object.fromEntries(Object.keys(options.headers).map((k) => [k, '(hidden)'])) }
    : { ...options }
  const env = process.env
  const endpoints = [
    ['endpoint', options.endpoint],
    ['OTEL_EXPORTER_OTLP_ENDPOINT', env.OTEL_EXPORTER_OTLP_ENDPOINT],
    ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT],
    ['OTEL_EXPORTER_OTLP_METRICS_ENDPOINT', env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT],
  ].filter((e): e is [string, string] => !!e[1])
  // off: no hooks at all, so no phase pays for a plugin that does nothing
  if (endpoints.length === 0) return definePlugin({ name: 'otel', options: shown })
  // the official exporters would fall back to localhost:4318 for a URL they cannot parse
  for (const [from, url] of endpoints)
    if (!/^https?:\/\/[^/\s]/.test(url))
      throw new Error(`otel: ${from} must be an http(s) URL, got ${JSON.stringify(url)}`)
  if (options.headers) checkHeaders(options.headers, 'headers')
  const timeoutMs = options.timeoutMs
  if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs > 0))
    throw new Error('otel: timeoutMs must be a positive number of ms')
  const settings: ExportSettings = {
    endpoint: options.endpoint?.replace(/\/+$/, ''),
    headers: options.headers && { ...options.headers },
    timeoutMs,
    maxInFlight: MAX_IN_FLIGHT,
    traces: resolveProtocol(options.protocol, 'TRACES'),
    metrics: resolveProtocol(options.protocol, 'METRICS'),
  }
  let p: Pipeline | undefined
  let log: Logger | undefined
  // whether any other plugin looks up a cache: without one there is no lookup, so no span for it
  let lookups = false
  let queue: MeshContext[] = []
  const drain = () => {
    const done = queue
    queue = []
    for (const ctx of done) {
      const m = marksOf(ctx)
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
    options: shown,
    async setup(mesh) {
      if (mesh.mode !== 'serve') return
      log = mesh.log
      lookups =
        mesh.config.hooks?.cacheLookup !== undefined ||
        mesh.config.plugins.some((q) => q && q.name !== 'otel' && q.hooks?.cacheLookup !== undefined)
      p = await start(options, settings, () => log)
      return async () => {
        // the requests that ended on this turn, before their spans are sent
        drain()
        await p?.close()
      }
    },
    hooks: {
      beforeRequest(ctx) {
        // every field from the start: one object shape for all requests (no shape change per mark)
        if (p)
          ctx.meta.otel = {
            start: ctx.startedAt,
            cacheStart: undefined,
            cacheEnd: undefined,
            routeAt: undefined,
            end: 0,
            parent: parentOf(ctx.request.headers.get('traceparent')),
            upstream: undefined,
          } satisfies Marks
      },
      cacheLookup(ctx) {
        const m = lookups && p && marksOf(ctx)
        if (m) m.cacheStart = performance.now()
      },
      route(ctx) {
        const m = p && marksOf(ctx)
        if (!m) return
        m.routeAt = m.cacheEnd = performance.now()
        m.upstream = chooseUpstreamIds(m.parent)
        if (m.upstream) setTraceparent(ctx, `00-${m.upstream.traceId}-${m.upstream.spanId}-01`)
      },
      afterResponse(ctx) {
        const m = p && marksOf(ctx)
        if (!m || !p) return
        m.end = performance.now()
        // off the response path: the spans are built DRAIN_MS later, for all the requests that
        // ended meanwhile
        const waiting = queue.push(ctx)
        if (waiting === 1) setTimeout(drain, DRAIN_MS).unref()
        else if (waiting === MAX_WAITING) setImmediate(drain)
      },
    },
  })
}
