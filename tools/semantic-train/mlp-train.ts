// Training of the semantic cache judge's network, which plugins/semantic-cache/mlp.ts evaluates:
// minibatch Adam on weighted log-loss over float32 weights (what ships), keeping the epoch with
// the best held-out loss. Also the plain forward pass the tests check the inference kernels against.
import {
  fillPair,
  PDIFF_SCALE,
  PPROD_SCALE,
  PROJ_SCALE,
  type MlpModel,
  type MlpRuntime,
  type Vec,
} from '../../plugins/semantic-cache/mlp.ts'
import { rng, shuffled } from './data.ts'

/** fills x (training); with a projection, also a = Pu and b = Pv (length proj) */
function fillInput(
  rt: { dim: number; mean: Float64Array; std: Float64Array; proj: number; P: Vec },
  u: ArrayLike<number>,
  v: ArrayLike<number>,
  f: ArrayLike<number>,
  x: Vec,
  a?: Vec,
  b?: Vec,
): void {
  fillPair(rt, u, v, f, x)
  const k = rt.proj
  if (!k) return
  const d = rt.dim,
    P = rt.P,
    base = 2 * d + rt.mean.length
  for (let p = 0; p < k; p++) {
    const o = p * d
    // (unrolled: this is most of a projected network's forward pass)
    let s0 = 0,
      s1 = 0,
      s2 = 0,
      s3 = 0,
      t0 = 0,
      t1 = 0,
      t2 = 0,
      t3 = 0
    let i = 0
    for (; i + 3 < d; i += 4) {
      const w0 = P[o + i]!,
        w1 = P[o + i + 1]!,
        w2 = P[o + i + 2]!,
        w3 = P[o + i + 3]!
      s0 += w0 * u[i]!
      s1 += w1 * u[i + 1]!
      s2 += w2 * u[i + 2]!
      s3 += w3 * u[i + 3]!
      t0 += w0 * v[i]!
      t1 += w1 * v[i + 1]!
      t2 += w2 * v[i + 2]!
      t3 += w3 * v[i + 3]!
    }
    for (; i < d; i++) {
      s0 += P[o + i]! * u[i]!
      t0 += P[o + i]! * v[i]!
    }
    const su = (s0 + s1 + s2 + s3) * PROJ_SCALE,
      sv = (t0 + t1 + t2 + t3) * PROJ_SCALE
    if (a) {
      a[p] = su
      b![p] = sv
    }
    x[base + p] = su * sv * PPROD_SCALE
    x[base + k + p] = Math.abs(su - sv) * PDIFF_SCALE
  }
}

function forward(rt: MlpRuntime, x: Vec, h: Vec): number {
  const H = rt.hidden,
    W1 = rt.W1,
    n = rt.inputs
  h.set(rt.b1)
  for (let i = 0; i < n; i++) {
    const xi = x[i]!
    if (xi === 0) continue
    let o = i * H
    for (let j = 0; j < H; j++, o++) h[j]! += xi * W1[o]!
  }
  let z = rt.b2
  const W2 = rt.W2
  for (let j = 0; j < H; j++)
    if (h[j]! > 0) z += h[j]! * W2[j]!
    else h[j] = 0
  return z
}

/** the same probability as mlpPredict through the training path's loops: slower, kept to check the inference kernels against */
export function mlpPredictPlain(
  rt: MlpRuntime,
  u: ArrayLike<number>,
  v: ArrayLike<number>,
  features: ArrayLike<number>,
): number {
  const x = new Float64Array(rt.inputs)
  fillInput(rt, u, v, features, x)
  return 1 / (1 + Math.exp(-forward(rt, x, new Float64Array(rt.hidden))))
}

export interface MlpSample {
  u: ArrayLike<number>
  v: ArrayLike<number>
  f: number[]
  y: number
  w: number
}

export interface MlpTrainOptions {
  hidden?: number
  epochs?: number
  lr?: number
  l2?: number
  seed?: number
  proj?: number
  log?: (l: string) => void
}

const BATCH = 64

/** per-feature mean and standard deviation over the training rows (a constant feature gets 1) */
function standardisation(train: MlpSample[], nf: number): { mean: Float64Array; std: Float64Array } {
  const mean = new Float64Array(nf),
    std = new Float64Array(nf)
  for (const s of train) s.f.forEach((x, i) => (mean[i]! += x / train.length))
  for (const s of train) s.f.forEach((x, i) => (std[i]! += (x - mean[i]!) ** 2 / train.length))
  for (let i = 0; i < nf; i++) std[i] = Math.sqrt(std[i]!) || 1
  return { mean, std }
}

