// Gemini generateContent / streamGenerateContent (alt=sse): the model comes from the path.
import type { CanonicalAnswer, CanonicalMessage, Operation, ToolCall, Usage } from '../types.ts'
import { canonicalJson, canonicalJsonSteps, joiner } from '../canonical.ts'
import { stringifySliced, withinBudget } from '../json-sliced.ts'
import type { Slicer } from '../slicer.ts'
import { parseEventJson } from './event-json.ts'
import {
  MAX_JSON_DEPTH,
  NotAnAnswerError,
  PARSE_STEP,
  ProtocolError,
  SLICED_PARSE_CHARS,
  checkFieldTypes,
  checkRole,
  checkModelName,
  emptyUsage,
  isObject,
  joinSteps,
  parseJsonSliced,
  runGenerator,
  runSteps,
  runStepsSliced,
  sse,
  textPieces,
  usageFor,
  type ParseOptions,
  type ParseSteps,
  type ProtocolAdapter,
  type StreamReader,
} from './shared.ts'

const FIELD_TYPES = {
  tools: 'array',
  toolConfig: 'object',
  generationConfig: 'object',
  safetySettings: 'array',
  systemInstruction: ['object', 'string'],
  system_instruction: ['object', 'string'],
} as const
const GENERATION_TYPES = {
  temperature: 'number',
  topP: 'number',
  topK: 'number',
  candidateCount: 'integer',
  stopSequences: 'array',
  seed: 'integer',
  responseMimeType: 'string',
} as const

const METHODS: Record<string, Operation> = {
  generateContent: 'chat',
  streamGenerateContent: 'chat',
  countTokens: 'count_tokens',
  embedContent: 'embeddings',
  batchEmbedContents: 'embeddings',
}

const statusNames: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  413: 'INVALID_ARGUMENT',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  502: 'UNAVAILABLE',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
}
const stopReasons: Record<string, CanonicalAnswer['stopReason']> = {
  STOP: 'stop',
  MAX_TOKENS: 'length',
  SAFETY: 'content_filter',
  RECITATION: 'content_filter',
  PROHIBITED_CONTENT: 'content_filter',
}
const toGeminiStop: Record<CanonicalAnswer['stopReason'], string> = {
  stop: 'STOP',
  length: 'MAX_TOKENS',
  tool_calls: 'STOP',
  content_filter: 'SAFETY',
}

type PartsText = { text: string; extra: string; images: boolean }

/**
 * parts as text and the canonical JSON of the others; pauses every PARSE_STEP parts, and inside a
 * large part when `sliced` (parseSliced: a body of megabytes; a small body's parse does no size check)
 */
function* partsSteps(parts: unknown, where: string, sliced = false): Generator<undefined, PartsText, undefined> {
  if (!Array.isArray(parts)) throw new ProtocolError(`${where}.parts must be an array`)
  const texts = joiner('\n')
  const extras = joiner(',')
  let images = false
  for (let i = 0; i < parts.length; i++) {
    if (i % PARSE_STEP === PARSE_STEP - 1) {
      texts.cut()
      extras.cut()
      yield
    }
    const p = parts[i]
    if (!isObject(p)) throw new ProtocolError(`${where}.parts: each part must be an object`)
    if (typeof p.text === 'string') texts.add(p.text)
    else {
      if (p.inlineData || p.fileData) images = true
      extras.add(sliced ? yield* canonicalJsonSteps(p) : canonicalJson(p))
    }
  }
  // the array's canonical JSON is its elements' joined
  return { text: texts.end('', ''), extra: extras.empty() ? '' : extras.end('[', ']'), images }
}

const partsText = (parts: unknown, where: string): PartsText => runGenerator(partsSteps(parts, where))

function usageOf(u: any): Usage {
  if (!isObject(u)) return emptyUsage()
  const cached = Number(u.cachedContentTokenCount ?? 0)
  return {
    inputTokens: Number(u.promptTokenCount ?? 0),
    outputTokens: Number(u.candidatesTokenCount ?? 0) + Number(u.thoughtsTokenCount ?? 0),
    cacheReadTokens: cached,
    cacheWriteTokens: 0,
  }
}

