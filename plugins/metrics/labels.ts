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
  readonly #seen = new Map<LabelName, Set<string>>()
  constructor(private readonly limits: Record<LabelName, number>) {
    for (const k of Object.keys(limits) as LabelName[]) this.#seen.set(k, new Set())
  }

  /** the value to use for `label`: itself while there is room, else `other` */
  value(label: LabelName, raw: string | undefined): string {
    const v = raw ? (raw.length > MAX_LENGTH ? raw.slice(0, MAX_LENGTH) : raw) : 'unknown'
    const seen = this.#seen.get(label)!
    if (seen.has(v)) return v
    if (seen.size >= this.limits[label]) return 'other'
    seen.add(v)
    return v
  }
}
