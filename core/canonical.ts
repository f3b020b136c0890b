// Canonical JSON per RFC 8785 (JCS): keys sorted by UTF-16 code units at every level, no
// whitespace, strings escaped and numbers printed as ECMAScript's JSON.stringify does (-0 as 0,
// 1e21 as 1e+21). One form for everything hashed over structures: cache keys, semantic partitions
// and the audit chain, whose verifiers recompute it from the parsed record; any JCS implementation
// gives the same bytes for JSON data. test/core-canonical-rfc8785.test.ts checks the RFC's examples.
// Where JCS says "must fail" we print what JSON.stringify prints instead, so hashing never throws
// on a request path: NaN and ±Infinity print as null, a lone surrogate as its \uXXXX escape. Values
// outside JSON follow JSON.stringify too (undefined, functions, symbols dropped, null in arrays;
// toJSON used), and a bigint prints as a decimal string. None of these occur in parsed JSON except
// lone surrogates (JSON.parse accepts "\ud800"); the audit README says so for outside verifiers.

import crypto, { createHash } from 'node:crypto'
import { Slicer } from './slicer.ts'

export function canonicalJson(value: unknown): string {
  // with every object's keys already in order, JSON.stringify prints exactly the canonical form
  // (same string escapes, number printing and dropped undefined) and is several times faster
  const out = inOrder(value, 0) ? JSON.stringify(value) : canon(value)
  return out === undefined ? 'null' : out
}

/** true when JSON.stringify(value) is canonical: keys sorted everywhere, no toJSON or bigint */
function inOrder(value: unknown, depth: number): boolean {
  if (typeof value === 'bigint') return false
  if (value === null || typeof value !== 'object') return true
  if (depth > 64) return false
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!inOrder(value[i], depth + 1)) return false
    return true
  }
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return false
  let prev: string | undefined
  for (const k in value) {
    if (!Object.hasOwn(value, k)) continue
    if (prev !== undefined && prev > k) return false
    prev = k
    if (!inOrder((value as Record<string, unknown>)[k], depth + 1)) return false
  }
  return true
}

// entries repeat the same few dozen keys: quote each once
const quotedKeys = new Map<string, string>()
function quoteKey(k: string): string {
  let q = quotedKeys.get(k)
  if (q === undefined) {
    q = JSON.stringify(k)
    if (quotedKeys.size < 10_000) quotedKeys.set(k, q)
  }
  return q
}

function canon(value: unknown): string | undefined {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value)
    case 'number':
      // Number#toString is what JSON.stringify prints for finite numbers (-0 as 0)
      return Number.isFinite(value) ? '' + value : 'null'
    case 'boolean':
      return value ? 'true' : 'false'
    case 'bigint':
      return JSON.stringify(value.toString())
    case 'object': {
      if (value === null) return 'null'
      if (Array.isArray(value)) {
        let s = '['
        for (let i = 0; i < value.length; i++) {
          if (i) s += ','
          s += canon(value[i]) ?? 'null'
        }
        return s + ']'
      }
      const maybe = value as { toJSON?: () => unknown }
      if (typeof maybe.toJSON === 'function') return canon(maybe.toJSON())
      const obj = value as Record<string, unknown>
      const keys = Object.keys(obj).sort()
      let s = '{'
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i]!
        const v = canon(obj[k])
        if (v === undefined) continue
        if (s.length > 1) s += ','
        s += quoteKey(k) + ':' + v
      }
      return s + '}'
    }
    default:
      // undefined, functions and symbols are dropped, as JSON.stringify does
      return undefined
  }
}

// Hashing a multi-megabyte prompt's canonical JSON as one string costs twice: the concatenation
// of its pieces, then flattening that rope when the hash reads it (~10 ms per MB here). This walk
// prints the same bytes as canon() but feeds them to the hash in pieces: small ones batched, a
// large string on its own.
const HASH_BATCH = 64 * 1024

// crypto.hash (Node >= 20.12): a one-shot digest without a Hash object
const oneShot = (crypto as { hash?: (alg: string, data: string, enc: 'hex') => string }).hash

