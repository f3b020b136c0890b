// The otel plugin's two span encodings and the tests' protobuf decoder, checked against each other
// and against the official serializers:
// - the decoder (test/helpers/otlp-proto.ts) reads the official ProtobufTraceSerializer's and
//   ProtobufMetricsSerializer's bytes as the official JSON serializers write the same data;
// - for many requests (errors, aborted, cache hits, client traces, texts of every length and
//   script, numbers that are not integers or not finite), proto.ts's bytes decode to what json.ts
//   writes: the same spans, ids, times and attributes, in the same order.
import { resourceFromAttributes } from '@opentelemetry/resources'
import {
  JsonMetricsSerializer,
  JsonTraceSerializer,
  ProtobufMetricsSerializer,
  ProtobufTraceSerializer,
} from '@opentelemetry/otlp-transformer'
import { describe, expect, it } from 'vitest'
import type { MeshContext } from '../core/types.ts'
import { GenAiHistograms } from '../plugins/otel/histograms.ts'
import { emitJsonSpans, jsonFraming } from '../plugins/otel/json.ts'
import { emitProtoSpans, protoFraming } from '../plugins/otel/proto.ts'
import type { Marks } from '../plugins/otel/spans.ts'
import { decode, metricsRequest, traceRequest } from './helpers/otlp-proto.ts'

/** without the fields that hold proto3 defaults (0, '', [], false): absent and default are one */
function withoutDefaults(v: any): any {
  if (Array.isArray(v)) return v.map(withoutDefaults)
  if (v === null || typeof v !== 'object') return v
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v)) {
    if (x === 0 || x === '' || x === false || x === undefined || (Array.isArray(x) && x.length === 0)) continue
    out[k] = withoutDefaults(x)
  }
  return out
}

const hr = (ms: number): [number, number] => [Math.trunc(ms / 1000), Math.round((ms % 1000) * 1e6)]

/** spans as the SDK hands them to its exporters (what the serializers read of a ReadableSpan) */
function readableSpans(): any[] {
  const resource = resourceFromAttributes({ 'service.name': 'svc', 'deployment.environment': 'test' })
  const scope = { name: 'agentmesh', version: '1.2.3' }
  const ctx = (spanId: string, remote = false) => ({
    traceId: '0af7651916cd43dd8448eb211c80319c',
    spanId,
    traceFlags: 1,
    isRemote: remote,
  })
  const base = {
    resource,
    instrumentationScope: scope,
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
    events: [],
    links: [],
    duration: [0, 5_000_000],
    ended: true,
  }
  return [
    {
      ...base,
      name: 'chat gpt-4o-mini',
      kind: 1,
      spanContext: () => ctx('b9c7c989f97918e1'),
      parentSpanContext: ctx('00f067aa0ba902b7', true),
      startTime: hr(1_765_000_000_123.456),
      endTime: hr(1_765_000_000_789.012),
      attributes: {
        'gen_ai.request.model': 'gpt-4o-mini',
        'agentmesh.team': 'équipe 日本 🦊',
        'gen_ai.usage.input_tokens': 1234567,
        'agentmesh.cost_usd': 0.000123,
        ok: true,
        list: ['a', 'b'],
        nums: [1, 2.5],
      },
      status: { code: 2, message: 'upstream_error' },
      events: [{ name: 'retry', time: hr(1_765_000_000_200), attributes: { attempt: 2 }, droppedAttributesCount: 0 }],
      links: [{ context: ctx('1111111111111111'), attributes: { why: 'batch' }, droppedAttributesCount: 0 }],
    },
    {
      ...base,
      name: 'agentmesh.cache_lookup',
      kind: 0,
      spanContext: () => ctx('2222222222222222'),
      parentSpanContext: ctx('b9c7c989f97918e1'),
      startTime: hr(1_765_000_000_124),
      endTime: hr(1_765_000_000_125),
      attributes: { 'agentmesh.cache': 'miss', big: 2 ** 40, negative: -7 },
      status: { code: 0 },
    },
  ]
}

describe('the tests’ OTLP protobuf decoder', () => {
  it('reads the official protobuf trace serializer as the official JSON one writes the same spans', () => {
    const spans = readableSpans()
    const fromProto = decode(traceRequest, Buffer.from(ProtobufTraceSerializer.serializeRequest(spans)!))
    const fromJson = JSON.parse(Buffer.from(JsonTraceSerializer.serializeRequest(spans)!).toString('utf8'))
    expect(withoutDefaults(fromProto)).toEqual(withoutDefaults(fromJson))
    // what was compared is the whole of it
    expect(fromProto.resourceSpans[0].scopeSpans[0].spans).toHaveLength(2)
    expect(fromProto.resourceSpans[0].scopeSpans[0].spans[0].links).toHaveLength(1)
  })

  it('reads the official protobuf metrics serializer as the official JSON one writes the same histograms', () => {
    const h = new GenAiHistograms(resourceFromAttributes({ 'service.name': 'svc' }))
    for (const [team, ms] of [
      ['a', 3],
      ['b', 700],
      ['a', 12_000],
    ] as const)
      h.record(requestCtx({ team, status: 200 }), ms / 1000)
    const rm = h.collect(Date.now())!
    const fromProto = decode(metricsRequest, Buffer.from(ProtobufMetricsSerializer.serializeRequest(rm)!))
    const fromJson = JSON.parse(Buffer.from(JsonMetricsSerializer.serializeRequest(rm)!).toString('utf8'))
    expect(withoutDefaults(fromProto)).toEqual(withoutDefaults(fromJson))
    const points = fromProto.resourceMetrics[0].scopeMetrics[0].metrics.flatMap((m: any) => m.histogram.dataPoints)
    expect(points.length).toBeGreaterThan(2)
    expect(points.some((p: any) => p.bucketCounts.some((n: number) => n > 0))).toBe(true)
  })
})

