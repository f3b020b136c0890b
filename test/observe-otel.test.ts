// OpenTelemetry over OTLP/HTTP against a local receiver that decodes what it gets (the exporters'
// JSON encoding): one request span with the GenAI attributes and agentmesh.*, children for the
// cache lookup and the upstream call, the client's traceparent as parent (and passed upstream),
// and the gen_ai.client.* metrics.
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { exactCache } from '../plugins/exact-cache/index.ts'
import { otel } from '../plugins/otel/index.ts'
import { clearVendorEnv, startMockAndProxy, until, type Proxy } from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'
import { otlpReceiver, type OtlpReceiver, type Received } from './helpers/otlp-receiver.ts'

const spansOf = (got: Received[]) =>
  got
    .filter((g) => g.path === '/v1/traces')
    .flatMap((g) => g.body.resourceSpans.flatMap((rs: any) => rs.scopeSpans.flatMap((ss: any) => ss.spans)))
const attrs = (span: any) => Object.fromEntries(span.attributes.map((a: any) => [a.key, Object.values(a.value)[0]]))
/** each attribute's OTLP value type (stringValue, intValue, doubleValue, boolValue) */
const types = (span: any) => Object.fromEntries(span.attributes.map((a: any) => [a.key, Object.keys(a.value)[0]]))
const metricsOf = (got: Received[]) =>
  got
    .filter((g) => g.path === '/v1/metrics')
    .flatMap((g) =>
      g.body.resourceMetrics.flatMap((rm: any) => rm.scopeMetrics.flatMap((sm: any) => sm.metrics as any[])),
    )
const nanosNow = () => BigInt(Date.now()) * 1_000_000n

