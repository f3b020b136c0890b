// Client bodies into the neutral request. The adapters' parse() has already checked the types the
// proxy reads; what is checked here is what translation itself relies on.
import { ProtocolError, isObject } from '../protocols/shared.ts'
import type { ProtocolName } from '../types.ts'
import {
  argsText,
  cannot,
  checkKnown,
  imageFromUrl,
  num,
  str,
  type MediaPart,
  type NeutralMessage,
  type NeutralRequest,
  type NeutralTool,
  type NeutralToolChoice,
  type Part,
} from './neutral.ts'

type Reader = (
  body: Record<string, any>,
  to: ProtocolName,
  opts: { pathModel?: string; stream: boolean },
) => NeutralRequest

const base = (model: string, stream: boolean): NeutralRequest => ({
  model,
  system: '',
  messages: [],
  stream,
  dropped: [],
})

// ---------------------------------------------------------------- OpenAI Chat Completions

const OPENAI_KNOWN = new Set([
  'model',
  'messages',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'response_format',
  'stop',
  'temperature',
  'top_p',
  'seed',
  'presence_penalty',
  'frequency_penalty',
  'max_tokens',
  'max_completion_tokens',
  'metadata',
  'user',
  'stream',
  'stream_options',
  'store',
  'n',
  'service_tier',
  'safety_identifier',
  'prompt_cache_key',
  'reasoning_effort',
  'verbosity',
])

function openaiParts(content: unknown, where: string): MediaPart[] {
  if (typeof content === 'string') return content ? [{ type: 'text', text: content }] : []
  if (content == null) return []
  const out: MediaPart[] = []
  for (const p of content as any[]) {
    if (p.type === 'text') out.push({ type: 'text', text: p.text })
    else if (p.type === 'image_url')
      out.push(imageFromUrl(str(isObject(p.image_url) ? p.image_url.url : p.image_url, `${where}.image_url.url`)))
    else if (p.type === 'refusal') out.push({ type: 'text', text: String(p.refusal ?? '') })
    else cannot(`a \`${String(p.type).slice(0, 64)}\` content part`, where)
  }
  return out
}

function openaiMessage(m: any, i: number, to: ProtocolName): NeutralMessage {
  const where = `messages[${i}]`
  if (m.role === 'system' || m.role === 'developer') return { role: 'system', parts: openaiParts(m.content, to) }
  if (m.role === 'user') return { role: 'user', parts: openaiParts(m.content, to) }
  if (m.role === 'tool')
    return {
      role: 'user',
      parts: [
        { type: 'tool_result', id: str(m.tool_call_id, `${where}.tool_call_id`), content: openaiParts(m.content, to) },
      ],
    }
  if (m.role === 'assistant') {
    const parts: Part[] = openaiParts(m.content, to)
    for (const c of Array.isArray(m.tool_calls) ? m.tool_calls : []) {
      if (c?.type !== undefined && c.type !== 'function') cannot(`a \`${String(c.type).slice(0, 64)}\` tool call`, to)
      parts.push({
        type: 'tool_call',
        id: str(c?.id, `${where}.tool_calls[].id`),
        name: str(c?.function?.name, `${where}.tool_calls[].function.name`),
        args: argsText(c.function.arguments),
      })
    }
    if (m.function_call) cannot('the legacy `function_call` message', to)
    return { role: 'assistant', parts }
  }
  return cannot(`the message role "${String(m.role).slice(0, 64)}"`, to)
}

/**
 * A tool the vendor cannot run (a hosted tool, a custom grammar tool, a namespace) is only offered:
 * it is left out and named in the dropped header, so an agent keeps the tools the vendor can run.
 * A request that forces one (tool_choice) is still a 400.
 */
export function droppedTool(n: NeutralRequest, type: unknown, name?: unknown): void {
  n.dropped.push(`tool ${String(type).slice(0, 32)}${typeof name === 'string' ? ` ${name.slice(0, 64)}` : ''}`)
}

function openaiTools(tools: unknown, n: NeutralRequest): NeutralTool[] | undefined {
  if (!Array.isArray(tools)) return undefined
  const out: NeutralTool[] = []
  for (const t of tools) {
    if (t?.type !== 'function' || !isObject(t.function)) droppedTool(n, t?.type, t?.custom?.name ?? t?.name)
    else
      out.push({
        name: str(t.function.name, 'tools[].function.name'),
        description: t.function.description,
        parameters: t.function.parameters ?? { type: 'object', properties: {} },
        strict: t.function.strict,
      })
  }
  return out
}

