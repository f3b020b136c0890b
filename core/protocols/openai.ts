// OpenAI Chat Completions: request parsing, answers and streams in both directions.
import type { CanonicalAnswer, CanonicalMessage, ToolCall, Usage } from '../types.ts'
import { canonicalJson, canonicalJsonSteps, joiner } from '../canonical.ts'
import {
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
  runSteps,
  runStepsSliced,
  sse,
  textPieces,
  usageFor,
  type ParseSteps,
  type ProtocolAdapter,
  type RenderSteps,
  type StreamReader,
  canonicalListSteps,
  SLICED_PARSE_CHARS,
  ARGS_PIECE_CHARS,
} from './shared.ts'
import { parseEventJson } from './event-json.ts'
import { cutString } from '../json-sliced.ts'

const FIELD_TYPES = {
  stream: 'boolean',
  stream_options: 'object',
  tools: 'array',
  functions: 'array',
  tool_choice: ['string', 'object'],
  response_format: 'object',
  temperature: 'number',
  top_p: 'number',
  n: 'integer',
  seed: 'integer',
  stop: ['string', 'array'],
  max_tokens: 'integer',
  max_completion_tokens: 'integer',
  presence_penalty: 'number',
  frequency_penalty: 'number',
  metadata: 'object',
  user: 'string',
} as const

const PARAMS = [
  'temperature',
  'top_p',
  'n',
  'stop',
  'seed',
  'presence_penalty',
  'frequency_penalty',
  'logit_bias',
  'logprobs',
  'top_logprobs',
  'reasoning_effort',
  'verbosity',
  'modalities',
  'audio',
  'prediction',
  'parallel_tool_calls',
] as const

type ContentText = { text: string; extra: string; images: boolean }

/**
 * a message's content as text and the canonical JSON of its other parts; pauses every PARSE_STEP
 * parts, and inside a large part when `sliced` (parseSliced: a body of megabytes)
 */
function* contentSteps(content: unknown, sliced = false): Generator<undefined, ContentText, undefined> {
  if (typeof content === 'string') return { text: content, extra: '', images: false }
  if (content == null) return { text: '', extra: '', images: false }
  if (!Array.isArray(content))
    throw new ProtocolError('message `content` must be a string or an array of content parts')
  const texts = joiner('\n')
  const extras = joiner(',')
  let images = false
  for (let i = 0; i < content.length; i++) {
    if (i % PARSE_STEP === PARSE_STEP - 1) {
      texts.cut()
      extras.cut()
      yield
    }
    const part = content[i]
    if (!isObject(part) || typeof part.type !== 'string')
      throw new ProtocolError('each content part must be an object with a string `type`')
    if (part.type === 'text') {
      if (typeof part.text !== 'string') throw new ProtocolError('a text content part needs a string `text`')
      texts.add(part.text)
    } else {
      if (part.type === 'image_url' || part.type === 'input_image') images = true
      extras.add(sliced ? yield* canonicalJsonSteps(part) : canonicalJson(part))
    }
  }
  // the array's canonical JSON is its elements' joined
  return { text: texts.end('', ''), extra: extras.empty() ? '' : extras.end('[', ']'), images }
}

const stopReasons: Record<string, CanonicalAnswer['stopReason']> = {
  stop: 'stop',
  length: 'length',
  tool_calls: 'tool_calls',
  function_call: 'tool_calls',
  content_filter: 'content_filter',
}

function usageOf(u: any): Usage {
  if (!isObject(u)) return emptyUsage()
  const cached = Number(u.prompt_tokens_details?.cached_tokens ?? 0)
  return {
    inputTokens: Number(u.prompt_tokens ?? 0),
    outputTokens: Number(u.completion_tokens ?? 0),
    cacheReadTokens: cached,
    cacheWriteTokens: 0,
  }
}

