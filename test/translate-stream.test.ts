// Stream translation unit by unit: vendor events in, client events out at once (issue 16 item 1).
// Parallel tool calls, cache usage terms, Gemini's whole function calls and Responses' layout.
import { describe, expect, it } from 'vitest'
import { decoders, encoders } from '../core/translate/stream.ts'
import type { ProtocolName } from '../core/types.ts'
import { sseEvents } from './helpers/core-harness.ts'

const sse = (data: unknown, event?: string) =>
  (event ? `event: ${event}\n` : '') + `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`

/** Each vendor event's data through a decoder and an encoder; the output per input event. */
function translate(
  from: ProtocolName,
  to: ProtocolName,
  events: string[],
  opts: { includeUsage?: boolean; id?: string } = {},
): string[] {
  const decode = decoders[from]()
  const encode = encoders[to]({ from, includeUsage: opts.includeUsage ?? false, id: opts.id })
  return events.map((text) =>
    sseEvents(text)
      .map((e) => decode(e.data).map(encode).join(''))
      .join(''),
  )
}

const openaiChunks = (chunks: unknown[]) =>
  chunks.map((c) => sse({ id: 'chatcmpl-1', object: 'chat.completion.chunk', model: 'gpt-4o-mini', ...(c as object) }))

describe('OpenAI stream into Anthropic events', () => {
  const chunks = openaiChunks([
    { choices: [{ index: 0, delta: { role: 'assistant', content: '' } }] },
    {
      choices: [
        {
          index: 0,
          delta: { tool_calls: [{ index: 0, id: 'c1', type: 'function', function: { name: 'a', arguments: '' } }] },
        },
      ],
    },
    { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '{"x":' } }] } }] },
    { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '1}' } }] } }] },
    {
      choices: [
        {
          index: 0,
          delta: { tool_calls: [{ index: 1, id: 'c2', type: 'function', function: { name: 'b', arguments: '{}' } }] },
        },
      ],
    },
    { choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] },
    { choices: [], usage: { prompt_tokens: 100, completion_tokens: 9, prompt_tokens_details: { cached_tokens: 60 } } },
  ]).concat(sse('[DONE]'))

  it('emits each event as its chunk arrives: two tool_use blocks, input_json_delta, usage in Anthropic terms', () => {
    const out = translate('openai', 'anthropic', chunks)
    // nothing held back: every chunk with content produced its events at once
    expect(out.slice(1, 5).every((s) => s.length > 0)).toBe(true)
    const events = sseEvents(out.join('')).map((e) => JSON.parse(e.data))
    expect(events.map((e) => e.type)).toEqual([
      'message_start',
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'content_block_start',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ])
    expect(events[1].content_block).toEqual({ type: 'tool_use', id: 'c1', name: 'a', input: {} })
    expect(events[2].delta).toEqual({ type: 'input_json_delta', partial_json: '{"x":' })
    expect(events[5]).toMatchObject({ index: 1, content_block: { id: 'c2', name: 'b' } })
    expect(events[8].delta.stop_reason).toBe('tool_use')
    // OpenAI counts cached input inside prompt_tokens; Anthropic apart
    expect(events[8].usage).toEqual({
      input_tokens: 40,
      output_tokens: 9,
      cache_read_input_tokens: 60,
      cache_creation_input_tokens: 0,
    })
  })

  it('into Responses events: function calls at their output indexes, the completed response with usage', () => {
    const events = sseEvents(translate('openai', 'responses', chunks, { id: 'resp_abc' }).join('')).map((e) =>
      JSON.parse(e.data),
    )
    expect(events[0]).toMatchObject({ type: 'response.created', response: { id: 'resp_abc', status: 'in_progress' } })
    const added = events.filter((e) => e.type === 'response.output_item.added')
    expect(added.map((e) => [e.output_index, e.item.call_id])).toEqual([
      [0, 'c1'],
      [1, 'c2'],
    ])
    const done = events.at(-1)
    expect(done.type).toBe('response.completed')
    expect(done.response.output.map((i: any) => [i.type, i.call_id, i.arguments])).toEqual([
      ['function_call', 'c1', '{"x":1}'],
      ['function_call', 'c2', '{}'],
    ])
    expect(done.response.usage).toMatchObject({
      input_tokens: 100,
      output_tokens: 9,
      input_tokens_details: { cached_tokens: 60 },
    })
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i))
  })

  it('into Gemini chunks: a function call goes out whole, once its arguments are complete', () => {
    const out = translate('openai', 'gemini', chunks)
    const all = sseEvents(out.join('')).map((e) => JSON.parse(e.data))
    const calls = all.flatMap((c) => c.candidates[0].content.parts).filter((p: any) => p.functionCall)
    expect(calls).toEqual([{ functionCall: { name: 'a', args: { x: 1 } } }, { functionCall: { name: 'b', args: {} } }])
    expect(all.at(-1).candidates[0].finishReason).toBe('STOP')
    expect(all.at(-1).usageMetadata).toEqual({
      promptTokenCount: 100,
      candidatesTokenCount: 9,
      totalTokenCount: 109,
      cachedContentTokenCount: 60,
    })
  })
})

describe('Anthropic stream into OpenAI chunks', () => {
  const events = [
    sse(
      {
        type: 'message_start',
        message: {
          id: 'msg_1',
          model: 'claude-haiku-4-5',
          usage: { input_tokens: 10, output_tokens: 1, cache_read_input_tokens: 30, cache_creation_input_tokens: 5 },
        },
      },
      'message_start',
    ),
    sse(
      { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '' } },
      'content_block_start',
    ),
    sse(
      { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'hmm' } },
      'content_block_delta',
    ),
    sse({ type: 'content_block_start', index: 1, content_block: { type: 'text', text: '' } }, 'content_block_start'),
    sse({ type: 'content_block_delta', index: 1, delta: { type: 'text_delta', text: 'Hi' } }, 'content_block_delta'),
    sse({ type: 'message_delta', delta: { stop_reason: 'max_tokens' }, usage: { output_tokens: 7 } }, 'message_delta'),
    sse({ type: 'message_stop' }, 'message_stop'),
  ]

  it('text only (thinking is not shown), stop reason, usage chunk in OpenAI terms when asked', () => {
    const chunks = sseEvents(translate('anthropic', 'openai', events, { includeUsage: true }).join('')).map(
      (e) => e.data,
    )
    expect(chunks.at(-1)).toBe('[DONE]')
    const json = chunks.slice(0, -1).map((c) => JSON.parse(c))
    expect(json.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe('Hi')
    expect(json.find((c) => c.choices[0]?.finish_reason).choices[0].finish_reason).toBe('length')
    expect(json.at(-1).usage).toEqual({
      prompt_tokens: 45,
      completion_tokens: 7,
      total_tokens: 52,
      prompt_tokens_details: { cached_tokens: 30 },
    })
  })
})
