import { CONTROL_CHARS } from '../headers.ts'
import type { CanonicalAnswer, Operation, Prompt, ProtocolName, Usage } from '../types.ts'

/** A request the client got wrong: becomes a 400 in the client's protocol. */
export class ProtocolError extends Error {
  constructor(
    message: string,
    readonly status = 400,
    readonly type = 'invalid_request_error',
  ) {
    super(message)
  }
}

/** Incremental reader of a stream's events, building the complete answer. */
export interface StreamReader {
  /** one SSE event (its `data:` payload); returns false to drop it from what the client sees */
  event(data: string): boolean
  /** the answer once the stream ended cleanly, else undefined */
  finish(): CanonicalAnswer | undefined
  /** usage seen so far (for settling an aborted stream) */
  partialUsage(): Usage
}

export interface ProtocolAdapter {
  name: ProtocolName
  /** canonical view of a chat request; throws ProtocolError on bad input */
  parse(body: any, opts: { pathModel?: string; stream?: boolean }): Prompt
  errorBody(status: number, type: string, message: string): unknown
  /** a complete answer as this protocol's non-streaming JSON body */
  render(answer: CanonicalAnswer): unknown
  /** a complete answer as this protocol's SSE stream (whole text); OpenAI's usage chunk only with includeUsage (default true) */
  renderStream(answer: CanonicalAnswer, opts?: { includeUsage?: boolean }): string
  /** a stream as one JSON array of its chunks, when the request asked for that transport (Gemini without alt=sse); else undefined */
  renderArrayStream?(answer: CanonicalAnswer, search: string): unknown[] | undefined
  /** a protocol that names the model and method in the path (Gemini): what the path asks for; throws ProtocolError */
  pathCall?(modelAction: string): { model: string; operation: Operation; stream: boolean }
  /** count_tokens, where the protocol has it: the body parse() reads, and the local answer's shape */
  countTokens?: { request(body: any): any; answer(tokens: number): unknown }
  /** read a non-streaming upstream body; throws when it is not this protocol's answer */
  read(json: any): CanonicalAnswer
  /** the protocol's error event, sent before ending a stream that cannot complete */
  streamError(status: number, type: string, message: string): string
  streamReader(opts: { hideUsageChunk?: boolean }): StreamReader
}

export const emptyUsage = (): Usage => ({ inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 })

/**
 * Usage in a protocol's terms: OpenAI, Gemini and Responses count cached input inside the input
 * tokens, Anthropic apart. An answer read from one protocol and shown in another (a translated
 * call, a cache hit from another protocol) is converted; `from` undefined: already in `to`'s terms.
 */
export function usageFor(u: Usage, from: ProtocolName | undefined, to: ProtocolName): Usage {
  if (!from || (from === 'anthropic') === (to === 'anthropic')) return u
  if (from === 'anthropic') return { ...u, inputTokens: u.inputTokens + u.cacheReadTokens + u.cacheWriteTokens }
  return { ...u, inputTokens: Math.max(0, u.inputTokens - u.cacheReadTokens) }
}

export function isObject(v: unknown): v is Record<string, any> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

export function pick(body: Record<string, any>, keys: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const k of keys) if (body[k] !== undefined) out[k] = body[k]
  return out
}

export function sse(data: unknown, event?: string): string {
  return (event ? `event: ${event}\n` : '') + `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`
}

/** Split an answer's text into a few stream deltas, so a replayed stream looks like a real one. */
export function chunkText(text: string, size = 64): string[] {
  if (!text) return []
  const out: string[] = []
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size))
  return out
}

/** Longer than any vendor's model id; a longer one would only travel into headers and logs. */
export const MODEL_MAX_CHARS = 256

export function requireModel(model: unknown, where = 'model'): string {
  if (typeof model !== 'string' || !model.trim())
    throw new ProtocolError(`\`${where}\` is required and must be a non-empty string`)
  return checkModelName(model, where)
}

