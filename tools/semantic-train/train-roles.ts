// Trains the reordering judge (judge.ts `roles`): boosted trees (gbdt.ts, the trainer the lexical
// model uses) over the role features of roles.ts and the difference features, on the pairs whose
// words largely coincide but whose order or arrangement differs. The networks and the lexical
// model in judge-weights.json are kept as they are; only `roles` is (re)written.
//
// Data (../shared/data/README.md): PAWS-Wiki (Google; Zhang, Baldridge and He, NAACL 2019) test
// split to learn on (its train split is not available here) and its dev split to choose the
// threshold and report; the reordered pairs of the QQP train split (its labels), so that the
// trees see how questions are reworded; and pairs made from positives of both: the objects of
// two relation words swapped, or two content words traded (label 0), and, so that not every
// reordering reads as a new question, a trailing phrase moved to the front or list items
// reordered (label 1).
//   node bin/run-ts.mjs tools/semantic-train/embed-pairs.ts ../shared/data/paws-wiki-dev.jsonl.gz   (dev vectors, ~3 min)
//   node bin/run-ts.mjs tools/semantic-train/train-roles.ts [--precision 0.92] [--synthetic-weight 0.5] [--embeddings DIR]
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { analyse, FEATURE_NAMES, pairFeatures, type TextInfo } from '../../plugins/semantic-cache/features.ts'
import type { BoostedModel } from '../../plugins/semantic-cache/gbdt.ts'
import { train } from './gbdt-train.ts'
import { createJudge, type JudgeFile, type RolesModel } from '../../plugins/semantic-cache/judge.ts'
import { ROLE_FEATURE_NAMES, roleFeatures } from '../../plugins/semantic-cache/roles.ts'
import { embeddingText } from '../../plugins/semantic-cache/text.ts'
import { dequantise, quantise } from '../../plugins/semantic-cache/vector-index.ts'
import { DATA_DIR, readPairs, rng, shuffled, TRAIN_FILE, type Pair } from './data.ts'

const args = process.argv.slice(2)
const flag = (name: string) => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}
const target = Number(flag('--precision') ?? 0.92)
const synWeight = Number(flag('--synthetic-weight') ?? 0.5)
const embDir = flag('--embeddings') ?? join(process.env.TMPDIR ?? '/tmp', 'agentmesh-paws-embeddings')
const here = dirname(fileURLToPath(import.meta.url))
const outFile = flag('--out') ?? join(here, '../../plugins/semantic-cache/judge-weights.json')
const USE_ID = 'use-lite-en@0.2.0'
const PAWS_TRAIN = join(DATA_DIR, 'paws-wiki-test.jsonl.gz')
const PAWS_DEV = join(DATA_DIR, 'paws-wiki-dev.jsonl.gz')

const info = new Map<string, TextInfo>()
const analysed = (t: string) => {
  let x = info.get(t)
  if (!x) {
    x = analyse(embeddingText(t), t)
    info.set(t, x)
  }
  return x
}

interface Row {
  x: number[]
  y: number
  w: number
  kind: string
}

/** a row when the pair is a reordering the roles judge is asked about, else undefined */
function row(a: string, b: string, y: number, w: number, kind: string): Row | undefined {
  const ia = analysed(a),
    ib = analysed(b)
  if (ia.tokens.join(' ') === ib.tokens.join(' ')) return undefined
  const r = roleFeatures(ia, ib)
  if (!r.sameWords || r.sameOrder || r.swapped || r.listOnly) return undefined
  const d = pairFeatures(ia, ib, 0)
  return { x: [...r.features, 0, ...d.features.slice(1)], y, w, kind }
}

// ---------------------------------------------------------------- synthetic pairs

const R = rng(14)
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(R() * xs.length)]!
const REL =
  /\b(from|to|into|than|before|after|of|for|in|on|at|over|under|against|by)\s+((?:the|a|an)\s+)?([A-Za-z][\w-]{2,})/g
const STOPISH = new Set([
  'the',
  'a',
  'an',
  'this',
  'that',
  'which',
  'what',
  'how',
  'why',
  'when',
  'where',
  'who',
  'there',
  'their',
  'them',
  'his',
  'her',
  'its',
  'our',
  'your',
  'my',
])