function usageMetadata(u: Usage) {
  return {
    promptTokenCount: u.inputTokens,
    candidatesTokenCount: u.outputTokens,
    totalTokenCount: u.inputTokens + u.outputTokens,
    ...(u.cacheReadTokens ? { cachedContentTokenCount: u.cacheReadTokens } : {}),
  }
}

function toolParts(a: CanonicalAnswer) {
  return a.toolCalls.map((t) => {
    let args: unknown = {}
    if (parsedArgs.has(t)) {
      // taken once: the rendered body holds it then, not the answer (which a cache may keep)
      args = parsedArgs.get(t)
      parsedArgs.delete(t)
    } else
      try {
        args = t.arguments ? JSON.parse(t.arguments) : {}
      } catch {
        args = {}
      }
    return { functionCall: { name: t.name, args } }
  })
}

// the value toolParts gives a call's arguments of megabytes (another protocol's answer), parsed in slices first
const parsedArgs = new WeakMap<ToolCall, unknown>()

/** the arguments of megabytes of an answer's calls parsed in slices, for its render: the values toolParts would parse */
export async function argsValuesSliced(a: CanonicalAnswer, slicer: Slicer): Promise<void> {
  for (const t of a.toolCalls) {
    if (t.arguments.length <= SLICED_PARSE_CHARS || parsedArgs.has(t)) continue
    let args: unknown
    try {
      const r = await parseJsonSliced(t.arguments, MAX_JSON_DEPTH, slicer)
      // nested deeper than a request may be: in one go, as toolParts does
      args = r.deep ? JSON.parse(t.arguments) : r.value
    } catch {
      args = {}
    }
    parsedArgs.set(t, args)
  }
}

type GeminiResponse = Record<string, any> & { candidates: Array<Record<string, any>> }

const isPlainText = (p: Record<string, any>) =>
  typeof p.text === 'string' && Object.keys(p).every((k) => k === 'text' || k === 'thought')

/** Append a streamed part: text continues the text part before it; a thoughtSignature closes it. */
function appendPart(parts: Array<Record<string, any>>, p: unknown): void {
  if (!isObject(p)) return
  const last = parts.at(-1)
  if (last && isPlainText(last) && typeof p.text === 'string' && !p.functionCall && !!last.thought === !!p.thought) {
    const { text, ...rest } = p
    last.text += text
    Object.assign(last, rest)
  } else parts.push({ ...p })
}

/** Fold one chunk into the whole response (as generateContent would have answered it). */
function foldChunk(acc: GeminiResponse, json: unknown): void {
  if (!isObject(json)) return
  for (const k in json) if (k !== 'candidates') acc[k] = json[k]
  const list = Array.isArray(json.candidates) ? json.candidates : []
  list.forEach((c: unknown, n: number) => {
    if (!isObject(c)) return
    const i = Number.isSafeInteger(c.index) && c.index >= 0 && c.index < 16 ? c.index : n
    const into = (acc.candidates[i] ??= { content: { role: 'model', parts: [] } })
    for (const k in c) if (k !== 'content') into[k] = c[k]
    if (isObject(c.content)) {
      if (typeof c.content.role === 'string') into.content.role = c.content.role
      for (const part of Array.isArray(c.content.parts) ? c.content.parts : []) appendPart(into.content.parts, part)
    }
  })
}

/** foldChunk for a chunk of tens of thousands of parts: the same fold, the loop given back every PARSE_STEP parts */
async function foldChunkSliced(acc: GeminiResponse, json: unknown, slicer: Slicer): Promise<void> {
  if (!isObject(json)) return
  for (const k in json) if (k !== 'candidates') acc[k] = json[k]
  const list = Array.isArray(json.candidates) ? json.candidates : []
  for (let n = 0; n < list.length; n++) {
    const c: unknown = list[n]
    if (!isObject(c)) continue
    const i = Number.isSafeInteger(c.index) && c.index >= 0 && c.index < 16 ? c.index : n
    const into = (acc.candidates[i] ??= { content: { role: 'model', parts: [] } })
    for (const k in c) if (k !== 'content') into[k] = c[k]
    if (!isObject(c.content)) continue
    if (typeof c.content.role === 'string') into.content.role = c.content.role
    const parts: unknown[] = Array.isArray(c.content.parts) ? c.content.parts : []
    for (let j = 0; j < parts.length; j++) {
      if (j % PARSE_STEP === PARSE_STEP - 1) await slicer.pause()
      appendPart(into.content.parts, parts[j])
    }
  }
}

