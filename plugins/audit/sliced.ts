// An entry with a prompt or an answer of megabytes (includeContent), made into its line in slices
// of the event loop: scrubbed, printed as canonical JSON in pieces before it is queued, and sealed
// (the chain header, the pieces encoded into one buffer, SHA-256 fed as it fills) by the writer.
// In one go a 5 MB answer held the loop for 47-53 ms through the proxy, a 10 MB one 92-118 ms
// (scrub 13-15 ms, sealEntry 48-72, the batch's join and encoding 25 more at 5 MB). The bytes are
// those of scrub() and sealEntry(): test/large-audit.test.ts compares them.
import { createHash } from 'node:crypto'
import { StringDecoder } from 'node:string_decoder'
import { cutString, PIECE_CHARS, Pieces, withinBudget } from '../../core/json-sliced.ts'
import { MAX_JSON_DEPTH, parseJsonSliced } from '../../core/protocols/shared.ts'
import type { Slicer } from '../../core/slicer.ts'
import { canonicalJson } from './canonical.ts'
import { type AuditEntry, frameHead, readFrame } from './chain.ts'
import { KEY_HINT, KEY_PATTERNS, REDACTED, scrub, scrubString } from './entry.ts'

// PIECE_CHARS (the core's): the length of one piece of text, and of a run of a long string escaped (or searched) at a time
// a member with at most this many values and characters is printed (or scrubbed) in one go
const SMALL_NODES = 64
const SMALL_CHARS = 16 * 1024
const isSmall = (v: unknown) => withinBudget(v, SMALL_NODES, SMALL_CHARS)

/** an entry's canonical JSON without its braces (the fields after the chain header), as pieces, and their UTF-8 length */
export interface PreparedEntry {
  inner: string[]
  bytes: number
}

/**
 * What sealEntry prints after the chain header, made in slices: canonicalJson of the entry without
 * its kind (the header has it), braces dropped.
 */
export async function prepareEntry(entry: AuditEntry, slicer: Slicer): Promise<PreparedEntry> {
  const pieces = await canonicalPieces({ ...entry, kind: undefined }, slicer)
  const last = pieces.length - 1
  pieces[0] = pieces[0]!.slice(1)
  pieces[last] = pieces[last]!.slice(0, -1)
  const inner = pieces.filter((p) => p.length > 0)
  let bytes = 0
  for (const p of inner) {
    bytes += Buffer.byteLength(p, 'utf8')
    await slicer.pause()
  }
  return { inner, bytes }
}

/**
 * sealEntry(entry, seq, prev) for a prepared entry: the line as UTF-8 bytes (the same bytes as
 * the one-go line's), filled and hashed a piece at a time.
 */
export async function sealPrepared(
  p: PreparedEntry,
  seq: number,
  prev: string,
  slicer: Slicer,
): Promise<{ line: Buffer; hash: string }> {
  // what frame() writes before the fields, the comma included (a request entry always has fields)
  const head = `{"seq":${seq},"prev":${JSON.stringify(prev)},"kind":"request"${p.inner.length ? ',' : ''}`
  const headBytes = Buffer.byteLength(head, 'utf8')
  // the trailer: ,"hash":"<64 hex>"}
  const line = Buffer.allocUnsafeSlow(headBytes + p.bytes + 75)
  let at = line.write(head, 0, 'utf8')
  const h = createHash('sha256').update(line.subarray(0, at))
  for (const piece of p.inner) {
    const from = at
    at += line.write(piece, at, 'utf8')
    h.update(line.subarray(from, at))
    await slicer.pause()
  }
  const hash = h.update('}').digest('hex')
  at += line.write(`,"hash":"${hash}"}`, at, 'latin1')
  if (at !== line.length) throw new Error(`audit: sealed ${at} of ${line.length} bytes`)
  return { line, hash }
}

/**
 * `audit verify --deep` for a line of megabytes: serialise(JSON.parse(body)) === body, where body
 * is the hashed text of the line, decoded, parsed (core's sliced parser) and printed as canonical
 * JSON (canonicalPieces) in slices, and compared a piece at a time. Throws where JSON.parse would.
 */
export async function isCanonicalSliced(line: Buffer, slicer: Slicer): Promise<boolean> {
  const f = readFrame(line)
  if (!f) return false
  const decoder = new StringDecoder('utf8')
  const texts: string[] = []
  for (let from = 0; from < f.h; from += 1024 * 1024) {
    texts.push(decoder.write(line.subarray(from, Math.min(from + 1024 * 1024, f.h))))
    await slicer.pause()
  }
  texts.push(decoder.end(), '}')
  // one copy of megabytes: in a slice of its own
  await slicer.yield()
  const body = texts.join('')
  const parsed = await parseJsonSliced(body, MAX_JSON_DEPTH, slicer)
  const record = parsed.deep ? JSON.parse(body) : parsed.value
  // serialise(): the chain header, then the other fields as canonical JSON
  const { seq, prev, kind } = record
  const tail = await canonicalPieces({ ...record, seq: undefined, prev: undefined, kind: undefined }, slicer)
  const head = frameHead(seq, prev, kind)
  const pieces = tail.length === 1 && tail[0] === '{}' ? [head, '}'] : [head, ',', tail[0]!.slice(1), ...tail.slice(1)]
  let at = 0
  for (const p of pieces) {
    if (!body.startsWith(p, at)) return false
    at += p.length
    await slicer.pause()
  }
  return at === body.length
}

