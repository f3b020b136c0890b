// OpenAI Responses API (`POST /v1/responses`): request parsing, answers and streams. Items the
// proxy does not know (new tool calls, item references) are kept in the canonical view as JSON and
// forwarded untouched; a vendor's own answer is replayed as it came (reasoning items and their
// encrypted_content included), only the id changing.
import type { CanonicalAnswer, CanonicalMessage, ToolCall, Usage } from '../types.ts'
import { canonicalJson, canonicalJsonSteps } from '../canonical.ts'
import {
  NotAnAnswerError,
  PARSE_STEP,
  ProtocolError,
  checkFieldTypes,
  checkRole,
  emptyUsage,
  isObject,
  joinSteps,
  requireModel,
  runSteps,
  runStepsSliced,
  sse,
  textPieces,
  usageFor,
  type ParseSteps,
  type ProtocolAdapter,
  type RenderSteps,
  type StreamReader,
  SLICED_PARSE_CHARS,
  ARGS_PIECE_CHARS,
} from './shared.ts'
import { parseEventJson, primedEventJson } from './event-json.ts'
import { cutString, jsonTextPieces } from '../json-sliced.ts'

const FIELD_TYPES = {
  stream: 'boolean',
  instructions: ['string', 'array'],
  input: ['string', 'array'],
  tools: 'array',
  tool_choice: ['string', 'object'],
  text: 'object',
  reasoning: 'object',
  max_output_tokens: 'integer',
  store: 'boolean',
  previous_response_id: 'string',
  metadata: 'object',
  prompt_cache_key: 'string',
  temperature: 'number',
  top_p: 'number',
  top_logprobs: 'integer',
  parallel_tool_calls: 'boolean',
  background: 'boolean',
  conversation: ['string', 'object'],
  include: 'array',
  prompt: 'object',
  max_tool_calls: 'integer',
} as const

// what changes the answer (or its body: `include` adds encrypted reasoning); prompt_cache_key,
// metadata, user, safety_identifier and service_tier are routing and bookkeeping
const PARAMS = [
  'temperature',
  'top_p',
  'top_logprobs',
  'reasoning',
  'parallel_tool_calls',
  'max_tool_calls',
  'truncation',
  'include',
  'previous_response_id',
  'conversation',
  'prompt',
  'background',
] as const

/** Text parts of a message's content; other parts (images, files, audio) flattened for the key. */
function contentOf(content: unknown, where: string): { text: string; extra: unknown[]; images: boolean } {
  if (typeof content === 'string') return { text: content, extra: [], images: false }
  if (!Array.isArray(content)) throw new ProtocolError(`${where}.content must be a string or an array of content parts`)
  const texts: string[] = []
  const extra: unknown[] = []
  let images = false
  for (const [i, part] of content.entries()) {
    if (!isObject(part) || typeof part.type !== 'string')
      throw new ProtocolError(`${where}.content[${i}] must be an object with a string \`type\``)
    if (part.type === 'input_text' || part.type === 'output_text' || part.type === 'text') {
      if (typeof part.text !== 'string')
        throw new ProtocolError(`${where}.content[${i}]: a ${part.type} part needs a string \`text\``)
      texts.push(part.text)
      // annotations and logprobs of an earlier answer do not change the question
    } else {
      if (part.type === 'input_image' || part.type === 'input_file') images = true
      extra.push(part)
    }
  }
  return { text: texts.join('\n'), extra, images }
}

const without = (o: Record<string, any>, keys: string[]) =>
  Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)))

type ItemView = { message: CanonicalMessage; system?: boolean; images: boolean }

/**
 * itemOf in steps for parseSliced (a body of megabytes): a call item of megabytes (a function_call
 * whose arguments wrote a file of 5 MB) has its canonical JSON printed in steps of its own; the
 * same view as itemOf
 */