/**
 * SHA-256 (hex) of canonicalJson(value). `sizeHint` (the request body's length, say) below 1 MB
 * takes the one-string path, which is faster for small values; otherwise the string is never built.
 */
export function canonicalSha256(value: unknown, sizeHint?: number): string {
  if (sizeHint !== undefined && sizeHint < 1_000_000 && oneShot) return oneShot('sha256', canonicalJson(value), 'hex')
  const h = createHash('sha256')
  let batch = ''
  const put = (s: string) => {
    if (s.length >= HASH_BATCH) {
      if (batch) h.update(batch)
      batch = ''
      h.update(s)
      return
    }
    batch += s
    if (batch.length >= HASH_BATCH) {
      h.update(batch)
      batch = ''
    }
  }
  if (!feed(value, put)) put('null')
  if (batch) h.update(batch)
  return h.digest('hex')
}

// a large string is hashed by pieces of this many characters, the event loop given back between
// pieces whenever the slice is used up
const ASYNC_SLICE = 1024 * 1024
// and escaped and hashed by pieces of this many: JSON.stringify's escaping of a string of lone
// surrogates costs ~80 ms per million characters (npm run fuzz, seed 1992691901 case 3470), a
// plain text's ~1 ms
const HASH_PIECE = 128 * 1024
// the walk looks at the clock every this many values
const STEPS_PER_CHECK = 256

/**
 * canonicalSha256 for a value of megabytes, in slices of the event loop (about `sliceMs` each) so
 * other requests run in between: the walk over the value, the canonical printing of its strings
 * and the hashing all pause when a slice is used up (in one go, a 10 MB prompt of 70,000 turns
 * held the loop for 300-500 ms). The same digest as canonicalSha256; below `ASYNC_SLICE` of
 * `sizeHint` it is that function.
 */
export async function canonicalSha256Async(value: unknown, sizeHint?: number, sliceMs = 10): Promise<string> {
  if (sizeHint === undefined || sizeHint < ASYNC_SLICE) return canonicalSha256(value, sizeHint)
  const slicer = new Slicer(sliceMs)
  const sink = new SlicedHash()
  const stack: Frame[] = []
  if (!enter(value, sink, stack)) sink.put('null')
  if (sink.large) await sink.hashLarge(slicer)
  let steps = 0
  while (stack.length) {
    step(stack[stack.length - 1]!, sink, stack)
    if (sink.large) await sink.hashLarge(slicer)
    if (++steps % STEPS_PER_CHECK === 0 && slicer.due()) await slicer.yield()
  }
  return sink.digest()
}

/** SHA-256 (hex) of a text's UTF-8, a long one a piece at a time with a pause between pieces */
export async function sha256TextSliced(text: string, slicer: Slicer): Promise<string> {
  const sink = new SlicedHash()
  sink.put(text)
  if (sink.large) await sink.hashLarge(slicer)
  return sink.digest()
}

/** SHA-256 fed in pieces: small ones batched; a large one held for hashLarge, which slices it */
class SlicedHash {
  private readonly h = createHash('sha256')
  private batch = ''
  large: string | undefined
  /** whether `large` is a string value still to be printed (escaped and quoted), not printed text */
  private raw = false
  put(s: string): void {
    if (s.length < HASH_BATCH) {
      if ((this.batch += s).length >= HASH_BATCH) this.flush()
      return
    }
    this.flush()
    this.large = s
  }
  /** a string value of megabytes: JSON.stringify's escaping done and hashed piece by piece */
  putString(s: string): void {
    this.put('"')
    this.flush()
    this.large = s
    this.raw = true
  }
  async hashLarge(slicer: Slicer): Promise<void> {
    const piece = this.large!
    const raw = this.raw
    this.large = undefined
    this.raw = false
    for (let at = 0; at < piece.length; ) {
      let end = Math.min(piece.length, at + HASH_PIECE)
      // never between the two halves of a surrogate pair: each half alone would hash as U+FFFD
      // (or, escaped, as a lone surrogate's \uXXXX)
      const last = piece.charCodeAt(end - 1)
      if (end < piece.length && last >= 0xd800 && last <= 0xdbff) end++
      const part = at === 0 && end === piece.length ? piece : piece.slice(at, end)
      // a piece's escaping is the whole string's in pieces: JSON.stringify escapes char by char
      this.h.update(raw ? JSON.stringify(part).slice(1, -1) : part)
      at = end
      await slicer.pause()
    }
    if (raw) this.put('"')
  }
  digest(): string {
    this.flush()
    return this.h.digest('hex')
  }
  private flush(): void {
    if (this.batch) this.h.update(this.batch)
    this.batch = ''
  }
}

