// The one HTTP client for vendor calls: keep-alive pools, time limits, and errors mapped to
// 502/504 (never a made-up 200).
//
// Calls go through undici's Pool.dispatch with a callback handler rather than request(): on
// the hot path that skips a Readable, an AbortSignal wrapper and a header object per call, about
// 0.1 ms of CPU per request on this machine (bench:proxy). The callback interface is the one
// undici's own client speaks internally, so nothing is adapted in between.
import { Readable } from 'node:stream'
import { Pool, errors, type Dispatcher } from 'undici'
import { clientGone, onClientGone } from './client.ts'
import type { MeshContext, UpstreamResponse } from './types.ts'

export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly type: string,
  ) {
    super(message)
  }
}

// hop-by-hop and framing headers: the proxy's own server sets these for the client
const DROP = new Set([
  'content-length',
  'content-encoding',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'date',
  'server',
])

const pools = new Map<string, Pool>()
function poolFor(origin: string): Pool {
  let pool = pools.get(origin)
  if (!pool) pools.set(origin, (pool = new Pool(origin, { keepAliveTimeout: 30_000, connections: 256 })))
  return pool
}

export interface UpstreamCall {
  url: string
  method?: string
  headers: Record<string, string>
  /** text, or pieces of bytes sent in order (the caller gives their content-length) */
  body?: string | readonly Buffer[]
}

/** 'https://api.x.com/v1/a?b' -> ['https://api.x.com', '/v1/a?b'], without building a URL object per call */
function splitUrl(url: string): [string, string] {
  const scheme = url.indexOf('://')
  const slash = scheme < 0 ? -1 : url.indexOf('/', scheme + 3)
  if (scheme < 0) throw new UpstreamError(`upstream URL "${url}" is not absolute`, 502, 'upstream_unreachable')
  return slash < 0 ? [url, '/'] : [url.slice(0, slash), url.slice(slash)]
}

export function callUpstream(ctx: MeshContext, call: UpstreamCall): Promise<UpstreamResponse> {
  const timeout = ctx.mesh.config.limits.upstreamTimeoutMs
  const started = performance.now()
  const [origin, path] = splitUrl(call.url)
  return new Promise((resolve, reject) => {
    let abort: ((err?: Error) => void) | undefined
    let answered = false
    let status = 0
    let headers: Record<string, string> = {}
    let chunks: Buffer[] | undefined
    let stream: Readable | undefined
    let resume: (() => void) | undefined
    let finished = false
    let gone = false
    const onAbort = () => {
      gone = true
      abort?.(new UpstreamError('client closed the request', 499, 'client_closed_request'))
    }
    let detach: () => void = () => {}
    const fail = (err: unknown) => {
      detach()
      if (!answered) {
        answered = true
        reject(toUpstreamError(err, ctx, origin, stream !== undefined))
      } else stream?.destroy(err as Error)
    }
    const handler: Dispatcher.DispatchHandler = {
      onConnect(a) {
        abort = a
        if (gone) onAbort()
      },
      onHeaders(code, raw, resumeFn) {
        if (code < 200) return true // 1xx: the real answer follows
        status = code
        headers = toHeaders(raw as unknown as Buffer[])
        ctx.upstream = { status, latencyMs: performance.now() - started }
        // a stream only when the client asked for one: an SSE body to a plain request is read
        // whole, and the core answers 502 when it is not the protocol's JSON
        if (code < 300 && ctx.prompt.stream && (headers['content-type'] ?? '').includes('text/event-stream')) {
          resume = resumeFn
          // undici pauses when push() says the client is slow, and resumes when it reads again
          stream = new Readable({
            read: () => resume?.(),
            destroy: (err, cb) => {
              if (!finished) abort?.(err ?? new Error('stream closed'))
              cb(err)
            },
          })
          // answered at its first byte, not its headers: a stream that fails or times out before
          // then is a rejection, which the core may retry (nothing has reached the client)
        } else chunks = []
        return true
      },
      onData(chunk) {
        if (stream) {
          const more = stream.push(chunk)
          if (!answered) {
            answered = true
            resolve({ status, headers, body: stream, stream: true })
          }
          return more
        }
        chunks!.push(chunk)
        return true
      },
      onComplete() {
        finished = true
        detach()
        if (stream) {
          stream.push(null)
          if (!answered) {
            // an empty stream: the relay says it ended before its final event
            answered = true
            resolve({ status, headers, body: stream, stream: true })
          }
          return
        }
        answered = true
        const body = chunks!.length === 1 ? chunks![0]! : Buffer.concat(chunks!)
        resolve({ status, headers, body, stream: false })
      },
      onError: fail,
    }
    detach = onClientGone(ctx, onAbort)
    // a flat [name, value, ...] list: undici takes it as is, where an object is copied first
    const head = ['accept-encoding', 'identity']
    for (const k in call.headers) if (k !== 'accept-encoding') head.push(k, call.headers[k]!)
    try {
      poolFor(origin).dispatch(
        {
          origin,
          path,
          method: (call.method ?? 'POST') as Dispatcher.HttpMethod,
          headers: head,
          // undici's docs take an Iterable body (its types do not say so yet): the pieces in order
          body: call.body as string | undefined,
          headersTimeout: timeout,
          bodyTimeout: timeout,
        },
        handler,
      )
    } catch (err) {
      fail(err)
    }
  })
}

/** undici's raw header list [name, value, name, value, ...] -> lower-case record, repeated names joined */
function toHeaders(raw: Buffer[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = raw[i]!.toString('latin1').toLowerCase()
    if (DROP.has(k)) continue
    const v = raw[i + 1]!.toString('latin1')
    out[k] = out[k] === undefined ? v : `${out[k]}, ${v}`
  }
  return out
}

/** `streamStarted`: a stream's status line came, its first byte did not */
function toUpstreamError(err: unknown, ctx: MeshContext, origin: string, streamStarted = false): UpstreamError {
  if (err instanceof UpstreamError) return err
  if (clientGone(ctx)) return new UpstreamError('client closed the request', 499, 'client_closed_request')
  const host = origin.replace(/^[a-z]+:\/\//i, '')
  if (err instanceof errors.HeadersTimeoutError || err instanceof errors.BodyTimeoutError) {
    return new UpstreamError(
      `upstream ${host} did not answer within ${ctx.mesh.config.limits.upstreamTimeoutMs} ms`,
      504,
      'upstream_timeout',
    )
  }
  const code = (err as any)?.code ?? (err as any)?.cause?.code ?? ''
  if (streamStarted)
    return new UpstreamError(
      `upstream ${host} stream failed before its first byte${code ? ` (${code})` : ''}`,
      502,
      'upstream_stream_error',
    )
  return new UpstreamError(`upstream ${host} unreachable${code ? ` (${code})` : ''}`, 502, 'upstream_unreachable')
}
