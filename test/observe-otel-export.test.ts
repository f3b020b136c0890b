// The otel plugin's own OTLP/HTTP export (plugins/otel/batch.ts, otlp.ts) against real local HTTP
// collectors: batches of at most maxBatch spans in the OTLP envelope, the partial one after the
// delay or at shutdown; a collector that is down or hangs costs one attempt per batch (no retries),
// is logged once per outage, and what it did not take is counted as dropped; past the queue bound
// the oldest spans go.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'
import { SpanBatcher } from '../plugins/otel/batch.ts'
import { envelope, OtlpHttp, parseHeaderList } from '../plugins/otel/otlp.ts'
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
  const http = new OtlpHttp(url, { timeoutMs: o.timeoutMs ?? 5000, maxInFlight: 1 }, log)
  const batcher = new SpanBatcher(
    http,
    envelope('svc-test').traces,
    { delayMs: o.delayMs ?? 60_000, maxBatch: o.maxBatch ?? 4, maxQueue: o.maxQueue ?? 100 },
    log,
  )
  open.push(http)
  return { http, batcher, logs }
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
    // three requests of three spans each, as emitSpans writes them: 3 + 3 > 4, so one request a batch
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

  it('a collector that is down: one attempt per batch, dropped and counted, logged once, and once when back', async () => {
    // a port that was free a moment ago: nothing listens there until the collector "comes back"
    const probe = await collector()
    const port = probe.port
    await probe.close()
    const { batcher, http, logs } = setup(`http://127.0.0.1:${port}`, { maxBatch: 2 })
    for (let i = 0; i < 6; i++) batcher.push(span(i))
    await until(() => batcher.dropped === 6, 'three failed batches', 5000)
    expect(http.failures).toBe(3)
    expect(logs.filter((l) => l.level === 'warn')).toHaveLength(1)
    const c = await collector(undefined, port)
    open.push(c)
    for (let i = 6; i < 10; i++) batcher.push(span(i))
    await until(() => batcher.exported === 4, 'the batches after the collector came back', 5000)
    expect(ids(spansIn(c.bodies))).toEqual([6, 7, 8, 9])
    expect(logs.filter((l) => l.level === 'info').map((l) => l.msg)).toEqual(['otel: the collector answers again'])
    expect(logs.filter((l) => l.level === 'warn')).toHaveLength(1)
  })

  it('a collector that answers 503 is not retried: the batch is dropped', async () => {
    let requests = 0
    const c = await collector((_q, res) => {
      requests++
      res.writeHead(503).end()
    })
    open.push(c)
    const { batcher } = setup(c.url, { maxBatch: 3 })
    for (let i = 0; i < 3; i++) batcher.push(span(i))
    await until(() => batcher.dropped === 3, 'the dropped batch', 5000)
    await new Promise((r) => setTimeout(r, 200))
    expect(requests).toBe(1)
  })

  it('a collector that hangs: the export times out; past the queue bound the oldest spans are dropped', async () => {
    // the first export never gets an answer, the later ones do
    const held: ServerResponse[] = []
    const c = await collector((_q, res) => {
      if (held.length === 0) held.push(res)
      else res.writeHead(200).end('{}')
    })
    open.push(c)
    const { batcher, http, logs } = setup(c.url, { maxBatch: 2, maxQueue: 4, timeoutMs: 300 })
    // batch [0,1] goes out and hangs (one connection); [2,3] [4,5] [6,7] wait: 6 > 4, so [2,3] goes
    for (let i = 0; i < 8; i++) batcher.push(span(i))
    expect(batcher.dropped).toBe(2)
    expect(logs.some((l) => l.level === 'warn' && l.msg.includes('oldest'))).toBe(true)
    await until(() => http.failures >= 1, 'the timeout', 5000)
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
    expect(spansIn(got.filter((g) => g.path === '/v1/traces').map((g) => g.body))).toHaveLength(3)
  })

  it("a collector's headers (option or OTEL_EXPORTER_OTLP_HEADERS) go with every export and are never shown", async () => {
    expect(parseHeaderList('Authorization=Bearer%20abc , x-tenant=t1', 'env')).toEqual({
      authorization: 'Bearer abc',
      'x-tenant': 't1',
    })
    expect(() => parseHeaderList('novalue', 'env')).toThrow(/key=value/)
    expect(() => otel({ endpoint: 'http://127.0.0.1:1', headers: { 'x-a': 'line\nbreak' } })).toThrow(/line breaks/)
    const rx = await otlpReceiver()
    open.push(rx)
    const url = rx.url
    const saved = { ...process.env }
    process.env.OTEL_EXPORTER_OTLP_HEADERS = 'x-tenant=from-env'
    process.env.OTEL_EXPORTER_OTLP_METRICS_HEADERS = 'x-tenant=metrics-only'
    try {
      // the option replaces the generic env list; the per-signal env adds to it
      const plugin = otel({ endpoint: url, headers: { authorization: 'Bearer sekrit-collector-token' } })
      expect(JSON.stringify(plugin.options)).not.toContain('sekrit')
      const { mock, proxy } = await startMockAndProxy({ config: { plugins: [plugin] } })
      open.push(mock)
      const c = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'sk-x', maxRetries: 0 })
      await c.chat.completions.create({
        model: 'gpt-4o-mini',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'hi' }],
      })
      await proxy.close()
    } finally {
      process.env = saved
    }
    const seen = rx.got
    expect(seen.map((x) => x.path).sort()).toEqual(['/v1/metrics', '/v1/traces'])
    for (const x of seen) expect(x.headers.authorization).toBe('Bearer sekrit-collector-token')
    expect(seen.find((x) => x.path === '/v1/traces')!.headers['x-tenant']).toBeUndefined()
    expect(seen.find((x) => x.path === '/v1/metrics')!.headers['x-tenant']).toBe('metrics-only')
  })
})
