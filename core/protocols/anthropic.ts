// Anthropic Messages: request parsing, answers and streams (message_start .. message_stop).
import type { CanonicalAnswer, CanonicalMessage, ToolCall, Usage } from '../types.ts'
import { canonicalJson, canonicalJsonSteps, isLargeValue, joiner } from '../canonical.ts'
import { parseEventJson } from './event-json.ts'
import { jsonTextPieces, stringifySliced } from '../json-sliced.ts'
import type { Slicer } from '../slicer.ts'
import {
  ARGS_PIECE_CHARS,
  MAX_JSON_DEPTH,
  SLICED_PARSE_CHARS,
  parseJsonSliced,
  NotAnAnswerError,
  PARSE_STEP,
  ProtocolError,
  checkFieldTypes,
  checkRole,
  emptyUsage,
  isObject,
  joinSteps,
  pick,
  requireModel,
  runGenerator,
  runSteps,
  runStepsSliced,
  sse,
  textPieces,
  usageFor,
  type ParseSteps,
  type ProtocolAdapter,
  type RenderSteps,
  type StreamReader,
} from './shared.ts'

const FIELD_TYPES = {
  stream: 'boolean',
  tools: 'array',
  tool_choice: 'object',
  temperature: 'number',
  top_p: 'number',
  top_k: 'integer',
  stop_sequences: 'array',
  metadata: 'object',
  thinking: 'object',
  system: ['string', 'array'],
} as const

const PARAMS = ['temperature', 'top_p', 'top_k', 'stop_sequences', 'thinking'] as const

type BlocksText = { text: string; extra: string; images: boolean }

/**
 * A content field as text and the canonical JSON of its other blocks. A generator that pauses every
 * PARSE_STEP blocks, so one message of 100,000 blocks does not hold the loop (parseSliced); the extra
 * is canonicalJson(blocks without cache_control), built block by block, without copying a block.
 * With `sliced` (parseSliced: a body of megabytes) a large block (a tool_use input, a tool_result
 * of megabytes) is printed in steps of its own; a small body's parse does no size check.
 */
function* blocksSteps(content: unknown, where: string, sliced = false): Generator<undefined, BlocksText, undefined> {
  if (typeof content === 'string') return { text: content, extra: '', images: false }
  if (!Array.isArray(content)) throw new ProtocolError(`${where} must be a string or an array of content blocks`)
  const texts = joiner('\n')
  const extras = joiner(',')
  let images = false
  for (let i = 0; i < content.length; i++) {
    if (i % PARSE_STEP === PARSE_STEP - 1) {
      texts.cut()
      extras.cut()
      yield
    }
    const b = content[i]
    if (!isObject(b) || typeof b.type !== 'string')
      throw new ProtocolError(`${where}: each content block must be an object with a string \`type\``)
    if (b.type === 'text') {
      if (typeof b.text !== 'string') throw new ProtocolError(`${where}: a text block needs a string \`text\``)
      texts.add(b.text)
    } else {
      if (b.type === 'image' || b.type === 'document') images = true
      // cache_control is a billing hint, not part of the question
      const block = Object.hasOwn(b, 'cache_control') ? withoutCacheControl(b) : b
      extras.add(sliced ? yield* canonicalJsonSteps(block) : canonicalJson(block))
    }
  }
  // the array's canonical JSON is its elements' joined (objects: none prints as undefined)
  return { text: texts.end('', ''), extra: extras.empty() ? '' : extras.end('[', ']'), images }
}

function withoutCacheControl(b: Record<string, unknown>): Record<string, unknown> {
  const { cache_control: _cc, ...rest } = b
  return rest
}

function blocksText(content: unknown, where: string): BlocksText {
  return runGenerator(blocksSteps(content, where))
}

const stopReasons: Record<string, CanonicalAnswer['stopReason']> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  max_tokens: 'length',
  tool_use: 'tool_calls',
  refusal: 'content_filter',
  pause_turn: 'stop',
}
const toAnthropicStop: Record<CanonicalAnswer['stopReason'], string> = {
  stop: 'end_turn',
  length: 'max_tokens',
  tool_calls: 'tool_use',
  content_filter: 'refusal',
}

function usageOf(u: any): Usage {
  if (!isObject(u)) return emptyUsage()
  return {
    inputTokens: Number(u.input_tokens ?? 0),
    outputTokens: Number(u.output_tokens ?? 0),
    cacheReadTokens: Number(u.cache_read_input_tokens ?? 0),
    cacheWriteTokens: Number(u.cache_creation_input_tokens ?? 0),
  }
}

function wireUsage(u: Usage) {
  return {
    input_tokens: u.inputTokens,
    output_tokens: u.outputTokens,
    cache_read_input_tokens: u.cacheReadTokens,
    cache_creation_input_tokens: u.cacheWriteTokens,
  }
}

