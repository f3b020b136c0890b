// What of a prompt the semantic cache reads, and how much of it: the work per request must be
// bounded by constants, never by what a client sends.
import { createHash } from 'node:crypto'
import type { Prompt } from '../../core/types.ts'

/** The form of a prompt that is embedded: case and spacing carry no meaning for the cache. */
export function embeddingText(text: string): string {
  return text.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').trim()
}

/**
 * Characters of a last message that are embedded and judged: its head and tail. Measured here
 * (USE-lite, 2 cores): an embedding costs 65-100 ms from 1,000 to 6,000 characters, ~230 ms at
 * 16,000 and 5.7 s at 24,000 (the tokenizer is superlinear); the judge's word alignment is
 * quadratic, 1.6 ms per candidate at 4,000 characters, 6.9 at 8,000, 12.5 at 12,000, and it runs
 * on the event loop for up to `candidates` (5) entries per lookup.
 */
export const WINDOW_CHARS = 4096
const GAP = ' … '
// how far a cut may move to land between words
const SNAP = 64

export interface TextWindow {
  /** the text itself when it fits, else head + ' … ' + tail, at most WINDOW_CHARS long */
  text: string
  /** when the text was cut: a digest of the part left out, so that it can be compared exactly */
  cut?: string
}

const isSpace = (c: number) => c === 32 || c === 10 || c === 9 || c === 13

/** Head and tail of `text` within `budget` characters; idempotent (a window is its own window). */
export function textWindow(text: string, budget = WINDOW_CHARS): TextWindow {
  if (text.length <= budget) return { text }
  const half = (budget - GAP.length) >> 1
  let headEnd = half
  let tailStart = text.length - half
  for (let i = half; i > half - SNAP; i--)
    if (isSpace(text.charCodeAt(i))) {
      headEnd = i
      break
    }
  for (let i = tailStart; i < tailStart + SNAP; i++)
    if (isSpace(text.charCodeAt(i - 1))) {
      tailStart = i
      break
    }
  // never split a surrogate pair
  if ((text.charCodeAt(headEnd - 1) & 0xfc00) === 0xd800) headEnd--
  if ((text.charCodeAt(tailStart) & 0xfc00) === 0xdc00) tailStart++
  const cut = createHash('sha256').update(text.slice(headEnd, tailStart)).digest('base64url').slice(0, 22)
  return { text: text.slice(0, headEnd) + GAP + text.slice(tailStart), cut }
}

/**
 * Characters in a prompt (system prompt, messages, tools and parameters), counted only until the
 * count passes `limit`: the cost is bounded by the limit, not by the prompt.
 */
export function promptChars(p: Prompt, limit: number): number {
  let n = p.system.length
  for (const m of p.messages) {
    // the role and framing of a message count a little, so that a million empty ones stop early
    n += 8 + m.text.length + (m.extra?.length ?? 0)
    if (n > limit) return n
  }
  for (const v of [p.tools, p.toolChoice, p.responseFormat, p.params]) {
    n += jsonChars(v, limit - n)
    if (n > limit) return n
  }
  return n
}

/** About the length of `value` as JSON, counted until it passes `budget` (then the count so far). */
function jsonChars(value: unknown, budget: number): number {
  let n = 0
  const stack: unknown[] = [value]
  while (stack.length && n <= budget) {
    const v = stack.pop()
    if (typeof v === 'string') n += v.length + 2
    else if (v === null || typeof v !== 'object') n += 5
    else if (Array.isArray(v)) {
      n += 2
      for (let i = 0; i < v.length && n + i <= budget; i++) stack.push(v[i])
      n += v.length
    } else {
      n += 2
      for (const k in v) {
        n += k.length + 4
        stack.push((v as Record<string, unknown>)[k])
        if (n > budget) break
      }
    }
  }
  return n
}