// the text answerOf gives a call's arguments of megabytes, made in slices when they were read (argsTextsSliced)
const argsText = new WeakMap<object, string>()

/** a function call's arguments as JSON text (the answer's toolCalls[].arguments) */
export function functionArgsText(args: unknown): string {
  const v = args ?? {}
  return (typeof v === 'object' && argsText.get(v)) || JSON.stringify(v)
}

// arguments past either bound are stringified in slices (5 MB of them: 15-45 ms in one JSON.stringify)
const LARGE_ARGS_NODES = 4096
const LARGE_ARGS_CHARS = 256 * 1024

/**
 * The text functionArgsText gives the large arguments of the calls in a response (a chunk, or an
 * array of them), made in slices of `slicer` before the response is read: the same text.
 */
export async function argsTextsSliced(json: unknown, slicer: Slicer): Promise<void> {
  for (const chunk of Array.isArray(json) ? json : [json]) {
    const list = isObject(chunk) && Array.isArray(chunk.candidates) ? chunk.candidates : []
    for (const c of list) {
      const parts = isObject(c) && isObject(c.content) && Array.isArray(c.content.parts) ? c.content.parts : []
      for (const p of parts) {
        const args = isObject(p) && isObject(p.functionCall) ? p.functionCall.args : undefined
        if (typeof args !== 'object' || args === null || argsText.has(args)) continue
        if (withinBudget(args, LARGE_ARGS_NODES, LARGE_ARGS_CHARS)) continue
        await slicer.yield()
        const pieces = await stringifySliced(args, slicer)
        if (!pieces) continue
        // the one flat copy of megabytes: a slice of its own
        await slicer.yield()
        argsText.set(args, pieces.join(''))
      }
    }
  }
}

/** The neutral view of a whole response, which is kept as the vendor's body for exact replay. */
function answerOf(json: GeminiResponse): CanonicalAnswer {
  const c = json.candidates.find(Boolean)
  const parts: any[] = Array.isArray(c?.content?.parts) ? c.content.parts : []
  let text = ''
  const toolCalls: CanonicalAnswer['toolCalls'] = []
  for (const p of parts) {
    if (typeof p?.text === 'string' && !p.thought) text += p.text
    if (isObject(p?.functionCall))
      toolCalls.push({
        id: String(p.functionCall.id ?? `call_${toolCalls.length}`),
        name: String(p.functionCall.name),
        arguments: functionArgsText(p.functionCall.args),
      })
  }
  const body = { ...json, candidates: json.candidates.filter(Boolean) }
  return {
    id: String(json.responseId ?? ''),
    model: String(json.modelVersion ?? ''),
    text,
    toolCalls,
    stopReason: toolCalls.length ? 'tool_calls' : (stopReasons[c?.finishReason ?? 'STOP'] ?? 'stop'),
    usage: usageOf(json.usageMetadata),
    raw: { protocol: 'gemini', body },
  }
}

/**
 * A whole response as the chunks that stream it: a part per chunk (text in pieces); the last
 * chunk of a candidate carries its finishReason and the rest, the last chunk overall the usage.
 * One chunk at a time (a stream of megabytes is rendered in slices); each is given out once the
 * next is known, since the last one takes the response's top-level fields.
 */
function* chunkSteps(whole: Record<string, any>): Generator<Record<string, any>, void, undefined> {
  const { candidates, ...top } = whole
  const head: Record<string, unknown> = {}
  for (const k of ['modelVersion', 'responseId', 'createTime']) if (top[k] !== undefined) head[k] = top[k]
  let held: Record<string, any> | undefined
  for (const c of Array.isArray(candidates) ? candidates : []) {
    const { content, ...rest } = isObject(c) ? c : {}
    const role = content?.role ?? 'model'
    const chunk = (piece: Record<string, any> | undefined, last: boolean) => ({
      candidates: [{ content: { role, parts: piece ? [piece] : [] }, ...(last ? rest : { index: rest.index ?? 0 }) }],
      ...head,
    })
    // a candidate with no parts (a blocked answer) still gets its chunk
    let prev: Record<string, any> | undefined
    let any = false
    for (const piece of partPieces(Array.isArray(content?.parts) ? content.parts : [])) {
      if (any) {
        if (held) yield held
        held = chunk(prev, false)
      }
      prev = piece
      any = true
    }
    if (held) yield held
    held = chunk(prev, true)
  }
  held ??= { candidates: [], ...head }
  Object.assign(held, top)
  yield held
}

