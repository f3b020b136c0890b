// A one-hidden-layer network over a pair of sentence vectors and the pair's difference features:
// inputs are u*v and |u-v| (which dimensions agree and which differ, the classic sentence-pair
// encoding) plus the standardised features of features.ts. It sees far more than the cosine,
// which is a plain sum of u*v. Weights ship as base64 float32 inside judge-weights.json.
//
// Optionally (`proj` = k > 0) a learned projection P (k x dim), shared by both vectors, adds
// [Pu*Pv, |Pu-Pv|] to the inputs: u*v alone only gives the hidden layer diagonal bilinear terms,
// P lets it weigh agreement along learned directions. Still symmetric in (u, v). Models without
// `proj` are the plain network, unchanged.
import { rng, shuffled } from './train/data.ts'

export interface MlpModel {
  kind: 'mlp'
  dim: number
  hidden: number
  /** feature standardisation */
  mean: number[]
  std: number[]
  /** base64 float32: W1 is (inputs x hidden) row-major, then b1, W2, b2, then P (proj x dim) row-major if proj */
  weights: string
  /** rows of the learned projection (absent or 0: none); its inputs follow the features */
  proj?: number
}

/** training keeps float32 weights (what ships); unpacked weights are float64, about 1.5x faster to multiply here */
type Vec = Float32Array | Float64Array

export interface MlpRuntime {
  inputs: number
  hidden: number
  W1: Vec
  b1: Vec
  W2: Vec
  b2: number
  mean: Float64Array
  std: Float64Array
  dim: number
  /** projection rows (0: none) and P (proj x dim, row-major) */
  proj: number
  P: Vec
  /** inference only: P times the last query vector, reused while the same query meets several candidates */
  lastU?: ArrayLike<number>
  lastPu?: Float64Array
  pv?: Float64Array
  /** inference only: the input vector, refilled on every call (mlpPredict is synchronous) */
  x?: Float64Array
}

const PROD_SCALE = 20 // u*v components of unit vectors are tiny: bring them to unit-ish range
const DIFF_SCALE = 10
// P is stored small (so Adam's fixed step moves it at a rate like W1's) and scaled up here:
// Pu then has roughly unit components for a unit u
const PROJ_SCALE = 20
const PPROD_SCALE = 1
const PDIFF_SCALE = 2

/** a runtime for inference: `unpack` adds W1 hidden-major for the inference kernel */
export type MlpInference = MlpRuntime & { W1T: Float64Array }

export function unpack(m: MlpModel): MlpInference {
  const nf = m.mean.length
  const k = m.proj ?? 0
  const inputs = 2 * m.dim + nf + 2 * k
  const buf = Buffer.from(m.weights, 'base64')
  const all = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length))
  const n1 = inputs * m.hidden
  const n2 = n1 + 2 * m.hidden + 1
  if (all.length !== n2 + k * m.dim) throw new Error('semanticCache: judge network weights have the wrong size')
  const W1T = new Float64Array(n1)
  for (let i = 0; i < inputs; i++) for (let j = 0; j < m.hidden; j++) W1T[j * inputs + i] = all[i * m.hidden + j]!
  return {
    inputs,
    hidden: m.hidden,
    // input-major W1 is only read by mlpPredictPlain: a view, not a second float64 copy
    W1: all.subarray(0, n1),
    W1T,
    b1: Float64Array.from(all.subarray(n1, n1 + m.hidden)),
    W2: Float64Array.from(all.subarray(n1 + m.hidden, n1 + 2 * m.hidden)),
    b2: all[n1 + 2 * m.hidden]!,
    mean: Float64Array.from(m.mean),
    std: Float64Array.from(m.std),
    dim: m.dim,
    proj: k,
    P: Float64Array.from(all.subarray(n2, n2 + k * m.dim)),
  }
}

/** the inputs before the projected ones: u*v, |u-v| and the standardised features */
function fillPair(rt: { dim: number; mean: Float64Array; std: Float64Array }, u: ArrayLike<number>, v: ArrayLike<number>, f: ArrayLike<number>, x: Vec): void {
  const d = rt.dim
  for (let i = 0; i < d; i++) {
    x[i] = u[i]! * v[i]! * PROD_SCALE
    x[d + i] = Math.abs(u[i]! - v[i]!) * DIFF_SCALE
  }
  const nf = rt.mean.length
  for (let i = 0; i < nf; i++) x[2 * d + i] = (f[i]! - rt.mean[i]!) / rt.std[i]!
}

