// JSON.stringify of a body of megabytes in slices of the event loop. One JSON.stringify of a 10 MB
// body held the loop for 30-200 ms on this machine (and encoding the text to bytes as long again);
// here the value is walked member by member, small members (a message of a few hundred bytes) and
// runs of a long string each given to native JSON.stringify, the loop given back whenever a slice
// is used up. The text comes out in pieces of about PIECE_CHARS, whose concatenation is exactly
// JSON.stringify(value): same key order, members that JSON.stringify drops dropped, `null` for them
// in arrays, toJSON and anything that is not a plain object or array left to JSON.stringify itself.
import { StringDecoder } from 'node:string_decoder'
import { MAX_JSON_DEPTH, parseJsonSliced } from './protocols/shared.ts'
import type { Slicer } from './slicer.ts'

/** the length of one piece of text (and of the runs a long string is escaped in) */
export const PIECE_CHARS = 64 * 1024
// a member with at most this many values and characters of strings is one JSON.stringify
const SMALL_NODES = 64
const SMALL_CHARS = 16 * 1024

/** the pieces, each at least PIECE_CHARS long except the last (joined from the small texts) */
export class Pieces {
  readonly done: string[] = []
  private parts: string[] = []
  private chars = 0
  add(s: string): void {
    this.parts.push(s)
    if ((this.chars += s.length) >= PIECE_CHARS) this.flush()
  }
  flush(): void {
    if (this.parts.length) this.done.push(this.parts.length === 1 ? this.parts[0]! : this.parts.join(''))
    this.parts = []
    this.chars = 0
  }
}

/** an object or array JSON.stringify walks as such (not a Date, a Map, a boxed string, a class instance) */
function isPlain(v: object): boolean {
  const proto = Object.getPrototypeOf(v)
  return Array.isArray(v) ? proto === Array.prototype : proto === Object.prototype || proto === null
}

/** a container small enough for one JSON.stringify: counts values and characters, stops early */
function isSmall(v: unknown): boolean {
  return withinBudget(v, SMALL_NODES, SMALL_CHARS)
}

/** isSmall, the containers it finds too large put in `large` */
function isSmallMarking(v: unknown, large: WeakSet<object>): boolean {
  largeSeen = large
  try {
    return isSmall(v)
  } finally {
    largeSeen = undefined
  }
}

/** whether `v` holds at most `nodes` values and `chars` characters (keys and strings); stops as soon as it does not */
export function withinBudget(v: unknown, nodes: number, chars: number): boolean {
  nodesLeft = nodes
  charsLeft = chars
  return fits(v)
}
// the budget isSmall's walk spends (module state: no closure or object per call)
let nodesLeft = 0
let charsLeft = 0
function fits(x: unknown): boolean {
  if (--nodesLeft < 0) return false
  if (typeof x === 'string') return (charsLeft -= x.length) >= 0
  if (typeof x !== 'object' || x === null) return true
  if (Array.isArray(x)) {
    for (let i = 0; i < x.length; i++) if (!fits(x[i])) return notSmall(x)
    return true
  }
  for (const k in x) if ((charsLeft -= k.length) < 0 || !fits((x as Record<string, unknown>)[k])) return notSmall(x)
  return true
}

// the containers a walk found too large, kept for the rest of one stringifySliced: the size check
// of each container around an object of 100,000 keys enumerated its keys again (Object.keys of
// them: 20-35 ms here), five times in one turn for a Gemini call's arguments
let largeSeen: WeakSet<object> | undefined
function notSmall(x: object): false {
  largeSeen?.add(x)
  return false
}

/** JSON.stringify's text for the member `key` of a holder: itself, toJSON(key) included; undefined when dropped */
function nativeMember(key: string, v: unknown): string | undefined {
  const s = JSON.stringify({ [key]: v })
  return s === '{}' ? undefined : s.slice(JSON.stringify(key).length + 2, -1)
}

interface Frame {
  v: any
  keys: string[] | undefined
  i: number
  /** members written so far (a comma before the next) */
  written: number
}

/**
 * JSON.stringify(value) as pieces of text (their concatenation is its result), computed in slices
 * of `slicer`; undefined where JSON.stringify gives undefined. Throws JSON.stringify's own error
 * for a circular structure or a BigInt.
 */
