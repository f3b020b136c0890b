// The one HTTP client for vendor calls: keep-alive pools, time limits, and errors mapped to
// 502/504 (never a made-up 200).
import { Readable } from 'node:stream'
import { Agent, errors, request } from 'undici'
import type { MeshContext, UpstreamResponse } from './types.ts'

export class UpstreamError extends Error {
  constructor(message: string, readonly status: number, readonly type: string) {
    super(message)
  }
}

const agent = new Agent({ keepAliveTimeout: 30_000, connections: 256 })

const DROP = new Set(['content-length', 'content-encoding', 'transfer-encoding', 'connection', 'keep-alive', 'date', 'server'])

export interface UpstreamCall {
  url: string
  method?: string
  headers: Record<string, string>
  body?: string
}

export async function callUpstream(ctx: MeshContext, call: UpstreamCall): Promise<UpstreamResponse> {
  const timeout = ctx.mesh.config.limits.upstreamTimeoutMs
  const started = performance.now()
  let res: Awaited<ReturnType<typeof request>>
  try {
    res = await request(call.url, {
      method: (call.method ?? 'POST') as 'POST',
      headers: { ...call.headers, 'accept-encoding': 'identity' },
      body: call.body,
      signal: ctx.signal,
      dispatcher: agent,
      headersTimeout: timeout,
      bodyTimeout: timeout,
    })
  } catch (err) {
    throw toUpstreamError(err, ctx, call.url)
  }
  const headers: Record<string, string> = {}
  for (const [k, v] of Object.entries(res.headers)) {
    if (v === undefined || DROP.has(k)) continue
    headers[k] = Array.isArray(v) ? v.join(', ') : v
  }
  ctx.upstream = { status: res.statusCode, latencyMs: performance.now() - started }
  const stream = res.statusCode < 300 && String(headers['content-type'] ?? '').includes('text/event-stream')
  if (stream) return { status: res.statusCode, headers, body: res.body as unknown as Readable, stream }
  try {
    return { status: res.statusCode, headers, body: Buffer.from(await res.body.arrayBuffer()), stream: false }
  } catch (err) {
    throw toUpstreamError(err, ctx, call.url)
  }
}

function toUpstreamError(err: unknown, ctx: MeshContext, url: string): UpstreamError {
  const host = safeHost(url)
  if (ctx.signal.aborted) return new UpstreamError('client closed the request', 499, 'client_closed_request')
  if (err instanceof errors.HeadersTimeoutError || err instanceof errors.BodyTimeoutError) {
    return new UpstreamError(`upstream ${host} did not answer within ${ctx.mesh.config.limits.upstreamTimeoutMs} ms`, 504, 'upstream_timeout')
  }
  const code = (err as any)?.code ?? (err as any)?.cause?.code ?? ''
  return new UpstreamError(`upstream ${host} unreachable${code ? ` (${code})` : ''}`, 502, 'upstream_unreachable')
}

function safeHost(url: string): string {
  try { return new URL(url).host } catch { return 'vendor' }
}
