// Before the call: reserve the request's worst case (estimated input + max_tokens, and its price)
// on every applicable counter, all or none, in one atomic step where the counters allow it
// (mesh.counters.reserveMany: one Lua script on redis). A refused reservation is a 429 that says
// which limit, by how much and when it resets; an accepted one may carry a warning.
import { LRUCache } from 'lru-cache'
import * as countersModule from '../../core/counters.ts'
import * as dryRunModule from '../../core/dry-run.ts'
import type { MeshContext } from '../../core/types.ts'
import type { Grant } from './grants.ts'
import type { Check, QuotaRuntime } from './plan.ts'
import { addAll, type Reservation } from './settlement.ts'
import { scopeRecordKey } from './report.ts'
import * as unitsModule from './units.ts'
import { humanDuration } from './windows.ts'

// jiti, which runs this TypeScript without a build step, reads an imported binding through a Proxy
// on every use; the request path reads these copies, taken once at load (measured: the quota hooks
// cost ~1 µs more per request when split into files without them)
const { hasBatch, hasSyncBatch } = countersModule
const { isDryRun, refuseOrRecord } = dryRunModule
const { fmt, KIND_LABEL, MICRO, round1, scopeLabel, toUnit, UNIT, UNLIMITED } = unitsModule

/** The quota decision on a request, published as ctx.state.quota (the audit log records it). */
export interface QuotaDecision {
  decision: 'allow' | 'warn' | 'block' | 'soft'
  /** the most constrained limit, e.g. "team:eng tokensPerDay" */
  limit?: string
  pct?: number
}

declare module '../../core/types.ts' {
  interface MeshState {
    quota?: QuotaDecision
  }
  interface MeshEvents {
    /** a request passed the warning percentage of a limit (once per limit and window in a process) */
    quota_warn: { id: string; scope: string; limit: string; used: number; max: number; pct: number }
    /** a request was refused by a quota (429) */
    quota_block: { id: string; scope: string; limit: string; used: number; max: number }
  }
}

/** counters that move by the same amount: requests, tokens or micro-USD */
interface Group {
  checks: Check[]
  /** what is reserved now */
  delta: number
  /** the part of delta that is sure to be spent, for the percentage shown */
  certain: number
}

/** the counters' values after (ok) or instead of (refused) taking a group */
interface GroupResult {
  values: number[]
  ok: boolean
}

/** where one limited counter stands for this request */
interface CounterState {
  c: Check
  used: number
  shown: number
  pct: number
  blocking: boolean
  overStop: boolean
}

interface Taken {
  results: GroupResult[]
  /** index of the refused group, -1 when every group was taken */
  refused: number
  /** groups taken before the refusal, to give back (group-by-group counters only) */
  taken: Group[]
}

interface RequestSize {
  input: number
  maxOut: number
  tokenDelta: number
  usdDelta: number
  inputUsd: number
}

function requestSize(rt: QuotaRuntime, ctx: MeshContext): RequestSize {
  const model = ctx.route.model || ctx.prompt.model
  const input = Math.max(0, Math.round(ctx.usage.inputTokens || 0))
  const maxOut = ctx.operation === 'embeddings' ? 0 : (ctx.prompt.maxTokens ?? rt.opts.defaultMaxTokens)
  const price = (outputTokens: number) =>
    rt.mesh.pricing.cost(model, { inputTokens: input, outputTokens, cacheReadTokens: 0, cacheWriteTokens: 0 })
  return {
    input,
    maxOut,
    // at least 1: a limit of 0 must refuse even an empty request
    tokenDelta: Math.max(1, input + maxOut),
    usdDelta: Math.max(1, Math.ceil(price(maxOut) * MICRO)),
    inputUsd: Math.ceil(price(0) * MICRO),
  }
}

/** take every group or none */
const limitFor = (rt: QuotaRuntime) => {
  const soft = rt.opts.mode === 'soft'
  return (c: Check) => (soft || c.stop === Infinity ? UNLIMITED : c.stop)
}

const batchEntries = (groups: Group[], limitOf: (c: Check) => number) =>
  groups.flatMap((g) => g.checks.map((c) => ({ key: c.key, delta: g.delta, limit: limitOf(c), ttl: c.ttl })))

