// A zero-delay upstream on a raw socket, for load tests: OpenAI Chat Completions and Responses, and
// Anthropic Messages on POST /v1/messages. Canned answers cost it next to no CPU, so the machine's
// two cores go to the load generator and the proxy.
import { createServer, type Server } from 'node:net'

const answer = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1,
  model: 'gpt-4o-mini-2024-07-18',
  choices: [
    {
      index: 0,
      message: { role: 'assistant', content: 'The quick brown fox jumps over the lazy dog.' },
      finish_reason: 'stop',
    },
  ],
  usage: { prompt_tokens: 12, completion_tokens: 10, total_tokens: 22 },
})
const plain = Buffer.from(
  `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(answer)}\r\nconnection: keep-alive\r\n\r\n${answer}`,
)

const base = { id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini-2024-07-18' }
const events = [
  { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] },
  ...'The quick brown fox jumps over the lazy dog.'
    .split(/(?<= )/)
    .map((w) => ({ ...base, choices: [{ index: 0, delta: { content: w }, finish_reason: null }] })),
  { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] },
  { ...base, choices: [], usage: { prompt_tokens: 12, completion_tokens: 10, total_tokens: 22 } },
]
  .map((e) => `data: ${JSON.stringify(e)}\n\n`)
  .concat('data: [DONE]\n\n')
const chunk = (s: string) => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`
const streamHead = Buffer.from(
  'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n',
)
const streamFirst = Buffer.from(chunk(events[0]!))
const streamRest = Buffer.from(events.slice(1).map(chunk).join('') + '0\r\n\r\n')

// the same answer over the Responses API, its stream event by event as OpenAI sends it
const rText = 'The quick brown fox jumps over the lazy dog.'
const rUsage = {
  input_tokens: 12,
  input_tokens_details: { cached_tokens: 0 },
  output_tokens: 10,
  output_tokens_details: { reasoning_tokens: 0 },
  total_tokens: 22,
}
const rMessage = {
  id: 'msg_bench',
  type: 'message',
  status: 'completed',
  role: 'assistant',
  content: [{ type: 'output_text', text: rText, annotations: [], logprobs: [] }],
}
const rResponse = {
  id: 'resp_bench',
  object: 'response',
  created_at: 1,
  status: 'completed',
  error: null,
  incomplete_details: null,
  model: 'gpt-4o-mini-2024-07-18',
  output: [rMessage],
  parallel_tool_calls: true,
  store: true,
  tool_choice: 'auto',
  tools: [],
  usage: rUsage,
}
const rAnswer = JSON.stringify(rResponse)
const rPlain = Buffer.from(
  `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(rAnswer)}\r\nconnection: keep-alive\r\n\r\n${rAnswer}`,
)
let rSeq = 0
const rEvent = (type: string, data: Record<string, unknown>) =>
  `event: ${type}\ndata: ${JSON.stringify({ type, ...data, sequence_number: rSeq++ })}\n\n`
const rStarted = { ...rResponse, status: 'in_progress', output: [], usage: null }
const rEvents = [
  rEvent('response.created', { response: rStarted }),
  rEvent('response.in_progress', { response: rStarted }),
  rEvent('response.output_item.added', { output_index: 0, item: { ...rMessage, status: 'in_progress', content: [] } }),
  rEvent('response.content_part.added', {
    item_id: 'msg_bench',
    output_index: 0,
    content_index: 0,
    part: { type: 'output_text', text: '', annotations: [], logprobs: [] },
  }),
  ...rText.split(/(?<= )/).map((delta) =>
    rEvent('response.output_text.delta', {
      item_id: 'msg_bench',
      output_index: 0,
      content_index: 0,
      delta,
      logprobs: [],
    }),
  ),
  rEvent('response.output_text.done', {
    item_id: 'msg_bench',
    output_index: 0,
    content_index: 0,
    text: rText,
    logprobs: [],
  }),
  rEvent('response.content_part.done', {
    item_id: 'msg_bench',
    output_index: 0,
    content_index: 0,
    part: rMessage.content[0],
  }),
  rEvent('response.output_item.done', { output_index: 0, item: rMessage }),
  rEvent('response.completed', { response: rResponse }),
]
const rStreamFirst = Buffer.from(chunk(rEvents[0]!))
const rStreamRest = Buffer.from(rEvents.slice(1).map(chunk).join('') + '0\r\n\r\n')

// the same answer as Anthropic Messages; its stream event by event as Anthropic sends it (a ping
// after the block starts, usage in message_start and message_delta)
const aUsage = { input_tokens: 12, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 10 }
const aMessage = {
  id: 'msg_bench',
  type: 'message',
  role: 'assistant',
  model: 'claude-haiku-4-5-20251001',
  content: [{ type: 'text', text: rText }],
  stop_reason: 'end_turn',
  stop_sequence: null,
  usage: aUsage,
}
const aAnswer = JSON.stringify(aMessage)
const aPlain = Buffer.from(
  `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(aAnswer)}\r\nconnection: keep-alive\r\n\r\n${aAnswer}`,
)
const aEvent = (type: string, data: Record<string, unknown>) =>
  `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`
const aEvents = [
  aEvent('message_start', {
    message: { ...aMessage, content: [], stop_reason: null, usage: { ...aUsage, output_tokens: 1 } },
  }),
  aEvent('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
  aEvent('ping', {}),
  ...rText
    .split(/(?<= )/)
    .map((text) => aEvent('content_block_delta', { index: 0, delta: { type: 'text_delta', text } })),
  aEvent('content_block_stop', { index: 0 }),
  aEvent('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 10 } }),
  aEvent('message_stop', {}),
]
const aStreamFirst = Buffer.from(chunk(aEvents[0]!))
const aStreamRest = Buffer.from(aEvents.slice(1).map(chunk).join('') + '0\r\n\r\n')

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
        const kind = head.startsWith('POST /v1/responses') ? 1 : head.startsWith('POST /v1/messages') ? 2 : 0
        if (body.includes('"stream":true')) {
          // first event on its own, like a vendor sending the role chunk (or message_start) before the text
          socket.write(streamHead)
          socket.write(kind === 1 ? rStreamFirst : kind === 2 ? aStreamFirst : streamFirst)
          setImmediate(() => socket.write(kind === 1 ? rStreamRest : kind === 2 ? aStreamRest : streamRest))
        } else socket.write(kind === 1 ? rPlain : kind === 2 ? aPlain : plain)
      }
    })
    socket.on('error', () => {})
  })
  return new Promise((resolve) =>
    server.listen(port, '127.0.0.1', () => resolve({ port: (server.address() as any).port, server })),
  )
}

// run standalone: node bin/run-ts.mjs bench/lib/fast-mock.ts PORT
if (process.argv[1]?.endsWith('fast-mock.ts') || process.argv[2]?.endsWith('fast-mock.ts')) {
  const port = Number(process.argv.at(-1)) || 0
  const { port: p } = await startFastMock(port)
  process.stdout.write(`fast-mock listening ${p}\n`)
}
