// The neutral request into a vendor protocol's body.
import {
  argsObject,
  cannot,
  dataUrl,
  textOf,
  type MediaPart,
  type NeutralMessage,
  type NeutralRequest,
} from './neutral.ts'
import { resultText } from './request-in.ts'

// Anthropic requires max_tokens; a client of another protocol may leave it out
const ANTHROPIC_DEFAULT_MAX_TOKENS = 4096

/** Consecutive messages of one role merged: Anthropic wants all results of a turn's calls in one user message. */
function merged(messages: NeutralMessage[]): NeutralMessage[] {
  const out: NeutralMessage[] = []
  for (const m of messages) {
    const last = out.at(-1)
    if (last && last.role === m.role && m.role !== 'system') last.parts = [...last.parts, ...m.parts]
    else out.push({ role: m.role, parts: [...m.parts] })
  }
  return out
}

// ---------------------------------------------------------------- OpenAI Chat Completions

function openaiContent(parts: MediaPart[]): string | unknown[] {
  if (parts.every((p) => p.type === 'text')) return textOf(parts)
  return parts.map((p) =>
    p.type === 'text' ? { type: 'text', text: p.text } : { type: 'image_url', image_url: { url: p.url ?? dataUrl(p) } },
  )
}

function openaiMessages(n: NeutralRequest): unknown[] {
  const out: unknown[] = n.system ? [{ role: 'system', content: n.system }] : []
  for (const m of n.messages) {
    if (m.role === 'system') {
      out.push({ role: 'system', content: textOf(m.parts.filter((p): p is MediaPart => p.type === 'text')) })
      continue
    }
    const media = m.parts.filter((p): p is MediaPart => p.type === 'text' || p.type === 'image')
    const calls = m.parts.flatMap((p) =>
      p.type === 'tool_call' ? [{ id: p.id, type: 'function', function: { name: p.name, arguments: p.args } }] : [],
    )
    // tool results are messages of their own, before the rest of the user's turn
    for (const p of m.parts)
      if (p.type === 'tool_result')
        out.push({ role: 'tool', tool_call_id: p.id, content: resultText(p.content, 'openai') })
    if (m.role === 'assistant')
      out.push({
        role: 'assistant',
        content: media.length ? openaiContent(media) : null,
        ...(calls.length ? { tool_calls: calls } : {}),
      })
    else if (media.length) out.push({ role: 'user', content: openaiContent(media) })
  }
  return out
}

export function toOpenAI(n: NeutralRequest): Record<string, unknown> {
  const body: Record<string, unknown> = { model: n.model, messages: openaiMessages(n) }
  if (n.tools)
    body.tools = n.tools.map((t) => ({
      type: 'function',
      function: {
        name: t.name,
        ...(t.description ? { description: t.description } : {}),
        parameters: t.parameters,
        ...(t.strict !== undefined ? { strict: t.strict } : {}),
      },
    }))
  if (n.toolChoice)
    body.tool_choice =
      typeof n.toolChoice === 'string' ? n.toolChoice : { type: 'function', function: { name: n.toolChoice.name } }
  if (n.parallelToolCalls === false && n.tools) body.parallel_tool_calls = false
  if (n.json)
    body.response_format = n.json.schema
      ? {
          type: 'json_schema',
          json_schema: {
            name: n.json.name ?? 'response',
            schema: n.json.schema,
            ...(n.json.strict !== undefined ? { strict: n.json.strict } : {}),
          },
        }
      : { type: 'json_object' }
  if (n.stop) body.stop = n.stop
  if (n.topK !== undefined) cannot('`top_k`', 'openai')
  for (const [k, v] of [
    ['temperature', n.temperature],
    ['top_p', n.topP],
    ['seed', n.seed],
    ['presence_penalty', n.presencePenalty],
    ['frequency_penalty', n.frequencyPenalty],
    ['max_completion_tokens', n.maxTokens],
    ['user', n.user],
  ] as const)
    if (v !== undefined) body[k] = v
  if (n.stream) {
    body.stream = true
    // usage is how budgets settle: asked for always, shown to the client in its own protocol
    body.stream_options = { include_usage: true }
  }
  return body
}

// ---------------------------------------------------------------- Anthropic Messages

function anthropicMedia(p: MediaPart): unknown {
  if (p.type === 'text') return { type: 'text', text: p.text }
  return p.url
    ? { type: 'image', source: { type: 'url', url: p.url } }
    : { type: 'image', source: { type: 'base64', media_type: p.mediaType, data: p.data } }
}

function anthropicMessages(n: NeutralRequest): unknown[] {
  return merged(n.messages).map((m, i) => {
    if (m.role === 'system') return cannot('a system message in the middle of the conversation', 'anthropic')
    const content = m.parts.flatMap((p) => {
      if (p.type === 'tool_call')
        return [{ type: 'tool_use', id: p.id, name: p.name, input: argsObject(p.args, `messages[${i}]`) }]
      if (p.type === 'tool_result')
        return [
          {
            type: 'tool_result',
            tool_use_id: p.id,
            content: p.content.every((c) => c.type === 'text') ? textOf(p.content) : p.content.map(anthropicMedia),
            ...(p.isError ? { is_error: true } : {}),
          },
        ]
      // an empty text block is refused by the vendor (an assistant turn of tool calls only)
      if (p.type === 'text' && !p.text) return []
      return [anthropicMedia(p)]
    })
    // results first: Anthropic wants a user turn after tool calls to start with their results
    content.sort((a: any, b: any) => Number(b.type === 'tool_result') - Number(a.type === 'tool_result'))
    return { role: m.role, content }
  })
}

