// beforeRequest: find the run, take one of its calls (atomically, all budgets checked), then look
// for a loop in the transcript and the same body again. A run that trips stays tripped until an
// admin resets it; every later call of it gets the same 429, and no vendor sees it.
import { LRUCache } from 'lru-cache'
import { isDryRun, refuseOrRecord } from '../../core/dry-run.ts'
import type { MeshContext } from '../../core/types.ts'
import { assistantTurns, assistantTurnsSliced, bodyFingerprint, findLoop, type LoopSign, type Turn } from './loops.ts'
import { effectiveLimits, type BreakerOptions, type Effective } from './options.ts'
import { runOf, type RunRef } from './run-id.ts'
import {
  type Admission,
  type BodyCount,
  MICRO,
  type Refusal,
  type RunKeys,
  type RunState,
  type RunStore,
  type TripRecord,
} from './state.ts'

/** what the breaker publishes as ctx.state.breaker (the audit records id, calls, tripped) */
export interface BreakerMeta {
  id: string
  team: string
  calls: number
  tripped?: TripRecord['type']
}

declare module '../../core/types.ts' {
  interface MeshState {
    breaker?: BreakerMeta
  }
  interface MeshEvents {
    /** a run passed its warning percentage of a limit */
    run_warn: { id: string; run: string; team: string; limit: string; used: number; max: number; pct: number }
    /** a run was stopped: a loop was detected or a budget ran out */
    run_tripped: {
      id: string
      run: string
      team: string
      type: 'agent_loop_detected' | 'run_budget_exceeded'
      limit: string
      message: string
    }
  }
}

/**
 * ctx.state.breaker as the breaker makes it. A call the breaker took also holds its run's keys,
 * for afterResponse to settle it once, in a private field (not in the published shape): no map
 * entry per call to add and remove.
 */
export class RunMeta implements BreakerMeta {
  #taken: RunKeys | undefined = undefined
  constructor(
    public id: string,
    public team: string,
    public calls: number,
  ) {}
  take(run: RunKeys): void {
    this.#taken = run
  }
  /** the run's keys the first time, then undefined: a call is settled once */
  settle(): RunKeys | undefined {
    const run = this.#taken
    this.#taken = undefined
    return run
  }
}

export interface BreakerRuntime {
  opts: BreakerOptions
  warnAt: number
  store: RunStore
}

const usd = (micro: number) => (micro / MICRO).toFixed(6)
const LIMIT_WORDS: Record<string, string> = {
  calls: 'calls',
  tokens: 'tokens',
  usd: 'USD',
  wallSeconds: 'wall time (seconds)',
  toolCallRepeats: 'same tool call repeated',
  answerRepeats: 'same answer repeated',
  bodyRepeats: 'same request body repeated',
}

function howToReset(run: string, team: string): string {
  return `Reset it with \`agentmesh runs reset ${run}${team ? ` --team ${team}` : ''}\` or POST /agentmesh/admin/runs/${encodeURIComponent(run)}/reset?team=${encodeURIComponent(team)} (admin token), or start a new run (another X-AgentMesh-Run-Id).`
}

function budgetMessage(ref: RunRef, team: string, limit: keyof typeof LIMIT_WORDS, used: string, max: string): string {
  return `run budget exceeded: run ${ref.id} (team ${team}) has used ${used} of its ${max} ${LIMIT_WORDS[limit]} (limit: ${limit}). No further calls of this run go to a vendor. ${howToReset(ref.id, team)}`
}

function loopMessage(
  ref: RunRef,
  team: string,
  sign: LoopSign | { limit: 'bodyRepeats'; count: number; what: string },
  max: number,
): string {
  const what =
    sign.limit === 'toolCallRepeats'
      ? `repeated the tool call ${sign.what.slice(0, 160)} ${sign.count} times in its transcript`
      : sign.limit === 'answerRepeats'
        ? `got the same answer ${sign.count} times in a row ("${sign.what.slice(0, 80)}")`
        : `sent the same request body ${sign.count} times within ${sign.what}`
  return `agent loop detected: run ${ref.id} (team ${team}) ${what} (limit: ${sign.limit} = ${max}). No further calls of this run go to a vendor. ${howToReset(ref.id, team)}`
}