interface Req {
  team?: string
  user?: string
  tool?: string
  model?: string
  answerModel?: string
  status?: number
  aborted?: boolean
  errorType?: string
  cache?: string
  similarity?: number
  cost?: number
  saved?: number
  input?: number
  output?: number
  cacheRead?: number
  cacheWrite?: number
  estimated?: boolean
  session?: string
  vendor?: string
  operation?: string
  upstream?: number
}

/** what the encoders read of a finished request */
function requestCtx(r: Req): MeshContext {
  const headers = new Headers()
  if (r.session !== undefined) headers.set('x-agentmesh-session', r.session)
  return {
    id: 'req_7f9c2b1e-3a4d-4b5c-8d6e-0f1a2b3c4d5e',
    operation: r.operation ?? 'chat',
    request: { headers },
    identity: { team: r.team ?? 'eng', user: r.user ?? 'ana', tool: r.tool ?? 'claude-code' },
    route: { vendor: r.vendor ?? 'openai', model: r.model ?? 'gpt-4o-mini' },
    prompt: { model: r.model ?? 'gpt-4o-mini' },
    answer: r.answerModel === undefined ? undefined : { model: r.answerModel },
    status: r.status,
    aborted: r.aborted ?? false,
    error: r.errorType === undefined ? undefined : { type: r.errorType },
    upstream: r.upstream === undefined ? undefined : { status: r.upstream },
    cache: { status: r.cache ?? 'miss', similarity: r.similarity },
    cost: { usd: r.cost ?? 0.00042, savedUsd: r.saved ?? 0 },
    usage: {
      inputTokens: r.input ?? 12,
      outputTokens: r.output ?? 34,
      cacheReadTokens: r.cacheRead ?? 0,
      cacheWriteTokens: r.cacheWrite ?? 0,
      estimated: r.estimated ?? false,
    },
    meta: {},
  } as unknown as MeshContext
}

/** one request's spans through `emit`, framed into a batch as the batcher does, decoded */
function encoded(encoding: 'proto' | 'json', ctx: MeshContext, marks: Marks): any[] {
  const framing = encoding === 'proto' ? protoFraming('agentmesh') : jsonFraming('agentmesh')
  let out: Buffer | undefined
  const take = (spans: string | Uint8Array) => {
    const body = Buffer.alloc(framing.reserve + 200_000)
    let end = framing.reserve
    if (typeof spans === 'string') end += body.write(spans, end)
    else {
      body.set(spans, end)
      end += spans.length
    }
    const sealed = framing.seal(body, framing.reserve, end)
    out = body.subarray(sealed.start, sealed.end)
  }
  if (encoding === 'proto') emitProtoSpans(take, ctx, marks)
  else emitJsonSpans(take, ctx, marks)
  if (!out) return []
  const body = encoding === 'proto' ? decode(traceRequest, out) : JSON.parse(out.toString('utf8'))
  expect(withoutDefaults(body.resourceSpans[0].resource)).toEqual({
    attributes: [{ key: 'service.name', value: { stringValue: 'agentmesh' } }],
  })
  expect(body.resourceSpans[0].scopeSpans[0].scope).toEqual({ name: 'agentmesh' })
  return body.resourceSpans[0].scopeSpans[0].spans
}

/** random ids as the order they first appear in: both encodings chose their own */
function sameIds(spans: any[]): any[] {
  const seen = new Map<string, string>()
  const name = (id: string | undefined) => {
    if (id === undefined) return undefined
    if (!seen.has(id)) seen.set(id, `id${seen.size}`)
    return seen.get(id)
  }
  return spans.map((s) => ({
    ...s,
    traceId: name(s.traceId),
    spanId: name(s.spanId),
    parentSpanId: name(s.parentSpanId),
  }))
}

// a pseudo-random sequence, so a failure can be run again
function rng(seed: number) {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    return seed / 2 ** 31
  }
}

const TEXTS = [
  '',
  'a',
  'équipe',
  '日本語のチーム',
  '🦊 fox',
  'quote " backslash \\ brace {x}',
  'x'.repeat(42),
  'y'.repeat(43),
  'é'.repeat(64),
  'z'.repeat(200),
  'w'.repeat(20_000),
  'line\nbreak\ttab',
  '\u0000control\u001f',
]