function contentBlocks(a: CanonicalAnswer) {
  const blocks: unknown[] = []
  if (a.text) blocks.push({ type: 'text', text: a.text })
  for (const t of a.toolCalls) {
    let input: unknown = {}
    try {
      input = t.arguments ? JSON.parse(t.arguments) : {}
    } catch {
      input = {}
    }
    blocks.push({ type: 'tool_use', id: t.id, name: t.name, input })
  }
  return blocks
}

/** One content block as the events that stream it; the stream reader rebuilds the same block. */
function* blockEvents(block: any, index: number): RenderSteps {
  const ev = (type: string, data: Record<string, unknown>) => sse({ type, index, ...data }, type)
  const delta = (d: Record<string, unknown>) => ev('content_block_delta', { delta: d })
  if (block?.type === 'text' && typeof block.text === 'string') {
    const { text, citations, ...shell } = block
    yield ev('content_block_start', { content_block: { ...shell, text: '', ...(citations ? { citations: [] } : {}) } })
    for (const citation of Array.isArray(citations) ? citations : []) yield delta({ type: 'citations_delta', citation })
    for (const { text: piece } of textPieces(text)) yield delta({ type: 'text_delta', text: piece })
  } else if (block?.type === 'thinking' && typeof block.thinking === 'string') {
    const { thinking, signature, ...shell } = block
    yield ev('content_block_start', { content_block: { ...shell, thinking: '', signature: '' } })
    for (const { text: piece } of textPieces(thinking)) yield delta({ type: 'thinking_delta', thinking: piece })
    if (typeof signature === 'string' && signature) yield delta({ type: 'signature_delta', signature })
  } else if (isObject(block) && 'input' in block && typeof block.type === 'string' && block.type.endsWith('tool_use')) {
    // tool_use, server_tool_use, mcp_tool_use: the input arrives as JSON text
    yield ev('content_block_start', { content_block: { ...block, input: {} } })
    // an input of megabytes as a vendor streams it: its JSON text a piece a delta, made a piece at a time
    for (const piece of jsonTextPieces(block.input ?? {}, ARGS_PIECE_CHARS))
      yield delta({ type: 'input_json_delta', partial_json: piece })
  }
  // redacted_thinking, tool results and types we do not know arrive whole in their start event
  else yield ev('content_block_start', { content_block: block })
  yield ev('content_block_stop', {})
}

function* anthropicSteps(body: any, sliced = false): ParseSteps {
  if (!isObject(body)) throw new ProtocolError('request body must be a JSON object')
  const model = requireModel(body.model)
  if (!Array.isArray(body.messages) || body.messages.length === 0)
    throw new ProtocolError('`messages` is required and must be a non-empty array')
  if (body.max_tokens !== undefined && (!Number.isSafeInteger(body.max_tokens) || body.max_tokens < 1))
    throw new ProtocolError('`max_tokens` must be a positive integer')
  checkFieldTypes(body, FIELD_TYPES)
  let system = ''
  let hasImages = false
  if (body.system !== undefined) system = blocksText(body.system, '`system`').text
  const list: unknown[] = body.messages
  const messages: CanonicalMessage[] = []
  for (let i = 0; i < list.length; i++) {
    if (i % PARSE_STEP === PARSE_STEP - 1) yield
    const m = list[i]
    // a hole (a body built in code, not parsed) stays one, as Array#map leaves it
    if (m === undefined && !(i in list)) {
      messages.length = i + 1
      continue
    }
    // a role the proxy does not know (Claude Code's mid-conversation `system`) is forwarded as
    // is; only a role that is not a string is the client's mistake
    if (!isObject(m)) throw new ProtocolError(`messages[${i}] must be an object with a string \`role\``)
    checkRole(m.role, `messages[${i}]`)
    const { text, extra, images } =
      typeof m.content === 'string'
        ? { text: m.content, extra: '', images: false }
        : yield* blocksSteps(m.content, `messages[${i}].content`, sliced)
    hasImages ||= images
    // other roles stay in the cache partition and the estimate, tagged with their name
    const known = m.role === 'user' || m.role === 'assistant' || m.role === 'system'
    const tagged = known ? extra : [`role:${m.role}`, extra].filter(Boolean).join('|')
    messages[i] = {
      role: known ? (m.role as CanonicalMessage['role']) : 'user',
      text,
      ...(tagged ? { extra: tagged } : {}),
    }
  }
  return {
    model,
    system,
    messages,
    tools: body.tools,
    toolChoice: body.tool_choice,
    responseFormat: body.output_format,
    params: pick(body, PARAMS),
    stream: body.stream === true,
    maxTokens: body.max_tokens,
    hasImages,
  }
}

