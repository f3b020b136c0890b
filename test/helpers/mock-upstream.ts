// A local server that speaks the three vendor protocols (streaming included), so tests and
// benchmarks run without any vendor. It records what it received, to check what went upstream.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createResponsesMock } from './mock-responses.ts'

export interface Received {
  path: string
  headers: IncomingMessage['headers']
  body: any
  raw: string
}

export interface MockBehaviour {
  /** answer with this status and error body instead */
  status?: number
  /** wait before answering, ms */
  delayMs?: number
  /** never answer (for timeouts) */
  hang?: boolean
  /** stream: send this many events then cut the connection */
  cutAfterEvents?: number
  /** pause between stream events, ms */
  eventGapMs?: number
  /** stream: send this many events then end the response cleanly (no final event) */
  endAfterEvents?: number
  /** answer 200 with this raw body and content type (a broken vendor or a captive portal) */
  okBody?: { body: string; contentType: string }
}

export interface MockUpstream {
  url: string
  received: Received[]
  behaviour: MockBehaviour
  /** count of upstream requests whose client went away before the answer finished */
  aborted: number
  close(): Promise<void>
}

const words = (s: string) => s.split(/\s+/).filter(Boolean).length

function lastUserText(messages: any[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]
    if (m.role !== 'user') continue
    if (typeof m.content === 'string') return m.content
    if (Array.isArray(m.content))
      return m.content
        .filter((b: any) => b.type === 'text' || typeof b.text === 'string')
        .map((b: any) => b.text)
        .join(' ')
  }
  return ''
}

function hasToolResult(messages: any[]): boolean {
  const last = messages.at(-1)
  if (!last) return false
  if (last.role === 'tool') return true
  return Array.isArray(last.content) && last.content.some((b: any) => b.type === 'tool_result' || b.functionResponse)
}

/** The mock's answer for a prompt: echoes it, so tests can tell answers apart. */
export const mockText = (prompt: string) => `mock answer to: ${prompt}`

function openaiAnswer(body: any) {
  const prompt = lastUserText(body.messages ?? [])
  const tool = body.tools?.[0] && !hasToolResult(body.messages) ? body.tools[0] : undefined
  const text = hasToolResult(body.messages)
    ? `tool said: ${JSON.stringify(body.messages.at(-1).content)}`
    : mockText(prompt)
  return {
    prompt,
    tool,
    text,
    usage: { prompt_tokens: 10 + words(prompt), completion_tokens: tool ? 12 : words(text) },
  }
}

function send(res: ServerResponse, status: number, body: unknown) {
  const s = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(s),
    'x-request-id': 'mock-req',
  })
  res.end(s)
}

async function streamEvents(res: ServerResponse, events: string[], b: MockBehaviour, up: MockUpstream) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  res.flushHeaders()
  let n = 0
  for (const e of events) {
    if (res.destroyed) {
      up.aborted++
      return
    }
    if (b.cutAfterEvents !== undefined && n >= b.cutAfterEvents) {
      res.socket?.destroy()
      return
    }
    if (b.endAfterEvents !== undefined && n >= b.endAfterEvents) break
    res.write(e)
    n++
    if (b.eventGapMs) await new Promise((r) => setTimeout(r, b.eventGapMs))
  }
  res.end()
}

const sse = (data: unknown, event?: string) =>
  (event ? `event: ${event}\n` : '') + `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`

function handleOpenAI(body: any, res: ServerResponse, b: MockBehaviour, up: MockUpstream) {
  const a = openaiAnswer(body)
  const model = body.model
  // a tool without a name is refused as the vendor refuses it (the proxy forwards what it does not read)
  if (a.tool && typeof a.tool.function?.name !== 'string')
    return send(res, 400, {
      error: {
        message: "Missing required parameter: 'tools[0].function.name'.",
        type: 'invalid_request_error',
        param: 'tools[0].function.name',
        code: 'missing_required_parameter',
      },
    })
  if (!body.stream) {
    const message = a.tool
      ? {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'call_1', type: 'function', function: { name: a.tool.function.name, arguments: '{"city":"Paris"}' } },
          ],
        }
      : { role: 'assistant', content: a.text }
    return send(res, 200, {
      id: 'chatcmpl-mock',
      object: 'chat.completion',
      created: 1,
      model: `${model}-2025`,
      choices: [{ index: 0, message, finish_reason: a.tool ? 'tool_calls' : 'stop' }],
      usage: { ...a.usage, total_tokens: a.usage.prompt_tokens + a.usage.completion_tokens },
    })
  }
  const base = { id: 'chatcmpl-mock', object: 'chat.completion.chunk', created: 1, model: `${model}-2025` }
  const events = [
    sse({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] }),
  ]
  if (a.tool) {
    events.push(
      sse({
        ...base,
        choices: [
          {
            index: 0,
            delta: {
              tool_calls: [
                { index: 0, id: 'call_1', type: 'function', function: { name: a.tool.function.name, arguments: '' } },
              ],
            },
            finish_reason: null,
          },
        ],
      }),
    )
    events.push(
      sse({
        ...base,
        choices: [
          {
            index: 0,
            delta: { tool_calls: [{ index: 0, function: { arguments: '{"city":"Paris"}' } }] },
            finish_reason: null,
          },
        ],
      }),
    )
  } else {
    for (const w of a.text.split(/(?<= )/))
      events.push(sse({ ...base, choices: [{ index: 0, delta: { content: w }, finish_reason: null }] }))
  }
  events.push(sse({ ...base, choices: [{ index: 0, delta: {}, finish_reason: a.tool ? 'tool_calls' : 'stop' }] }))
  if (body.stream_options?.include_usage)
    events.push(
      sse({
        ...base,
        choices: [],
        usage: { ...a.usage, total_tokens: a.usage.prompt_tokens + a.usage.completion_tokens },
      }),
    )
  events.push(sse('[DONE]'))
  return streamEvents(res, events, b, up)
}