type Frame =
  | { arr: unknown[]; i: number }
  | { arr?: undefined; obj: Record<string, unknown>; keys: string[]; i: number; n: number }

/** what canon() follows a value's toJSON to */
function resolved(v: unknown): unknown {
  while (v !== null && typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON === 'function')
    v = (v as { toJSON: () => unknown }).toJSON()
  return v
}
/** what canon() drops (a member left out, an element printed as null) */
const dropped = (v: unknown) => v === undefined || typeof v === 'function' || typeof v === 'symbol'

/**
 * canonicalJson(value) as pieces (their concatenation is its text), printed in slices of
 * `slicer`: keys sorted, a small member given to canonicalJson whole, a long string escaped a run
 * at a time (never between the halves of a surrogate pair, as JSON.stringify escapes them apart).
 */
export async function canonicalPieces(value: unknown, slicer: Slicer): Promise<string[]> {
  const out = new Pieces()
  const stack: Frame[] = []
  // print a value (or open it); `head` is the comma and key before it
  const put = async (v: unknown, head: string) => {
    if (typeof v === 'string' && v.length > PIECE_CHARS) {
      out.add(`${head}"`)
      for (const run of cutString(v, PIECE_CHARS)) {
        out.add(JSON.stringify(run).slice(1, -1))
        await slicer.pause()
      }
      out.add('"')
    } else if (v !== null && typeof v === 'object' && !isSmall(v)) {
      const arr = Array.isArray(v)
      out.add(head + (arr ? '[' : '{'))
      if (arr) stack.push({ arr: v, i: 0 })
      else stack.push({ obj: v as Record<string, unknown>, keys: Object.keys(v).sort(), i: 0, n: 0 })
    } else out.add(head + canonicalJson(v))
  }
  const top = resolved(value)
  await put(dropped(top) ? null : top, '')
  while (stack.length) {
    // at every member: a small one may still be 16K characters
    await slicer.pause()
    const f = stack[stack.length - 1]!
    if (f.arr) {
      if (f.i >= f.arr.length) {
        out.add(']')
        stack.pop()
        continue
      }
      const v = resolved(f.arr[f.i])
      await put(dropped(v) ? null : v, f.i++ ? ',' : '')
      continue
    }
    if (f.i >= f.keys.length) {
      out.add('}')
      stack.pop()
      continue
    }
    const k = f.keys[f.i++]!
    const v = resolved(f.obj[k])
    if (!dropped(v)) await put(v, `${f.n++ ? ',' : ''}${JSON.stringify(k)}:`)
  }
  out.flush()
  return out.done
}

// sticky forms of the key patterns: tested where a hint occurs (\b still sees the character before)
const STICKY = KEY_PATTERNS.map((re) => new RegExp(re.source, `${re.flags.replace('g', '')}y`))
const HINT_ALL = new RegExp(KEY_HINT.source, 'gi')

/**
 * scrub(value, secrets) in slices: the same result, a large container walked member by member
 * (a small one scrubbed whole) and a long string searched a run at a time.
 */
export async function scrubSliced<T>(value: T, secrets: string[], slicer: Slicer): Promise<T> {
  return (await walk(value, secrets, slicer)) as T
}

async function walk(v: unknown, secrets: string[], slicer: Slicer): Promise<unknown> {
  if (typeof v === 'string') return v.length > PIECE_CHARS ? scrubLong(v, secrets, slicer) : scrub(v, secrets)
  if (!v || typeof v !== 'object' || v instanceof Date || isSmall(v)) return scrub(v, secrets)
  if (Array.isArray(v)) {
    let out: unknown[] | undefined
    for (let i = 0; i < v.length; i++) {
      const w = await walk(v[i], secrets, slicer)
      if (w !== v[i]) (out ??= v.slice())[i] = w
      await slicer.pause()
    }
    return out ?? v
  }
  // as scrub(): own enumerable keys scrubbed too, a copy in the same key order only where something changed
  const src = v as Record<string, unknown>
  let changed = false
  const keys: string[] = []
  const vals: unknown[] = []
  for (const k in src) {
    if (!Object.hasOwn(src, k)) continue
    const k2 = scrub(k, secrets)
    const w = await walk(src[k], secrets, slicer)
    if (k2 !== k || w !== src[k]) changed = true
    keys.push(k2)
    vals.push(w)
    await slicer.pause()
  }
  if (!changed) return v
  const o: Record<string, unknown> = {}
  for (let i = 0; i < keys.length; i++) o[keys[i]!] = vals[i]
  return o
}

