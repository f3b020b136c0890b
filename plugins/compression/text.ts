// Lossless rewriting of text: JSON without insignificant whitespace (tokens kept verbatim, so big
// numbers and escapes survive), code without indentation where the language ignores it, trailing
// whitespace and runs of blank lines removed. Python, YAML, Makefiles, Markdown and any language
// not known to ignore indentation keep their indentation.

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
export function minifyJson(text: string): string | undefined {
  const t = text.trim()
  const c = t.charCodeAt(0)
  if (c !== 123 && c !== 91) return undefined
  try {
    JSON.parse(t)
  } catch {
    return undefined
  }
  let out = ''
  let i = 0
  let from = 0
  const n = t.length
  while (i < n) {
    const ch = t.charCodeAt(i)
    if (ch === 34) {
      // a string: copied whole, escapes included
      let j = i + 1
      while (j < n) {
        const d = t.charCodeAt(j)
        if (d === 92) j += 2
        else if (d === 34) break
        else j++
      }
      i = j + 1
    } else if (ch === 32 || ch === 10 || ch === 13 || ch === 9) {
      out += t.slice(from, i)
      while (i < n && isWs(t.charCodeAt(i))) i++
      from = i
    } else i++
  }
  return out + t.slice(from)
}

// a numbered listing's line (`cat -n`, Claude Code's Read): padding before the number is noise
const NUMBERED = /^ +(\d+)(\t|→)/

/** Code or tool output in a language: indentation dropped only where the language ignores it. */
export function minifyCode(text: string, lang: string): string {
  if (lang === 'json' || lang === 'jsonc') {
    const j = minifyJson(text)
    if (j !== undefined) return j
  }
  // multi-line string literals keep their indentation: leave such code's indentation alone
  const dropIndent = INDENT_FREE.has(lang) && !/`|"""|'''|R"\(|r#"/.test(text)
  const keepTrailing = TRAILING_MATTERS.has(lang)
  const lines = text.split('\n')
  const out: string[] = []
  let blank = 0
  for (let line of lines) {
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
    out.push(line)
  }
  return out.join('\n')
}

const FENCE = /(^|\n)(```+|~~~+)([^\n`]*)\n([\s\S]*?)\n\2(?=\n|$)/g

/** Fenced code blocks in a message's text, each minified for its language; the prose is kept as is. */
export function minifyFences(text: string): string {
  if (!text.includes('```') && !text.includes('~~~')) return text
  return text.replace(FENCE, (_all, lead: string, fence: string, info: string, code: string) => {
    const lang = info.trim().split(/\s+/)[0]!.toLowerCase()
    return `${lead}${fence}${info}\n${minifyCode(code, lang)}\n${fence}`
  })
}

/** A tool's output: JSON minified; else cleaned for the language of the file it shows (if known). */
export function minifyOutput(text: string, lang: string): string {
  const j = minifyJson(text)
  if (j !== undefined) return j
  return minifyCode(text, lang)
}