function* itemSteps(item: unknown, where: string): Generator<undefined, ItemView, undefined> {
  if (!isObject(item) || !isOtherItem(item)) return itemOf(item, where)
  return otherItem(item, yield* canonicalJsonSteps(without(item, ['status'])))
}

/** an item that is neither a message nor a call's output: kept whole in the canonical view */
const isOtherItem = (item: Record<string, any>) => {
  const type = item.type ?? (item.role !== undefined ? 'message' : undefined)
  return (
    typeof type === 'string' &&
    type !== 'message' &&
    type !== 'function_call_output' &&
    type !== 'custom_tool_call_output'
  )
}

/** function calls, reasoning (with encrypted_content), built-in tool calls, item references: `extra` their canonical JSON without status */
function otherItem(item: Record<string, any>, extra: string): ItemView {
  const role: CanonicalMessage['role'] = item.type === 'item_reference' ? 'user' : 'assistant'
  return { message: { role, text: '', extra }, images: false }
}

/** One input item in canonical form; `system` for instructions given as developer/system messages. */
function itemOf(item: unknown, where: string): ItemView {
  if (!isObject(item)) throw new ProtocolError(`${where} must be an object`)
  const type = item.type ?? (item.role !== undefined ? 'message' : undefined)
  if (typeof type !== 'string')
    throw new ProtocolError(`${where} must have a string \`type\` (or a \`role\` for a message)`)
  if (type === 'message') {
    const role = checkRole(item.role, where)
    const { text, extra, images } = contentOf(item.content, where)
    // an item's id and status are the vendor's bookkeeping, not part of the question
    const known = role === 'user' || role === 'assistant' || role === 'system' || role === 'developer'
    const tags = [known ? '' : `role:${role}`, extra.length ? canonicalJson(extra) : ''].filter(Boolean).join('|')
    const canonicalRole: CanonicalMessage['role'] =
      role === 'developer' || role === 'system' ? 'system' : role === 'assistant' ? 'assistant' : 'user'
    return {
      message: { role: canonicalRole, text, ...(tags ? { extra: tags } : {}) },
      system: canonicalRole === 'system' && !tags,
      images,
    }
  }
  if (type === 'function_call_output' || type === 'custom_tool_call_output') {
    const out = item.output
    const { text, extra, images } =
      typeof out === 'string' || Array.isArray(out)
        ? contentOf(out, `${where}.output`)
        : { text: out === undefined ? '' : canonicalJson(out), extra: [], images: false }
    return {
      message: {
        role: 'tool',
        text,
        extra: canonicalJson({
          ...without(item, ['output', 'id', 'status']),
          ...(extra.length ? { parts: extra } : {}),
        }),
      },
      images,
    }
  }
  // function calls, reasoning (with encrypted_content), built-in tool calls, item references:
  // the whole item is what the model sees next, so all of it is in the key
  return otherItem(item, canonicalJson(without(item, ['status'])))
}

function instructionsText(v: unknown): string {
  if (v === undefined || v === null) return ''
  if (typeof v === 'string') return v
  return (v as unknown[]).map((it, i) => itemOf(it, `instructions[${i}]`).message.text).join('\n')
}

const stopOf = (json: any, toolCalls: ToolCall[]): CanonicalAnswer['stopReason'] => {
  if (json?.status === 'incomplete')
    return json.incomplete_details?.reason === 'content_filter' ? 'content_filter' : 'length'
  // failed, queued, in progress or cancelled: not an answer any cache may keep
  if (json?.status !== undefined && json.status !== 'completed') return 'content_filter'
  return toolCalls.length ? 'tool_calls' : 'stop'
}

/** Reasoning tokens are part of output_tokens on the wire: billed as output, as OpenAI bills them. */
function usageOf(u: any): Usage {
  if (!isObject(u)) return emptyUsage()
  return {
    inputTokens: Number(u.input_tokens ?? 0),
    outputTokens: Number(u.output_tokens ?? 0),
    cacheReadTokens: Number(u.input_tokens_details?.cached_tokens ?? 0),
    cacheWriteTokens: 0,
  }
}

