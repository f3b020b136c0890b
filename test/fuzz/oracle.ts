// What must hold for every response, whatever the request: no 5xx the upstream did not cause,
// errors in the client's protocol shape, X-AgentMesh-Request-Id always, well-formed SSE on a
// streamed 200, no made-up 200 for a failed upstream. Each failure has a `kind`: the key that
// deduplicates a thousand cases of one defect into one report line.
import type { ProtocolName } from '../../core/types.ts'
import { asksForJsonArray, asksForStream, isChatRoute, protocolOfPath, type FuzzCase } from './cases.ts'
import type { RawResponse } from './client.ts'

export interface Failure {
  kind: string
  detail: string
}

type Shape = ProtocolName | 'h3' | 'empty' | 'not-json' | 'other'

/** Which protocol's error shape a body has. */
export function errorShape(body: Buffer): Shape {
  if (!body.length) return 'empty'
  let j: any
  try {
    j = JSON.parse(body.toString('utf8'))
  } catch {
    return 'not-json'
  }
  const e = j?.error
  if (j?.type === 'error' && typeof e?.type === 'string' && typeof e?.message === 'string') return 'anthropic'
  if (typeof e?.code === 'number' && typeof e?.message === 'string' && typeof e?.status === 'string') return 'gemini'
  if (typeof e?.type === 'string' && typeof e?.message === 'string') return 'openai'
  if (typeof j?.status === 'number' && ('message' in j || 'statusText' in j)) return 'h3'
  return 'other'
}

/** the error type (or message) a response names, for grouping 5xx by cause */
function errorType(body: Buffer): string {
  try {
    const j = JSON.parse(body.toString('utf8'))
    return String(
      j?.error?.type ?? j?.error?.details?.[0]?.reason ?? j?.error?.status ?? j?.message ?? 'unknown',
    ).slice(0, 60)
  } catch {
    return body.length ? 'not-json' : 'empty body'
  }
}

/** The statuses a case's upstream behaviour may legitimately cause. */
function upstreamStatuses(c: FuzzCase): number[] {
  if (c.target !== 'mock') return []
  const u = c.upstream
  const out: number[] = []
  if (u.status) out.push(u.status)
  if (u.hang) out.push(504)
  // a stream cut or ended before its first event (no status sent yet), or a 200 that is not an
  // answer: the proxy answers 502
  if (u.cutAfterEvents !== undefined || u.endAfterEvents !== undefined || u.okBody) out.push(502)
  return out
}

/** a short name for where the request went, so one defect on one route is one kind */
function routeOf(c: FuzzCase): string {
  if (isChatRoute(c))
    return `${c.method} ${c.path.split('?')[0]!.replace(/^\/v1beta\/models\/[^:]+:/, '/v1beta/models/{m}:')}`
  const p = c.path.split('?')[0]!
  const known = [
    '/v1/models',
    '/v1/embeddings',
    '/v1/messages/count_tokens',
    '/agentmesh/health',
    '/agentmesh/ready',
    '/agentmesh/events',
    '/agentmesh/audit/public-key',
  ]
  if (known.includes(p)) return `${c.method} ${p}`
  if (p.startsWith('/v1beta/models/')) return `${c.method} /v1beta/models/{other}`
  return `${c.method} (other path)`
}

/** Node's own answer to a request its HTTP parser refused or an Expect it does not know (no app code ran) */
const isParserReply = (r: RawResponse) =>
  [400, 413, 414, 417, 431, 505].includes(r.status) && !r.headers.has('x-agentmesh-request-id') && r.body.length === 0

/** a mock stream longer than this cannot end within the case's 20 s */
const MOCK_PACED_LIMIT_MS = 15_000

/**
 * How long the mock upstream takes to stream its answer when the case tells it to pause between
 * events (eventGapMs): it echoes the prompt about a word per event, so at most one event per space
 * of the body plus a few; 0 when it does not pause.
 */
export function mockPacedMs(c: Pick<FuzzCase, 'target' | 'upstream' | 'body'>): number {
  const gap = c.target === 'mock' ? (c.upstream.eventGapMs ?? 0) : 0
  if (!gap) return 0
  let words = 8
  for (const b of c.body) if (b === 0x20) words++
  return gap * words
}

