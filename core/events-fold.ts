// Folding for live views (the dashboard, `?fold=N`): at most N requests a flush have their events
// sent whole; the others' `response` events are summed into one `responses_folded` event per team
// and their other per-request events left out. A page cannot show 5,000 rows a second, and
// making every response into text for five of them cost a busy proxy ~3% of its CPU (bench:proxy's
// dashboard lines); the sums keep its counters exact (requests, errors, tokens, cost, cache hits).
import type { MeshEvent, MeshEvents } from './types.ts'

/** the events that belong to one request and are left out with it (governance events never are) */
const PER_REQUEST = new Set(['request', 'cache_hit', 'cache_miss', 'route', 'llm_call', 'response', 'audit_entry'])
/**
 * Requests remembered as kept or folded (their events span flushes: a route now, the response
 * later), in two generations of this many: the older one is dropped whole when the newer fills
 * (deleting the oldest of one Map, one by one, walks the holes left by every delete before it).
 */
const GENERATION = 5_000

/**
 * A request's fate, decided at its first event for all of them: `true` kept whole, a number
 * folded (what its cache hit saved, added to its team's sums with its response). Not an object:
 * one per request would be kept across flushes, what the garbage collector copies.
 */
type Fate = true | number

type Folded = MeshEvents['responses_folded']

export class EventFolder {
  #fates = new Map<string, Fate>()
  #older = new Map<string, Fate>()
  /** in the flush being gathered: the requests kept so far, and each team's sums */
  #kept = 0
  #sums = new Map<string, Folded>()
  constructor(readonly perFlush: number) {}

  /**
   * One event, as it comes, into the flush being gathered (`pending`): the first `perFlush`
   * requests seen in a flush go out whole, the others' responses are summed per team into an event
   * that takes the id and the place of that team's first folded response (ids stay unique and
   * increasing: a left-out event's id is free). Folded as they come, not at the flush: a folded
   * event is not kept until then (kept objects are what the garbage collector copies).
   */
  add(e: MeshEvent, pending: MeshEvent[]): void {
    const id = (e.data as { id?: unknown }).id
    if (typeof id !== 'string' || !PER_REQUEST.has(e.type)) {
      pending.push(e)
      return
    }
    let fate = this.#fates.get(id) ?? this.#older.get(id)
    if (fate === undefined) this.#remember(id, (fate = this.#kept++ < this.perFlush ? true : 0))
    if (fate === true) {
      pending.push(e)
      return
    }
    if (e.type === 'cache_hit') this.#remember(id, fate + (e.data as MeshEvents['cache_hit']).savedUsd)
    if (e.type !== 'response') return
    const r = e.data as MeshEvents['response']
    const team = String(r.identity?.team)
    let sum = this.#sums.get(team)
    if (sum === undefined) {
      sum = emptySums(team)
      this.#sums.set(team, sum)
      pending.push({ id: e.id, type: 'responses_folded', time: e.time, data: sum })
    }
    add(sum, r, fate)
  }

  /** the flush went out: the next one starts counting and summing afresh */
  flushed(): void {
    this.#kept = 0
    if (this.#sums.size > 0) this.#sums = new Map()
  }

  #remember(id: string, fate: Fate): void {
    if (this.#fates.size >= GENERATION && !this.#fates.has(id)) {
      this.#older = this.#fates
      this.#fates = new Map()
    }
    this.#fates.set(id, fate)
  }
}

function emptySums(team: string): Folded {
  return {
    identity: { team },
    requests: 0,
    errors: 0,
    tokens: 0,
    usd: 0,
    savedUsd: 0,
    lookups: 0,
    hits: { exact: 0, semantic: 0, vendor: 0 },
    vendorCalls: 0,
  }
}

/** what the dashboard counts of one response (plugins/dashboard/ui/app.js `apply`) */
function add(s: Folded, r: MeshEvents['response'], savedUsd: number): void {
  // read defensively: this runs in the stream's timer, where a throw would end the process
  const u = r.usage ?? { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0 }
  s.requests++
  if (r.status >= 400) s.errors++
  s.tokens += u.inputTokens + u.outputTokens
  s.usd += r.costUsd || 0
  if (r.cache === 'exact' || r.cache === 'semantic') {
    s.hits[r.cache]++
    s.savedUsd += savedUsd
  }
  if (r.cache !== 'bypass') s.lookups++
  if (u.cacheReadTokens > 0) s.hits.vendor++
  if (r.vendorCalled) s.vendorCalls++
}