/**
 * scrubString(s) for a string of megabytes: searched a run at a time for the secrets and for a
 * key pattern at each hint; found nothing (almost always), it is `s` itself. A string that does
 * hold something to mask is masked a run at a time too (maskLong).
 */
async function scrubLong(s: string, secrets: string[], slicer: Slicer): Promise<string> {
  // a secret or a hint across the end of a run is found in the run's overlap
  let overlap = 8
  for (const sec of secrets) overlap = Math.max(overlap, sec.length)
  for (let at = 0; at < s.length; at += PIECE_CHARS) {
    const run = s.slice(at, at + PIECE_CHARS + overlap)
    for (const sec of secrets) if (run.includes(sec)) return maskLong(s, secrets, slicer)
    HINT_ALL.lastIndex = 0
    for (let m = HINT_ALL.exec(run); m; m = HINT_ALL.exec(run)) {
      // every position, overlapping hints included
      HINT_ALL.lastIndex = m.index + 1
      for (const re of STICKY) {
        re.lastIndex = at + m.index
        if (re.test(s)) return maskLong(s, secrets, slicer)
      }
    }
    await slicer.pause()
  }
  return s
}

/**
 * scrubString(s, secrets) a run at a time, the same text: as there, each secret is replaced
 * everywhere in turn, then each key pattern, each pass over the text the one before left. In one
 * go a 10M-character prompt holding secrets held the loop 38-61 ms.
 */
async function maskLong(s: string, secrets: string[], slicer: Slicer): Promise<string> {
  // split('') puts the mask between every two characters: left to scrubString (no secret is empty)
  if (secrets.some((sec) => sec.length === 0)) return scrubString(s, secrets)
  let out = s
  for (const sec of secrets) out = await maskSecret(out, sec, slicer)
  for (let k = 0; k < STICKY.length; k++) out = await maskKeys(out, STICKY[k]!, STARTS[k]!, slicer)
  return out
}

/** s.split(sec).join(REDACTED): the occurrences left to right, none overlapping the one before */
async function maskSecret(s: string, sec: string, slicer: Slicer): Promise<string> {
  const parts: string[] = []
  // s[from..] is not copied into parts yet
  let from = 0
  for (let at = 0; at < s.length; at += PIECE_CHARS) {
    // the occurrences that start in this run
    const run = s.slice(at, at + PIECE_CHARS + sec.length - 1)
    for (let i = run.indexOf(sec, Math.max(0, from - at)); i >= 0; i = run.indexOf(sec, i + sec.length)) {
      parts.push(s.slice(from, at + i), REDACTED)
      from = at + i + sec.length
    }
    await slicer.pause()
  }
  return joinMasked(s, parts, from, slicer)
}

// where each key pattern can match: the word it starts with (\bsk- -> sk-), else at any hint
const STARTS = KEY_PATTERNS.map((re) => {
  const m = /^\\b([A-Za-z0-9-]+)(.?)/.exec(re.source)
  if (!m || /[?*+{]/.test(m[2]!)) return new RegExp(KEY_HINT.source, 'gi')
  return new RegExp(m[1]!, re.flags.includes('i') ? 'gi' : 'g')
})
// a start found in a run ends inside its overlap
const START_OVERLAP = Math.max(...STARTS.map((re) => re.source.length), KEY_HINT.source.length)

/**
 * s.replace(re, REDACTED) for a key pattern (global): its leftmost match from where the last one
 * ended, again and again. Every match begins at one of the pattern's starts, so the pattern is
 * tried, sticky, only there, in order.
 */
async function maskKeys(s: string, sticky: RegExp, starts: RegExp, slicer: Slicer): Promise<string> {
  const parts: string[] = []
  let from = 0
  for (let at = 0; at < s.length; at += PIECE_CHARS) {
    const run = s.slice(at, at + PIECE_CHARS + START_OVERLAP)
    starts.lastIndex = 0
    for (let m = starts.exec(run); m && m.index < PIECE_CHARS; m = starts.exec(run)) {
      // every position, overlapping starts included
      starts.lastIndex = m.index + 1
      if (at + m.index < from) continue
      sticky.lastIndex = at + m.index
      const key = sticky.exec(s)
      if (!key) continue
      parts.push(s.slice(from, at + m.index), REDACTED)
      from = at + m.index + key[0].length
    }
    await slicer.pause()
  }
  return joinMasked(s, parts, from, slicer)
}

/** the masked text: `parts`, then s from `from`; `s` itself when nothing was masked */
async function joinMasked(s: string, parts: string[], from: number, slicer: Slicer): Promise<string> {
  if (parts.length === 0) return s
  parts.push(s.slice(from))
  // one copy of megabytes: in a slice of its own
  await slicer.yield()
  return parts.join('')
}
