// A run's state, shared by every instance on the same storage: numbers in mesh.counters (atomic,
// one Lua script on redis), so two proxies never both take a run's last call; why a run tripped
// and the list of runs in mesh.storage. Each run's counters expire ttlSeconds after its first call.
import { hasBatch, hasSyncBatch, type CounterEntry } from '../../core/counters.ts'
import type { Mesh } from '../../core/types.ts'

export const MICRO = 1_000_000
const UNLIMITED = Number.MAX_SAFE_INTEGER
const cap = (n: number) => (n === Infinity ? UNLIMITED : n)

export interface RunState {
  calls: number
  tokens: number
  usdMicro: number
  tripped: boolean
  /** epoch ms of the run's first call (0: none yet) */
  start: number
  /** assistant turns of the transcript that a reset forgave (loop detection starts after them) */
  base: number
}

export interface TripRecord {
  team: string
  run: string
  type: 'agent_loop_detected' | 'run_budget_exceeded'
  limit: string
  message: string
  at: string
  /** assistant turns in the transcript when it tripped: a reset forgives them */
  turns: number
}

export interface RunRecord {
  team: string
  run: string
  source: string
  firstSeen: string
}

export type Refusal = 'tripped' | 'calls' | 'tokens' | 'usd'

/** the budgets admit() checks (Infinity: off) */
export interface AdmitLimits {
  calls: number
  tokens: number
  usd: number
}

/** the body to count with the call: "the same body again" within windowSeconds */
export interface BodyCount {
  fingerprint: string
  windowSeconds: number
}

export interface Admission {
  state: RunState
  refused?: Refusal
  /** times the body was seen in the run within its window, this call included (a body was given, the call taken) */
  bodySeen?: number
  /** the run's keys, for settle() after the call (not on a dry run's reading) */
  run?: RunKeys
}

/** a run's counter keys, built once per (team, run): every call of a run needs the same seven strings */
export interface RunKeys {
  team: string
  run: string
  base: string
  k: string[]
  /** admit's entries for the limits they were built with (the same for every call of a run, as a rule) */
  admit?: CounterEntry[]
  lim?: AdmitLimits
  /** admit's entries and a slot for the body's, for counters that take them at once (nothing awaits in between) */
  withBody?: CounterEntry[]
}

// a key segment from a client value: no ':' (unstorage's separator) and no '.' (an fs path '..')
const seg = (s: string) => encodeURIComponent(s).replace(/\./g, '%2E')
const FIELDS = ['calls', 'tok', 'usd', 'trip', 'start', 'base'] as const
const MAX_RUN_KEYS = 10_000

export class RunStore {
  /** by team, then run (no string built per call to look them up); emptied when full, rebuilt on use */
  private runKeys = new Map<string, Map<string, RunKeys>>()
  private runKeyCount = 0

  constructor(
    private mesh: Mesh,
    private ttlSeconds: number,
  ) {}

  private base(team: string, run: string) {
    return `breaker:${seg(team)}:${seg(run)}`
  }

  private keysOf(team: string, run: string): RunKeys {
    let runs = this.runKeys.get(team)
    let r = runs?.get(run)
    if (!r) {
      const base = this.base(team, run)
      r = { team, run, base, k: FIELDS.map((f) => `${base}:${f}`) }
      if (this.runKeyCount >= MAX_RUN_KEYS) {
        this.runKeys.clear()
        this.runKeyCount = 0
        runs = undefined
      }
      if (!runs) this.runKeys.set(team, (runs = new Map()))
      runs.set(run, r)
      this.runKeyCount++
    }
    return r
  }

  private keys(team: string, run: string): string[] {
    return this.keysOf(team, run).k
  }

  /** admit's entries (five, six with a tokens limit): built when the run or its limits change, else the same (read-only) objects */
  private admitEntries(rk: RunKeys, lim: AdmitLimits): CounterEntry[] {
    const had = rk.lim
    if (rk.admit && had && had.calls === lim.calls && had.tokens === lim.tokens && had.usd === lim.usd) return rk.admit
    const k = rk.k
    const ttl = this.ttlSeconds
    // tokens and USD are added after the call: a run already at its budget gets no further call.
    // Calls first; the tokens are read only when they have a limit (nothing else needs them)
    rk.admit = [
      { key: k[0]!, delta: 1, limit: cap(lim.calls), ttl },
      { key: k[2]!, delta: 0, limit: lim.usd === Infinity ? UNLIMITED : Math.ceil(lim.usd * MICRO) - 1, ttl },
      { key: k[3]!, delta: 0, limit: 0, ttl },
      { key: k[4]!, delta: 0, limit: UNLIMITED, ttl },
      { key: k[5]!, delta: 0, limit: UNLIMITED, ttl },
    ]
    if (lim.tokens !== Infinity) rk.admit.push({ key: k[1]!, delta: 0, limit: lim.tokens - 1, ttl })
    rk.lim = { calls: lim.calls, tokens: lim.tokens, usd: lim.usd }
    rk.withBody = undefined
    return rk.admit
  }

