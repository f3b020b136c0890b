// Text normalisation for cache keys and embeddings. Never sent upstream.
//
// The rule every step obeys: two prompts may only become equal if they ask the same thing.
// So numbers, negations, code, identifiers, URLs and quoted text are kept as written (code is
// only alpha-renamed, which is meaning-preserving), and a step that would leave nothing behind
// is undone by the final fallback. Protected spans are swapped for private-use placeholders
// before the prose steps run and swapped back at the end.
import { americanise } from './spelling.ts'

export interface NormaliseSteps {
  /** strip a leading professional persona ("You are a senior engineer.", "As an expert analyst, ") */
  persona?: boolean
  /** strip politeness and request filler ("please", "could you", "I need you to") */
  filler?: boolean
  /** strip markdown syntax (headings, emphasis, lists, tables, link syntax, code fences) keeping the text */
  markdown?: boolean
  /** write unambiguous dates as YYYY-MM-DD */
  dates?: boolean
  /** drop thousands separators, "percent" -> "%" */
  numbers?: boolean
  /** British -> American spelling */
  spelling?: boolean
  /** rename function parameters to arg0, arg1, ... consistently (alpha-renaming) */
  code?: boolean
  /** curly quotes and dashes to ASCII */
  punctuation?: boolean
  /** lowercase prose (identifiers, acronyms, code and quotes keep their case) */
  lowercase?: boolean
  /** collapse runs of whitespace in prose */
  whitespace?: boolean
}

export const STEP_NAMES = [
  'persona',
  'filler',
  'markdown',
  'dates',
  'numbers',
  'spelling',
  'code',
  'punctuation',
  'lowercase',
  'whitespace',
] as const
export type StepName = (typeof STEP_NAMES)[number]

export interface NormaliseTextOptions extends NormaliseSteps {
  /** texts longer than this only get lowercase and whitespace collapse (cost bound on huge contexts) */
  maxChars?: number
}

// the full steps cost about 0.4 ms per KB on this project's 2-core machine: 64 KB keeps one text
// within ~25 ms of event-loop time; the fallback costs ~20 ms per MB, so beyond 1 MB a text is
// left as it is (its cache key is then exact, which is what huge pasted contexts need anyway)
const DEFAULT_MAX_CHARS = 64_000
const MAX_FALLBACK_CHARS = 1_000_000

const P_OPEN = '\uE000'
const P_CLOSE = '\uE001'
const PLACEHOLDER_RE = /\uE000([\uE100-\uF8FF]+)\uE001/g

function encodeIndex(i: number): string {
  // base-6143 digits in the private-use area: no ASCII digit or letter that a prose regex could see
  let s = ''
  do {
    s = String.fromCharCode(0xe100 + (i % 6143)) + s
    i = Math.floor(i / 6143)
  } while (i > 0)
  return s
}
function decodeIndex(s: string): number {
  let n = 0
  for (const ch of s) n = n * 6143 + (ch.charCodeAt(0) - 0xe100)
  return n
}

class Protector {
  spans: string[] = []
  hold(span: string): string {
    this.spans.push(span)
    return P_OPEN + encodeIndex(this.spans.length - 1) + P_CLOSE
  }
  restore(text: string): string {
    // spans may contain placeholders of spans protected earlier (a quote around inline code)
    for (let round = 0; round < 4 && text.includes(P_OPEN); round++) {
      text = text.replace(PLACEHOLDER_RE, (_, idx: string) => this.spans[decodeIndex(idx)] ?? '')
    }
    return text
  }
}

function collapse(text: string): string {
  // replaces only what changes (a run of two or more, or one tab or newline): the same result as
  // /\s+/g -> ' ', but V8 pays per replacement, and prose has a single space every few characters
  // (a 5 MB text: 8 ms instead of 650 ms)
  return text.replace(/\s{2,}|[^\S ]/g, ' ').trim()
}

// ---------------------------------------------------------------- code: alpha-renaming

const PY_KEYWORDS = new Set(['self', 'cls', 'this', 'None', 'True', 'False', 'null', 'undefined'])

/**
 * Rename the parameters of every `def f(...)` / `function f(...)` in `code` to arg0, arg1, ...
 * from the signature to the end of `code`, outside string literals (f-string and template
 * interpolations included), never an attribute (`.name`) or a keyword argument name (`f(name=)`).
 * Consistent renaming is a bijection, so two texts only become equal when they are the same code
 * up to parameter names. Skipped when the text already uses argN names.
 */