/** fills x (training); with a projection, also a = Pu and b = Pv (length proj) */
function fillInput(rt: { dim: number; mean: Float64Array; std: Float64Array; proj: number; P: Vec }, u: ArrayLike<number>, v: ArrayLike<number>, f: ArrayLike<number>, x: Vec, a?: Vec, b?: Vec): void {
  fillPair(rt, u, v, f, x)
  const k = rt.proj
  if (!k) return
  const d = rt.dim, P = rt.P, base = 2 * d + rt.mean.length
  for (let p = 0; p < k; p++) {
    const o = p * d
    // (unrolled: this is most of a projected network's forward pass)
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0, t0 = 0, t1 = 0, t2 = 0, t3 = 0
    let i = 0
    for (; i + 3 < d; i += 4) {
      const w0 = P[o + i]!, w1 = P[o + i + 1]!, w2 = P[o + i + 2]!, w3 = P[o + i + 3]!
      s0 += w0 * u[i]!; s1 += w1 * u[i + 1]!; s2 += w2 * u[i + 2]!; s3 += w3 * u[i + 3]!
      t0 += w0 * v[i]!; t1 += w1 * v[i + 1]!; t2 += w2 * v[i + 2]!; t3 += w3 * v[i + 3]!
    }
    for (; i < d; i++) { s0 += P[o + i]! * u[i]!; t0 += P[o + i]! * v[i]! }
    const su = (s0 + s1 + s2 + s3) * PROJ_SCALE, sv = (t0 + t1 + t2 + t3) * PROJ_SCALE
    if (a) { a[p] = su; b![p] = sv }
    x[base + p] = su * sv * PPROD_SCALE
    x[base + k + p] = Math.abs(su - sv) * PDIFF_SCALE
  }
}

function forward(rt: MlpRuntime, x: Vec, h: Vec): number {
  const H = rt.hidden, W1 = rt.W1, n = rt.inputs
  h.set(rt.b1)
  for (let i = 0; i < n; i++) {
    const xi = x[i]!
    if (xi === 0) continue
    let o = i * H
    for (let j = 0; j < H; j++, o++) h[j]! += xi * W1[o]!
  }
  let z = rt.b2
  const W2 = rt.W2
  for (let j = 0; j < H; j++) if (h[j]! > 0) z += h[j]! * W2[j]!
  else h[j] = 0
  return z
}

/**
 * out = P v (scaled), four rows of P per pass so each v[i] is loaded once for four of them
 * (twice as fast here as one row at a time).
 */
function project(rt: MlpRuntime, v: ArrayLike<number>, out: Float64Array): void {
  const k = rt.proj, d = rt.dim, P = rt.P
  let p = 0
  for (; p + 3 < k; p += 4) {
    const o0 = p * d, o1 = o0 + d, o2 = o1 + d, o3 = o2 + d
    let t0 = 0, t1 = 0, t2 = 0, t3 = 0
    for (let i = 0; i < d; i++) {
      const vi = v[i]!
      t0 += P[o0 + i]! * vi; t1 += P[o1 + i]! * vi; t2 += P[o2 + i]! * vi; t3 += P[o3 + i]! * vi
    }
    out[p] = t0 * PROJ_SCALE; out[p + 1] = t1 * PROJ_SCALE; out[p + 2] = t2 * PROJ_SCALE; out[p + 3] = t3 * PROJ_SCALE
  }
  for (; p < k; p++) {
    let t = 0
    for (let i = 0, o = p * d; i < d; i++) t += P[o + i]! * v[i]!
    out[p] = t * PROJ_SCALE
  }
}

/**
 * The hidden layer from W1 hidden-major, four units per pass over x: four running sums stay in
 * registers and each x[i] is loaded once for four of them. About 4x faster here than the
 * input-major loop training uses, which stores into h on every multiply.
 */
