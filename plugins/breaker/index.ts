// breaker: a circuit breaker for agent runs. A run (run-id.ts) gets per-run budgets (calls,
// tokens, USD, wall time) and loop detection (the same tool call again and again in its transcript,
// the same answer in a row, the same body within a window); a run that trips gets a 429
// (agent_loop_detected or run_budget_exceeded) in the client's protocol until an admin resets it
// (`agentmesh runs reset ID`, the admin API). State is shared through mesh.counters and storage,
// so every instance on one redis stops the same run at the same limit. Every call of a run carries
// X-AgentMesh-Run-Id, -Run-Calls and -Run-Cost-USD (spent by the run before this call).
import { definePlugin } from '../../core/plugin.ts'
import type { MeshContext, Plugin } from '../../core/types.ts'
import { breakerCommands } from './commands.ts'
import { createGuard, RunMeta, type BreakerRuntime } from './guard.ts'
import { DEFAULT_LIMITS, validateBreakerOptions, type BreakerOptions } from './options.ts'
import { addBreakerRoutes } from './routes.ts'
import { MICRO, RunStore } from './state.ts'

export type { BreakerOptions, BreakerRule, LoopLimits, RunLimits } from './options.ts'
export type { BreakerMeta } from './guard.ts'

const DAY = 24 * 3600

export function breaker(options: BreakerOptions = {}): Plugin {
  validateBreakerOptions(options)
  const wall = [
    options.limits?.wallSeconds,
    ...Object.values(options.teams ?? {}).map((t) => t.limits?.wallSeconds),
    ...(options.rules ?? []).map((r) => r.limits?.wallSeconds),
    DEFAULT_LIMITS.wallSeconds,
  ]
  // state outlives the longest wall-time limit, so that limit can be seen
  const ttlSeconds = Math.max(options.ttlSeconds ?? DAY, ...wall.map((w) => (typeof w === 'number' ? w + 3600 : 0)))
  // store is set in setup, before any hook or command runs
  const rt = { opts: options, warnAt: options.warnAt ?? 80 } as BreakerRuntime
  const beforeRequest = createGuard(rt)

  // no async wrapper: the counters' own promise, when there is something to settle
  function afterResponse(ctx: MeshContext) {
    const meta = ctx.state.breaker
    // a call the breaker took (not a dry run's, not one it refused)
    const run = meta instanceof RunMeta ? meta.settle() : undefined
    if (!run) return
    const hit = ctx.cache.status === 'exact' || ctx.cache.status === 'semantic'
    // what the vendor billed, as quota settles it: an estimate alone was never spent
    const billed = !hit && (!ctx.usage.estimated || !!ctx.aborted)
    const tokens = billed
      ? Math.round(
          ctx.usage.inputTokens + ctx.usage.outputTokens + ctx.usage.cacheReadTokens + ctx.usage.cacheWriteTokens,
        )
      : 0
    const micro = billed ? Math.round((ctx.cost.usd || 0) * MICRO) : 0
    // refused after the breaker took the call (quota, approval, a loop found now): not an iteration
    const giveBack = !hit && ctx.answer === undefined && ctx.upstream === undefined && !ctx.aborted
    return rt.store.settle(run, tokens, micro, giveBack)
  }

  return definePlugin({
    // no enforce: listed first in the presets, so a run's headers go on the responses of the
    // guards after it and its call is counted before quota reserves; a user's own plugins still come first
    name: 'breaker',
    options: { ...options, ...(options.adminToken ? { adminToken: '(set)' } : {}) } as Record<string, unknown>,
    setup(mesh) {
      rt.store = new RunStore(mesh, ttlSeconds)
      if (mesh.mode === 'serve') addBreakerRoutes(mesh, rt.store, options.adminToken)
    },
    hooks: { beforeRequest, afterResponse },
    commands: breakerCommands(() => rt.store),
  })
}

export default breaker
