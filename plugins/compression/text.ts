// Lossless rewriting of text: JSON without insignificant whitespace (tokens kept verbatim, so big
// numbers and escapes survive), code without indentation where the language ignores it, trailing
// whitespace and runs of blank lines removed. Python, YAML, Makefiles, Markdown and any language
// not known to ignore indentation keep their indentation. Each rewrite is a generator that pauses
// every few thousand lines or 64K characters, so that a tool output of megabytes can be rewritten
// in slices of the event loop (minifyOutputPaced); the plain functions run it in one go.
import { joiner } from '../../core/canonical.ts'
import { parseJsonSliced } from '../../core/protocols/shared.ts'
import { Ask, FLAT_CHARS, NOW, runPaced, runThrough, slicerOf, type Pace, type Steps } from './pace.ts'

/** lines, and characters of a JSON text, between two pauses (the pieces so far joined at each) */
const LINES = 512
const CHARS = 64 * 1024

/** Languages (fence tags and file extensions) where leading indentation carries no meaning. */
const INDENT_FREE = new Set([
  'json',
  'jsonc',
  'js',
  'javascript',
  'mjs',
  'cjs',
  'jsx',
  'ts',
  'typescript',
  'tsx',
  'mts',
  'cts',
  'java',
  'c',
  'h',
  'cpp',
  'cc',
  'cxx',
  'hpp',
  'cs',
  'csharp',
  'go',
  'rust',
  'rs',
  'php',
  'css',
  'scss',
  'less',
  'sql',
  'kotlin',
  'kt',
  'swift',
  'scala',
  'dart',
  'graphql',
  'gql',
  'proto',
])
/** Languages where trailing whitespace can mean something (Markdown's hard line break). */
const TRAILING_MATTERS = new Set(['md', 'markdown', 'mdx', 'diff', 'patch'])

/** the language of a file path, by its extension ('' when none) */
export function languageOfPath(path: string): string {
  const m = /\.([A-Za-z0-9]+)$/.exec(path)
  if (m) return m[1]!.toLowerCase()
  return /(^|\/)(Makefile|GNUmakefile)$/.test(path) ? 'makefile' : ''
}

const isWs = (c: number) => c === 32 || c === 10 || c === 13 || c === 9

/** `text` without whitespace outside strings, if it is one JSON document; else undefined. */
export const minifyJson = (text: string): string | undefined => runThrough(minifyJsonSteps(text))

/** minifyJson, the check (a sliced parse) and the rewrite in slices of `pace` */
export const minifyJsonPaced = (text: string, pace: Pace): Promise<string | undefined> =>
  runPaced(minifyJsonSteps(text), pace)

function* minifyJsonSteps(text: string): Steps<string | undefined> {
  const t = text.trim()
  const c = t.charCodeAt(0)
  if (c !== 123 && c !== 91) return undefined
  if ((yield new ValidJson(t)) === undefined) return undefined
  return yield* stripJsonSteps(t)
}

/** whether a text is JSON: the text if JSON.parse takes it, else undefined */
class ValidJson extends Ask {
  constructor(readonly text: string) {
    super()
  }
  now(): string | undefined {
    try {
      JSON.parse(this.text)
      return this.text
    } catch {
      return undefined
    }
  }
  async paced(pace: Pace): Promise<string | undefined> {
    if (this.text.length < CHARS) return this.now()
    try {
      // the core's sliced parse: the value JSON.parse gives, or its error (no depth limit here)
      await parseJsonSliced(this.text, Number.POSITIVE_INFINITY, slicerOf(pace))
      return this.text
    } catch {
      return undefined
    }
  }
}

/** the whitespace outside strings of a valid JSON text removed, a pause every CHARS characters */
function* stripJsonSteps(t: string): Steps<string> {
  // joined a pause at a time: one join of the 300,000 pieces of a pretty-printed 5 MB text took ~100 ms
  const out = joiner('')
  let i = 0
  let from = 0
  let next = CHARS
  const n = t.length
  while (i < n) {
    if (i >= next) {
      next = i + CHARS
      out.cut()
      yield
    }
    const ch = t.charCodeAt(i)
    if (ch === 34) {
      // a string: copied whole, escapes included. Its end found by indexOf (a file's text of
      // megabytes in one string: a scan a character at a time held the loop 20-36 ms), a pause
      // every CHARS characters when it has many escaped quotes
      let j = i + 1
      for (;;) {
        const q = t.indexOf('"', j)
        if (q < 0) {
          j = n
          break
        }
        let backslashes = 0
        while (t.charCodeAt(q - 1 - backslashes) === 92) backslashes++
        j = q
        if ((backslashes & 1) === 0) break
        j = q + 1
        if (j >= next) {
          next = j + CHARS
          out.cut()
          yield
        }
      }
      i = j + 1
    } else if (ch === 32 || ch === 10 || ch === 13 || ch === 9) {
      out.add(t.slice(from, i))
      while (i < n && isWs(t.charCodeAt(i))) i++
      from = i
    } else i++
  }
  out.add(t.slice(from))
  return yield* flatJoin(out, n)
}