// what a header can hold (Latin-1, no NUL or line breaks): the session id comes from one
const HEADER_TEXTS = TEXTS.filter((t) => /^[^\0\r\n\u0100-\uffff]*$/.test(t))

describe('proto.ts against json.ts', () => {
  it('a request with a client trace, a cache lookup and an upstream call: the same three spans', () => {
    const ctx = requestCtx({ status: 200, upstream: 200, answerModel: 'gpt-4o-mini-2024-07-18', session: 'conv-1' })
    const t0 = performance.now()
    const marks: Marks = {
      start: t0,
      cacheStart: t0 + 0.1,
      cacheEnd: t0 + 0.4,
      routeAt: t0 + 0.4,
      end: t0 + 12.3456789,
      parent: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1 },
      upstream: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: 'aaaaaaaaaaaaaaaa' },
    }
    const proto = encoded('proto', ctx, marks)
    const json = encoded('json', ctx, marks)
    expect(proto).toHaveLength(3)
    expect(sameIds(withoutDefaults(proto))).toEqual(sameIds(withoutDefaults(json)))
    // the ids the vendor was told, byte for byte
    expect(proto[1].spanId).toBe('aaaaaaaaaaaaaaaa')
    expect(proto[2].traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736')
    expect(proto[2].parentSpanId).toBe('00f067aa0ba902b7')
    // the same nanoseconds, to the digit
    expect(proto.map((s: any) => s.endTimeUnixNano)).toEqual(json.map((s: any) => s.endTimeUnixNano))
  })

  it('an unsampled client trace: neither writes a span', () => {
    const marks: Marks = {
      start: performance.now(),
      end: performance.now() + 1,
      parent: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 0 },
    }
    expect(encoded('proto', requestCtx({ status: 200 }), marks)).toEqual([])
    expect(encoded('json', requestCtx({ status: 200 }), marks)).toEqual([])
  })

  it('2,000 random requests decode to what json.ts writes', () => {
    const r = rng(20261206)
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!
    const maybe = <T>(x: T): T | undefined => (r() < 0.5 ? x : undefined)
    const numbers = [0, 1, 127, 128, 16_383, 16_384, 2 ** 31, 2 ** 40, 2 ** 53 - 1, -1, -300, 0.5, 1e-9, 123.456]
    const failures = [400, 401, 429, 500, 502, 529]
    for (let i = 0; i < 2000; i++) {
      const status = r() < 0.7 ? 200 : pick(failures)
      const req: Req = {
        team: pick(TEXTS),
        user: pick(TEXTS),
        tool: pick(TEXTS),
        model: pick(['gpt-4o-mini', 'claude-sonnet-4-5', '', pick(TEXTS)]),
        answerModel: maybe(pick(['gpt-4o-mini-2024-07-18', pick(TEXTS)])),
        status: r() < 0.05 ? undefined : status,
        aborted: r() < 0.1,
        errorType: status >= 400 ? maybe(pick(['rate_limited', 'upstream_error', pick(TEXTS)])) : undefined,
        cache: pick(['miss', 'exact', 'semantic', 'bypass']),
        similarity: maybe(pick([0.93, 1, 0.8123456789])),
        cost: pick([...numbers, Number.NaN, Number.POSITIVE_INFINITY]),
        saved: pick(numbers),
        input: pick(numbers),
        output: pick(numbers),
        cacheRead: pick(numbers),
        cacheWrite: pick(numbers),
        estimated: r() < 0.2,
        session: maybe(pick(HEADER_TEXTS)),
        vendor: pick(['openai', 'anthropic', 'google', 'demo', 'my-vllm']),
        operation: pick(['chat', 'embeddings']),
        upstream: maybe(pick([200, 500, 529])),
      }
      const ctx = requestCtx(req)
      const t0 = 1000 + r() * 1e7
      const withCache = r() < 0.5
      const routed = r() < 0.8
      const marks: Marks = {
        start: t0,
        cacheStart: withCache ? t0 + r() : undefined,
        cacheEnd: withCache && r() < 0.5 ? t0 + 1 + r() : undefined,
        routeAt: routed ? t0 + 2 + r() : undefined,
        // sometimes before the start: a zero-length span
        end: t0 + (r() < 0.05 ? -1 : 3 + r() * 1e4),
        parent: maybe({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1 }),
        upstream:
          routed && r() < 0.9 ? { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'bbbbbbbbbbbbbbbb' } : undefined,
      }
      const proto = encoded('proto', ctx, marks)
      // json.ts writes a non-finite number as null (JSON has none); protobuf carries the double
      const json = encoded('json', ctx, marks).map((s: any) => ({
        ...s,
        attributes: s.attributes.map((a: any) =>
          a.value.doubleValue === null ? { ...a, value: { doubleValue: ctx.cost.usd } } : a,
        ),
      }))
      expect(sameIds(withoutDefaults(proto)), `request ${i}: ${JSON.stringify(req).slice(0, 300)}`).toEqual(
        sameIds(withoutDefaults(json)),
      )
    }
  })
})
