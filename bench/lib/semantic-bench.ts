// Benchmarks of the semantic cache, shared by bench/semantic.ts and bench/cache.ts.
//
// runQqpBench: the real plugin logic (embedder + judge + index + storage), one partition per
//   labelled pair: store `a`, ask `b`, count hits. Label 1 hits are true hits, label 0 hits are
//   false hits (another question's answer served).
// runIndexBench: lookup latency in one partition of N entries (embedding excluded; synthetic
//   vectors shaped like sentence embeddings) and index memory per entry.
import { randomBytes } from 'node:crypto'
import { rng } from '../../plugins/semantic-cache/random.ts'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { createStorage } from 'unstorage'
import type { CanonicalAnswer, Logger } from '../../core/types.ts'
import { useLiteEmbedder, type Embedder } from '../../plugins/semantic-cache/embedders.ts'
import { createJudge, type JudgeSettings } from '../../plugins/semantic-cache/judge.ts'
import { SemanticStore } from '../../plugins/semantic-cache/store.ts'
import { quantise, VectorIndex } from '../../plugins/semantic-cache/vector-index.ts'

const here = dirname(fileURLToPath(import.meta.url))

function findDev(): string {
  const dirs = [process.env.AGENTMESH_SHARED_DATA, resolve(here, '../../../shared/data'), '/work/shared/data'].filter(
    Boolean,
  ) as string[]
  for (const d of dirs) if (existsSync(resolve(d, 'qqp-dev-pairs.jsonl'))) return resolve(d, 'qqp-dev-pairs.jsonl')
  throw new Error('qqp-dev-pairs.jsonl not found (looked in ../shared/data; set AGENTMESH_SHARED_DATA)')
}

const quiet: Logger = { info() {}, debug() {}, warn() {}, error() {} }

function answer(i: number, text: string): CanonicalAnswer {
  return {
    id: `msg_${i}`,
    model: 'claude-haiku-4-5',
    text,
    toolCalls: [],
    stopReason: 'stop',
    usage: { inputTokens: 20, outputTokens: 100, cacheReadTokens: 0, cacheWriteTokens: 0 },
  }
}

export interface QqpBenchOptions {
  /** JSONL of {a, b, label}; default ../shared/data/qqp-dev-pairs.jsonl */
  file?: string
  /** first N pairs only */
  limit?: number
  /** default: the plugin's default (USE-lite) */
  embedder?: Embedder
  /** judge settings; default: the shipped defaults for the embedder */
  judge?: JudgeSettings
  /** more judgement floors (`strictness`) to measure on the same embeddings, each in a store of its own */
  sweep?: number[]
  log?: (line: string) => void
}

export interface SweepPoint {
  minScore: number
  precision: number
  recall: number
  falseHits: number
}

export interface QqpBenchResult {
  pairs: number
  positives: number
  negatives: number
  /** label-1 pairs answered from the cache */
  truePositives: number
  /** label-0 pairs answered from the cache: a wrong answer served */
  falseHits: number
  precision: number
  recall: number
  /** recall / precision with cosine alone at the same similarity floor, for comparison */
  cosineOnlyPrecision: number
  cosineOnlyRecall: number
  embedder: string
  judgeModel: string
  minSimilarity: number
  minScore: number
  /** precision and recall at the `sweep` floors */
  sweep: SweepPoint[]
  seconds: number
}