/**
 * The pieces' one flat join (what the one-go rewrite returns): a copy of megabytes (a 7 MB join:
 * 20-40 ms of CPU here, mostly its fresh pages) is a slice of its own, the loop given back before
 * and after it whatever is left of the slice.
 */
function* flatJoin(out: ReturnType<typeof joiner>, chars: number): Steps<string> {
  out.cut()
  if (chars < FLAT_CHARS) return out.end('', '')
  yield NOW
  const s = out.end('', '')
  yield NOW
  return s
}

// a numbered listing's line (`cat -n`, Claude Code's Read): padding before the number is noise
const NUMBERED = /^ +(\d+)(\t|→)/

/** Code or tool output in a language: indentation dropped only where the language ignores it. */
export function minifyCode(text: string, lang: string): string {
  if (lang === 'json' || lang === 'jsonc') {
    const j = minifyJson(text)
    if (j !== undefined) return j
  }
  return runThrough(codeSteps(text, lang))
}

/** minifyCode but for JSON, a pause every LINES lines */
function* codeSteps(text: string, lang: string): Steps<string> {
  // multi-line string literals keep their indentation: leave such code's indentation alone
  const dropIndent = INDENT_FREE.has(lang) && !/`|"""|'''|R"\(|r#"/.test(text)
  const keepTrailing = TRAILING_MATTERS.has(lang)
  const out = joiner('\n')
  let blank = 0
  // text.split('\n') a line at a time (one split of a 7 MB output: 20-40 ms)
  for (let i = 0, from = 0; from <= text.length; i++) {
    if (i % LINES === LINES - 1) {
      out.cut()
      yield
    }
    const nl = text.indexOf('\n', from)
    let line = nl < 0 ? text.slice(from) : text.slice(from, nl)
    from = nl < 0 ? text.length + 1 : nl + 1
    if (!keepTrailing) line = line.replace(/[ \t\r]+$/, '')
    const num = NUMBERED.exec(line)
    if (num) line = num[1]! + num[2]! + line.slice(num[0].length)
    if (dropIndent) {
      if (num) {
        const head = num[1]! + num[2]!
        line = head + line.slice(head.length).replace(/^[ \t]+/, '')
      } else line = line.replace(/^[ \t]+/, '')
    }
    // a run of blank lines says no more than one blank line
    if (line.trim() === '' && !keepTrailing) {
      if (++blank > 1) continue
    } else blank = 0
    out.add(line)
  }
  return yield* flatJoin(out, text.length)
}

const FENCE = /(^|\n)(```+|~~~+)([^\n`]*)\n([\s\S]*?)\n\2(?=\n|$)/g

/** Fenced code blocks in a message's text, each minified for its language; the prose is kept as is. */
export function minifyFences(text: string): string {
  return runThrough(fencesSteps(text))
}

/** minifyFences in slices of `pace`, for a text of megabytes (the same text) */
export const minifyFencesPaced = (text: string, pace: Pace): Promise<string> => runPaced(fencesSteps(text), pace)

/** text.replace(FENCE, ...) as a loop over the matches, a pause after each block and inside long ones */
function* fencesSteps(text: string): Steps<string> {
  if (!text.includes('```') && !text.includes('~~~')) return text
  const fences = new RegExp(FENCE.source, 'g')
  const out: string[] = []
  let from = 0
  for (let m = fences.exec(text); m; m = fences.exec(text)) {
    const [all, lead, fence, info, code] = m as unknown as [string, string, string, string, string]
    const lang = info.trim().split(/\s+/)[0]!.toLowerCase()
    // a fenced JSON of megabytes: checked and stripped in slices too (one go: 50-110 ms for 5 MB)
    const json = lang === 'json' || lang === 'jsonc' ? yield* minifyJsonSteps(code) : undefined
    const min = json !== undefined ? json : yield* codeSteps(code, lang)
    out.push(text.slice(from, m.index), `${lead}${fence}${info}\n${min}\n${fence}`)
    from = m.index + all.length
    yield
  }
  out.push(text.slice(from))
  if (text.length < FLAT_CHARS) return out.join('')
  yield NOW
  const s = out.join('')
  yield NOW
  return s
}

/** A tool's output: JSON minified; else cleaned for the language of the file it shows (if known). */
export function minifyOutput(text: string, lang: string): string {
  const j = minifyJson(text)
  if (j !== undefined) return j
  return minifyCode(text, lang)
}

/** minifyOutput in slices of `pace`, for an output of megabytes (the same text) */
export async function minifyOutputPaced(text: string, lang: string, pace: Pace): Promise<string> {
  const j = await minifyJsonPaced(text, pace)
  if (j !== undefined) return j
  // minifyCode's JSON attempt for a json file is the one just made
  return runPaced(codeSteps(text, lang), pace)
}
