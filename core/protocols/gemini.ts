// Gemini generateContent / streamGenerateContent (alt=sse): the model comes from the path.
import type { CanonicalAnswer, CanonicalMessage, Usage } from '../types.ts'
import { canonicalJson } from '../canonical.ts'
import { NotAnAnswerError, ProtocolError, checkFieldTypes, checkRole, checkModelName, chunkText, emptyUsage, isObject, sse, type ProtocolAdapter, type StreamReader } from './shared.ts'

const FIELD_TYPES = { tools: 'array', toolConfig: 'object', generationConfig: 'object', safetySettings: 'array', systemInstruction: ['object', 'string'], system_instruction: ['object', 'string'] } as const
const GENERATION_TYPES = { temperature: 'number', topP: 'number', topK: 'number', candidateCount: 'integer', stopSequences: 'array', seed: 'integer', responseMimeType: 'string' } as const

const statusNames: Record<number, string> = { 400: 'INVALID_ARGUMENT', 401: 'UNAUTHENTICATED', 403: 'PERMISSION_DENIED', 404: 'NOT_FOUND', 413: 'INVALID_ARGUMENT', 429: 'RESOURCE_EXHAUSTED', 500: 'INTERNAL', 502: 'UNAVAILABLE', 503: 'UNAVAILABLE', 504: 'DEADLINE_EXCEEDED' }
const stopReasons: Record<string, CanonicalAnswer['stopReason']> = { STOP: 'stop', MAX_TOKENS: 'length', SAFETY: 'content_filter', RECITATION: 'content_filter', PROHIBITED_CONTENT: 'content_filter' }
const toGeminiStop: Record<CanonicalAnswer['stopReason'], string> = { stop: 'STOP', length: 'MAX_TOKENS', tool_calls: 'STOP', content_filter: 'SAFETY' }

function partsText(parts: unknown, where: string): { text: string; extra: string; images: boolean } {
  if (!Array.isArray(parts)) throw new ProtocolError(`${where}.parts must be an array`)
  const texts: string[] = []
  const extras: unknown[] = []
  let images = false
  for (const p of parts) {
    if (!isObject(p)) throw new ProtocolError(`${where}.parts: each part must be an object`)
    if (typeof p.text === 'string') texts.push(p.text)
    else {
      if (p.inlineData || p.fileData) images = true
      extras.push(p)
    }
  }
  return { text: texts.join('\n'), extra: extras.length ? canonicalJson(extras) : '', images }
}

function usageOf(u: any): Usage {
  if (!isObject(u)) return emptyUsage()
  const cached = Number(u.cachedContentTokenCount ?? 0)
  return { inputTokens: Number(u.promptTokenCount ?? 0), outputTokens: Number(u.candidatesTokenCount ?? 0) + Number(u.thoughtsTokenCount ?? 0), cacheReadTokens: cached, cacheWriteTokens: 0 }
}

function candidate(a: CanonicalAnswer, parts: unknown[], finish: boolean) {
  return { content: { role: 'model', parts }, ...(finish ? { finishReason: toGeminiStop[a.stopReason] } : {}), index: 0 }
}

function usageMetadata(u: Usage) {
  return { promptTokenCount: u.inputTokens, candidatesTokenCount: u.outputTokens, totalTokenCount: u.inputTokens + u.outputTokens, ...(u.cacheReadTokens ? { cachedContentTokenCount: u.cacheReadTokens } : {}) }
}

function toolParts(a: CanonicalAnswer) {
  return a.toolCalls.map((t) => {
    let args: unknown = {}
    try { args = t.arguments ? JSON.parse(t.arguments) : {} } catch { args = {} }
    return { functionCall: { name: t.name, args } }
  })
}

function readChunk(json: any, acc: { text: string; tools: CanonicalAnswer['toolCalls']; finish?: string; usage?: Usage; model: string; id: string }) {
  const c = json?.candidates?.[0]
  for (const p of c?.content?.parts ?? []) {
    if (typeof p.text === 'string' && !p.thought) acc.text += p.text
    if (p.functionCall) acc.tools.push({ id: `call_${acc.tools.length}`, name: String(p.functionCall.name), arguments: JSON.stringify(p.functionCall.args ?? {}) })
  }
  if (c?.finishReason) acc.finish = c.finishReason
  if (json?.usageMetadata) acc.usage = usageOf(json.usageMetadata)
  acc.model ||= json?.modelVersion ?? ''
  acc.id ||= json?.responseId ?? ''
}