/** He-initialised weights from the seed */
function initNetwork(
  dim: number,
  hidden: number,
  proj: number,
  seed: number,
  mean: Float64Array,
  std: Float64Array,
): MlpRuntime {
  const H = hidden,
    K = proj
  const inputs = 2 * dim + mean.length + 2 * K
  const r = rng(seed)
  const gauss = () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r())
  const rt: MlpRuntime = {
    inputs,
    hidden: H,
    dim,
    mean,
    std,
    W1: new Float32Array(inputs * H).map(() => gauss() * Math.sqrt(2 / inputs)),
    b1: new Float32Array(H),
    W2: new Float32Array(H).map(() => gauss() * Math.sqrt(1 / H)),
    b2: 0,
    proj: K,
    P: new Float32Array(0),
  }
  // drawn after W1 and W2, so a network without projection starts as before
  if (K) rt.P = new Float32Array(K * dim).map(() => gauss() / (PROJ_SCALE * Math.sqrt(dim)))
  return rt
}

/** a batch's summed gradients, and the buffers each sample's forward and backward pass reuse */
interface Work {
  gW1: Float32Array
  gb1: Float32Array
  gW2: Float32Array
  gP: Float32Array
  gb2: number
  x: Float32Array
  h: Float32Array
  dhs: Float64Array
  pa: Float32Array
  pb: Float32Array
}

function newWork(rt: MlpRuntime): Work {
  const H = rt.hidden,
    K = rt.proj
  return {
    gW1: new Float32Array(rt.inputs * H),
    gb1: new Float32Array(H),
    gW2: new Float32Array(H),
    gP: new Float32Array(K * rt.dim),
    gb2: 0,
    x: new Float32Array(rt.inputs),
    h: new Float32Array(H),
    dhs: new Float64Array(H),
    pa: new Float32Array(K),
    pb: new Float32Array(K),
  }
}

/** adds one sample's gradient of the weighted log-loss to w: output, hidden layer, W1, then P */
function accumulate(rt: MlpRuntime, e: MlpSample, w: Work): void {
  const H = rt.hidden,
    x = w.x,
    h = w.h,
    dhs = w.dhs,
    gW1 = w.gW1
  fillInput(rt, e.u, e.v, e.f, x, w.pa, w.pb)
  const p = 1 / (1 + Math.exp(-forward(rt, x, h)))
  const d = (p - e.y) * e.w
  w.gb2 += d
  for (let j = 0; j < H; j++) {
    if (h[j]! <= 0) {
      dhs[j] = 0
      continue
    }
    w.gW2[j]! += d * h[j]!
    const dh = d * rt.W2[j]!
    dhs[j] = dh
    w.gb1[j]! += dh
  }
  // (per element the sum over the batch runs in the same order as a j-outer loop would)
  for (let i = 0; i < rt.inputs; i++) {
    const xi = x[i]!
    if (xi === 0) continue
    const o = i * H
    for (let j = 0; j < H; j++) if (dhs[j] !== 0) gW1[o + j]! += dhs[j]! * xi
  }
  if (rt.proj) backpropProjection(rt, e, w)
}

/** through the projected inputs back to P: x_p = a_p b_p, x_(k+p) = |a_p - b_p|, a = Pu, b = Pv */
function backpropProjection(rt: MlpRuntime, e: MlpSample, w: Work): void {
  const K = rt.proj,
    H = rt.hidden,
    dim = rt.dim,
    pbase = 2 * dim + rt.mean.length
  const dhs = w.dhs,
    pa = w.pa,
    pb = w.pb,
    gP = w.gP
  for (let q = 0; q < K; q++) {
    const op = (pbase + q) * H,
      oq = (pbase + K + q) * H
    let gp = 0,
      gq = 0
    for (let j = 0; j < H; j++) {
      const dh = dhs[j]!
      if (dh !== 0) {
        gp += dh * rt.W1[op + j]!
        gq += dh * rt.W1[oq + j]!
      }
    }
    const a = pa[q]!,
      b = pb[q]!,
      sg = a > b ? 1 : a < b ? -1 : 0
    const ga = (gp * PPROD_SCALE * b + gq * PDIFF_SCALE * sg) * PROJ_SCALE
    const gb = (gp * PPROD_SCALE * a - gq * PDIFF_SCALE * sg) * PROJ_SCALE
    if (ga === 0 && gb === 0) continue
    const o = q * dim,
      u = e.u,
      v = e.v
    for (let i = 0; i < dim; i++) gP[o + i]! += ga * u[i]! + gb * v[i]!
  }
}

/** Adam's moment estimates: one pair of arrays per parameter array, one pair of numbers for b2 */
interface Adam {
  m1: Float32Array[]
  m2: Float32Array[]
  mb: number
  vb: number
  t: number
}