function handleAnthropic(body: any, res: ServerResponse, b: MockBehaviour, up: MockUpstream) {
  const prompt = lastUserText(body.messages ?? [])
  const tool = body.tools?.[0] && !hasToolResult(body.messages) ? body.tools[0] : undefined
  if (tool && typeof tool.name !== 'string')
    return send(res, 400, {
      type: 'error',
      error: { type: 'invalid_request_error', message: 'tools.0.custom.name: Field required' },
    })
  const text = hasToolResult(body.messages)
    ? `tool said: ${JSON.stringify(body.messages.at(-1).content)}`
    : mockText(prompt)
  const usage = {
    input_tokens: 10 + words(prompt),
    output_tokens: tool ? 12 : words(text),
    cache_read_input_tokens: 0,
    cache_creation_input_tokens: 0,
  }
  const model = `${body.model}-20250101`
  if (!body.stream) {
    const content = tool
      ? [{ type: 'tool_use', id: 'toolu_1', name: tool.name, input: { city: 'Paris' } }]
      : [{ type: 'text', text }]
    return send(res, 200, {
      id: 'msg_mock',
      type: 'message',
      role: 'assistant',
      model,
      content,
      stop_reason: tool ? 'tool_use' : 'end_turn',
      stop_sequence: null,
      usage,
    })
  }
  const events = [
    sse(
      {
        type: 'message_start',
        message: {
          id: 'msg_mock',
          type: 'message',
          role: 'assistant',
          model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { ...usage, output_tokens: 1 },
        },
      },
      'message_start',
    ),
  ]
  if (tool) {
    events.push(
      sse(
        {
          type: 'content_block_start',
          index: 0,
          content_block: { type: 'tool_use', id: 'toolu_1', name: tool.name, input: {} },
        },
        'content_block_start',
      ),
    )
    events.push(
      sse(
        { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: '{"city":' } },
        'content_block_delta',
      ),
    )
    events.push(
      sse(
        { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: '"Paris"}' } },
        'content_block_delta',
      ),
    )
  } else {
    events.push(
      sse({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }, 'content_block_start'),
    )
    for (const w of text.split(/(?<= )/))
      events.push(
        sse({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: w } }, 'content_block_delta'),
      )
  }
  events.push(sse({ type: 'content_block_stop', index: 0 }, 'content_block_stop'))
  events.push(
    sse(
      {
        type: 'message_delta',
        delta: { stop_reason: tool ? 'tool_use' : 'end_turn', stop_sequence: null },
        usage: { output_tokens: usage.output_tokens },
      },
      'message_delta',
    ),
  )
  events.push(sse({ type: 'message_stop' }, 'message_stop'))
  return streamEvents(res, events, b, up)
}

// counts and vectors no local estimate or demo would give, so a test can tell who answered
export const MOCK_GEMINI_COUNT = 4343
export const MOCK_GEMINI_VECTOR = [0.3, 0.4]

