// OpenAI Chat Completions: request parsing, answers and streams in both directions.
import type { CanonicalAnswer, CanonicalMessage, ToolCall, Usage } from '../types.ts'
import { canonicalJson } from '../canonical.ts'
import { NotAnAnswerError, ProtocolError, checkFieldTypes, checkRole, chunkText, emptyUsage, isObject, pick, requireModel, sse, type ProtocolAdapter, type StreamReader } from './shared.ts'

const FIELD_TYPES = {
  stream: 'boolean', stream_options: 'object', tools: 'array', functions: 'array', tool_choice: ['string', 'object'], response_format: 'object',
  temperature: 'number', top_p: 'number', n: 'integer', seed: 'integer', stop: ['string', 'array'], max_tokens: 'integer', max_completion_tokens: 'integer',
  presence_penalty: 'number', frequency_penalty: 'number', metadata: 'object', user: 'string',
} as const

const PARAMS = ['temperature', 'top_p', 'n', 'stop', 'seed', 'presence_penalty', 'frequency_penalty', 'logit_bias', 'logprobs', 'top_logprobs', 'reasoning_effort', 'verbosity', 'modalities', 'audio', 'prediction', 'parallel_tool_calls'] as const

function contentText(content: unknown): { text: string; extra: string; images: boolean } {
  if (typeof content === 'string') return { text: content, extra: '', images: false }
  if (content == null) return { text: '', extra: '', images: false }
  if (!Array.isArray(content)) throw new ProtocolError('message `content` must be a string or an array of content parts')
  const texts: string[] = []
  const extras: unknown[] = []
  let images = false
  for (const part of content) {
    if (!isObject(part) || typeof part.type !== 'string') throw new ProtocolError('each content part must be an object with a string `type`')
    if (part.type === 'text') {
      if (typeof part.text !== 'string') throw new ProtocolError('a text content part needs a string `text`')
      texts.push(part.text)
    }
    else {
      if (part.type === 'image_url' || part.type === 'input_image') images = true
      extras.push(part)
    }
  }
  return { text: texts.join('\n'), extra: extras.length ? canonicalJson(extras) : '', images }
}

const stopReasons: Record<string, CanonicalAnswer['stopReason']> = { stop: 'stop', length: 'length', tool_calls: 'tool_calls', function_call: 'tool_calls', content_filter: 'content_filter' }

function usageOf(u: any): Usage {
  if (!isObject(u)) return emptyUsage()
  const cached = Number(u.prompt_tokens_details?.cached_tokens ?? 0)
  return { inputTokens: Number(u.prompt_tokens ?? 0), outputTokens: Number(u.completion_tokens ?? 0), cacheReadTokens: cached, cacheWriteTokens: 0 }
}

