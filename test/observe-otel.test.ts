// OpenTelemetry over OTLP/HTTP against a local receiver that decodes what it gets (the exporters'
// JSON encoding): one request span with the GenAI attributes and agentmesh.*, children for the
// cache lookup and the upstream call, the client's traceparent as parent (and passed upstream),
// and the gen_ai.client.* metrics.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { exactCache } from '../plugins/exact-cache/index.ts'
import { otel } from '../plugins/otel/index.ts'
import { clearVendorEnv, startMockAndProxy, until, type Proxy } from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'

interface Received {
  path: string
  body: any
}

function receiver(): Promise<{ url: string; got: Received[]; server: Server }> {
  const got: Received[] = []
  const server = createServer((req, res) => {
    let raw = ''
    req.on('data', (d) => {
      raw += d
    })
    req.on('end', () => {
      got.push({ path: req.url ?? '', body: JSON.parse(raw) })
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  return new Promise((r) =>
    server.listen(0, '127.0.0.1', () =>
      r({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, got, server }),
    ),
  )
}

const spansOf = (got: Received[]) =>
  got
    .filter((g) => g.path === '/v1/traces')
    .flatMap((g) => g.body.resourceSpans.flatMap((rs: any) => rs.scopeSpans.flatMap((ss: any) => ss.spans)))
const attrs = (span: any) => Object.fromEntries(span.attributes.map((a: any) => [a.key, Object.values(a.value)[0]]))

describe('otel: traces and metrics over OTLP/HTTP', () => {
  let mock: MockUpstream
  let proxy: Proxy
  let rx: Awaited<ReturnType<typeof receiver>>
  beforeAll(async () => {
    clearVendorEnv()
    rx = await receiver()
    ;({ mock, proxy } = await startMockAndProxy({
      config: { plugins: [otel({ endpoint: rx.url, batchDelayMs: 100, metricsIntervalMs: 300 }), exactCache()] },
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
  })
})