/** one guard's state: the runtime, and what it keeps between requests */
interface Guard {
  rt: BreakerRuntime
  /** one run_warn per run and limit in this process */
  warned: LRUCache<string, true>
  /** with neither rules nor team entries every request has the same limits */
  fixed?: Effective
}

function limitsFor(g: Guard, ctx: MeshContext): Effective {
  return (
    g.fixed ??
    effectiveLimits(g.rt.opts, {
      team: ctx.identity.team,
      user: ctx.identity.user,
      tool: ctx.identity.tool,
      model: ctx.route.model || ctx.prompt.model,
    })
  )
}

async function trip(
  g: Guard,
  ctx: MeshContext,
  meta: BreakerMeta,
  type: TripRecord['type'],
  limit: string,
  message: string,
  turns: number,
) {
  meta.tripped = type
  if (!isDryRun(ctx)) {
    await g.rt.store.trip({ team: meta.team, run: meta.id, type, limit, message, at: new Date().toISOString(), turns })
    ctx.mesh.emit('run_tripped', { id: ctx.id, run: meta.id, team: meta.team, type, limit, message })
    ctx.mesh.log.warn(`breaker: run ${meta.id} (team ${meta.team}) tripped: ${limit}`, { request: ctx.id })
  }
  // retrying cannot help: the SDKs honour x-should-retry
  refuseOrRecord(ctx, 'breaker', { kind: 'error', status: 429, type, message, headers: { 'x-should-retry': 'false' } })
}

/** a refused call: the stored reason of a tripped run, or the budget that ran out now */
async function refused(
  g: Guard,
  ctx: MeshContext,
  ref: RunRef,
  meta: BreakerMeta,
  why: Refusal,
  state: RunState,
  lim: Effective,
  turns: number,
) {
  if (why === 'tripped') {
    const rec = await g.rt.store.tripRecord(meta.team, ref.id)
    meta.tripped = rec?.type ?? 'run_budget_exceeded'
    const message =
      rec?.message ?? `run ${ref.id} (team ${meta.team}) was stopped by the breaker. ${howToReset(ref.id, meta.team)}`
    refuseOrRecord(ctx, 'breaker', {
      kind: 'error',
      status: 429,
      type: meta.tripped,
      message,
      headers: { 'x-should-retry': 'false' },
    })
    return
  }
  const [used, max] =
    why === 'calls'
      ? [String(state.calls), String(lim.calls)]
      : why === 'tokens'
        ? [String(state.tokens), String(lim.tokens)]
        : [`$${usd(state.usdMicro)}`, `$${lim.usd}`]
  await trip(g, ctx, meta, 'run_budget_exceeded', why, budgetMessage(ref, meta.team, why, used, max), turns)
}

const WARN_LIMITS = ['calls', 'tokens', 'usd', 'wallSeconds'] as const

function usedOf(state: RunState, limit: (typeof WARN_LIMITS)[number], now: number): number {
  if (limit === 'calls') return state.calls
  if (limit === 'tokens') return state.tokens
  if (limit === 'usd') return state.usdMicro / MICRO
  return state.start ? (now - state.start) / 1000 : 0
}

/**
 * every limit well short of warnAt (a margin far above rounding error, so the exact test below
 * would find none either): most calls of most runs, and nothing more to look at
 */
function farFromLimits(warnAt: number, state: RunState, lim: Effective, now: number): boolean {
  const f = (warnAt / 100) * (1 - 1e-9)
  return (
    state.calls < lim.calls * f &&
    state.tokens < lim.tokens * f &&
    state.usdMicro / MICRO < lim.usd * f &&
    (state.start ? (now - state.start) / 1000 : 0) < lim.wallSeconds * f
  )
}

