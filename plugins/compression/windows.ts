// Context windows (input + output tokens) of the models AgentMesh routes to. Nothing in the core
// knows them (core/pricing.ts has prices only), so the plugin carries this small table; the
// `contextWindows` option overrides or adds entries. Model ids are matched as the price table
// matches them (core/pricing.ts modelCandidates: snapshots and vendor prefixes resolved), then by
// family prefix ('claude-' ...). Figures from the vendors' model pages.
import { LRUCache } from 'lru-cache'
import { modelCandidates } from '../../core/pricing.ts'

export const CONTEXT_WINDOWS: Record<string, number> = {
  // Anthropic: 200k standard (the 1M beta needs a header this table does not read)
  'claude-*': 200_000,
  // OpenAI
  'gpt-5*': 400_000,
  'gpt-4.1*': 1_047_576,
  'gpt-4o*': 128_000,
  'chatgpt-4o*': 128_000,
  'gpt-4-turbo*': 128_000,
  'gpt-4': 8_192,
  'gpt-3.5-turbo*': 16_385,
  'o1*': 200_000,
  'o3*': 200_000,
  'o4-mini*': 200_000,
  // Google
  'gemini-*': 1_048_576,
  // the demo vendor answers anything; its window is that of the small model it imitates
  'demo-*': 200_000,
}

export type WindowLookup = (model: string) => number | undefined

/** A lookup over the table with `overrides` first (exact ids, or prefixes ending in '*'). */
export function createWindowLookup(overrides: Record<string, number> = {}): WindowLookup {
  const exact = new Map<string, number>()
  const prefixes: Array<[string, number]> = []
  for (const [k, v] of Object.entries({ ...CONTEXT_WINDOWS, ...overrides })) {
    const key = k.toLowerCase()
    if (key.endsWith('*')) prefixes.push([key.slice(0, -1), v])
    else exact.set(key, v)
  }
  // the longest prefix wins; overrides' prefixes before the table's of the same length
  prefixes.sort((a, b) => b[0].length - a[0].length)
  // model names come from clients: bounded
  const resolved = new LRUCache<string, number>({ max: 5000 })
  // most requests name the model the one before named: answered without the LRU
  let lastModel = ''
  let lastWindow: number | undefined
  return (model) => {
    if (!model) return undefined
    if (model === lastModel) return lastWindow
    lastModel = model
    lastWindow = lookup(model)
    return lastWindow
  }

  function lookup(model: string): number | undefined {
    const hit = resolved.get(model)
    if (hit !== undefined) return hit > 0 ? hit : undefined
    let found = exact.get(model) ?? exact.get(model.toLowerCase())
    const candidates = modelCandidates(model)
    for (const c of candidates) if (found === undefined) found = exact.get(c)
    for (const c of candidates) for (const [p, v] of prefixes) if (found === undefined && c.startsWith(p)) found = v
    resolved.set(model, found ?? 0)
    return found
  }
}