export async function runQqpBench(opts: QqpBenchOptions = {}): Promise<QqpBenchResult> {
  const t0 = performance.now()
  const file = opts.file ?? findDev()
  let pairs = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as { a: string; b: string; label: number })
  if (opts.limit) pairs = pairs.slice(0, opts.limit)
  const embedder = opts.embedder ?? useLiteEmbedder()
  const judge = createJudge(embedder.id, opts.judge)
  const makeStore = (j: typeof judge) =>
    new SemanticStore({
      storage: createStorage(),
      embedder,
      judge: j,
      log: quiet,
      maxEntries: pairs.length + 1,
      ttlMs: 3600_000,
      prefix: 'semantic',
      candidates: 5,
      maxBatch: 32,
    })
  const store = makeStore(judge)
  const sweep = (opts.sweep ?? []).map((minScore) => ({
    minScore,
    store: makeStore(createJudge(embedder.id, { ...opts.judge, minScore })),
    tp: 0,
    fp: 0,
  }))
  // embed everything up front through the plugin's queue (batched), then store and ask
  const texts = pairs.flatMap((p) => [p.a, p.b])
  const vecs = await Promise.all(texts.map((t) => store.embed(t, 'store')))
  let tp = 0,
    fp = 0,
    cosTp = 0,
    cosFp = 0
  const positives = pairs.filter((p) => p.label === 1).length
  for (let i = 0; i < pairs.length; i++) {
    const p = pairs[i]!
    const partition = `qqp-${i}` // a scope of its own per pair
    await store.insert(partition, { text: p.a }, vecs[2 * i]!, answer(i, `answer to: ${p.a}`))
    const r = await store.lookup(partition, { text: p.b }, vecs[2 * i + 1]!)
    if (r.hit) p.label ? tp++ : fp++
    for (const w of sweep) {
      await w.store.insert(partition, { text: p.a }, vecs[2 * i]!, answer(i, `answer to: ${p.a}`))
      if ((await w.store.lookup(partition, { text: p.b }, vecs[2 * i + 1]!)).hit) p.label ? w.tp++ : w.fp++
    }
    // the same floor with no judgement: what a cosine-only cache would serve
    let c = 0
    const va = vecs[2 * i]!,
      vb = vecs[2 * i + 1]!
    for (let k = 0; k < va.length; k++) c += va[k]! * vb[k]!
    if (c >= judge.minSimilarity) p.label ? cosTp++ : cosFp++
    if (opts.log && (i + 1) % 500 === 0) opts.log(`${i + 1}/${pairs.length}`)
  }
  return {
    pairs: pairs.length,
    positives,
    negatives: pairs.length - positives,
    truePositives: tp,
    falseHits: fp,
    precision: tp + fp ? tp / (tp + fp) : 1,
    recall: positives ? tp / positives : 0,
    cosineOnlyPrecision: cosTp + cosFp ? cosTp / (cosTp + cosFp) : 1,
    cosineOnlyRecall: positives ? cosTp / positives : 0,
    embedder: embedder.id,
    judgeModel: judge.modelName,
    minSimilarity: judge.minSimilarity,
    minScore: judge.minScore,
    sweep: sweep.map((w) => ({
      minScore: w.minScore,
      precision: w.tp + w.fp ? w.tp / (w.tp + w.fp) : 1,
      recall: positives ? w.tp / positives : 0,
      falseHits: w.fp,
    })),
    seconds: (performance.now() - t0) / 1000,
  }
}

// ---------------------------------------------------------------- index speed and memory

/**
 * Synthetic vectors shaped like sentence embeddings in one busy partition: a shared direction,
 * 200 topics, per-prompt noise. Unrelated prompts score ~0.2-0.5, same-topic ones ~0.5-0.7,
 * so the prefilter sees the crowd a real cache would.
 */
function synthetic(dim: number, seed: number) {
  const r = rng(seed)
  const gauss = () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r())
  const unit = (v: Float32Array) => {
    let n = 0
    for (const x of v) n += x * x
    n = Math.sqrt(n)
    return v.map((x) => x / n)
  }
  const rand = () => unit(Float32Array.from({ length: dim }, gauss))
  const mean = rand()
  const topics = Array.from({ length: 200 }, rand)
  const make = () => {
    const t = topics[Math.floor(r() * topics.length)]!
    return unit(
      Float32Array.from({ length: dim }, (_, i) => 0.55 * mean[i]! + 0.55 * t[i]! + (0.75 * gauss()) / Math.sqrt(dim)),
    )
  }
  /** a rewording of v: cosine ~0.9 */
  const near = (v: Float32Array) => unit(v.map((x) => x + (0.45 * gauss()) / Math.sqrt(dim)))
  return { make, near }
}

function gcNow(): () => void {
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
}

function pct(xs: number[], p: number): number {
  const s = xs.slice().sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}

export interface IndexBenchOptions {
  entries: number
  /** vector size (default 512, USE-lite) */
  dim?: number
  /** timed lookups of each kind (default 1,000) */
  queries?: number
}