export async function stringifySliced(value: unknown, slicer: Slicer): Promise<string[] | undefined> {
  const out = new Pieces()
  if (typeof value === 'string') {
    await longString(value, out, slicer)
    out.flush()
    return out.done
  }
  if (typeof value !== 'object' || value === null || !isPlain(value) || typeof (value as any).toJSON === 'function') {
    const s = JSON.stringify(value)
    return s === undefined ? undefined : [s]
  }
  const seen = new Set<object>()
  const large = new WeakSet<object>()
  const stack: Frame[] = []
  const open = (v: any, keys: string[] | undefined) => {
    // a circle: JSON.stringify of the whole value throws its own TypeError, naming where
    if (seen.has(v)) {
      JSON.stringify(value)
      throw new TypeError('Converting circular structure to JSON')
    }
    seen.add(v)
    out.add(keys ? '{' : '[')
    stack.push({ v, keys, i: 0, written: 0 })
  }
  // an object's keys are enumerated at the start of a slice when this one is used up
  if (!Array.isArray(value) && slicer.due()) await slicer.yield()
  open(value, Array.isArray(value) ? undefined : Object.keys(value))
  let steps = 0
  while (stack.length) {
    if ((++steps & 63) === 0 && slicer.due()) await slicer.yield()
    const f = stack[stack.length - 1]!
    const n = f.keys ? f.keys.length : f.v.length
    if (f.i >= n) {
      out.add(f.keys ? '}' : ']')
      seen.delete(f.v)
      stack.pop()
      continue
    }
    const key = f.keys ? f.keys[f.i]! : undefined
    const v = key !== undefined ? f.v[key] : f.v[f.i]
    const head = (f.written++ ? ',' : '') + (key !== undefined ? `${JSON.stringify(key)}:` : '')
    f.i++
    const t = typeof v
    if (t === 'string') {
      if (v.length <= PIECE_CHARS) out.add(head + JSON.stringify(v))
      else {
        out.add(head)
        await longString(v, out, slicer)
      }
    } else if (t === 'number' || t === 'boolean' || v === null) out.add(head + JSON.stringify(v))
    else if (t === 'object' && isPlain(v) && typeof v.toJSON !== 'function') {
      // its size check may enumerate the keys of a large object: at the start of a slice when this one is used up
      if (slicer.due()) await slicer.yield()
      const marked = large.has(v)
      if (!marked && isSmallMarking(v, large)) out.add(head + JSON.stringify(v))
      else {
        out.add(head)
        // a large object's Object.keys in a turn of its own: one an outer container's check found
        // (its keys may be 100,000), or one whose own check used the slice up enumerating them
        if (!Array.isArray(v) && (marked || slicer.due())) await slicer.yield()
        open(v, Array.isArray(v) ? undefined : Object.keys(v))
      }
    } else {
      // undefined, a function, a symbol, a BigInt, a Date, a Map...: as JSON.stringify has it
      const s =
        t === 'undefined' || t === 'function' || t === 'symbol' ? undefined : nativeMember(key ?? String(f.i - 1), v)
      if (s !== undefined) out.add(head + s)
      else if (!f.keys) out.add(`${head}null`)
      else f.written--
    }
  }
  out.flush()
  return out.done
}

/** a long string as JSON.stringify writes it, escaped a run at a time */
async function longString(s: string, out: Pieces, slicer: Slicer): Promise<void> {
  out.add('"')
  for (let at = 0; at < s.length; ) {
    let end = Math.min(s.length, at + PIECE_CHARS)
    // a surrogate pair stays in one run: apart, each half would be escaped as a lone surrogate
    if (end < s.length && isHigh(s.charCodeAt(end - 1)) && isLow(s.charCodeAt(end))) end--
    const run = JSON.stringify(s.slice(at, end))
    out.add(run.slice(1, -1))
    at = end
    await slicer.pause()
  }
  out.add('"')
}

const isHigh = (c: number) => c >= 0xd800 && c <= 0xdbff
const isLow = (c: number) => c >= 0xdc00 && c <= 0xdfff

/**
 * A long string as UTF-8 in pieces (Buffer.from of each), encoded in slices: the same bytes as
 * Buffer.from(s), a pair of surrogates never cut in two.
 */
