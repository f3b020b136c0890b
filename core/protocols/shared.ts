import type { CanonicalAnswer, Prompt, ProtocolName, Usage } from '../types.ts'

/** A request the client got wrong: becomes a 400 in the client's protocol. */
export class ProtocolError extends Error {
  constructor(message: string, readonly status = 400, readonly type = 'invalid_request_error') {
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
  /** read a non-streaming upstream body */
  read(json: any): CanonicalAnswer
  streamReader(opts: { hideUsageChunk?: boolean }): StreamReader
}

export const emptyUsage = (): Usage => ({ inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 })

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

export function requireModel(model: unknown, where = 'model'): string {
  if (typeof model !== 'string' || !model.trim()) throw new ProtocolError(`\`${where}\` is required and must be a non-empty string`)
  return model
}
