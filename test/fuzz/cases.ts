// One fuzz case = a pure function of (seed, index): a corpus request, one to three mutations
// (body, model, headers, path, framing, upstream behaviour, client abort), and what the oracles
// need to know about it (the path's protocol, whether a stream was asked for, what the mock was
// told to do).
import type { ProtocolName } from '../../core/types.ts'
import type { MockBehaviour } from '../helpers/mock-upstream.ts'
import { BODY_MUTATORS, bodyExpr, draftOf, serialise, type BodyDraft } from './mutate.ts'
import { caseRng, type Rng } from './prng.ts'
import { SEEDS, type Seed } from './seeds.ts'
import {
  CACHE_CONTROLS,
  CONTENT_TYPES,
  METHODS,
  MODEL_PREFIX,
  WEIRD_PATHS,
  utf8AsLatin1,
  weirdHeaderValue,
  weirdModel,
} from './values.ts'

export type Target = 'mock' | 'demo'
export type Framing = 'content-length' | 'chunked' | 'declared-huge' | 'declared-short' | 'none'

export interface FuzzCase {
  seed: number
  index: number
  target: Target
  seedName: string
  method: string
  /** the request-target as wire bytes (latin1) */
  path: string
  headers: Array<[string, string]>
  body: Buffer
  /** the body as a JS expression, for printed reproductions (null when opaque) */
  bodyExpr: string | null
  framing: Framing
  upstream: MockBehaviour
  abort?: { afterBytes?: number; afterMs?: number }
  mutations: string[]
}

/** The client's protocol as the path says it: what shape its errors must have. */
export function protocolOfPath(path: string): ProtocolName {
  const p = path.split('?')[0]!
  // as core/protocols/index.ts: Gemini's v1 paths name a method after the model
  if (p.startsWith('/v1beta/') || p.startsWith('/v1alpha/') || /^\/v1\/models\/[^/:]+:[a-z][A-Za-z]*$/.test(p))
    return 'gemini'
  if (p.startsWith('/v1/messages')) return 'anthropic'
  return 'openai'
}

const GEMINI_ROUTE = /^\/v1beta\/models\/[^/]+:(generateContent|streamGenerateContent)$/

/** POST to a chat route: the requests that may stream and must answer in the protocol's shape. */
export function isChatRoute(c: Pick<FuzzCase, 'method' | 'path'>): boolean {
  const p = c.path.split('?')[0]!
  return c.method === 'POST' && (p === '/v1/chat/completions' || p === '/v1/messages' || GEMINI_ROUTE.test(p))
}

/** The client asked for a stream: `"stream": true` in the body, or Gemini's stream action. */
export function asksForStream(c: Pick<FuzzCase, 'method' | 'path' | 'body'>): boolean {
  if (!isChatRoute(c)) return false
  const p = c.path.split('?')[0]!
  if (p.startsWith('/v1beta/')) return p.endsWith(':streamGenerateContent')
  try {
    return JSON.parse(c.body.toString('utf8'))?.stream === true
  } catch {
    return false
  }
}

/**
 * Gemini's stream transport: without `alt=sse` in the query, streamGenerateContent answers one JSON
 * array of the chunks (application/json), as Google's REST API does; with it, SSE. The same rule
 * as the proxy's (core/protocols/gemini.ts renderArrayStream): `alt=sse` anywhere in the query.
 */
export function asksForJsonArray(c: Pick<FuzzCase, 'method' | 'path' | 'body'>): boolean {
  if (!asksForStream(c) || protocolOfPath(c.path) !== 'gemini') return false
  const q = c.path.indexOf('?')
  return !/[?&]alt=sse(&|$)/.test(q < 0 ? '' : c.path.slice(q))
}

