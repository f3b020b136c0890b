// An upstream that plays a stuck agent's model: every chat call it answers with the same tool
// call (OpenAI and Anthropic shapes), whatever the transcript says; `calls` counts what reached it.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface LoopUpstream {
  url: string
  calls: number
  bodies: any[]
  close(): Promise<void>
}

/** `args(n)` gives the n-th call's tool arguments (default: always the same) */
export async function startLoopUpstream(
  opts: { args?: (n: number) => Record<string, unknown>; delayMs?: number } = {},
): Promise<LoopUpstream> {
  const args = opts.args ?? (() => ({ path: 'src/index.ts' }))
  let server: Server
  const up: LoopUpstream = {
    url: '',
    calls: 0,
    bodies: [],
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections()
        server.close(() => r())
      }),
  }
  server = createServer((req, res) => {
    let raw = ''
    req.on('data', (c) => (raw += c))
    req.on('end', () => {
      const n = ++up.calls
      const body = JSON.parse(raw || '{}')
      up.bodies.push(body)
      const a = args(n)
      const out = req.url!.startsWith('/v1/messages')
        ? {
            id: `msg_${n}`,
            type: 'message',
            role: 'assistant',
            model: body.model,
            content: [{ type: 'tool_use', id: `toolu_${n}`, name: 'read_file', input: a }],
            stop_reason: 'tool_use',
            stop_sequence: null,
            usage: { input_tokens: 100, output_tokens: 20 },
          }
        : {
            id: `chatcmpl-${n}`,
            object: 'chat.completion',
            created: 1,
            model: body.model,
            choices: [
              {
                index: 0,
                message: {
                  role: 'assistant',
                  content: null,
                  tool_calls: [
                    {
                      id: `call_${n}`,
                      type: 'function',
                      function: { name: 'read_file', arguments: JSON.stringify(a) },
                    },
                  ],
                },
                finish_reason: 'tool_calls',
              },
            ],
            usage: { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 },
          }
      const send = () => {
        const s = JSON.stringify(out)
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) })
        res.end(s)
      }
      if (opts.delayMs) setTimeout(send, opts.delayMs)
      else send()
    })
  })
  server.keepAliveTimeout = 30_000
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  up.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return up
}
