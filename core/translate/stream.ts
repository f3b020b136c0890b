// Streams between protocols, event by event: a decoder turns each vendor SSE event into neutral
// events, an encoder turns those into the client's SSE events at once. Nothing waits for the end,
// except a Gemini client's function call, which Gemini sends whole (its arguments are collected).
import { isObject, emptyUsage } from '../protocols/shared.ts'
import { parseEventJson } from '../protocols/event-json.ts'
import { functionArgsText } from '../protocols/gemini.ts'
import { protocols } from '../protocols/index.ts'
import type { Slicer } from '../slicer.ts'
import type { CanonicalAnswer, ProtocolName, Usage } from '../types.ts'

type Stop = CanonicalAnswer['stopReason']
export type StreamEvent =
  | { t: 'start'; id: string; model: string; usage?: Usage }
  | { t: 'text'; text: string }
  | { t: 'tool'; index: number; id: string; name: string }
  | { t: 'args'; index: number; json: string }
  | { t: 'finish'; reason: Stop; usage: Usage }

export type Decoder = (data: string) => StreamEvent[]
export type Encoder = ((e: StreamEvent) => string) & {
  /** the characters of text and arguments the encoder holds to send again at the end (Responses' done events) */
  held?(): number
  /** encode(e)'s text as pieces made one at a time (the whole text again at the end, a piece of JSON at a time) */
  pieces?(e: StreamEvent): Generator<string, void, undefined>
  /** work encode(e) would do in one go on megabytes (a Gemini call's arguments parsed), done in slices first */
  prepare?(e: StreamEvent, slicer: Slicer): Promise<void>
}

// the vendor's reader parsed the same event a moment before: its result is reused, never changed.
// Bound once: under jiti (how the CLI runs) a call through an import reads a getter each time.
const parseJson = parseEventJson
const parse = (data: string): any => {
  try {
    return parseJson(data)
  } catch {
    return undefined
  }
}
const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0)

// ---------------------------------------------------------------- decoders (vendor side)

const OPENAI_STOP: Record<string, Stop> = {
  stop: 'stop',
  length: 'length',
  tool_calls: 'tool_calls',
  function_call: 'tool_calls',
  content_filter: 'content_filter',
}
const ANTHROPIC_STOP: Record<string, Stop> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  max_tokens: 'length',
  tool_use: 'tool_calls',
  refusal: 'content_filter',
  pause_turn: 'stop',
}
const GEMINI_STOP: Record<string, Stop> = {
  STOP: 'stop',
  MAX_TOKENS: 'length',
  SAFETY: 'content_filter',
  RECITATION: 'content_filter',
  PROHIBITED_CONTENT: 'content_filter',
}

function openaiDecoder(): Decoder {
  let started = false
  let reason: Stop = 'stop'
  let usage = emptyUsage()
  const tools = new Set<number>()
  return (data) => {
    if (data === '[DONE]') return [{ t: 'finish', reason, usage }]
    const c = parse(data)
    if (!isObject(c)) return []
    const out: StreamEvent[] = []
    if (!started) {
      started = true
      out.push({ t: 'start', id: String(c.id ?? ''), model: String(c.model ?? '') })
    }
    if (isObject(c.usage))
      usage = {
        inputTokens: n(c.usage.prompt_tokens),
        outputTokens: n(c.usage.completion_tokens),
        cacheReadTokens: n(c.usage.prompt_tokens_details?.cached_tokens),
        cacheWriteTokens: 0,
      }
    const choice = Array.isArray(c.choices) ? c.choices.find((x: any) => (x?.index ?? 0) === 0) : undefined
    const d = choice?.delta
    if (isObject(d)) {
      if (typeof d.content === 'string' && d.content) out.push({ t: 'text', text: d.content })
      for (const tc of Array.isArray(d.tool_calls) ? d.tool_calls : []) {
        const index = Number.isSafeInteger(tc?.index) ? tc.index : 0
        if (!tools.has(index)) {
          tools.add(index)
          out.push({ t: 'tool', index, id: String(tc.id ?? `call_${index}`), name: String(tc.function?.name ?? '') })
        }
        if (typeof tc?.function?.arguments === 'string' && tc.function.arguments)
          out.push({ t: 'args', index, json: tc.function.arguments })
      }
    }
    if (choice?.finish_reason) reason = OPENAI_STOP[choice.finish_reason] ?? 'stop'
    return out
  }
}