function warn(g: Guard, ctx: MeshContext, meta: BreakerMeta, state: RunState, lim: Effective, now: number) {
  if (farFromLimits(g.rt.warnAt, state, lim, now)) return
  // the limit nearest its end, the first on a tie; no list built per call
  let limit: (typeof WARN_LIMITS)[number] | undefined
  let used = 0
  let pct = 0
  for (const l of WARN_LIMITS) {
    const max = lim[l]
    if (max === Infinity) continue
    const u = usedOf(state, l, now)
    const p = (u / max) * 100
    if (p >= g.rt.warnAt && (!limit || p > pct)) {
      limit = l
      used = u
      pct = p
    }
  }
  if (!limit) return
  const max = lim[limit]
  ctx.headers['x-agentmesh-run-warn'] = `${limit} at ${pct.toFixed(1)}% (${Math.round(used * 100) / 100} of ${max})`
  const key = `${meta.team}\u0000${meta.id}\u0000${limit}`
  if (isDryRun(ctx) || g.warned.has(key)) return
  g.warned.set(key, true)
  ctx.mesh.emit('run_warn', {
    id: ctx.id,
    run: meta.id,
    team: meta.team,
    limit,
    used: Math.round(used * 1e6) / 1e6,
    max,
    pct: Math.round(pct * 10) / 10,
  })
}

/** a dry run: the call it would be, read without taking it */
async function peekAdmit(g: Guard, team: string, run: string, lim: Effective): Promise<Admission> {
  const state = await g.rt.store.peek(team, run)
  state.calls += 1
  const refused: Refusal | undefined = state.tripped
    ? 'tripped'
    : state.calls > lim.calls
      ? 'calls'
      : state.tokens >= lim.tokens
        ? 'tokens'
        : state.usdMicro >= lim.usd * MICRO
          ? 'usd'
          : undefined
  if (refused) state.calls -= 1
  return { state, refused }
}

/** a run tripped by a check after admit() counted its body: that body belongs to no call now */
async function tripTaken(
  g: Guard,
  ctx: MeshContext,
  meta: BreakerMeta,
  body: BodyCount | undefined,
  limit: string,
  type: TripRecord['type'],
  message: string,
  turns: number,
) {
  if (body) await g.rt.store.uncountBody(meta.team, meta.id, body.fingerprint, body.windowSeconds)
  return trip(g, ctx, meta, type, limit, message, turns)
}

/**
 * After a call was taken: the run's wall time, a loop in the transcript, the same body again;
 * the first that fires trips the run, else the run is warned of a limit it nears. A promise only
 * when something is left to wait for: a trip, or a dry run's read of the body count.
 */
function checkRun(
  g: Guard,
  ctx: MeshContext,
  ref: RunRef,
  meta: BreakerMeta,
  state: RunState,
  lim: Effective,
  turns: Turn[],
  counted: { body?: BodyCount; seen?: number },
): Promise<void> | undefined {
  const team = meta.team
  const now = Date.now()
  if (state.start && now - state.start > lim.wallSeconds * 1000) {
    const used = Math.round((now - state.start) / 1000)
    const message = budgetMessage(ref, team, 'wallSeconds', `${used} s`, `${lim.wallSeconds} s`)
    return tripTaken(g, ctx, meta, counted.body, 'wallSeconds', 'run_budget_exceeded', message, turns.length)
  }
  const sign = findLoop(turns, state.base, lim.toolCallRepeats, lim.answerRepeats)
  if (sign) {
    const message = loopMessage(ref, team, sign, lim[sign.limit])
    return tripTaken(g, ctx, meta, counted.body, sign.limit, 'agent_loop_detected', message, turns.length)
  }
  if (lim.bodyRepeats === Infinity) {
    warn(g, ctx, meta, state, lim, now)
    return undefined
  }
  if (counted.seen !== undefined) return bodyChecked(g, ctx, ref, meta, state, lim, turns.length, counted.seen, now)
  // a dry run: how often the body was seen, this one not counted
  return g.rt.store
    .bodySeen(team, ref.id, bodyFingerprint(ctx.request.rawBody), lim.bodyWindowSeconds, false)
    .then((seen) => bodyChecked(g, ctx, ref, meta, state, lim, turns.length, seen, now))
}

