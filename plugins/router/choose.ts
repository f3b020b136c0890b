// cheapest-capable: among a list of candidate models, the ones a configured vendor serves and whose
// capabilities fit the request (context window, output limit, tools, images, JSON), then the
// complexity tier, then the lowest price for this request by the pricing table.
import { tokenFamily } from '../../core/tokens.ts'
import type { Mesh, MeshContext, ProtocolName, Vendor } from '../../core/types.ts'
import { capabilitiesOf, shortTokens, type ModelCapabilities, type ModelTier } from './capabilities.ts'
import { minimumTier, TIER_RANK } from './features.ts'
import type { CompiledOptions, RouteRequest, RouteTarget } from './options.ts'

/** a target resolved once per protocol: its vendor (undefined: none configured) and capabilities */
export interface Candidate {
  model: string
  vendor: string | undefined
  caps: ModelCapabilities | undefined
}

export interface Choice {
  chosen: Candidate
  /** capable candidates after the chosen one, cheapest first */
  rest: Candidate[]
  considered: number
  skipped: Array<{ model: string; why: string }>
  /** the tier the complexity rule asked for, when it was applied */
  tier?: ModelTier
  reason: string
}

const speaks = (v: Vendor, protocol: ProtocolName) =>
  v.protocol === protocol || v.protocol === 'any' || v.protocols?.includes(protocol) === true

/**
 * The vendor for a target: `vendor/model` names it; a bare model goes to a configured vendor that
 * serves it, one speaking the client's protocol first (no translation needed), as the core's
 * default route does.
 */
export function resolveTarget(
  mesh: Mesh,
  protocol: ProtocolName,
  target: RouteTarget,
  overrides: CompiledOptions['capabilities'],
): Candidate {
  const slash = target.indexOf('/')
  if (slash > 0 && mesh.vendors.has(target.slice(0, slash))) {
    const model = target.slice(slash + 1)
    return { model, vendor: target.slice(0, slash), caps: capabilitiesOf(model, overrides) }
  }
  let other: string | undefined
  for (const v of mesh.vendors.values()) {
    if (!v.handles(target)) continue
    if (speaks(v, protocol)) return { model: target, vendor: v.name, caps: capabilitiesOf(target, overrides) }
    other ??= v.name
  }
  return { model: target, vendor: other, caps: capabilitiesOf(target, overrides) }
}

/** why a candidate cannot take the request, or undefined when it can */
function unfit(mesh: Mesh, ctx: MeshContext, c: Candidate, req: RouteRequest): string | undefined {
  if (!c.vendor) return 'no configured vendor serves it'
  const caps = c.caps
  // unknown models (a local server's, say) are taken at their word; `capabilities` can describe them
  if (!caps) return undefined
  if (req.tools && !caps.tools) return 'no tools'
  if (req.images && !caps.vision) return 'no image input'
  if (req.json === 'object' && !caps.json) return 'no JSON mode'
  if (req.json === 'schema' && !caps.jsonSchema) return 'no JSON schema output'
  if (req.maxTokens !== undefined && req.maxTokens > caps.maxOutput)
    return `max output ${shortTokens(caps.maxOutput)} < ${req.maxTokens} asked`
  let need = req.inputTokens + (req.maxTokens ?? 0)
  // close to the window: count again with the candidate's own tokenizer (Claude's counts run higher)
  if (need > caps.contextWindow * 0.75 && tokenFamily(c.model) !== tokenFamily(ctx.route.model)) {
    need = mesh.tokens.estimateInput(ctx.prompt, c.model) + (req.maxTokens ?? 0)
  }
  if (need > caps.contextWindow) return `context ${shortTokens(caps.contextWindow)} < ${shortTokens(need)} needed`
  return undefined
}

function needs(req: RouteRequest): string[] {
  const out: string[] = []
  if (req.tools) out.push('tools')
  if (req.images) out.push('vision')
  if (req.json === 'object') out.push('json')
  if (req.json === 'schema') out.push('json schema')
  return out
}

/**
 * The cheapest capable candidate, or the reasons none fits. `list` is resolved for the client's
 * protocol; `complexity` false skips the tier.
 */
export function cheapestCapable(
  mesh: Mesh,
  ctx: MeshContext,
  req: RouteRequest,
  list: Candidate[],
  opts: CompiledOptions,
  complexity: boolean,
): Choice | { skipped: Choice['skipped'] } {
  const skipped: Choice['skipped'] = []
  const capable: Array<{ c: Candidate; usd: number }> = []
  const outputTokens = req.maxTokens ?? opts.assumedOutputTokens
  const usage = { inputTokens: req.inputTokens, outputTokens, cacheReadTokens: 0, cacheWriteTokens: 0 }
  for (const c of list) {
    const why = unfit(mesh, ctx, c, req)
    if (why) skipped.push({ model: c.model, why })
    else capable.push({ c, usd: mesh.pricing.cost(c.model, usage) })
  }
  if (!capable.length) return { skipped }
  // stable: equal prices keep the order the config lists them in
  capable.sort((a, b) => a.usd - b.usd)
  let eligible = capable
  let tier: ModelTier | undefined
  if (complexity && opts.complexity) {
    tier = minimumTier(ctx, req, opts.complexity)
    const min = TIER_RANK[tier]
    const rank = (c: Candidate) => TIER_RANK[c.caps?.tier ?? 'medium']
    eligible = capable.filter((x) => rank(x.c) >= min)
    // nothing that large: the largest there is
    if (!eligible.length) {
      const top = Math.max(...capable.map((x) => rank(x.c)))
      eligible = capable.filter((x) => rank(x.c) === top)
    }
  }
  const chosen = eligible[0]!.c
  const rest = [...eligible.slice(1), ...capable.filter((x) => !eligible.includes(x))].map((x) => x.c)
  const detail = [...needs(req), chosen.caps ? shortTokens(chosen.caps.contextWindow) : 'capabilities unknown']
  // said only when the tier passed over a cheaper capable model
  if (tier && chosen !== capable[0]!.c) detail.push(`${tier} request`)
  const reason = `cheapest-capable: ${list.length} candidate${list.length === 1 ? '' : 's'}, picked ${chosen.model} (${detail.join(', ')})`
  return { chosen, rest, considered: list.length, skipped, tier, reason }
}