export const openaiProtocol: ProtocolAdapter = {
  name: 'openai',

  parse(body, opts) {
    if (!isObject(body)) throw new ProtocolError('request body must be a JSON object')
    const model = requireModel(body.model)
    if (!Array.isArray(body.messages) || body.messages.length === 0) throw new ProtocolError('`messages` is required and must be a non-empty array')
    checkFieldTypes(body, FIELD_TYPES)
    const system: string[] = []
    const messages: CanonicalMessage[] = []
    let hasImages = false
    for (const [i, m] of body.messages.entries()) {
      if (!isObject(m)) throw new ProtocolError(`messages[${i}] must be an object with a string \`role\``)
      checkRole(m.role, `messages[${i}]`)
      const { text, extra, images } = contentText(m.content)
      hasImages ||= images
      if (m.role === 'system' || m.role === 'developer') { system.push(text); continue }
      // a role the proxy does not know is forwarded; it stays in the cache key, tagged with its name
      const known = m.role === 'user' || m.role === 'assistant' || m.role === 'tool' || m.role === 'function'
      const extras = [known ? '' : `role:${m.role}`, extra, m.tool_calls ? canonicalJson(m.tool_calls) : '', m.tool_call_id ? `tool_call_id:${m.tool_call_id}` : '', m.name ? `name:${m.name}` : ''].filter(Boolean)
      messages.push({ role: m.role === 'function' ? 'tool' : known ? (m.role as CanonicalMessage['role']) : 'user', text, ...(extras.length ? { extra: extras.join('|') } : {}) })
    }
    const maxTokens = body.max_completion_tokens ?? body.max_tokens
    if (maxTokens !== undefined && (!Number.isSafeInteger(maxTokens) || maxTokens < 1)) throw new ProtocolError('`max_tokens` must be a positive integer')
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
  },

  errorBody(_status, type, message) {
    return { error: { message, type, param: null, code: type } }
  },

  render(a) {
    return {
      id: a.id,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: a.model,
      choices: [{
        index: 0,
        message: {
          role: 'assistant',
          content: a.text || (a.toolCalls.length ? null : ''),
          ...(a.toolCalls.length ? { tool_calls: a.toolCalls.map((t) => ({ id: t.id, type: 'function', function: { name: t.name, arguments: t.arguments } })) } : {}),
          refusal: null,
        },
        logprobs: null,
        finish_reason: a.stopReason,
      }],
      usage: { prompt_tokens: a.usage.inputTokens, completion_tokens: a.usage.outputTokens, total_tokens: a.usage.inputTokens + a.usage.outputTokens, prompt_tokens_details: { cached_tokens: a.usage.cacheReadTokens } },
    }
  },

  renderStream(a, opts) {
    const created = Math.floor(Date.now() / 1000)
    const base = { id: a.id, object: 'chat.completion.chunk', created, model: a.model }
    let out = sse({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] })
    for (const piece of chunkText(a.text)) out += sse({ ...base, choices: [{ index: 0, delta: { content: piece }, logprobs: null, finish_reason: null }] })
    a.toolCalls.forEach((t, index) => {
      out += sse({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index, id: t.id, type: 'function', function: { name: t.name, arguments: t.arguments } }] }, logprobs: null, finish_reason: null }] })
    })
    out += sse({ ...base, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: a.stopReason }] })
    // like the real API: the usage-only chunk (choices: []) only for clients that asked for it
    if (opts?.includeUsage !== false) out += sse({ ...base, choices: [], usage: { prompt_tokens: a.usage.inputTokens, completion_tokens: a.usage.outputTokens, total_tokens: a.usage.inputTokens + a.usage.outputTokens } })
    return out + sse('[DONE]')
  },

  streamError(_status, type, message) {
    return sse({ error: { message, type, param: null, code: type } })
  },

  read(json) {
    if (!isObject(json) || !Array.isArray(json.choices)) throw new NotAnAnswerError('no `choices` array')
    const choice = json?.choices?.[0]
    const msg = choice?.message ?? {}
    const toolCalls: ToolCall[] = (msg.tool_calls ?? []).map((t: any) => ({ id: String(t.id), name: String(t.function?.name ?? ''), arguments: String(t.function?.arguments ?? '') }))
    return {
      id: String(json?.id ?? ''),
      model: String(json?.model ?? ''),
      text: typeof msg.content === 'string' ? msg.content : '',
      toolCalls,
      stopReason: stopReasons[choice?.finish_reason] ?? 'stop',
      usage: usageOf(json?.usage),
    }
  },

  streamReader({ hideUsageChunk }) {
    let id = ''
    let model = ''
    let text = ''
    let finish: string | undefined
    let usage: Usage | undefined
    let done = false
    const tools: Array<{ id: string; name: string; arguments: string }> = []
    const reader: StreamReader = {
      event(data) {
        if (data === '[DONE]') { done = true; return true }
        let chunk: any
        try { chunk = JSON.parse(data) } catch { return true }
        id ||= chunk.id ?? ''
        model ||= chunk.model ?? ''
        if (chunk.usage) usage = usageOf(chunk.usage)
        const choices = chunk.choices ?? []
        // the usage-only chunk we asked for on the client's behalf: the client did not ask, so it does not see it
        if (hideUsageChunk && chunk.usage && choices.length === 0) return false
        for (const c of choices) {
          const d = c.delta ?? {}
          if (typeof d.content === 'string') text += d.content
          for (const tc of d.tool_calls ?? []) {
            const t = (tools[tc.index ?? 0] ??= { id: '', name: '', arguments: '' })
            if (tc.id) t.id = tc.id
            if (tc.function?.name) t.name += tc.function.name
            if (tc.function?.arguments) t.arguments += tc.function.arguments
          }
          if (c.finish_reason) finish = c.finish_reason
        }
        return true
      },
      finish() {
        if (!done || !finish) return undefined
        return { id, model, text, toolCalls: tools.filter(Boolean), stopReason: stopReasons[finish] ?? 'stop', usage: usage ?? emptyUsage() }
      },
      partialUsage: () => usage ?? emptyUsage(),
    }
    return reader
  },
}
