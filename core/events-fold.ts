// Folding for live views (the dashboard, `?fold=N`): at most N requests a flush have their events
// sent whole; the others' `response` events are summed into one `responses_folded` event per team
// and their other per-request events left out. A page cannot show 5,000 rows a second, and
// making every response into text for five of them cost a busy proxy ~3% of its CPU (bench:proxy's
// dashboard lines); the sums keep its counters exact (requests, errors, tokens, cost, cache hits).
import type { MeshEvent, MeshEvents } from './types.ts'

/** the events that belong to one request and are left out with it (governance events never are) */
const PER_REQUEST = new Set(['request', 'cache_hit', 'cache_miss', 'route', 'llm_call', 'response', 'audit_entry'])
/** requests remembered as kept or folded: their events span flushes (a route now, the response later) */
const REMEMBERED = 10_000

type Folded = MeshEvents['responses_folded']

/** what one request's events say when it is folded: decided at its first event, for all of them */
interface Fate {
  keep: boolean
  /** what its cache hit saved, added to its team's sums with its response */
  savedUsd: number
}

export class EventFolder {
  #fates = new Map<string, Fate>()
  constructor(readonly perFlush: number) {}

  /**
   * The events of one flush, folded: the first `perFlush` requests seen in it go out whole, the
   * others' responses are summed per team into an event that takes the id and the place of that
   * team's first folded event there (ids stay unique and increasing: a left-out event's id is free).
   */
  fold(events: MeshEvent[]): MeshEvent[] {
    let kept = 0
    let out: MeshEvent[] | undefined
    let sums: Map<string, Folded> | undefined
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!
      const id = (e.data as { id?: unknown }).id
      if (!PER_REQUEST.has(e.type) || typeof id !== 'string') {
        out?.push(e)
        continue
      }
      let fate = this.#fates.get(id)
      if (fate === undefined) {
        fate = { keep: kept++ < this.perFlush, savedUsd: 0 }
        this.#remember(id, fate)
      }
      if (fate.keep) {
        out?.push(e)
        continue
      }
      out ??= events.slice(0, i)
      if (e.type === 'cache_hit') fate.savedUsd += (e.data as MeshEvents['cache_hit']).savedUsd
      if (e.type !== 'response') continue
      const r = e.data as MeshEvents['response']
      const team = String(r.identity?.team)
      sums ??= new Map()
      let sum = sums.get(team)
      if (sum === undefined) {
        sum = emptySums(team)
        sums.set(team, sum)
        out.push({ id: e.id, type: 'responses_folded', time: e.time, data: sum })
      }
      add(sum, r, fate.savedUsd)
    }
    return out ?? events
  }

  #remember(id: string, fate: Fate): void {
    this.#fates.set(id, fate)
    if (this.#fates.size > REMEMBERED) this.#fates.delete(this.#fates.keys().next().value!)
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
