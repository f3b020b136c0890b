// A run's state, shared by every instance on the same storage: numbers in mesh.counters (atomic,
// one Lua script on redis), so two proxies never both take a run's last call; why a run tripped
// and the list of runs in mesh.storage. Each run's counters expire ttlSeconds after its first call.
import { hasBatch, type CounterEntry } from '../../core/counters.ts'
import type { Mesh } from '../../core/types.ts'

export const MICRO = 1_000_000
const UNLIMITED = Number.MAX_SAFE_INTEGER

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

// a key segment from a client value: no ':' (unstorage's separator) and no '.' (an fs path '..')
const seg = (s: string) => encodeURIComponent(s).replace(/\./g, '%2E')
const FIELDS = ['calls', 'tok', 'usd', 'trip', 'start', 'base'] as const

export class RunStore {
  constructor(
    private mesh: Mesh,
    private ttlSeconds: number,
  ) {}

  private base(team: string, run: string) {
    return `breaker:${seg(team)}:${seg(run)}`
  }

  private keys(team: string, run: string): string[] {
    const b = this.base(team, run)
    return FIELDS.map((f) => `${b}:${f}`)
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

  /** Take one call of the run, all limits checked in one atomic step; refused: which limit, and the state before. */
  async admit(
    team: string,
    run: string,
    lim: { calls: number; tokens: number; usd: number },
  ): Promise<{ state: RunState; refused?: Refusal }> {
    const k = this.keys(team, run)
    const cap = (n: number) => (n === Infinity ? UNLIMITED : n)
    // tokens and USD are added after the call: a run already at its budget gets no further call
    const entries: CounterEntry[] = [
      { key: k[0]!, delta: 1, limit: cap(lim.calls), ttl: this.ttlSeconds },
      { key: k[1]!, delta: 0, limit: lim.tokens === Infinity ? UNLIMITED : lim.tokens - 1, ttl: this.ttlSeconds },
      {
        key: k[2]!,
        delta: 0,
        limit: lim.usd === Infinity ? UNLIMITED : Math.ceil(lim.usd * MICRO) - 1,
        ttl: this.ttlSeconds,
      },
      { key: k[3]!, delta: 0, limit: 0, ttl: this.ttlSeconds },
      { key: k[4]!, delta: 0, limit: UNLIMITED, ttl: this.ttlSeconds },
      { key: k[5]!, delta: 0, limit: UNLIMITED, ttl: this.ttlSeconds },
    ]
    const counters = this.mesh.counters
    const r = hasBatch(counters) ? await counters.reserveMany(entries) : await this.reserveEach(entries)
    const state = this.stateOf(r.values)
    if (r.ok) {
      // the run's first call starts its wall clock (only one request sees calls === 1)
      if (state.calls === 1 && !state.start) state.start = await counters.incr(k[4]!, Date.now(), this.ttlSeconds)
      return { state }
    }
    const refused: Refusal = state.tripped
      ? 'tripped'
      : state.calls + 1 > cap(lim.calls)
        ? 'calls'
        : state.tokens > entries[1]!.limit!
          ? 'tokens'
          : 'usd'
    return { state, refused }
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
  async settle(team: string, run: string, tokens: number, usdMicro: number, giveBack: boolean): Promise<void> {
    const k = this.keys(team, run)
    const entries: CounterEntry[] = []
    if (tokens) entries.push({ key: k[1]!, delta: tokens, ttl: this.ttlSeconds })
    if (usdMicro) entries.push({ key: k[2]!, delta: usdMicro, ttl: this.ttlSeconds })
    if (giveBack) entries.push({ key: k[0]!, delta: -1, ttl: this.ttlSeconds })
    if (!entries.length) return
    const counters = this.mesh.counters
    if (hasBatch(counters)) await counters.incrMany(entries)
    else await Promise.all(entries.map((e) => counters.incr(e.key, e.delta, e.ttl)))
  }

  /** how many times this body was seen in the run within the window, this one included */
  async bodySeen(
    team: string,
    run: string,
    fingerprint: string,
    windowSeconds: number,
    count: boolean,
  ): Promise<number> {
    const key = `${this.base(team, run)}:body:${fingerprint}`
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