function baseHeaders(rng: Rng, seed: Seed): Array<[string, string]> {
  const h: Array<[string, string]> = [['content-type', 'application/json']]
  if (seed.protocol === 'anthropic') h.push(['anthropic-version', '2023-06-01'], ['x-api-key', 'sk-ant-fuzz-client'])
  else if (seed.protocol === 'gemini') h.push(['x-goog-api-key', 'AIza-fuzz-client-key'])
  else h.push(['authorization', 'Bearer sk-fuzz-client'])
  // 'tiny' has a 3,000-token daily budget: 429s happen along the way
  h.push(['x-agentmesh-team', rng.pick(['fuzz', 'fuzz', 'fuzz', 'tiny'])])
  h.push([
    'user-agent',
    rng.pick(['curl/8.5.0', 'OpenAI/JS 6.49.0', 'claude-cli/2.0.0 (external, cli)', 'Mozilla/5.0']),
  ])
  return h
}

const setHeader = (h: Array<[string, string]>, name: string, value: string) => {
  const i = h.findIndex(([k]) => k === name)
  if (i >= 0) h[i] = [name, value]
  else h.push([name, value])
}

type Mutator = (rng: Rng, c: Draft) => string

interface Draft {
  seed: Seed
  body: BodyDraft
  method: string
  path: string
  headers: Array<[string, string]>
  framing: Framing
  upstream: MockBehaviour
  abort?: FuzzCase['abort']
}

function weighted<T extends { weight: number }>(rng: Rng, items: readonly T[]): T {
  let r = rng.next() * items.reduce((s, i) => s + i.weight, 0)
  for (const i of items) if ((r -= i.weight) < 0) return i
  return items.at(-1)!
}

const bodyMutation: Mutator = (rng, c) => {
  if (c.body.value === undefined) return headerMutation(rng, c)
  const m = weighted(rng, BODY_MUTATORS)
  return `${m.name}: ${m.run(rng, c.body)}`
}

const modelMutation: Mutator = (rng, c) => {
  const model = weirdModel(rng, MODEL_PREFIX[c.seed.protocol])
  if (c.seed.protocol === 'gemini' && c.path.startsWith('/v1beta/models/')) {
    const [, tail = ''] = /:([^:?]*(\?.*)?)$/.exec(c.path) ?? []
    const enc = rng.pick(['percent', 'percent', 'raw', 'bad-escape'] as const)
    const seg =
      enc === 'percent'
        ? safeEncode(model)
        : enc === 'raw'
          ? utf8AsLatin1(model)
          : safeEncode(model) + rng.pick(['%', '%zz', '%E0%A4%A', '%ED%A0%80'])
    c.path = `/v1beta/models/${seg}:${tail}`
    return `model (path, ${enc}) := ${JSON.stringify(model).slice(0, 80)}`
  }
  if (c.body.value && typeof c.body.value === 'object') (c.body.value as any).model = model
  return `model := ${JSON.stringify(model).slice(0, 80)}${model.length > 80 ? ` (${model.length} chars)` : ''}`
}

/** encodeURIComponent, except that a lone surrogate (which it refuses) is percent-encoded as its UTF-8 replacement */
function safeEncode(s: string): string {
  return encodeURIComponent(
    s.replace(/[\ud800-\udfff]/g, (ch, i, all) =>
      /[\ud800-\udbff][\udc00-\udfff]/.test(all.slice(i - 1, i + 1)) ||
      /[\ud800-\udbff][\udc00-\udfff]/.test(all.slice(i, i + 2))
        ? ch
        : '\ufffd',
    ),
  )
}

