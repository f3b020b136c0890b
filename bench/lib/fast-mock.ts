// A zero-delay OpenAI-compatible upstream on a raw socket, for load tests: canned answers cost it
// next to no CPU, so the machine's two cores go to the load generator and the proxy.
import { createServer, type Server } from 'node:net'

const answer = JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion', created: 1, model: 'gpt-4o-mini-2024-07-18', choices: [{ index: 0, message: { role: 'assistant', content: 'The quick brown fox jumps over the lazy dog.' }, finish_reason: 'stop' }], usage: { prompt_tokens: 12, completion_tokens: 10, total_tokens: 22 } })
const plain = Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(answer)}\r\nconnection: keep-alive\r\n\r\n${answer}`)

const base = { id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini-2024-07-18' }
const events = [
  { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] },
  ...'The quick brown fox jumps over the lazy dog.'.split(/(?<= )/).map((w) => ({ ...base, choices: [{ index: 0, delta: { content: w }, finish_reason: null }] })),
  { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] },
  { ...base, choices: [], usage: { prompt_tokens: 12, completion_tokens: 10, total_tokens: 22 } },
].map((e) => `data: ${JSON.stringify(e)}\n\n`).concat('data: [DONE]\n\n')
const chunk = (s: string) => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`
const streamHead = Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n')
const streamFirst = Buffer.from(chunk(events[0]!))
const streamRest = Buffer.from(events.slice(1).map(chunk).join('') + '0\r\n\r\n')

export function startFastMock(port = 0): Promise<{ port: number; server: Server }> {
  const server = createServer((socket) => {
    socket.setNoDelay(true)
    let buf: Buffer = Buffer.alloc(0)
    socket.on('data', (data: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, data]) : data
      for (;;) {
        const end = buf.indexOf('\r\n\r\n')
        if (end < 0) return
        const head = buf.subarray(0, end).toString('latin1')
        const m = /content-length:\s*(\d+)/i.exec(head)
        const len = m ? Number(m[1]) : 0
        if (buf.length < end + 4 + len) return
        const body = buf.subarray(end + 4, end + 4 + len)
        buf = buf.subarray(end + 4 + len)
        if (body.includes('"stream":true')) {
          // first event on its own, like a vendor sending the role chunk before the text
          socket.write(streamHead)
          socket.write(streamFirst)
          setImmediate(() => socket.write(streamRest))
        } else socket.write(plain)
      }
    })
    socket.on('error', () => {})
  })
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve({ port: (server.address() as any).port, server })))
}

// run standalone: node bin/run-ts.mjs bench/lib/fast-mock.ts PORT
if (process.argv[1]?.endsWith('fast-mock.ts') || process.argv[2]?.endsWith('fast-mock.ts')) {
  const port = Number(process.argv.at(-1)) || 0
  const { port: p } = await startFastMock(port)
  process.stdout.write(`fast-mock listening ${p}\n`)
}
