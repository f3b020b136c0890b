// The mock upstream's OpenAI Responses API: answers (JSON and streamed, with a reasoning item
// carrying encrypted_content, a function call when a function tool is offered), and the stored
// state a client reads back (retrieve, delete, cancel, input items), kept per mock.
import type { ServerResponse } from 'node:http'

/** a count no local estimate would give, so a test can tell which answered */
export const MOCK_RESPONSES_INPUT_TOKENS = 4545
/** the opaque reasoning state the mock returns; a client must get it back byte for byte */
export const MOCK_ENCRYPTED = 'gAAAAABo-mock+encrypted/reasoning==' + 'Zm9v'.repeat(200)

export interface ResponsesHelpers {
  send(res: ServerResponse, status: number, body: unknown): void
  stream(res: ServerResponse, events: string[]): Promise<void> | void
  mockText(prompt: string): string
}

const words = (s: string) => s.split(/\s+/).filter(Boolean).length
const sse = (type: string, data: Record<string, unknown>) =>
  `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`

function itemsOf(body: any): any[] {
  return typeof body.input === 'string'
    ? [{ type: 'message', role: 'user', content: body.input }]
    : Array.isArray(body.input)
      ? body.input
      : []
}

function lastUserText(items: any[]): string {
  for (let i = items.length - 1; i >= 0; i--) {
    const it = items[i]
    if ((it.type ?? 'message') !== 'message' || it.role !== 'user') continue
    if (typeof it.content === 'string') return it.content
    return (it.content ?? [])
      .filter((p: any) => typeof p.text === 'string')
      .map((p: any) => p.text)
      .join(' ')
  }
  return ''
}

/** What the mock answers: the last user text echoed, a call of the first function tool, or the tool's result echoed. */
function answer(body: any, n: number, h: ResponsesHelpers) {
  const items = itemsOf(body)
  const last = items.at(-1)
  const prompt = lastUserText(items)
  const tool =
    last?.type !== 'function_call_output' ? (body.tools ?? []).find((t: any) => t.type === 'function') : undefined
  const text =
    last?.type === 'function_call_output'
      ? `tool said: ${typeof last.output === 'string' ? last.output : JSON.stringify(last.output)}`
      : h.mockText(prompt)
  const reasoning = { id: `rs_mock_${n}`, type: 'reasoning', summary: [], encrypted_content: MOCK_ENCRYPTED }
  const output: any[] = [reasoning]
  if (tool)
    output.push({
      id: `fc_mock_${n}`,
      type: 'function_call',
      status: 'completed',
      call_id: `call_mock_${n}`,
      name: tool.name,
      arguments: '{"city":"Paris"}',
    })
  else
    output.push({
      id: `msg_mock_${n}`,
      type: 'message',
      status: 'completed',
      role: 'assistant',
      content: [{ type: 'output_text', text, annotations: [], logprobs: [] }],
    })
  const outputTokens = (tool ? 12 : words(text)) + 7
  const cut = typeof body.max_output_tokens === 'number' && outputTokens > body.max_output_tokens
  const usage = {
    input_tokens: 20 + words(prompt),
    input_tokens_details: { cached_tokens: 8 },
    output_tokens: outputTokens,
    output_tokens_details: { reasoning_tokens: 7 },
    total_tokens: 20 + words(prompt) + outputTokens,
  }
  return {
    id: `resp_mock_${n}`,
    object: 'response',
    created_at: 1_750_000_000 + n,
    status: cut ? 'incomplete' : 'completed',
    error: null,
    incomplete_details: cut ? { reason: 'max_output_tokens' } : null,
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    model: `${body.model}-2025-08-07`,
    output,
    parallel_tool_calls: true,
    previous_response_id: body.previous_response_id ?? null,
    reasoning: { effort: 'medium', summary: null },
    store: body.store !== false,
    temperature: 1,
    text: body.text ?? { format: { type: 'text' } },
    tool_choice: body.tool_choice ?? 'auto',
    tools: body.tools ?? [],
    top_p: 1,
    truncation: 'disabled',
    usage,
    user: null,
    metadata: body.metadata ?? {},
    x_mock_unknown_field: { kept: true },
  }
}