function anthropicDecoder(): Decoder {
  let reason: Stop = 'stop'
  let usage = emptyUsage()
  const blockTool = new Map<number, number>()
  const take = (u: any) => {
    if (!isObject(u)) return
    // message_delta's counts are cumulative; a zero there does not undo message_start's
    usage = {
      inputTokens: n(u.input_tokens) || usage.inputTokens,
      outputTokens: n(u.output_tokens) || usage.outputTokens,
      cacheReadTokens: n(u.cache_read_input_tokens) || usage.cacheReadTokens,
      cacheWriteTokens: n(u.cache_creation_input_tokens) || usage.cacheWriteTokens,
    }
  }
  return (data) => {
    const e = parse(data)
    switch (e?.type) {
      case 'message_start':
        take(e.message?.usage)
        return [{ t: 'start', id: String(e.message?.id ?? ''), model: String(e.message?.model ?? ''), usage }]
      case 'content_block_start': {
        const b = e.content_block
        if (b?.type === 'tool_use') {
          blockTool.set(e.index, blockTool.size)
          return [{ t: 'tool', index: blockTool.size - 1, id: String(b.id), name: String(b.name) }]
        }
        return b?.type === 'text' && b.text ? [{ t: 'text', text: String(b.text) }] : []
      }
      case 'content_block_delta': {
        const d = e.delta
        if (d?.type === 'text_delta' && d.text) return [{ t: 'text', text: String(d.text) }]
        const index = blockTool.get(e.index)
        if (d?.type === 'input_json_delta' && index !== undefined && d.partial_json)
          return [{ t: 'args', index, json: String(d.partial_json) }]
        return []
      }
      case 'message_delta':
        if (e.delta?.stop_reason) reason = ANTHROPIC_STOP[e.delta.stop_reason] ?? 'stop'
        take(e.usage)
        return []
      case 'message_stop':
        return [{ t: 'finish', reason, usage }]
    }
    return []
  }
}

function geminiDecoder(): Decoder {
  let started = false
  let tools = 0
  let usage = emptyUsage()
  return (data) => {
    const c = parse(data)
    if (!isObject(c)) return []
    const out: StreamEvent[] = []
    if (!started) {
      started = true
      out.push({ t: 'start', id: String(c.responseId ?? ''), model: String(c.modelVersion ?? '') })
    }
    const u = c.usageMetadata
    if (isObject(u))
      usage = {
        inputTokens: n(u.promptTokenCount),
        outputTokens: n(u.candidatesTokenCount) + n(u.thoughtsTokenCount),
        cacheReadTokens: n(u.cachedContentTokenCount),
        cacheWriteTokens: 0,
      }
    const cand = Array.isArray(c.candidates) ? c.candidates.find((x: any) => (x?.index ?? 0) === 0) : undefined
    for (const p of Array.isArray(cand?.content?.parts) ? cand.content.parts : []) {
      if (typeof p?.text === 'string' && !p.thought && p.text) out.push({ t: 'text', text: p.text })
      if (isObject(p?.functionCall)) {
        const index = tools++
        // the same ids as the Gemini adapter's answer, so a whole answer and a stream agree
        out.push({
          t: 'tool',
          index,
          id: String(p.functionCall.id ?? `call_${index}`),
          name: String(p.functionCall.name),
        })
        out.push({ t: 'args', index, json: functionArgsText(p.functionCall.args) })
      }
    }
    if (cand?.finishReason)
      out.push({ t: 'finish', reason: tools ? 'tool_calls' : (GEMINI_STOP[cand.finishReason] ?? 'stop'), usage })
    return out
  }
}

function responsesDecoder(): Decoder {
  const tools = new Map<number, number>()
  return (data) => {
    const e = parse(data)
    const type = e?.type
    if (type === 'response.created')
      return [{ t: 'start', id: String(e.response?.id ?? ''), model: String(e.response?.model ?? '') }]
    if (type === 'response.output_text.delta' && e.delta) return [{ t: 'text', text: String(e.delta) }]
    if (type === 'response.output_item.added' && e.item?.type === 'function_call') {
      tools.set(e.output_index, tools.size)
      return [{ t: 'tool', index: tools.size - 1, id: String(e.item.call_id ?? e.item.id), name: String(e.item.name) }]
    }
    if (type === 'response.function_call_arguments.delta' && tools.has(e.output_index) && e.delta)
      return [{ t: 'args', index: tools.get(e.output_index)!, json: String(e.delta) }]
    if ((type === 'response.completed' || type === 'response.incomplete') && isObject(e.response)) {
      const a = protocols.responses.read({ output: [], ...e.response })
      return [{ t: 'finish', reason: a.stopReason, usage: a.usage }]
    }
    return []
  }
}

export const decoders: Record<ProtocolName, () => Decoder> = {
  openai: openaiDecoder,
  anthropic: anthropicDecoder,
  gemini: geminiDecoder,
  responses: responsesDecoder,
}

export { encoders } from './stream-encode.ts'