function handleGemini(path: string, body: any, res: ServerResponse, b: MockBehaviour, up: MockUpstream) {
  const m = /\/v1(?:beta)?\/models\/([^:]+):(\w+)/.exec(path)
  const model = decodeURIComponent(m?.[1] ?? 'gemini')
  if (m?.[2] === 'countTokens') return send(res, 200, { totalTokens: MOCK_GEMINI_COUNT })
  if (m?.[2] === 'embedContent') return send(res, 200, { embedding: { values: MOCK_GEMINI_VECTOR } })
  if (m?.[2] === 'batchEmbedContents')
    return send(res, 200, { embeddings: (body.requests ?? []).map(() => ({ values: MOCK_GEMINI_VECTOR })) })
  const contents: any[] = body.contents ?? []
  const last = contents.at(-1)
  const prompt = (last?.parts ?? []).map((p: any) => p.text ?? '').join(' ')
  // function declarations offered and no result yet: a call of the first; a result: echoed
  const result = (last?.parts ?? []).find((p: any) => p.functionResponse)?.functionResponse
  const fn = !result ? body.tools?.[0]?.functionDeclarations?.[0] : undefined
  if (fn && typeof fn.name !== 'string')
    return send(res, 400, {
      error: {
        code: 400,
        message: '* GenerateContentRequest.tools[0].function_declarations[0].name: Name cannot be empty.',
        status: 'INVALID_ARGUMENT',
      },
    })
  if (fn) return geminiCall(fn.name, model, m?.[2] === 'generateContent', res, b, up)
  const text = result ? `tool said: ${JSON.stringify(result.response)}` : mockText(prompt)
  const usageMetadata = {
    promptTokenCount: 10 + words(prompt),
    candidatesTokenCount: words(text),
    totalTokenCount: 10 + words(prompt) + words(text),
  }
  if (m?.[2] === 'generateContent')
    return send(res, 200, {
      candidates: [{ content: { role: 'model', parts: [{ text }] }, finishReason: 'STOP', index: 0 }],
      usageMetadata,
      modelVersion: model,
      responseId: 'gem-mock',
    })
  const pieces = text.split(/(?<= )/)
  const events = pieces.map((t, i) =>
    sse({
      candidates: [
        {
          content: { role: 'model', parts: [{ text: t }] },
          ...(i === pieces.length - 1 ? { finishReason: 'STOP' } : {}),
          index: 0,
        },
      ],
      ...(i === pieces.length - 1 ? { usageMetadata } : {}),
      modelVersion: model,
      responseId: 'gem-mock',
    }),
  )
  return streamEvents(res, events, b, up)
}

function geminiCall(
  name: string,
  model: string,
  whole: boolean,
  res: ServerResponse,
  b: MockBehaviour,
  up: MockUpstream,
) {
  const usageMetadata = { promptTokenCount: 15, candidatesTokenCount: 12, totalTokenCount: 27 }
  const part = { functionCall: { name, args: { city: 'Paris' } } }
  const answer = {
    candidates: [{ content: { role: 'model', parts: [part] }, finishReason: 'STOP', index: 0 }],
    usageMetadata,
    modelVersion: model,
    responseId: 'gem-mock',
  }
  if (whole) return send(res, 200, answer)
  return streamEvents(res, [sse(answer)], b, up)
}

export async function startMockUpstream(
  behaviour: MockBehaviour = {},
  opts: { record?: boolean } = {},
): Promise<MockUpstream> {
  const record = opts.record ?? true
  let server: Server
  const up: MockUpstream = {
    url: '',
    received: [],
    behaviour,
    aborted: 0,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections()
        server.close(() => r())
      }),
  }
  // the Responses API keeps what it answered, per mock
  const responses = createResponsesMock({
    send,
    stream: (res, events) => streamEvents(res, events, up.behaviour, up),
    mockText,
  })
  server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', async () => {
      const raw = Buffer.concat(chunks).toString('utf8')
      const path = req.url ?? '/'
      let body: any = {}
      try {
        body = raw ? JSON.parse(raw) : {}
      } catch {
        return send(res, 400, { error: { message: 'mock: bad json' } })
      }
      if (record) up.received.push({ path, headers: req.headers, body, raw })
      const b = up.behaviour
      if (b.hang) {
        res.on('close', () => up.aborted++)
        return
      }
      if (b.delayMs) {
        await new Promise((r) => setTimeout(r, b.delayMs))
        if (res.destroyed) {
          up.aborted++
          return
        }
      }
      if (b.status && b.status >= 400)
        return send(res, b.status, { error: { type: 'mock_error', message: `mock failure ${b.status}` } })
      if (b.okBody) {
        res.writeHead(200, { 'content-type': b.okBody.contentType })
        return res.end(b.okBody.body)
      }
      if (path.startsWith('/v1/chat/completions')) return handleOpenAI(body, res, b, up)
      if (path.startsWith('/v1/responses')) return responses(req.method ?? 'POST', path, body, res)
      // a count the local estimate would not give, so a test can tell which answered
      if (path.startsWith('/v1/messages/count_tokens')) return send(res, 200, { input_tokens: 4242 })
      if (path.startsWith('/v1/messages')) return handleAnthropic(body, res, b, up)
      if (path.startsWith('/v1beta/models/') || /^\/v1\/models\/[^/]+:/.test(path))
        return handleGemini(path, body, res, b, up)
      if (path.startsWith('/v1/embeddings'))
        return send(res, 200, {
          object: 'list',
          data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2] }],
          model: body.model,
          usage: { prompt_tokens: 3, total_tokens: 3 },
        })
      send(res, 404, { error: { message: `mock: no route ${path}` } })
    })
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  up.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return up
}
