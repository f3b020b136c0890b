// Word order and roles: "flights from Paris to Rome" and "flights from Rome to Paris" share every
// word, and a bag of words (or a sentence vector, 0.99 here) cannot tell them apart. This file
// aligns the two token sequences (which salient word of one is which of the other) and reads off
// what the alignment says about roles: whether a relation word ("from", "into", "than") kept its
// argument, whether a word kept its neighbours on either side ("Alice owes Bob"), whether a
// modifier still sits on the same head ("hyperbolic curve" / "hyperbolic edge"). A clause or a
// date moved as a whole keeps all of these, which is how a benign reordering stays a hit.
import { looksAlike, salientWord } from './features.ts'

// Relation words whose object is a role: swapping what follows them changes the question.
// Symmetric connectors ("and", "or", "between", "vs", "with") are left out on purpose: the
// difference between X and Y is the difference between Y and X, and list order rarely matters.
const DIRECTED = new Set([
  'from',
  'to',
  'into',
  'onto',
  'than',
  'before',
  'after',
  'by',
  'over',
  'under',
  'above',
  'below',
  'toward',
  'towards',
  'against',
  'of',
  'for',
  'in',
  'on',
  'at',
  'as',
  'per',
  'via',
  'through',
  'within',
  'without',
  'behind',
  'beyond',
  'across',
])
// the subset whose swap is a different question whenever both arguments are shared (the hard rule)
// list and clause joints: neighbours across them are items, not a word and its argument
const JOINT = new Set([
  ',',
  'and',
  'or',
  'nor',
  'but',
  'between',
  'vs',
  'versus',
  'with',
  'both',
  'either',
  'neither',
  'while',
  'whereas',
  '&',
])
const STRONG = new Set([
  'from',
  'to',
  'into',
  'onto',
  'than',
  'before',
  'after',
  'over',
  'under',
  'above',
  'below',
  'toward',
  'towards',
  'against',
])

export const ROLE_FEATURE_NAMES = [
  'matchedFrac',
  'unmatched',
  'moved',
  'blocks',
  'transposed',
  'objChanged',
  'strongObjChanged',
  'pivotSwap',
  'bigramBroken',
  'leftChanged',
  'rightChanged',
  'bothChanged',
  'relationMoved',
  'firstMoved',
  'salientMin',
  'exactSwap',
] as const

export interface RoleDiff {
  features: number[]
  /** a directed relation kept but with another shared argument, or a word whose neighbours traded sides */
  swapped: boolean
  /** the salient words largely coincide (the pair is a reordering, not a rewording) */
  sameWords: boolean
  /** the shared words keep their order and their neighbours: nothing for the roles model to judge */
  sameOrder: boolean
  /** only list items moved: not a swap of roles */
  listOnly: boolean
}

interface Seq {
  /** stems of the salient tokens, in order */
  words: string[]
  /** per salient token: the nearest directed relation word in the gap before it ('' if none) */
  rel: string[]
  /** per salient token: the token right before it and right after it (any token, '^'/'$' at the ends) */
  prev: string[]
  next: string[]
  /** per salient token: were there function words between it and the salient token before it */
  gapBefore: boolean[]
  /** per salient token: was there a list or clause joint between it and the salient token before it */
  jointBefore: boolean[]
  /** per salient token: a comma between it and the salient token before it */
  commaBefore: boolean[]
}

// a prompt's sequence is read against every candidate (and a stored one against every query)
const sequences = new WeakMap<string[], Seq>()
function sequenceOf(tokens: string[]): Seq {
  let s = sequences.get(tokens)
  if (!s) {
    s = sequence(tokens)
    sequences.set(tokens, s)
  }
  return s
}

function sequence(tokens: string[]): Seq {
  const s: Seq = { words: [], rel: [], prev: [], next: [], gapBefore: [], jointBefore: [], commaBefore: [] }
  let rel = ''
  let gap = false
  let joint = false
  let comma = false
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!
    // relation words and joints are what the alignment reads roles from, never aligned themselves
    const w = DIRECTED.has(t) || JOINT.has(t) ? undefined : salientWord(t)
    if (w === undefined) {
      if (DIRECTED.has(t)) rel = t
      if (JOINT.has(t)) joint = true
      if (t === ',') comma = true
      // quotes and other symbols do not separate a modifier from its head; words and commas do
      if (t === ',' || /[\p{L}\p{N}]/u.test(t)) gap = true
      continue
    }
    s.words.push(w)
    s.rel.push(rel)
    s.prev.push(i > 0 ? tokens[i - 1]! : '^')
    s.next.push(i + 1 < tokens.length ? tokens[i + 1]! : '$')
    s.gapBefore.push(gap)
    s.jointBefore.push(joint)
    s.commaBefore.push(comma)
    rel = ''
    gap = false
    joint = false
    comma = false
  }
  return s
}