function* openaiSteps(body: any, sliced = false): ParseSteps {
  if (!isObject(body)) throw new ProtocolError('request body must be a JSON object')
  const model = requireModel(body.model)
  if (!Array.isArray(body.messages) || body.messages.length === 0)
    throw new ProtocolError('`messages` is required and must be a non-empty array')
  checkFieldTypes(body, FIELD_TYPES)
  const system: string[] = []
  const messages: CanonicalMessage[] = []
  let hasImages = false
  const list: unknown[] = body.messages
  for (let i = 0; i < list.length; i++) {
    if (i % PARSE_STEP === PARSE_STEP - 1) yield
    const m = list[i]
    if (!isObject(m)) throw new ProtocolError(`messages[${i}] must be an object with a string \`role\``)
    checkRole(m.role, `messages[${i}]`)
    const { text, extra, images } =
      typeof m.content === 'string'
        ? { text: m.content, extra: '', images: false }
        : yield* contentSteps(m.content, sliced)
    hasImages ||= images
    if (m.role === 'system' || m.role === 'developer') {
      system.push(text)
      continue
    }
    // a role the proxy does not know is forwarded; it stays in the cache key, tagged with its name
    const known = m.role === 'user' || m.role === 'assistant' || m.role === 'tool' || m.role === 'function'
    const extras = [
      known ? '' : `role:${m.role}`,
      extra,
      m.tool_calls
        ? Array.isArray(m.tool_calls)
          ? yield* canonicalListSteps(m.tool_calls, sliced)
          : sliced
            ? yield* canonicalJsonSteps(m.tool_calls)
            : canonicalJson(m.tool_calls)
        : '',
      m.tool_call_id ? `tool_call_id:${m.tool_call_id}` : '',
      m.name ? `name:${m.name}` : '',
    ].filter(Boolean)
    messages.push({
      role: m.role === 'function' ? 'tool' : known ? (m.role as CanonicalMessage['role']) : 'user',
      text,
      ...(extras.length ? { extra: extras.join('|') } : {}),
    })
  }
  const maxTokens = body.max_completion_tokens ?? body.max_tokens
  if (maxTokens !== undefined && (!Number.isSafeInteger(maxTokens) || maxTokens < 1))
    throw new ProtocolError('`max_tokens` must be a positive integer')
  return {
    model,
    system: system.join('\n'),
    messages,
    tools: body.tools ?? body.functions,
    toolChoice: body.tool_choice ?? body.function_call,
    responseFormat: body.response_format,
    params: pick(body, PARAMS),
    stream: body.stream === true,
    maxTokens,
    hasImages,
  }
}

