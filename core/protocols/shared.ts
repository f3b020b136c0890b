import { canonicalJson, canonicalJsonSteps, joiner, takeTurn } from '../canonical.ts'
import { CONTROL_CHARS } from '../headers.ts'
import type { Slicer } from '../slicer.ts'
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
  /**
   * event() for an event of megabytes (tens of thousands of parts), read in slices of the event
   * loop; its JSON was parsed already (parseEventJson gives it). `flush` is called between slices
   * so what is ready for the client goes out as it is made.
   */
  eventSliced?(data: string, slicer: Slicer, flush: () => void): Promise<boolean>
  /**
   * whether the reader holds megabytes its next event may turn into output at once (a translator
   * whose client gets the whole text again at the end): the relay then reads it by eventSliced
   */
  heavy?(): boolean
  /**
   * for an event of megabytes: whether the reader reads its value (false: the relay does not parse
   * it for the reader, a parse and a flat copy of megabytes nobody reads). Absent: it does.
   */
  readsValue?(data: string): boolean
}

export interface ProtocolAdapter {
  name: ProtocolName
  /** canonical view of a chat request; throws ProtocolError on bad input */
  parse(body: any, opts: ParseOptions): Prompt
  /** parse for a body of tens of thousands of messages: the same prompt or error, read in slices of the event loop */
  parseSliced(body: any, opts: ParseOptions, slicer: Slicer): Promise<Prompt>
  errorBody(status: number, type: string, message: string): unknown
  /** a complete answer as this protocol's non-streaming JSON body */
  render(answer: CanonicalAnswer): unknown
  /** a complete answer as this protocol's SSE stream (whole text); OpenAI's usage chunk only with includeUsage (default true) */
  renderStream(answer: CanonicalAnswer, opts?: { includeUsage?: boolean }): string
  /** renderStream's events one at a time (their concatenation is its text): a large answer's stream is rendered in slices */
  renderStreamSteps(answer: CanonicalAnswer, opts?: { includeUsage?: boolean }): RenderSteps
  /** a stream as one JSON array of its chunks, when the request asked for that transport (Gemini without alt=sse); else undefined */
  renderArrayStream?(answer: CanonicalAnswer, search: string): unknown[] | undefined
  /** a protocol that names the model and method in the path (Gemini): what the path asks for; throws ProtocolError */
  pathCall?(modelAction: string): { model: string; operation: Operation; stream: boolean }
  /** count_tokens, where the protocol has it: the body parse() reads, and the local answer's shape */
  countTokens?: { request(body: any): any; answer(tokens: number): unknown }
  /** read a non-streaming upstream body; throws when it is not this protocol's answer */
  read(json: any): CanonicalAnswer
  /**
   * before read() of an answer of megabytes (parsed in slices): what read() would print of it in one
   * JSON.stringify (a call's arguments), made in slices now. Absent: read() prints nothing large.
   */
  prepareRead?(json: unknown, slicer: Slicer): Promise<void>
  /** the protocol's error event, sent before ending a stream that cannot complete */
  streamError(status: number, type: string, message: string): string
  streamReader(opts: { hideUsageChunk?: boolean }): StreamReader
}

export interface ParseOptions {
  pathModel?: string
  stream?: boolean
}

/**
 * An adapter's parse as steps: a generator that reads the messages and pauses (yields) after every
 * PARSE_STEP of them. parse runs it through; parseSliced gives the loop back between steps when the
 * slice is used up (70,000 turns took 45-75 ms in one go). The same code either way, so the same
 * prompt and the same errors.
 */
export type ParseSteps = Generator<undefined, Prompt, undefined>
export const PARSE_STEP = 256

export function runSteps(steps: ParseSteps): Prompt {
  return runGenerator(steps)
}

/** a step generator run through in one go (the parse, or one of its parts outside the sliced path) */
export function runGenerator<T>(steps: Generator<undefined, T, undefined>): T {
  let r = steps.next()
  while (!r.done) r = steps.next()
  return r.value
}

/**
 * canonicalJson(list), an element at a time, pausing every PARSE_STEP (the same text); with
 * `sliced` (parseSliced: a body of megabytes) a large element is printed in steps of its own
 */
