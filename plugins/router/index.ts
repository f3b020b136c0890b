// router: aliases (`model: 'fast'` -> candidates), rules (data or TypeScript functions of team,
// user, tool, protocol, model, prompt size, tools, images) and cheapest-capable choice among
// candidates (choose.ts), with the decision in X-AgentMesh-Route / -Route-Reason, a `route` event,
// ctx.state.route and the audit entry (which records ctx.route.reason).
//
// The decision is made in beforeRequest, as the first plugin (`enforce: 'pre'`), so that the quota
// reservation, the approval gate's estimate and a dry run's preview are taken for the model that
// will be called, not for an alias; the input estimate and its price are redone for that model.
// The headers and the event wait for the route phase: a cache hit or a refusal routed nothing.
import { isDryRun } from '../../core/dry-run.ts'
import { definePlugin } from '../../core/plugin.ts'
import { tokenFamily } from '../../core/tokens.ts'
import type { Identity, Mesh, MeshContext, MeshEvents, Plugin, ProtocolName } from '../../core/types.ts'
import { capabilitiesOf } from './capabilities.ts'
import { cheapestCapable, resolveTarget, type Candidate } from './choose.ts'
import { routeRequest } from './features.ts'
import {
  compileOptions,
  type CompiledRule,
  type RouteRequest,
  type RouterOptions,
  type RouteStrategy,
  type RouteTarget,
} from './options.ts'

export type { ModelCapabilities, ModelTier } from './capabilities.ts'
export { CAPABILITIES } from './capabilities.ts'
export type {
  ComplexityOptions,
  RouteMatch,
  RouteRequest,
  RouteRule,
  RouterOptions,
  RouteStrategy,
  RouteTarget,
} from './options.ts'

/** The router's decision on a request, published as ctx.state.route. */
export interface RouteDecision {
  /** the model the client asked for */
  requested: string
  vendor: string
  model: string
  /** the rule's name, `cheapest-capable: ...`, or both */
  reason: string
  rule?: string
  /** how many candidates were weighed (cheapest-capable only) */
  candidates?: number
  /** candidates left out, and why */
  skipped?: Array<{ model: string; why: string }>
  fallbacks?: Array<{ vendor: string; model: string }>
  strategy?: RouteStrategy
}

declare module '../../core/types.ts' {
  interface MeshState {
    route?: RouteDecision
  }
  interface MeshEvents {
    /** the router chose a vendor and model for a request that goes on to a vendor */
    route: {
      id: string
      identity: Identity
      requested: string
      vendor: string
      model: string
      reason: string
      rule?: string
      candidates?: number
      skipped?: Array<{ model: string; why: string }>
      fallbacks?: Array<{ vendor: string; model: string }>
    }
  }
}

// The imported functions every routed request calls, bound once: the CLI runs the proxy through
// jiti, where each call through an import reads a getter (about 0.15 µs a request for these two,
// a quarter of the hooks' cost in bench:proxy's "hooks alone" loop)
const requestOf = routeRequest
const dryRun = isDryRun

/** a refusal in the client's protocol: a config that routes to nothing, or no candidate that fits */
class RouteRefusal {
  constructor(
    public status: number,
    public type: string,
    public message: string,
  ) {}
}

