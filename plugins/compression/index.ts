// compression: makes the prompt smaller when a budget runs low, when it would not fit the model's
// context window, or when a rule asks. Runs in `route` (enforce 'post', after routers and before
// prompt-cache), so the caches looked up and will store under the key of the request as the client
// sent it. The check that decides whether to act reads three values already on the context; the
// body is only walked when the plugin acts.
import { definePlugin } from '../../core/plugin.ts'
import { protocols } from '../../core/protocols/index.ts'
import { SLICED_PARSE_CHARS } from '../../core/protocols/shared.ts'
import { Slicer } from '../../core/slicer.ts'
import type { MeshContext, Plugin } from '../../core/types.ts'
import {
  compressBody,
  createJournal,
  type CompressResult,
  type ResolvedStrategies,
  type StrategyName,
} from './compress.ts'
import { resolveOptions, type CompressionOptions, type ResolvedOptions } from './options.ts'
import { SLICE_MS } from './pace.ts'
import { createSummariser } from './summary.ts'
import { createWindowLookup } from './windows.ts'

export type { CompressionOptions, CompressionRule } from './options.ts'
export { compressBody, type CompressResult } from './compress.ts'
export { CONTEXT_WINDOWS, createWindowLookup } from './windows.ts'

export type CompressionTrigger = 'budget' | 'overflow' | 'rule'

/** What the plugin did to a request, published as ctx.state.compression (the audit entry keeps the sizes). */
export interface CompressionState {
  /** estimated input tokens of the request as the client sent it, and as it went upstream */
  before: number
  after: number
  strategies: StrategyName[]
  triggers: CompressionTrigger[]
  /** the size aimed at, and whether it was reached */
  target: number
  met: boolean
}

declare module '../../core/types.ts' {
  interface MeshState {
    compression?: CompressionState
  }
  interface MeshEvents {
    compressed: {
      id: string
      identity: MeshContext['identity']
      model: string
      before: number
      after: number
      strategies: StrategyName[]
      triggers: CompressionTrigger[]
      met: boolean
    }
  }
}

interface Decision {
  target: number
  triggers: CompressionTrigger[]
  strategies: ResolvedStrategies
}

const matches = (m: string | RegExp | Array<string | RegExp> | undefined, v: string): boolean =>
  m === undefined || (Array.isArray(m) ? m.some((x) => matches(x, v)) : typeof m === 'string' ? m === v : m.test(v))

/** Whether to act, and to what size: cheap (no body walk, no allocation unless it acts), since it runs on every request. */
function decide(
  o: ResolvedOptions,
  windowOf: (model: string) => number | undefined,
  ctx: MeshContext,
): Decision | undefined {
  const before = ctx.usage.inputTokens
  let d: Decision | undefined
  const act = (trigger: CompressionTrigger, target: number) => {
    d ??= { target: Infinity, triggers: [], strategies: o.strategies }
    d.target = Math.max(0, Math.min(d.target, target))
    d.triggers.push(trigger)
  }
  // the quota's pct counts this request's estimated input as spent: what is left if it goes as is
  const pct = ctx.state.quota?.pct
  if (pct !== undefined && o.budgetRemainingPct !== false && 100 - pct < o.budgetRemainingPct)
    act('budget', Math.floor(before * o.budgetTargetRatio))
  if (o.overflow) {
    const window = windowOf(ctx.route.model || ctx.prompt.model)
    const out = ctx.prompt.maxTokens ?? o.reserveOutputTokens
    // the estimate is calibrated, not the vendor's count: keep 2% of the window in hand
    if (window !== undefined && before + out > window * 0.98) act('overflow', Math.floor(window * 0.98) - out)
  }
  for (let i = 0; i < o.rules.length; i++) {
    const r = o.rules[i]!
    const id = ctx.identity
    if (
      !matches(r.team, id.team) ||
      !matches(r.user, id.user) ||
      !matches(r.tool, id.tool) ||
      !matches(r.model, ctx.route.model || ctx.prompt.model)
    )
      continue
    if (r.when && !r.when(ctx)) continue
    act('rule', Math.floor(before * r.targetRatio))
    if (r.strategies) d!.strategies = r.strategies
    break
  }
  return d
}