export function* canonicalListSteps(list: unknown[], sliced = false): Generator<undefined, string, undefined> {
  const out = joiner(',')
  for (let i = 0; i < list.length; i++) {
    if (i % PARSE_STEP === PARSE_STEP - 1) {
      out.cut()
      yield
    }
    out.add(sliced ? yield* canonicalJsonSteps(list[i]) : canonicalJson(list[i]))
  }
  return out.end('[', ']')
}

/** the steps run in slices of the event loop; a step that asks for a turn of its own (takeTurn) gets one */
export async function runStepsSliced(steps: ParseSteps, slicer: Slicer): Promise<Prompt> {
  takeTurn()
  let r = steps.next()
  while (!r.done) {
    if (takeTurn()) await slicer.yield()
    else await slicer.pause()
    r = steps.next()
  }
  return r.value
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

/** a stream's SSE events as the renderer makes them, one string each */
export type RenderSteps = Generator<string, void, undefined>

/** the events of a RenderSteps joined: renderStream's text */
export function joinSteps(steps: RenderSteps): string {
  let out = ''
  for (const s of steps) out += s
  return out
}

/**
 * An answer's text as a few stream deltas, so a replayed stream looks like a real one: one at a
 * time, the last one marked (a text of megabytes is rendered in slices).
 */
export function* textPieces(text: string, size = 64): Generator<{ text: string; last: boolean }, void, undefined> {
  for (let i = 0; i < text.length; i += size) yield { text: text.slice(i, i + size), last: i + size >= text.length }
}

/**
 * Tool-call arguments longer than this are rendered as a stream of pieces of this size (as a vendor
 * streams them), so no one event (and no step of a sliced render) holds megabytes of them.
 */
export const ARGS_PIECE_CHARS = 8 * 1024

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

// --- parsing a body of megabytes in slices of the event loop ------------------------------------
// One JSON.parse of a 10 MB body (and the garbage collection of the tens of thousands of objects
// it makes) held the loop for 100-300 ms, the depth check before it as long again. Here one sliced
// pass checks the depth and notes where the large arrays and objects lie (at any depth: messages,
// a message's content blocks, Gemini's parts) and the commas that cut their members into runs of
// about 128 KB; then each run is given to native JSON.parse and the large containers are put
// together from the runs, the loop given back whenever a slice is used up. The same value as
// JSON.parse; for malformed text (anything the assembly does not expect) one JSON.parse of the
// whole text, which throws its own error.

/** Bodies above this many characters are parsed by parseJsonSliced; below it one JSON.parse is quicker */
export const SLICED_PARSE_CHARS = 256 * 1024
// containers at least this long are put together from runs; shorter ones are one JSON.parse
const BIG_CHARS = 64 * 1024
// the text of one run of members given to one JSON.parse (a single member may be longer)
const RUN_CHARS = 128 * 1024

/** a large array, object or string: where it lies, the commas that cut it into runs, its large members */
interface Big {
  open: number
  close: number
  array: boolean
  /** a string member of megabytes: parsed from the text itself (in a run it would be copied first) */
  string?: true
  cuts: number[]
  children: Big[]
  /** the last string before it: its key when it is an object's member */
  keyAt: number
  keyEnd: number
}
type Scan = { kind: 'deep' } | { kind: 'whole' } | { kind: 'big'; root: Big }

/**
 * One pass over the text: jsonDepthExceeds's check (same tokens, same answer) and the large
 * containers. The open containers are columns indexed by depth, so a small one (tens of thousands
 * of messages) allocates nothing; an object is made only for a container found to be large.
 */
async function scanJson(text: string, limit: number, slicer: Slicer): Promise<Scan> {
  // a regex of its own: two bodies scanned at once would share lastIndex otherwise
  const token = /[{}[\]",]/g
  const openAt: number[] = []
  const isArray: boolean[] = []
  const keyAt: number[] = []
  const keyEnd: number[] = []
  const lastCut: number[] = []
  const cuts: Array<number[] | undefined> = []
  const children: Array<Big[] | undefined> = []
  let top = -1 // the innermost open container's index in the columns
  let root: Big | undefined
  let usable = true
  let depth = 0
  let strAt = -1
  let strEnd = -1
  let n = 0
  for (let m = token.exec(text); m !== null; m = token.exec(text)) {
    const i = m.index
    const c = text.charCodeAt(i)
    if (c === 34) {
      let end = i
      for (;;) {
        end = text.indexOf('"', end + 1)
        if (end < 0) return { kind: 'whole' } // unterminated: JSON.parse reports it
        let backslashes = 0
        while (text.charCodeAt(end - 1 - backslashes) === 92) backslashes++
        if ((backslashes & 1) === 0) break
        // a string of megabytes with an escaped quote every few words: hundreds of thousands of them
        if ((++n & 1023) === 0 && slicer.due()) await slicer.yield()
      }
      if (end - i >= BIG_CHARS && top >= 0)
        (children[top] ??= []).push({
          open: i,
          close: end,
          array: false,
          string: true,
          cuts: [],
          children: [],
          keyAt: strAt,
          keyEnd: strEnd,
        })
      strAt = i
      strEnd = end
      token.lastIndex = end + 1
    } else if (c === 123 || c === 91) {
      if (++depth > limit) return { kind: 'deep' }
      top++
      openAt[top] = lastCut[top] = i
      isArray[top] = c === 91
      keyAt[top] = strAt
      keyEnd[top] = strEnd
      cuts[top] = children[top] = undefined
    } else if (c === 125 || c === 93) {
      depth--
      // a closer without its opener, or of the other kind: malformed, JSON.parse says where
      if (top < 0 || isArray[top] !== (c === 93)) usable = false
      else if (i - openAt[top]! >= BIG_CHARS) {
        const big: Big = {
          open: openAt[top]!,
          close: i,
          array: isArray[top]!,
          cuts: cuts[top] ?? [],
          children: children[top] ?? [],
          keyAt: keyAt[top]!,
          keyEnd: keyEnd[top]!,
        }
        if (top > 0) (children[top - 1] ??= []).push(big)
        else root = big
      }
      if (top >= 0) top--
    } else if (top >= 0 && i - lastCut[top]! >= RUN_CHARS) (cuts[top] ??= []).push((lastCut[top] = i))
    if ((++n & 1023) === 0 && slicer.due()) await slicer.yield()
  }
  return usable && root && top < 0 ? { kind: 'big', root } : { kind: 'whole' }
}

/**
 * JSON.parse(text) in slices of the event loop, or `deep` when the text nests deeper than `limit`
 * (what jsonDepthExceeds says, checked before anything is parsed). Throws JSON.parse's SyntaxError
 * for malformed text.
 */
export async function parseJsonSliced(
  text: string,
  limit: number,
  slicer: Slicer,
): Promise<{ deep: true } | { deep: false; value: unknown }> {
  if (text.length > SLICED_PARSE_CHARS) {
    // a text made by appending (a tool input from thousands of deltas) is flattened by its first
    // search, a copy of megabytes: in a turn of its own (a no-op for a flat text)
    await slicer.yield()
    void text.indexOf('"')
    await slicer.yield()
  }
  const scan = await scanJson(text, limit, slicer)
  if (scan.kind === 'deep') return { deep: true }
  await slicer.pause()
  if (scan.kind === 'whole') return { deep: false, value: JSON.parse(text) }
  try {
    const value = await build(text, scan.root, slicer)
    // only whitespace around the root
    if (!WS_ONLY.test(text.slice(0, scan.root.open)) || !WS_ONLY.test(text.slice(scan.root.close + 1)))
      throw new Malformed()
    return { deep: false, value }
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err
    return { deep: false, value: JSON.parse(text) }
  }
}

/** the assembly met text it does not expect: JSON.parse of the whole text reports it */
class Malformed extends SyntaxError {}

const WS_ONLY = /^[ \t\n\r]*$/
const LEADING_COMMA = /^[ \t\n\r]*,/
const TRAILING_COMMA = /,[ \t\n\r]*$/
const COLON_ONLY = /^[ \t\n\r]*:[ \t\n\r]*$/

/** a large container: its runs by JSON.parse, its large members by build, in the text's order */
async function build(text: string, big: Big, slicer: Slicer): Promise<unknown> {
  // one run (a message around one string of megabytes): parsed from the text itself, not a copy in brackets
  if (!big.children.length && !big.cuts.length) {
    await slicer.pause()
    return JSON.parse(text.slice(big.open, big.close + 1))
  }
  const out: any = big.array ? [] : {}
  // `expect`: a member comes next (after the opener or a comma); `empty`: none came yet
  let expect = true
  let empty = true
  const members = async (t: string) => {
    // nothing between two commas, or between a comma and the end
    if (WS_ONLY.test(t)) throw new Malformed()
    await slicer.pause()
    const part = JSON.parse(big.array ? `[${t}]` : `{${t}}`)
    if (big.array) for (let j = 0; j < part.length; j++) out.push(part[j])
    else for (const k of Object.keys(part)) put(out, k, part[k])
    empty = false
  }
  // after a large member, the comma that must come next
  const afterMember = (t: string): string => {
    const comma = LEADING_COMMA.exec(t)
    if (!comma) throw new Malformed()
    expect = true
    return t.slice(comma[0].length)
  }
  let at = big.open + 1
  let cut = 0
  const runsUpTo = async (limit: number) => {
    for (; cut < big.cuts.length && big.cuts[cut]! < limit; cut++) {
      const t = text.slice(at, big.cuts[cut]!)
      if (expect) await members(t)
      else if (!WS_ONLY.test(t)) await members(afterMember(t))
      expect = true
      at = big.cuts[cut]! + 1
    }
  }
  for (const child of big.children) {
    await runsUpTo(child.open)
    // the text up to the member (up to its key, in an object): members ending with a comma, or nothing
    const start = big.array ? child.open : child.keyAt
    if (start < at) throw new Malformed()
    let t = text.slice(at, start)
    if (!expect) t = afterMember(t)
    if (!WS_ONLY.test(t)) {
      const comma = TRAILING_COMMA.exec(t)
      if (!comma) throw new Malformed()
      await members(t.slice(0, comma.index))
    }
    await slicer.pause()
    const value = child.string ? await longString(text, child, slicer) : await build(text, child, slicer)
    if (big.array) out.push(value)
    else {
      if (!COLON_ONLY.test(text.slice(child.keyEnd + 1, child.open))) throw new Malformed()
      put(out, JSON.parse(text.slice(child.keyAt, child.keyEnd + 1)), value)
    }
    expect = false
    empty = false
    at = child.close + 1
  }
  await runsUpTo(big.close)
  const t = text.slice(at, big.close)
  if (!expect) {
    if (!WS_ONLY.test(t)) await members(afterMember(t))
  } else if (!WS_ONLY.test(t)) await members(t)
  // an opener and its closer with nothing between: fine; a comma before the closer: not
  else if (!empty) throw new Malformed()
  return out
}

/**
 * A string member of megabytes, parsed a run at a time (one JSON.parse of 10 MB of text held the
 * loop for 30-70 ms): the runs are cut where no escape can be open (no backslash in the five
 * characters before the cut: `\uXXXX` is the longest), each is a string literal of its own, and
 * their values joined are the value of the whole. Code units are joined as they are, so a
 * surrogate pair cut in two comes back whole.
 */
async function longString(text: string, s: Big, slicer: Slicer): Promise<string> {
  // without escapes (and the control characters JSON refuses) the value is the text itself: a
  // slice of the body, no copy of megabytes (whose allocation and collection cost more than the parse)
  let plain = true
  for (let at = s.open + 1; plain && at < s.close; at += RUN_CHARS) {
    plain = !ESCAPE_OR_CONTROL.test(text.slice(at, Math.min(s.close, at + RUN_CHARS)))
    await slicer.pause()
  }
  if (plain) return text.slice(s.open + 1, s.close)
  const parts: string[] = []
  for (let at = s.open + 1; at < s.close; ) {
    let end = Math.min(s.close, at + RUN_CHARS)
    if (end < s.close) end = escapeFreeCut(text, at, end, s.close)
    parts.push(JSON.parse(`"${text.slice(at, end)}"`))
    at = end
    await slicer.pause()
  }
  if (parts.length === 1) return parts[0]!
  // the join copies the whole string (10 MB at once): in a turn of its own, what comes next in another
  await slicer.yield()
  const value = parts.join('')
  await slicer.yield()
  return value
}

// a backslash, or a character JSON refuses raw in a string
const ESCAPE_OR_CONTROL = /[\\\u0000-\u001f]/

/** the last place at or before `end` (and after `at`) where no escape is open; the string's end when none is near */
function escapeFreeCut(text: string, at: number, end: number, close: number): number {
  for (let p = end; p > at + 5 && p > end - 1024; p--) {
    let k = 1
    while (k <= 5 && text.charCodeAt(p - k) !== 92) k++
    if (k > 5) return p
  }
  // backslashes all over the last kilobyte: the rest in one go
  return close
}

/** what JSON.parse does with a member: an own property, `__proto__` included */
function put(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true })
  else o[k] = v
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
