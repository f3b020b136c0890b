// Bounded label values: each label keeps the first N distinct values it sees and folds every later
// one into `other`, so a client inventing team, user or model names cannot grow the scrape (or
// Prometheus's memory) without end.
export type LabelName = 'team' | 'user' | 'tool' | 'vendor' | 'model' | 'status'

export const DEFAULT_LIMITS: Record<LabelName, number> = {
  team: 100,
  user: 1000,
  tool: 50,
  vendor: 20,
  model: 200,
  status: 50,
}

/** longer values are cut: a label is a name, not a payload */
const MAX_LENGTH = 64

export class LabelSets {
  // one property per label (not a Map by label name): a request reads six of them
  readonly #seen: Record<LabelName, Set<string>> = {
    team: new Set(),
    user: new Set(),
    tool: new Set(),
    vendor: new Set(),
    model: new Set(),
    status: new Set(),
  }
  constructor(private readonly limits: Record<LabelName, number>) {}

  /** the value to use for `label`: itself while there is room, else `other` */
  value(label: LabelName, raw: string | undefined): string {
    const v = raw ? (raw.length > MAX_LENGTH ? raw.slice(0, MAX_LENGTH) : raw) : 'unknown'
    const seen = this.#seen[label]
    if (seen.has(v)) return v
    if (seen.size >= this.limits[label]) return 'other'
    seen.add(v)
    return v
  }
}