/** mockTrouble: the mock upstream was stalled or threw during the case (its 502/504 are its own) */
export function checkResponse(c: FuzzCase, r: RawResponse, mockTrouble = false): Failure[] {
  const out: Failure[] = []
  const fail = (kind: string, detail: string) => out.push({ kind, detail })
  const protocol = protocolOfPath(c.path)
  if (r.timedOut) {
    // a mock upstream busy writing a million events (it echoes a huge prompt word by word) is slow, not the proxy
    // and one told to pause between events takes that long per word of an echoed long prompt
    const paced = r.status === 200 ? mockPacedMs(c) : 0
    const kind =
      mockTrouble && c.target === 'mock'
        ? `(not counted) hang while the mock upstream was busy: ${routeOf(c)}`
        : paced > MOCK_PACED_LIMIT_MS
          ? `(not counted) hang: the mock upstream's paced stream outlasts the case: ${routeOf(c)}`
          : `hang: ${routeOf(c)}`
    const why = paced > MOCK_PACED_LIMIT_MS ? `; the mock's stream takes about ${(paced / 1000).toFixed(0)} s` : ''
    return [{ kind, detail: `no complete response within the time limit (status ${r.status || 'none'})${why}` }]
  }
  if (r.empty) {
    // Node's server drops CONNECT when nobody handles its 'connect' event
    // a server that answers early and closes resets a client still sending, and the reset can
    // discard the answer before it is read: with a big request that is not evidence of a defect
    const big = c.body.length > 65536 || c.headers.some(([, v]) => v.length > 8000) || c.headers.length > 100
    const reset = r.error === 'EPIPE' || r.error === 'ECONNRESET'
    const what =
      c.method === 'CONNECT'
        ? `node's own reply: CONNECT closes the connection without an answer`
        : reset && big
          ? '(not counted) connection reset while a big request was being sent'
          : `no response: ${routeOf(c)}`
    if (!r.aborted) fail(what, `connection closed without a response${r.error ? ` (${r.error})` : ''}`)
    return out
  }
  if (!r.status)
    return r.aborted ? out : [{ kind: 'garbled response', detail: 'response bytes without a parsable status line' }]
  const allowed = upstreamStatuses(c)
  if (mockTrouble && c.target === 'mock') allowed.push(502, 504)
  const fromUpstream =
    allowed.includes(r.status) || (c.target === 'mock' && !!c.upstream.status && r.status === c.upstream.status)
  if (r.status >= 500 && !fromUpstream)
    fail(
      `5xx: ${r.status} ${errorType(r.body)} on ${routeOf(c)}`,
      `status ${r.status}, body ${r.body.toString('utf8').slice(0, 300)}`,
    )
  if (isParserReply(r)) {
    fail(
      `node's own reply: ${r.status} without governance headers or a body`,
      `the request never reached the app (Node's default clientError / checkExpectation answer)`,
    )
    return out
  }
  if (!r.headers.has('x-agentmesh-request-id'))
    fail(`no X-AgentMesh-Request-Id: ${routeOf(c)} ${r.status}`, `headers: ${[...r.headers.keys()].join(', ')}`)
  if (r.status >= 400 && !fromUpstream && c.method !== 'HEAD' && !(r.aborted && !r.complete)) {
    const shape = errorShape(r.body)
    if (shape !== protocol)
      fail(
        `error shape: ${protocol} path answered ${shape} (${r.status})`,
        `${routeOf(c)}: ${r.body.toString('utf8').slice(0, 300)}`,
      )
  }
  if (r.status === 200 && isChatRoute(c)) out.push(...checkAnswer(c, r, protocol))
  return out
}

function checkAnswer(c: FuzzCase, r: RawResponse, protocol: ProtocolName): Failure[] {
  const out: Failure[] = []
  const hit = /^(exact|semantic)$/.test(r.headers.get('x-agentmesh-cache') ?? '')
  const stream = asksForStream(c)
  const failed = (c.upstream.status ?? 0) >= 400 || (!!c.upstream.okBody && !stream)
  if (c.target === 'mock' && failed && !hit)
    out.push({
      kind: `made-up 200 for a failed upstream (${protocol})`,
      detail: `mock answered ${c.upstream.status ?? `200 ${JSON.stringify(c.upstream.okBody)}`}`,
    })
  if (r.aborted && !r.complete) return out
  const type = r.headers.get('content-type') ?? ''
  if (asksForJsonArray(c) && (type.startsWith('application/json') || hit || c.target === 'demo')) {
    // the proxy's own rendering (a hit, the demo) follows the query; a miss relays the vendor's
    // transport, and the mock answers SSE whatever the query (checked below as SSE)
    const problem = jsonArrayProblem(r)
    if (problem) out.push({ kind: `stream: gemini without alt=sse ${problem.kind}`, detail: problem.detail })
  } else if (stream) {
    const u = c.upstream
    const problem = sseProblem(
      protocol,
      r,
      c.target === 'mock' && (u.cutAfterEvents !== undefined || u.endAfterEvents !== undefined || !!u.okBody),
    )
    if (problem) out.push({ kind: `stream: ${protocol} ${problem.kind}`, detail: problem.detail })
  } else if (r.complete) {
    let j: any
    try {
      j = JSON.parse(r.body.toString('utf8'))
    } catch {
      return [
        ...out,
        { kind: `answer: ${protocol} 200 body is not JSON`, detail: r.body.toString('utf8').slice(0, 200) },
      ]
    }
    const ok =
      protocol === 'openai'
        ? Array.isArray(j?.choices)
        : protocol === 'anthropic'
          ? j?.type === 'message'
          : Array.isArray(j?.candidates)
    if (!ok)
      out.push({
        kind: `answer: ${protocol} 200 body not in the protocol's shape`,
        detail: JSON.stringify(j).slice(0, 200),
      })
  }
  return out
}