  /** admit's values (in the order of its entries): tokens 0 when they were not read (no limit) */
  private admitState(v: number[], entries: CounterEntry[]): RunState {
    return {
      calls: v[0] ?? 0,
      tokens: entries.length > 5 ? (v[5] ?? 0) : 0,
      usdMicro: v[1] ?? 0,
      tripped: (v[2] ?? 0) > 0,
      start: v[3] ?? 0,
      base: v[4] ?? 0,
    }
  }

  private stateOf(v: number[]): RunState {
    return {
      calls: v[0] ?? 0,
      tokens: v[1] ?? 0,
      usdMicro: v[2] ?? 0,
      tripped: (v[3] ?? 0) > 0,
      start: v[4] ?? 0,
      base: v[5] ?? 0,
    }
  }

  /**
   * Take one call of the run, all limits checked in one atomic step, and count its body (when
   * given) in the same step; refused: which limit, and the state before (the body not counted).
   */
  admit(team: string, run: string, lim: AdmitLimits, body?: BodyCount): Admission | Promise<Admission> {
    const rk = this.keysOf(team, run)
    const entries = this.admitEntries(rk, lim)
    const counters = this.mesh.counters
    if (!hasBatch(counters)) return this.admitEach(team, run, rk, entries, lim, body)
    const bodyEntry = body
      ? { key: `${rk.base}:body:${body.fingerprint}`, delta: 1, limit: UNLIMITED, ttl: body.windowSeconds }
      : undefined
    // memory counters: done at once, and the hook stays synchronous (no promise per call); the
    // run's own array holds the body's entry, as nothing can use it before this call returns
    if (hasSyncBatch(counters)) {
      let list = entries
      if (bodyEntry) {
        list = rk.withBody ??= entries.concat(bodyEntry)
        list[entries.length] = bodyEntry
      }
      const r = counters.reserveManySync(list)
      return this.admitted(r, rk, entries, lim, r.ok && body ? r.values[entries.length] : undefined)
    }
    const withBody = bodyEntry ? entries.concat(bodyEntry) : entries
    // then(), not an async function around it: one promise (and turn) less per call
    return counters
      .reserveMany(withBody)
      .then((r) => this.admitted(r, rk, entries, lim, r.ok && body ? r.values[entries.length] : undefined))
  }

  /** counters without reserveMany: the checks, then the call, then the body */
  private async admitEach(
    team: string,
    run: string,
    rk: RunKeys,
    entries: CounterEntry[],
    lim: AdmitLimits,
    body?: BodyCount,
  ): Promise<Admission> {
    const r = await this.reserveEach(entries)
    const seen = r.ok && body ? await this.bodySeen(team, run, body.fingerprint, body.windowSeconds, true) : undefined
    return this.admitted(r, rk, entries, lim, seen)
  }

  /** what admit's counters step came to: the state, and which limit refused the call */
  private admitted(
    r: { ok: boolean; values: number[] },
    rk: RunKeys,
    entries: CounterEntry[],
    lim: AdmitLimits,
    bodySeen: number | undefined,
  ): Admission | Promise<Admission> {
    const state = this.admitState(r.values, entries)
    if (r.ok) {
      const adm: Admission = bodySeen === undefined ? { state, run: rk } : { state, bodySeen, run: rk }
      // the run's first call starts its wall clock (only one request sees calls === 1)
      if (state.calls !== 1 || state.start) return adm
      return this.mesh.counters.incr(rk.k[4]!, Date.now(), this.ttlSeconds).then((start) => {
        state.start = start
        return adm
      })
    }
    const refused: Refusal = state.tripped
      ? 'tripped'
      : state.calls + 1 > cap(lim.calls)
        ? 'calls'
        : entries.length > 5 && state.tokens > entries[5]!.limit!
          ? 'tokens'
          : 'usd'
    return { state, refused, run: rk }
  }

  /** counters without reserveMany: the call first, then the checks (the call is given back when they fail) */
  private async reserveEach(entries: CounterEntry[]): Promise<{ ok: boolean; values: number[] }> {
    const c = this.mesh.counters
    const values = await Promise.all(entries.map((e) => c.get(e.key)))
    const ok = entries.every((e, i) => values[i]! + e.delta <= (e.limit ?? UNLIMITED))
    if (!ok) return { ok, values }
    const r = await c.reserve([entries[0]!.key], 1, [entries[0]!.limit!], [this.ttlSeconds])
    return { ok: r.ok, values: [r.values[0]!, ...values.slice(1)] }
  }