const HEADER_MUTATORS: Array<{ weight: number; run: Mutator }> = [
  {
    weight: 4,
    run: (rng, c) => {
      const name = rng.pick([
        'x-agentmesh-team',
        'x-agentmesh-user',
        'x-agentmesh-tool',
        'x-agentmesh-request-id',
        'x-agentmesh-cache-namespace',
      ])
      const v = weirdHeaderValue(rng)
      setHeader(c.headers, name, v)
      return `${name}: ${JSON.stringify(v).slice(0, 60)}`
    },
  },
  {
    weight: 3,
    run: (rng, c) => {
      const name = rng.pick(['authorization', 'x-api-key', 'x-goog-api-key'])
      const v =
        name === 'authorization'
          ? rng.pick([
              'Bearer ' + weirdHeaderValue(rng),
              'Bearer',
              'Bearer am-' + 'f'.repeat(rng.int(0, 40)),
              'Basic Zm9vOmJhcg==',
              weirdHeaderValue(rng),
            ])
          : weirdHeaderValue(rng)
      setHeader(c.headers, name, v)
      return `${name}: ${JSON.stringify(v).slice(0, 60)}`
    },
  },
  {
    weight: 2,
    run: (rng, c) => {
      const v = rng.pick(CONTENT_TYPES)
      if (rng.chance(0.2)) c.headers = c.headers.filter(([k]) => k !== 'content-type')
      else setHeader(c.headers, 'content-type', v)
      return `content-type: ${JSON.stringify(v)}`
    },
  },
  {
    weight: 2,
    run: (rng, c) => {
      const v = rng.chance(0.7) ? rng.pick(CACHE_CONTROLS) : weirdHeaderValue(rng)
      setHeader(c.headers, 'cache-control', v)
      return `cache-control: ${JSON.stringify(v).slice(0, 60)}`
    },
  },
  {
    weight: 2,
    run: (rng, c) => {
      const v = rng.pick([
        'null',
        'http://evil.example',
        'chrome-extension://abcdef',
        'https://chat.openai.com',
        weirdHeaderValue(rng),
      ])
      setHeader(c.headers, 'origin', v)
      return `origin: ${JSON.stringify(v).slice(0, 60)}`
    },
  },
  {
    weight: 2,
    run: (rng, c) => {
      const name = rng.pick(['anthropic-version', 'anthropic-beta', 'openai-organization', 'openai-project'])
      const v = weirdHeaderValue(rng)
      setHeader(c.headers, name, v)
      return `${name}: ${JSON.stringify(v).slice(0, 60)} (forwarded upstream)`
    },
  },
  {
    weight: 1,
    run: (rng, c) => {
      if (rng.chance(0.5)) {
        const n = rng.size(50, 2000)
        for (let i = 0; i < n; i++) c.headers.push([`x-fuzz-${i}`, 'v'])
        return `${n} extra headers`
      }
      const n = rng.size(8000, 200_000)
      c.headers.push(['x-fuzz-big', 'b'.repeat(n)])
      return `one header of ${n} bytes`
    },
  },
  {
    weight: 2,
    run: (rng, c) => {
      const kind = rng.pick([
        'no-host',
        'host',
        'two-hosts',
        'expect',
        'accept-encoding',
        'te',
        'connection',
        'dup-ct',
        'accept',
      ])
      const host = weirdHeaderValue(rng)
      const edits: Record<string, () => void> = {
        'no-host': () => c.headers.push(['\u0000no-host', '']),
        host: () => c.headers.push(['host', host]),
        'two-hosts': () => c.headers.push(['host', 'a.example'], ['host', 'b.example']),
        expect: () => c.headers.push(['expect', rng.pick(['100-continue', 'weird'])]),
        'accept-encoding': () => c.headers.push(['accept-encoding', rng.pick(['gzip', 'br', 'x'])]),
        te: () => c.headers.push(['transfer-encoding', rng.pick(['gzip', 'chunked, chunked', 'identity'])]),
        connection: () =>
          c.headers.push(['connection', rng.pick(['upgrade', 'keep-alive', 'te'])], ['upgrade', 'websocket']),
        'dup-ct': () => c.headers.push(['content-type', 'text/plain']),
        accept: () => c.headers.push(['accept', rng.pick(['text/event-stream', 'application/xml', '*/*'])]),
      }
      edits[kind]!()
      return `header edit ${kind}${kind === 'host' ? ` ${JSON.stringify(host).slice(0, 40)}` : ''}`
    },
  },
]