export function router(options: RouterOptions = {}): Plugin {
  const opts = compileOptions(options, (m) => capabilitiesOf(m, {}))
  let mesh: Mesh
  // target lists resolved to vendors, per client protocol, keyed by the (compiled, stable) list
  // itself: vendors are registered in setup, after ours, so lists are resolved on first use
  const resolved = new Map<RouteTarget[], Partial<Record<ProtocolName, Candidate[]>>>()
  const pins = new Map<CompiledRule, RouteTarget[]>()

  function candidatesFor(ctx: MeshContext, targets: RouteTarget[]): Candidate[] {
    let byProtocol = resolved.get(targets)
    if (!byProtocol) resolved.set(targets, (byProtocol = {}))
    return (byProtocol[ctx.protocol] ??= targets.map((t) => resolveTarget(mesh, ctx.protocol, t, opts.capabilities)))
  }

  /** configured fallbacks: unconfigured vendors are left out (they could only fail) */
  function fallbacksFor(ctx: MeshContext, rule: CompiledRule): RouteDecision['fallbacks'] {
    const out: Array<{ vendor: string; model: string }> = []
    for (const c of candidatesFor(ctx, rule.fallbacks!)) if (c.vendor) out.push({ vendor: c.vendor, model: c.model })
    return out
  }

  function choose(
    ctx: MeshContext,
    req: RouteRequest,
    rule: CompiledRule | undefined,
    aliasTargets: RouteTarget[] | undefined,
  ): RouteDecision {
    const requested = ctx.prompt.model
    if (rule?.model) {
      let pin = pins.get(rule)
      if (!pin) pins.set(rule, (pin = [rule.model]))
      const c = candidatesFor(ctx, pin)[0]!
      if (!c.vendor)
        throw new RouteRefusal(
          500,
          'router_config_error',
          `router rule "${rule.name}" pins ${rule.model}, which no configured vendor serves; add its vendor to \`plugins\``,
        )
      // no spreads: this runs on every request a pinning rule matches (bench:proxy's router line)
      const d: RouteDecision = { requested, vendor: c.vendor, model: c.model, reason: rule.name, rule: rule.name }
      if (rule.fallbacks) d.fallbacks = fallbacksFor(ctx, rule)
      return d
    }
    const targets = rule?.candidates ?? aliasTargets
    if (!targets) {
      // a rule that only adds fallbacks: the client's model stays
      return {
        requested,
        vendor: ctx.route.vendor,
        model: ctx.route.model,
        reason: rule!.name,
        rule: rule!.name,
        ...(rule!.fallbacks ? { fallbacks: fallbacksFor(ctx, rule!) } : {}),
      }
    }
    const list = candidatesFor(ctx, targets)
    const r = cheapestCapable(mesh, ctx, req, list, opts, rule?.complexity ?? true)
    if (!('chosen' in r)) {
      const why = r.skipped.map((s) => `${s.model} (${s.why})`).join(', ')
      throw new RouteRefusal(
        400,
        'invalid_request_error',
        `no model ${rule ? `of router rule "${rule.name}"` : `behind "${requested.slice(0, 64)}"`} can take this request: ${why}`,
      )
    }
    const fallbacks = rule?.fallbacks
      ? fallbacksFor(ctx, rule)
      : r.rest.slice(0, opts.maxFallbacks).map((c) => ({ vendor: c.vendor!, model: c.model }))
    return {
      requested,
      vendor: r.chosen.vendor!,
      model: r.chosen.model,
      reason: rule ? `${rule.name}; ${r.reason}` : r.reason,
      ...(rule ? { rule: rule.name } : {}),
      candidates: r.considered,
      ...(r.skipped.length ? { skipped: r.skipped } : {}),
      ...(fallbacks?.length ? { fallbacks } : {}),
    }
  }

  function beforeRequest(ctx: MeshContext): void {
    if (ctx.operation !== 'chat') return
    const aliasTargets = opts.aliases.get(ctx.prompt.model)
    // a client that names a concrete model keeps it unless a rule for it (its team) says otherwise
    const rules = aliasTargets ? opts.rules : opts.concreteRules
    if (!aliasTargets && !rules.length) return
    const req = requestOf(ctx, aliasTargets !== undefined)
    let rule: CompiledRule | undefined
    for (const r of rules) {
      if (r.test(req)) {
        rule = r
        break
      }
    }
    if (!rule && !aliasTargets) return
    let d: RouteDecision
    try {
      d = choose(ctx, req, rule, aliasTargets)
    } catch (err) {
      if (!(err instanceof RouteRefusal)) throw err
      ctx.response = { kind: 'error', status: err.status, type: err.type, message: err.message }
      return
    }
    const strategy = rule?.strategy ?? opts.strategy
    if (strategy) d.strategy = strategy
    const before = ctx.route.model
    const route: MeshContext['route'] = { vendor: d.vendor, model: d.model, reason: d.reason }
    if (d.fallbacks?.length) route.fallbacks = d.fallbacks
    if (strategy) route.strategy = strategy
    ctx.route = route
    ctx.state.route = d
    if (d.model !== before) reestimate(ctx, before)
  }

  /** the estimate the quota reserves and a preview shows, for the model that will be called */
  function reestimate(ctx: MeshContext, before: string): void {
    if (tokenFamily(before) !== tokenFamily(ctx.route.model)) {
      ctx.usage = { ...ctx.usage, inputTokens: mesh.tokens.estimateInput(ctx.prompt, ctx.route.model), estimated: true }
    }
    ctx.cost.usd = mesh.pricing.cost(ctx.route.model, ctx.usage)
  }

  /** `vendor/model` for X-AgentMesh-Route, made once per target rather than per request */
  const targetIds = new Map<string, Map<string, string>>()
  function targetId(vendor: string, model: string): string {
    let byModel = targetIds.get(vendor)
    if (!byModel) targetIds.set(vendor, (byModel = new Map()))
    let id = byModel.get(model)
    if (id === undefined) {
      id = `${vendor}/${model}`
      // client-named models are unbounded: only a bounded number is remembered
      if (byModel.size < 256) byModel.set(model, id)
    }
    return id
  }

  function route(ctx: MeshContext): void {
    if (ctx.operation !== 'chat') return
    const d = ctx.state.route
    // lower case, as the core writes them: no per-request toLowerCase copy of the names
    ctx.headers['x-agentmesh-route'] = targetId(ctx.route.vendor, ctx.route.model)
    ctx.headers['x-agentmesh-route-reason'] = ctx.route.reason ?? 'requested model'
    // a dry run tells no dashboard (as every plugin with side effects)
    if (!d || dryRun(ctx)) return
    const event: MeshEvents['route'] = {
      id: ctx.id,
      identity: ctx.identity,
      requested: d.requested,
      vendor: ctx.route.vendor,
      model: ctx.route.model,
      reason: d.reason,
    }
    if (d.rule) event.rule = d.rule
    if (d.candidates !== undefined) event.candidates = d.candidates
    if (d.skipped) event.skipped = d.skipped
    if (d.fallbacks) event.fallbacks = d.fallbacks
    ctx.mesh.emit('route', event)
  }

  return definePlugin({
    name: 'router',
    enforce: 'pre',
    options: { ...options } as Record<string, unknown>,
    setup(m) {
      mesh = m
      resolved.clear()
      pins.clear()
      targetIds.clear()
    },
    hooks: { beforeRequest, route },
  })
}

export default router
