// After the call: the reservation taken before it becomes what the vendor billed, and the
// usage-report counters (requests, cache hits, savings) move.
import * as countersModule from '../../core/counters.ts'
import type { CounterEntry } from '../../core/counters.ts'
import * as pricingModule from '../../core/pricing.ts'
import type { Mesh, MeshContext } from '../../core/types.ts'
import type { Check, UsageKeys } from './plan.ts'
import * as unitsModule from './units.ts'

// local copies of imported bindings: see reservation.ts (jiti reads imports through a Proxy)
const { hasBatch, hasSyncBatch } = countersModule
const { totalTokens } = pricingModule
const { MICRO } = unitsModule

/** What beforeRequest took on the token and USD counters, to be corrected afterwards. */
export interface Reservation {
  tok: Check[]
  usd: Check[]
  tokenDelta: number
  usdDelta: number
  usage: UsageKeys[]
}

/**
 * several increments: one round trip when the counters can batch; none (and no promise) with
 * memory counters, so the afterResponse phase can stay synchronous
 */
export function addAll(mesh: Mesh, entries: CounterEntry[]): Promise<void> | undefined {
  const counters = mesh.counters
  if (hasSyncBatch(counters)) {
    counters.incrManySync(entries)
    return undefined
  }
  if (hasBatch(counters)) return counters.incrMany(entries).then(() => {})
  return Promise.all(entries.map((e) => counters.incr(e.key, e.delta, e.ttl))).then(() => {})
}

export function settle(mesh: Mesh, ctx: MeshContext, r: Reservation): Promise<void> | undefined {
  const hit = ctx.cache.status === 'exact' || ctx.cache.status === 'semantic'
  const model = ctx.answer?.model || ctx.route.model || ctx.prompt.model
  // what the vendor will bill: actual usage when reported; an aborted stream still pays for what
  // it read (the core keeps at least the input estimate); no answer at all (upstream error,
  // another plugin answered) costs nothing
  const billed = hit ? false : !ctx.usage.estimated || !!ctx.aborted
  const tokens = billed ? Math.max(0, Math.round(totalTokens(model, ctx.usage))) : 0
  const micro = billed ? Math.max(0, Math.round((ctx.cost.usd || 0) * MICRO)) : 0
  const entries: CounterEntry[] = []
  if (tokens !== r.tokenDelta)
    for (const c of r.tok) entries.push({ key: c.key, delta: tokens - r.tokenDelta, ttl: c.ttl })
  if (micro !== r.usdDelta) for (const c of r.usd) entries.push({ key: c.key, delta: micro - r.usdDelta, ttl: c.ttl })
  const savedTokens = hit ? Math.round(ctx.cache.savedTokens ?? 0) : 0
  const savedMicro = hit ? Math.round((ctx.cost.savedUsd || 0) * MICRO) : 0
  for (const u of r.usage) {
    entries.push({ key: u.req, delta: 1, ttl: u.ttl })
    if (hit) {
      entries.push({ key: u.hit, delta: 1, ttl: u.ttl })
      if (savedTokens) entries.push({ key: u.stok, delta: savedTokens, ttl: u.ttl })
      if (savedMicro) entries.push({ key: u.susd, delta: savedMicro, ttl: u.ttl })
    }
  }
  return addAll(mesh, entries)
}