/** an array or object being printed: the next index, or the next of its sorted keys */
type Frame =
  | { array: unknown[]; i: number }
  | { array?: undefined; obj: Record<string, unknown>; keys: string[]; i: number; first: boolean }

/** print a value, or open it (its frame pushed); false where canon gives undefined */
function enter(value: unknown, sink: SlicedHash, stack: Frame[]): boolean {
  if (typeof value === 'string' && value.length >= ASYNC_SLICE) {
    sink.putString(value)
    return true
  }
  if (value === null || typeof value !== 'object') {
    const s = canon(value)
    if (s === undefined) return false
    sink.put(s)
    return true
  }
  if (Array.isArray(value)) {
    sink.put('[')
    stack.push({ array: value, i: 0 })
    return true
  }
  const maybe = value as { toJSON?: () => unknown }
  if (typeof maybe.toJSON === 'function') return enter(maybe.toJSON(), sink, stack)
  const obj = value as Record<string, unknown>
  sink.put('{')
  stack.push({ obj, keys: Object.keys(obj).sort(), i: 0, first: true })
  return true
}

/** the next element or member of the innermost open value, or its end; as feed() prints them */
function step(f: Frame, sink: SlicedHash, stack: Frame[]): void {
  if (f.array) {
    if (f.i >= f.array.length) {
      sink.put(']')
      stack.pop()
      return
    }
    if (f.i) sink.put(',')
    if (!enter(f.array[f.i++], sink, stack)) sink.put('null')
    return
  }
  for (; f.i < f.keys.length; ) {
    const k = f.keys[f.i++]!
    let v = f.obj[k]
    while (v !== null && typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON === 'function')
      v = (v as { toJSON: () => unknown }).toJSON()
    // what canon drops: undefined, functions, symbols
    if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue
    sink.put(f.first ? quoteKey(k) + ':' : ',' + quoteKey(k) + ':')
    f.first = false
    enter(v, sink, stack)
    return
  }
  sink.put('}')
  stack.pop()
}

/** canon(value) piece by piece; false where canon gives undefined (the value is dropped) */
function feed(value: unknown, put: (s: string) => void): boolean {
  if (value === null || typeof value !== 'object') {
    const s = canon(value)
    if (s === undefined) return false
    put(s)
    return true
  }
  if (Array.isArray(value)) {
    put('[')
    for (let i = 0; i < value.length; i++) {
      if (i) put(',')
      if (!feed(value[i], put)) put('null')
    }
    put(']')
    return true
  }
  const maybe = value as { toJSON?: () => unknown }
  if (typeof maybe.toJSON === 'function') return feed(maybe.toJSON(), put)
  const obj = value as Record<string, unknown>
  const keys = Object.keys(obj).sort()
  put('{')
  let first = true
  for (const k of keys) {
    let v = obj[k]
    while (v !== null && typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON === 'function')
      v = (v as { toJSON: () => unknown }).toJSON()
    // what canon drops: undefined, functions, symbols
    if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue
    put(first ? quoteKey(k) + ':' : ',' + quoteKey(k) + ':')
    first = false
    feed(v, put)
  }
  put('}')
  return true
}

