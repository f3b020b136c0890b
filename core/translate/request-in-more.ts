// Gemini and Responses client bodies into the neutral request (OpenAI and Anthropic: request-in.ts).
import { isObject } from '../protocols/shared.ts'
import type { ProtocolName } from '../types.ts'
import {
  argsText,
  cannot,
  checkKnown,
  imageFromUrl,
  jsonText,
  num,
  str,
  type MediaPart,
  type NeutralMessage,
  type NeutralRequest,
  type Part,
} from './neutral.ts'
import { droppedTool, jsonFormat, openaiChoice, type Reader } from './request-in.ts'

// ---------------------------------------------------------------- Gemini

const GEMINI_KNOWN = new Set([
  'contents',
  'systemInstruction',
  'system_instruction',
  'tools',
  'toolConfig',
  'tool_config',
  'generationConfig',
  'generation_config',
  'safetySettings',
  'safety_settings',
  'model',
])
const GENERATION_KNOWN = new Set([
  'temperature',
  'topP',
  'topK',
  'maxOutputTokens',
  'stopSequences',
  'candidateCount',
  'responseMimeType',
  'responseSchema',
  'responseJsonSchema',
  'seed',
  'presencePenalty',
  'frequencyPenalty',
  'thinkingConfig',
  'responseModalities',
])

function geminiMedia(p: any, to: ProtocolName): MediaPart | undefined {
  if (typeof p.text === 'string') return { type: 'text', text: p.text }
  if (isObject(p.inlineData)) return { type: 'image', mediaType: p.inlineData.mimeType, data: p.inlineData.data }
  if (isObject(p.fileData))
    return { type: 'image', url: str(p.fileData.fileUri, 'fileData.fileUri'), mediaType: p.fileData.mimeType }
  return undefined
}

/** the objects of a Gemini body whose JSON text the translation makes: calls' arguments, results' responses */
export function geminiJsonValues(body: Record<string, any>): { args: unknown[]; responses: unknown[] } {
  const args: unknown[] = []
  const responses: unknown[] = []
  for (const c of Array.isArray(body.contents) ? body.contents : [])
    for (const p of Array.isArray(c?.parts) ? c.parts : []) {
      if (isObject(p?.functionCall)) args.push(p.functionCall.args)
      else if (isObject(p?.functionResponse)) responses.push(p.functionResponse.response)
    }
  return { args, responses }
}

/** Gemini calls have no ids (or optional ones): results are matched to calls by name, in order. */
function geminiContents(contents: any[], n: NeutralRequest, to: ProtocolName): NeutralMessage[] {
  const open = new Map<string, string[]>()
  let count = 0
  return contents.map((c) => {
    const parts: Part[] = []
    for (const p of c.parts as any[]) {
      if (p.thought === true) {
        if (!n.dropped.includes('thought parts')) n.dropped.push('thought parts')
        continue
      }
      if (isObject(p.functionCall)) {
        const id = typeof p.functionCall.id === 'string' ? p.functionCall.id : `call_${count++}`
        const name = str(p.functionCall.name, 'functionCall.name')
        open.set(name, [...(open.get(name) ?? []), id])
        parts.push({ type: 'tool_call', id, name, args: argsText(p.functionCall.args) })
      } else if (isObject(p.functionResponse)) {
        const name = str(p.functionResponse.name, 'functionResponse.name')
        const id =
          typeof p.functionResponse.id === 'string'
            ? p.functionResponse.id
            : (open.get(name)?.shift() ?? `call_${name}`)
        parts.push({
          type: 'tool_result',
          id,
          content: [{ type: 'text', text: jsonText(p.functionResponse.response ?? {}) }],
        })
      } else {
        const media = geminiMedia(p, to)
        if (!media) cannot(`the part \`${Object.keys(p).join(', ').slice(0, 64)}\``, to)
        parts.push(media)
      }
    }
    return { role: c.role === 'model' ? 'assistant' : 'user', parts }
  })
}

