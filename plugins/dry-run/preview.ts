// What a dry run would have come to, read off the context after every hook ran: the route, the
// cache verdict, the estimate, the quota headers and the guards' verdicts. One object for the
// JSON preview route, one sentence-per-part text for the answer a client reads.
import type { DryRunState, GuardVerdict } from '../../core/dry-run.ts'
import type { CanonicalAnswer, MeshContext } from '../../core/types.ts'

export type Outcome = NonNullable<DryRunState['outcome']>

export interface Preview {
  dryRun: true
  id: string
  /** vendor: it would be sent; cache: answered from a cache; blocked / held: by a guard */
  outcome: Outcome
  identity: { team: string; user: string; tool: string }
  protocol: string
  requestedModel: string
  route: { vendor: string; model: string; reason?: string }
  cache: { status: string; similarity?: number; savedTokens?: number; savedUsd?: number }
  estimate: { inputTokens: number; maxOutputTokens?: number; inputUsd: number; maxUsd?: number }
  /** the X-AgentMesh-* headers the plugins set (quota, breaker, cache ...), as the real call would carry them */
  headers: Record<string, string>
  guards: GuardVerdict[]
  text: string
}

const usd = (n: number) => `$${n.toFixed(6)}`

function outcomeOf(ctx: MeshContext, verdicts: GuardVerdict[]): Outcome {
  // a cache hit ends the request before route-phase guards (approval) and vendors
  if (verdicts.some((v) => v.action === 'block')) return 'blocked'
  if (ctx.cache.status === 'exact' || ctx.cache.status === 'semantic') return 'cache'
  if (verdicts.length) return 'held'
  return 'vendor'
}

export function buildPreview(ctx: MeshContext, state: DryRunState): Preview {
  const model = ctx.route.model || ctx.prompt.model
  const input = Math.max(0, Math.round(ctx.usage.inputTokens || 0))
  const maxOut = ctx.prompt.maxTokens
  const price = (outputTokens: number) =>
    ctx.mesh.pricing.cost(model, { inputTokens: input, outputTokens, cacheReadTokens: 0, cacheWriteTokens: 0 })
  const hit = ctx.cache.status === 'exact' || ctx.cache.status === 'semantic'
  const headers: Record<string, string> = {}
  for (const k in ctx.headers) if (/^x-agentmesh-/i.test(k)) headers[k.toLowerCase()] = String(ctx.headers[k])
  const preview: Preview = {
    dryRun: true,
    id: ctx.id,
    outcome: outcomeOf(ctx, state.verdicts),
    identity: { team: ctx.identity.team, user: ctx.identity.user, tool: ctx.identity.tool },
    protocol: ctx.protocol,
    requestedModel: ctx.prompt.model,
    route: { vendor: ctx.route.vendor, model, ...(ctx.route.reason ? { reason: ctx.route.reason } : {}) },
    cache: {
      status: ctx.cache.status,
      ...(ctx.cache.similarity !== undefined ? { similarity: ctx.cache.similarity } : {}),
      ...(hit ? { savedTokens: ctx.cache.savedTokens ?? 0, savedUsd: ctx.cost.savedUsd } : {}),
    },
    estimate: {
      inputTokens: input,
      inputUsd: price(0),
      ...(maxOut !== undefined ? { maxOutputTokens: maxOut, maxUsd: price(maxOut) } : {}),
    },
    headers,
    guards: state.verdicts,
    text: '',
  }
  preview.text = previewText(preview)
  return preview
}

function quotaLine(h: Record<string, string>): string | undefined {
  const pct = h['x-agentmesh-quota-pct']
  if (pct === undefined) return undefined
  const limit = h['x-agentmesh-quota-limit']
  const warn = h['x-agentmesh-quota-warn']
  return `Quota: ${limit ? `${limit} at ` : ''}${pct}% after the call${warn ? ` (warning: ${warn})` : ''}.`
}

function runLine(h: Record<string, string>): string | undefined {
  const run = h['x-agentmesh-run-id']
  if (!run) return undefined
  return `Run ${run}: call ${h['x-agentmesh-run-calls'] ?? '?'}, ${h['x-agentmesh-run-cost-usd'] ? `$${h['x-agentmesh-run-cost-usd']} spent before it` : 'nothing spent yet'}.`
}

export function previewText(p: Preview): string {
  const parts: string[] = []
  const block = p.guards.find((g) => g.action === 'block')
  const hold = p.guards.find((g) => g.action === 'hold')
  if (block)
    parts.push(
      `Preview: this request would be refused by ${block.guard} (${block.status} ${block.type}): ${block.message}`,
    )
  else if (p.outcome === 'cache')
    parts.push(
      `Preview: this request would be answered from the ${p.cache.status} cache${p.cache.similarity !== undefined ? ` (similarity ${p.cache.similarity})` : ''}, saving ${p.cache.savedTokens ?? 0} tokens (${usd(p.cache.savedUsd ?? 0)}); no vendor would be called.`,
    )
  else if (hold)
    parts.push(
      `Preview: this request would be held by ${hold.guard} for a person's decision (${hold.type}): ${hold.message}`,
    )
  else
    parts.push(
      `Preview: this request would go to ${p.route.vendor} as ${p.route.model}${p.route.reason ? ` (${p.route.reason})` : ''}.`,
    )
  const out =
    p.estimate.maxOutputTokens !== undefined
      ? ` and up to ${p.estimate.maxOutputTokens} output tokens (at most ${usd(p.estimate.maxUsd ?? 0)} in all)`
      : ''
  parts.push(`Estimate: about ${p.estimate.inputTokens} input tokens (${usd(p.estimate.inputUsd)})${out}.`)
  if (p.outcome !== 'cache') parts.push(`Cache: ${p.cache.status}.`)
  const quota = quotaLine(p.headers)
  if (quota) parts.push(quota)
  const run = runLine(p.headers)
  if (run) parts.push(run)
  const others = p.guards.filter((g) => g !== block && g !== hold)
  for (const g of others)
    parts.push(`Also: ${g.guard} would ${g.action === 'block' ? 'refuse' : 'hold'} it (${g.type}).`)
  if (!p.guards.length) parts.push('Guards: none would stop it.')
  parts.push('Nothing was sent to a vendor, billed, cached or counted.')
  return parts.join(' ')
}

/** The preview as the answer the client's protocol renders (streamed if it asked to stream). */
export function previewAnswer(ctx: MeshContext, p: Preview): CanonicalAnswer {
  return {
    id: `preview-${ctx.id}`,
    model: p.route.model,
    text: p.text,
    toolCalls: [],
    stopReason: 'stop',
    // the estimate: the headers then show what the real call would cost (X-AgentMesh-Usage: estimated)
    usage: {
      inputTokens: p.estimate.inputTokens,
      outputTokens: 0,
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
      estimated: true,
    },
  }
}