function forwardInference(rt: MlpInference, x: Float64Array): number {
  const H = rt.hidden, n = rt.inputs, W = rt.W1T, b1 = rt.b1, W2 = rt.W2
  let z = rt.b2
  let j = 0
  for (; j + 3 < H; j += 4) {
    const o0 = j * n, o1 = o0 + n, o2 = o1 + n, o3 = o2 + n
    let s0 = b1[j]!, s1 = b1[j + 1]!, s2 = b1[j + 2]!, s3 = b1[j + 3]!
    for (let i = 0; i < n; i++) {
      const xi = x[i]!
      s0 += xi * W[o0 + i]!; s1 += xi * W[o1 + i]!; s2 += xi * W[o2 + i]!; s3 += xi * W[o3 + i]!
    }
    if (s0 > 0) z += s0 * W2[j]!
    if (s1 > 0) z += s1 * W2[j + 1]!
    if (s2 > 0) z += s2 * W2[j + 2]!
    if (s3 > 0) z += s3 * W2[j + 3]!
  }
  for (; j < H; j++) {
    let s = b1[j]!
    for (let i = 0, o = j * n; i < n; i++) s += x[i]! * W[o + i]!
    if (s > 0) z += s * W2[j]!
  }
  return z
}

/**
 * probability that the two prompts ask the same thing (a runtime from `unpack`). Vectors are
 * read, never kept, except that P times `u` is reused while the same `u` object comes again:
 * do not refill a vector in place.
 */
export function mlpPredict(rt: MlpInference, u: ArrayLike<number>, v: ArrayLike<number>, features: ArrayLike<number>): number {
  // every slot is written below, so the buffer is reused across calls
  const x = (rt.x ??= new Float64Array(rt.inputs))
  fillPair(rt, u, v, features, x)
  const k = rt.proj
  if (k) {
    // the store judges one query against several candidates with the same vector object
    const pu = (rt.lastPu ??= new Float64Array(k))
    if (rt.lastU !== u) { project(rt, u, pu); rt.lastU = u }
    const pv = (rt.pv ??= new Float64Array(k))
    project(rt, v, pv)
    const base = 2 * rt.dim + rt.mean.length
    for (let p = 0; p < k; p++) {
      const su = pu[p]!, sv = pv[p]!
      x[base + p] = su * sv * PPROD_SCALE
      x[base + k + p] = Math.abs(su - sv) * PDIFF_SCALE
    }
  }
  // symmetric by construction of the inputs (u*v, |u-v|, symmetric features, Pu*Pv, |Pu-Pv|)
  return 1 / (1 + Math.exp(-forwardInference(rt, x)))
}

/** the same probability through the training path's loops: slower, kept to check the inference kernels against */
export function mlpPredictPlain(rt: MlpRuntime, u: ArrayLike<number>, v: ArrayLike<number>, features: ArrayLike<number>): number {
  const x = new Float64Array(rt.inputs)
  fillInput(rt, u, v, features, x)
  return 1 / (1 + Math.exp(-forward(rt, x, new Float64Array(rt.hidden))))
}

export interface MlpSample { u: ArrayLike<number>; v: ArrayLike<number>; f: number[]; y: number; w: number }

