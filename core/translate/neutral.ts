// The protocol-neutral request that translation goes through: every client protocol is read into
// it (request-in.ts) and every vendor protocol written from it (request-out.ts), so four protocols
// need eight functions, not twelve pairs. It holds only what all of them can say; what one side
// says and the other cannot is a 400 naming the feature (or, for bookkeeping that changes no
// answer, a name in the dropped list that goes out as a header).
import { stringifySliced, withinBudget } from '../json-sliced.ts'
import { MAX_JSON_DEPTH, ProtocolError, parseJsonSliced } from '../protocols/shared.ts'
import type { Slicer } from '../slicer.ts'
import type { ProtocolName } from '../types.ts'

export type MediaPart =
  | { type: 'text'; text: string }
  | { type: 'image'; url?: string; mediaType?: string; data?: string }

export type Part =
  | MediaPart
  /** args: the arguments as JSON text */
  | { type: 'tool_call'; id: string; name: string; args: string }
  | { type: 'tool_result'; id: string; content: MediaPart[]; isError?: boolean }

export interface NeutralMessage {
  /** 'system': an instruction in the middle of a conversation */
  role: 'user' | 'assistant' | 'system'
  parts: Part[]
}

export interface NeutralTool {
  name: string
  description?: string
  /** JSON Schema of the arguments */
  parameters: Record<string, unknown>
  strict?: boolean
}

export type NeutralToolChoice = 'auto' | 'none' | 'required' | { name: string }

export interface NeutralRequest {
  model: string
  system: string
  messages: NeutralMessage[]
  tools?: NeutralTool[]
  toolChoice?: NeutralToolChoice
  /** false: at most one tool call per answer */
  parallelToolCalls?: boolean
  /** JSON output: `{}` for any JSON object, or a schema */
  json?: { schema?: Record<string, unknown>; name?: string; strict?: boolean }
  stop?: string[]
  temperature?: number
  topP?: number
  topK?: number
  seed?: number
  presencePenalty?: number
  frequencyPenalty?: number
  maxTokens?: number
  /** the end user, where the vendor has a field for it (Anthropic metadata.user_id, OpenAI user) */
  user?: string
  stream: boolean
  /** what was left out because no answer depends on it; told to the client in a header */
  dropped: string[]
}

/** A feature the vendor's protocol cannot express: a 400 in the client's protocol that names it. */
export function cannot(feature: string, to: ProtocolName | string): never {
  throw new ProtocolError(
    `${feature} cannot be translated to the ${to} protocol of the vendor serving this model`,
    400,
    'unsupported_feature',
  )
}

/** Fields of a client body, each read, ignored as bookkeeping, or refused: nothing unread passes. */
export function checkKnown(body: Record<string, any>, known: ReadonlySet<string>, from: string, to: string): void {
  for (const k in body)
    if (!known.has(k) && body[k] !== undefined && body[k] !== null) cannot(`\`${k.slice(0, 64)}\` (${from})`, to)
}

/** `data:image/png;base64,xxx` into its parts, else the URL as it is. */
export function imageFromUrl(url: string): MediaPart {
  const m = /^data:([^;,]+);base64,(.*)$/s.exec(url)
  return m ? { type: 'image', mediaType: m[1], data: m[2] } : { type: 'image', url }
}

export const dataUrl = (p: { mediaType?: string; data?: string }) =>
  `data:${p.mediaType ?? 'application/octet-stream'};base64,${p.data ?? ''}`

export function textOf(parts: MediaPart[]): string {
  return parts
    .filter((p) => p.type === 'text')
    .map((p) => (p as { text: string }).text)
    .join('\n')
}

export function num(v: unknown, where: string): number | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ProtocolError(`\`${where}\` must be a number`)
  return v
}

export function str(v: unknown, where: string): string {
  if (typeof v !== 'string') throw new ProtocolError(`\`${where}\` must be a string`)
  return v
}

/** JSON text of a tool call's arguments, from an object (Anthropic, Gemini) or text (OpenAI). */
export function argsText(v: unknown): string {
  if (typeof v === 'string') return v
  return jsonText(v ?? {})
}

// the JSON text of a value of megabytes in a client's body, made in slices before the body is read
const madeText = new WeakMap<object, string>()

/** JSON.stringify(v), made by jsonTextsSliced when v is large */
export function jsonText(v: unknown): string {
  return (typeof v === 'object' && v !== null && madeText.get(v)) || JSON.stringify(v)
}

// a value past either bound is stringified in slices (a functionResponse of 100,000 keys: 35-80 ms in one go)
const LARGE_NODES = 4096
const LARGE_CHARS = 256 * 1024

/**
 * The JSON text jsonText gives each large one of `values`, made in slices of `slicer` (the same
 * text). `reparse`: that text is parsed again in slices too, for argsObject (a vendor that takes
 * arguments as an object); the values are kept until forgetParsed() of the texts returned.
 */
export async function jsonTextsSliced(values: unknown[], slicer: Slicer, reparse = false): Promise<string[]> {
  const parsed: string[] = []
  for (const v of values) {
    if (typeof v !== 'object' || v === null || madeText.has(v) || withinBudget(v, LARGE_NODES, LARGE_CHARS)) continue
    // its Object.keys (20-35 ms for 100,000 keys) at the start of a slice of its own
    await slicer.yield()
    const pieces = await stringifySliced(v, slicer)
    if (!pieces) continue
    // the one flat copy of megabytes: a slice of its own
    await slicer.yield()
    const text = pieces.join('')
    madeText.set(v, text)
    await slicer.yield()
    if (reparse) {
      const r = await parseJsonSliced(text, MAX_JSON_DEPTH, slicer)
      // nested deeper than a request may be: argsObject parses it in one go, as before
      if (!r.deep) {
        parsedText.set(text, r.value)
        parsed.push(text)
      }
    }
  }
  return parsed
}

/**
 * The large texts among `values` (arguments as OpenAI and Responses send them) parsed in slices
 * for argsObject, until forgetParsed() of the texts returned; text that is not JSON is left to
 * argsObject (its error, as before)
 */
export async function parseTextsSliced(values: unknown[], slicer: Slicer): Promise<string[]> {
  const parsed: string[] = []
  for (const text of values) {
    if (typeof text !== 'string' || text.length <= LARGE_CHARS || parsedText.has(text)) continue
    await slicer.yield()
    try {
      const r = await parseJsonSliced(text, MAX_JSON_DEPTH, slicer)
      if (r.deep) continue
      parsedText.set(text, r.value)
      parsed.push(text)
    } catch {
      /* not JSON: argsObject says so */
    }
  }
  return parsed
}

// JSON.parse(text) of the texts jsonTextsSliced made and parsed again, while one body is written
const parsedText = new Map<string, unknown>()

/** drop the values jsonTextsSliced parsed (the body they were for is written) */
export function forgetParsed(texts: string[]): void {
  for (const t of texts) parsedText.delete(t)
}

/** Arguments as the object Anthropic and Gemini want; text that is not a JSON object is the client's error. */
export function argsObject(text: string, where: string): Record<string, unknown> {
  if (!text.trim()) return {}
  let v: unknown
  try {
    v = parsedText.size && parsedText.has(text) ? parsedText.get(text) : JSON.parse(text)
  } catch {
    throw new ProtocolError(`${where}: tool call arguments are not valid JSON`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new ProtocolError(`${where}: tool call arguments must be a JSON object`)
  return v as Record<string, unknown>
}