/** a candidate's parts as the pieces streamed: a text part cut into pieces, a signature on its last */
function* partPieces(parts: any[]): Generator<Record<string, any> | undefined, void, undefined> {
  for (const part of parts) {
    if (typeof part?.text !== 'string' || part.functionCall || part.text === '') {
      yield part
      continue
    }
    const { text, ...fields } = part
    for (const piece of textPieces(text))
      yield piece.last
        ? { text: piece.text, ...fields }
        : { text: piece.text, ...(part.thought ? { thought: true } : {}) }
  }
}

function* geminiSteps(body: any, { pathModel, stream }: ParseOptions, sliced = false): ParseSteps {
  if (!isObject(body)) throw new ProtocolError('request body must be a JSON object')
  // "models/" alone names no model once its resource prefix is dropped (the vendor URL would have none)
  if (!pathModel || pathModel === 'models/')
    throw new ProtocolError('the model is required in the path: /v1beta/models/{model}:generateContent')
  checkModelName(pathModel, 'the model in the path')
  if (!Array.isArray(body.contents) || body.contents.length === 0)
    throw new ProtocolError('`contents` is required and must be a non-empty array')
  checkFieldTypes(body, FIELD_TYPES)
  if (isObject(body.generationConfig)) checkFieldTypes(body.generationConfig, GENERATION_TYPES, 'generationConfig.')
  let hasImages = false
  const list: unknown[] = body.contents
  const messages: CanonicalMessage[] = []
  for (let i = 0; i < list.length; i++) {
    if (i % PARSE_STEP === PARSE_STEP - 1) yield
    const c = list[i]
    // a hole (a body built in code, not parsed) stays one, as Array#map leaves it
    if (c === undefined && !(i in list)) {
      messages.length = i + 1
      continue
    }
    if (!isObject(c)) throw new ProtocolError(`contents[${i}] must be an object`)
    if (c.role !== undefined) checkRole(c.role, `contents[${i}]`)
    const { text, extra, images } = yield* partsSteps(c.parts, `contents[${i}]`, sliced)
    hasImages ||= images
    const role = c.role === 'model' ? 'assistant' : c.role === 'function' ? 'tool' : 'user'
    messages[i] = { role, text, ...(extra ? { extra } : {}) }
  }
  const sys = body.systemInstruction ?? body.system_instruction
  // the REST API takes the proto field names too: generation_config.max_output_tokens
  const gen = isObject(body.generationConfig)
    ? body.generationConfig
    : isObject(body.generation_config)
      ? body.generation_config
      : {}
  const {
    maxOutputTokens = gen.max_output_tokens,
    max_output_tokens: _snake,
    responseMimeType,
    responseSchema,
    ...params
  } = gen
  if (maxOutputTokens !== undefined && (!Number.isSafeInteger(maxOutputTokens) || maxOutputTokens < 1))
    throw new ProtocolError('`generationConfig.maxOutputTokens` must be a positive integer')
  return {
    model: pathModel,
    system: isObject(sys) ? partsText(sys.parts ?? [], 'systemInstruction').text : typeof sys === 'string' ? sys : '',
    messages,
    tools: body.tools,
    toolChoice: body.toolConfig,
    responseFormat: responseMimeType || responseSchema ? { responseMimeType, responseSchema } : undefined,
    params: { ...params, ...(body.safetySettings ? { safetySettings: body.safetySettings } : {}) },
    stream: stream === true,
    maxTokens: maxOutputTokens,
    hasImages,
  }
}