function openaiChoice(c: unknown, to: ProtocolName): NeutralToolChoice | undefined {
  if (c === undefined || c === null) return undefined
  if (c === 'auto' || c === 'none' || c === 'required') return c
  if (isObject(c) && c.type === 'function' && typeof c.function?.name === 'string') return { name: c.function.name }
  return cannot('this `tool_choice`', to)
}

/** response_format (Chat Completions) or text.format (Responses) into the neutral JSON request. */
function jsonFormat(f: unknown, to: ProtocolName): NeutralRequest['json'] {
  if (!isObject(f) || f.type === 'text') return undefined
  if (f.type === 'json_object') return {}
  if (f.type === 'json_schema') {
    const s = isObject(f.json_schema) ? f.json_schema : f
    return { schema: s.schema, name: s.name, strict: s.strict }
  }
  return cannot(`the response format "${String(f.type).slice(0, 64)}"`, to)
}

const readOpenAI: Reader = (body, to, { stream }) => {
  checkKnown(body, OPENAI_KNOWN, 'openai', to)
  if (body.n !== undefined && body.n !== 1) cannot('`n` above 1', to)
  const n = base(body.model, stream)
  for (const [i, m] of (body.messages as any[]).entries()) {
    const msg = openaiMessage(m, i, to)
    // leading system messages are the system prompt; later ones stay where they are
    if (msg.role === 'system' && n.messages.length === 0)
      n.system += (n.system ? '\n' : '') + msg.parts.map((p) => (p.type === 'text' ? p.text : '')).join('\n')
    else n.messages.push(msg)
  }
  n.tools = openaiTools(body.tools, n)
  n.toolChoice = openaiChoice(body.tool_choice, to)
  if (body.parallel_tool_calls === false) n.parallelToolCalls = false
  n.json = jsonFormat(body.response_format, to)
  n.stop =
    body.stop === undefined || body.stop === null
      ? undefined
      : Array.isArray(body.stop)
        ? body.stop.map(String)
        : [String(body.stop)]
  n.temperature = num(body.temperature, 'temperature')
  n.topP = num(body.top_p, 'top_p')
  n.seed = num(body.seed, 'seed')
  n.presencePenalty = num(body.presence_penalty, 'presence_penalty')
  n.frequencyPenalty = num(body.frequency_penalty, 'frequency_penalty')
  n.maxTokens = body.max_completion_tokens ?? body.max_tokens
  n.user =
    typeof body.user === 'string'
      ? body.user
      : typeof body.safety_identifier === 'string'
        ? body.safety_identifier
        : undefined
  // reasoning effort and verbosity are how OpenAI's reasoning models work (dropped, as Anthropic's thinking is)
  for (const k of ['metadata', 'store', 'service_tier', 'prompt_cache_key', 'reasoning_effort', 'verbosity'])
    if (body[k] != null) n.dropped.push(k)
  return n
}

// ---------------------------------------------------------------- Anthropic Messages

const ANTHROPIC_KNOWN = new Set([
  'model',
  'messages',
  'system',
  'max_tokens',
  'stop_sequences',
  'temperature',
  'top_p',
  'top_k',
  'tools',
  'tool_choice',
  'metadata',
  'stream',
  'thinking',
  'service_tier',
  'output_format',
  'output_config',
  'context_management',
])

function anthropicMedia(b: any, to: ProtocolName): MediaPart {
  if (b.type === 'text') return { type: 'text', text: b.text }
  if (b.type === 'image' && isObject(b.source)) {
    if (b.source.type === 'base64') return { type: 'image', mediaType: b.source.media_type, data: b.source.data }
    if (b.source.type === 'url') return { type: 'image', url: str(b.source.url, 'image source url') }
  }
  return cannot(`a \`${String(b.type).slice(0, 64)}\` content block`, to)
}

function anthropicMessage(m: any, n: NeutralRequest, to: ProtocolName): NeutralMessage {
  if (m.role !== 'user' && m.role !== 'assistant' && m.role !== 'system')
    cannot(`the message role "${String(m.role).slice(0, 64)}"`, to)
  const blocks: any[] = typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : m.content
  const parts: Part[] = []
  for (const b of blocks) {
    if (b.cache_control && !n.dropped.includes('cache_control')) n.dropped.push('cache_control')
    if (b.type === 'tool_use')
      parts.push({
        type: 'tool_call',
        id: str(b.id, 'tool_use.id'),
        name: str(b.name, 'tool_use.name'),
        args: argsText(b.input),
      })
    else if (b.type === 'tool_result') {
      const content =
        typeof b.content === 'string'
          ? [{ type: 'text' as const, text: b.content }]
          : Array.isArray(b.content)
            ? b.content.map((c: any) => anthropicMedia(c, to))
            : []
      parts.push({
        type: 'tool_result',
        id: str(b.tool_use_id, 'tool_result.tool_use_id'),
        content,
        ...(b.is_error ? { isError: true } : {}),
      })
    }
    // a previous answer's thinking is the vendor's own state: another vendor cannot read it
    else if (b.type === 'thinking' || b.type === 'redacted_thinking') {
      if (!n.dropped.includes('thinking blocks')) n.dropped.push('thinking blocks')
    } else parts.push(anthropicMedia(b, to))
  }
  return { role: m.role, parts }
}