/** one atomic step's answer for all limits, split back into the groups */
function batchTaken(groups: Group[], r: { ok: boolean; values: number[] }, limitOf: (c: Check) => number): Taken {
  let off = 0
  const results = groups.map((g) => {
    const values = r.values.slice(off, off + g.checks.length)
    off += g.checks.length
    return { ok: r.ok, values }
  })
  const refused = r.ok
    ? -1
    : Math.max(
        0,
        groups.findIndex((g, gi) => g.checks.some((c, i) => (results[gi]!.values[i] ?? 0) + g.delta > limitOf(c))),
      )
  return { results, refused, taken: [] }
}

/** takeAll on counters that answer at once (memory, file-backed): no promise; undefined otherwise */
function takeAllSync(rt: QuotaRuntime, groups: Group[]): Taken | undefined {
  const counters = rt.mesh.counters
  if (!hasSyncBatch(counters)) return undefined
  const limitOf = limitFor(rt)
  return batchTaken(groups, counters.reserveManySync(batchEntries(groups, limitOf)), limitOf)
}

async function takeAll(rt: QuotaRuntime, groups: Group[]): Promise<Taken> {
  const limitOf = limitFor(rt)
  const counters = rt.mesh.counters
  // one atomic step for all limits (one redis round trip)
  if (hasBatch(counters)) return batchTaken(groups, await counters.reserveMany(batchEntries(groups, limitOf)), limitOf)
  // group by group; a refused group gives back what the earlier ones took
  const results: GroupResult[] = []
  const taken: Group[] = []
  for (const g of groups) {
    if (!g.checks.length) {
      results.push({ ok: true, values: [] })
      continue
    }
    const r = await counters.reserve(
      g.checks.map((c) => c.key),
      g.delta,
      g.checks.map(limitOf),
      g.checks.map((c) => c.ttl),
    )
    results.push(r)
    if (!r.ok) break
    taken.push(g)
  }
  const refused = results.findIndex((r) => !r.ok)
  return { results, refused, taken: refused < 0 ? [] : taken }
}

/** a dry run: what takeAll would answer, read without taking anything */
async function peekAll(rt: QuotaRuntime, groups: Group[]): Promise<Taken> {
  const soft = rt.opts.mode === 'soft'
  const limitOf = (c: Check) => (soft || c.stop === Infinity ? UNLIMITED : c.stop)
  const values = await Promise.all(groups.map((g) => Promise.all(g.checks.map((c) => rt.mesh.counters.get(c.key)))))
  const ok = groups.every((g, gi) => g.checks.every((c, i) => values[gi]![i]! + g.delta <= limitOf(c)))
  // as reserve answers: the values after taking when every group fits, before it otherwise
  const results = groups.map((g, gi) => ({ ok, values: ok ? values[gi]!.map((v) => v + g.delta) : values[gi]! }))
  const refused = ok ? -1 : groups.findIndex((g, gi) => g.checks.some((c, i) => values[gi]![i]! + g.delta > limitOf(c)))
  return { results, refused, taken: [] }
}

function counterStates(groups: Group[], results: GroupResult[]): CounterState[] {
  const states: CounterState[] = []
  groups.forEach((g, gi) => {
    const r = results[gi]
    if (!r) return
    g.checks.forEach((c, i) => {
      if (c.limit === Infinity) return
      const v = r.values[i] ?? 0
      const used = r.ok ? v - g.delta : v
      const shown = r.ok ? used + g.certain : used
      states.push({
        c,
        used,
        shown,
        pct: c.limit > 0 ? (shown / c.limit) * 100 : 100,
        blocking: !r.ok && used + g.delta > c.stop,
        overStop: used + g.delta > c.stop,
      })
    })
  })
  return states
}

function setHeaders(ctx: MeshContext, top: { c: Check; shown: number; pct: number } | undefined) {
  if (!top) {
    ctx.headers['X-AgentMesh-Quota-Pct'] = '0.0'
    ctx.headers['X-AgentMesh-Quota-Remaining'] = 'unlimited'
    return
  }
  const unit = UNIT[top.c.kind]
  const remaining = Math.max(0, top.c.stop - top.shown)
  ctx.headers['X-AgentMesh-Quota-Pct'] = round1(top.pct).toFixed(1)
  ctx.headers['X-AgentMesh-Quota-Remaining'] =
    unit === 'usd' ? (remaining / MICRO).toFixed(6) : String(Math.floor(remaining))
  ctx.headers['X-AgentMesh-Quota-Limit'] = `${top.c.scope.name} ${top.c.kind}`
}

