// A one-hidden-layer network over a pair of sentence vectors and the pair's difference features:
// inputs are u*v and |u-v| (which dimensions agree and which differ, the classic sentence-pair
// encoding) plus the standardised features of features.ts. It sees far more than the cosine,
// which is a plain sum of u*v. Weights ship as base64 float32 inside judge-weights.json.
import { rng, shuffled } from './train/data.ts'

export interface MlpModel {
  kind: 'mlp'
  dim: number
  hidden: number
  /** feature standardisation */
  mean: number[]
  std: number[]
  /** base64 float32: W1 is (inputs x hidden) row-major, then b1, W2, b2 */
  weights: string
}

export interface MlpRuntime {
  inputs: number
  hidden: number
  W1: Float32Array
  b1: Float32Array
  W2: Float32Array
  b2: number
  mean: Float64Array
  std: Float64Array
  dim: number
}

const PROD_SCALE = 20 // u*v components of unit vectors are tiny: bring them to unit-ish range
const DIFF_SCALE = 10

export function unpack(m: MlpModel): MlpRuntime {
  const nf = m.mean.length
  const inputs = 2 * m.dim + nf
  const buf = Buffer.from(m.weights, 'base64')
  const all = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length))
  const n1 = inputs * m.hidden
  if (all.length !== n1 + 2 * m.hidden + 1) throw new Error('semanticCache: judge network weights have the wrong size')
  return {
    inputs,
    hidden: m.hidden,
    W1: all.subarray(0, n1),
    b1: all.subarray(n1, n1 + m.hidden),
    W2: all.subarray(n1 + m.hidden, n1 + 2 * m.hidden),
    b2: all[n1 + 2 * m.hidden]!,
    mean: Float64Array.from(m.mean),
    std: Float64Array.from(m.std),
    dim: m.dim,
  }
}

function fillInput(rt: { dim: number; mean: Float64Array; std: Float64Array }, u: ArrayLike<number>, v: ArrayLike<number>, f: ArrayLike<number>, x: Float32Array): void {
  const d = rt.dim
  for (let i = 0; i < d; i++) {
    x[i] = u[i]! * v[i]! * PROD_SCALE
    x[d + i] = Math.abs(u[i]! - v[i]!) * DIFF_SCALE
  }
  for (let i = 0; i < rt.mean.length; i++) x[2 * d + i] = (f[i]! - rt.mean[i]!) / rt.std[i]!
}

function forward(rt: MlpRuntime, x: Float32Array, h: Float32Array): number {
  const H = rt.hidden
  h.set(rt.b1)
  for (let i = 0; i < rt.inputs; i++) {
    const xi = x[i]!
    if (xi === 0) continue
    const o = i * H
    for (let j = 0; j < H; j++) h[j]! += xi * rt.W1[o + j]!
  }
  let z = rt.b2
  for (let j = 0; j < H; j++) if (h[j]! > 0) z += h[j]! * rt.W2[j]!
  else h[j] = 0
  return z
}

/** probability that the two prompts ask the same thing */
export function mlpPredict(rt: MlpRuntime, u: ArrayLike<number>, v: ArrayLike<number>, features: ArrayLike<number>): number {
  const x = new Float32Array(rt.inputs)
  const h = new Float32Array(rt.hidden)
  fillInput(rt, u, v, features, x)
  // symmetric by construction of the inputs (u*v, |u-v|, symmetric features)
  return 1 / (1 + Math.exp(-forward(rt, x, h)))
}

export interface MlpSample { u: ArrayLike<number>; v: ArrayLike<number>; f: number[]; y: number; w: number }