/** the objects of two different relation words swapped: "from Paris to Rome" -> "from Rome to Paris" */
function swapObjects(t: string): string | undefined {
  const ms = [...t.matchAll(REL)].filter((m) => !STOPISH.has(m[3]!.toLowerCase()))
  if (ms.length < 2) return undefined
  const i = Math.floor(R() * ms.length)
  const j = ms.findIndex((m, k) => k !== i && m[1] !== ms[i]![1] && m[3]!.toLowerCase() !== ms[i]![3]!.toLowerCase())
  if (j < 0) return undefined
  const [x, y] = i < j ? [ms[i]!, ms[j]!] : [ms[j]!, ms[i]!]
  const xs = x.index! + x[0].length - x[3]!.length,
    ys = y.index! + y[0].length - y[3]!.length
  return t.slice(0, xs) + y[3] + t.slice(xs + x[3]!.length, ys) + x[3] + t.slice(ys + y[3]!.length)
}

/** two content words (not next to each other) traded: "black people adopt white children" */
function tradeWords(t: string): string | undefined {
  const words = [...t.matchAll(/[A-Za-z][\w-]{3,}/g)].filter((m) => !STOPISH.has(m[0].toLowerCase()))
  if (words.length < 3) return undefined
  const i = Math.floor(R() * words.length)
  let j = Math.floor(R() * words.length)
  if (Math.abs(i - j) < 2) j = (i + 2) % words.length
  if (Math.abs(i - j) < 2 || words[i]![0].toLowerCase() === words[j]![0].toLowerCase()) return undefined
  const [x, y] = i < j ? [words[i]!, words[j]!] : [words[j]!, words[i]!]
  return (
    t.slice(0, x.index!) + y[0] + t.slice(x.index! + x[0].length, y.index!) + x[0] + t.slice(y.index! + y[0].length)
  )
}

/** a trailing phrase ("in 1990", "on Linux") moved to the front, or a leading one to the end */
function movePhrase(t: string): string | undefined {
  const end =
    /^(.+?)\s*,?\s+((?:in|on|at|during|since|for|after|before|by)\s+(?:the\s+)?[\w-]+(?:\s+\d{4})?)\s*([.?!]*)\s*$/i.exec(
      t,
    )
  if (end && end[1]!.split(/\s+/).length >= 3)
    return `${end[2]![0]!.toUpperCase()}${end[2]!.slice(1)}, ${end[1]![0]!.toLowerCase()}${end[1]!.slice(1)}${end[3]}`
  const start =
    /^((?:in|on|at|during|since|after|before)\s+(?:the\s+)?[\w-]+(?:\s+\d{4})?)\s*,\s*(.+?)\s*([.?!]*)\s*$/i.exec(t)
  if (start)
    return `${start[2]![0]!.toUpperCase()}${start[2]!.slice(1)} ${start[1]![0]!.toLowerCase()}${start[1]!.slice(1)}${start[3]}`
  return undefined
}

/** list items reordered: "X, Y and Z" -> "Z, X and Y"; "X and Y" -> "Y and X" */
function reorderList(t: string): string | undefined {
  const three = /\b([\w-]+), ([\w-]+),? (and|or) ([\w-]+)\b/.exec(t)
  if (three) return t.replace(three[0], `${three[4]}, ${three[1]} ${three[3]} ${three[2]}`)
  const two = /\b([A-Za-z][\w-]{2,}) (and|or) ([A-Za-z][\w-]{2,})\b/.exec(t)
  if (two && !STOPISH.has(two[1]!.toLowerCase()) && !STOPISH.has(two[3]!.toLowerCase()))
    return t.replace(two[0], `${two[3]} ${two[2]} ${two[1]}`)
  return undefined
}

/** an adverb moved: "how do I learn Python quickly" / "how can I quickly learn Python" */
function moveAdverb(t: string): string | undefined {
  const ws = t.split(/\s+/)
  const i = ws.findIndex(
    (w) => /^[a-z]{4,}ly[?.!,]?$/i.test(w) && !/^(only|early|family|daily|italy|july|reply|supply|apply|rely)/i.test(w),
  )
  if (i < 0 || ws.length < 4) return undefined
  const [w] = ws.splice(i, 1)
  const bare = w!.replace(/[?.!,]$/, ''),
    punct = w!.slice(bare.length)
  if (punct) ws[ws.length - 1] += punct
  let j = Math.floor(R() * (ws.length - 1)) + 1
  if (j === i) j = ws.length
  if (j >= ws.length) {
    const last = ws[ws.length - 1]!
    const p = /[?.!]$/.test(last) ? last.slice(-1) : ''
    ws[ws.length - 1] = last.slice(0, last.length - p.length) + ' ' + bare + p
  } else ws.splice(j, 0, bare)
  return ws.join(' ')
}