function geminiGeneration(g: Record<string, any>, n: NeutralRequest, to: ProtocolName): void {
  checkKnown(g, GENERATION_KNOWN, 'gemini generationConfig', to)
  if (g.candidateCount !== undefined && g.candidateCount !== 1) cannot('`candidateCount` above 1', to)
  if (Array.isArray(g.responseModalities) && g.responseModalities.some((m: unknown) => m !== 'TEXT'))
    cannot('output modalities other than text', to)
  n.temperature = num(g.temperature, 'generationConfig.temperature')
  n.topP = num(g.topP, 'generationConfig.topP')
  n.topK = num(g.topK, 'generationConfig.topK')
  n.seed = num(g.seed, 'generationConfig.seed')
  n.presencePenalty = num(g.presencePenalty, 'generationConfig.presencePenalty')
  n.frequencyPenalty = num(g.frequencyPenalty, 'generationConfig.frequencyPenalty')
  n.maxTokens = g.maxOutputTokens
  n.stop = Array.isArray(g.stopSequences) ? g.stopSequences.map(String) : undefined
  if (g.responseMimeType === 'application/json') n.json = { schema: g.responseJsonSchema ?? g.responseSchema }
  else if (g.responseMimeType !== undefined && g.responseMimeType !== 'text/plain')
    cannot(`the response type "${String(g.responseMimeType).slice(0, 64)}"`, to)
  if (g.thinkingConfig != null) n.dropped.push('thinkingConfig')
}

