// Gradient-boosted shallow trees with logistic loss: small enough to ship as JSON, read in one
// sitting and evaluate in microseconds. This is the inference half; the trainer is
// tools/semantic-train/gbdt-train.ts, which the plugin never imports.

/** A tree as flat arrays: node i splits on feature[i] <= threshold[i] (left) else right; feature -1 = leaf with value[i]. */
export interface Tree {
  feature: number[]
  threshold: number[]
  left: number[]
  right: number[]
  value: number[]
}

export interface BoostedModel {
  /** log-odds before any tree */
  base: number
  trees: Tree[]
}

export function predictRaw(model: BoostedModel, x: ArrayLike<number>): number {
  let s = model.base
  for (const t of model.trees) {
    let i = 0
    while (t.feature[i]! >= 0) i = x[t.feature[i]!]! <= t.threshold[i]! ? t.left[i]! : t.right[i]!
    s += t.value[i]!
  }
  return s
}

export function predict(model: BoostedModel, x: ArrayLike<number>): number {
  return 1 / (1 + Math.exp(-predictRaw(model, x)))
}