export const geminiProtocol: ProtocolAdapter = {
  name: 'gemini',

  parse(body, { pathModel, stream }) {
    if (!isObject(body)) throw new ProtocolError('request body must be a JSON object')
    if (!pathModel) throw new ProtocolError('the model is required in the path: /v1beta/models/{model}:generateContent')
    checkModelName(pathModel, 'the model in the path')
    if (!Array.isArray(body.contents) || body.contents.length === 0) throw new ProtocolError('`contents` is required and must be a non-empty array')
    checkFieldTypes(body, FIELD_TYPES)
    if (isObject(body.generationConfig)) checkFieldTypes(body.generationConfig, GENERATION_TYPES, 'generationConfig.')
    let hasImages = false
    const messages: CanonicalMessage[] = body.contents.map((c: any, i: number) => {
      if (!isObject(c)) throw new ProtocolError(`contents[${i}] must be an object`)
      if (c.role !== undefined) checkRole(c.role, `contents[${i}]`)
      const { text, extra, images } = partsText(c.parts, `contents[${i}]`)
      hasImages ||= images
      const role = c.role === 'model' ? 'assistant' : c.role === 'function' ? 'tool' : 'user'
      return { role, text, ...(extra ? { extra } : {}) }
    })
    const sys = body.systemInstruction ?? body.system_instruction
    // the REST API takes the proto field names too: generation_config.max_output_tokens
    const gen = isObject(body.generationConfig) ? body.generationConfig : isObject(body.generation_config) ? body.generation_config : {}
    const { maxOutputTokens = gen.max_output_tokens, max_output_tokens: _snake, responseMimeType, responseSchema, ...params } = gen
    if (maxOutputTokens !== undefined && (!Number.isSafeInteger(maxOutputTokens) || maxOutputTokens < 1)) throw new ProtocolError('`generationConfig.maxOutputTokens` must be a positive integer')
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
  },

  errorBody(status, type, message) {
    return { error: { code: status, message, status: statusNames[status] ?? (status >= 500 ? 'INTERNAL' : 'INVALID_ARGUMENT'), details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: type, domain: 'agentmesh' }] } }
  },

  render(a) {
    return { candidates: [candidate(a, [...(a.text ? [{ text: a.text }] : []), ...toolParts(a)], true)], usageMetadata: usageMetadata(a.usage), modelVersion: a.model, responseId: a.id }
  },

  renderStream(a) {
    const pieces = chunkText(a.text)
    let out = ''
    pieces.forEach((text) => {
      out += sse({ candidates: [candidate(a, [{ text }], false)], modelVersion: a.model, responseId: a.id })
    })
    out += sse({ candidates: [candidate(a, toolParts(a), true)], usageMetadata: usageMetadata(a.usage), modelVersion: a.model, responseId: a.id })
    return out
  },

  streamError(status, type, message) {
    return sse(geminiProtocol.errorBody(status, type, message))
  },

  read(json) {
    const chunks = Array.isArray(json) ? json : [json]
    // an answer has candidates; a blocked prompt has only promptFeedback
    if (chunks.length === 0 || !chunks.every((c) => isObject(c) && (Array.isArray(c.candidates) || isObject(c.promptFeedback)))) throw new NotAnAnswerError('no `candidates`')
    const acc = { text: '', tools: [] as CanonicalAnswer['toolCalls'], model: '', id: '' } as Parameters<typeof readChunk>[1]
    // a non-SSE streamGenerateContent answer is a JSON array of chunks
    for (const chunk of chunks) readChunk(chunk, acc)
    return { id: acc.id, model: acc.model, text: acc.text, toolCalls: acc.tools, stopReason: acc.tools.length ? 'tool_calls' : stopReasons[acc.finish ?? 'STOP'] ?? 'stop', usage: acc.usage ?? emptyUsage() }
  },

  streamReader() {
    const acc = { text: '', tools: [] as CanonicalAnswer['toolCalls'], model: '', id: '' } as Parameters<typeof readChunk>[1]
    const reader: StreamReader = {
      event(data) {
        try { readChunk(JSON.parse(data), acc) } catch { /* not JSON: pass through untouched */ }
        return true
      },
      // Gemini has no end marker: a finishReason on the last chunk means it completed
      finish: () => acc.finish ? { id: acc.id, model: acc.model, text: acc.text, toolCalls: acc.tools, stopReason: acc.tools.length ? 'tool_calls' : stopReasons[acc.finish] ?? 'stop', usage: acc.usage ?? emptyUsage() } : undefined,
      partialUsage: () => acc.usage ?? emptyUsage(),
    }
    return reader
  },
}