export const openaiProtocol: ProtocolAdapter = {
  name: 'openai',

  parse: (body) => runSteps(openaiSteps(body)),
  parseSliced: (body, _opts, slicer) => runStepsSliced(openaiSteps(body, true), slicer),

  errorBody(_status, type, message) {
    return { error: { message, type, param: null, code: type } }
  },

  render(a) {
    // the vendor's own body when we have it: annotations, refusals, reasoning fields of compatible
    // servers, logprobs and the usage of the call survive a cache hit
    if (a.raw?.protocol === 'openai') return { ...a.raw.body, id: a.id }
    const u = usageFor(a.usage, a.raw?.protocol, 'openai')
    return {
      id: a.id,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: a.model,
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: a.text || (a.toolCalls.length ? null : ''),
            ...(a.toolCalls.length
              ? {
                  tool_calls: a.toolCalls.map((t) => ({
                    id: t.id,
                    type: 'function',
                    function: { name: t.name, arguments: t.arguments },
                  })),
                }
              : {}),
            refusal: null,
          },
          logprobs: null,
          finish_reason: a.stopReason,
        },
      ],
      usage: {
        prompt_tokens: u.inputTokens,
        completion_tokens: u.outputTokens,
        total_tokens: u.inputTokens + u.outputTokens,
        prompt_tokens_details: { cached_tokens: u.cacheReadTokens },
      },
    }
  },

  renderStream(a, opts) {
    return joinSteps(openaiProtocol.renderStreamSteps(a, opts))
  },

  *renderStreamSteps(a, opts) {
    const { choices, usage, object: _object, ...rest } = openaiProtocol.render(a) as Record<string, any>
    const base = { ...rest, object: 'chat.completion.chunk' }
    for (const choice of Array.isArray(choices) ? choices : []) yield* choiceChunks(base, choice)
    // like the real API: the usage-only chunk (choices: []) only for clients that asked for it
    if (opts?.includeUsage !== false && usage) yield sse({ ...base, choices: [], usage })
    yield sse('[DONE]')
  },

  streamError(_status, type, message) {
    return sse({ error: { message, type, param: null, code: type } })
  },

  read(json) {
    if (!isObject(json) || !Array.isArray(json.choices)) throw new NotAnAnswerError('no `choices` array')
    return answerOf(json)
  },

  streamReader({ hideUsageChunk }) {
    // the completion is rebuilt as the vendor would have sent it whole (every delta field, not
    // only content and tool calls), so a cached stream replays what the client first saw
    let head: Record<string, any> | undefined
    let usage: unknown
    let done = false
    const choices: Array<Record<string, any>> = []
    const reader: StreamReader = {
      event(data) {
        if (data === '[DONE]') {
          done = true
          return true
        }
        let chunk: any
        try {
          // an event of megabytes was parsed in slices by the relay (SseParser.feedSliced primes
          // parseEventJson with it); a small one is parsed here, not kept
          chunk = data.length > SLICED_PARSE_CHARS ? parseEventJson(data) : JSON.parse(data)
        } catch {
          return true
        }
        if (!isObject(chunk)) return true
        // id, model, created, system_fingerprint...; a first chunk may have them empty (Azure's
        // prompt_filter_results chunk), so a later one fills what is still missing
        head ??= { object: 'chat.completion' }
        for (const k in chunk)
          if (k !== 'choices' && k !== 'usage' && k !== 'object' && (head[k] === undefined || head[k] === ''))
            head[k] = chunk[k]
        if (isObject(chunk.usage)) usage = chunk.usage
        const list = Array.isArray(chunk.choices) ? chunk.choices : []
        // the usage-only chunk we asked for on the client's behalf: the client did not ask, so it does not see it
        if (hideUsageChunk && chunk.usage && list.length === 0) return false
        for (const c of list) if (isObject(c)) foldChoice(choices, c)
        return true
      },
      finish() {
        if (!done || !head || !choices.some((c) => c?.finish_reason)) return undefined
        const body = { ...head, choices: choices.filter(Boolean).map(finishChoice), ...(usage ? { usage } : {}) }
        return answerOf(body)
      },
      partialUsage: () => usageOf(usage),
    }
    return reader
  },
}

/** The neutral view of a whole completion, which is kept as the vendor's body for exact replay. */
function answerOf(json: Record<string, any>): CanonicalAnswer {
  const choice = json.choices[0]
  const msg = isObject(choice?.message) ? choice.message : {}
  const toolCalls: ToolCall[] = (Array.isArray(msg.tool_calls) ? msg.tool_calls : []).map((t: any) => ({
    id: String(t?.id ?? ''),
    name: String(t?.function?.name ?? ''),
    arguments: String(t?.function?.arguments ?? ''),
  }))
  return {
    id: String(json.id ?? ''),
    model: String(json.model ?? ''),
    text: typeof msg.content === 'string' ? msg.content : '',
    toolCalls,
    stopReason: stopReasons[choice?.finish_reason] ?? 'stop',
    usage: usageOf(json.usage),
    raw: { protocol: 'openai', body: json },
  }
}

const SET_ONCE = new Set(['role', 'id', 'type', 'index'])