const headerMutation: Mutator = (rng, c) => weighted(rng, HEADER_MUTATORS).run(rng, c)

const pathMutation: Mutator = (rng, c) => {
  switch (rng.int(0, 3)) {
    case 0:
      c.path = rng.pick(WEIRD_PATHS)
      return `path := ${JSON.stringify(c.path)}`
    case 1:
      c.method = rng.pick(METHODS)
      return `method := ${c.method}`
    case 2: {
      const q = rng.pick([
        '?alt=%',
        '?key=%zz',
        '?x=' + 'q'.repeat(rng.size(10, 20000)),
        '?alt=sse&alt=json',
        '?%%%',
        '?key=am-junk',
        '?alt=' + utf8AsLatin1('模'),
      ])
      c.path += (c.path.includes('?') ? '&' : '') + q.replace(/^\?/, c.path.includes('?') ? '' : '?')
      return `query += ${JSON.stringify(q).slice(0, 60)}`
    }
    default:
      c.path =
        rng.pick(['/', '/v1/', '/v1beta/models/', '/v1/messages/count_tokens', '/v1/embeddings']) +
        (rng.chance(0.5) ? '' : 'x'.repeat(rng.size(10, 70000)))
      return `path := ${JSON.stringify(c.path.slice(0, 40))}${c.path.length > 40 ? ` (${c.path.length} chars)` : ''}`
  }
}

/** 200s from a broken vendor or a captive portal: none is the protocol's answer */
const OK_BODIES = [
  { body: '<html><body>Sign in to the hotel wifi</body></html>', contentType: 'text/html' },
  { body: '{"ok":true}', contentType: 'application/json' },
  { body: '', contentType: 'application/json' },
  { body: 'data: {"partial":true}\n\n', contentType: 'text/event-stream' },
  { body: 'not json at all', contentType: 'application/json' },
]

const upstreamMutation: Mutator = (rng, c) => {
  switch (rng.int(0, 6)) {
    case 0:
      c.upstream = { status: rng.pick([400, 401, 404, 408, 413, 429, 500, 502, 503, 504, 529]) }
      break
    case 1:
      c.upstream = { delayMs: rng.size(1, 400) }
      break
    case 2:
      c.upstream = rng.chance(0.3) ? { hang: true } : { cutAfterEvents: 0 }
      break
    case 3:
      c.upstream = rng.chance(0.5) ? { cutAfterEvents: rng.int(1, 4) } : { endAfterEvents: rng.int(0, 4) }
      break
    case 4:
      c.upstream = { okBody: rng.pick(OK_BODIES) }
      break
    default:
      c.upstream = { eventGapMs: rng.int(1, 20), ...(rng.chance(0.5) ? { cutAfterEvents: rng.int(0, 6) } : {}) }
  }
  return `upstream ${JSON.stringify(c.upstream)}`
}

const abortMutation: Mutator = (rng, c) => {
  c.abort = rng.chance(0.5) ? { afterBytes: rng.size(1, 2000) } : { afterMs: rng.int(0, 40) }
  if (rng.chance(0.5)) c.upstream = { ...c.upstream, eventGapMs: rng.int(1, 15) }
  return `client aborts ${JSON.stringify(c.abort)}`
}

const framingMutation: Mutator = (rng, c) => {
  c.framing = rng.pick(['chunked', 'chunked', 'declared-huge', 'declared-short', 'none'] as const)
  return `framing := ${c.framing}`
}

const CATEGORIES: Array<{ weight: number; run: Mutator }> = [
  { weight: 40, run: bodyMutation },
  { weight: 12, run: modelMutation },
  { weight: 20, run: headerMutation },
  { weight: 8, run: pathMutation },
  { weight: 10, run: upstreamMutation },
  { weight: 6, run: abortMutation },
  { weight: 4, run: framingMutation },
]