export interface IndexBenchResult {
  entries: number
  lookupHitP50Ms: number
  lookupHitP99Ms: number
  lookupMissP50Ms: number
  lookupMissP99Ms: number
  /** memory of the in-memory index per entry (vectors, codes, ids, maps), not the stored answers */
  bytesPerEntry: number
  /** share of hit queries that found their entry */
  hitRate: number
}

export async function runIndexBench(opts: IndexBenchOptions): Promise<IndexBenchResult> {
  const n = opts.entries
  const dim = opts.dim ?? 512
  const queries = opts.queries ?? 1000
  const { make, near } = synthetic(dim, n)
  const vectors = Array.from({ length: n }, make)

  // memory: the index alone, measured as heap + array buffers before and after
  const gc = gcNow()
  const quantised = vectors.map((v) => quantise(v))
  gc()
  gc()
  const m0 = process.memoryUsage()
  let index: VectorIndex | undefined = new VectorIndex({ maxEntries: n })
  // ids made here, as the store makes them, so their strings count
  for (let i = 0; i < n; i++)
    index.add('bench', randomBytes(12).toString('hex'), quantised[i]!.q, quantised[i]!.inv, Date.now() + 3600_000)
  gc()
  gc()
  const m1 = process.memoryUsage()
  const bytesPerEntry = (m1.heapUsed - m0.heapUsed + (m1.arrayBuffers - m0.arrayBuffers)) / n
  // keep the inputs alive until after the second reading, or their collection hides the index's size
  if (quantised.length !== n) throw new Error('unreachable')
  index.clear()
  index = undefined

  // latency: the plugin's lookup (index search + reading the candidate + judging it) on the memory driver
  const embedder: Embedder = {
    id: 'synthetic',
    dimension: dim,
    loaded: true,
    load: async () => {},
    embed: async () => {
      throw new Error('embedding is excluded from this benchmark')
    },
  }
  const store = new SemanticStore({
    storage: createStorage(),
    embedder,
    // the judgement runs in full on every candidate; minScore 0 so that a found entry counts as a hit
    judge: createJudge('synthetic', { minSimilarity: 0.8, minScore: 0 }),
    log: quiet,
    maxEntries: n,
    ttlMs: 3600_000,
    prefix: 'semantic',
    candidates: 5,
    maxBatch: 32,
  })
  const textOf = (i: number) => `how do i configure service ${i} for region ${i % 17} with retries`
  for (let i = 0; i < n; i++) await store.insert('bench', { text: textOf(i) }, vectors[i]!, answer(i, `answer ${i}`))
  // a proxy holds no float vectors: keep only those the hit queries are made from
  const sample = 2000
  vectors.length = Math.min(n, sample)
  gc()
  gc()
  const r = rng(7)
  const time = async (fn: () => Promise<unknown>) => {
    const t = performance.now()
    await fn()
    return performance.now() - t
  }
  // warm up the JIT on both paths
  for (let k = 0; k < 200; k++) {
    const i = Math.floor(r() * vectors.length)
    await store.lookup('bench', { text: textOf(i) }, near(vectors[i]!))
    await store.lookup('bench', { text: 'something else entirely' }, make())
  }
  const hit: number[] = [],
    miss: number[] = []
  let found = 0
  for (let k = 0; k < queries; k++) {
    const i = Math.floor(r() * vectors.length)
    const qh = near(vectors[i]!)
    const qm = make()
    let res: Awaited<ReturnType<SemanticStore['lookup']>> | undefined
    hit.push(
      await time(async () => {
        res = await store.lookup('bench', { text: textOf(i).replace('how do i', 'how can i') }, qh)
      }),
    )
    if (res?.hit && res.entry.answer.text === `answer ${i}`) found++
    miss.push(await time(() => store.lookup('bench', { text: 'how do i configure something else entirely' }, qm)))
  }
  return {
    entries: n,
    lookupHitP50Ms: pct(hit, 50),
    lookupHitP99Ms: pct(hit, 99),
    lookupMissP50Ms: pct(miss, 50),
    lookupMissP99Ms: pct(miss, 99),
    bytesPerEntry,
    hitRate: found / queries,
  }
}
