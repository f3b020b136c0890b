// Training of the boosted trees that gbdt.ts evaluates (used by train-judge.ts and train-roles.ts).
import { predictRaw, type BoostedModel, type Tree } from '../../plugins/semantic-cache/gbdt.ts'

export interface TrainOptions {
  trees?: number
  depth?: number
  learningRate?: number
  /** L2 on leaf values */
  lambda?: number
  minChildHessian?: number
  bins?: number
  /** stop when validation log-loss has not improved for this many trees */
  patience?: number
  /** 1-based log of progress */
  log?: (line: string) => void
}

interface Binned {
  edges: number[][]
  codes: Uint8Array[]
}

/** Quantile bins per feature (<= 255), so split search is a histogram scan. */
function binFeatures(X: number[][], nf: number, bins: number): Binned {
  const edges: number[][] = []
  const codes: Uint8Array[] = []
  for (let f = 0; f < nf; f++) {
    const vals = X.map((r) => r[f]!).sort((a, b) => a - b)
    const uniq: number[] = []
    for (const v of vals) if (uniq.length === 0 || uniq[uniq.length - 1] !== v) uniq.push(v)
    let e: number[]
    if (uniq.length <= bins) e = uniq.slice(0, -1).map((v, i) => (v + uniq[i + 1]!) / 2)
    else {
      const set = new Set<number>()
      for (let k = 1; k < bins; k++) {
        const v = vals[Math.floor((k * vals.length) / bins)]!
        const idx = uniq.indexOf(v)
        if (idx >= 0 && idx < uniq.length - 1) set.add((v + uniq[idx + 1]!) / 2)
      }
      e = [...set].sort((a, b) => a - b)
    }
    edges.push(e)
    const c = new Uint8Array(X.length)
    for (let i = 0; i < X.length; i++) {
      const v = X[i]![f]!
      let lo = 0,
        hi = e.length
      while (lo < hi) {
        const mid = (lo + hi) >> 1
        if (v <= e[mid]!) hi = mid
        else lo = mid + 1
      }
      c[i] = lo
    }
    codes.push(c)
  }
  return { edges, codes }
}

function logloss(p: Float64Array, y: number[], w: number[]): number {
  let s = 0,
    ws = 0
  for (let i = 0; i < y.length; i++) {
    const q = Math.min(1 - 1e-12, Math.max(1e-12, 1 / (1 + Math.exp(-p[i]!))))
    s -= w[i]! * (y[i] ? Math.log(q) : Math.log(1 - q))
    ws += w[i]!
  }
  return s / ws
}

/** what growing one tree needs: this round's gradients and hessians, the binned features, the settings */
interface GrowInput {
  g: Float64Array
  h: Float64Array
  edges: number[][]
  codes: Uint8Array[]
  nf: number
  depth: number
  lr: number
  lambda: number
  minH: number
}

/** one tree on the current gradients: each node split at the histogram bin of largest gain */
function growTree(inp: GrowInput, n: number): Tree {
  const { g, h, edges, codes, nf, depth, lr, lambda, minH } = inp
  const tree: Tree = { feature: [], threshold: [], left: [], right: [], value: [] }
  const grow = (rows: Int32Array, d: number): number => {
    const id = tree.feature.length
    tree.feature.push(-1)
    tree.threshold.push(0)
    tree.left.push(-1)
    tree.right.push(-1)
    tree.value.push(0)
    let G = 0,
      H = 0
    for (const r of rows) {
      G += g[r]!
      H += h[r]!
    }
    tree.value[id] = (-G / (H + lambda)) * lr
    if (d >= depth || H < 2 * minH) return id
    let bestGain = 1e-9,
      bestF = -1,
      bestB = -1
    const parent = (G * G) / (H + lambda)
    for (let f = 0; f < nf; f++) {
      const nb = edges[f]!.length + 1
      if (nb < 2) continue
      const hg = new Float64Array(nb),
        hh = new Float64Array(nb)
      const c = codes[f]!
      for (const r of rows) {
        hg[c[r]!]! += g[r]!
        hh[c[r]!]! += h[r]!
      }
      let gl = 0,
        hl = 0
      for (let b = 0; b < nb - 1; b++) {
        gl += hg[b]!
        hl += hh[b]!
        const gr = G - gl,
          hr = H - hl
        if (hl < minH || hr < minH) continue
        const gain = (gl * gl) / (hl + lambda) + (gr * gr) / (hr + lambda) - parent
        if (gain > bestGain) {
          bestGain = gain
          bestF = f
          bestB = b
        }
      }
    }
    if (bestF < 0) return id
    const c = codes[bestF]!
    const L: number[] = [],
      R: number[] = []
    for (const r of rows) (c[r]! <= bestB ? L : R).push(r)
    tree.feature[id] = bestF
    tree.threshold[id] = edges[bestF]![bestB]!
    const l = grow(Int32Array.from(L), d + 1)
    const rr = grow(Int32Array.from(R), d + 1)
    tree.left[id] = l
    tree.right[id] = rr
    return id
  }
  const all = new Int32Array(n)
  for (let i = 0; i < n; i++) all[i] = i
  grow(all, 0)
  return tree
}

export function train(
  X: number[][],
  y: number[],
  w: number[],
  valid: { X: number[][]; y: number[]; w: number[] },
  opts: TrainOptions = {},
): BoostedModel {
  const nTrees = opts.trees ?? 400
  const depth = opts.depth ?? 3
  const lr = opts.learningRate ?? 0.1
  const lambda = opts.lambda ?? 1
  const minH = opts.minChildHessian ?? 5
  const patience = opts.patience ?? 40
  const nf = X[0]!.length
  const { edges, codes } = binFeatures(X, nf, opts.bins ?? 64)
  const n = X.length
  let pos = 0,
    tot = 0
  for (let i = 0; i < n; i++) {
    pos += w[i]! * y[i]!
    tot += w[i]!
  }
  const base = Math.log(pos / (tot - pos))
  const F = new Float64Array(n).fill(base)
  const Fv = new Float64Array(valid.X.length).fill(base)
  const model: BoostedModel = { base, trees: [] }
  let best = Infinity,
    bestLen = 0
  const g = new Float64Array(n),
    h = new Float64Array(n)
  for (let t = 0; t < nTrees; t++) {
    for (let i = 0; i < n; i++) {
      const p = 1 / (1 + Math.exp(-F[i]!))
      g[i] = w[i]! * (p - y[i]!)
      h[i] = w[i]! * Math.max(p * (1 - p), 1e-6)
    }
    const tree = growTree({ g, h, edges, codes, nf, depth, lr, lambda, minH }, n)
    model.trees.push(tree)
    const one: BoostedModel = { base: 0, trees: [tree] }
    for (let i = 0; i < n; i++) F[i]! += predictRaw(one, X[i]!)
    for (let i = 0; i < valid.X.length; i++) Fv[i]! += predictRaw(one, valid.X[i]!)
    const vl = logloss(Fv, valid.y, valid.w)
    if (vl < best - 1e-6) {
      best = vl
      bestLen = model.trees.length
    }
    if ((t + 1) % 25 === 0) opts.log?.(`tree ${t + 1}: train ${logloss(F, y, w).toFixed(4)} valid ${vl.toFixed(4)}`)
    if (model.trees.length - bestLen >= patience) break
  }
  model.trees.length = bestLen
  // leaves only need the nodes on their paths; round to keep the shipped JSON small
  for (const t of model.trees) {
    t.threshold = t.threshold.map((v) => Number(v.toPrecision(6)))
    t.value = t.value.map((v) => Number(v.toPrecision(6)))
  }
  return model
}