describe.each(['http/protobuf', 'http/json'] as const)('otel: traces and metrics over OTLP/HTTP (%s)', (protocol) => {
  let mock: MockUpstream
  let proxy: Proxy
  let rx: OtlpReceiver
  beforeAll(async () => {
    clearVendorEnv()
    rx = await otlpReceiver()
    ;({ mock, proxy } = await startMockAndProxy({
      config: {
        plugins: [otel({ endpoint: rx.url, batchDelayMs: 100, metricsIntervalMs: 300, protocol }), exactCache()],
      },
    }))
  })
  afterAll(async () => {
    await proxy?.close()
    await mock?.close()
    rx?.server.close()
  })

  it("one span per request with GenAI attributes, cache and upstream children, the client's trace as parent", async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
    const c = new OpenAI({
      baseURL: `${proxy.url}/v1`,
      apiKey: 'sk-x',
      maxRetries: 0,
      defaultHeaders: {
        traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
        'X-AgentMesh-Team': 'eng',
        'x-agentmesh-session': 'conv-1',
      },
    })
    await c.chat.completions.create({
      model: 'gpt-4o-mini',
      max_tokens: 20,
      messages: [{ role: 'user', content: 'trace me' }],
    })
    await c.chat.completions.create({
      model: 'gpt-4o-mini',
      max_tokens: 20,
      messages: [{ role: 'user', content: 'trace me' }],
    }) // exact hit
    await until(() => spansOf(rx.got).filter((s) => s.kind === 2).length >= 2, 'two request spans', 10_000)
    const spans = spansOf(rx.got)
    const roots = spans.filter((s) => s.kind === 2) // SERVER
    for (const r of roots) {
      expect(r.traceId).toBe(traceId)
      expect(r.parentSpanId).toBe('00f067aa0ba902b7')
    }
    const miss = roots.find((s) => attrs(s)['agentmesh.cache'] === 'miss')!
    expect(attrs(miss)).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'openai',
      'gen_ai.request.model': 'gpt-4o-mini',
      'agentmesh.team': 'eng',
      'gen_ai.conversation.id': 'conv-1',
    })
    expect(Number(attrs(miss)['gen_ai.usage.input_tokens'])).toBeGreaterThan(0)
    expect(Number(attrs(miss)['gen_ai.usage.output_tokens'])).toBeGreaterThan(0)
    expect(attrs(miss)['gen_ai.response.model']).toMatch(/^gpt-4o-mini/)
    const children = spans.filter((s) => s.parentSpanId === miss.spanId)
    expect(children.map((s) => s.name).sort()).toEqual(['agentmesh.cache_lookup', 'chat gpt-4o-mini'])
    const hit = roots.find((s) => attrs(s)['agentmesh.cache'] === 'exact')!
    expect(spans.filter((s) => s.parentSpanId === hit.spanId).map((s) => s.name)).toEqual(['agentmesh.cache_lookup'])
    // prompt text never leaves in a span
    expect(JSON.stringify(spans)).not.toContain('trace me')
    // the vendor's traceparent: the client's trace, with the proxy's exported upstream span as the parent
    const upstream = children.find((s) => s.kind === 3)! // CLIENT
    expect(mock.received).toHaveLength(1)
    expect(mock.received[0]!.headers.traceparent).toBe(`00-${traceId}-${upstream.spanId}-01`)
  })

  it('encodes as the official OTLP exporter does: ids, nanosecond times, typed attributes, flags, resource, scope', async () => {
    const from = nanosNow()
    const c = new OpenAI({
      baseURL: `${proxy.url}/v1`,
      apiKey: 'sk-x',
      maxRetries: 0,
      defaultHeaders: {
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01',
        'X-AgentMesh-Team': 'enc-team',
        // free text, escaped in the JSON
        'x-agentmesh-session': 'conv "quoted" \\ {x}',
      },
    })
    await c.chat.completions.create({
      model: 'gpt-4o-mini',
      max_tokens: 20,
      messages: [{ role: 'user', content: 'enc' }],
    })
    await until(
      () => spansOf(rx.got).some((s) => s.traceId === '0af7651916cd43dd8448eb211c80319c' && s.kind === 2),
      'the request span',
      10_000,
    )
    const to = nanosNow()
    const exports = rx.got.filter((g) => g.path === '/v1/traces')
    for (const e of exports) {
      expect(e.protocol).toBe(protocol)
      expect(e.headers['content-type']).toBe(protocol === 'http/json' ? 'application/json' : 'application/x-protobuf')
      expect(e.body.resourceSpans).toHaveLength(1)
      const rs = e.body.resourceSpans[0]
      const attributes = [{ key: 'service.name', value: { stringValue: 'agentmesh' } }]
      // the JSON writes the resource's dropped count, 0; protobuf leaves a zero out
      expect(rs.resource).toEqual(protocol === 'http/json' ? { attributes, droppedAttributesCount: 0 } : { attributes })
      expect(rs.scopeSpans.map((ss: any) => ss.scope)).toEqual([{ name: 'agentmesh' }])
    }
    const spans = spansOf(rx.got).filter((s) => s.traceId === '0af7651916cd43dd8448eb211c80319c')
    expect(spans).toHaveLength(3)
    const root = spans.find((s) => s.kind === 2)!
    const lookup = spans.find((s) => s.kind === 1)!
    const up = spans.find((s) => s.kind === 3)!
    for (const s of spans) {
      expect(s.spanId).toMatch(/^[0-9a-f]{16}$/)
      expect(s.startTimeUnixNano).toMatch(/^\d{19}$/)
      expect(s.endTimeUnixNano).toMatch(/^\d{19}$/)
      const [start, end] = [BigInt(s.startTimeUnixNano), BigInt(s.endTimeUnixNano)]
      // epoch nanoseconds of this request (1 ms of slack: timeOrigin is rounded)
      expect(start >= from - 1_000_000n && end <= to + 1_000_000n && start <= end).toBe(true)
      expect(s.status).toEqual({ code: 0 })
      // OTLP's defaults are left out (as proto3 allows): no dropped counts, no events, no links
      for (const k of ['droppedAttributesCount', 'events', 'droppedEventsCount', 'links', 'droppedLinksCount'])
        expect(s).not.toHaveProperty(k)
    }
    // the children inside the request span, under it
    for (const child of [lookup, up]) {
      expect(child.parentSpanId).toBe(root.spanId)
      expect(BigInt(child.startTimeUnixNano) >= BigInt(root.startTimeUnixNano)).toBe(true)
      expect(BigInt(child.endTimeUnixNano) <= BigInt(root.endTimeUnixNano)).toBe(true)
      // sampled, the parent known to be local
      expect(child.flags).toBe(0x101)
    }
    // sampled, the parent remote (the client's)
    expect(root.flags).toBe(0x301)
    expect(root.parentSpanId).toBe('b9c7c989f97918e1')
    expect(root.name).toBe('chat gpt-4o-mini')
    expect(up.name).toBe('chat gpt-4o-mini')
    expect(lookup.name).toBe('agentmesh.cache_lookup')
    expect(types(root)).toMatchObject({
      'gen_ai.operation.name': 'stringValue',
      'agentmesh.team': 'stringValue',
      'agentmesh.cost_usd': 'doubleValue',
      'agentmesh.saved_usd': 'intValue',
      'http.response.status_code': 'intValue',
      'gen_ai.usage.input_tokens': 'intValue',
      'gen_ai.usage.output_tokens': 'intValue',
    })
    expect(typeof attrs(root)['gen_ai.usage.input_tokens']).toBe('number')
    expect(attrs(root)['gen_ai.conversation.id']).toBe('conv "quoted" \\ {x}')
    expect(attrs(up)).toEqual({
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'openai',
      'gen_ai.request.model': 'gpt-4o-mini',
      'http.response.status_code': 200,
    })
    expect(attrs(lookup)).toEqual({ 'agentmesh.cache': 'miss' })
  })

  it('a failed call: the request span has status ERROR and error.type, the duration metric the error.type', async () => {
    mock.behaviour.status = 500
    try {
      const c = new OpenAI({
        baseURL: `${proxy.url}/v1`,
        apiKey: 'sk-x',
        maxRetries: 0,
        defaultHeaders: { 'X-AgentMesh-Team': 'failing' },
      })
      await expect(
        c.chat.completions.create({
          model: 'gpt-4o-mini',
          max_tokens: 20,
          messages: [{ role: 'user', content: 'fail' }],
        }),
      ).rejects.toThrow()
    } finally {
      mock.behaviour.status = undefined
    }
    await until(
      () => spansOf(rx.got).some((s) => s.kind === 2 && attrs(s)['agentmesh.team'] === 'failing'),
      'the failed request span',
      10_000,
    )
    const root = spansOf(rx.got).find((s) => s.kind === 2 && attrs(s)['agentmesh.team'] === 'failing')!
    const a = attrs(root)
    expect(a['error.type']).toEqual(expect.any(String))
    expect(a['http.response.status_code']).toBeGreaterThanOrEqual(500)
    expect(root.status.code).toBe(2)
    if (root.status.message !== undefined) expect(root.status.message).toBe(a['error.type'])
    await until(
      () =>
        metricsOf(rx.got).some(
          (m) =>
            m.name === 'gen_ai.client.operation.duration' &&
            m.histogram.dataPoints.some((d: any) => d.attributes.some((x: any) => x.key === 'error.type')),
        ),
      'the duration with error.type',
      10_000,
    )
  })

  it("without a client trace, the vendor is told the proxy's new trace and upstream span", async () => {
    const before = mock.received.length
    const c = new OpenAI({
      baseURL: `${proxy.url}/v1`,
      apiKey: 'sk-x',
      maxRetries: 0,
      defaultHeaders: { 'X-AgentMesh-Team': 'solo-trace' },
    })
    await c.chat.completions.create({
      model: 'gpt-4o-mini',
      max_tokens: 20,
      messages: [{ role: 'user', content: 'no parent here' }],
    })
    await until(
      () => spansOf(rx.got).some((s) => s.kind === 2 && attrs(s)['agentmesh.team'] === 'solo-trace'),
      'the request span',
      10_000,
    )
    const spans = spansOf(rx.got)
    const root = spans.find((s) => s.kind === 2 && attrs(s)['agentmesh.team'] === 'solo-trace')!
    expect(root.parentSpanId ?? '').toBe('')
    const upstream = spans.find((s) => s.kind === 3 && s.parentSpanId === root.spanId)!
    expect(upstream.traceId).toBe(root.traceId)
    expect(mock.received.slice(before).map((r) => r.headers.traceparent)).toEqual([
      `00-${root.traceId}-${upstream.spanId}-01`,
    ])
  })

  it('an unsampled client trace goes upstream as it came', async () => {
    const before = mock.received.length
    const header = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00'
    const c = new OpenAI({
      baseURL: `${proxy.url}/v1`,
      apiKey: 'sk-x',
      maxRetries: 0,
      defaultHeaders: { traceparent: header },
    })
    await c.chat.completions.create({
      model: 'gpt-4o-mini',
      max_tokens: 20,
      messages: [{ role: 'user', content: 'not sampled' }],
    })
    expect(mock.received.slice(before).map((r) => r.headers.traceparent)).toEqual([header])
  })

  it('exports gen_ai.client.token.usage and gen_ai.client.operation.duration', async () => {
    // an export made after every request above was recorded
    const seen = rx.got.length
    await new Promise((r) => setTimeout(r, 100))
    await until(() => rx.got.slice(seen).some((g) => g.path === '/v1/metrics'), 'a fresh metrics export', 10_000)
    await until(
      () =>
        rx.got.some((g) => g.path === '/v1/metrics' && JSON.stringify(g.body).includes('gen_ai.client.token.usage')),
      'the metrics export',
      10_000,
    )
    const names = rx.got
      .filter((g) => g.path === '/v1/metrics')
      .flatMap((g) =>
        g.body.resourceMetrics.flatMap((rm: any) =>
          rm.scopeMetrics.flatMap((sm: any) => sm.metrics.map((m: any) => m.name)),
        ),
      )
    expect(names).toEqual(expect.arrayContaining(['gen_ai.client.token.usage', 'gen_ai.client.operation.duration']))
    const exports = rx.got.filter((g) => g.path === '/v1/metrics')
    for (const e of exports) {
      const rm = e.body.resourceMetrics[0]
      expect(rm.resource.attributes).toEqual([{ key: 'service.name', value: { stringValue: 'agentmesh' } }])
      expect(e.protocol).toBe(protocol)
      // as each official serializer writes an unset version: JSON an empty text, protobuf nothing
      expect(rm.scopeMetrics[0].scope).toEqual(
        protocol === 'http/json' ? { name: 'agentmesh', version: '' } : { name: 'agentmesh' },
      )
    }
    // the last export: cumulative histograms with the SDK's default buckets, min, max and sum
    const last = exports.at(-1)!.body.resourceMetrics[0].scopeMetrics[0].metrics
    const tokens = last.find((m: any) => m.name === 'gen_ai.client.token.usage')
    const duration = last.find((m: any) => m.name === 'gen_ai.client.operation.duration')
    expect(tokens).toMatchObject({ unit: '{token}', histogram: { aggregationTemporality: 2 } })
    expect(duration).toMatchObject({ unit: 's', description: 'GenAI operation duration' })
    for (const d of [...tokens.histogram.dataPoints, ...duration.histogram.dataPoints]) {
      expect(d.explicitBounds).toEqual([0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000])
      expect(d.bucketCounts).toHaveLength(16)
      expect(d.bucketCounts.reduce((a: number, b: number) => a + b, 0)).toBe(d.count)
      expect(d.min).toBeLessThanOrEqual(d.max)
      expect(d.sum).toBeGreaterThanOrEqual(d.min * d.count - 1e-9)
      expect(d.startTimeUnixNano).toMatch(/^\d{19}$/)
      expect(BigInt(d.timeUnixNano) >= BigInt(d.startTimeUnixNano)).toBe(true)
    }
    // the gpt-4o-mini calls that reached the vendor without a hit (the first test's miss, the
    // untraced one, the encoding one; the unsampled one is counted in metrics too): input tokens
    const input = tokens.histogram.dataPoints.filter((d: any) =>
      d.attributes.some((x: any) => x.key === 'gen_ai.token.type' && x.value.stringValue === 'input'),
    )
    const billed = input.reduce((n: number, d: any) => n + d.count, 0)
    expect(billed).toBe(4)
    // cumulative: a series starts once and its count never goes down from one export to the next
    const series = (e: Received) =>
      e.body.resourceMetrics[0].scopeMetrics[0].metrics
        .filter((m: any) => m.name === 'gen_ai.client.operation.duration')
        .flatMap((m: any) => m.histogram.dataPoints)
    const first = new Map<string, any>()
    for (const e of exports)
      for (const d of series(e)) {
        const k = JSON.stringify(d.attributes)
        const seen = first.get(k)
        if (seen) {
          expect(d.startTimeUnixNano).toBe(seen.startTimeUnixNano)
          expect(d.count).toBeGreaterThanOrEqual(seen.count)
        }
        first.set(k, d)
      }
  })
})