function synthetic(texts: string[], n: number): Row[] {
  const out: Row[] = []
  const kinds: Array<[string, (t: string) => string | undefined, number]> = [
    ['swap-objects', swapObjects, 0],
    ['trade-words', tradeWords, 0],
    ['move-phrase', movePhrase, 1],
    ['reorder-list', reorderList, 1],
    ['move-adverb', moveAdverb, 1],
  ]
  for (const [kind, f, y] of kinds) {
    let made = 0
    for (let tries = 0; made < n && tries < n * 40; tries++) {
      const t = pick(texts),
        s = f(t)
      // a benign move counts as much as a real pair: it is what keeps reworded prompts' hits
      const w = y ? 1 : synWeight
      const r = s && s !== t ? (R() < 0.5 ? row(t, s, y, w, kind) : row(s, t, y, w, kind)) : undefined
      if (r) {
        out.push(r)
        made++
      }
    }
  }
  return out
}

// ---------------------------------------------------------------- train

function balanced(rows: Row[]): number[] {
  let pos = 0,
    neg = 0
  for (const r of rows) r.y ? (pos += r.w) : (neg += r.w)
  return rows.map((r) => r.w * (r.y ? 0.5 / pos : 0.5 / neg) * rows.length)
}

function fitRoles(rows: Row[]): BoostedModel {
  const s = shuffled(rows, 3)
  const cut = Math.floor(s.length * 0.9)
  const tr = s.slice(0, cut),
    va = s.slice(cut)
  console.log(`roles trees: ${tr.length} rows to learn on, ${va.length} to stop on`)
  return train(
    tr.map((r) => r.x),
    tr.map((r) => r.y),
    balanced(tr),
    { X: va.map((r) => r.x), y: va.map((r) => r.y), w: balanced(va) },
    {
      trees: 300,
      depth: 4,
      learningRate: 0.08,
      lambda: 2,
      minChildHessian: 10,
      patience: 40,
      log: (l) => console.log('  ' + l),
    },
  )
}

// ---------------------------------------------------------------- choose the threshold on PAWS dev

function loadVectors(): Map<string, Float32Array> {
  const vectors = new Map<string, Float32Array>()
  const tf = join(embDir, 'texts.jsonl'),
    vf = join(embDir, 'vectors-512.f32')
  if (!existsSync(tf) || !existsSync(vf))
    throw new Error(`no PAWS embeddings in ${embDir}: run train/embed-pairs.ts first`)
  const texts = readFileSync(tf, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as string)
  const buf = readFileSync(vf)
  const all = new Float32Array(buf.buffer, buf.byteOffset, Math.floor(buf.length / 4))
  // through int8, as the index keeps them
  texts.forEach((t, i) => {
    if ((i + 1) * 512 <= all.length) vectors.set(t, dequantise(quantise(all.subarray(i * 512, (i + 1) * 512)).q))
  })
  return vectors
}

interface DevPair {
  y: number
  base: boolean
  gated: boolean
  s: number
}

/** per dev pair: the judge's verdict without the roles trees, and their score where they apply */
function devScores(dev: Pair[], model: RolesModel): DevPair[] {
  const vectors = loadVectors()
  const base = createJudge(USE_ID, { rolesModel: null })
  const withRoles = createJudge(USE_ID, { rolesModel: model, rolesMinScore: 2 })
  return dev.flatMap((p) => {
    const u = vectors.get(embeddingText(p.a)),
      v = vectors.get(embeddingText(p.b))
    if (!u || !v) return []
    let cos = 0
    for (let i = 0; i < u.length; i++) cos += u[i]! * v[i]!
    // store a, ask b, as the bench does
    const q = analysed(p.b),
      st = analysed(p.a)
    const b = base.judge(q, st, cos, { query: v, stored: u })
    // with an unreachable floor every reordering is refused with its score: that is the roles score
    const r = withRoles.judge(q, st, cos, { query: v, stored: u })
    const gated = !r.ok && r.reason === 'roles'
    return [{ y: p.label, base: b.ok, gated, s: gated ? r.score : 1 }]
  })
}