export function generateCase(seed: number, index: number): FuzzCase {
  const rng = caseRng(seed, index)
  const target: Target = rng.chance(0.25) ? 'demo' : 'mock'
  const s = rng.pick(SEEDS)
  const c: Draft = {
    seed: s,
    body: draftOf(s.body),
    method: s.method,
    path: s.path,
    headers: baseHeaders(rng, s),
    framing: 'content-length',
    upstream: {},
  }
  const r = rng.next()
  const n = r < 0.1 ? 0 : r < 0.7 ? 1 : r < 0.9 ? 2 : 3
  const mutations: string[] = []
  for (let i = 0; i < n; i++) mutations.push(weighted(rng, CATEGORIES).run(rng, c))
  // events never end: a client reads a little and leaves
  const abort = c.path.startsWith('/agentmesh/events') ? { afterMs: 100 } : c.abort
  return {
    seed,
    index,
    target,
    seedName: s.name,
    method: c.method,
    path: c.path,
    headers: c.headers,
    body: serialise(c.body),
    bodyExpr: bodyExpr(c.body),
    framing: c.framing,
    upstream: c.upstream,
    abort,
    mutations,
  }
}

/** A corpus request as it is, for warming a fresh proxy up (JIT, lazy modules, pools). */
export function seedCase(s: Seed, target: Target): FuzzCase {
  const headers: Array<[string, string]> = [
    ['content-type', 'application/json'],
    ['x-agentmesh-team', 'warm-up'],
  ]
  const body = s.body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(s.body))
  return {
    seed: -1,
    index: -1,
    target,
    seedName: s.name,
    method: s.method,
    path: s.path,
    headers,
    body,
    bodyExpr: null,
    framing: 'content-length',
    upstream: {},
    mutations: [],
  }
}

/**
 * A request that fills the proxy's bounded caches (normalised text, token counts) with text of
 * two-byte characters, the most memory a character-bounded cache can hold: filled before the
 * memory baseline, such caches cannot pass for a leak afterwards.
 */
export function fillCase(target: Target, i: number): FuzzCase {
  const seed = SEEDS.filter((s) => s.name.endsWith('.plain'))[i % 3]!
  const text = `${i} ` + '模型测试缓存'.repeat(150_000)
  const body = structuredClone(seed.body) as any
  if (body.contents) body.contents[0].parts[0].text = text
  else body.messages[0].content = text
  const c = seedCase(seed, target)
  c.headers.push(['cache-control', 'no-store'])
  return { ...c, body: Buffer.from(JSON.stringify(body)) }
}

/** The request as bytes on the wire. */
export function requestBytes(c: FuzzCase, port: number): Buffer {
  const lines = [`${c.method} ${c.path} HTTP/1.1`]
  if (!c.headers.some(([k]) => k === 'host' || k === '\u0000no-host')) lines.push(`host: 127.0.0.1:${port}`)
  for (const [k, v] of c.headers) if (k !== '\u0000no-host') lines.push(`${k}: ${v}`)
  const send = c.method !== 'GET' && c.method !== 'HEAD' ? c.body : Buffer.alloc(0)
  let body = send
  if (c.framing === 'content-length' && (send.length || c.method === 'POST'))
    lines.push(`content-length: ${send.length}`)
  if (c.framing === 'declared-huge') lines.push('content-length: 50000000')
  if (c.framing === 'declared-short') lines.push(`content-length: ${Math.floor(send.length / 2)}`)
  if (c.framing === 'chunked') {
    lines.push('transfer-encoding: chunked')
    const parts: Buffer[] = []
    for (let i = 0; i < send.length; i += 1000)
      parts.push(
        Buffer.from(`${Math.min(1000, send.length - i).toString(16)}\r\n`),
        send.subarray(i, i + 1000),
        Buffer.from('\r\n'),
      )
    body = Buffer.concat([...parts, Buffer.from('0\r\n\r\n')])
  }
  lines.push('connection: close')
  return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), body])
}