export function canonicaliseCode(code: string): string {
  if (/\barg\d+\b/.test(code)) return code
  const sig = /\b(def|function|func|fn)\s+([A-Za-z_$][\w$]*)\s*\(/g
  let counter = 0
  let out = code
  let searchFrom = 0
  // each signature rewrites the rest of the text: a bound keeps pathological input linear
  for (let sigs = 0; sigs < 64; sigs++) {
    sig.lastIndex = searchFrom
    const m = sig.exec(out)
    if (!m) break
    const open = m.index + m[0].length - 1
    const close = matchParen(out, open)
    if (close < 0) break
    const lang = m[1] === 'def' ? 'py' : 'js'
    const params = splitTopLevel(out.slice(open + 1, close))
    const names: string[] = []
    const rebuilt = params
      .map((p) => {
        const t = p.trim()
        const lead = /^(\*{1,2}|\.\.\.)?\s*([A-Za-z_$][\w$]*)([\s\S]*)$/.exec(t)
        if (!lead) return t
        const [, star = '', name, rest] = lead as unknown as [string, string | undefined, string, string]
        if (PY_KEYWORDS.has(name) || /^arg\d+$/.test(name)) return t
        names.push(name)
        return `${star}arg${counter + names.length - 1}${rest.trimEnd()}`
      })
      .filter((p) => p !== '')
    const mapping = new Map<string, string>()
    names.forEach((n, i) => {
      if (!mapping.has(n)) mapping.set(n, `arg${counter + i}`)
    })
    counter += names.length
    const head = out.slice(0, open) + '(' + rebuilt.join(', ') + ')'
    const body = mapping.size ? renameIdentifiers(out.slice(close + 1), mapping, lang) : out.slice(close + 1)
    out = head + body
    searchFrom = head.length
  }
  return out
}

function matchParen(s: string, open: number): number {
  let depth = 0
  for (let i = open; i < s.length; i++) {
    const c = s[i]
    if (c === '(') depth++
    else if (c === ')') {
      depth--
      if (depth === 0) return i
    }
    if (i - open > 2000) return -1
  }
  return -1
}

function splitTopLevel(s: string): string[] {
  const parts: string[] = []
  let depth = 0
  let cur = ''
  for (const c of s) {
    if ('([{'.includes(c)) depth++
    else if (')]}'.includes(c)) depth--
    if (c === ',' && depth === 0) {
      parts.push(cur)
      cur = ''
    } else cur += c
  }
  if (cur.trim() !== '' || parts.length) parts.push(cur)
  return parts
}

const AFTER_RE = /\s*(==|=>|=|:)?/y

function renameIdentifiers(s: string, map: Map<string, string>, lang: 'py' | 'js'): string {
  let out = ''
  let i = 0
  const n = s.length
  // interpolation stack: when > 0 we are inside {...} of an f-string / ${...} of a template
  const renameAt = (start: number, end: number) => {
    const name = s.slice(start, end)
    const to = map.get(name)
    if (!to) return name
    const prev = prevNonSpace(s, start)
    if (prev === '.') return name
    AFTER_RE.lastIndex = end
    const after = AFTER_RE.exec(s)?.[1]
    if (after === '=' && (prev === '(' || prev === ',')) return name
    if (lang === 'js' && after === ':' && (prev === '{' || prev === ',')) return name
    return to
  }
  const readString = (quote: string, triple: boolean, interp: boolean): void => {
    // copies a string literal; renames only inside interpolations
    const closeSeq = triple ? quote.repeat(3) : quote
    out += closeSeq
    i += closeSeq.length
    while (i < n) {
      if (s[i] === '\\') {
        out += s.slice(i, i + 2)
        i += 2
        continue
      }
      if (s.startsWith(closeSeq, i)) {
        out += closeSeq
        i += closeSeq.length
        return
      }
      if (!triple && quote !== '`' && s[i] === '\n') return
      if (interp && quote !== '`' && s[i] === '{') {
        if (s[i + 1] === '{') {
          out += '{{'
          i += 2
          continue
        }
        out += '{'
        i++
        readCode('}')
        continue
      }
      if (interp && quote === '`' && s[i] === '$' && s[i + 1] === '{') {
        out += '${'
        i += 2
        readCode('}')
        continue
      }
      out += s[i]
      i++
    }
  }
  const readCode = (until: string | null): void => {
    let depth = 0
    while (i < n) {
      const c = s[i]!
      if (until && c === until && depth === 0) {
        out += c
        i++
        return
      }
      if (until && c === '{') depth++
      if (until && c === '}') depth--
      if (/[A-Za-z_$]/.test(c) && !/[\w$]/.test(s[i - 1] ?? '')) {
        let j = i + 1
        while (j < n && /[\w$]/.test(s[j]!)) j++
        // string prefix (f'', rb"", ...) directly followed by a quote
        if (lang === 'py' && j - i <= 2 && /^[fFrRbBuU]+$/.test(s.slice(i, j)) && (s[j] === '"' || s[j] === "'")) {
          const interp = /f/i.test(s.slice(i, j))
          out += s.slice(i, j)
          i = j
          const q = s[i]!
          readString(q, s.startsWith(q.repeat(3), i), interp)
          continue
        }
        out += renameAt(i, j)
        i = j
        continue
      }
      if (c === '"' || c === "'" || c === '`') {
        const triple = lang === 'py' && s.startsWith(c.repeat(3), i)
        readString(c, triple, c === '`')
        continue
      }
      out += c
      i++
    }
  }
  readCode(null)
  return out
}

function prevNonSpace(s: string, idx: number): string {
  for (let k = idx - 1; k >= 0; k--) if (!/\s/.test(s[k]!)) return s[k]!
  return ''
}

// ---------------------------------------------------------------- protection

const FENCE_RE = /(^|\n)[ \t]*(```+|~~~+)[ \t]*([\w+#.-]*)[^\n]*\n([\s\S]*?)(?:\n[ \t]*\2[ \t]*(?=\n|$)|$)/g
// every span pattern is bounded in length, so no input makes a regex quadratic
const INLINE_CODE_RE = /(`+)([^`\n][\s\S]{0,4000}?)\1/g
const URL_RE = /\b(?:https?|ftp|file|s3|gs):\/\/[^\s<>"'`)\]]+/gi
const DQUOTE_RE = /"([^"\n]|\n(?!\n)){1,2000}?"/g
const CURLY_DQUOTE_RE = /\u201C[^\u201C\u201D]{1,2000}?\u201D/g
const CURLY_SQUOTE_RE = /(^|[\s([{:=,])\u2018([^\u2018\u2019]{1,2000}?)\u2019(?=$|[\s.,;:!?)\]}])/g
// an apostrophe inside a word ("don't", "users'") is not a quote: the opener must follow a space
const SQUOTE_RE = /(^|[\s([{:=,])'(?=\S)([^'\n]{1,2000}?)(?<=\S)'(?=$|[\s.,;:!?)\]}])/g
// snake_case, dunder and SCREAMING_CASE words, camelCase, dotted.names, paths
// applied per whitespace-separated token (at most MAX_TOKEN chars), never across the whole text
const IDENT_RE =
  /(?<![\p{L}\p{N}_])(?:_*[\p{L}\p{N}]+(?:_+[\p{L}\p{N}]+)+_*|__[\p{L}\p{N}]+__|[\p{Ll}\p{N}]+[\p{Lu}][\p{L}\p{N}]*|[\p{L}_][\p{L}\p{N}_]*(?:\.[\p{L}_][\p{L}\p{N}_]*)+\(?|[\w.-]*\/[\w./-]+)(?![\p{L}\p{N}_])/gu
const MAX_TOKEN = 256

function protectCode(text: string, p: Protector, o: Required<NormaliseSteps>): string {
  text = text.replace(FENCE_RE, (_m, lead: string, fence: string, lang: string, body: string) => {
    let code = body.replace(/[ \t]+$/gm, '').replace(/^\n+|\n+$/g, '')
    if (o.code) code = canonicaliseCode(code)
    // the fence markers are markdown; the language tag is meaning (same code, other language)
    const span = o.markdown ? (lang ? `${lang}: ${code}` : code) : `${fence}${lang}\n${code}\n${fence}`
    return `${lead} ${p.hold(span)} `
  })
  text = text.replace(INLINE_CODE_RE, (m, ticks: string, body: string) => p.hold(o.markdown ? body.trim() : m))
  return text
}

function protectProse(text: string, p: Protector, o: Required<NormaliseSteps>): string {
  text = text.replace(URL_RE, (m) => p.hold(m))
  // quoted text is kept verbatim; only typographic (curly) quote marks become straight ones,
  // since ' and " can differ in meaning inside code written in prose
  text = text.replace(DQUOTE_RE, (m) => p.hold(m))
  text = text.replace(CURLY_DQUOTE_RE, (m) => p.hold(o.punctuation ? `"${m.slice(1, -1)}"` : m))
  text = text.replace(
    CURLY_SQUOTE_RE,
    (_m, lead: string, body: string) => lead + p.hold(o.punctuation ? `'${body}'` : `\u2018${body}\u2019`),
  )
  text = text.replace(SQUOTE_RE, (_m, lead: string, body: string) => lead + p.hold(`'${body}'`))
  // a slash between digits is a date or a fraction, not a path: only spans with a letter are held
  text = text.replace(/[^\s\uE000\uE001]+/g, (tok) => {
    // a very long unbroken token is a blob (base64, hashes, minified code), never prose
    if (tok.length > MAX_TOKEN) return p.hold(tok)
    if (!/[_./\p{Lu}]/u.test(tok)) return tok
    return tok.replace(IDENT_RE, (m) => (/\p{L}/u.test(m) ? p.hold(m) : m))
  })
  return text
}

// ---------------------------------------------------------------- persona

// roles whose persona does not change what is asked (professional framing only); creative
// personas ("You are a pirate.", "You are a poet.") change the answer and are kept
const ROLES = [
  'assistant',
  'expert',
  'engineer',
  'architect',
  'analyst',
  'developer',
  'programmer',
  'coder',
  'consultant',
  'specialist',
  'scientist',
  'researcher',
  'reviewer',
  'advisor',
  'adviser',
  'auditor',
  'administrator',
  'admin',
  'manager',
  'lead',
  'designer',
  'strategist',
  'tutor',
  'teacher',
  'instructor',
  'professor',
  'mentor',
  'coach',
  'ai',
  'chatbot',
  'bot',
  'model',
  'professional',
  'practitioner',
  'accountant',
  'economist',
  'lawyer',
  'attorney',
  'statistician',
  'mathematician',
  'technician',
  'officer',
  'planner',
  'sre',
  'dba',
  'tester',
  'assistant ai',
  'language model',
  'ai assistant',
  'ai model',
  'copilot',
  'helper',
  'translator',
  'devops',
]
const ROLE_ALT = ROLES.map((r) => r.replace(' ', '\\s+')).join('|')
const MOD = `(?:[\\p{L}\\p{N}][\\p{L}\\p{N}'/-]*\\s+){0,6}?`
const PERSONA_SENTENCE = new RegExp(
  `^\\s*(?:you\\s+are|you're|act\\s+as|acting\\s+as|behave\\s+as|pretend\\s+(?:that\\s+)?you\\s+are|imagine\\s+(?:that\\s+)?you\\s+are)\\s+(?:a|an|the|my|our)\\s+(${MOD})(?:${ROLE_ALT})s?\\s*(?:[.!;\\n]+\\s*|$)`,
  'iu',
)
const PERSONA_CLAUSE = new RegExp(
  `^\\s*(?:as|acting\\s+as)\\s+(?:a|an|the|your|my)\\s+(${MOD})(?:${ROLE_ALT})s?\\s*,\\s*`,
  'iu',
)
const NEGATING = /\b(?:not|no|never|non|un\w*|without|n't)\b/i

function stripPersona(text: string): string {
  for (let i = 0; i < 4; i++) {
    const m = PERSONA_SENTENCE.exec(text) ?? PERSONA_CLAUSE.exec(text)
    if (!m || NEGATING.test(m[1] ?? '') || m[0].includes(P_OPEN)) break
    text = text.slice(m[0].length)
  }
  return text
}

// ---------------------------------------------------------------- filler

const SENT_START = `(^|[.!?]\\s+|\\n\\s*)`
// a request opener, never followed by a negation ("could you not ..." keeps its meaning)
const OPENER = `(?:(?:hi|hello|hey)(?:\\s+there)?\\s*[,!.]\\s*)?(?:(?:please|kindly)\\s*,?\\s+|(?:could|can|would)\\s+you\\s+(?:please\\s+|kindly\\s+)?(?:(?:be\\s+so\\s+kind\\s+as\\s+|mind\\s+)(?:to\\s+)?)?|i\\s+(?:need|want|would\\s+like|'d\\s+like)\\s+you\\s+to\\s+|i'd\\s+like\\s+you\\s+to\\s+|your\\s+(?:task|job)\\s+is\\s+to\\s+)+`
const FILLER_START = new RegExp(`${SENT_START}${OPENER}(?!(?:not|never|n't)\\b)(?=\\S)`, 'giu')
const FILLER_PLEASE_END = /\s*,\s*please\s*(?=[.!?]|$)/giu
// only a thanks of its own ("... . Thanks!", "..., thank you"): "write a note to say thank you" keeps it
const FILLER_THANKS_END =
  /(?:(?<=[.!?])|\s*,)\s*(?:thanks(?:\s+(?:a\s+lot|in\s+advance))?|thank\s+you(?:\s+(?:very\s+much|in\s+advance))?|thx|ty)\s*[.!]*\s*$/iu

function stripFiller(text: string): string {
  let out = text.replace(FILLER_START, (_m, lead: string) => lead)
  out = out.replace(FILLER_PLEASE_END, '')
  out = out.replace(FILLER_THANKS_END, '')
  return out
}

// ---------------------------------------------------------------- markdown

function trimClosingHashes(h: string): string {
  let end = h.length
  while (end > 0 && (h[end - 1] === ' ' || h[end - 1] === '\t' || h[end - 1] === '#')) end--
  return h.slice(0, end)
}

function stripMarkdown(text: string): string {
  return (
    text
      .replace(/^[ \t]{0,3}#{1,6}[ \t]+(.*)$/gm, (_m, h: string) => trimClosingHashes(h) + '\n')
      .replace(/^[ \t]*(?:[-*_][ \t]*){3,}$/gm, '')
      .replace(/^[ \t]*={3,}[ \t]*$/gm, '')
      // table separator rows, then table pipes
      .replace(/^[ \t]*\|?[ \t]*:?-{2,}:?[ \t]*(?:\|[ \t]*:?-{2,}:?[ \t]*)+\|?[ \t]*$/gm, '')
      .replace(/^[ \t]*\|(.*)\|[ \t]*$/gm, (_m, row: string) =>
        row
          .split('|')
          .map((c) => c.trim())
          .filter(Boolean)
          .join('; '),
      )
      .replace(/^[ \t]*>[ \t]?/gm, '')
      .replace(/^[ \t]*[-*+][ \t]+/gm, '')
      .replace(/!?\[([^\]\n]{1,500})\]\(([^)\s]{1,2048})\)/g, '$1 $2')
      // emphasis only when the markers sit at word edges: 2*3*4 and snake_case are not emphasis
      .replace(/(^|[^\p{L}\p{N}_*\\])(\*\*|__)(?=\S)([^\n]{0,500}?\S)\2(?![\p{L}\p{N}_*])/gu, '$1$3')
      .replace(/(^|[^\p{L}\p{N}_*\\])([*_])(?=[^\s*_])([^\n*_]{0,500}?[^\s*_\\])\2(?![\p{L}\p{N}_*])/gu, '$1$3')
      .replace(/\\([*_#`[\]()>|-])/g, '$1')
  )
}

// ---------------------------------------------------------------- dates and numbers

const MONTHS: Record<string, number> = {
  jan: 1,
  feb: 2,
  mar: 3,
  apr: 4,
  may: 5,
  jun: 6,
  jul: 7,
  aug: 8,
  sep: 9,
  sept: 9,
  oct: 10,
  nov: 11,
  dec: 12,
}
const MONTH_RE =
  '(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\\.?'
const DATE_MDY = new RegExp(`\\b${MONTH_RE}\\s+(\\d{1,2})(?:st|nd|rd|th)?,?\\s+(\\d{4})\\b`, 'gi')
const DATE_DMY = new RegExp(`\\b(\\d{1,2})(?:st|nd|rd|th)?\\s+(?:of\\s+)?${MONTH_RE},?\\s+(\\d{4})\\b`, 'gi')
const DATE_YMD = /\b(\d{4})[/.](\d{1,2})[/.](\d{1,2})\b/g
const DATE_NUMERIC = /\b(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})\b/g

function iso(y: string | number, m: number, d: number, original: string): string {
  if (m < 1 || m > 12 || d < 1 || d > 31) return original
  return `${y}-${String(m).padStart(2, '0')}-${String(d).padStart(2, '0')}`
}
function monthOf(s: string): number {
  const k = s.toLowerCase().replace('.', '')
  return MONTHS[k.slice(0, k.startsWith('sept') ? 4 : 3)] ?? MONTHS[k.slice(0, 3)] ?? 0
}

function normaliseDates(text: string): string {
  return (
    text
      .replace(DATE_MDY, (m, mon: string, d: string, y: string) => iso(y, monthOf(mon), +d, m))
      .replace(DATE_DMY, (m, d: string, mon: string, y: string) => iso(y, monthOf(mon), +d, m))
      .replace(DATE_YMD, (m, y: string, mo: string, d: string) => iso(y, +mo, +d, m))
      // 03/04/2026 is March 4 or April 3 depending on the writer: only unambiguous ones are rewritten
      .replace(DATE_NUMERIC, (m, a: string, b: string, y: string) => {
        const x = +a,
          z = +b
        if (x === z || (x > 12 && z <= 12)) return iso(y, z, x, m)
        if (z > 12 && x <= 12) return iso(y, x, z, m)
        return m
      })
  )
}

function normaliseNumbers(text: string): string {
  return (
    text
      // not after ( [ = : "f(1,000)" in code is two arguments
      .replace(
        /(?<![\d.,([=])(\d{1,3})((?:,\d{3})+)(?![\d,]|\.\d*,)/g,
        (_m, head: string, rest: string) => head + rest.replace(/,/g, ''),
      )
      .replace(/(\d)\s*(?:per\s*cent|percent)\b/gi, '$1%')
      .replace(/(\d)\s+%/g, '$1%')
  )
}

// ---------------------------------------------------------------- punctuation, case, whitespace

function normalisePunctuation(text: string): string {
  return text
    .replace(/[\u2018\u2019\u201B\u2032]/g, "'")
    .replace(/[\u201C\u201D\u201F\u2033]/g, '"')
    .replace(/[\u2013\u2014\u2015\u2212]/g, '-')
    .replace(/\u2026/g, '...')
    .replace(/\u00A0/g, ' ')
}

// short ALL-CAPS words are acronyms (IT, US, SQL, EC2) and keep their case: "IT jobs" is not
// "it jobs". Capitals used for emphasis ("do NOT", "ALWAYS") are lowercased: common words and
// words longer than five letters are emphasis, not names.
const ACRONYM_RE = /(?<![\p{L}\p{N}])\p{Lu}{2,5}(?:s|\p{N}[\p{Lu}\p{N}]*)?(?![\p{L}\p{N}])/gu
const EMPHASIS = new Set([
  'a',
  'an',
  'the',
  'is',
  'are',
  'was',
  'were',
  'be',
  'am',
  'not',
  'no',
  'yes',
  'do',
  'does',
  'did',
  'dont',
  'only',
  'must',
  'never',
  'ever',
  'all',
  'any',
  'and',
  'or',
  'but',
  'very',
  'will',
  'shall',
  'can',
  'may',
  'this',
  'that',
  'these',
  'those',
  'use',
  'must',
  'keep',
  'avoid',
  'stop',
  'now',
  'what',
  'why',
  'how',
  'when',
  'where',
  'who',
  'which',
  'i',
  'you',
  'he',
  'she',
  'we',
  'they',
  'my',
  'your',
  'our',
  'their',
  'to',
  'of',
  'in',
  'on',
  'at',
  'for',
  'with',
  'from',
  'by',
  'as',
  'if',
  'then',
  'else',
  'so',
  'too',
  'just',
  'also',
  'more',
  'less',
  'most',
  'least',
  'much',
  'many',
  'few',
  'one',
  'two',
  'three',
  'four',
  'five',
  'six',
  'ten',
  'has',
  'have',
  'had',
  'get',
  'got',
  'make',
  'made',
  'out',
  'up',
  'down',
  'off',
  'over',
  'under',
  'again',
  'here',
  'there',
  'good',
  'bad',
  'best',
  'worst',
  'new',
  'old',
  'big',
  'small',
  'huge',
  'true',
  'false',
  'note',
  'read',
  'write',
  'check',
  'only',
  'each',
  'every',
  'both',
  'own',
  'same',
  'other',
  'such',
  'after',
  'before',
  'until',
  'while',
  'about',
  'into',
  'like',
  'than',
  'please',
  'help',
  'need',
  'want',
  'know',
  'think',
  'see',
  'look',
  'show',
  'tell',
  'give',
  'take',
  'first',
  'last',
  'next',
  'final',
  'exact',
  'exactly',
  'really',
  'super',
  'short',
  'long',
  'fast',
  'slow',
  'high',
  'low',
])

function lowercaseProse(text: string): string {
  let letters = 0
  let upper = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c >= 65 && c <= 90) {
      letters++
      upper++
    } else if (c >= 97 && c <= 122) letters++
  }
  // a shouted prompt is lowercased whole
  if (letters >= 12 && upper / letters > 0.6) return text.toLowerCase()
  let out = ''
  let last = 0
  for (const m of text.matchAll(ACRONYM_RE)) {
    if (EMPHASIS.has(m[0].toLowerCase())) continue
    out += text.slice(last, m.index).toLowerCase() + m[0]
    last = m.index + m[0].length
  }
  return out + text.slice(last).toLowerCase()
}

/**
 * Collapse whitespace runs to one space, except a line break followed by indentation: code
 * pasted without fences keeps its indentation, which is meaning in Python and YAML.
 */
function collapseWhitespace(text: string): string {
  const lines = text.split('\n')
  let out = ''
  for (const line of lines) {
    // one stray leading space is sloppy prose; two or more (or a tab) is indentation
    const indent = /^(?:\t|  )[ \t]*(?=\S)/.exec(line)?.[0]
    const body = line.replace(/[ \t\f\v]+/g, ' ').trim()
    if (!body) continue
    if (!out) out = body
    else out += indent ? '\n' + indent.replace(/\t/g, '    ') + body : ' ' + body
  }
  return out.replace(/ ([,.;:!?])(?=\s|$)/g, '$1').replace(/([([{]) (?=\S)/g, '$1')
}

// ---------------------------------------------------------------- pipeline

export const DEFAULT_STEPS: Required<NormaliseSteps> = {
  persona: true,
  filler: true,
  markdown: true,
  dates: true,
  numbers: true,
  spelling: true,
  code: true,
  punctuation: true,
  lowercase: true,
  whitespace: true,
}

/**
 * Normalise one prompt text for cache keys and embeddings. Never empties a non-empty text: if
 * the steps leave nothing, the lowercased, whitespace-collapsed original is returned.
 */
export function normaliseText(text: string, options: NormaliseTextOptions = {}): string {
  if (!text) return text
  const o: Required<NormaliseSteps> = { ...DEFAULT_STEPS, ...stripUndefined(options) }
  const maxChars = options.maxChars ?? DEFAULT_MAX_CHARS
  const fallback = () => {
    let t = text
    if (o.lowercase) t = t.toLowerCase()
    if (o.whitespace) t = collapse(t)
    return t.trim() === '' ? text : t
  }
  if (text.length > MAX_FALLBACK_CHARS) return text
  if (text.length > maxChars) return fallback()

  const p = new Protector()
  // private-use characters in the input would be mistaken for placeholders: keep such text as is
  if (/[\uE000\uE001]/.test(text)) return fallback()
  let t = text.replace(/\r\n?/g, '\n')
  t = protectCode(t, p, o)
  if (o.code) t = canonicaliseProse(t)
  t = protectProse(t, p, o)
  if (o.markdown) t = stripMarkdown(t)
  if (o.persona) t = stripPersona(t)
  if (o.filler) t = stripFiller(t)
  if (o.dates) t = normaliseDates(t)
  if (o.numbers) t = normaliseNumbers(t)
  if (o.spelling) t = americanise(t)
  if (o.punctuation) t = normalisePunctuation(t)
  if (o.lowercase) t = lowercaseProse(t)
  if (o.whitespace) t = collapseWhitespace(t)
  else t = t.trim()
  t = p.restore(t)
  // a bare leftover of punctuation is as good as empty
  if (!/[\p{L}\p{N}]/u.test(t) && /[\p{L}\p{N}]/u.test(text)) return fallback()
  if (t.trim() === '') return fallback()
  return t
}

/** code written inline in prose ("...: def login(user, pwd): return ...") gets the same renaming */
function canonicaliseProse(t: string): string {
  if (!/\b(?:def|function|func|fn)\s+[A-Za-z_$][\w$]*\s*\(/.test(t)) return t
  // placeholders of protected fences must not be touched; the renamer never looks inside them
  return canonicaliseCode(t)
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {}
  for (const [k, v] of Object.entries(o)) if (v !== undefined && k !== 'maxChars') (out as any)[k] = v
  return out
}
