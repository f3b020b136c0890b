// OpenTelemetry export over OTLP/HTTP (JSON): one span per request with the GenAI semantic
// conventions and agentmesh.* attributes, child spans for the cache lookup and the upstream call,
// the client's traceparent as parent; metrics gen_ai.client.token.usage and
// gen_ai.client.operation.duration. Off unless an endpoint is given (option or
// OTEL_EXPORTER_OTLP_ENDPOINT). Spans are written after the answer went out (setImmediate) and
// exported in batches: nothing waits on the collector.
//
// The OTLP encoding, the batching and the metric aggregation are this plugin's own, not the
// official SDK's: bench:proxy's "metrics+tracing on vs off" measured 0.111 ms of added CPU per
// request through the SDK, 40% of it the exporter's serializer and 18% the metrics SDK's attribute
// hashing (otlp.ts and histograms.ts say how each is done instead). The data sent is the same.
import { definePlugin } from '../../core/plugin.ts'
import type { Logger, MeshContext, Plugin } from '../../core/types.ts'
import { SpanBatcher } from './batch.ts'
import { GenAiHistograms } from './histograms.ts'
import { checkHeaders, envelope, OtlpHttp, parseHeaderList, type PostOptions } from './otlp.ts'
import * as spans from './spans.ts'
import type { Marks } from './spans.ts'

// what the hooks call on every request, taken once: under the TypeScript loader (jiti) every use of
// an imported binding is a property read through its module wrapper. `performance` is the global.
const { chooseUpstreamIds, emitSpans, parentOf } = spans

export interface OtelOptions {
  /** OTLP/HTTP base URL, e.g. http://collector:4318 (default: env OTEL_EXPORTER_OTLP_ENDPOINT; none: off) */
  endpoint?: string
  /** service.name of the resource (default 'agentmesh') */
  serviceName?: string
  /** how often metrics are exported, ms (default 10,000) */
  metricsIntervalMs?: number
  /** longest wait before a batch of spans is sent, ms (default 2,000) */
  batchDelayMs?: number
  /**
   * extra headers on every export, e.g. a collector's `{ authorization: 'Bearer …' }` (default:
   * env OTEL_EXPORTER_OTLP_HEADERS, `k1=v1,k2=v2`; OTEL_EXPORTER_OTLP_TRACES_HEADERS and
   * _METRICS_HEADERS add to it per signal). Never logged, shown by name only.
   */
  headers?: Record<string, string>
  /** per export, ms (default: env OTEL_EXPORTER_OTLP_TIMEOUT, else 10,000) */
  timeoutMs?: number
}

const OPTION_NAMES = ['endpoint', 'serviceName', 'metricsIntervalMs', 'batchDelayMs', 'headers', 'timeoutMs']

interface Pipeline {
  spans: SpanBatcher
  metrics: GenAiHistograms
  close(): Promise<void>
}

// the SDK's defaults: batches of 512 spans, 2048 waiting at most, 10 s per export
const MAX_BATCH = 512
const MAX_QUEUE = 2048
const TIMEOUT_MS = 10_000
// what shutdown waits for the last exports at most
const CLOSE_MS = 5_000

/** the exporter's settings from the options, else the OpenTelemetry spec's environment variables */
function exportSettings(o: OtelOptions): PostOptions {
  const env = process.env
  const base = o.headers
    ? checkHeaders({ ...o.headers }, 'headers')
    : parseHeaderList(env.OTEL_EXPORTER_OTLP_HEADERS, 'OTEL_EXPORTER_OTLP_HEADERS')
  const traces = parseHeaderList(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS, 'OTEL_EXPORTER_OTLP_TRACES_HEADERS')
  const metrics = parseHeaderList(env.OTEL_EXPORTER_OTLP_METRICS_HEADERS, 'OTEL_EXPORTER_OTLP_METRICS_HEADERS')
  const timeoutMs =
    o.timeoutMs ?? (env.OTEL_EXPORTER_OTLP_TIMEOUT ? Number(env.OTEL_EXPORTER_OTLP_TIMEOUT) : TIMEOUT_MS)
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0)
    throw new Error(`otel: timeoutMs (or OTEL_EXPORTER_OTLP_TIMEOUT) must be a positive number of ms`)
  return {
    timeoutMs,
    maxInFlight: 4,
    headers: { traces: { ...base, ...traces }, metrics: { ...base, ...metrics } },
  }
}

function start(endpoint: string, o: OtelOptions, settings: PostOptions, log: () => Logger | undefined): Pipeline {
  const http = new OtlpHttp(endpoint.replace(/\/+$/, ''), settings, log)
  const wrap = envelope(o.serviceName ?? 'agentmesh')
  const spans = new SpanBatcher(
    http,
    wrap.traces,
    { delayMs: o.batchDelayMs ?? 2000, maxBatch: MAX_BATCH, maxQueue: MAX_QUEUE },
    log,
  )
  const metrics = new GenAiHistograms()
  let metricsOut: Promise<boolean> | undefined
  const exportMetrics = () => {
    // one metrics export at a time: a slow collector gets the next (cumulative) one instead
    if (metricsOut) return
    const items = metrics.encode(Date.now())
    if (!items) return
    metricsOut = http.post('/v1/metrics', wrap.metrics(items), 'metrics')
    void metricsOut.then(() => {
      metricsOut = undefined
    })
  }
  const timer = setInterval(exportMetrics, o.metricsIntervalMs ?? 10_000).unref()
  return {
    spans,
    metrics,
    close: async () => {
      clearInterval(timer)
      const deadline = Date.now() + CLOSE_MS
      // the last metrics export waits for one in flight (bounded: it is sent anyway after 1 s)
      if (metricsOut) await Promise.race([metricsOut, new Promise((r) => setTimeout(r, 1000).unref())])
      metricsOut = undefined
      exportMetrics()
      await spans.flush(deadline)
      await http.close(deadline)
    },
  }
}

function record(p: Pipeline, ctx: MeshContext, marks: Marks) {
  emitSpans(p.spans.out, ctx, marks)
  p.metrics.record(ctx, (marks.end - marks.start) / 1000)
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
  const endpoint = options.endpoint ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT
  // off: no hooks at all, so no phase pays for a plugin that does nothing
  if (!endpoint) return definePlugin({ name: 'otel', options: shown })
  if (!/^https?:\/\//.test(endpoint))
    throw new Error(`otel: endpoint must be an http(s) URL, got ${JSON.stringify(endpoint)}`)
  // read and checked now: a bad header fails the config, not every export
  const settings = exportSettings(options)
  let p: Pipeline | undefined
  let log: Logger | undefined
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
    setup(mesh) {
      if (mesh.mode !== 'serve') return
      log = mesh.log
      p = start(endpoint, options, settings, () => log)
      return async () => {
        // the requests that ended on this turn, before their spans are sent
        drain()
        await p?.close()
      }
    },
    hooks: {
      beforeRequest(ctx) {
        if (p)
          ctx.meta.otel = { start: ctx.startedAt, end: 0, parent: parentOf(ctx.request.headers.get('traceparent')) }
      },
      cacheLookup(ctx) {
        const m = p && marksOf(ctx)
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
        // off the response path: the spans are built on a later turn of the event loop, one turn
        // for all the requests that ended before it
        if (queue.push(ctx) === 1) setImmediate(drain)
      },
    },
  })
}