/** A model name goes into headers, logs and the audit log: no control characters, bounded length. */
export function checkModelName(model: string, where = 'model'): string {
  if (model.length > MODEL_MAX_CHARS)
    throw new ProtocolError(`\`${where}\` must be at most ${MODEL_MAX_CHARS} characters`)
  if (CONTROL_CHARS.test(model))
    throw new ProtocolError(`\`${where}\` must not contain control characters (NUL, CR, LF, ...)`)
  return model
}

type FieldType = 'boolean' | 'number' | 'integer' | 'string' | 'array' | 'object'
const typeOk: Record<FieldType, (v: unknown) => boolean> = {
  boolean: (v) => typeof v === 'boolean',
  number: (v) => typeof v === 'number' && Number.isFinite(v),
  integer: (v) => Number.isSafeInteger(v),
  string: (v) => typeof v === 'string',
  array: Array.isArray,
  object: isObject,
}
const article = (t: FieldType) => (t === 'array' || t === 'object' || t === 'integer' ? 'an ' : 'a ')

/**
 * Type checks for the fields the proxy itself reads (for the cache key, the token estimate, the
 * stream flag): a wrong type there would be read wrongly here and rejected by the vendor anyway.
 * Only types: a value the proxy does not know (a new tool type, a new role) is forwarded.
 */
export function checkFieldTypes(
  body: Record<string, any>,
  fields: Readonly<Record<string, FieldType | readonly FieldType[]>>,
  where = '',
): void {
  for (const name in fields) {
    const v = body[name]
    if (v === undefined || v === null) continue
    const want = fields[name]!
    const types: readonly FieldType[] = typeof want === 'string' ? [want] : want
    if (!types.some((t) => typeOk[t](v))) {
      throw new ProtocolError(
        `\`${where}${name}\` must be ${types.map((t) => article(t) + t).join(' or ')}, got ${Array.isArray(v) ? 'an array' : typeof v}`,
      )
    }
  }
}

/** Deeper than any real request (JSON schemas in tools nest a few dozen levels at most). */
export const MAX_JSON_DEPTH = 128

// structural characters and string starts; string bodies are skipped with indexOf (native)
const JSON_TOKEN = /[{}[\]"]/g

/**
 * true when the JSON text nests arrays/objects deeper than `limit`. Checked on the raw text
 * before parsing: the walkers that hash and canonicalise a body recurse, and 5,000 levels
 * overflowed the stack in a plugin (a 500, and no audit entry). About 0.6 µs for a small chat
 * body and 0.6 µs per KB of a large one, most of it skipping strings.
 */
export function jsonDepthExceeds(text: string, limit = MAX_JSON_DEPTH): boolean {
  // a text shorter than the limit cannot nest deeper than it
  if (text.length <= limit) return false
  let depth = 0
  JSON_TOKEN.lastIndex = 0
  for (let m = JSON_TOKEN.exec(text); m !== null; m = JSON_TOKEN.exec(text)) {
    const c = text.charCodeAt(m.index)
    if (c === 34) {
      let end = m.index
      for (;;) {
        end = text.indexOf('"', end + 1)
        if (end < 0) return false // unterminated: JSON.parse reports it
        let backslashes = 0
        while (text.charCodeAt(end - 1 - backslashes) === 92) backslashes++
        if ((backslashes & 1) === 0) break
      }
      JSON_TOKEN.lastIndex = end + 1
    } else if (c === 123 || c === 91) {
      if (++depth > limit) return true
    } else depth--
  }
  return false
}

/** A 200 body from upstream that is not an answer of the protocol: the core answers 502. */
export class NotAnAnswerError extends Error {}

/** Roles are short words; a longer one would only travel into cache keys and logs. */
export const ROLE_MAX_CHARS = 64

/** A message's role: a string (any value, forwarded), of bounded length. */
export function checkRole(role: unknown, where: string): string {
  if (typeof role !== 'string') throw new ProtocolError(`${where} must be an object with a string \`role\``)
  if (role.length > ROLE_MAX_CHARS)
    throw new ProtocolError(`${where}.role must be at most ${ROLE_MAX_CHARS} characters`)
  return role
}