/**
 * head + the parts joined by sep + tail, joined a step's parts at a time (172,000 parts, 7 MB:
 * ~50 ms in one join), the last join of the steps' pieces giving one flat string (`head + join +
 * tail` is a rope, flattened again in one go by the first slice the counter takes of it)
 */
export function joiner(sep: string) {
  const done: string[] = []
  let part: string[] = []
  const cut = () => {
    if (part.length) done.push(part.join(sep))
    part = []
  }
  return {
    add: (s: string) => part.push(s),
    cut,
    empty: () => done.length === 0 && part.length === 0,
    end(head: string, tail: string): string {
      cut()
      if (done.length === 0) return head + tail
      done[0] = head + done[0]
      done[done.length - 1] += tail
      return done.join(sep)
    },
  }
}

// --- canonicalJson in steps, for a parse of megabytes (core/protocols/shared.ts ParseSteps) -------
// A tool call of megabytes in a conversation's history (an agent wrote a 5 MB file: every later
// request carries it) made one canonicalJson of 40-60 ms in the prompt's parse. In steps, the
// loop is given back between them (runStepsSliced) and the text is the same.

// a value past either bound is printed in steps; the check stops at the bound, so a small value
// costs a short walk
const LARGE_NODES = 4096
const LARGE_CHARS = 256 * 1024
// a step prints this many members, or escapes about this many characters of strings
const STEP_MEMBERS = 256
const STEP_CHARS = 64 * 1024
// nested deeper than this: one canonicalJson (what it does with a circle or a depth past the stack)
const STEPS_MAX_DEPTH = 1024

let turnWanted = false
/**
 * whether a step asked for a turn of its own since the last call (a step about to do a large
 * piece of work in one go: the sorting of an object's 100,000 keys, 20-35 ms). The runner of the
 * steps gives the loop back then, not only when the slice is used up.
 */
export function takeTurn(): boolean {
  const t = turnWanted
  turnWanted = false
  return t
}

/** whether `v` holds more than LARGE_NODES values or LARGE_CHARS characters (keys and strings); stops at the bound */
export function isLargeValue(v: unknown): boolean {
  budgetNodes = LARGE_NODES
  budgetChars = LARGE_CHARS
  return !fits(v)
}
// the budget fits() spends (module state: no closure or object per call)
let budgetNodes = 0
let budgetChars = 0
function fits(x: unknown): boolean {
  if (--budgetNodes < 0) return false
  if (typeof x === 'string') return (budgetChars -= x.length) >= 0
  if (typeof x !== 'object' || x === null) return true
  if (Array.isArray(x)) {
    for (let i = 0; i < x.length; i++) if (!fits(x[i])) return false
    return true
  }
  for (const k in x) if ((budgetChars -= k.length) < 0 || !fits((x as Record<string, unknown>)[k])) return false
  return true
}

/** canonicalJson(value): in steps when the value is large, else in one go */
export function* canonicalJsonSteps(value: unknown): Generator<undefined, string, undefined> {
  if (!isLargeValue(value)) return canonicalJson(value)
  const text = yield* canonicalSteps(value)
  // the caller's join of megabytes of text (a copy: ~10 ms for 7M characters) starts a turn of its own
  turnWanted = true
  yield
  return text
}

/** an object or array being printed by canonicalSteps: its sorted keys (an object) and the next index */
interface CanonFrame {
  v: any
  keys: string[] | undefined
  i: number
  first: boolean
}

const isHighSurrogate = (c: number) => c >= 0xd800 && c <= 0xdbff
const isLowSurrogate = (c: number) => c >= 0xdc00 && c <= 0xdfff

/**
 * canonicalJson(value) of a large value, a step every STEP_MEMBERS members or STEP_CHARS
 * characters of strings: the same text. Objects and arrays are walked here, a long string is
 * escaped a run at a time; anything else (a number, a value with toJSON) is printed by
 * canonicalJson itself, as the member it is. Starts in a turn of its own.
 */