/**
 * Gemini's streamGenerateContent without alt=sse: one JSON array of GenerateContentResponse chunks
 * (application/json), the last with its finishReason; null when it is that, whole.
 */
export function jsonArrayProblem(r: RawResponse): { kind: string; detail: string } | null {
  const type = r.headers.get('content-type') ?? ''
  if (!type.startsWith('application/json'))
    return { kind: 'answered something other than a JSON array', detail: `content-type ${type}` }
  if (!r.complete) return { kind: 'JSON array truncated', detail: `${r.body.length} bytes` }
  let chunks: unknown
  try {
    chunks = JSON.parse(r.body.toString('utf8'))
  } catch {
    return { kind: 'body is not JSON', detail: r.body.toString('utf8').slice(0, 200) }
  }
  if (!Array.isArray(chunks) || !chunks.length || !chunks.every((c: any) => Array.isArray(c?.candidates)))
    return { kind: 'body is not an array of chunks', detail: JSON.stringify(chunks).slice(0, 200) }
  if (!/"finishReason"/.test(JSON.stringify(chunks.at(-1))))
    return { kind: 'array ends without its final chunk', detail: JSON.stringify(chunks.at(-1)).slice(0, 200) }
  return null
}

/** Parse an SSE body; null when it is a whole, well-formed stream of this protocol. */
export function sseProblem(
  protocol: ProtocolName,
  r: RawResponse,
  upstreamBroken: boolean,
): { kind: string; detail: string } | null {
  const type = r.headers.get('content-type') ?? ''
  if (!type.startsWith('text/event-stream'))
    return { kind: 'streamed 200 is not text/event-stream', detail: `content-type ${type}` }
  const text = r.body.toString('utf8')
  const datas: string[] = []
  for (const block of text.split(/\r?\n\r?\n/)) {
    const lines = block.split(/\r?\n/).filter((l) => l && !l.startsWith(':'))
    if (!lines.length) continue
    const bad = lines.find((l) => !/^(data|event|id|retry):/.test(l))
    if (bad) return { kind: 'malformed SSE line', detail: JSON.stringify(bad.slice(0, 120)) }
    const data = lines
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).replace(/^ /, ''))
      .join('\n')
    if (data) datas.push(data)
  }
  const last = datas.at(-1) ?? ''
  for (const d of datas.slice(0, -1)) {
    if (d === '[DONE]') return { kind: 'data after [DONE]', detail: '' }
    try {
      JSON.parse(d)
    } catch {
      return { kind: 'event data is not JSON', detail: d.slice(0, 120) }
    }
  }
  const whole =
    protocol === 'openai'
      ? last === '[DONE]'
      : protocol === 'anthropic'
        ? datas.some((d) => d.includes('"message_stop"'))
        : /"finishReason"/.test(last)
  const complete = r.complete && r.framing !== 'close'
  // an incomplete stream must not end cleanly: the client would take a cut answer as whole
  if (!whole && complete && !upstreamBroken)
    return { kind: 'stream ended cleanly without its final event', detail: `last data: ${last.slice(0, 120)}` }
  if (!whole && complete && upstreamBroken) {
    const err = datas.some((d) => /"error"/.test(d))
    if (!err)
      return {
        kind: 'upstream stream broke off, client stream ended cleanly with no error event',
        detail: `last data: ${last.slice(0, 120)}`,
      }
  }
  if (!r.complete && !upstreamBroken)
    return {
      kind: 'stream truncated (upstream was fine)',
      detail: `${datas.length} events, last: ${last.slice(0, 120)}`,
    }
  return null
}