/**
 * For each salient word of `a`, its index in `b` (-1 if none): the k-th occurrence of a word
 * takes the k-th occurrence on the other side; what is left is paired by spelling (looksAlike).
 */
function align(a: string[], b: string[]): number[] {
  const where = new Map<string, number[]>()
  b.forEach((w, j) => {
    const l = where.get(w)
    if (l) l.push(j)
    else where.set(w, [j])
  })
  const used = new Uint8Array(b.length)
  const map = a.map((w) => {
    const l = where.get(w)
    const j = l?.shift()
    if (j === undefined) return -1
    used[j] = 1
    return j
  })
  for (let i = 0; i < a.length; i++) {
    if (map[i] !== -1) continue
    const x = a[i]!
    // (spelling variants share their first letter and about their length: a cheap test before the edit distance)
    for (let j = 0; j < b.length; j++) {
      const y = b[j]!
      if (used[j] || x[0] !== y[0] || Math.abs(x.length - y.length) > 3 || !looksAlike(x, y)) continue
      map[i] = j
      used[j] = 1
      break
    }
  }
  return map
}

/** which of `xs` form a longest increasing subsequence: the words that kept their relative order */
function lisMembers(xs: number[]): boolean[] {
  const tails: number[] = [],
    tailAt: number[] = [],
    prev = new Array<number>(xs.length).fill(-1)
  xs.forEach((x, i) => {
    let lo = 0,
      hi = tails.length
    while (lo < hi) {
      const m = (lo + hi) >> 1
      if (tails[m]! < x) lo = m + 1
      else hi = m
    }
    tails[lo] = x
    tailAt[lo] = i
    prev[i] = lo > 0 ? tailAt[lo - 1]! : -1
  })
  const keep = new Array<boolean>(xs.length).fill(false)
  for (let i = tails.length ? tailAt[tails.length - 1]! : -1; i >= 0; i = prev[i]!) keep[i] = true
  return keep
}

/**
 * a one-word list item: a joint (comma, and, or) or the end of the text on either side of it; or
 * the first of three or more ("buy apples, pears and plums": a comma after it, a joint after the next)
 */
const listItem = (s: Seq, i: number) =>
  ((i === 0 || s.jointBefore[i]!) && (i + 1 === s.words.length || s.jointBefore[i + 1]!)) ||
  (s.commaBefore[i + 1] === true && s.jointBefore[i + 2] === true)

/** the salient word a relation governs, by relation (relations used once on a side only) */
function objects(s: Seq): Map<string, number> {
  const seen = new Map<string, number>()
  const twice = new Set<string>()
  s.rel.forEach((r, i) => {
    if (!r) return
    if (seen.has(r)) twice.add(r)
    seen.set(r, i)
  })
  for (const r of twice) seen.delete(r)
  return seen
}

function directed(a: Seq, b: Seq, map: number[], inverse: number[]) {
  const oa = objects(a),
    ob = objects(b)
  let changed = 0,
    strong = 0,
    moved = 0,
    exact = 0
  for (const [r, i] of oa) {
    const j = ob.get(r)
    if (j === undefined) continue
    // the relation is on both sides, its object is shared on both sides, but not the same word
    if (map[i] === j || map[i] === -1 || inverse[j] === -1) continue
    changed++
    if (!STRONG.has(r)) continue
    strong++
    // and the two objects traded places: "from X to Y" / "from Y to X", "X than Y" / "Y than X"
    const x = i,
      y = inverse[j]!
    if ((x - y) * (map[x]! - map[y]!) < 0) exact++
  }
  // a word governed by a relation on one side and by another (or none) on the other
  for (let i = 0; i < map.length; i++)
    if (map[i]! >= 0 && a.rel[i] !== b.rel[map[i]!] && (a.rel[i] || b.rel[map[i]!])) moved++
  return { changed, strong, moved, exact }
}

/**
 * Words whose two neighbours traded sides ("alice owes bob" / "bob owes alice") and adjacent
 * pairs (a modifier on its head, no function word between) that are no longer adjacent.
 */
function neighbours(a: Seq, map: number[], inverse: number[]) {
  let pivot = 0,
    broken = 0,
    pairs = 0,
    exactPivot = 0
  for (let i = 1; i + 1 < a.words.length; i++) {
    const l = map[i - 1]!,
      m = map[i]!,
      r = map[i + 1]!
    if (l < 0 || m < 0 || r < 0 || a.jointBefore[i] || a.jointBefore[i + 1]) continue
    if (l > m && r < m) pivot++
    // the two neighbours exchanged exactly around it: "alice owes bob" / "bob owes alice"
    if (l === m + 1 && r === m - 1) exactPivot++
  }
  for (let i = 1; i < a.words.length; i++) {
    if (a.gapBefore[i] || map[i - 1]! < 0 || map[i]! < 0) continue
    pairs++
    // broken by reordering, not by a word inserted between them ("famous" / "become famous")
    const from = map[i - 1]!,
      to = map[i]!
    if (to < from) broken++
    else
      for (let j = from + 1; j < to; j++)
        if (inverse[j] !== -1) {
          broken++
          break
        }
  }
  return { pivot, exactPivot, broken: pairs ? broken / pairs : 0 }
}