export function* canonicalSteps(value: unknown): Generator<undefined, string, undefined> {
  const done: string[] = []
  // a step's small texts, joined into one flat piece when the step ends (appended into a rope
  // instead, the final join flattened 500 ropes: 15-17 ms for 6M characters, 7 ms flat)
  let parts: string[] = []
  const cut = () => {
    if (parts.length) done.push(parts.join(''))
    parts = []
  }
  let members = 0
  let chars = 0
  const stack: CanonFrame[] = []
  const open = (v: any): boolean => {
    if (stack.length >= STEPS_MAX_DEPTH) return false
    const keys = Array.isArray(v) ? undefined : Object.keys(v).sort()
    parts.push(keys ? '{' : '[')
    stack.push({ v, keys, i: 0, first: true })
    return true
  }
  /** a string as JSON.stringify prints it; a long one escaped a run at a time, a step each */
  function* string(v: string): Generator<undefined, void, undefined> {
    if (v.length <= STEP_CHARS) {
      parts.push(JSON.stringify(v))
      chars += v.length
      return
    }
    parts.push('"')
    cut()
    for (let at = 0; at < v.length; ) {
      let end = Math.min(v.length, at + STEP_CHARS)
      // a surrogate pair stays in one run: apart, each half would be escaped as a lone surrogate
      if (end < v.length && isHighSurrogate(v.charCodeAt(end - 1)) && isLowSurrogate(v.charCodeAt(end))) end--
      done.push(JSON.stringify(v.slice(at, end)).slice(1, -1))
      at = end
      yield
    }
    parts.push('"')
  }
  if (typeof value === 'string') {
    turnWanted = true
    yield
    yield* string(value)
    cut()
    return yield* joined(done)
  }
  if (value === null || typeof value !== 'object' || typeof (value as { toJSON?: unknown }).toJSON === 'function')
    return canonicalJson(value)
  turnWanted = true
  yield
  if (!open(value)) return canonicalJson(value)
  while (stack.length) {
    if (++members >= STEP_MEMBERS || chars >= STEP_CHARS) {
      members = chars = 0
      cut()
      yield
    }
    const f = stack[stack.length - 1]!
    const n = f.keys ? f.keys.length : f.v.length
    if (f.i >= n) {
      parts.push(f.keys ? '}' : ']')
      stack.pop()
      continue
    }
    const key = f.keys ? f.keys[f.i]! : undefined
    const v = key !== undefined ? f.v[key] : f.v[f.i]
    f.i++
    // what canon drops from an object, and prints as null in an array
    if (v === undefined || typeof v === 'function' || typeof v === 'symbol') {
      if (key === undefined) parts.push(f.first ? 'null' : ',null')
      else continue
    } else if (typeof v === 'string') {
      parts.push((f.first ? '' : ',') + (key !== undefined ? `${quoteKey(key)}:` : ''))
      yield* string(v)
    } else if (typeof v === 'object' && v !== null && typeof v.toJSON !== 'function') {
      parts.push((f.first ? '' : ',') + (key !== undefined ? `${quoteKey(key)}:` : ''))
      // an object of thousands of keys: its Object.keys and sort (20-35 ms for 100,000) start a slice of their own
      if (!Array.isArray(v) && isLargeValue(v)) {
        cut()
        turnWanted = true
        yield
      }
      if (!open(v)) return canonicalJson(value)
    } else if (key === undefined) parts.push((f.first ? '' : ',') + canonicalJson([v]).slice(1, -1))
    else {
      // a value with toJSON may be dropped: canonicalJson of the member says so ('{}')
      const member =
        typeof v === 'object' && v !== null ? canonicalJson({ [key]: v }) : `{${quoteKey(key)}:${canon(v)}}`
      if (member === '{}') continue
      parts.push((f.first ? '' : ',') + member.slice(1, -1))
    }
    f.first = false
  }
  cut()
  return yield* joined(done)
}

/** the pieces' text as one flat string: the copy of megabytes in a turn of its own */
function* joined(pieces: string[]): Generator<undefined, string, undefined> {
  turnWanted = true
  yield
  return pieces.join('')
}
