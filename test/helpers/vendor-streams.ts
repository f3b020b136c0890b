// A vendor's SSE answer as each protocol streams it, for the mock upstream of the large-stream
// tests (test/large-*.test.ts): built as an array of events joined once (a 5 MB answer in
// 20-character deltas is 250,000 events).

export type StreamProtocol = 'openai' | 'anthropic' | 'gemini'

/** one SSE event: `data:` the JSON of `d`, with an `event:` line when given */
export const sse = (d: unknown, event?: string) => `${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(d)}\n\n`

/** the vendor's stream of `t`, in deltas of `size` characters, with its usage at the end */
export function vendorStream(p: StreamProtocol, t: string, size = 1000): string {
  const out: string[] = []
  if (p === 'openai') {
    const c = (choices: unknown[], extra = {}) =>
      sse({ id: 'chatcmpl-v', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices, ...extra })
    out.push(c([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]))
    for (let i = 0; i < t.length; i += size)
      out.push(c([{ index: 0, delta: { content: t.slice(i, i + size) }, finish_reason: null }]))
    out.push(c([{ index: 0, delta: {}, finish_reason: 'stop' }]))
    out.push(c([], { usage: { prompt_tokens: 10, completion_tokens: 1000, total_tokens: 1010 } }), 'data: [DONE]\n\n')
    return out.join('')
  }
  if (p === 'anthropic') {
    const e = (d: Record<string, unknown>) => sse(d, String(d.type))
    const message = { id: 'msg_v', type: 'message', role: 'assistant', model: 'claude-3-5-haiku-latest', content: [] }
    const usage = { input_tokens: 10, output_tokens: 1 }
    out.push(e({ type: 'message_start', message: { ...message, stop_reason: null, stop_sequence: null, usage } }))
    out.push(e({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }))
    for (let i = 0; i < t.length; i += size)
      out.push(e({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: t.slice(i, i + size) } }))
    out.push(e({ type: 'content_block_stop', index: 0 }))
    const end = { stop_reason: 'end_turn', stop_sequence: null }
    out.push(e({ type: 'message_delta', delta: end, usage: { output_tokens: 1000 } }), e({ type: 'message_stop' }))
    return out.join('')
  }
  const modelVersion = 'gemini-2.5-pro'
  const g = (parts: unknown[]) => sse({ candidates: [{ index: 0, content: { role: 'model', parts } }], modelVersion })
  for (let i = 0; i < t.length; i += size) out.push(g([{ text: t.slice(i, i + size) }]))
  const usageMetadata = { promptTokenCount: 10, candidatesTokenCount: 1000, totalTokenCount: 1010 }
  out.push(
    sse({
      candidates: [{ index: 0, content: { role: 'model', parts: [{ text: '' }] }, finishReason: 'STOP' }],
      usageMetadata,
      modelVersion,
    }),
  )
  return out.join('')
}
