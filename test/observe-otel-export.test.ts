// The otel plugin's export (plugins/otel/batch.ts, export.ts: the plugin's batches through the
// official OTLP/HTTP export delegate, metrics through the official OTLPMetricExporter) against real
// local HTTP collectors: batches of at most maxBatch spans in the OTLP envelope, the partial one
// after the delay or at shutdown; 429/502/503/504 and network errors retried as the SDK retries
// them, within the timeout; an outage logged once, and what the collector did not take counted as
// dropped; past the queue bound the oldest spans go; the OTEL_EXPORTER_OTLP_* environment.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'
import { SpanBatcher } from '../plugins/otel/batch.ts'
import { Health, TraceExport } from '../plugins/otel/export.ts'
import { jsonFraming } from '../plugins/otel/json.ts'
import OpenAI from 'openai'
import { otel } from '../plugins/otel/index.ts'
import { clearVendorEnv, startMockAndProxy, until } from './helpers/core-harness.ts'
import { otlpReceiver } from './helpers/otlp-receiver.ts'

type Handler = (req: IncomingMessage, res: ServerResponse) => void

/** the shared receiver, for the traces path only, with the decoded bodies in arrival order */
async function collector(handle: Handler = (_q, res) => res.writeHead(200).end('{}'), port = 0) {
  const rx = await otlpReceiver((req, res) => {
    expect(req.headers['content-type']).toBe('application/json')
    expect(req.url).toBe('/v1/traces')
    handle(req, res)
  }, port)
  return {
    ...rx,
    port: Number(new URL(rx.url).port),
    get bodies() {
      return rx.got.map((g) => g.body)
    },
  }
}

