// Label-preserving augmentation of the QQP training pairs, so the judge learns how prompts sent
// to an LLM differ from Quora questions: markdown titles and labels, request filler and personas
// (when the normalise plugin leaves them), longer prompts with several parts, and one word
// swapped for a synonym. Every transform is applied to pairs of BOTH labels where it keeps the
// label, so the model learns that a title or a shared clause says nothing about the answer
// rather than "a title means a hit"; and label-flipping twins keep it sensitive (one content
// word replaced by an unrelated word is a different question).
//
// Sources: the training part of qqp-train-pairs.jsonl.gz only (the same shuffle and 85% cut as
// train-judge.ts; the held-out 15% and the dev file are never read). Synonyms are mined from the
// training positives that differ in exactly one word. Nothing here knows the benchmark prompts.
//
// Writes DIR/augmented-pairs.jsonl ({ a, b, ha, hb, label, kind }: a/b are the normalised views
// the cache compares, ha/hb the raw wordings) and embeds the views that the QQP cache lacks into
// DIR/aug-texts.jsonl + DIR/aug-vectors-512.f32 (resumable, like embed-qqp.ts).
//   node bin/run-ts.mjs tools/semantic-train/augment.ts [--embeddings DIR] [--scale 1] [--no-embed]
import { appendFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { normaliseText } from '../../plugins/normalise/text.ts'
import { useLiteEmbedder } from '../../plugins/semantic-cache/embedders.ts'
import { embeddingText } from '../../plugins/semantic-cache/text.ts'
import { defaultEmbeddingDir, readPairs, rng, shuffled, TRAIN_FILE, type Pair } from './data.ts'

const args = process.argv.slice(2)
const flag = (name: string) => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}
const dir = flag('--embeddings') ?? defaultEmbeddingDir()
const scale = Number(flag('--scale') ?? 1)

/** the rows train-judge.ts trains on (same shuffle seed and cut): never the held-out part */
export function trainingPart(pairs: Pair[]): Pair[] {
  const s = shuffled(pairs, 7)
  return s.slice(0, Math.floor(s.length * 0.85))
}

const STOP = new Set(
  `a an the and or but if then else of to in on at by for with from into about as is are was were be been being am do does did
have has had i me my we us our you your he him his she her it its they them their this that these those there here what which who whom whose
when where why how can could should would will shall may might must so than too very just also any some each every all both either such own
same other another more most much many few less least up down out over under again once get got make made one way ways thing things really
please tell know like want need use used using not no never best good better`.split(/\s+/),
)