export function mlpTrain(train: MlpSample[], valid: MlpSample[], opts: { hidden?: number; epochs?: number; lr?: number; l2?: number; seed?: number; log?: (l: string) => void } = {}): MlpModel {
  const H = opts.hidden ?? 64
  const epochs = opts.epochs ?? 12
  const lr = opts.lr ?? 0.001
  const l2 = opts.l2 ?? 1e-4
  const dim = train[0]!.u.length
  const nf = train[0]!.f.length
  const mean = new Float64Array(nf), std = new Float64Array(nf)
  for (const s of train) s.f.forEach((x, i) => (mean[i]! += x / train.length))
  for (const s of train) s.f.forEach((x, i) => (std[i]! += (x - mean[i]!) ** 2 / train.length))
  for (let i = 0; i < nf; i++) std[i] = Math.sqrt(std[i]!) || 1
  const inputs = 2 * dim + nf
  const r = rng(opts.seed ?? 1)
  const gauss = () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r())
  const rt: MlpRuntime = {
    inputs, hidden: H, dim, mean, std,
    W1: new Float32Array(inputs * H).map(() => gauss() * Math.sqrt(2 / inputs)),
    b1: new Float32Array(H),
    W2: new Float32Array(H).map(() => gauss() * Math.sqrt(1 / H)),
    b2: 0,
  }
  const params = [rt.W1, rt.b1, rt.W2]
  const m1 = params.map((p) => new Float32Array(p.length)), m2 = params.map((p) => new Float32Array(p.length))
  let mb = 0, vb = 0, t = 0
  const gW1 = new Float32Array(inputs * H), gb1 = new Float32Array(H), gW2 = new Float32Array(H)
  const x = new Float32Array(inputs), h = new Float32Array(H)
  const loss = (set: MlpSample[]) => {
    let s = 0, ws = 0
    for (const e of set) {
      fillInput(rt, e.u, e.v, e.f, x)
      const p = Math.min(1 - 1e-9, Math.max(1e-9, 1 / (1 + Math.exp(-forward(rt, x, h)))))
      s -= e.w * (e.y ? Math.log(p) : Math.log(1 - p))
      ws += e.w
    }
    return s / ws
  }
  let best = Infinity
  let bestWeights: Float32Array[] = []
  let bestB2 = 0
  for (let ep = 0; ep < epochs; ep++) {
    const order = shuffled(train.map((_, i) => i), ep + 17 + 1000 * (opts.seed ?? 1))
    for (let s = 0; s < order.length; s += 64) {
      gW1.fill(0); gb1.fill(0); gW2.fill(0)
      let gb2 = 0
      const B = Math.min(64, order.length - s)
      for (let k = 0; k < B; k++) {
        const e = train[order[s + k]!]!
        fillInput(rt, e.u, e.v, e.f, x)
        const p = 1 / (1 + Math.exp(-forward(rt, x, h)))
        const d = (p - e.y) * e.w
        gb2 += d
        for (let j = 0; j < H; j++) {
          if (h[j]! <= 0) continue
          gW2[j]! += d * h[j]!
          const dh = d * rt.W2[j]!
          gb1[j]! += dh
          for (let i = 0; i < inputs; i++) if (x[i] !== 0) gW1[i * H + j]! += dh * x[i]!
        }
      }
      t++
      const grads = [gW1, gb1, gW2]
      const c1 = 1 - 0.9 ** t, c2 = 1 - 0.999 ** t
      for (let q = 0; q < 3; q++) {
        const P = params[q]!, G = grads[q]!, M = m1[q]!, V = m2[q]!
        for (let i = 0; i < P.length; i++) {
          const g = G[i]! / B + l2 * P[i]!
          M[i] = 0.9 * M[i]! + 0.1 * g
          V[i] = 0.999 * V[i]! + 0.001 * g * g
          P[i]! -= (lr * (M[i]! / c1)) / (Math.sqrt(V[i]! / c2) + 1e-8)
        }
      }
      const g = gb2 / B
      mb = 0.9 * mb + 0.1 * g
      vb = 0.999 * vb + 0.001 * g * g
      rt.b2 -= (lr * (mb / c1)) / (Math.sqrt(vb / c2) + 1e-8)
    }
    const vl = loss(valid)
    opts.log?.(`epoch ${ep + 1}: valid ${vl.toFixed(4)}`)
    if (vl < best) { best = vl; bestWeights = params.map((p) => p.slice()); bestB2 = rt.b2 }
  }
  const flat = new Float32Array(inputs * H + 2 * H + 1)
  flat.set(bestWeights[0]!, 0)
  flat.set(bestWeights[1]!, inputs * H)
  flat.set(bestWeights[2]!, inputs * H + H)
  flat[inputs * H + 2 * H] = bestB2
  return {
    kind: 'mlp',
    dim,
    hidden: H,
    mean: [...mean].map((v) => Number(v.toPrecision(7))),
    std: [...std].map((v) => Number(v.toPrecision(7))),
    weights: Buffer.from(flat.buffer).toString('base64'),
  }
}
