// A one-hidden-layer network over a pair of sentence vectors and the pair's difference features:
// inputs are u*v and |u-v| (which dimensions agree and which differ, the classic sentence-pair
// encoding) plus the standardised features of features.ts. It sees far more than the cosine,
// which is a plain sum of u*v. Weights ship as base64 float32 inside judge-weights.json.
//
// Optionally (`proj` = k > 0) a learned projection P (k x dim), shared by both vectors, adds
// [Pu*Pv, |Pu-Pv|] to the inputs: u*v alone only gives the hidden layer diagonal bilinear terms,
// P lets it weigh agreement along learned directions. Still symmetric in (u, v). Models without
// `proj` are the plain network, unchanged.
//
// This is the inference half, what the proxy loads; the trainer (and the plain reference loops
// the kernels are checked against) is tools/semantic-train/mlp-train.ts, never imported here.

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
export type Vec = Float32Array | Float64Array

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
export const PROJ_SCALE = 20
export const PPROD_SCALE = 1
export const PDIFF_SCALE = 2

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
    // input-major W1 is only read by mlpPredictPlain (tools/semantic-train/mlp-train.ts): a view, not a second float64 copy
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
export function fillPair(
  rt: { dim: number; mean: Float64Array; std: Float64Array },
  u: ArrayLike<number>,
  v: ArrayLike<number>,
  f: ArrayLike<number>,
  x: Vec,
): void {
  const d = rt.dim
  for (let i = 0; i < d; i++) {
    x[i] = u[i]! * v[i]! * PROD_SCALE
    x[d + i] = Math.abs(u[i]! - v[i]!) * DIFF_SCALE
  }
  const nf = rt.mean.length
  for (let i = 0; i < nf; i++) x[2 * d + i] = (f[i]! - rt.mean[i]!) / rt.std[i]!
}

/**
 * out = P v (scaled), four rows of P per pass so each v[i] is loaded once for four of them
 * (twice as fast here as one row at a time).
 */
function project(rt: MlpRuntime, v: ArrayLike<number>, out: Float64Array): void {
  const k = rt.proj,
    d = rt.dim,
    P = rt.P
  let p = 0
  for (; p + 3 < k; p += 4) {
    const o0 = p * d,
      o1 = o0 + d,
      o2 = o1 + d,
      o3 = o2 + d
    let t0 = 0,
      t1 = 0,
      t2 = 0,
      t3 = 0
    for (let i = 0; i < d; i++) {
      const vi = v[i]!
      t0 += P[o0 + i]! * vi
      t1 += P[o1 + i]! * vi
      t2 += P[o2 + i]! * vi
      t3 += P[o3 + i]! * vi
    }
    out[p] = t0 * PROJ_SCALE
    out[p + 1] = t1 * PROJ_SCALE
    out[p + 2] = t2 * PROJ_SCALE
    out[p + 3] = t3 * PROJ_SCALE
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
  const H = rt.hidden,
    n = rt.inputs,
    W = rt.W1T,
    b1 = rt.b1,
    W2 = rt.W2
  let z = rt.b2
  let j = 0
  for (; j + 3 < H; j += 4) {
    const o0 = j * n,
      o1 = o0 + n,
      o2 = o1 + n,
      o3 = o2 + n
    let s0 = b1[j]!,
      s1 = b1[j + 1]!,
      s2 = b1[j + 2]!,
      s3 = b1[j + 3]!
    for (let i = 0; i < n; i++) {
      const xi = x[i]!
      s0 += xi * W[o0 + i]!
      s1 += xi * W[o1 + i]!
      s2 += xi * W[o2 + i]!
      s3 += xi * W[o3 + i]!
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
export function mlpPredict(
  rt: MlpInference,
  u: ArrayLike<number>,
  v: ArrayLike<number>,
  features: ArrayLike<number>,
): number {
  // every slot is written below, so the buffer is reused across calls
  const x = (rt.x ??= new Float64Array(rt.inputs))
  fillPair(rt, u, v, features, x)
  const k = rt.proj
  if (k) {
    // the store judges one query against several candidates with the same vector object
    const pu = (rt.lastPu ??= new Float64Array(k))
    if (rt.lastU !== u) {
      project(rt, u, pu)
      rt.lastU = u
    }
    const pv = (rt.pv ??= new Float64Array(k))
    project(rt, v, pv)
    const base = 2 * rt.dim + rt.mean.length
    for (let p = 0; p < k; p++) {
      const su = pu[p]!,
        sv = pv[p]!
      x[base + p] = su * sv * PPROD_SCALE
      x[base + k + p] = Math.abs(su - sv) * PDIFF_SCALE
    }
  }
  // symmetric by construction of the inputs (u*v, |u-v|, symmetric features, Pu*Pv, |Pu-Pv|)
  return 1 / (1 + Math.exp(-forwardInference(rt, x)))
}
