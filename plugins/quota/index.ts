// Budgets that hold under load and across instances. Before the call a reservation (estimated
// input + max_tokens, and its price) is taken on every applicable counter in one atomic step
// (reservation.ts; mesh.counters.reserve: a Map in one process, a Lua script on redis); after it,
// the reservation is settled to what the vendor reported, also when the stream was aborted or the
// upstream failed (settlement.ts). Nothing is ever granted automatically: headroom comes only from
// an admin's grant (grants.ts, through routes.ts or commands.ts). Reports: report.ts.
import { definePlugin } from '../../core/plugin.ts'
import type { MeshContext, Plugin } from '../../core/types.ts'
import { quotaCommands } from './commands.ts'
import { createGrantStore } from './grants.ts'
import { LIMIT_KINDS, resolveQuotaOptions, type QuotaOptions } from './options.ts'
import { createPlanner, type QuotaRuntime } from './plan.ts'
import { createReserver } from './reservation.ts'
import { addQuotaRoutes } from './routes.ts'
import { settle, type Reservation } from './settlement.ts'

export type { QuotaLimits, QuotaOptions } from './options.ts'
export type { QuotaDecision } from './reservation.ts'

export function quota(options: QuotaOptions = {}): Plugin {
  // validated now, so a bad config fails at load naming the field; again in setup with the CLI flags.
  // mesh, grants and planner are filled in by setup, before any hook or command runs.
  const rt = { opts: resolveQuotaOptions(options) } as QuotaRuntime
  const reservations = new WeakMap<MeshContext, Reservation>()
  const beforeRequest = createReserver(rt, reservations)

  // no async wrapper: settle returns a promise only when the counters answer later (redis)
  function afterResponse(ctx: MeshContext) {
    const r = reservations.get(ctx)
    if (!r) return
    reservations.delete(ctx)
    return settle(rt.mesh, ctx, r)
  }

  return definePlugin({
    name: 'quota',
    options: { ...options, ...(options.adminToken ? { adminToken: '(set)' } : {}) } as Record<string, unknown>,
    setup(m) {
      rt.mesh = m
      rt.opts = resolveQuotaOptions(options, m.config.quota)
      rt.planner = createPlanner(rt.opts)
      rt.grants = createGrantStore(m.storage, rt.opts.grantsCacheMs)
      if (m.mode === 'serve') addQuotaRoutes(rt)
    },
    hooks: { beforeRequest, afterResponse },
    commands: quotaCommands(() => rt),
  })
}

export { LIMIT_KINDS }
export default quota