/** one Adam step on the batch's mean gradient plus L2 */
function adamStep(rt: MlpRuntime, params: Vec[], w: Work, adam: Adam, B: number, lr: number, l2: number): void {
  const t = ++adam.t
  const grads = [w.gW1, w.gb1, w.gW2, w.gP]
  const c1 = 1 - 0.9 ** t,
    c2 = 1 - 0.999 ** t
  for (let q = 0; q < params.length; q++) {
    const P = params[q]!,
      G = grads[q]!,
      M = adam.m1[q]!,
      V = adam.m2[q]!
    for (let i = 0; i < P.length; i++) {
      const g = G[i]! / B + l2 * P[i]!
      M[i] = 0.9 * M[i]! + 0.1 * g
      V[i] = 0.999 * V[i]! + 0.001 * g * g
      P[i]! -= (lr * (M[i]! / c1)) / (Math.sqrt(V[i]! / c2) + 1e-8)
    }
  }
  const g = w.gb2 / B
  adam.mb = 0.9 * adam.mb + 0.1 * g
  adam.vb = 0.999 * adam.vb + 0.001 * g * g
  rt.b2 -= (lr * (adam.mb / c1)) / (Math.sqrt(adam.vb / c2) + 1e-8)
}

/** weighted log-loss over a set (the held-out rows) */
function loss(rt: MlpRuntime, set: MlpSample[], w: Work): number {
  let s = 0,
    ws = 0
  for (const e of set) {
    fillInput(rt, e.u, e.v, e.f, w.x)
    const p = Math.min(1 - 1e-9, Math.max(1e-9, 1 / (1 + Math.exp(-forward(rt, w.x, w.h)))))
    s -= e.w * (e.y ? Math.log(p) : Math.log(1 - p))
    ws += e.w
  }
  return s / ws
}

/** the shipped form: W1, b1, W2, b2 then P as base64 float32, the standardisation rounded */
function pack(rt: MlpRuntime, weights: Vec[], b2: number): MlpModel {
  const inputs = rt.inputs,
    H = rt.hidden,
    K = rt.proj,
    dim = rt.dim
  const flat = new Float32Array(inputs * H + 2 * H + 1 + K * dim)
  flat.set(weights[0]!, 0)
  flat.set(weights[1]!, inputs * H)
  flat.set(weights[2]!, inputs * H + H)
  flat[inputs * H + 2 * H] = b2
  if (K) flat.set(weights[3]!, inputs * H + 2 * H + 1)
  return {
    kind: 'mlp',
    dim,
    hidden: H,
    mean: [...rt.mean].map((v) => Number(v.toPrecision(7))),
    std: [...rt.std].map((v) => Number(v.toPrecision(7))),
    weights: Buffer.from(flat.buffer).toString('base64'),
    ...(K ? { proj: K } : {}),
  }
}

export function mlpTrain(train: MlpSample[], valid: MlpSample[], opts: MlpTrainOptions = {}): MlpModel {
  const K = opts.proj ?? 0
  const epochs = opts.epochs ?? 12
  const lr = opts.lr ?? 0.001
  const l2 = opts.l2 ?? 1e-4
  const seed = opts.seed ?? 1
  const { mean, std } = standardisation(train, train[0]!.f.length)
  const rt = initNetwork(train[0]!.u.length, opts.hidden ?? 64, K, seed, mean, std)
  const params = [rt.W1, rt.b1, rt.W2, ...(K ? [rt.P] : [])]
  const adam: Adam = {
    m1: params.map((p) => new Float32Array(p.length)),
    m2: params.map((p) => new Float32Array(p.length)),
    mb: 0,
    vb: 0,
    t: 0,
  }
  const w = newWork(rt)
  let best = Infinity
  let bestWeights: Vec[] = []
  let bestB2 = 0
  for (let ep = 0; ep < epochs; ep++) {
    const order = shuffled(
      train.map((_, i) => i),
      ep + 17 + 1000 * seed,
    )
    for (let s = 0; s < order.length; s += BATCH) {
      w.gW1.fill(0)
      w.gb1.fill(0)
      w.gW2.fill(0)
      w.gP.fill(0)
      w.gb2 = 0
      const B = Math.min(BATCH, order.length - s)
      for (let k = 0; k < B; k++) accumulate(rt, train[order[s + k]!]!, w)
      adamStep(rt, params, w, adam, B, lr, l2)
    }
    const vl = loss(rt, valid, w)
    opts.log?.(`epoch ${ep + 1}: valid ${vl.toFixed(4)}`)
    if (vl < best) {
      best = vl
      bestWeights = params.map((p) => p.slice())
      bestB2 = rt.b2
    }
  }
  return pack(rt, bestWeights, bestB2)
}