const words = (t: string): string[] => t.toLowerCase().match(/[a-z]+(?:'[a-z]+)?/g) ?? []
const isContent = (w: string) => w.length >= 3 && !STOP.has(w) && /^[a-z]+$/.test(w)

const r = rng(20240611)
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!
const cap = (w: string) => w[0]!.toUpperCase() + w.slice(1)

// ---------------------------------------------------------------- transforms that keep the meaning

/** a markdown title or label restating the question's own topic words, or a generic label */
function titled(q: string): string {
  const content = [...new Set(words(q).filter(isContent))]
  // a topic of 1-3 of the question's own words, in order
  const n = Math.min(content.length, 1 + Math.floor(r() * 3))
  const start = Math.floor(r() * Math.max(1, content.length - n + 1))
  const topic =
    content
      .slice(start, start + n)
      .map(cap)
      .join(' ') || 'Question'
  const generic = pick(['Question', 'Help needed', 'Advice', 'Request', 'Background', 'Quick question', 'Topic'])
  const t = pick([
    () => `## ${topic}\n\n${q}`,
    () => `# ${topic}\n\n${q}`,
    () => `**${topic}**\n\n${q}`,
    () => `## ${topic}\n\n**Question:** ${q}`,
    () => `**Topic:** ${topic}\n\n${q}`,
    () => `${topic}: ${q}`,
    () => `### ${topic} ${generic.toLowerCase()}\n\n${q}`,
    () => `## ${generic}\n\n${q}`,
    () => `**${generic}:** ${q}`,
    () => `## ${topic}\n\n**Area:** ${topic.toLowerCase()}\n\n${q}`,
    () => `${q}\n\n---\n*${generic}*`,
  ])
  return t()
}

/** request filler, greetings, sign-offs and professional personas */
function framed(q: string): string {
  const persona = pick([
    'You are a helpful assistant.',
    'You are an expert consultant.',
    'You are a senior advisor.',
    'Act as an experienced teacher.',
    'You are a knowledgeable expert in this field.',
    'You are a friendly tutor.',
  ])
  const pre = pick([
    'Please answer: ',
    'Can you tell me: ',
    'Quick question: ',
    'I was wondering, ',
    'Hi, ',
    'Hello! ',
    'Help me understand: ',
    'Question: ',
    'I have a question. ',
    'Could you explain: ',
    `${persona} `,
    `${persona} Please answer: `,
    '',
  ])
  const post = pick([' Thanks!', ' Thank you.', ' Any help is appreciated.', ' Thanks in advance.', '', '', ''])
  const body = pre.endsWith(', ') ? q[0]!.toLowerCase() + q.slice(1) : q
  return (pre + body + post).trim()
}

// ---------------------------------------------------------------- synonyms from training positives

function tokensDiff(a: string, b: string): [string[], string[]] {
  const ca = new Map<string, number>()
  for (const w of words(a)) ca.set(w, (ca.get(w) ?? 0) + 1)
  const onlyB: string[] = []
  for (const w of words(b)) {
    const c = ca.get(w) ?? 0
    if (c > 0) ca.set(w, c - 1)
    else onlyB.push(w)
  }
  const onlyA: string[] = []
  for (const [w, c] of ca) for (let i = 0; i < c; i++) onlyA.push(w)
  return [onlyA, onlyB]
}

function mineSynonyms(train: Pair[]): Map<string, string[]> {
  const seen = new Map<string, [number, number]>()
  for (const p of train) {
    const [x, y] = tokensDiff(p.a, p.b)
    if (x.length !== 1 || y.length !== 1 || !isContent(x[0]!) || !isContent(y[0]!)) continue
    const k = [x[0]!, y[0]!].sort().join(' ')
    const c = seen.get(k) ?? [0, 0]
    c[p.label ? 1 : 0]++
    seen.set(k, c)
  }
  const syn = new Map<string, string[]>()
  for (const [k, [neg, pos]] of seen) {
    if (pos < 2 || pos / (pos + neg) < 0.8) continue
    const [x, y] = k.split(' ') as [string, string]
    // inflections of the same word are handled by the features already
    if (x.slice(0, 4) === y.slice(0, 4)) continue
    syn.set(x, [...(syn.get(x) ?? []), y])
    syn.set(y, [...(syn.get(y) ?? []), x])
  }
  return syn
}

function replaceWord(q: string, from: string, to: string): string {
  const re = new RegExp(`\\b${from}\\b`, 'i')
  return q.replace(re, (m) => (m[0] === m[0]!.toUpperCase() ? cap(to) : to))
}

function synonymSwap(q: string, syn: Map<string, string[]>): string | undefined {
  const cands = [...new Set(words(q))].filter((w) => syn.has(w))
  if (!cands.length) return undefined
  const w = pick(cands)
  return replaceWord(q, w, pick(syn.get(w)!))
}

/** one content word replaced by an unrelated content word: a different question */
function wordSwap(q: string, pool: string[], syn: Map<string, string[]>): string | undefined {
  const cands = [...new Set(words(q).filter((w) => isContent(w) && w.length >= 4))]
  if (!cands.length) return undefined
  const w = pick(cands)
  for (let tries = 0; tries < 10; tries++) {
    const to = pick(pool)
    if (to.slice(0, 4) === w.slice(0, 4) || syn.get(w)?.includes(to) || words(q).includes(to)) continue
    return replaceWord(q, w, to)
  }
  return undefined
}

function joined(x: string, y: string): string {
  const end = /[.?!]$/.test(x.trim()) ? '' : '?'
  return `${x.trim()}${end} ${y.trim()}`
}

// ---------------------------------------------------------------- build

export interface AugPair {
  a: string
  b: string
  ha: string
  hb: string
  label: number
  kind: string
}

export function augment(pairs: Pair[], k = 1): AugPair[] {
  const train = trainingPart(pairs)
  const syn = mineSynonyms(train)
  console.log(`${syn.size} words with a synonym mined from training positives`)
  const texts = train.flatMap((p) => [p.a, p.b])
  const pool: string[] = []
  for (let i = 0; i < 20000; i++) {
    const ws = words(pick(texts)).filter((w) => isContent(w) && w.length >= 4)
    if (ws.length) pool.push(pick(ws))
  }
  const out: AugPair[] = []
  const add = (ha: string, hb: string, label: number, kind: string) => {
    const a = normaliseText(ha),
      b = normaliseText(hb)
    if (embeddingText(a) === embeddingText(b)) return
    // which side is stored and which is asked should not matter
    if (r() < 0.5) out.push({ a, b, ha, hb, label, kind })
    else out.push({ a: b, b: a, ha: hb, hb: ha, label, kind })
  }
  const n = (x: number) => Math.round(x * k)
  const any = () => pick(train)
  // titles and labels on one side of a pair of either label; and against the bare question
  for (let i = 0; i < n(9000); i++) {
    const p = any()
    add(titled(p.a), p.b, p.label, 'title')
  }
  for (let i = 0; i < n(2500); i++) {
    const p = any()
    add(titled(p.a), p.a, 1, 'title-self')
  }
  // filler, greetings, personas
  for (let i = 0; i < n(5000); i++) {
    const p = any()
    add(framed(p.a), p.b, p.label, 'framed')
  }
  for (let i = 0; i < n(1500); i++) {
    const p = any()
    add(framed(p.a), p.a, 1, 'framed-self')
  }
  // both at once, the markdown-and-persona prompt
  for (let i = 0; i < n(3000); i++) {
    const p = any()
    add(titled(framed(p.a)), r() < 0.5 ? p.b : titled(p.b), p.label, 'title-framed')
  }
  // a synonym on one side keeps the label; an unrelated word against the original flips it
  const withSyn = train.filter((p) => words(p.a).some((w) => syn.has(w)))
  for (let i = 0; i < n(3000); i++) {
    const p = pick(withSyn)
    const s = synonymSwap(p.a, syn)
    if (s) add(s, p.b, p.label, 'synonym')
  }
  for (let i = 0; i < n(2500); i++) {
    const p = pick(withSyn)
    const s = synonymSwap(p.a, syn)
    if (s) add(s, p.a, 1, 'synonym-self')
  }
  for (let i = 0; i < n(3500); i++) {
    const p = any()
    const s = wordSwap(p.a, pool, syn)
    if (s) add(s, p.a, 0, 'word-swap')
  }
  // longer prompts: a shared clause leaves the label as it was; two parts are the same only if both are
  for (let i = 0; i < n(4000); i++) {
    const p = any(),
      c = pick(texts)
    if (r() < 0.5) add(joined(c, p.a), joined(c, p.b), p.label, 'shared-clause')
    else add(joined(p.a, c), joined(p.b, c), p.label, 'shared-clause')
  }
  for (let i = 0; i < n(3000); i++) {
    const p = any(),
      q = any()
    add(joined(p.a, q.a), joined(p.b, q.b), p.label && q.label ? 1 : 0, 'two-parts')
  }
  return out
}

// ---------------------------------------------------------------- main: write and embed

{
  const pairs = readPairs(TRAIN_FILE)
  const aug = augment(pairs, scale)
  const byKind = new Map<string, [number, number]>()
  for (const p of aug) {
    const c = byKind.get(p.kind) ?? [0, 0]
    c[p.label ? 1 : 0]++
    byKind.set(p.kind, c)
  }
  console.log(`${aug.length} augmented pairs:`, [...byKind].map(([k, [n0, n1]]) => `${k} ${n1}+/${n0}-`).join(', '))
  writeFileSync(join(dir, 'augmented-pairs.jsonl'), aug.map((p) => JSON.stringify(p)).join('\n') + '\n')
  if (!args.includes('--no-embed')) {
    const have = new Set(
      existsSync(join(dir, 'texts.jsonl'))
        ? readFileSync(join(dir, 'texts.jsonl'), 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l) as string)
        : [],
    )
    const textsFile = join(dir, 'aug-texts.jsonl')
    const embedder = useLiteEmbedder()
    const vecFile = join(dir, `aug-vectors-${embedder.dimension}.f32`)
    const done = existsSync(textsFile)
      ? readFileSync(textsFile, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as string)
      : []
    if (existsSync(vecFile) && statSync(vecFile).size !== done.length * embedder.dimension * 4)
      throw new Error(`${vecFile} does not match ${textsFile}; delete both`)
    for (const t of done) have.add(t)
    const todo = [...new Set(aug.flatMap((p) => [embeddingText(p.a), embeddingText(p.b)]))].filter((t) => !have.has(t))
    console.log(`${todo.length} texts to embed (${done.length} augmented texts cached)`)
    const t0 = performance.now()
    for (let i = 0; i < todo.length; i += 32) {
      const chunk = todo.slice(i, i + 32)
      const vecs = await embedder.embed(chunk)
      const buf = new Float32Array(chunk.length * embedder.dimension)
      vecs.forEach((v, j) => buf.set(v, j * embedder.dimension))
      appendFileSync(vecFile, Buffer.from(buf.buffer))
      appendFileSync(textsFile, chunk.map((t) => JSON.stringify(t)).join('\n') + '\n')
      if ((i / 32) % 50 === 0)
        console.log(`${i + chunk.length}/${todo.length} ${((performance.now() - t0) / 1000).toFixed(0)} s`)
    }
    console.log('done')
  }
}
