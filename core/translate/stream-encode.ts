// Neutral stream events into the client's SSE events (decoders: stream.ts). Each encoder is
// created per stream with the vendor's protocol, whose usage terms it converts to the client's.
import { protocols } from '../protocols/index.ts'
import { PIECE_CHARS, jsonTextPieces } from '../json-sliced.ts'
import { MAX_JSON_DEPTH, SLICED_PARSE_CHARS, parseJsonSliced, sse, usageFor } from '../protocols/shared.ts'
import type { Slicer } from '../slicer.ts'
import type { CanonicalAnswer, ProtocolName, ToolCall, Usage } from '../types.ts'
import type { Encoder, StreamEvent } from './stream.ts'

export interface EncoderOptions {
  /** the vendor's protocol: the usage it reports is in its terms */
  from: ProtocolName
  /** OpenAI clients: the usage chunk only for clients that asked for it */
  includeUsage: boolean
  /** the id the client sees (Responses: the proxy's own, kept for previous_response_id) */
  id?: string
}

const now = () => Math.floor(Date.now() / 1000)
const TO_ANTHROPIC_STOP = {
  stop: 'end_turn',
  length: 'max_tokens',
  tool_calls: 'tool_use',
  content_filter: 'refusal',
} as const
const TO_GEMINI_STOP = { stop: 'STOP', length: 'MAX_TOKENS', tool_calls: 'STOP', content_filter: 'SAFETY' } as const

function openaiEncoder(o: EncoderOptions): Encoder {
  let base: Record<string, unknown> = {}
  // every chunk starts with the same id, object, created and model: written once per stream, the
  // same text JSON.stringify({ ...base, choices }) gives
  let head = '{'
  const chunk = (delta: unknown, finish: string | null = null) =>
    `data: ${head}"choices":[{"index":0,"delta":${JSON.stringify(delta)},"logprobs":null,"finish_reason":${JSON.stringify(finish)}}]}\n\n`
  const encode: Encoder = (e) => {
    switch (e.t) {
      case 'start': {
        base = { id: o.id ?? e.id, object: 'chat.completion.chunk', created: now(), model: e.model }
        const json = JSON.stringify(base)
        head = json === '{}' ? '{' : `${json.slice(0, -1)},`
        return chunk({ role: 'assistant', content: '' })
      }
      case 'text':
        return chunk({ content: e.text })
      case 'tool':
        return chunk({
          tool_calls: [{ index: e.index, id: e.id, type: 'function', function: { name: e.name, arguments: '' } }],
        })
      case 'args':
        return chunk({ tool_calls: [{ index: e.index, function: { arguments: e.json } }] })
      case 'finish': {
        const u = usageFor(e.usage, o.from, 'openai')
        const usage = {
          prompt_tokens: u.inputTokens,
          completion_tokens: u.outputTokens,
          total_tokens: u.inputTokens + u.outputTokens,
          prompt_tokens_details: { cached_tokens: u.cacheReadTokens },
        }
        return chunk({}, e.reason) + (o.includeUsage ? sse({ ...base, choices: [], usage }) : '') + sse('[DONE]')
      }
    }
  }
  // text or arguments of megabytes in one event (a Gemini call comes whole): chunk()'s text, its
  // string escaped a run at a time
  encode.pieces = function* (e) {
    const delta =
      e.t === 'args' && e.json.length > PIECE_CHARS
        ? { tool_calls: [{ index: e.index, function: { arguments: e.json } }] }
        : e.t === 'text' && e.text.length > PIECE_CHARS
          ? { content: e.text }
          : undefined
    if (!delta) return yield encode(e)
    yield `data: ${head}"choices":[{"index":0,"delta":`
    yield* jsonTextPieces(delta, PIECE_CHARS)
    yield ',"logprobs":null,"finish_reason":null}]}\n\n'
  }
  return encode
}