function wireUsage(u: Usage) {
  return {
    input_tokens: u.inputTokens,
    input_tokens_details: { cached_tokens: u.cacheReadTokens },
    output_tokens: u.outputTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: u.inputTokens + u.outputTokens,
  }
}

/** The neutral answer of a Responses body (a non-streamed answer or a stream's final `response`). */
function answerOf(json: Record<string, any>): CanonicalAnswer {
  const output: any[] = json.output
  let text = ''
  const toolCalls: ToolCall[] = []
  for (const item of output) {
    if (item?.type === 'message')
      for (const c of item.content ?? []) if (c?.type === 'output_text' && typeof c.text === 'string') text += c.text
    if (item?.type === 'function_call')
      toolCalls.push({
        id: String(item.call_id ?? item.id ?? ''),
        name: String(item.name ?? ''),
        arguments: String(item.arguments ?? ''),
      })
  }
  return {
    id: String(json.id ?? ''),
    model: String(json.model ?? ''),
    text,
    toolCalls,
    stopReason: stopOf(json, toolCalls),
    usage: usageOf(json.usage),
    raw: { protocol: 'responses', body: json },
  }
}

/** A Responses body built from the neutral answer (a demo answer, or one cached from another protocol). */
function bodyOf(a: CanonicalAnswer): Record<string, any> {
  const key = a.id.replace(/^resp_/, '')
  const output: any[] = []
  if (a.text)
    output.push({
      id: `msg_${key}`,
      type: 'message',
      status: 'completed',
      role: 'assistant',
      content: [{ type: 'output_text', text: a.text, annotations: [], logprobs: [] }],
    })
  for (const [i, t] of a.toolCalls.entries())
    output.push({
      id: `fc_${key}_${i}`,
      type: 'function_call',
      status: 'completed',
      call_id: t.id,
      name: t.name,
      arguments: t.arguments,
    })
  const incomplete = a.stopReason === 'length' || a.stopReason === 'content_filter'
  return {
    id: a.id,
    object: 'response',
    created_at: Math.floor(Date.now() / 1000),
    status: incomplete ? 'incomplete' : 'completed',
    error: null,
    incomplete_details: incomplete
      ? { reason: a.stopReason === 'length' ? 'max_output_tokens' : 'content_filter' }
      : null,
    model: a.model,
    output,
    parallel_tool_calls: true,
    tool_choice: 'auto',
    tools: [],
    usage: wireUsage(usageFor(a.usage, a.raw?.protocol, 'responses')),
  }
}

/** The body to send for an answer: the vendor's own when it is a Responses body, with the answer's id. */
function replayBody(a: CanonicalAnswer): Record<string, any> {
  return a.raw?.protocol === 'responses' ? { ...a.raw.body, id: a.id } : bodyOf(a)
}

/** An output item as `response.output_item.added` shows it: before its content arrived. */
function startedItem(item: any): any {
  if (item?.type === 'message') return { ...item, status: 'in_progress', content: [] }
  if (item?.type === 'function_call') return { ...item, status: 'in_progress', arguments: '' }
  return item
}

