// What Node answers by itself, before a request reaches the app: a header it cannot parse (a
// control character in a value, an oversized head), a CONNECT, an `Expect` it does not know. Its
// defaults are a bare 400 with no body, a dropped connection, a bare 417: answered here instead
// with a JSON error and the request id, like every other answer.
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { protocolOfPath, protocols } from './protocols/index.ts'
import { newRequestId } from './request-id.ts'

/** the path of a request line in what the parser got ('POST /v1/messages HTTP/1.1'), if any */
function pathOf(raw: Buffer | string | undefined): string {
  const line = raw ? raw.toString('latin1', 0, 2048).split('\r\n', 1)[0]! : ''
  return line.split(' ')[1] ?? '/'
}

/** an error in the protocol of the path it was sent to, as a whole HTTP/1.1 response */
function rawReply(path: string, status: number, reason: string, type: string, message: string): string {
  const body = JSON.stringify(protocols[protocolOfPath(path)].errorBody(status, type, message))
  return `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-agentmesh-request-id: ${newRequestId()}\r\nx-agentmesh-vendor: none\r\nx-agentmesh-tokens: 0\r\nx-agentmesh-cost-usd: 0.000000\r\nx-agentmesh-cache: bypass\r\nconnection: close\r\n\r\n${body}`
}

/**
 * A request target that is neither a path, `*` nor an absolute http(s) URL (`*?x=1`, `abc`):
 * srvx answers those itself with a bare 400 and no body (its check, repeated here)
 */
function badTarget(url: string | undefined): boolean {
  if (!url || url[0] === '/' || url === '*') return false
  if (!URL.canParse(url)) return true
  const u = new URL(url)
  return !((u.protocol === 'http:' || u.protocol === 'https:') && u.host !== '')
}

/** a 400 in the protocol of the path the target names if any */
function answerBadRequest(req: IncomingMessage, res: ServerResponse, message: string): void {
  const target = String(req.url)
  const path = target.startsWith('*') ? target.slice(1) : target
  const body = JSON.stringify(protocols[protocolOfPath(path)].errorBody(400, 'invalid_request_error', message))
  res.shouldKeepAlive = false
  res.writeHead(400, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-agentmesh-request-id': newRequestId(),
    'x-agentmesh-vendor': 'none',
    'x-agentmesh-tokens': '0',
    'x-agentmesh-cost-usd': '0.000000',
    'x-agentmesh-cache': 'bypass',
  })
  res.end(body)
}

// The last Host that made a URL: clients send the same one on every request, so the parse below
// runs once per distinct value, not per request.
let lastGoodHost = ''

/**
 * A Host the URL parser refuses (`807363846953`, an IPv4 number past 2^32; `a b`; a port past
 * 65535): srvx builds the request's URL from it and throws, a 500 with no body
 */
function badHost(host: string): boolean {
  if (host === lastGoodHost) return false
  if (!URL.canParse(`http://${host}/`)) return true
  lastGoodHost = host
  return false
}

/** Install the answers on a Node HTTP server (srvx's or listhen's). */
export function guardNodeServer(server: Server | undefined): void {
  if (!server)
    return // HTTP/1.1 without Host: Node would answer a bare 400 itself; the app answers it (browsers
    // always send Host, so the DNS-rebinding check loses nothing)
  ;(server as Server & { requireHostHeader?: boolean }).requireHostHeader = false
  // Node keeps the first 1,000 headers and drops the rest without a word, Content-Length and
  // Authorization among them: a body it still waits for that the app then never sees declared (a
  // hang until the request timeout). No count limit: the 16 KB head limit bounds them already.
  server.maxHeadersCount = 0
  // The server's own handlers (srvx's) run after these checks, and only when they pass: a request
  // answered here must not reach them (srvx would build its URL from the bad Host, throw, and
  // write its 500 after this answer).
  const handlers = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[]
  server.removeAllListeners('request')
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (badTarget(req.url))
      return answerBadRequest(
        req,
        res,
        'the request target must be a path (e.g. /v1/chat/completions) or an absolute http(s) URL',
      )
    const host = req.headers.host
    if (host && badHost(host))
      return answerBadRequest(req, res, `the Host header "${host.slice(0, 100)}" is not a valid host name`)
    // the request URL is built from Host: without one, the address the client connected to
    if (!host) {
      const { localAddress = '127.0.0.1', localPort } = req.socket
      req.headers.host = `${localAddress.includes(':') ? `[${localAddress}]` : localAddress}:${localPort}`
    }
    for (const handler of handlers) handler.call(server, req, res)
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // a peer that went away needs no answer
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy()
      return
    }
    // junk after a request on the same connection: that request's answer is still on its way;
    // let it finish, then close, instead of answering the junk first
    const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse })._httpMessage
    if (inFlight && !inFlight.writableFinished) {
      inFlight.once('finish', () => socket.destroy())
      inFlight.once('close', () => socket.destroy())
      return
    }
    const big = err.code === 'HPE_HEADER_OVERFLOW'
    const path = pathOf((err as { rawPacket?: Buffer }).rawPacket)
    socket.end(
      big
        ? rawReply(
            path,
            431,
            'Request Header Fields Too Large',
            'invalid_request_error',
            'request headers are too large',
          )
        : rawReply(
            path,
            400,
            'Bad Request',
            'invalid_request_error',
            'malformed HTTP request (a header value with a control character, or bad framing)',
          ),
    )
  })
  // CONNECT would otherwise close the connection without a word: this is not a forward proxy
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => socket.destroy())
    socket.end(
      rawReply(
        req.url ?? '/',
        405,
        'Method Not Allowed',
        'invalid_request_error',
        'CONNECT is not supported: AgentMesh is an API endpoint, not a forward proxy',
      ),
    )
  })
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const body = JSON.stringify(
      protocols[protocolOfPath(req.url ?? '/')].errorBody(
        417,
        'invalid_request_error',
        `Expect: ${String(req.headers.expect).slice(0, 100)} is not supported`,
      ),
    )
    res.writeHead(417, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'x-agentmesh-request-id': newRequestId(),
      'x-agentmesh-vendor': 'none',
      'x-agentmesh-tokens': '0',
      'x-agentmesh-cost-usd': '0.000000',
      'x-agentmesh-cache': 'bypass',
    })
    res.end(body)
  })
}