export const geminiProtocol: ProtocolAdapter = {
  name: 'gemini',
  prepareRead: (json, slicer) => argsTextsSliced(json, slicer),

  parse: (body, opts) => runSteps(geminiSteps(body, opts)),
  parseSliced: (body, opts, slicer) => runStepsSliced(geminiSteps(body, opts, true), slicer),

  pathCall(modelAction) {
    let tail: string
    try {
      tail = decodeURIComponent(modelAction)
    } catch {
      throw new ProtocolError('the model in the path is not valid percent-encoding')
    }
    const i = tail.lastIndexOf(':')
    const method = i < 0 ? '' : tail.slice(i + 1)
    const model = i < 0 ? tail : tail.slice(0, i)
    const operation = METHODS[method]
    if (!operation)
      throw new ProtocolError(
        `unknown Gemini method "${method || tail}"; use :${Object.keys(METHODS).join(', :')}`,
        404,
        'not_found_error',
      )
    return { model, operation, stream: method === 'streamGenerateContent' }
  },

  countTokens: {
    // countTokens takes `contents` or a whole `generateContentRequest`
    request: (body) =>
      isObject(body) && isObject(body.generateContentRequest) && !body.contents ? body.generateContentRequest : body,
    answer: (tokens) => ({ totalTokens: tokens }),
  },

  errorBody(status, type, message) {
    return {
      error: {
        code: status,
        message,
        status: statusNames[status] ?? (status >= 500 ? 'INTERNAL' : 'INVALID_ARGUMENT'),
        details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: type, domain: 'agentmesh' }],
      },
    }
  },

  render(a) {
    // the vendor's own body when we have it: thought parts and their signatures, grounding and
    // safety metadata, and the usage of the call survive a cache hit
    if (a.raw?.protocol === 'gemini') return { ...a.raw.body, responseId: a.id }
    const parts = [...(a.text ? [{ text: a.text }] : []), ...toolParts(a)]
    return {
      candidates: [{ content: { role: 'model', parts }, finishReason: toGeminiStop[a.stopReason], index: 0 }],
      usageMetadata: usageMetadata(usageFor(a.usage, a.raw?.protocol, 'gemini')),
      modelVersion: a.model,
      responseId: a.id,
    }
  },

  renderStream(a) {
    return joinSteps(geminiProtocol.renderStreamSteps(a))
  },

  *renderStreamSteps(a) {
    for (const c of chunkSteps(geminiProtocol.render(a) as Record<string, any>)) yield sse(c)
  },

  renderArrayStream(a, search) {
    // streamGenerateContent without alt=sse answers one JSON array of the chunks
    return /[?&]alt=sse(&|$)/.test(search)
      ? undefined
      : [...chunkSteps(geminiProtocol.render(a) as Record<string, any>)]
  },

  streamError(status, type, message) {
    return sse(geminiProtocol.errorBody(status, type, message))
  },

  read(json) {
    const chunks = Array.isArray(json) ? json : [json]
    // an answer has candidates; a blocked prompt has only promptFeedback
    if (
      chunks.length === 0 ||
      !chunks.every((c) => isObject(c) && (Array.isArray(c.candidates) || isObject(c.promptFeedback)))
    )
      throw new NotAnAnswerError('no `candidates`')
    const acc: GeminiResponse = { candidates: [] }
    // a non-SSE streamGenerateContent answer is a JSON array of chunks
    for (const chunk of chunks) foldChunk(acc, chunk)
    return answerOf(acc)
  },

  streamReader() {
    const acc: GeminiResponse = { candidates: [] }
    const reader: StreamReader = {
      event(data) {
        try {
          foldChunk(acc, parseEventJson(data))
        } catch {
          /* not JSON: pass through untouched */
        }
        return true
      },
      async eventSliced(data, slicer) {
        let json: unknown
        try {
          json = parseEventJson(data)
        } catch {
          return true
        }
        await foldChunkSliced(acc, json, slicer)
        await argsTextsSliced(json, slicer)
        return true
      },
      // Gemini has no end marker: a finishReason on the last chunk means it completed
      finish: () => (acc.candidates.some((c) => c?.finishReason) ? answerOf(acc) : undefined),
      partialUsage: () => usageOf(acc.usageMetadata),
    }
    return reader
  },
}