function blockMessage(first: CounterState, g: Group, size: RequestSize, resetAt: number, now: number): string {
  const unit = UNIT[first.c.kind]
  const need =
    unit === 'tokens'
      ? ` (this request reserves up to ${fmt('tokens', g.delta)}: ${fmt('tokens', size.input)} estimated input + ${fmt('tokens', size.maxOut)} max output)`
      : unit === 'usd'
        ? ` (this request reserves up to ${fmt('usd', g.delta)})`
        : ''
  const scope = first.c.scope.name
  const grantHint = scope === 'global' ? 'agentmesh grant --global' : `agentmesh grant --${scope.replace(':', ' ')}`
  return (
    `quota exceeded: ${scopeLabel(scope)} ${KIND_LABEL[first.c.kind]}: ${fmt(unit, first.used)} of ${fmt(unit, first.c.limit)} used${need}. ` +
    `Resets in ${humanDuration(resetAt - now)} (${new Date(resetAt).toISOString()}); an admin can add headroom with \`${grantHint} ${unit === 'usd' ? '--usd N' : '--tokens N'} --for 24h\`.`
  )
}

// One closure over 80 lines: its short functions (noteScope, refuse, admit, prepare, decide,
// reserve) share the per-process sets of warned limits and recorded scopes.
export function createReserver(rt: QuotaRuntime, reservations: WeakMap<MeshContext, Reservation>) {
  // one quota_warn event per limit and window in this process, not one per request
  const warned = new LRUCache<string, true>({ max: 10_000 })
  const knownScopes = new Set<string>()

  function noteScope(name: string) {
    if (knownScopes.has(name)) return
    knownScopes.add(name)
    // the list of scopes `usage` reports on; one write per scope per process
    void rt.mesh.storage.setItem(scopeRecordKey(name), { scope: name }).catch((err) => {
      knownScopes.delete(name)
      rt.mesh.log.warn(`quota: cannot record scope ${name}: ${(err as Error).message}`)
    })
  }

  /** the 429: gives back what was taken, says which limit and when it resets */
  async function refuse(
    ctx: MeshContext,
    t: Taken,
    groups: Group[],
    states: CounterState[],
    top: CounterState | undefined,
    size: RequestSize,
    now: number,
    blockedKeys: Array<{ key: string; ttl: number }>,
  ) {
    const mesh = rt.mesh
    await Promise.all(t.taken.map((g) => Promise.all(g.checks.map((c) => mesh.counters.incr(c.key, -g.delta, c.ttl)))))
    const blocking = states.filter((s) => s.blocking)
    const first = blocking[0] ?? top!
    const resetAt = Math.max(...blocking.map((s) => s.c.window.resetAt), first.c.window.resetAt)
    const retryAfter = Math.max(1, Math.ceil((resetAt - now) / 1000))
    const message = blockMessage(first, groups[t.refused]!, size, resetAt, now)
    // the SDKs retry a 429 after Retry-After, however long: past a minute (a day's or month's
    // budget) that is a program asleep for hours, so they are told not to retry at all
    const headers: Record<string, string> = { 'Retry-After': String(retryAfter) }
    if (retryAfter > 60) headers['x-should-retry'] = 'false'
    refuseOrRecord(ctx, 'quota', { kind: 'error', status: 429, type: 'quota_exceeded', message, headers })
    ctx.state.quota = {
      decision: 'block',
      limit: `${first.c.scope.name} ${first.c.kind}`,
      pct: round1(first.pct),
    } satisfies QuotaDecision
    setHeaders(ctx, first)
    // a dry run counts no block and tells no dashboard
    if (isDryRun(ctx)) return
    for (const s of blocking)
      mesh.emit('quota_block', {
        id: ctx.id,
        scope: s.c.scope.name,
        limit: s.c.kind,
        used: toUnit(s.c.kind, s.used),
        max: toUnit(s.c.kind, s.c.limit),
      })
    addAll(
      mesh,
      blockedKeys.map((u) => ({ key: u.key, delta: 1, ttl: u.ttl })),
    )?.catch(() => {})
  }

  /** the decision, headers and warnings of a request that got its reservation */
  function admit(ctx: MeshContext, states: CounterState[], top: CounterState | undefined) {
    const soft = rt.opts.mode === 'soft'
    const warnings = states.filter((s) => s.pct >= rt.opts.warnAt || s.overStop)
    const softOver = soft && states.some((s) => s.overStop)
    const decision: QuotaDecision['decision'] = softOver ? 'soft' : warnings.length ? 'warn' : 'allow'
    ctx.state.quota = {
      decision,
      ...(top ? { limit: `${top.c.scope.name} ${top.c.kind}`, pct: round1(top.pct) } : {}),
    } satisfies QuotaDecision
    setHeaders(ctx, top)
    if (!warnings.length) return
    const w = warnings.reduce((a, b) => (b.pct > a.pct ? b : a))
    const unit = UNIT[w.c.kind]
    ctx.headers['X-AgentMesh-Quota-Warn'] =
      `${w.c.scope.name} ${w.c.kind} at ${round1(w.pct).toFixed(1)}% (${fmt(unit, w.shown)} of ${fmt(unit, w.c.limit)})${softOver ? '; over the limit, soft mode does not block' : ''}`
    if (isDryRun(ctx)) return
    for (const s of warnings) {
      const key = `${s.c.window.id}|${s.c.key}`
      if (warned.has(key)) continue
      warned.set(key, true)
      rt.mesh.emit('quota_warn', {
        id: ctx.id,
        scope: s.c.scope.name,
        limit: s.c.kind,
        used: toUnit(s.c.kind, s.shown),
        max: toUnit(s.c.kind, s.c.limit),
        pct: round1(s.pct),
      })
    }
  }

  /** what a request needs, on which counters */
  function prepare(ctx: MeshContext, now: number, active: Grant[]) {
    const plan = rt.planner.planFor(ctx.identity, now, active)
    const size = requestSize(rt, ctx)
    const groups: Group[] = [
      { checks: plan.rpm, delta: 1, certain: 1 },
      { checks: plan.tok, delta: size.tokenDelta, certain: Math.max(1, size.input) },
      { checks: plan.usd, delta: size.usdDelta, certain: size.inputUsd },
    ]
    return { plan, size, groups }
  }

  /** the counters' answer: a 429, or the reservation kept for afterResponse */
  function decide(
    ctx: MeshContext,
    now: number,
    p: ReturnType<typeof prepare>,
    t: Taken,
    dry: boolean,
  ): Promise<void> | undefined {
    const { plan, size, groups } = p
    if (!dry) for (const s of plan.scopes) noteScope(s.name)
    const states = counterStates(groups, t.results)
    let top = states[0]
    for (const s of states) if (s.pct > top!.pct) top = s
    if (t.refused >= 0)
      return refuse(
        ctx,
        t,
        groups,
        states,
        top,
        size,
        now,
        plan.usage.map((u) => ({ key: u.blk, ttl: u.ttl })),
      )
    if (!dry)
      reservations.set(ctx, {
        tok: plan.tok,
        usd: plan.usd,
        tokenDelta: size.tokenDelta,
        usdDelta: size.usdDelta,
        usage: plan.usage,
      })
    admit(ctx, states, top)
    return undefined
  }

  async function reserveAsync(ctx: MeshContext, now: number, dry: boolean): Promise<void> {
    const p = prepare(ctx, now, await rt.grants.active(now))
    // a dry run reserves nothing: the same verdict and percentages, read from the counters
    const t = dry ? await peekAll(rt, p.groups) : await takeAll(rt, p.groups)
    await decide(ctx, now, p, t, dry)
  }

  /** beforeRequest: a reservation in `reservations` for afterResponse to settle, or a 429 */
  return function reserve(ctx: MeshContext): Promise<void> | undefined {
    if (ctx.operation === 'count_tokens') return undefined
    const now = Date.now()
    const dry = isDryRun(ctx)
    // grants cached and counters in memory: the whole step is synchronous (no promise per request)
    if (!dry && hasSyncBatch(rt.mesh.counters)) {
      const active = rt.grants.activeSync(now)
      if (active) {
        const p = prepare(ctx, now, active)
        return decide(ctx, now, p, takeAllSync(rt, p.groups)!, false)
      }
    }
    return reserveAsync(ctx, now, dry)
  }
}
