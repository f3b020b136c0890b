// Anthropic Messages: request parsing, answers and streams (message_start .. message_stop).
import type { CanonicalAnswer, CanonicalMessage, ToolCall, Usage } from '../types.ts'
import { canonicalJson } from '../canonical.ts'
import { NotAnAnswerError, ProtocolError, checkFieldTypes, checkRole, chunkText, emptyUsage, isObject, pick, requireModel, sse, type ProtocolAdapter, type StreamReader } from './shared.ts'

const FIELD_TYPES = {
  stream: 'boolean', tools: 'array', tool_choice: 'object', temperature: 'number', top_p: 'number', top_k: 'integer',
  stop_sequences: 'array', metadata: 'object', thinking: 'object', system: ['string', 'array'],
} as const

const PARAMS = ['temperature', 'top_p', 'top_k', 'stop_sequences', 'thinking'] as const

function blocksText(content: unknown, where: string): { text: string; extra: string; images: boolean } {
  if (typeof content === 'string') return { text: content, extra: '', images: false }
  if (!Array.isArray(content)) throw new ProtocolError(`${where} must be a string or an array of content blocks`)
  const texts: string[] = []
  const extras: unknown[] = []
  let images = false
  for (const b of content) {
    if (!isObject(b) || typeof b.type !== 'string') throw new ProtocolError(`${where}: each content block must be an object with a string \`type\``)
    if (b.type === 'text') {
      if (typeof b.text !== 'string') throw new ProtocolError(`${where}: a text block needs a string \`text\``)
      texts.push(b.text)
    }
    else {
      if (b.type === 'image' || b.type === 'document') images = true
      // cache_control is a billing hint, not part of the question
      const { cache_control: _cc, ...rest } = b
      extras.push(rest)
    }
  }
  return { text: texts.join('\n'), extra: extras.length ? canonicalJson(extras) : '', images }
}

const stopReasons: Record<string, CanonicalAnswer['stopReason']> = { end_turn: 'stop', stop_sequence: 'stop', max_tokens: 'length', tool_use: 'tool_calls', refusal: 'content_filter', pause_turn: 'stop' }
const toAnthropicStop: Record<CanonicalAnswer['stopReason'], string> = { stop: 'end_turn', length: 'max_tokens', tool_calls: 'tool_use', content_filter: 'refusal' }

function usageOf(u: any): Usage {
  if (!isObject(u)) return emptyUsage()
  return { inputTokens: Number(u.input_tokens ?? 0), outputTokens: Number(u.output_tokens ?? 0), cacheReadTokens: Number(u.cache_read_input_tokens ?? 0), cacheWriteTokens: Number(u.cache_creation_input_tokens ?? 0) }
}

function wireUsage(u: Usage) {
  return { input_tokens: u.inputTokens, output_tokens: u.outputTokens, cache_read_input_tokens: u.cacheReadTokens, cache_creation_input_tokens: u.cacheWriteTokens }
}

function contentBlocks(a: CanonicalAnswer) {
  const blocks: unknown[] = []
  if (a.text) blocks.push({ type: 'text', text: a.text })
  for (const t of a.toolCalls) {
    let input: unknown = {}
    try { input = t.arguments ? JSON.parse(t.arguments) : {} } catch { input = {} }
    blocks.push({ type: 'tool_use', id: t.id, name: t.name, input })
  }
  return blocks
}