export async function utf8Sliced(pieces: readonly string[], slicer: Slicer): Promise<Buffer[]> {
  const out: Buffer[] = []
  for (const p of pieces) {
    out.push(Buffer.from(p, 'utf8'))
    await slicer.pause()
  }
  return out
}

/** `s` cut into pieces of about PIECE_CHARS, never between the two halves of a surrogate pair */
export function cutString(s: string, size = PIECE_CHARS): string[] {
  const out: string[] = []
  for (let at = 0; at < s.length; ) {
    let end = Math.min(s.length, at + size)
    if (end < s.length && isHigh(s.charCodeAt(end - 1)) && isLow(s.charCodeAt(end))) end--
    out.push(s.slice(at, end))
    at = end
  }
  return out
}

// the bytes decoded at a time (a UTF-8 sequence cut at the end is completed by the next ones):
// 1-3 ms each for text of 2- to 4-byte characters
const DECODE_BYTES = 64 * 1024

/**
 * JSON.parse(buf.toString('utf8')) for a body of megabytes, in slices of the event loop (one
 * toString and JSON.parse of 5 MB held it 60 ms): decoded 64 KB at a time, parsed by
 * parseJsonSliced. Throws as JSON.parse does. Starts in a turn of its own, so the work before
 * it (a copy of the body) is not counted in its first slice.
 */
export async function parseBufferSliced(buf: Buffer, slicer: Slicer): Promise<unknown> {
  await slicer.yield()
  const decoder = new StringDecoder('utf8')
  const parts: string[] = []
  for (let at = 0; at < buf.length; at += DECODE_BYTES) {
    parts.push(decoder.write(buf.subarray(at, at + DECODE_BYTES)))
    await slicer.pause()
  }
  parts.push(decoder.end())
  // the whole text is one allocation of megabytes (its pages touched for the first time: ~3 ms a
  // MB here): in a slice of its own, the parse's first slice after it
  await slicer.yield()
  const text = parts.join('')
  await slicer.yield()
  const parsed = await parseJsonSliced(text, MAX_JSON_DEPTH, slicer)
  // nested deeper than a request may be: an answer is not refused for it, only parsed in one go
  return parsed.deep ? JSON.parse(text) : parsed.value
}

/**
 * JSON.stringify(value) of a parsed JSON value (plain objects, arrays, strings, numbers, booleans,
 * null) as pieces of about `size` characters made one at a time: a renderer yields each as its own
 * stream event, so the text of a tool input of megabytes is never made in one go. A small value, or
 * anything else, is one JSON.stringify. The pieces joined are JSON.stringify's text.
 */
export function* jsonTextPieces(value: unknown, size: number): Generator<string, void, undefined> {
  if (typeof value !== 'object' || value === null || !isPlain(value) || isSmall(value)) {
    if (typeof value !== 'string' || value.length <= size) {
      const s = JSON.stringify(value)
      if (s !== undefined) yield s
      return
    }
  }
  let held = ''
  for (const t of jsonTexts(value, size)) {
    held += t
    if (held.length >= size) {
      yield held
      held = ''
    }
  }
  if (held) yield held
}

/** the texts jsonTextPieces joins: small members whole, a long string a run of `size` at a time */
function* jsonTexts(v: unknown, size: number): Generator<string, void, undefined> {
  if (typeof v === 'string') {
    if (v.length <= size) return yield JSON.stringify(v)
    yield '"'
    for (const run of cutString(v, size)) yield JSON.stringify(run).slice(1, -1)
    return yield '"'
  }
  if (typeof v !== 'object' || v === null || !isPlain(v) || typeof (v as any).toJSON === 'function' || isSmall(v))
    return yield JSON.stringify(v) ?? 'null'
  if (Array.isArray(v)) {
    yield '['
    for (let i = 0; i < v.length; i++) {
      if (i) yield ','
      yield* jsonTexts(v[i] === undefined || typeof v[i] === 'function' ? null : v[i], size)
    }
    return yield ']'
  }
  yield '{'
  let n = 0
  for (const k of Object.keys(v)) {
    const x = (v as Record<string, unknown>)[k]
    if (x === undefined || typeof x === 'function' || typeof x === 'symbol') continue
    yield `${n++ ? ',' : ''}${JSON.stringify(k)}:`
    yield* jsonTexts(x, size)
  }
  yield '}'
}
