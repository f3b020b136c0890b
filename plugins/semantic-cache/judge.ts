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
import { ROLE_FEATURE_NAMES, roleFeatures } from './roles.ts'

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

/** the hard rules by name; `roles`: a directed relation's arguments or a word's two neighbours swapped */
export type Vetoes = Record<keyof PairDiff['flags'] | 'roles', boolean>

/**
 * Boosted trees that judge a reordering: run only when the two prompts use largely the same
 * words in another order or arrangement (see roles.ts), over the role features followed by the
 * difference features (cosine held at 0). Learned from PAWS-Wiki (Google); see README.md.
 */
export type RolesModel = BoostedModel & {
  features: string[]
  /** a reordering scored below this is refused as 'roles' */
  minScore: number
  source: string
  /** precision / recall of the whole judge at the defaults on the pairs the threshold was chosen on */
  validation?: Record<string, number>
}

export interface JudgeFile {
  version: 1
  source: string
  features: string[]
  targetPrecision: number
  /** (files before the roles rule have no `roles`: it is on) */
  vetoes: Omit<Vetoes, 'roles'> & { roles?: boolean }
  /** by embedder id, plus `lexical` for embedders without their own model */
  models: Record<string, JudgeModel>
  /** the reordering judge, for every embedder (absent: only the hard rule on roles) */
  roles?: RolesModel
}

export function judgeVeto(
  flags: Partial<Record<keyof Vetoes, boolean>>,
  vetoes: Partial<Vetoes>,
): keyof Vetoes | undefined {
  for (const k of Object.keys(flags) as Array<keyof Vetoes>) if (flags[k] && vetoes[k] !== false) return k
  return undefined
}

/** the reasons that mean "same words, other roles": what a cache_miss event reports as 'roles differ' */
export const ROLE_REASONS: ReadonlySet<string> = new Set(['swap', 'roles'])

let loaded: JudgeFile | undefined
export function judgeFile(): JudgeFile {
  if (loaded) return loaded
  const file = join(dirname(fileURLToPath(import.meta.url)), 'judge-weights.json')
  const data = JSON.parse(readFileSync(file, 'utf8')) as JudgeFile
  if (data.version !== 1 || data.features.join() !== FEATURE_NAMES.join()) {
    throw new Error(`semanticCache: ${file} was trained for other features; re-run tools/semantic-train/train-judge.ts`)
  }
  if (data.roles && data.roles.features.join() !== [...ROLE_FEATURE_NAMES, ...FEATURE_NAMES].join()) {
    throw new Error(
      `semanticCache: the roles model in ${file} was trained for other features; re-run tools/semantic-train/train-roles.ts`,
    )
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
  /** floor of the reordering judge's score (0..1); default from judge-weights.json */
  rolesMinScore?: number
  /** the reordering judge to use: default the shipped one; null = none (training compares against this) */
  rolesModel?: RolesModel | null
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
  judge(
    query: TextInfo,
    stored: TextInfo,
    cosine: number,
    vectors?: { query: ArrayLike<number>; stored: ArrayLike<number> },
  ): Verdict
}

const ORDER_FEATURES = (['swapFar', 'swapAdjacent', 'inversions'] as const).map((n) => FEATURE_NAMES.indexOf(n))

function sameBag(a: string[], b: string[]): boolean {
  return a.length === b.length && a.slice().sort().join(' ') === b.slice().sort().join(' ')
}

/** the reordering judge's verdict: undefined when it has nothing to say (not a reordering, or no model) */
function rolesVerdict(
  model: RolesModel | undefined,
  floor: number,
  diff: PairDiff,
  roles: ReturnType<typeof roleFeatures>,
): Verdict | undefined {
  if (!model || !roles.sameWords || roles.sameOrder || roles.listOnly) return undefined
  const x = [...roles.features, 0, ...diff.features.slice(1)]
  const score = predict(model, x)
  return score >= floor ? undefined : { ok: false, score, reason: 'roles' }
}

export function createJudge(embedderId: string, settings: JudgeSettings = {}): Judge {
  const file = judgeFile()
  const modelName = file.models[embedderId] ? embedderId : 'lexical'
  const model = file.models[modelName]!
  const lexical = file.models.lexical as TreeJudgeModel
  const nets = model.kind === 'mlp' ? model.members.map(unpack) : undefined
  const minSimilarity = settings.minSimilarity ?? model.minSimilarity
  const minScore = settings.minScore ?? model.minScore
  const vetoes: Vetoes = { ...file.vetoes, roles: file.vetoes.roles ?? true, ...settings.vetoes }
  const rolesModel = settings.rolesModel === null ? undefined : (settings.rolesModel ?? file.roles)
  const rolesFloor = settings.rolesMinScore ?? rolesModel?.minScore ?? 0
  const treeScore = (m: TreeJudgeModel, features: number[]) =>
    predict(m, m.usesCosine ? features : features.map((v, i) => (i === 0 ? 0 : v)))
  /** the average of the networks, or undefined when they cannot judge these vectors */
  const netScore = (
    diff: PairDiff,
    vectors: { query: ArrayLike<number>; stored: ArrayLike<number> } | undefined,
  ): Verdict | undefined => {
    if (!nets || !vectors || vectors.query.length !== nets[0]!.dim || vectors.stored.length !== nets[0]!.dim)
      return undefined
    // once the rest could not lift the average to the floor even if each said 1, the candidate is
    // refused without running them (same verdict, less work on the common case, a clear near
    // miss). The score of a refusal is then a lower bound.
    let sum = 0
    for (let i = 0; i < nets.length; i++) {
      sum += mlpPredict(nets[i]!, vectors.query, vectors.stored, diff.features)
      if (sum + (nets.length - 1 - i) < minScore * nets.length)
        return { ok: false, score: sum / nets.length, reason: 'score' }
    }
    const score = sum / nets.length
    return score >= minScore ? { ok: true, score } : { ok: false, score, reason: 'score' }
  }
  return {
    modelName,
    minSimilarity,
    minScore,
    judge(query, stored, cosine, vectors) {
      if (cosine < minSimilarity) return { ok: false, score: 0, reason: 'similarity' }
      // the same words in the same order (case, spacing, punctuation aside): nothing to judge
      if (query.tokens.length && query.tokens.join(' ') === stored.tokens.join(' ')) return { ok: true, score: 1 }
      const diff = pairFeatures(query, stored, cosine)
      const roles = roleFeatures(query, stored)
      // only one-word list items moved: with the very same tokens otherwise it is the same
      // request ("apples, pears and plums"); else judged as if in the same order
      if (roles.listOnly) {
        if (sameBag(query.tokens, stored.tokens)) return { ok: true, score: 1 }
        for (const i of ORDER_FEATURES) diff.features[i] = 0
      }
      // list items reordered are not two words that traded roles (the older `swap` rule's blind spot)
      const veto = judgeVeto({ ...diff.flags, swap: diff.flags.swap && !roles.listOnly, roles: roles.swapped }, vetoes)
      if (veto) return { ok: false, score: 0, reason: veto }
      // before the networks: a few microseconds of trees, and a refused reordering skips them
      const reordered = rolesVerdict(rolesModel, rolesFloor, diff, roles)
      if (reordered) return reordered
      const net = netScore(diff, vectors)
      if (net) return net
      const lex = model.kind === 'mlp' ? lexical : model
      const floor = model.kind === 'mlp' ? (settings.minScore ?? lexical.minScore) : minScore
      const score = treeScore(lex, diff.features)
      return score >= floor ? { ok: true, score } : { ok: false, score, reason: 'score' }
    },
  }
}