export const anthropicProtocol: ProtocolAdapter = {
  name: 'anthropic',
  prepareRead: (json, slicer) => inputTextsSliced(json, slicer),

  parse: (body) => runSteps(anthropicSteps(body)),
  parseSliced: (body, _opts, slicer) => runStepsSliced(anthropicSteps(body, true), slicer),

  countTokens: {
    // count_tokens bodies have no max_tokens, which a Messages body needs
    request: (body) => (isObject(body) ? { max_tokens: 1, ...body } : body),
    answer: (tokens) => ({ input_tokens: tokens }),
  },

  errorBody(_status, type, message) {
    return { type: 'error', error: { type, message } }
  },

  render(a) {
    // the vendor's own body when we have it: thinking blocks, signatures, citations, server tool
    // blocks and the usage of the call survive a cache hit (clients build their next turn from it)
    if (a.raw?.protocol === 'anthropic') return { ...a.raw.body, id: a.id }
    return {
      id: a.id,
      type: 'message',
      role: 'assistant',
      model: a.model,
      content: contentBlocks(a),
      stop_reason: toAnthropicStop[a.stopReason],
      stop_sequence: null,
      usage: wireUsage(usageFor(a.usage, a.raw?.protocol, 'anthropic')),
    }
  },

  renderStream(a) {
    return joinSteps(anthropicProtocol.renderStreamSteps(a))
  },

  *renderStreamSteps(a) {
    const message = anthropicProtocol.render(a) as Record<string, any>
    const { content, stop_reason, stop_sequence, usage, ...rest } = message
    yield sse(
      {
        type: 'message_start',
        message: {
          ...rest,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { ...usage, output_tokens: 1 },
        },
      },
      'message_start',
    )
    if (Array.isArray(content))
      for (let index = 0; index < content.length; index++) yield* blockEvents(content[index], index)
    yield sse(
      { type: 'message_delta', delta: { stop_reason, stop_sequence: stop_sequence ?? null }, usage },
      'message_delta',
    )
    yield sse({ type: 'message_stop' }, 'message_stop')
  },

  streamError(_status, type, message) {
    return sse({ type: 'error', error: { type, message } }, 'error')
  },

  read(json) {
    if (!isObject(json) || !Array.isArray(json.content)) throw new NotAnAnswerError('no `content` array')
    return answerOf(json)
  },

  streamReader() {
    // the message is rebuilt as the vendor would have sent it whole, so that a cached stream
    // replays every block (thinking and its signature included), not only text and tool calls
    let message: Record<string, any> | undefined
    let done = false
    const blocks: any[] = []
    // tool inputs arrive as JSON text, parsed when their block stops
    const partialJson = new Map<number, string>()
    const reader: StreamReader = {
      event(data) {
        let e: any
        try {
          e = parseEventJson(data)
        } catch {
          return true
        }
        // e may be shared with the translator's decoder: read, copied, never changed
        switch (e?.type) {
          case 'message_start':
            message = isObject(e.message) ? { ...e.message } : {}
            break
          case 'content_block_start': {
            const i = Number.isSafeInteger(e.index) ? e.index : blocks.length
            if (i < 0 || i > blocks.length + 1024) break
            blocks[i] = isObject(e.content_block) ? { ...e.content_block } : { type: 'unknown' }
            break
          }
          case 'content_block_delta':
            if (isObject(blocks[e.index]) && isObject(e.delta))
              applyDelta(blocks[e.index], e.delta, e.index, partialJson)
            break
          case 'content_block_stop': {
            settleInput(blocks, partialJson, e.index)
            break
          }
          case 'message_delta':
            message ??= {}
            if (isObject(e.delta)) Object.assign(message, e.delta)
            // message_delta carries cumulative counts; input may be repeated there
            if (isObject(e.usage)) message.usage = mergeUsage(message.usage, e.usage)
            break
          case 'message_stop':
            done = true
            break
        }
        return true
      },
      // a tool input of megabytes waiting for its block's stop: that event is read by eventSliced
      heavy() {
        if (partialJson.size === 0) return false
        let n = 0
        for (const json of partialJson.values()) n += json.length
        return n > SLICED_PARSE_CHARS
      },
      async eventSliced(data, slicer) {
        let e: any
        try {
          e = parseEventJson(data)
        } catch {
          return true
        }
        const json = e?.type === 'content_block_stop' ? partialJson.get(e.index) : undefined
        if (json === undefined || json.length <= SLICED_PARSE_CHARS) return reader.event(data)
        await settleInputSliced(blocks, partialJson, e.index, slicer)
        return true
      },
      finish() {
        if (!done || !message) return undefined
        // a block whose stop never came still has its input as JSON text
        for (const i of [...partialJson.keys()]) settleInput(blocks, partialJson, i)
        return answerOf({ ...message, content: blocks.filter(Boolean) })
      },
      partialUsage: () => usageOf(message?.usage),
    }
    return reader
  },
}

