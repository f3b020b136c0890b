// The string literals of megabytes in one SSE event's JSON, for the answer-text rewriter: the event
// is parsed without them (each one a short marker string in their place), the rewriter reads them a
// run of the text at a time, and what it writes back goes out as pieces, the vendor's own text
// where nothing changed. No copy of megabytes is made: parsing each long string whole, rewriting it
// and stringifying it (two joins of ~10 MB and a stringify per 5 MB event, with the collections of
// their garbage) made the masked Responses stream of test/large-events-relay.test.ts block the
// loop for 20-48 ms; read in runs, 17-24 (the relay's own blocks).
import type { Slicer } from '../slicer.ts'
import type { AnswerTextRewriter } from '../types.ts'

/** a string as the text between a JSON literal's quotes */
const escaped = (s: string) => JSON.stringify(s).slice(1, -1)

/** a literal over this many characters is left out of the parse */
export const LONG_LITERAL = 64 * 1024
/** the text of a literal is read (decoded, rewritten) this many characters at a time */
const RUN = 64 * 1024
// what JSON refuses inside a string literal: a raw control character, a backslash not starting an escape
const ESCAPE_OR_CONTROL = /\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})?|[\u0000-\u001f]/g

/** whether JSON would take `raw` as a string literal's text: every backslash starts an escape, no raw control character */
function validText(raw: string): boolean {
  ESCAPE_OR_CONTROL.lastIndex = 0
  for (let m = ESCAPE_OR_CONTROL.exec(raw); m; m = ESCAPE_OR_CONTROL.exec(raw)) if (m[0].length === 1) return false
  return true
}

type Text = { open: number; close: number } | { pieces: string[] }

export class LongLiterals {
  private readonly texts: Text[] = []
  /** the marker's value: a NUL (never in a vendor's prose as such), a nonce, then the text's index */
  private readonly prefix = `\u0000long:${Math.random().toString(36).slice(2)}:`
  private constructor(private readonly data: string) {}

  /** the long literals of `data`, in slices; undefined when it has none, or one JSON would refuse */
  static async find(data: string, slicer: Slicer): Promise<LongLiterals | undefined> {
    const found = new LongLiterals(data)
    let n = 0
    for (let at = data.indexOf('"'); at >= 0; ) {
      let end = at
      for (;;) {
        end = data.indexOf('"', end + 1)
        if (end < 0) return undefined
        let backslashes = 0
        while (data.charCodeAt(end - 1 - backslashes) === 92) backslashes++
        if ((backslashes & 1) === 0) break
        if ((++n & 1023) === 0 && slicer.due()) await slicer.yield()
      }
      if (end - at > LONG_LITERAL) found.texts.push({ open: at, close: end })
      at = data.indexOf('"', end + 1)
      if ((++n & 1023) === 0 && slicer.due()) await slicer.yield()
    }
    if (!found.texts.length) return undefined
    for (let i = 0; i < found.texts.length; i++)
      for (const raw of found.rawRuns(i)) {
        if (!validText(raw)) return undefined
        if (slicer.due()) await slicer.yield()
      }
    return found
  }

  /** the event's text with each long literal as its marker: small enough for one JSON.parse */
  skeleton(): string {
    let s = ''
    let at = 0
    for (let i = 0; i < this.texts.length; i++) {
      const t = this.texts[i] as { open: number; close: number }
      s += this.data.slice(at, t.open) + JSON.stringify(`${this.prefix}${i};`)
      at = t.close + 1
    }
    return s + this.data.slice(at)
  }

  /** the text a marker stands for, or -1 when `s` is not one */
  id(s: string): number {
    if (s.length > this.prefix.length + 12 || !s.startsWith(this.prefix) || !s.endsWith(';')) return -1
    const i = Number(s.slice(this.prefix.length, -1))
    return Number.isSafeInteger(i) && i < this.texts.length ? i : -1
  }

  /** a literal's text as runs: its raw (escaped) text, and that decoded */
  *runs(id: number): Generator<[raw: string, decoded: string]> {
    for (const raw of this.rawRuns(id)) yield [raw, JSON.parse(`"${raw}"`)]
  }

  /** a literal's raw text in runs of about RUN characters, cut where no escape is open and never inside a surrogate pair */
  private *rawRuns(id: number): Generator<string> {
    const t = this.texts[id]!
    if ('pieces' in t) throw new Error('a rewritten text is not read again')
    for (let at = t.open + 1; at < t.close; ) {
      let end = Math.min(t.close, at + RUN)
      if (end < t.close) end = this.cut(at, end, t.close)
      yield this.data.slice(at, end)
      at = end
    }
  }

  /** the last place at or before `end` with no escape open and no surrogate pair across it */
  private cut(at: number, end: number, close: number): number {
    const d = this.data
    for (let p = end; p > at + 6 && p > end - 1024; p--) {
      let k = 1
      while (k <= 5 && d.charCodeAt(p - k) !== 92) k++
      const c = d.charCodeAt(p - 1)
      if (k > 5 && !(c >= 0xd800 && c <= 0xdbff)) return p
    }
    return close
  }

  /**
   * a long literal's text given to `r` a run at a time, a step each (the rewriter's output for the
   * runs is the text's): a marker for what it made, each run the vendor's own escaped text where
   * the rewriter left it as it was; flushed at the end when `r` has flush (a whole text)
   */
  *rewriteSteps(
    id: number,
    r: Pick<AnswerTextRewriter, 'rewrite'> & Partial<AnswerTextRewriter>,
  ): Generator<undefined, string, undefined> {
    const pieces: string[] = []
    for (const [raw, decoded] of this.runs(id)) {
      const s = r.rewrite(decoded)
      pieces.push(s === decoded ? raw : escaped(s))
      yield
    }
    const rest = r.flush?.()
    if (rest) pieces.push(escaped(rest))
    return this.made(pieces)
  }

  /** a marker for text rewritten as escaped pieces (JSON string content, without the quotes) */
  private made(pieces: string[]): string {
    this.texts.push({ pieces })
    return `${this.prefix}${this.texts.length - 1};`
  }

  /**
   * `text` (JSON of a value holding markers) as pieces, each marker's literal replaced by its text:
   * the event's own (its raw literal) or what the rewriter made of it; text a step appended to a
   * marker stays after it
   */
  render(text: string): string[] {
    const out: string[] = []
    const lead = JSON.stringify(this.prefix).slice(0, -1)
    let at = 0
    for (let m = text.indexOf(lead, at); m >= 0; m = text.indexOf(lead, at)) {
      const digits = /^\d+;/.exec(text.slice(m + lead.length, m + lead.length + 12))
      if (!digits) break
      const t = this.texts[Number(digits[0].slice(0, -1))]!
      out.push(text.slice(at, m + 1))
      if ('pieces' in t) for (const p of t.pieces) out.push(p)
      else out.push(this.data.slice(t.open + 1, t.close))
      at = m + lead.length + digits[0].length
    }
    out.push(text.slice(at))
    return out
  }

  /** a marker's text as a plain string (a long id kept for later events), anything else as it is */
  plain(v: unknown): unknown {
    if (typeof v !== 'string') return v
    const i = this.id(v)
    if (i < 0) return v
    return JSON.parse(this.render(JSON.stringify(v)).join(''))
  }
}