export function toAnthropic(n: NeutralRequest): Record<string, unknown> {
  const body: Record<string, unknown> = {
    model: n.model,
    max_tokens: n.maxTokens ?? ANTHROPIC_DEFAULT_MAX_TOKENS,
    messages: anthropicMessages(n),
  }
  if (n.system) body.system = n.system
  if (n.tools)
    body.tools = n.tools.map((t) => ({
      name: t.name,
      ...(t.description ? { description: t.description } : {}),
      input_schema: t.parameters,
    }))
  const choice =
    n.toolChoice === undefined
      ? undefined
      : n.toolChoice === 'required'
        ? { type: 'any' }
        : typeof n.toolChoice === 'string'
          ? { type: n.toolChoice }
          : { type: 'tool', name: n.toolChoice.name }
  if (n.parallelToolCalls === false && n.tools)
    body.tool_choice = { ...(choice ?? { type: 'auto' }), disable_parallel_tool_use: true }
  else if (choice) body.tool_choice = choice
  if (n.json)
    body.output_format = n.json.schema
      ? { type: 'json_schema', schema: n.json.schema }
      : cannot('JSON mode without a schema (`json_object`)', 'anthropic')
  if (n.stop) body.stop_sequences = n.stop
  if (n.seed !== undefined) cannot('`seed`', 'anthropic')
  if (n.presencePenalty !== undefined || n.frequencyPenalty !== undefined)
    cannot('presence and frequency penalties', 'anthropic')
  for (const [k, v] of [
    ['temperature', n.temperature],
    ['top_p', n.topP],
    ['top_k', n.topK],
  ] as const)
    if (v !== undefined) body[k] = v
  if (n.user) body.metadata = { user_id: n.user.slice(0, 256) }
  if (n.stream) body.stream = true
  return body
}

// ---------------------------------------------------------------- Gemini

function geminiMedia(p: MediaPart): unknown {
  if (p.type === 'text') return { text: p.text }
  if (p.url) return cannot('an image by URL (send it inline, as base64)', 'gemini')
  return { inlineData: { mimeType: p.mediaType, data: p.data } }
}

function geminiContents(n: NeutralRequest): unknown[] {
  // a result names its function, which Gemini matches it by: the name comes from the call's id
  const names = new Map<string, string>()
  for (const m of n.messages) for (const p of m.parts) if (p.type === 'tool_call') names.set(p.id, p.name)
  return merged(n.messages).map((m, i) => {
    if (m.role === 'system') return cannot('a system message in the middle of the conversation', 'gemini')
    const parts = m.parts.flatMap((p) => {
      if (p.type === 'tool_call')
        return [{ functionCall: { name: p.name, args: argsObject(p.args, `messages[${i}]`) } }]
      if (p.type === 'tool_result') {
        const name =
          names.get(p.id) ??
          cannot(`a tool result whose call (${p.id.slice(0, 64)}) is not in the conversation`, 'gemini')
        return [
          {
            functionResponse: {
              name,
              response: { [p.isError ? 'error' : 'content']: resultText(p.content, 'gemini') },
            },
          },
        ]
      }
      if (p.type === 'text' && !p.text) return []
      return [geminiMedia(p)]
    })
    return { role: m.role === 'assistant' ? 'model' : 'user', parts }
  })
}

export function toGemini(n: NeutralRequest): Record<string, unknown> {
  const body: Record<string, unknown> = { contents: geminiContents(n) }
  if (n.system) body.systemInstruction = { parts: [{ text: n.system }] }
  if (n.tools)
    body.tools = [
      {
        functionDeclarations: n.tools.map((t) => ({
          name: t.name,
          ...(t.description ? { description: t.description } : {}),
          parametersJsonSchema: t.parameters,
        })),
      },
    ]
  if (n.toolChoice) {
    const c = n.toolChoice
    body.toolConfig = {
      functionCallingConfig:
        c === 'auto'
          ? { mode: 'AUTO' }
          : c === 'none'
            ? { mode: 'NONE' }
            : c === 'required'
              ? { mode: 'ANY' }
              : { mode: 'ANY', allowedFunctionNames: [c.name] },
    }
  }
  if (n.parallelToolCalls === false && n.tools) cannot('`parallel_tool_calls: false`', 'gemini')
  const gen: Record<string, unknown> = {}
  for (const [k, v] of [
    ['temperature', n.temperature],
    ['topP', n.topP],
    ['topK', n.topK],
    ['seed', n.seed],
    ['presencePenalty', n.presencePenalty],
    ['frequencyPenalty', n.frequencyPenalty],
    ['maxOutputTokens', n.maxTokens],
    ['stopSequences', n.stop],
  ] as const)
    if (v !== undefined) gen[k] = v
  if (n.json) {
    gen.responseMimeType = 'application/json'
    if (n.json.schema) gen.responseJsonSchema = n.json.schema
  }
  if (Object.keys(gen).length) body.generationConfig = gen
  return body
}