/** Fold one content_block_delta into its block: text and thinking grow, the signature arrives whole. */
function applyDelta(
  block: Record<string, any>,
  d: Record<string, any>,
  index: number,
  partialJson: Map<number, string>,
): void {
  switch (d.type) {
    case 'text_delta':
      block.text = String(block.text ?? '') + String(d.text ?? '')
      break
    case 'thinking_delta':
      block.thinking = String(block.thinking ?? '') + String(d.thinking ?? '')
      break
    case 'signature_delta':
      block.signature = String(block.signature ?? '') + String(d.signature ?? '')
      break
    case 'input_json_delta':
      partialJson.set(index, (partialJson.get(index) ?? '') + String(d.partial_json ?? ''))
      break
    case 'citations_delta':
      block.citations = [...(Array.isArray(block.citations) ? block.citations : []), d.citation]
      break
    default:
      // a delta type from next month: its string fields grow the block's fields of the same name
      for (const [k, v] of Object.entries(d))
        if (k !== 'type' && typeof v === 'string') block[k] = String(block[k] ?? '') + v
  }
}

function settleInput(blocks: any[], partialJson: Map<number, string>, index: number): void {
  const json = partialJson.get(index)
  if (json === undefined) return
  partialJson.delete(index)
  if (!isObject(blocks[index])) return
  try {
    blocks[index].input = JSON.parse(json || '{}')
  } catch {
    blocks[index].input = {}
  }
}

// the text answerOf gives a tool input of megabytes, made in slices when its block stopped
const inputText = new WeakMap<object, string>()

/** settleInput for an input of megabytes: parsed, and its text for answerOf made, in slices (the same values) */
async function settleInputSliced(
  blocks: any[],
  partialJson: Map<number, string>,
  index: number,
  slicer: Slicer,
): Promise<void> {
  const json = partialJson.get(index)!
  partialJson.delete(index)
  if (!isObject(blocks[index])) return
  let input: unknown
  try {
    const r = await parseJsonSliced(json || '{}', MAX_JSON_DEPTH, slicer)
    input = r.deep ? JSON.parse(json) : r.value
  } catch {
    input = {}
  }
  blocks[index].input = input
  if (typeof input !== 'object' || input === null) return
  const pieces = (await stringifySliced(input, slicer)) ?? []
  // the one flat copy of megabytes: a turn of its own, what comes next in another
  await slicer.yield()
  inputText.set(input, pieces.join(''))
  await slicer.yield()
}

/**
 * For a whole answer of megabytes (parsed in slices): the text answerOf gives each tool_use input
 * of megabytes, made in slices now, so read() does not JSON.stringify it in one go (a 5 MB input
 * read for a Gemini client: 38-59 ms of one block). Call before read(json); a small input, or one
 * whose text is known, is left to read().
 */
export async function inputTextsSliced(json: unknown, slicer: Slicer): Promise<void> {
  const blocks = isObject(json) && Array.isArray(json.content) ? json.content : []
  for (const b of blocks) {
    const input = isObject(b) && b.type === 'tool_use' ? b.input : undefined
    if (typeof input !== 'object' || input === null || inputText.has(input) || !isLargeValue(input)) continue
    await slicer.yield()
    const pieces = await stringifySliced(input, slicer)
    if (!pieces) continue
    // the one flat copy of megabytes: a turn of its own
    await slicer.yield()
    inputText.set(input, pieces.join(''))
    await slicer.yield()
  }
}

/** message_delta's usage is cumulative, but a zero there does not undo message_start's count. */
function mergeUsage(before: unknown, delta: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = isObject(before) ? { ...before } : {}
  for (const [k, v] of Object.entries(delta)) if (v !== 0 || k === 'output_tokens' || out[k] === undefined) out[k] = v
  return out
}

/** The neutral view of a whole message, which is kept as the vendor's body for exact replay. */
function answerOf(json: Record<string, any>): CanonicalAnswer {
  const blocks: any[] = json.content
  const toolCalls: ToolCall[] = blocks
    .filter((b) => b?.type === 'tool_use')
    .map((b) => ({
      id: String(b.id),
      name: String(b.name),
      arguments: inputText.get(b.input) ?? JSON.stringify(b.input ?? {}),
    }))
  return {
    id: String(json.id ?? ''),
    model: String(json.model ?? ''),
    text: blocks
      .filter((b) => b?.type === 'text')
      .map((b) => b.text)
      .join(''),
    toolCalls,
    stopReason: stopReasons[json.stop_reason] ?? 'stop',
    usage: usageOf(json.usage),
    raw: { protocol: 'anthropic', body: json },
  }
}