export function mlpTrain(train: MlpSample[], valid: MlpSample[], opts: { hidden?: number; epochs?: number; lr?: number; l2?: number; seed?: number; proj?: number; log?: (l: string) => void } = {}): MlpModel {
  const H = opts.hidden ?? 64
  const K = opts.proj ?? 0
  const epochs = opts.epochs ?? 12
  const lr = opts.lr ?? 0.001
  const l2 = opts.l2 ?? 1e-4
  const dim = train[0]!.u.length
  const nf = train[0]!.f.length
  const mean = new Float64Array(nf), std = new Float64Array(nf)
  for (const s of train) s.f.forEach((x, i) => (mean[i]! += x / train.length))
  for (const s of train) s.f.forEach((x, i) => (std[i]! += (x - mean[i]!) ** 2 / train.length))
  for (let i = 0; i < nf; i++) std[i] = Math.sqrt(std[i]!) || 1
  const inputs = 2 * dim + nf + 2 * K
  const r = rng(opts.seed ?? 1)
  const gauss = () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r())
  const rt: MlpRuntime = {
    inputs, hidden: H, dim, mean, std,
    W1: new Float32Array(inputs * H).map(() => gauss() * Math.sqrt(2 / inputs)),
    b1: new Float32Array(H),
    W2: new Float32Array(H).map(() => gauss() * Math.sqrt(1 / H)),
    b2: 0,
    proj: K,
    P: new Float32Array(0),
  }
  // drawn after W1 and W2, so a network without projection starts as before
  if (K) rt.P = new Float32Array(K * dim).map(() => gauss() / (PROJ_SCALE * Math.sqrt(dim)))
  const params = [rt.W1, rt.b1, rt.W2, ...(K ? [rt.P] : [])]
  const m1 = params.map((p) => new Float32Array(p.length)), m2 = params.map((p) => new Float32Array(p.length))
  let mb = 0, vb = 0, t = 0
  const gW1 = new Float32Array(inputs * H), gb1 = new Float32Array(H), gW2 = new Float32Array(H), gP = new Float32Array(K * dim)
  const x = new Float32Array(inputs), h = new Float32Array(H), dhs = new Float64Array(H)
  const pa = new Float32Array(K), pb = new Float32Array(K)
  const pbase = 2 * dim + nf
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
  let bestWeights: Vec[] = []
  let bestB2 = 0
  for (let ep = 0; ep < epochs; ep++) {
    const order = shuffled(train.map((_, i) => i), ep + 17 + 1000 * (opts.seed ?? 1))
    for (let s = 0; s < order.length; s += 64) {
      gW1.fill(0); gb1.fill(0); gW2.fill(0); gP.fill(0)
      let gb2 = 0
      const B = Math.min(64, order.length - s)
      for (let k = 0; k < B; k++) {
        const e = train[order[s + k]!]!
        fillInput(rt, e.u, e.v, e.f, x, pa, pb)
        const p = 1 / (1 + Math.exp(-forward(rt, x, h)))
        const d = (p - e.y) * e.w
        gb2 += d
        for (let j = 0; j < H; j++) {
          if (h[j]! <= 0) { dhs[j] = 0; continue }
          gW2[j]! += d * h[j]!
          const dh = d * rt.W2[j]!
          dhs[j] = dh
          gb1[j]! += dh
        }
        // (per element the sum over the batch runs in the same order as a j-outer loop would)
        for (let i = 0; i < inputs; i++) {
          const xi = x[i]!
          if (xi === 0) continue
          const o = i * H
          for (let j = 0; j < H; j++) if (dhs[j] !== 0) gW1[o + j]! += dhs[j]! * xi
        }
        // through the projected inputs back to P: x_p = a_p b_p, x_(k+p) = |a_p - b_p|, a = Pu, b = Pv
        for (let q = 0; q < K; q++) {
          const op = (pbase + q) * H, oq = (pbase + K + q) * H
          let gp = 0, gq = 0
          for (let j = 0; j < H; j++) { const dh = dhs[j]!; if (dh !== 0) { gp += dh * rt.W1[op + j]!; gq += dh * rt.W1[oq + j]! } }
          const a = pa[q]!, b = pb[q]!, sg = a > b ? 1 : a < b ? -1 : 0
          const ga = (gp * PPROD_SCALE * b + gq * PDIFF_SCALE * sg) * PROJ_SCALE
          const gb = (gp * PPROD_SCALE * a - gq * PDIFF_SCALE * sg) * PROJ_SCALE
          if (ga === 0 && gb === 0) continue
          const o = q * dim, u = e.u, v = e.v
          for (let i = 0; i < dim; i++) gP[o + i]! += ga * u[i]! + gb * v[i]!
        }
      }
      t++
      const grads = [gW1, gb1, gW2, gP]
      const c1 = 1 - 0.9 ** t, c2 = 1 - 0.999 ** t
      for (let q = 0; q < params.length; q++) {
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
  const flat = new Float32Array(inputs * H + 2 * H + 1 + K * dim)
  flat.set(bestWeights[0]!, 0)
  flat.set(bestWeights[1]!, inputs * H)
  flat.set(bestWeights[2]!, inputs * H + H)
  flat[inputs * H + 2 * H] = bestB2
  if (K) flat.set(bestWeights[3]!, inputs * H + 2 * H + 1)
  return {
    kind: 'mlp',
    dim,
    hidden: H,
    mean: [...mean].map((v) => Number(v.toPrecision(7))),
    std: [...std].map((v) => Number(v.toPrecision(7))),
    weights: Buffer.from(flat.buffer).toString('base64'),
    ...(K ? { proj: K } : {}),
  }
}