function bodyChecked(
  g: Guard,
  ctx: MeshContext,
  ref: RunRef,
  meta: BreakerMeta,
  state: RunState,
  lim: Effective,
  turns: number,
  seen: number,
  now: number,
): Promise<void> | undefined {
  if (seen >= lim.bodyRepeats) {
    const what = { limit: 'bodyRepeats' as const, count: seen, what: `${lim.bodyWindowSeconds} s` }
    const message = loopMessage(ref, meta.team, what, lim.bodyRepeats)
    return trip(g, ctx, meta, 'agent_loop_detected', 'bodyRepeats', message, turns)
  }
  warn(g, ctx, meta, state, lim, now)
  return undefined
}

/** the beforeRequest hook over one runtime (the steps above are module functions) */
export function createGuard(rt: BreakerRuntime) {
  const fixed =
    !rt.opts.rules?.length && !rt.opts.teams
      ? effectiveLimits(rt.opts, { team: '', user: '', tool: '', model: '' })
      : undefined
  const g: Guard = { rt, warned: new LRUCache<string, true>({ max: 10_000 }), ...(fixed ? { fixed } : {}) }
  // not async: one promise, the counters', and what follows it runs in its then()
  return function beforeRequest(ctx: MeshContext): Promise<void> | undefined {
    if (ctx.operation !== 'chat') return undefined
    const ref = runOf(ctx)
    if ('error' in ref) {
      ctx.response = { kind: 'error', status: 400, type: 'invalid_request_error', message: ref.error }
      return undefined
    }
    const team = ctx.identity.team
    const lim = limitsFor(g, ctx)
    const dry = isDryRun(ctx)
    // the body is counted with the call, in the same counters step (a dry run counts nothing)
    const body: BodyCount | undefined =
      !dry && lim.bodyRepeats !== Infinity
        ? { fingerprint: bodyFingerprint(ctx.request.rawBody), windowSeconds: lim.bodyWindowSeconds }
        : undefined
    const admission = dry ? peekAdmit(g, team, ref.id, lim) : rt.store.admit(team, ref.id, lim, body)
    if (!(admission instanceof Promise)) return afterAdmit(g, ctx, ref, lim, dry, body, admission)
    return admission.then((adm) => afterAdmit(g, ctx, ref, lim, dry, body, adm))
  }
}

/** the call taken (or refused): the run's headers, then the checks that need the transcript */
function afterAdmit(
  g: Guard,
  ctx: MeshContext,
  ref: RunRef,
  lim: Effective,
  dry: boolean,
  body: BodyCount | undefined,
  adm: Admission,
): Promise<void> | undefined {
  const team = ctx.identity.team
  const state = adm.state
  const meta = new RunMeta(ref.id, team, state.calls)
  ctx.state.breaker = meta
  // X-AgentMesh-Run-Id, -Run-Calls, -Run-Cost-USD, named as the core sends them (lower case): the
  // core's copy of a mixed-case name is a new string per header and response
  ctx.headers['x-agentmesh-run-id'] = ref.id
  ctx.headers['x-agentmesh-run-calls'] = String(state.calls)
  ctx.headers['x-agentmesh-run-cost-usd'] = usd(state.usdMicro)
  // a body of megabytes (tens of thousands of tool calls) is read in slices of the event loop
  if ((ctx.request.rawBody?.length ?? 0) >= LARGE_BODY)
    return assistantTurnsSliced(ctx).then((turns) => withTurns(g, ctx, ref, lim, dry, body, adm, meta, turns))
  return withTurns(g, ctx, ref, lim, dry, body, adm, meta, assistantTurns(ctx))
}

const LARGE_BODY = 1_000_000

function withTurns(
  g: Guard,
  ctx: MeshContext,
  ref: RunRef,
  lim: Effective,
  dry: boolean,
  body: BodyCount | undefined,
  adm: Admission,
  meta: RunMeta,
  turns: Turn[],
): Promise<void> | undefined {
  const team = ctx.identity.team
  const state = adm.state
  if (adm.refused) return refused(g, ctx, ref, meta, adm.refused, state, lim, turns.length)
  if (!dry) {
    meta.take(adm.run!)
    if (state.calls === 1)
      void g.rt.store
        .noteRun({ team, run: ref.id, source: ref.source, firstSeen: new Date().toISOString() })
        .catch(() => {})
  }
  return checkRun(g, ctx, ref, meta, state, lim, turns, { body, seen: adm.bodySeen })
}
