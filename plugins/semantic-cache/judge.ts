// Decides whether a stored prompt asks the same thing as a new one. A candidate must pass a
// similarity floor, then no hard rule may fire (changed number, name, programming language,
// negation, swapped roles, an opposite), then a model learned from labelled pairs must score it
// at or above `minScore`. Weights and defaults per embedder come from judge-weights.json.
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { FEATURE_NAMES, pairFeatures, type PairDiff, type TextInfo } from './features.ts'
import { predict, type BoostedModel } from './gbdt.ts'
import { mlpPredict, unpack, type MlpModel } from './mlp.ts'

interface Thresholds {
  /** false: the cosine column is held at 0 (the model was trained for any embedder) */
  usesCosine: boolean
  /** default judgement threshold (probability) */
  minScore: number
  /** default cosine floor */
  minSimilarity: number
  /** precision / recall at the defaults on the held-out part of the training data */
  validation?: { precision: number; recall: number }
}
/** boosted trees over the difference features (any embedder) */
export type TreeJudgeModel = Thresholds & BoostedModel & { kind?: 'gbdt' }
/** networks over both vectors and the features (for the embedder they were trained with only), averaged */
export type NetJudgeModel = Thresholds & { kind: 'mlp'; members: MlpModel[] }
export type JudgeModel = TreeJudgeModel | NetJudgeModel

export type Vetoes = Record<keyof PairDiff['flags'], boolean>

export interface JudgeFile {
  version: 1
  source: string
  features: string[]
  targetPrecision: number
  vetoes: Vetoes
  /** by embedder id, plus `lexical` for embedders without their own model */
  models: Record<string, JudgeModel>
}

export function judgeVeto(flags: PairDiff['flags'], vetoes: Vetoes): keyof PairDiff['flags'] | undefined {
  for (const k of Object.keys(flags) as Array<keyof PairDiff['flags']>) if (flags[k] && vetoes[k] !== false) return k
  return undefined
}

let loaded: JudgeFile | undefined
export function judgeFile(): JudgeFile {
  if (loaded) return loaded
  const file = join(dirname(fileURLToPath(import.meta.url)), 'judge-weights.json')
  const data = JSON.parse(readFileSync(file, 'utf8')) as JudgeFile
  if (data.version !== 1 || data.features.join() !== FEATURE_NAMES.join()) {
    throw new Error(`semanticCache: ${file} was trained for other features; re-run train/train-judge.ts`)
  }
  loaded = data
  return data
}

export interface JudgeSettings {
  /** cosine floor for candidates */
  minSimilarity?: number
  /** learned-score floor (0..1); higher is stricter */
  minScore?: number
  /** hard rules to apply (all on by default) */
  vetoes?: Partial<Vetoes>
}

export interface Verdict {
  ok: boolean
  score: number
  /** why a candidate was refused: below similarity, a hard rule, or the score */
  reason?: string
}

export interface Judge {
  readonly modelName: string
  readonly minSimilarity: number
  readonly minScore: number
  /** vectors (unit length) are needed by a network model; without them the lexical model judges */
  judge(query: TextInfo, stored: TextInfo, cosine: number, vectors?: { query: ArrayLike<number>; stored: ArrayLike<number> }): Verdict
}

export function createJudge(embedderId: string, settings: JudgeSettings = {}): Judge {
  const file = judgeFile()
  const modelName = file.models[embedderId] ? embedderId : 'lexical'
  const model = file.models[modelName]!
  const lexical = file.models.lexical as TreeJudgeModel
  const nets = model.kind === 'mlp' ? model.members.map(unpack) : undefined
  const minSimilarity = settings.minSimilarity ?? model.minSimilarity
  const minScore = settings.minScore ?? model.minScore
  const vetoes: Vetoes = { ...file.vetoes, ...settings.vetoes }
  const treeScore = (m: TreeJudgeModel, features: number[]) => predict(m, m.usesCosine ? features : features.map((v, i) => (i === 0 ? 0 : v)))
  return {
    modelName,
    minSimilarity,
    minScore,
    judge(query, stored, cosine, vectors) {
      if (cosine < minSimilarity) return { ok: false, score: 0, reason: 'similarity' }
      // the same words in the same order (case, spacing, punctuation aside): nothing to judge
      if (query.tokens.length && query.tokens.join(' ') === stored.tokens.join(' ')) return { ok: true, score: 1 }
      const diff = pairFeatures(query, stored, cosine)
      const veto = judgeVeto(diff.flags, vetoes)
      if (veto) return { ok: false, score: 0, reason: veto }
      let score: number
      let floor = minScore
      if (nets && vectors && vectors.query.length === nets[0]!.dim && vectors.stored.length === nets[0]!.dim) {
        // the average of the networks decides; once the rest could not lift it to the floor even
        // if each said 1, the candidate is refused without running them (same verdict, less work
        // on the common case, a clear near miss). The score of a refusal is then a lower bound.
        let sum = 0
        for (let i = 0; i < nets.length; i++) {
          sum += mlpPredict(nets[i]!, vectors.query, vectors.stored, diff.features)
          if (sum + (nets.length - 1 - i) < floor * nets.length) return { ok: false, score: sum / nets.length, reason: 'score' }
        }
        score = sum / nets.length
      }
      else if (model.kind === 'mlp') { score = treeScore(lexical, diff.features); floor = settings.minScore ?? lexical.minScore }
      else score = treeScore(model, diff.features)
      return score >= floor ? { ok: true, score } : { ok: false, score, reason: 'score' }
    },
  }
}
