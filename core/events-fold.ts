// Folding for live views (the dashboard, `?fold=N`): at most N requests a flush have their events
// sent whole; the others' `response` events are summed into one `responses_folded` event per team
// and their other per-request events left out. A page cannot show 5,000 rows a second, and
// making every response into text for five of them cost a busy proxy ~3% of its CPU (bench:proxy's
// dashboard lines); the sums keep its counters exact (requests, errors, tokens, cost, cache hits).
import type { MeshEvent, MeshEvents } from './types.ts'

/** the events that belong to one request and are left out with it (governance events never are) */
const PER_REQUEST = new Set(['request', 'cache_hit', 'cache_miss', 'route', 'llm_call', 'response', 'audit_entry'])
/**
 * Requests remembered as shown whole (their events span flushes: a route now, the response
 * later), in two generations of this many: the older one is dropped whole when the newer fills
 * (deleting the oldest of one Set, one by one, walks the holes left by every delete before it).
 * At most N a flush are kept (200 a second with the dashboard's 20): 25-50 s of them at the most.
 */
const GENERATION = 5_000

type Folded = MeshEvents['responses_folded']

export class EventFolder {
  /**
   * The requests shown whole, only: a folded request is one not in here. Remembering every
   * request instead (a Map of fates) cost a loaded proxy ~0.7 us a request in Map.set alone,
   * measured in place; a lookup that misses costs a tenth of that.
   */
  #kept = new Set<string>()
  #older = new Set<string>()
  /** in the flush being gathered: the requests kept so far, and each team's sums */
  #keptNow = 0
  #sums = new Map<string, Folded>()
  /**
   * @param perFlush at most this many requests a flush are sent whole
   * @param passRequests whether a reader takes `request` events: the folder is asked about them all
   *   (they decide), and has the kept ones built only then
   */
  constructor(
    readonly perFlush: number,
    public passRequests = false,
  ) {}

  /**
   * Whether the bus is to build this event of the request `id` for the folder (EventBus `requests`):
   * a request's fate is decided here, at its `request` event, which the core asks about before any
   * other of its events (core/respond.ts `announce`): the first `perFlush` of a flush are kept
   * whole. Of a folded request only the `response` is built (its numbers go into the sums); its
   * `request` and its other events are never made.
   */
  takes(type: string, id: string): boolean {
    if (!PER_REQUEST.has(type)) return true
    if (this.#kept.has(id) || this.#older.has(id)) return type !== 'request' || this.passRequests
    if (type !== 'request') return type === 'response'
    if (this.#keptNow >= this.perFlush) return false
    this.#keptNow++
    this.#keep(id)
    return this.passRequests
  }

  /**
   * One event, as it comes, into the flush being gathered (`pending`): a kept request's as it is;
   * a folded request's `response` summed per team into an event that takes the id and the place of
   * that team's first folded response (ids stay unique and increasing: a left-out event's id is
   * free), its other events left out (another listener may have had them built). Folded as they
   * come, not at the flush: a folded event is not kept until then (kept objects are what the
   * garbage collector copies). A request already under way when the folder began is folded: its
   * counts are in the sums.
   */
  add(e: MeshEvent, pending: MeshEvent[]): void {
    const id = (e.data as { id?: unknown }).id
    if (typeof id !== 'string' || !PER_REQUEST.has(e.type) || this.#kept.has(id) || this.#older.has(id)) {
      pending.push(e)
      return
    }
    if (e.type !== 'response') return
    const r = e.data as MeshEvents['response']
    const team = String(r.identity?.team)
    let sum = this.#sums.get(team)
    if (sum === undefined) {
      sum = emptySums(team)
      this.#sums.set(team, sum)
      pending.push({ id: e.id, type: 'responses_folded', time: e.time, data: sum })
    }
    add(sum, r)
  }

  /** the flush went out: the next one starts counting and summing afresh */
  flushed(): void {
    this.#keptNow = 0
    if (this.#sums.size > 0) this.#sums = new Map()
  }

  #keep(id: string): void {
    if (this.#kept.size >= GENERATION) {
      this.#older = this.#kept
      this.#kept = new Set()
    }
    this.#kept.add(id)
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
function add(s: Folded, r: MeshEvents['response']): void {
  // read defensively: this runs in the stream's timer, where a throw would end the process
  const u = r.usage ?? { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0 }
  s.requests++
  if (r.status >= 400) s.errors++
  s.tokens += u.inputTokens + u.outputTokens
  s.usd += r.costUsd || 0
  if (r.cache === 'exact' || r.cache === 'semantic') {
    s.hits[r.cache]++
    s.savedUsd += r.savedUsd || 0
  }
  if (r.cache !== 'bypass') s.lookups++
  if (u.cacheReadTokens > 0) s.hits.vendor++
  if (r.vendorCalled) s.vendorCalls++
}