export function compression(options: CompressionOptions = {}): Plugin {
  const o = resolveOptions(options)
  const windowOf = createWindowLookup(o.contextWindows)
  const summariser = o.summary ? createSummariser(o.summary) : undefined

  async function compress(ctx: MeshContext, d: Decision): Promise<void> {
    const model = ctx.route.model || ctx.prompt.model
    const adapter = protocols[ctx.protocol]
    const parseOpts = { pathModel: ctx.prompt.model, stream: ctx.prompt.stream }
    // a body of tens of thousands of messages is read in slices (the adapter's parse took 45-75 ms in one go)
    const large = (ctx.request.rawBody?.length ?? 0) > SLICED_PARSE_CHARS
    const parse = (body: any) =>
      large ? adapter.parseSliced(body, parseOpts, new Slicer(SLICE_MS)) : adapter.parse(body, parseOpts)
    const measure = (body: any) => {
      const p = parse(body)
      // a large prompt's estimate gives the loop back too (novel text costs the tokenizer 2-4 µs a character)
      return p instanceof Promise
        ? p.then((prompt) => ctx.mesh.tokens.estimateInputAsync(prompt, model))
        : ctx.mesh.tokens.estimateInput(p, model)
    }
    // the body as the earlier plugins left it (a guard may have redacted it: never re-read rawBody),
    // to go back to if compression fails half way: a failed optimisation must not fail the request
    const journal = createJournal(ctx.request.body)
    let r: CompressResult
    try {
      r = await compressBody({
        protocol: ctx.protocol,
        body: ctx.request.body,
        before: ctx.usage.inputTokens,
        target: d.target,
        measure,
        count: (t) => ctx.mesh.tokens.count(t, model),
        strategies: d.strategies,
        mustFit: d.triggers.includes('overflow'),
        summarise: summariser && ((transcript) => summariser.summarise(ctx, transcript)),
        journal,
        chars: ctx.request.rawBody?.length,
      })
    } catch (err) {
      journal.restore()
      ctx.mesh.log.warn(`compression: failed, the request goes uncompressed: ${(err as Error).message}`, { id: ctx.id })
      return
    }
    if (!r.applied.length) return
    ctx.request.dirty = true
    // the canonical view follows the body (what went upstream); flags the core set stay
    const { stateful, noCache } = ctx.prompt
    ctx.prompt = {
      ...(await parse(ctx.request.body)),
      ...(stateful ? { stateful } : {}),
      ...(noCache ? { noCache } : {}),
    }
    ctx.usage = { ...ctx.usage, inputTokens: r.after }
    ctx.cost.usd = ctx.mesh.pricing.cost(model, ctx.usage)
    ctx.headers['X-AgentMesh-Compressed'] = `${r.before}->${r.after}`
    ctx.headers['X-AgentMesh-Compression'] = r.applied.join(',')
    ctx.state.compression = {
      before: r.before,
      after: r.after,
      strategies: r.applied,
      triggers: d.triggers,
      target: d.target,
      met: r.met,
    }
    ctx.mesh.emit('compressed', {
      id: ctx.id,
      identity: ctx.identity,
      model,
      before: r.before,
      after: r.after,
      strategies: r.applied,
      triggers: d.triggers,
      met: r.met,
    })
    if (!r.met)
      ctx.mesh.log.debug('compression: target not reached', {
        id: ctx.id,
        before: r.before,
        after: r.after,
        target: d.target,
      })
  }

  return definePlugin({
    name: 'compression',
    enforce: 'post',
    options: { ...options } as Record<string, unknown>,
    hooks: {
      route(ctx) {
        if (ctx.operation !== 'chat' || (summariser && summariser.isOwn(ctx))) return
        const d = decide(o, windowOf, ctx)
        if (d) return compress(ctx, d)
      },
    },
  })
}

export default compression