export const anthropicProtocol: ProtocolAdapter = {
  name: 'anthropic',

  parse(body) {
    if (!isObject(body)) throw new ProtocolError('request body must be a JSON object')
    const model = requireModel(body.model)
    if (!Array.isArray(body.messages) || body.messages.length === 0) throw new ProtocolError('`messages` is required and must be a non-empty array')
    if (body.max_tokens !== undefined && (!Number.isSafeInteger(body.max_tokens) || body.max_tokens < 1)) throw new ProtocolError('`max_tokens` must be a positive integer')
    checkFieldTypes(body, FIELD_TYPES)
    let system = ''
    let hasImages = false
    if (body.system !== undefined) system = blocksText(body.system, '`system`').text
    const messages: CanonicalMessage[] = body.messages.map((m: any, i: number) => {
      // a role the proxy does not know (Claude Code's mid-conversation `system`) is forwarded as
      // is; only a role that is not a string is the client's mistake
      if (!isObject(m)) throw new ProtocolError(`messages[${i}] must be an object with a string \`role\``)
      checkRole(m.role, `messages[${i}]`)
      const { text, extra, images } = blocksText(m.content, `messages[${i}].content`)
      hasImages ||= images
      // other roles stay in the cache partition and the estimate, tagged with their name
      const known = m.role === 'user' || m.role === 'assistant' || m.role === 'system'
      const tagged = known ? extra : [`role:${m.role}`, extra].filter(Boolean).join('|')
      return { role: known ? (m.role as CanonicalMessage['role']) : 'user', text, ...(tagged ? { extra: tagged } : {}) }
    })
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
  },

  errorBody(_status, type, message) {
    return { type: 'error', error: { type, message } }
  },

  render(a) {
    return { id: a.id, type: 'message', role: 'assistant', model: a.model, content: contentBlocks(a), stop_reason: toAnthropicStop[a.stopReason], stop_sequence: null, usage: wireUsage(a.usage) }
  },

  renderStream(a) {
    let out = sse({ type: 'message_start', message: { id: a.id, type: 'message', role: 'assistant', model: a.model, content: [], stop_reason: null, stop_sequence: null, usage: { ...wireUsage(a.usage), output_tokens: 1 } } }, 'message_start')
    let index = 0
    if (a.text) {
      out += sse({ type: 'content_block_start', index, content_block: { type: 'text', text: '' } }, 'content_block_start')
      for (const piece of chunkText(a.text)) out += sse({ type: 'content_block_delta', index, delta: { type: 'text_delta', text: piece } }, 'content_block_delta')
      out += sse({ type: 'content_block_stop', index }, 'content_block_stop')
      index++
    }
    for (const t of a.toolCalls) {
      out += sse({ type: 'content_block_start', index, content_block: { type: 'tool_use', id: t.id, name: t.name, input: {} } }, 'content_block_start')
      out += sse({ type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: t.arguments || '{}' } }, 'content_block_delta')
      out += sse({ type: 'content_block_stop', index }, 'content_block_stop')
      index++
    }
    out += sse({ type: 'message_delta', delta: { stop_reason: toAnthropicStop[a.stopReason], stop_sequence: null }, usage: { output_tokens: a.usage.outputTokens } }, 'message_delta')
    return out + sse({ type: 'message_stop' }, 'message_stop')
  },

  streamError(_status, type, message) {
    return sse({ type: 'error', error: { type, message } }, 'error')
  },

  read(json) {
    if (!isObject(json) || !Array.isArray(json.content)) throw new NotAnAnswerError('no `content` array')
    const blocks: any[] = json.content
    const toolCalls: ToolCall[] = blocks.filter((b) => b.type === 'tool_use').map((b) => ({ id: String(b.id), name: String(b.name), arguments: JSON.stringify(b.input ?? {}) }))
    return {
      id: String(json?.id ?? ''),
      model: String(json?.model ?? ''),
      text: blocks.filter((b) => b.type === 'text').map((b) => b.text).join(''),
      toolCalls,
      stopReason: stopReasons[json?.stop_reason] ?? 'stop',
      usage: usageOf(json?.usage),
    }
  },

  streamReader() {
    let id = ''
    let model = ''
    let usage = emptyUsage()
    let stop: string | undefined
    let done = false
    const blocks: Array<{ type: string; text: string; id?: string; name?: string }> = []
    const reader: StreamReader = {
      event(data) {
        let e: any
        try { e = JSON.parse(data) } catch { return true }
        switch (e.type) {
          case 'message_start':
            id = e.message?.id ?? ''
            model = e.message?.model ?? ''
            usage = usageOf(e.message?.usage)
            break
          case 'content_block_start': {
            const b = e.content_block ?? {}
            blocks[e.index ?? blocks.length] = { type: b.type, text: b.type === 'text' ? String(b.text ?? '') : '', id: b.id, name: b.name }
            break
          }
          case 'content_block_delta': {
            const b = blocks[e.index]
            if (!b) break
            if (e.delta?.type === 'text_delta') b.text += e.delta.text ?? ''
            else if (e.delta?.type === 'input_json_delta') b.text += e.delta.partial_json ?? ''
            break
          }
          case 'message_delta':
            stop = e.delta?.stop_reason ?? stop
            // message_delta carries cumulative counts; input may be repeated there
            if (e.usage) usage = { ...usage, ...Object.fromEntries(Object.entries(usageOf(e.usage)).filter(([k, v]) => v || k === 'outputTokens')) } as Usage
            break
          case 'message_stop':
            done = true
            break
        }
        return true
      },
      finish() {
        if (!done) return undefined
        const present = blocks.filter(Boolean)
        return {
          id,
          model,
          text: present.filter((b) => b.type === 'text').map((b) => b.text).join(''),
          toolCalls: present.filter((b) => b.type === 'tool_use').map((b) => ({ id: b.id ?? '', name: b.name ?? '', arguments: b.text || '{}' })),
          stopReason: stopReasons[stop ?? 'end_turn'] ?? 'stop',
          usage,
        }
      },
      partialUsage: () => usage,
    }
    return reader
  },
}