interface Logged {
  level: string
  msg: string
}
function logger(into: Logged[]) {
  const at = (level: string) => (msg: string) => into.push({ level, msg })
  return () => ({ info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') })
}

const span = (i: number) => `{"spanId":"${i.toString(16).padStart(16, '0')}","name":"s ${i}"}`
const spansIn = (bodies: any[]) =>
  bodies.flatMap((b) => b.resourceSpans.flatMap((rs: any) => rs.scopeSpans.flatMap((ss: any) => ss.spans)))
const ids = (spans: any[]) => spans.map((s) => Number.parseInt(s.spanId, 16))

const open: Array<{ close(): Promise<void> }> = []
afterEach(async () => {
  await Promise.allSettled(open.splice(0).map((x) => x.close()))
})

function setup(url: string, o: { delayMs?: number; maxBatch?: number; maxQueue?: number; timeoutMs?: number }) {
  const logs: Logged[] = []
  const log = logger(logs)
  const health = new Health(log)
  const http = new TraceExport(
    `${url}/v1/traces`,
    { endpoint: url, timeoutMs: o.timeoutMs ?? 5000, maxInFlight: 1, traces: 'http/json', metrics: 'http/json' },
    health,
  )
  const batcher = new SpanBatcher(
    http,
    jsonFraming('svc-test'),
    { delayMs: o.delayMs ?? 60_000, maxBatch: o.maxBatch ?? 4, maxQueue: o.maxQueue ?? 100 },
    log,
  )
  open.push(http)
  return { http, health, batcher, logs }
}

describe('otel export: batches over OTLP/HTTP', () => {
  it('sends full batches at once and the rest after the delay, each in the resource and scope envelope', async () => {
    const c = await collector()
    open.push(c)
    const { batcher } = setup(c.url, { maxBatch: 4, delayMs: 2500 })
    for (let i = 0; i < 10; i++) batcher.push(span(i))
    await until(() => c.bodies.length >= 2, 'the two full batches before the delay', 2000)
    expect(spansIn(c.bodies)).toHaveLength(8)
    await until(() => c.bodies.length === 3, 'the partial batch after the delay', 5000)
    expect(c.bodies.map((b) => spansIn([b]).length)).toEqual([4, 4, 2])
    expect(ids(spansIn(c.bodies))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    for (const b of c.bodies) {
      expect(b.resourceSpans).toHaveLength(1)
      expect(b.resourceSpans[0].resource).toEqual({
        attributes: [{ key: 'service.name', value: { stringValue: 'svc-test' } }],
        droppedAttributesCount: 0,
      })
      expect(b.resourceSpans[0].scopeSpans.map((ss: any) => ss.scope)).toEqual([{ name: 'agentmesh' }])
    }
    // the collector has the body before the exporter has its answer
    await until(() => batcher.exported === 10, 'the third answer', 2000)
    expect(batcher.dropped).toBe(0)
  })

  it("a request's spans pushed together never make a batch larger than maxBatch", async () => {
    const c = await collector()
    open.push(c)
    const { batcher } = setup(c.url, { maxBatch: 4, delayMs: 200 })
    // three requests of three spans each, as emitJsonSpans writes them: 3 + 3 > 4, so one request a batch
    for (let r = 0; r < 3; r++) batcher.push([0, 1, 2].map((k) => span(r * 3 + k)).join(','), 3)
    await until(() => c.bodies.length === 3, 'three batches', 5000)
    expect(c.bodies.map((b) => spansIn([b]).length)).toEqual([3, 3, 3])
    expect(ids(spansIn(c.bodies))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8])
    await until(() => batcher.exported === 9, 'the answers', 2000)
  })

  it('non-ASCII text arrives intact', async () => {
    const c = await collector()
    open.push(c)
    const { batcher } = setup(c.url, { maxBatch: 2 })
    batcher.push('{"name":"équipe 日本 \\"q\\""}')
    batcher.push('{"name":"🦊"}')
    await until(() => c.bodies.length === 1, 'the batch', 5000)
    expect(spansIn(c.bodies).map((s) => s.name)).toEqual(['équipe 日本 "q"', '🦊'])
  })

  it('a collector that is down: dropped and counted when the timeout leaves no retry, logged once, and once when back', async () => {
    // a port that was free a moment ago: nothing listens there until the collector "comes back"
    const probe = await collector()
    const port = probe.port
    await probe.close()
    // 500 ms: the SDK's first backoff (1 s ± 20%) does not fit, so one attempt per batch
    const { batcher, health, logs } = setup(`http://127.0.0.1:${port}`, { maxBatch: 2, timeoutMs: 500 })
    for (let i = 0; i < 6; i++) batcher.push(span(i))
    await until(() => batcher.dropped === 6, 'three failed batches', 5000)
    expect(health.failures).toBe(3)
    expect(logs.filter((l) => l.level === 'warn')).toHaveLength(1)
    const c = await collector(undefined, port)
    open.push(c)
    for (let i = 6; i < 10; i++) batcher.push(span(i))
    await until(() => batcher.exported === 4, 'the batches after the collector came back', 5000)
    expect(ids(spansIn(c.bodies))).toEqual([6, 7, 8, 9])
    expect(logs.filter((l) => l.level === 'info').map((l) => l.msg)).toEqual(['otel: the collector answers again'])
    expect(logs.filter((l) => l.level === 'warn')).toHaveLength(1)
  })

  it('503 and 429 are retried as the SDK retries them (Retry-After honoured): the batch arrives once taken', async () => {
    let requests = 0
    const c = await collector((_q, res) => {
      requests++
      // Retry-After: 0 is "now" to the SDK: the test does not wait for its backoff
      if (requests === 1) res.writeHead(503, { 'retry-after': '0' }).end()
      else if (requests === 2) res.writeHead(429, { 'retry-after': '0' }).end()
      else res.writeHead(200).end('{}')
    })
    open.push(c)
    const { batcher, health, logs } = setup(c.url, { maxBatch: 3 })
    for (let i = 0; i < 3; i++) batcher.push(span(i))
    await until(() => batcher.exported === 3, 'the batch, on the third attempt', 5000)
    expect(requests).toBe(3)
    // the same body each time
    expect(c.bodies.map((b) => ids(spansIn([b])))).toEqual([
      [0, 1, 2],
      [0, 1, 2],
      [0, 1, 2],
    ])
    expect(batcher.dropped).toBe(0)
    expect(health.failures).toBe(0)
    expect(logs).toHaveLength(0)
  })

  it('a collector that keeps answering 503 gets the SDK’s 5 retries, then the batch is dropped; a 400 is not retried', async () => {
    let requests = 0
    const c = await collector((_q, res) => {
      requests++
      res.writeHead(503, { 'retry-after': '0' }).end()
    })
    open.push(c)
    const { batcher, health } = setup(c.url, { maxBatch: 3 })
    for (let i = 0; i < 3; i++) batcher.push(span(i))
    await until(() => batcher.dropped === 3, 'the dropped batch', 5000)
    expect(requests).toBe(6)
    expect(health.failures).toBe(1)

    let bad = 0
    const c400 = await collector((_q, res) => {
      bad++
      res.writeHead(400).end('{}')
    })
    open.push(c400)
    const s400 = setup(c400.url, { maxBatch: 3 })
    for (let i = 0; i < 3; i++) s400.batcher.push(span(i))
    await until(() => s400.batcher.dropped === 3, 'the refused batch', 5000)
    await new Promise((r) => setTimeout(r, 200))
    expect(bad).toBe(1)
  })

  it('a collector that hangs: the export times out; past the queue bound the oldest spans are dropped', async () => {
    // the first export never gets an answer, the later ones do
    const held: ServerResponse[] = []
    const c = await collector((_q, res) => {
      if (held.length === 0) held.push(res)
      else res.writeHead(200).end('{}')
    })
    open.push(c)
    // 300 ms: a timed-out attempt leaves no room for the SDK's first backoff (1 s ± 20%)
    const { batcher, health, logs } = setup(c.url, { maxBatch: 2, maxQueue: 4, timeoutMs: 300 })
    // batch [0,1] goes out and hangs (one connection); [2,3] [4,5] [6,7] wait: 6 > 4, so [2,3] goes
    for (let i = 0; i < 8; i++) batcher.push(span(i))
    expect(batcher.dropped).toBe(2)
    expect(logs.some((l) => l.level === 'warn' && l.msg.includes('oldest'))).toBe(true)
    await until(() => health.failures >= 1, 'the timeout', 5000)
    await until(() => batcher.exported === 4, 'the waiting batches', 5000)
    // the hung batch [0,1] was dropped, [2,3] never sent; the newest arrived
    expect(ids(spansIn(c.bodies)).slice(-4)).toEqual([4, 5, 6, 7])
    expect(batcher.dropped).toBe(4)
    for (const res of held) res.destroy()
  })

  it('flush (shutdown) sends the partial batch without waiting for the delay', async () => {
    const c = await collector()
    open.push(c)
    const { batcher } = setup(c.url, { maxBatch: 100, delayMs: 60_000 })
    for (let i = 0; i < 3; i++) batcher.push(span(i))
    await batcher.flush(Date.now() + 5000)
    await until(() => batcher.exported === 3, 'the flushed batch', 5000)
    expect(ids(spansIn(c.bodies))).toEqual([0, 1, 2])
  })

  it('a proxy shutting down sends the spans and metrics it holds, without waiting for the delays', async () => {
    clearVendorEnv()
    const rx = await otlpReceiver()
    open.push(rx)
    const { got, url } = rx
    const { mock, proxy } = await startMockAndProxy({
      config: { plugins: [otel({ endpoint: url, batchDelayMs: 60_000, metricsIntervalMs: 60_000 })] },
    })
    open.push(mock)
    const c = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'sk-x', maxRetries: 0 })
    await c.chat.completions.create({
      model: 'gpt-4o-mini',
      max_tokens: 5,
      messages: [{ role: 'user', content: 'bye' }],
    })
    expect(got).toHaveLength(0)
    await proxy.close()
    expect(got.map((g) => g.path).sort()).toEqual(['/v1/metrics', '/v1/traces'])
    // the request span and the upstream call's: no cache plugin here, so no cache lookup and no span for one
    const sent = spansIn(got.filter((g) => g.path === '/v1/traces').map((g) => g.body))
    expect(sent.map((s: any) => s.kind).sort()).toEqual([2, 3])
    expect(sent.some((s: any) => s.name === 'agentmesh.cache_lookup')).toBe(false)
  })

  it("a collector's headers (option over OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]HEADERS) go with every export, never shown", async () => {
    expect(() => otel({ endpoint: 'http://127.0.0.1:1', headers: { 'x-a': 'line\nbreak' } })).toThrow(/line breaks/)
    const rx = await otlpReceiver()
    open.push(rx)
    const saved = { ...process.env }
    process.env.OTEL_EXPORTER_OTLP_HEADERS = 'x-tenant=from-env,authorization=Bearer%20env-token,x-space=a%20b'
    process.env.OTEL_EXPORTER_OTLP_METRICS_HEADERS = 'x-tenant=metrics-only'
    try {
      // as the official exporters merge them: the option's over the env's, the per-signal env's
      // over the generic one
      const plugin = otel({ endpoint: rx.url, headers: { authorization: 'Bearer sekrit-collector-token' } })
      expect(JSON.stringify(plugin.options)).not.toContain('sekrit')
      await oneRequest(plugin)
    } finally {
      process.env = saved
    }
    const seen = rx.got
    expect(seen.map((x) => x.path).sort()).toEqual(['/v1/metrics', '/v1/traces'])
    for (const x of seen) {
      expect(x.headers.authorization).toBe('Bearer sekrit-collector-token')
      expect(x.headers['x-space']).toBe('a b')
    }
    expect(seen.find((x) => x.path === '/v1/traces')!.headers['x-tenant']).toBe('from-env')
    expect(seen.find((x) => x.path === '/v1/metrics')!.headers['x-tenant']).toBe('metrics-only')
  })

  it('a header from the environment that Node cannot send fails the start', async () => {
    const saved = { ...process.env }
    process.env.OTEL_EXPORTER_OTLP_TRACES_HEADERS = 'x-a=line%0Abreak'
    try {
      const plugin = otel({ endpoint: 'http://127.0.0.1:9' })
      await expect(startMockAndProxy({ config: { plugins: [plugin] } })).rejects.toThrow(/line breaks/)
    } finally {
      process.env = saved
    }
  })

  it('per-signal endpoints and gzip from the environment (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, _METRICS_ENDPOINT, _COMPRESSION)', async () => {
    const traces = await otlpReceiver()
    const metrics = await otlpReceiver(undefined, 0, () => 'metrics')
    open.push(traces, metrics)
    const saved = { ...process.env }
    process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = `${traces.url}/custom/traces`
    process.env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT = `${metrics.url}/m`
    process.env.OTEL_EXPORTER_OTLP_COMPRESSION = 'gzip'
    process.env.OTEL_EXPORTER_OTLP_TIMEOUT = '3000'
    try {
      // no endpoint option: the per-signal ones switch the plugin on, each used as it is
      await oneRequest(otel({ batchDelayMs: 60_000, metricsIntervalMs: 60_000 }))
    } finally {
      process.env = saved
    }
    expect(traces.got.map((g) => g.path)).toEqual(['/custom/traces'])
    expect(metrics.got.map((g) => g.path)).toEqual(['/m'])
    for (const g of [...traces.got, ...metrics.got]) expect(g.headers['content-encoding']).toBe('gzip')
    // the receiver gunzipped and decoded them
    // the request span and the upstream call's (no cache plugin: no lookup span)
    expect(spansIn(traces.got.map((g) => g.body))).toHaveLength(2)
    expect(metrics.got[0]!.body.resourceMetrics[0].scopeMetrics[0].metrics.map((m: any) => m.name)).toEqual([
      'gen_ai.client.token.usage',
      'gen_ai.client.operation.duration',
    ])
  })

  it('the encoding: protobuf by default, OTEL_EXPORTER_OTLP_PROTOCOL, per signal, the option over both; gRPC refused', async () => {
    const rx = await otlpReceiver()
    open.push(rx)
    const sent = () => rx.got.map((g) => `${g.path} ${g.headers['content-type']}`).sort()
    const saved = { ...process.env }
    try {
      await oneRequest(otel({ endpoint: rx.url, batchDelayMs: 60_000, metricsIntervalMs: 60_000 }))
      expect(sent()).toEqual(['/v1/metrics application/x-protobuf', '/v1/traces application/x-protobuf'])
      rx.got.length = 0
      process.env.OTEL_EXPORTER_OTLP_PROTOCOL = 'http/json'
      process.env.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL = 'http/protobuf'
      await oneRequest(otel({ endpoint: rx.url, batchDelayMs: 60_000, metricsIntervalMs: 60_000 }))
      expect(sent()).toEqual(['/v1/metrics application/x-protobuf', '/v1/traces application/json'])
      rx.got.length = 0
      await oneRequest(
        otel({ endpoint: rx.url, batchDelayMs: 60_000, metricsIntervalMs: 60_000, protocol: 'http/protobuf' }),
      )
      expect(sent()).toEqual(['/v1/metrics application/x-protobuf', '/v1/traces application/x-protobuf'])
      // both decoded: the request span and the upstream call's in each trace export
      expect(spansIn(rx.got.filter((g) => g.path === '/v1/traces').map((g) => g.body))).toHaveLength(2)
      process.env.OTEL_EXPORTER_OTLP_PROTOCOL = 'grpc'
      expect(() => otel({ endpoint: rx.url })).toThrow(
        /OTEL_EXPORTER_OTLP_PROTOCOL is "grpc".*http\/protobuf.*HTTP port, 4318/,
      )
    } finally {
      process.env = saved
    }
    expect(() => otel({ endpoint: rx.url, protocol: 'grpc' as never })).toThrow(
      /protocol must be "http\/protobuf" or "http\/json"/,
    )
  })

  it('only the signal that has an endpoint is exported', async () => {
    const traces = await otlpReceiver()
    open.push(traces)
    const saved = { ...process.env }
    process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = `${traces.url}/v1/traces`
    try {
      await oneRequest(otel({ batchDelayMs: 60_000, metricsIntervalMs: 60_000 }))
    } finally {
      process.env = saved
    }
    // no metrics export went to the SDK's default (localhost:4318) or anywhere else
    expect(traces.got.map((g) => g.path)).toEqual(['/v1/traces'])
  })
})

/** one chat call through a proxy with `plugin`, then the proxy's shutdown (which sends what it holds) */
async function oneRequest(plugin: ReturnType<typeof otel>) {
  clearVendorEnv()
  const { mock, proxy } = await startMockAndProxy({ config: { plugins: [plugin] } })
  open.push(mock)
  const c = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'sk-x', maxRetries: 0 })
  await c.chat.completions.create({
    model: 'gpt-4o-mini',
    max_tokens: 5,
    messages: [{ role: 'user', content: 'hi' }],
  })
  await proxy.close()
}