/** The events of one output item after `output_item.added`: content parts and their deltas. */
function* itemEvents(
  item: any,
  output_index: number,
  ev: (type: string, data: Record<string, unknown>) => string,
  whole: (type: string, data: Record<string, unknown>) => RenderSteps,
): RenderSteps {
  const item_id = item?.id
  if (item?.type === 'message') {
    for (const [content_index, part] of (item.content ?? []).entries()) {
      const empty =
        part?.type === 'output_text'
          ? { ...part, text: '' }
          : part?.type === 'refusal'
            ? { ...part, refusal: '' }
            : part
      yield ev('response.content_part.added', { item_id, output_index, content_index, part: empty })
      if (part?.type === 'output_text') {
        for (const { text: delta } of textPieces(part.text ?? ''))
          yield ev('response.output_text.delta', { item_id, output_index, content_index, delta, logprobs: [] })
        yield* whole('response.output_text.done', {
          item_id,
          output_index,
          content_index,
          text: part.text ?? '',
          logprobs: [],
        })
      } else if (part?.type === 'refusal') {
        yield ev('response.refusal.delta', { item_id, output_index, content_index, delta: part.refusal ?? '' })
        yield ev('response.refusal.done', { item_id, output_index, content_index, refusal: part.refusal ?? '' })
      }
      yield* whole('response.content_part.done', { item_id, output_index, content_index, part })
    }
  } else if (item?.type === 'function_call') {
    const args = item.arguments ?? ''
    // arguments of megabytes a piece a delta, as a vendor streams them
    for (const delta of typeof args === 'string' && args.length > ARGS_PIECE_CHARS
      ? cutString(args, ARGS_PIECE_CHARS)
      : [args])
      yield ev('response.function_call_arguments.delta', { item_id, output_index, delta })
    yield* whole('response.function_call_arguments.done', {
      item_id,
      output_index,
      name: item.name,
      arguments: item.arguments ?? '',
    })
  }
}

function* streamOf(body: Record<string, any>): RenderSteps {
  let sequence_number = 0
  const ev = (type: string, data: Record<string, unknown>) =>
    sse({ type, ...data, sequence_number: sequence_number++ }, type)
  // an event that carries a whole text, part, item, arguments or the answer: sse()'s text, its JSON
  // made a piece at a time (megabytes of text or arguments are never stringified in one step)
  const whole = function* (type: string, data: Record<string, unknown>): RenderSteps {
    yield `event: ${type}\ndata: `
    yield* jsonTextPieces({ type, ...data, sequence_number: sequence_number++ }, ARGS_PIECE_CHARS)
    yield '\n\n'
  }
  const started = { ...body, status: 'in_progress', output: [], usage: null, incomplete_details: null }
  yield ev('response.created', { response: started })
  yield ev('response.in_progress', { response: started })
  const output: any[] = Array.isArray(body.output) ? body.output : []
  for (const [output_index, item] of output.entries()) {
    yield ev('response.output_item.added', { output_index, item: startedItem(item) })
    yield* itemEvents(item, output_index, ev, whole)
    yield* whole('response.output_item.done', { output_index, item })
  }
  yield* whole(
    body.status === 'incomplete'
      ? 'response.incomplete'
      : body.status === 'failed'
        ? 'response.failed'
        : 'response.completed',
    { response: body },
  )
}

const FINAL_EVENTS = new Set(['response.completed', 'response.incomplete', 'response.failed'])

// the type an event names first, as the vendor writes it: {"type":"response.output_text.delta",...
const HEAD_TYPE = /^\s*\{\s*"type"\s*:\s*"([^"\\]{1,128})"/

/**
 * whether an event may carry the whole response (response.created, .completed, ...): not one of a
 * part of it (response.<part>.<what>: output_text.delta, content_part.done, output_item.done...),
 * told by the type at its start, so that a delta of megabytes is neither parsed nor searched
 */
function mayCarryResponse(data: string): boolean {
  const type = HEAD_TYPE.exec(data.slice(0, 256))?.[1]
  return type === undefined || !/^response\.[^.]+\./.test(type)
}

