// The two exports, through the official OpenTelemetry JS packages: trace batches go through the
// OTLP/HTTP export delegate of @opentelemetry/otlp-exporter-base (the one OTLPTraceExporter is
// built on: its HTTP transport, retries with backoff on 429/502/503/504 and network errors within
// the timeout, Retry-After, gzip, concurrency limit, and the OTEL_EXPORTER_OTLP_* environment
// variables), with this plugin's own encoding as the serializer: a batch arrives already written as
// OTLP/protobuf or OTLP/JSON (batch.ts), so nothing is built per span at export time. Metrics go
// through the official OTLPMetricExporter of the protocol's package, which serializes the SDK's
// ResourceMetrics built from our histograms once per interval (histograms.ts).
import { ExportResultCode } from '@opentelemetry/core'
import { OTLPMetricExporter as JsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http'
import { OTLPMetricExporter as ProtoMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto'
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http'
import type { OTLPExporterNodeConfigBase } from '@opentelemetry/otlp-exporter-base/node-http'
import {
  type IExporterMetricsHelper,
  type IExportTraceServiceResponse,
  type ISerializer,
  JsonTraceSerializer,
  ProtobufTraceSerializer,
} from '@opentelemetry/otlp-transformer'
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics'
import type { Logger } from '../../core/types.ts'

/** OTLP/HTTP's two encodings, by OTEL_EXPORTER_OTLP_PROTOCOL's names */
export type Protocol = 'http/protobuf' | 'http/json'
const PROTOCOLS: readonly string[] = ['http/protobuf', 'http/json']

/**
 * The encoding a signal is sent in: the option, else OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL, else
 * OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf (the OTLP specification's default). gRPC is not
 * served: said at start, rather than every export failing against a gRPC port.
 */
export function resolveProtocol(option: unknown, signal: 'TRACES' | 'METRICS'): Protocol {
  const env = process.env
  const [from, value]: [string, unknown] =
    option !== undefined
      ? ['protocol', option]
      : env[`OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`]
        ? [`OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`, env[`OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`]]
        : env.OTEL_EXPORTER_OTLP_PROTOCOL
          ? ['OTEL_EXPORTER_OTLP_PROTOCOL', env.OTEL_EXPORTER_OTLP_PROTOCOL]
          : ['', 'http/protobuf']
  const v = typeof value === 'string' ? value.trim() : ''
  if (PROTOCOLS.includes(v)) return v as Protocol
  const grpc = v === 'grpc' ? " (not gRPC: point it at the collector's HTTP port, 4318 by default)" : ''
  throw new Error(
    `otel: ${from} is ${JSON.stringify(String(value).slice(0, 40))}: the protocol must be "http/protobuf" or "http/json"${grpc}`,
  )
}

/** a batch of spans, already encoded: `body` from `start` up to `size` is the request body */
export interface EncodedBatch {
  body: Buffer
  start: number
  size: number
  spans: number
}

/** the serializer the delegate calls: the batch is its own serialization */
const batchSerializer = (protocol: Protocol): ISerializer<EncodedBatch, IExportTraceServiceResponse> => {
  // a collector's partial-success answer, read as the official trace exporter of the protocol reads it
  const official = protocol === 'http/json' ? JsonTraceSerializer : ProtobufTraceSerializer
  return {
    serializeRequest: (b) => b.body.subarray(b.start, b.size),
    deserializeResponse: (data) => official.deserializeResponse(data),
  }
}

// what the delegate's self-observability counts (its meter is a no-op: none is given)
const batchMetricsHelper: IExporterMetricsHelper<EncodedBatch> = { name: 'span', countItems: (b) => b.spans }

export interface ExportSettings {
  /** base URL from the option (the signal's path is added); undefined: the environment's */
  endpoint?: string
  headers?: Record<string, string>
  timeoutMs?: number
  /** exports in flight at once per signal */
  maxInFlight: number
  /** each signal's encoding (resolveProtocol) */
  traces: Protocol
  metrics: Protocol
}

/** the exporters' options as the official exporters take them (their env variables fill the rest) */
function exporterConfig(s: ExportSettings, path: 'v1/traces' | 'v1/metrics'): OTLPExporterNodeConfigBase {
  return {
    url: s.endpoint ? `${s.endpoint}/${path}` : undefined,
    headers: s.headers,
    timeoutMillis: s.timeoutMs,
    // the delegate forgets a finished export a turn after its callback, when the next batch may
    // already be handed over: its limit is above ours, which is what bounds the exports in flight
    concurrencyLimit: s.maxInFlight * 2,
  }
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
// a value Node writes without throwing: visible Latin-1 and tabs/spaces, no CR/LF
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/

/** header names and values Node can send: a bad one fails at start, not at every export */
export function checkHeaders(headers: Record<string, unknown>, from: string): void {
  for (const [k, v] of Object.entries(headers)) {
    if (!HEADER_NAME.test(k)) throw new Error(`otel: ${from}: "${k.slice(0, 40)}" is not a header name`)
    if (typeof v !== 'string' || !HEADER_VALUE.test(v))
      throw new Error(`otel: ${from}: the value of "${k}" must be text without line breaks`)
  }
}

/**
 * The URL and headers each signal will use, resolved as the official exporters resolve them (the
 * option, else OTEL_EXPORTER_OTLP_<SIGNAL>_*, else OTEL_EXPORTER_OTLP_*): the headers checked now,
 * so a bad one fails the start rather than every export. A signal without an endpoint of its own
 * or a base one is not exported (undefined).
 */
export async function resolveSignal(s: ExportSettings, signal: 'TRACES' | 'METRICS'): Promise<string | undefined> {
  const path = signal === 'TRACES' ? 'v1/traces' : 'v1/metrics'
  if (!s.endpoint && !process.env[`OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`] && !process.env.OTEL_EXPORTER_OTLP_ENDPOINT)
    return undefined
  const c = convertLegacyHttpOptions(exporterConfig(s, path), signal, path, {})
  checkHeaders(await c.headers(), signal === 'TRACES' ? 'trace export headers' : 'metric export headers')
  return c.url
}

/**
 * Logs an outage once when it starts and once when the collector answers again (both signals):
 * every failed export is counted, not logged. The error's message only, never a header.
 */
export class Health {
  failures = 0
  #down = false
  constructor(private readonly log: () => Logger | undefined) {}
  result(ok: boolean, endpoint: string, error: Error | undefined, what: string): void {
    // without credentials a URL may carry (user:password@)
    const url = endpoint.replace(/\/\/[^/@]*@/, '//')
    if (ok) {
      if (this.#down) this.log()?.info('otel: the collector answers again', { url })
      this.#down = false
      return
    }
    this.failures++
    if (!this.#down)
      this.log()?.warn(
        'otel: an export failed (after the exporter retried); until the collector answers, what fails is dropped',
        {
          url,
          error: error?.message,
          dropped: what,
        },
      )
    this.#down = true
  }
}

/** trace batches through the official OTLP/HTTP export delegate */
export class TraceExport {
  inFlight = 0
  readonly #delegate
  readonly #pending = new Set<Promise<boolean>>()
  constructor(
    private readonly url: string,
    private readonly s: ExportSettings,
    private readonly health: Health,
  ) {
    const options = convertLegacyHttpOptions(exporterConfig(s, 'v1/traces'), 'TRACES', 'v1/traces', {
      'Content-Type': s.traces === 'http/json' ? 'application/json' : 'application/x-protobuf',
    })
    this.#delegate = createOtlpHttpExportDelegate(
      options,
      batchSerializer(s.traces),
      'otlp_http_span_exporter',
      batchMetricsHelper,
      undefined,
    )
  }

  /** the delegate refuses an export past its concurrency limit: batches wait while this is true */
  get busy(): boolean {
    return this.inFlight >= this.s.maxInFlight
  }

  /** resolves true when the collector took it (after the delegate's retries); never rejects */
  send(b: EncodedBatch): Promise<boolean> {
    this.inFlight++
    const done = new Promise<boolean>((resolve) =>
      this.#delegate.export(b, (r) => {
        this.inFlight--
        const ok = r.code === ExportResultCode.SUCCESS
        this.health.result(ok, this.url, r.error, `${b.spans} spans`)
        resolve(ok)
      }),
    )
    this.#pending.add(done)
    void done.then(() => this.#pending.delete(done))
    return done
  }

  /** waits for the exports in flight until `deadline` (Date.now()) */
  async close(deadline = Date.now() + 5000): Promise<void> {
    await settleBy([...this.#pending], deadline)
  }
}

/** metrics through the official OTLPMetricExporter, one export at a time */
export class MetricExport {
  #exporter: JsonMetricExporter | ProtoMetricExporter
  #out: Promise<void> | undefined
  constructor(
    private readonly url: string,
    s: ExportSettings,
    private readonly health: Health,
  ) {
    const config = exporterConfig(s, 'v1/metrics')
    this.#exporter = s.metrics === 'http/json' ? new JsonMetricExporter(config) : new ProtoMetricExporter(config)
  }

  /** exports `data` unless an export is still out (a slow collector gets the next, cumulative one) */
  send(data: () => ResourceMetrics | undefined): void {
    if (this.#out) return
    const rm = data()
    if (!rm) return
    this.#out = new Promise<void>((resolve) =>
      this.#exporter.export(rm, (r) => {
        this.health.result(r.code === ExportResultCode.SUCCESS, this.url, r.error, 'metrics')
        this.#out = undefined
        resolve()
      }),
    )
  }

  /** the last export (waits for one in flight for 1 s at most), then its answer until `deadline` */
  async close(data: () => ResourceMetrics | undefined, deadline: number): Promise<void> {
    if (this.#out) await settleBy([this.#out], Math.min(deadline, Date.now() + 1000))
    this.#out = undefined
    this.send(data)
    if (this.#out) await settleBy([this.#out], deadline)
  }
}

async function settleBy(promises: Promise<unknown>[], deadline: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise((r) => {
    timer = setTimeout(r, Math.max(0, deadline - Date.now()))
  })
  await Promise.race([Promise.allSettled(promises), late])
  clearTimeout(timer)
}