/** One direction of the comparison; `roleFeatures` takes the larger of both (symmetric). */
function oneWay(a: Seq, b: Seq) {
  const map = align(a.words, b.words)
  const inverse = new Array<number>(b.words.length).fill(-1)
  map.forEach((j, i) => {
    if (j >= 0) inverse[j] = i
  })
  const kept = map.filter((j) => j >= 0)
  const n = kept.length
  const inOrder = lisMembers(kept)
  // did only list items move ("apples, pears and plums" / "plums, pears and apples")
  let movedItems = 0,
    movedOther = 0
  for (let i = 0, k = 0; i < map.length; i++) {
    if (map[i]! < 0) continue
    if (!inOrder[k++]) {
      if (listItem(a, i) && listItem(b, map[i]!)) movedItems++
      else movedOther++
    }
  }
  let blocks = 0,
    transposed = 0,
    left = 0,
    right = 0,
    both = 0
  for (let k = 0; k < n; k++) if (k === 0 || kept[k] !== kept[k - 1]! + 1) blocks++
  // two shared words that traded places with others between them
  for (let i = 0; i < map.length; i++) {
    const j = map[i]!
    if (j < 0 || j === i) continue
    if (j < a.words.length && map[j] === i && Math.abs(j - i) > 1 && i < j) transposed++
  }
  for (let i = 0; i < map.length; i++) {
    const j = map[i]!
    if (j < 0) continue
    const l = a.prev[i] !== b.prev[j],
      r = a.next[i] !== b.next[j]
    if (l) left++
    if (r) right++
    if (l && r) both++
  }
  const d = directed(a, b, map, inverse)
  const nb = neighbours(a, map, inverse)
  const frac = (x: number) => (n ? x / n : 0)
  return {
    matchedFrac: n / Math.max(1, a.words.length),
    unmatched: a.words.length - n,
    moved: n ? inOrder.filter((x) => !x).length / n : 0,
    listOnly: movedItems > 0 && movedOther === 0 ? 1 : 0,
    blocks: Math.max(0, blocks - 1),
    transposed,
    objChanged: d.changed,
    strongObjChanged: d.strong,
    pivotSwap: nb.pivot,
    bigramBroken: nb.broken,
    leftChanged: frac(left),
    rightChanged: frac(right),
    bothChanged: frac(both),
    relationMoved: frac(d.moved),
    firstMoved: n && map[0]! >= 0 && map[0] !== 0 ? 1 : 0,
    exactSwap: d.exact + nb.exactPivot,
  }
}

export interface RoleText {
  marked: string[]
}

/** What the word alignment says about roles, symmetric in (a, b). */
export function roleFeatures(a: RoleText, b: RoleText): RoleDiff {
  const sa = sequenceOf(a.marked),
    sb = sequenceOf(b.marked)
  const x = oneWay(sa, sb),
    y = oneWay(sb, sa)
  const max = (k: keyof typeof x) => Math.max(x[k], y[k])
  const features = [
    Math.min(x.matchedFrac, y.matchedFrac),
    max('unmatched'),
    max('moved'),
    max('blocks'),
    max('transposed'),
    max('objChanged'),
    max('strongObjChanged'),
    max('pivotSwap'),
    max('bigramBroken'),
    max('leftChanged'),
    max('rightChanged'),
    max('bothChanged'),
    max('relationMoved'),
    max('firstMoved'),
    Math.min(sa.words.length, sb.words.length),
    max('exactSwap'),
  ]
  // at most two words of a side unmatched: a prompt reworded as well as reordered (a code block
  // moved below its question, three words changed) is left to the networks, which serve it
  const sameWords = features[0]! >= 0.75 && max('unmatched') <= 2 && Math.min(sa.words.length, sb.words.length) >= 2
  // the hard rule: nearly the same words, and two of them exchanged around a directed relation
  // or a word between them; looser evidence is left to the learned judge
  const swapped = sameWords && features[0]! >= 0.85 && max('exactSwap') > 0
  // a relation word changed on its own ("famous for" / "become famous") is a rewording, not a reordering
  const sameOrder = max('moved') === 0 && max('bigramBroken') === 0 && max('objChanged') === 0
  return { features, swapped, sameWords, sameOrder, listOnly: x.listOnly === 1 && y.listOnly === 1 }
}