export const readGemini: Reader = (body, to, { pathModel, stream }) => {
  checkKnown(body, GEMINI_KNOWN, 'gemini', to)
  const n: NeutralRequest = {
    model: String(pathModel ?? '').replace(/^models\//, ''),
    system: '',
    messages: [],
    stream,
    dropped: [],
  }
  const sys = body.systemInstruction ?? body.system_instruction
  n.system =
    typeof sys === 'string'
      ? sys
      : isObject(sys) && Array.isArray(sys.parts)
        ? sys.parts.map((p: any) => p.text ?? '').join('\n')
        : ''
  n.messages = geminiContents(body.contents, n, to)
  if (Array.isArray(body.tools)) {
    n.tools = []
    for (const t of body.tools) {
      for (const k of Object.keys(t))
        if (k !== 'functionDeclarations' && k !== 'function_declarations') droppedTool(n, k)
      for (const f of t.functionDeclarations ?? t.function_declarations ?? [])
        n.tools.push({
          name: str(f.name, 'functionDeclarations[].name'),
          description: f.description,
          parameters: f.parametersJsonSchema ?? f.parameters ?? { type: 'object', properties: {} },
        })
    }
  }
  const fc = (body.toolConfig ?? body.tool_config)?.functionCallingConfig
  if (isObject(fc)) {
    const names = Array.isArray(fc.allowedFunctionNames) ? fc.allowedFunctionNames : []
    if (names.length > 1) cannot('more than one of `allowedFunctionNames`', to)
    n.toolChoice =
      fc.mode === 'NONE'
        ? 'none'
        : fc.mode === 'ANY'
          ? names.length === 1
            ? { name: String(names[0]) }
            : 'required'
          : 'auto'
  }
  const gen = body.generationConfig ?? body.generation_config
  if (isObject(gen)) geminiGeneration(gen, n, to)
  if (body.safetySettings ?? body.safety_settings) n.dropped.push('safetySettings')
  return n
}

// ---------------------------------------------------------------- OpenAI Responses

const RESPONSES_KNOWN = new Set([
  'model',
  'input',
  'instructions',
  'tools',
  'tool_choice',
  'text',
  'reasoning',
  'max_output_tokens',
  'temperature',
  'top_p',
  'parallel_tool_calls',
  'metadata',
  'store',
  'stream',
  'include',
  'prompt_cache_key',
  'user',
  'safety_identifier',
  'service_tier',
  'truncation',
  'stream_options',
  'client_metadata',
])

function responsesContent(content: unknown, to: ProtocolName): MediaPart[] {
  if (typeof content === 'string') return content ? [{ type: 'text', text: content }] : []
  return (content as any[]).map((p) => {
    if (p.type === 'input_text' || p.type === 'output_text' || p.type === 'text') return { type: 'text', text: p.text }
    if (p.type === 'refusal') return { type: 'text', text: String(p.refusal ?? '') }
    if (p.type === 'input_image' && typeof p.image_url === 'string') return imageFromUrl(p.image_url)
    return cannot(`a \`${String(p.type).slice(0, 64)}\` content part`, to)
  })
}

/** Input items into messages; consecutive items of one role become one message. */
function responsesItems(items: any[], n: NeutralRequest, to: ProtocolName): void {
  const push = (role: NeutralMessage['role'], part: Part) => {
    const last = n.messages.at(-1)
    if (last && last.role === role && role !== 'system') last.parts.push(part)
    else n.messages.push({ role, parts: [part] })
  }
  for (const item of items) {
    const type = item.type ?? 'message'
    if (type === 'message') {
      const role =
        item.role === 'assistant'
          ? 'assistant'
          : item.role === 'user'
            ? 'user'
            : item.role === 'system' || item.role === 'developer'
              ? 'system'
              : cannot(`the role "${String(item.role).slice(0, 64)}"`, to)
      const parts = responsesContent(item.content, to)
      if (role === 'system' && n.messages.length === 0)
        n.system += (n.system ? '\n' : '') + parts.map((p) => (p.type === 'text' ? p.text : '')).join('\n')
      else for (const p of parts) push(role, p)
    } else if (type === 'function_call')
      push('assistant', {
        type: 'tool_call',
        id: str(item.call_id, 'function_call.call_id'),
        name: str(item.name, 'function_call.name'),
        args: argsText(item.arguments),
      })
    else if (type === 'function_call_output') {
      const content =
        typeof item.output === 'string'
          ? [{ type: 'text' as const, text: item.output }]
          : responsesContent(item.output ?? '', to)
      push('user', { type: 'tool_result', id: str(item.call_id, 'function_call_output.call_id'), content })
    }
    // reasoning is the vendor's own encrypted state: no other vendor can read it
    else if (type === 'reasoning') n.dropped.push('reasoning item')
    else cannot(`the input item \`${String(type).slice(0, 64)}\``, to)
  }
}

/** Function tools translated; others left out with a header (see droppedTool). */
function responsesTools(tools: any[], n: NeutralRequest): NeutralRequest['tools'] {
  const out: NonNullable<NeutralRequest['tools']> = []
  for (const t of tools) {
    if (t?.type === 'function')
      out.push({
        name: str(t.name, 'tools[].name'),
        description: t.description ?? undefined,
        parameters: t.parameters ?? { type: 'object', properties: {} },
        strict: t.strict ?? undefined,
      })
    else droppedTool(n, t?.type, t?.name)
  }
  return out
}

export const readResponses: Reader = (body, to, { stream }) => {
  checkKnown(body, RESPONSES_KNOWN, 'responses', to)
  const n: NeutralRequest = { model: body.model, system: '', messages: [], stream, dropped: [] }
  if (body.instructions != null)
    n.system = typeof body.instructions === 'string' ? body.instructions : cannot('`instructions` as items', to)
  responsesItems(typeof body.input === 'string' ? [{ role: 'user', content: body.input }] : (body.input ?? []), n, to)
  if (Array.isArray(body.tools)) n.tools = responsesTools(body.tools, n)
  const tc = body.tool_choice
  n.toolChoice =
    isObject(tc) && tc.type === 'function' ? { name: str(tc.name, 'tool_choice.name') } : openaiChoice(tc, to)
  if (body.parallel_tool_calls === false) n.parallelToolCalls = false
  n.json = jsonFormat(body.text?.format, to)
  n.temperature = num(body.temperature, 'temperature')
  n.topP = num(body.top_p, 'top_p')
  n.maxTokens = body.max_output_tokens ?? undefined
  n.user =
    typeof body.user === 'string'
      ? body.user
      : typeof body.safety_identifier === 'string'
        ? body.safety_identifier
        : undefined
  if (body.text?.verbosity != null) n.dropped.push('text.verbosity')
  for (const k of [
    'reasoning',
    'metadata',
    'prompt_cache_key',
    'service_tier',
    'truncation',
    'include',
    'client_metadata',
  ])
    if (body[k] != null) n.dropped.push(k)
  const dropped = n.dropped.filter((d) => d === 'reasoning item').length
  if (dropped) n.dropped = [...n.dropped.filter((d) => d !== 'reasoning item'), `reasoning items (${dropped})`]
  return n
}
