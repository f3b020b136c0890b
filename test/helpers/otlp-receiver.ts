// A local OTLP/HTTP collector for the otel tests: records each export's path, headers and decoded
// JSON body (gunzipped when the exporter compressed it), and answers 200 (or what `answer` says);
// on a given port to come back where it was.
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import { gunzipSync } from 'node:zlib'

export interface Received {
  path: string
  headers: IncomingHttpHeaders
  body: any
}

export interface OtlpReceiver {
  url: string
  got: Received[]
  server: Server
  close(): Promise<void>
}

export function otlpReceiver(
  answer: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) =>
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}'),
  port = 0,
): Promise<OtlpReceiver> {
  const got: Received[] = []
  const server = createServer((req, res) => {
    const parts: Buffer[] = []
    req.on('data', (d: Buffer) => parts.push(d))
    req.on('end', () => {
      const raw = Buffer.concat(parts)
      const text = (req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8')
      got.push({ path: req.url ?? '', headers: req.headers, body: JSON.parse(text) })
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