function* responsesSteps(body: any, sliced = false): ParseSteps {
  if (!isObject(body)) throw new ProtocolError('request body must be a JSON object')
  // a stored prompt (`prompt: {id}`) may name the model itself
  const model = body.model === undefined && isObject(body.prompt) ? '' : requireModel(body.model)
  checkFieldTypes(body, FIELD_TYPES)
  if (body.text?.format !== undefined && !isObject(body.text.format))
    throw new ProtocolError('`text.format` must be an object')
  const maxTokens = body.max_output_tokens
  if (maxTokens !== undefined && maxTokens !== null && maxTokens < 1)
    throw new ProtocolError('`max_output_tokens` must be a positive integer')
  const system: string[] = []
  const instructions = instructionsText(body.instructions)
  if (instructions) system.push(instructions)
  const messages: CanonicalMessage[] = []
  let hasImages = false
  const items = typeof body.input === 'string' ? [{ role: 'user', content: body.input }] : (body.input ?? [])
  const list = items as unknown[]
  for (let i = 0; i < list.length; i++) {
    if (i % PARSE_STEP === PARSE_STEP - 1) yield
    const item = list[i]
    const where = typeof body.input === 'string' ? 'input' : `input[${i}]`
    const { message, system: isSystem, images } = sliced ? yield* itemSteps(item, where) : itemOf(item, where)
    hasImages ||= images
    // leading developer/system messages are the system prompt (Codex sends its instructions so)
    if (isSystem && messages.length === 0) system.push(message.text)
    else messages.push(message)
  }
  const params: Record<string, unknown> = {}
  for (const k of PARAMS) if (body[k] !== undefined && body[k] !== null) params[k] = body[k]
  if (body.text?.verbosity !== undefined) params.verbosity = body.text.verbosity
  // an answer the vendor did not store cannot be continued by id: a client that stores must
  // not be served one that was not
  params.stored = body.store !== false
  return {
    model,
    system: system.join('\n'),
    messages,
    tools: body.tools,
    toolChoice: body.tool_choice,
    responseFormat: body.text?.format,
    params,
    stream: body.stream === true,
    maxTokens: maxTokens ?? undefined,
    hasImages,
    stateful: typeof body.previous_response_id === 'string' || body.conversation != null,
  }
}

export const responsesProtocol: ProtocolAdapter = {
  name: 'responses',

  parse: (body) => runSteps(responsesSteps(body)),
  parseSliced: (body, _opts, slicer) => runStepsSliced(responsesSteps(body, true), slicer),

  countTokens: {
    request: (body) => body,
    answer: (tokens) => ({ object: 'response.input_tokens', input_tokens: tokens }),
  },

  errorBody(_status, type, message) {
    return { error: { message, type, param: null, code: type } }
  },

  render(a) {
    return replayBody(a)
  },

  renderStream(a) {
    return joinSteps(streamOf(replayBody(a)))
  },

  renderStreamSteps(a) {
    return streamOf(replayBody(a))
  },

  streamError(_status, type, message) {
    return sse({ type: 'error', code: type, message, param: null, sequence_number: 0 }, 'error')
  },

  read(json) {
    if (!isObject(json) || !Array.isArray(json.output)) throw new NotAnAnswerError('no `output` array')
    return answerOf(json)
  },

  streamReader() {
    let final: Record<string, any> | undefined
    let usage: Usage | undefined
    const reader: StreamReader = {
      event(data) {
        // an event of megabytes (response.completed carries the whole answer) was parsed in slices
        // by the relay (SseParser.feedSliced primes parseEventJson): its value is read, not its
        // text searched (a 5 MB delta: ~8 ms for the includes below)
        const large = data.length > SLICED_PARSE_CHARS
        if (large && !mayCarryResponse(data)) return true
        let e: any = large ? primedEventJson(data) : undefined
        if (e === undefined) {
          // only the events that carry the whole response are parsed in full; deltas are skipped
          // by their type alone (most of a stream), so a long answer costs one parse per event
          if (!data.includes('"response"')) return true
          try {
            e = data.length > SLICED_PARSE_CHARS ? parseEventJson(data) : JSON.parse(data)
          } catch {
            return true
          }
        }
        if (isObject(e?.response) && isObject(e.response.usage)) usage = usageOf(e.response.usage)
        if (FINAL_EVENTS.has(e?.type) && isObject(e.response) && Array.isArray(e.response.output)) final = e.response
        return true
      },
      readsValue: mayCarryResponse,
      finish() {
        return final ? answerOf(final) : undefined
      },
      partialUsage: () => usage ?? emptyUsage(),
    }
    return reader
  },
}