function streamOf(r: any): string[] {
  let seq = 0
  const ev = (type: string, data: Record<string, unknown>) => sse(type, { ...data, sequence_number: seq++ })
  const started = { ...r, status: 'in_progress', output: [], usage: null }
  const events = [ev('response.created', { response: started }), ev('response.in_progress', { response: started })]
  r.output.forEach((item: any, output_index: number) => {
    if (item.type === 'message') {
      events.push(
        ev('response.output_item.added', { output_index, item: { ...item, status: 'in_progress', content: [] } }),
      )
      events.push(
        ev('response.content_part.added', {
          item_id: item.id,
          output_index,
          content_index: 0,
          part: { type: 'output_text', text: '', annotations: [], logprobs: [] },
        }),
      )
      for (const w of item.content[0].text.split(/(?<= )/))
        events.push(
          ev('response.output_text.delta', {
            item_id: item.id,
            output_index,
            content_index: 0,
            delta: w,
            logprobs: [],
          }),
        )
      events.push(
        ev('response.output_text.done', {
          item_id: item.id,
          output_index,
          content_index: 0,
          text: item.content[0].text,
          logprobs: [],
        }),
      )
      events.push(
        ev('response.content_part.done', { item_id: item.id, output_index, content_index: 0, part: item.content[0] }),
      )
    } else if (item.type === 'function_call') {
      events.push(
        ev('response.output_item.added', { output_index, item: { ...item, status: 'in_progress', arguments: '' } }),
      )
      events.push(ev('response.function_call_arguments.delta', { item_id: item.id, output_index, delta: '{"city":' }))
      events.push(ev('response.function_call_arguments.delta', { item_id: item.id, output_index, delta: '"Paris"}' }))
      events.push(
        ev('response.function_call_arguments.done', { item_id: item.id, output_index, arguments: item.arguments }),
      )
    } else {
      events.push(ev('response.output_item.added', { output_index, item: { ...item, encrypted_content: undefined } }))
    }
    events.push(ev('response.output_item.done', { output_index, item }))
  })
  events.push(ev(r.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response: r }))
  return events
}

export function createResponsesMock(h: ResponsesHelpers) {
  let n = 0
  const stored = new Map<string, { response: any; input: any[] }>()
  return function handle(method: string, path: string, body: any, res: ServerResponse): Promise<void> | void {
    const [route = ''] = path.split('?')
    if (method === 'POST' && route === '/v1/responses/input_tokens')
      return h.send(res, 200, { object: 'response.input_tokens', input_tokens: MOCK_RESPONSES_INPUT_TOKENS })
    if (method === 'POST' && route === '/v1/responses') {
      if (body.previous_response_id !== undefined && !stored.has(body.previous_response_id)) {
        return h.send(res, 400, {
          error: {
            message: `Previous response with id '${body.previous_response_id}' not found.`,
            type: 'invalid_request_error',
            param: 'previous_response_id',
            code: 'previous_response_not_found',
          },
        })
      }
      const r = answer(body, ++n, h)
      if (body.store !== false) stored.set(r.id, { response: r, input: itemsOf(body) })
      return body.stream ? h.stream(res, streamOf(r)) : h.send(res, 200, r)
    }
    const m = /^\/v1\/responses\/([^/]+)(\/cancel|\/input_items)?$/.exec(route)
    const entry = m ? stored.get(decodeURIComponent(m[1]!)) : undefined
    if (!m || !entry)
      return h.send(res, 404, {
        error: {
          message: `No response found with id '${m?.[1]}'.`,
          type: 'invalid_request_error',
          param: null,
          code: null,
        },
      })
    if (method === 'GET' && !m[2]) return h.send(res, 200, entry.response)
    if (method === 'DELETE' && !m[2]) {
      stored.delete(entry.response.id)
      return h.send(res, 200, { id: entry.response.id, object: 'response.deleted', deleted: true })
    }
    if (method === 'POST' && m[2] === '/cancel') return h.send(res, 200, { ...entry.response, status: 'cancelled' })
    if (method === 'GET' && m[2] === '/input_items') {
      const data = entry.input.map((it, i) => ({ id: `item_${i}`, ...it }))
      return h.send(res, 200, {
        object: 'list',
        data,
        first_id: data[0]?.id ?? null,
        last_id: data.at(-1)?.id ?? null,
        has_more: false,
      })
    }
    h.send(res, 405, {
      error: { message: 'mock: method not allowed', type: 'invalid_request_error', param: null, code: null },
    })
  }
}