/** the lowest roles floor at which dev precision has not yet fallen below the target */
function choose(ds: DevPair[], tgt: number): { minScore: number; precision: number; recall: number; hits: number } {
  const pos = ds.filter((d) => d.y === 1).length
  const always = ds.filter((d) => d.base && !d.gated)
  let tp = always.filter((d) => d.y === 1).length,
    fp = always.length - tp
  const gated = ds.filter((d) => d.base && d.gated).sort((a, b) => b.s - a.s)
  let best = { minScore: 1, precision: tp / Math.max(1, tp + fp), recall: tp / pos, hits: tp + fp }
  for (const d of gated) {
    if (d.y) tp++
    else fp++
    const precision = tp / (tp + fp)
    if (precision < tgt) break
    best = { minScore: d.s, precision, recall: tp / pos, hits: tp + fp }
  }
  return best
}

// ---------------------------------------------------------------- main

// a roles model of other features would stop the judge from loading: set it aside first
const file = JSON.parse(readFileSync(outFile, 'utf8')) as JudgeFile
if (file.roles) {
  delete file.roles
  writeFileSync(outFile, JSON.stringify(file) + '\n')
}
const pawsTrain = readPairs(PAWS_TRAIN)
const qqp = shuffled(readPairs(TRAIN_FILE), 7)
const rows: Row[] = []
for (const p of pawsTrain) {
  const r = row(p.a, p.b, p.label, 1, 'paws')
  if (r) rows.push(r)
}
// the QQP training part only (the trainer's 85%; its held-out 15% and the dev file are not read)
// --qqp-weight: how much a reordered QQP pair counts against a PAWS one (questions are reworded
// more freely than Wikipedia sentences are scrambled)
const qqpWeight = Number(flag('--qqp-weight') ?? 1)
for (const p of qqp.slice(0, Math.floor(qqp.length * 0.85))) {
  const r = row(p.a, p.b, p.label, qqpWeight, 'qqp')
  if (r) rows.push(r)
}
const positives = [...pawsTrain, ...qqp.slice(0, Math.floor(qqp.length * 0.85))]
  .filter((p) => p.label === 1)
  .map((p) => p.a)
rows.push(...synthetic(positives, Number(flag('--synthetic') ?? 1500)))
const tally = new Map<string, [number, number]>()
for (const r of rows) {
  const c = tally.get(r.kind) ?? [0, 0]
  c[r.y]!++
  tally.set(r.kind, c)
}
console.log('reordered training pairs (label 0 / 1):', [...tally].map(([k, [n, p]]) => `${k} ${n}/${p}`).join(', '))
const trees = fitRoles(rows)
const source =
  'Learned from PAWS-Wiki Labeled (Final) by Google LLC (Zhang, Baldridge and He, NAACL 2019; github.com/google-research-datasets/paws): test split to learn on, dev split to choose the threshold; plus reordered QQP train pairs and pairs made from positives of both. See README.md.'
const model: RolesModel = { ...trees, features: [...ROLE_FEATURE_NAMES, ...FEATURE_NAMES], minScore: 0, source }
const ds = devScores(readPairs(PAWS_DEV), model)
const c = choose(ds, target)
for (const t of [0.88, 0.9, 0.92, 0.94]) console.log(`  PAWS dev at precision ${t}:`, choose(ds, t))
const baseOnly = ds.filter((d) => d.base)
console.log(
  `PAWS dev without the roles trees: precision ${(baseOnly.filter((d) => d.y).length / Math.max(1, baseOnly.length)).toFixed(3)}, ${baseOnly.length} hits; chosen`,
  c,
)
const round = (v: number) => Math.floor(v * 1e4) / 1e4
file.roles = {
  ...model,
  minScore: round(c.minScore),
  validation: { pawsDevPrecision: round(c.precision), pawsDevRecall: round(c.recall), targetPrecision: target },
}
file.vetoes = { ...file.vetoes, roles: true }
if (!/PAWS/.test(file.source))
  file.source += ' The reordering judge (`roles`) learned from PAWS-Wiki, by Google LLC (see README.md).'
writeFileSync(outFile, JSON.stringify(file) + '\n')
console.log(`wrote ${outFile}`)
process.exit(0)
