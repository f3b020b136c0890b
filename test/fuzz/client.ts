// A raw HTTP/1.1 client over net.Socket: Node's own client refuses the bytes a fuzzer must send
// (CR/LF/NUL in headers, raw UTF-8 in the path, lying Content-Length), and hides framing the
// oracles need (did a chunked stream end with its terminator or just stop?).
import { connect } from 'node:net'

export interface RawResponse {
  status: number
  headers: Map<string, string>
  body: Buffer
  /** how the body was delimited, and whether it arrived whole */
  framing: 'content-length' | 'chunked' | 'close' | 'none'
  complete: boolean
  /** no response bytes at all */
  empty: boolean
  timedOut: boolean
  /** we cut the connection on purpose (an aborting client) */
  aborted: boolean
  error?: string
  ms: number
}

export interface SendOptions {
  timeoutMs: number
  head?: boolean
  abortAfterBytes?: number
  abortAfterMs?: number
}

export function sendRaw(port: number, request: Buffer, opts: SendOptions): Promise<RawResponse> {
  const t0 = performance.now()
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let received = 0
    let aborted = false
    let timedOut = false
    let error: string | undefined
    let done = false
    let answered = false
    const sock = connect({ port, host: '127.0.0.1' })
    const finish = () => {
      if (done) return
      done = true
      clearTimeout(timer)
      clearTimeout(abortTimer)
      sock.destroy()
      resolve({
        ...parseResponse(Buffer.concat(chunks), !!opts.head),
        timedOut,
        aborted,
        error,
        ms: performance.now() - t0,
      })
    }
    const timer = setTimeout(() => {
      timedOut = true
      finish()
    }, opts.timeoutMs)
    const abortTimer =
      opts.abortAfterMs !== undefined
        ? setTimeout(() => {
            aborted = true
            finish()
          }, opts.abortAfterMs)
        : undefined
    sock.on('data', (c: Buffer) => {
      // an interim `100 Continue` (the answer to Expect) asks for the body: only a final status
      // line means the server answered early
      if (!answered && !/^HTTP\/1\.[01] 1\d\d /.test(c.toString('latin1', 0, 13))) answered = true
      chunks.push(c)
      received += c.length
      if (opts.abortAfterBytes !== undefined && received >= opts.abortAfterBytes) {
        aborted = true
        finish()
      }
    })
    sock.on('end', finish)
    sock.on('close', finish)
    // a server that answers before reading the whole body (413) may reset us mid-write
    sock.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message
      finish()
    })
    // like curl: send in pieces, and stop sending once the server has answered (an early 413)
    let at = 0
    const pump = () => {
      while (!answered && !done && at < request.length) {
        const piece = request.subarray(at, (at += 65536))
        if (!sock.write(piece)) return void sock.once('drain', pump)
      }
    }
    // a big body: wait a moment after the head, as curl does with Expect, so an early answer
    // (413 on the declared length) is read before a reset can discard it
    const headEnd = request.indexOf('\r\n\r\n')
    if (request.length > 65536 && headEnd > 0) {
      sock.write(request.subarray(0, (at = headEnd + 4)))
      setTimeout(pump, request.length > 1_000_000 ? 50 : 20)
    } else pump()
  })
}

/** Parse what came back; the first final (non-1xx) response only. */
export function parseResponse(raw: Buffer, head: boolean): Omit<RawResponse, 'timedOut' | 'aborted' | 'error' | 'ms'> {
  const none = {
    status: 0,
    headers: new Map<string, string>(),
    body: Buffer.alloc(0),
    framing: 'none' as const,
    complete: false,
    empty: raw.length === 0,
  }
  let at = 0
  for (;;) {
    const end = raw.indexOf('\r\n\r\n', at)
    if (end < 0) return none
    const lines = raw.subarray(at, end).toString('latin1').split('\r\n')
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0)
    const headers = new Map<string, string>()
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':')
      if (i < 0) continue
      const k = line.slice(0, i).trim().toLowerCase()
      const v = line.slice(i + 1).trim()
      headers.set(k, headers.has(k) ? `${headers.get(k)}, ${v}` : v)
    }
    at = end + 4
    if (status >= 100 && status < 200) continue
    const rest = raw.subarray(at)
    if (head || status === 204 || status === 304)
      return { status, headers, body: Buffer.alloc(0), framing: 'none', complete: true, empty: false }
    if (/chunked/i.test(headers.get('transfer-encoding') ?? ''))
      return { status, headers, ...dechunk(rest), framing: 'chunked', empty: false }
    const cl = headers.get('content-length')
    if (cl !== undefined) {
      const n = Number(cl)
      return {
        status,
        headers,
        body: rest.subarray(0, n),
        framing: 'content-length',
        complete: rest.length >= n,
        empty: false,
      }
    }
    return { status, headers, body: rest, framing: 'close', complete: true, empty: false }
  }
}

/** chunked transfer coding: the body, and whether the terminating zero-size chunk arrived */
function dechunk(raw: Buffer): { body: Buffer; complete: boolean } {
  const parts: Buffer[] = []
  let at = 0
  for (;;) {
    const eol = raw.indexOf('\r\n', at)
    if (eol < 0) return { body: Buffer.concat(parts), complete: false }
    const size = parseInt(raw.subarray(at, eol).toString('latin1'), 16)
    if (!Number.isFinite(size)) return { body: Buffer.concat(parts), complete: false }
    if (size === 0) return { body: Buffer.concat(parts), complete: true }
    const start = eol + 2
    if (start + size > raw.length) {
      parts.push(raw.subarray(start))
      return { body: Buffer.concat(parts), complete: false }
    }
    parts.push(raw.subarray(start, start + size))
    at = start + size + 2
  }
}