/** Fold one chunk's choice into the message it builds: strings grow, objects merge, arrays extend. */
function foldChoice(choices: Array<Record<string, any>>, c: Record<string, any>): void {
  const i = Number.isSafeInteger(c.index) && c.index >= 0 && c.index < 128 ? c.index : 0
  const acc = (choices[i] ??= { index: i, message: {}, logprobs: null, finish_reason: null })
  if (isObject(c.delta)) {
    const { tool_calls: calls, ...rest } = c.delta
    mergeDelta(acc.message, rest)
    if (Array.isArray(calls)) {
      const list: Array<Record<string, any>> = (acc.message.tool_calls ??= [])
      for (const tc of calls) {
        if (!isObject(tc)) continue
        const k = Number.isSafeInteger(tc.index) && tc.index >= 0 && tc.index < 1024 ? tc.index : list.length
        mergeDelta((list[k] ??= {}), tc)
      }
    }
  }
  if (isObject(c.logprobs)) mergeDelta((acc.logprobs ??= {}), c.logprobs)
  if (c.finish_reason) acc.finish_reason = c.finish_reason
}

function mergeDelta(into: Record<string, any>, delta: Record<string, any>): void {
  for (const [k, v] of Object.entries(delta)) {
    const cur = into[k]
    if (typeof v === 'string' && typeof cur === 'string' && !SET_ONCE.has(k)) into[k] = cur + v
    else if (Array.isArray(v) && Array.isArray(cur)) cur.push(...v)
    else if (isObject(v) && isObject(cur)) mergeDelta(cur, v)
    else if (v !== null || cur === undefined) into[k] = isObject(v) ? ownCopy(v) : Array.isArray(v) ? [...v] : v
  }
}

/** a copy whose objects at every depth are the reader's own: a later delta merged into them never changes a parsed event (which parseEventJson may give out again) */
function ownCopy(v: Record<string, any>): Record<string, any> {
  const out = { ...v }
  for (const k in out) if (isObject(out[k])) out[k] = ownCopy(out[k])
  return out
}

function finishChoice(c: Record<string, any>): Record<string, any> {
  const { index, ...message } = c.message
  const toolCalls = Array.isArray(message.tool_calls)
    ? message.tool_calls.filter(Boolean).map(({ index: _i, ...t }: any) => t)
    : undefined
  return {
    index: c.index,
    message: { role: 'assistant', content: null, ...message, ...(toolCalls ? { tool_calls: toolCalls } : {}) },
    logprobs: c.logprobs,
    finish_reason: c.finish_reason,
  }
}

/** One choice of a whole completion as the chunks that stream it. */
function* choiceChunks(base: Record<string, unknown>, choice: Record<string, any>): RenderSteps {
  const index = choice.index ?? 0
  const chunk = (delta: unknown, extra: Record<string, unknown> = {}) =>
    sse({ ...base, choices: [{ index, delta, logprobs: null, finish_reason: null, ...extra }] })
  const { role: _role, content, tool_calls: calls, ...others } = isObject(choice.message) ? choice.message : {}
  yield chunk({ role: 'assistant', content: '' })
  for (const [k, v] of Object.entries(others)) if (v !== null && v !== undefined) yield chunk({ [k]: v })
  let first = true
  for (const { text: piece } of textPieces(typeof content === 'string' ? content : '')) {
    yield chunk({ content: piece }, first && choice.logprobs ? { logprobs: choice.logprobs } : {})
    first = false
  }
  if (Array.isArray(calls)) for (let i = 0; i < calls.length; i++) yield* callChunks(chunk, i, calls[i])
  yield chunk({}, { finish_reason: choice.finish_reason ?? 'stop' })
}

/** One tool call's chunks: whole, or (arguments of megabytes) its first piece with the call, the rest a piece a chunk */
function* callChunks(chunk: (delta: unknown) => string, index: number, call: any): RenderSteps {
  const args = call?.function?.arguments
  if (typeof args !== 'string' || args.length <= ARGS_PIECE_CHARS)
    return yield chunk({ tool_calls: [{ index, ...call }] })
  const pieces = cutString(args, ARGS_PIECE_CHARS)
  yield chunk({ tool_calls: [{ index, ...call, function: { ...call.function, arguments: pieces[0] } }] })
  for (let k = 1; k < pieces.length; k++) yield chunk({ tool_calls: [{ index, function: { arguments: pieces[k] } }] })
}
