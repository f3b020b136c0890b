// A local OTLP/HTTP collector for the otel tests: records each export's path, headers and decoded
// body (gunzipped when the exporter compressed it; protobuf decoded to the object its OTLP/JSON
// would be, so tests read both encodings alike), and answers 200 with an empty export response in
// the request's encoding (or what `answer` says); on a given port to come back where it was.
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import { gunzipSync } from 'node:zlib'
import { decode, metricsRequest, traceRequest } from './otlp-proto.ts'

export interface Received {
  path: string
  headers: IncomingHttpHeaders
  body: any
  /** the body's encoding, from its content-type */
  protocol: 'http/protobuf' | 'http/json'
}

export interface OtlpReceiver {
  url: string
  got: Received[]
  server: Server
  close(): Promise<void>
}

const isProto = (req: IncomingMessage) => req.headers['content-type'] === 'application/x-protobuf'

export function otlpReceiver(
  answer: (req: IncomingMessage, res: ServerResponse) => void = (req, res) =>
    isProto(req)
      ? res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
      : res.writeHead(200, { 'content-type': 'application/json' }).end('{}'),
  port = 0,
  /** which signal a path's protobuf is (a per-signal endpoint may have any path) */
  signalOf: (path: string) => 'traces' | 'metrics' = (path) => (path.endsWith('/v1/metrics') ? 'metrics' : 'traces'),
): Promise<OtlpReceiver> {
  const got: Received[] = []
  const server = createServer((req, res) => {
    const parts: Buffer[] = []
    req.on('data', (d: Buffer) => parts.push(d))
    req.on('end', () => {
      const raw = Buffer.concat(parts)
      const bytes = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw
      const path = req.url ?? ''
      const body = isProto(req)
        ? decode(signalOf(path) === 'metrics' ? metricsRequest : traceRequest, bytes)
        : JSON.parse(bytes.toString('utf8'))
      got.push({ path, headers: req.headers, body, protocol: isProto(req) ? 'http/protobuf' : 'http/json' })
      answer(req, res)
    })
  })
  return new Promise((r) =>
    server.listen(port, '127.0.0.1', () =>
      r({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        got,
        server,
        close: () => new Promise<void>((done) => server.close(() => done())),
      }),
    ),
  )
}