function anthropicChoice(c: any, n: NeutralRequest, to: ProtocolName): NeutralToolChoice | undefined {
  if (!isObject(c)) return undefined
  if (c.disable_parallel_tool_use === true) n.parallelToolCalls = false
  if (c.type === 'auto' || c.type === 'none') return c.type
  if (c.type === 'any') return 'required'
  if (c.type === 'tool') return { name: str(c.name, 'tool_choice.name') }
  return cannot('this `tool_choice`', to)
}

/** output_config: effort is how this vendor reasons (dropped, as thinking); a format is JSON output. */
function outputConfig(c: unknown, n: NeutralRequest, to: ProtocolName): void {
  if (!isObject(c)) return
  for (const k in c) {
    if (k === 'effort') n.dropped.push('output_config.effort')
    else if (k === 'format' && isObject(c.format) && c.format.type === 'json_schema')
      n.json = { schema: c.format.schema }
    else cannot(`\`output_config.${k.slice(0, 64)}\``, to)
  }
}

const readAnthropic: Reader = (body, to, { stream }) => {
  checkKnown(body, ANTHROPIC_KNOWN, 'anthropic', to)
  const n = base(body.model, stream)
  n.system =
    typeof body.system === 'string'
      ? body.system
      : Array.isArray(body.system)
        ? body.system
            .map((b: any) =>
              b.type === 'text' ? b.text : cannot(`a \`${String(b.type).slice(0, 64)}\` system block`, to),
            )
            .join('\n')
        : ''
  if (Array.isArray(body.system) && body.system.some((b: any) => b.cache_control)) n.dropped.push('cache_control')
  n.messages = (body.messages as any[]).map((m) => anthropicMessage(m, n, to))
  if (Array.isArray(body.tools)) {
    n.tools = []
    for (const t of body.tools) {
      if (t.cache_control && !n.dropped.includes('cache_control')) n.dropped.push('cache_control')
      if (t.type !== undefined && t.type !== 'custom') droppedTool(n, t.type, t.name)
      else
        n.tools.push({
          name: str(t.name, 'tools[].name'),
          description: t.description,
          parameters: t.input_schema ?? { type: 'object', properties: {} },
          strict: t.strict,
        })
    }
  }
  n.toolChoice = anthropicChoice(body.tool_choice, n, to)
  if (isObject(body.output_format))
    n.json =
      body.output_format.type === 'json_schema'
        ? { schema: body.output_format.schema }
        : cannot('this `output_format`', to)
  outputConfig(body.output_config, n, to)
  n.stop = Array.isArray(body.stop_sequences) ? body.stop_sequences.map(String) : undefined
  n.temperature = num(body.temperature, 'temperature')
  n.topP = num(body.top_p, 'top_p')
  n.topK = num(body.top_k, 'top_k')
  n.maxTokens = body.max_tokens
  if (isObject(body.metadata) && typeof body.metadata.user_id === 'string') n.user = body.metadata.user_id
  // extended thinking is how this vendor reasons; another one reasons its own way or not at all
  if (isObject(body.thinking) && body.thinking.type !== 'disabled') n.dropped.push('thinking')
  for (const k of ['service_tier', 'context_management']) if (body[k] != null) n.dropped.push(k)
  return n
}

export type { Reader }
export { jsonFormat, openaiChoice, readAnthropic, readOpenAI }

/** A tool result's text for vendors whose results are text only. */
export function resultText(content: MediaPart[], to: ProtocolName): string {
  if (content.some((c) => c.type === 'image')) cannot('an image in a tool result', to)
  return content.map((c) => (c.type === 'text' ? c.text : '')).join('\n')
}

export function requireMessages(n: NeutralRequest): void {
  if (n.messages.length === 0) throw new ProtocolError('the conversation has no messages besides the system prompt')
}
