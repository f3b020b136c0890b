// A slow client must slow the vendor down, not fill the proxy's memory: streams are written
// straight to the client's socket, and when it stops reading the proxy stops reading upstream.
import { createServer, request, type Server } from 'node:http'
import { afterAll, describe, expect, it } from 'vitest'
import { startCoreProxy, type Proxy } from './helpers/core-harness.ts'

const EVENTS = 40_000
// ~1 KB of text per event: ~45 MB in all, far more than the socket buffers on the way hold
const WORD = 'x'.repeat(1000)
const chunk = (i: number) =>
  `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content: WORD }, finish_reason: null }], n: i })}\n\n`
const tail = `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: EVENTS, total_tokens: EVENTS + 5 } })}\n\ndata: [DONE]\n\n`

let upstream: Server
let proxy: Proxy
let written = 0
let total = 0

afterAll(async () => {
  await proxy?.close()
  await new Promise((r) => upstream?.close(r))
})

describe('backpressure', () => {
  it('a client that stops reading stops the upstream; it gets every byte once it reads again', async () => {
    upstream = createServer((req, res) => {
      req.resume()
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      let i = 0
      const pump = () => {
        while (i < EVENTS) {
          const c = chunk(i++)
          written += Buffer.byteLength(c)
          if (!res.write(c)) return void res.once('drain', pump)
        }
        res.end(tail)
      }
      pump()
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    for (let i = 0; i < EVENTS; i++) total += Buffer.byteLength(chunk(i))
    const port = (upstream.address() as { port: number }).port
    proxy = await startCoreProxy({
      preset: 'solo',
      vendors: { openai: { baseURL: `http://127.0.0.1:${port}`, apiKey: 'sk-test-backpressure' } },
    })

    const body = JSON.stringify({
      model: 'gpt-4o-mini',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'a long answer please' }],
    })
    const received: Buffer[] = []
    const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      const req = request(
        `${proxy.url}/v1/chat/completions`,
        { method: 'POST', headers: { 'content-type': 'application/json' } },
        resolve,
      )
      req.on('error', reject)
      req.end(body)
    })
    expect(res.statusCode).toBe(200)
    // read a little, then stop reading
    await new Promise<void>((r) =>
      res.once('data', (d: Buffer) => {
        received.push(d)
        res.pause()
        r()
      }),
    )
    const heapBefore = process.memoryUsage().heapUsed
    await new Promise((r) => setTimeout(r, 1500))
    const stalledAt = written
    await new Promise((r) => setTimeout(r, 500))
    // the upstream is held back: it has stopped writing, with most of the answer still unsent
    expect(written).toBe(stalledAt)
    expect(written).toBeLessThan(total * 0.6)
    // and the proxy (this process) did not buffer what it could not send
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(20 * 1024 * 1024)

    res.on('data', (d: Buffer) => received.push(d))
    res.resume()
    await new Promise((r) => res.once('end', r))
    const text = Buffer.concat(received).toString('utf8')
    expect(written).toBe(total)
    expect(text.split('\n\n').filter((e) => e.includes('"delta":{"content"')).length).toBe(EVENTS)
    expect(text).toContain('[DONE]')
  }, 60_000)
})