function anthropicEncoder(o: EncoderOptions): Encoder {
  let next = 0
  let open: { index: number; kind: 'text' | 'tool' } | undefined
  const toolBlock = new Map<number, number>()
  const ev = (type: string, data: Record<string, unknown>) => sse({ type, ...data }, type)
  const close = () => {
    if (!open) return ''
    const out = ev('content_block_stop', { index: open.index })
    open = undefined
    return out
  }
  const wire = (u: Usage) => {
    const a = usageFor(u, o.from, 'anthropic')
    return {
      input_tokens: a.inputTokens,
      output_tokens: a.outputTokens,
      cache_read_input_tokens: a.cacheReadTokens,
      cache_creation_input_tokens: a.cacheWriteTokens,
    }
  }
  return (e) => {
    switch (e.t) {
      case 'start':
        return ev('message_start', {
          message: {
            id: o.id ?? e.id,
            type: 'message',
            role: 'assistant',
            model: e.model,
            content: [],
            stop_reason: null,
            stop_sequence: null,
            usage: wire(e.usage ?? { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 }),
          },
        })
      case 'text': {
        let out = ''
        if (open?.kind !== 'text') {
          out += close()
          open = { index: next++, kind: 'text' }
          out += ev('content_block_start', { index: open.index, content_block: { type: 'text', text: '' } })
        }
        return out + ev('content_block_delta', { index: open.index, delta: { type: 'text_delta', text: e.text } })
      }
      case 'tool': {
        const out = close()
        open = { index: next++, kind: 'tool' }
        toolBlock.set(e.index, open.index)
        return (
          out +
          ev('content_block_start', {
            index: open.index,
            content_block: { type: 'tool_use', id: e.id, name: e.name, input: {} },
          })
        )
      }
      case 'args': {
        const index = toolBlock.get(e.index)
        return index === undefined
          ? ''
          : ev('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: e.json } })
      }
      case 'finish':
        return (
          close() +
          ev('message_delta', {
            delta: { stop_reason: TO_ANTHROPIC_STOP[e.reason], stop_sequence: null },
            usage: wire(e.usage),
          }) +
          ev('message_stop', {})
        )
    }
  }
}

function geminiEncoder(o: EncoderOptions): Encoder {
  let head: Record<string, unknown> = {}
  // Gemini sends a function call whole: its arguments are collected until the call is complete;
  // `value`: arguments of megabytes parsed in slices (prepare) before the event that sends them
  const calls: Array<{ name: string; args: string; value?: unknown }> = []
  const chunkValue = (parts: unknown[], extra: Record<string, unknown> = {}, top: Record<string, unknown> = {}) => ({
    candidates: [{ content: { role: 'model', parts }, index: 0, ...extra }],
    ...top,
    ...head,
  })
  const chunk = (parts: unknown[], extra?: Record<string, unknown>, top?: Record<string, unknown>) =>
    sse(chunkValue(parts, extra, top))
  const takeCalls = () => {
    const parts = calls.map((c) => ({
      functionCall: { name: c.name, args: 'value' in c ? c.value : argsValue(c.args) },
    }))
    calls.length = 0
    return parts
  }
  const flushCalls = () => (calls.length ? chunk(takeCalls()) : '')
  const encode: Encoder = (e) => {
    switch (e.t) {
      case 'start':
        head = { modelVersion: e.model, responseId: o.id ?? e.id }
        return ''
      case 'text':
        return flushCalls() + chunk([{ text: e.text }])
      case 'tool':
        calls[e.index] = { name: e.name, args: '' }
        return ''
      case 'args':
        if (calls[e.index]) calls[e.index]!.args += e.json
        return ''
      case 'finish': {
        const u = usageFor(e.usage, o.from, 'gemini')
        const usageMetadata = {
          promptTokenCount: u.inputTokens,
          candidatesTokenCount: u.outputTokens,
          totalTokenCount: u.inputTokens + u.outputTokens,
          ...(u.cacheReadTokens ? { cachedContentTokenCount: u.cacheReadTokens } : {}),
        }
        return flushCalls() + chunk([], { finishReason: TO_GEMINI_STOP[e.reason] }, { usageMetadata })
      }
    }
  }
  // the arguments held, in characters: over SLICED_PARSE_CHARS the translator reads the next
  // events by eventSliced, which prepares and encodes them in pieces
  encode.held = () => {
    let n = 0
    for (const c of calls) n += c?.args.length ?? 0
    return n
  }
  encode.prepare = async (e, slicer) => {
    if (e.t !== 'text' && e.t !== 'finish') return
    for (const c of calls)
      if (c && !('value' in c) && c.args.length > SLICED_PARSE_CHARS) c.value = await argsValueSliced(c.args, slicer)
  }
  // the calls' chunk as JSON made a piece at a time (arguments of megabytes), then the event's own
  encode.pieces = function* (e) {
    if ((e.t === 'text' || e.t === 'finish') && calls.length) {
      yield 'data: '
      yield* jsonTextPieces(chunkValue(takeCalls()), PIECE_CHARS)
      yield '\n\n'
    }
    yield encode(e)
  }
  return encode
}

/** a call's collected arguments as the value Gemini sends: {} when there are none or they are not JSON */
function argsValue(text: string): unknown {
  try {
    return text ? JSON.parse(text) : {}
  } catch {
    return {}
  }
}

/** argsValue for arguments of megabytes, parsed in slices (the same value) */
async function argsValueSliced(text: string, slicer: Slicer): Promise<unknown> {
  try {
    const r = await parseJsonSliced(text, MAX_JSON_DEPTH, slicer)
    // nested deeper than a request may be: in one go, as argsValue does
    return r.deep ? JSON.parse(text) : r.value
  } catch {
    return {}
  }
}

function responsesEncoder(o: EncoderOptions): Encoder {
  let seq = 0
  let model = ''
  let text = ''
  let textOpen = false
  const calls: ToolCall[] = []
  const key = (o.id ?? '').replace(/^resp_/, '')
  const msgId = `msg_${key}`
  const ev = (type: string, data: Record<string, unknown>) => sse({ type, ...data, sequence_number: seq++ }, type)
  // an event that carries the whole text or arguments again: sse()'s text, its JSON a piece at a time
  const whole = function* (type: string, data: Record<string, unknown>): Generator<string, void, undefined> {
    yield `event: ${type}\ndata: `
    yield* jsonTextPieces({ type, ...data, sequence_number: seq++ }, PIECE_CHARS)
    yield '\n\n'
  }
  const join = (g: Generator<string, void, undefined>) => {
    let s = ''
    for (const piece of g) s += piece
    return s
  }
  // output indexes as the whole answer lays them out (protocols.responses.render): message first
  const callIndex = (i: number) => i + (textOpen || text ? 1 : 0)
  const closeText = function* (): Generator<string, void, undefined> {
    if (!textOpen) return
    textOpen = false
    const part = { type: 'output_text', text, annotations: [], logprobs: [] }
    yield* whole('response.output_text.done', { item_id: msgId, output_index: 0, content_index: 0, text, logprobs: [] })
    yield* whole('response.content_part.done', { item_id: msgId, output_index: 0, content_index: 0, part })
    yield* whole('response.output_item.done', {
      output_index: 0,
      item: { id: msgId, type: 'message', status: 'completed', role: 'assistant', content: [part] },
    })
  }
  const finish = function* (e: Extract<StreamEvent, { t: 'finish' }>): Generator<string, void, undefined> {
    yield* closeText()
    for (let i = 0; i < calls.length; i++) {
      const c = calls[i]
      // forEach's way, as before: a hole (a call index never seen) has no events
      if (!c) continue
      yield* whole('response.function_call_arguments.done', {
        item_id: `fc_${key}_${i}`,
        output_index: callIndex(i),
        name: c.name,
        arguments: c.arguments,
      })
      yield* whole('response.output_item.done', {
        output_index: callIndex(i),
        item: {
          id: `fc_${key}_${i}`,
          type: 'function_call',
          status: 'completed',
          call_id: c.id,
          name: c.name,
          arguments: c.arguments,
        },
      })
    }
    const final = body(e.reason, e.usage)
    yield* whole(final.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response: final })
  }
  const body = (reason: CanonicalAnswer['stopReason'], usage: Usage) =>
    protocols.responses.render({
      id: o.id ?? '',
      model,
      text,
      toolCalls: calls,
      stopReason: reason,
      usage: usageFor(usage, o.from, 'responses'),
    }) as Record<string, any>
  const encode: Encoder = (e) => {
    switch (e.t) {
      case 'start': {
        model = e.model
        const started = {
          ...body('stop', { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 }),
          status: 'in_progress',
          usage: null,
        }
        return ev('response.created', { response: started }) + ev('response.in_progress', { response: started })
      }
      case 'text': {
        let out = ''
        if (!textOpen && !text && calls.length === 0) {
          textOpen = true
          out += ev('response.output_item.added', {
            output_index: 0,
            item: { id: msgId, type: 'message', status: 'in_progress', role: 'assistant', content: [] },
          })
          out += ev('response.content_part.added', {
            item_id: msgId,
            output_index: 0,
            content_index: 0,
            part: { type: 'output_text', text: '', annotations: [], logprobs: [] },
          })
        }
        // text after a tool call has no item left to go to in this layout; it still reaches the final response
        text += e.text
        return (
          out +
          (textOpen
            ? ev('response.output_text.delta', {
                item_id: msgId,
                output_index: 0,
                content_index: 0,
                delta: e.text,
                logprobs: [],
              })
            : '')
        )
      }
      case 'tool': {
        const out = join(closeText())
        calls[e.index] = { id: e.id, name: e.name, arguments: '' }
        return (
          out +
          ev('response.output_item.added', {
            output_index: callIndex(e.index),
            item: {
              id: `fc_${key}_${e.index}`,
              type: 'function_call',
              status: 'in_progress',
              call_id: e.id,
              name: e.name,
              arguments: '',
            },
          })
        )
      }
      case 'args': {
        const c = calls[e.index]
        if (!c) return ''
        c.arguments += e.json
        return ev('response.function_call_arguments.delta', {
          item_id: `fc_${key}_${e.index}`,
          output_index: callIndex(e.index),
          delta: e.json,
        })
      }
      case 'finish':
        return join(finish(e))
    }
  }
  encode.held = () => {
    let n = text.length
    for (const c of calls) n += c?.arguments.length ?? 0
    return n
  }
  encode.pieces = function* (e) {
    if (e.t === 'finish') yield* finish(e)
    else if (e.t === 'tool') {
      yield* closeText()
      yield encode(e)
    } else yield encode(e)
  }
  return encode
}

export const encoders: Record<ProtocolName, (o: EncoderOptions) => Encoder> = {
  openai: openaiEncoder,
  anthropic: anthropicEncoder,
  gemini: geminiEncoder,
  responses: responsesEncoder,
}

export type { StreamEvent }