  /** the state as it is, for a dry run and the reports: nothing created or changed */
  async peek(team: string, run: string): Promise<RunState> {
    const c = this.mesh.counters
    return this.stateOf(await Promise.all(this.keys(team, run).map((k) => c.get(k))))
  }

  /** after the call: what it spent; a call that got no answer (refused further on) is given back */
  settle(rk: RunKeys, tokens: number, usdMicro: number, giveBack: boolean): Promise<void> | undefined {
    if (!tokens && !usdMicro && !giveBack) return undefined
    const k = rk.k
    const entries: CounterEntry[] = []
    if (tokens) entries.push({ key: k[1]!, delta: tokens, ttl: this.ttlSeconds })
    if (usdMicro) entries.push({ key: k[2]!, delta: usdMicro, ttl: this.ttlSeconds })
    if (giveBack) entries.push({ key: k[0]!, delta: -1, ttl: this.ttlSeconds })
    const counters = this.mesh.counters
    if (hasSyncBatch(counters)) {
      counters.incrManySync(entries)
      return undefined
    }
    // the counters' own promise, no async wrapper around it: afterResponse only waits on it
    const done = hasBatch(counters)
      ? counters.incrMany(entries)
      : Promise.all(entries.map((e) => counters.incr(e.key, e.delta, e.ttl)))
    return done as Promise<unknown> as Promise<void>
  }

  /** a body counted by admit() that no call will follow (the run tripped after it was taken) */
  uncountBody(team: string, run: string, fingerprint: string, windowSeconds: number): Promise<number> {
    return this.mesh.counters.incr(`${this.keysOf(team, run).base}:body:${fingerprint}`, -1, windowSeconds)
  }

  /** how many times this body was seen in the run within the window, this one included */
  async bodySeen(
    team: string,
    run: string,
    fingerprint: string,
    windowSeconds: number,
    count: boolean,
  ): Promise<number> {
    const key = `${this.keysOf(team, run).base}:body:${fingerprint}`
    return count ? this.mesh.counters.incr(key, 1, windowSeconds) : (await this.mesh.counters.get(key)) + 1
  }

  async trip(record: TripRecord): Promise<void> {
    await this.mesh.storage.setItem(`breaker:trip:${seg(record.team)}:${seg(record.run)}`, record)
    await this.mesh.counters.incr(this.keys(record.team, record.run)[3]!, 1, this.ttlSeconds)
  }

  async tripRecord(team: string, run: string): Promise<TripRecord | null> {
    return (await this.mesh.storage.getItem(`breaker:trip:${seg(team)}:${seg(run)}`)) as TripRecord | null
  }

  /** a fresh budget, and the loop that tripped it forgiven; the run keeps its id */
  async reset(team: string, run: string): Promise<boolean> {
    const trip = await this.tripRecord(team, run)
    const state = await this.peek(team, run)
    const k = this.keys(team, run)
    await Promise.all(k.slice(0, 5).map((key) => this.mesh.counters.del(key)))
    const forgiven = Math.max(state.base, trip?.turns ?? 0)
    if (forgiven !== state.base) await this.mesh.counters.incr(k[5]!, forgiven - state.base, this.ttlSeconds)
    await this.mesh.storage.removeItem(`breaker:trip:${seg(team)}:${seg(run)}`)
    return !!trip || state.calls > 0
  }

  /** the run list `agentmesh runs` reads: one record per run, written at its first call */
  async noteRun(record: RunRecord): Promise<void> {
    await this.mesh.storage.setItem(`breaker:runs:${seg(record.team)}:${seg(record.run)}`, record)
  }

  async list(): Promise<Array<RunRecord & { state: RunState; trip: TripRecord | null }>> {
    const keys = await this.mesh.storage.getKeys('breaker:runs')
    const out: Array<RunRecord & { state: RunState; trip: TripRecord | null }> = []
    for (const key of keys) {
      const rec = (await this.mesh.storage.getItem(key)) as RunRecord | null
      if (!rec || typeof rec.run !== 'string' || typeof rec.team !== 'string') continue
      const state = await this.peek(rec.team, rec.run)
      // its counters expired: the run is over and forgotten
      if (!state.calls && !state.tripped && !state.tokens) {
        await this.mesh.storage.removeItem(key)
        continue
      }
      out.push({ ...rec, state, trip: state.tripped ? await this.tripRecord(rec.team, rec.run) : null })
    }
    return out.sort((a, b) => b.firstSeen.localeCompare(a.firstSeen))
  }
}
