// Which counters a request touches: the scopes of an identity (global, team, user, tool), each
// limit of each scope in its calendar window, with the counter keys and their ttls.
import { LRUCache } from 'lru-cache'
import type { Identity, Mesh } from '../../core/types.ts'
import type { Grant, GrantStore } from './grants.ts'
import type { LimitKind, QuotaLimits, ResolvedQuotaOptions } from './options.ts'
import { counterScope, MICRO, UNIT } from './units.ts'
import { dayWindow, minuteWindow, monthWindow, type Window } from './windows.ts'

export interface Scope {
  /** global | team:eng | user:alice | tool:cursor */
  name: string
  limits: QuotaLimits
}

export interface Check {
  scope: Scope
  kind: LimitKind
  key: string
  window: Window
  ttl: number
  /** the limit plus grants (counter units: tokens, micro-USD, requests); Infinity when none */
  limit: number
  /** the blocking threshold: limit * hardStopAt% */
  stop: number
}

/** usage-report counters of one scope in one window */
export interface UsageKeys {
  ttl: number
  req: string
  hit: string
  blk: string
  stok: string
  susd: string
}

export interface Plan {
  scopes: Scope[]
  rpm: Check[]
  tok: Check[]
  usd: Check[]
  /** usage-report counters, per window and scope */
  usage: UsageKeys[]
}

export interface Windows {
  day: Window
  month: Window
  minute: Window
}

/** What the parts of the plugin share once setup has run. */
export interface QuotaRuntime {
  opts: ResolvedQuotaOptions
  mesh: Mesh
  grants: GrantStore
  planner: Planner
}

export type UsageCounter = 'req' | 'hit' | 'blk' | 'stok' | 'susd'
export const usageKey = (win: Window, scope: string, what: UsageCounter) => `u:${win.id}:${counterScope(scope)}:${what}`

/** the configured limits of a scope name (falling back to the defaults for unlisted names) */
export function limitsOf(opts: ResolvedQuotaOptions, scopeName: string): QuotaLimits {
  const L = opts.limits
  const i = scopeName.indexOf(':')
  const type = i < 0 ? scopeName : scopeName.slice(0, i)
  const name = scopeName.slice(i + 1)
  if (type === 'global') return L.global ?? {}
  if (type === 'team') return L.teams[name] ?? L.defaultTeam ?? {}
  if (type === 'user') return L.users[name] ?? L.defaultUser ?? {}
  if (type === 'tool') return L.tools[name] ?? L.defaultTool ?? {}
  return {}
}

function scopesFor(opts: ResolvedQuotaOptions, id: Identity): Scope[] {
  const L = opts.limits
  return [
    { name: 'global', limits: L.global ?? {} },
    { name: `team:${id.team}`, limits: L.teams[id.team] ?? L.defaultTeam ?? {} },
    { name: `user:${id.user}`, limits: L.users[id.user] ?? L.defaultUser ?? {} },
    { name: `tool:${id.tool}`, limits: L.tools[id.tool] ?? L.defaultTool ?? {} },
  ]
}

/** counter units of a configured limit plus the scope's active grants */
export function effectiveLimit(scope: Scope, kind: LimitKind, active: Grant[]): number {
  const base = scope.limits[kind]
  if (base === undefined) return Infinity
  let extra = 0
  for (const g of active) {
    if (g.scope !== scope.name) continue
    if (UNIT[kind] === 'tokens') extra += g.tokens ?? 0
    if (UNIT[kind] === 'usd') extra += g.usd ?? 0
  }
  return UNIT[kind] === 'usd' ? Math.round((base + extra) * MICRO) : base + extra
}

interface CheckSpec {
  kinds: LimitKind[]
  prefix: string
  onlyLimited: boolean
}

function checksFor(
  opts: ResolvedQuotaOptions,
  scopes: Scope[],
  spec: CheckSpec,
  now: number,
  active: Grant[],
  w: Windows,
): Check[] {
  const out: Check[] = []
  for (const scope of scopes) {
    for (const kind of spec.kinds) {
      const limit = effectiveLimit(scope, kind, active)
      if (spec.onlyLimited && limit === Infinity) continue
      const window = kind.endsWith('PerDay') ? w.day : kind.endsWith('PerMonth') ? w.month : w.minute
      // keep a closed window's counters a little while (usage reports, clock skew between instances)
      const ttl = Math.ceil((window.resetAt - now) / 1000) + (window === w.minute ? 60 : 2 * 86_400)
      const stop = limit === Infinity ? Infinity : Math.floor((limit * opts.hardStopAt) / 100)
      out.push({
        scope,
        kind,
        key: `q:${spec.prefix}:${window.id}:${counterScope(scope.name)}`,
        window,
        ttl,
        limit,
        stop,
      })
    }
  }
  return out
}

const RPM: CheckSpec = { kinds: ['requestsPerMinute'], prefix: 'rpm', onlyLimited: true }
const TOK: CheckSpec = { kinds: ['tokensPerDay', 'tokensPerMonth'], prefix: 'tok', onlyLimited: false }
const USD: CheckSpec = { kinds: ['usdPerDay', 'usdPerMonth'], prefix: 'usd', onlyLimited: false }

function buildPlan(opts: ResolvedQuotaOptions, id: Identity, now: number, active: Grant[], w: Windows): Plan {
  const scopes = scopesFor(opts, id)
  const usage: UsageKeys[] = []
  for (const win of [w.day, w.month]) {
    const ttl = Math.ceil((win.resetAt - now) / 1000) + 2 * 86_400
    for (const sc of scopes) {
      const key = (what: UsageCounter) => usageKey(win, sc.name, what)
      usage.push({ ttl, req: key('req'), hit: key('hit'), blk: key('blk'), stok: key('stok'), susd: key('susd') })
    }
  }
  return {
    scopes,
    rpm: checksFor(opts, scopes, RPM, now, active, w),
    tok: checksFor(opts, scopes, TOK, now, active, w),
    usd: checksFor(opts, scopes, USD, now, active, w),
    usage,
  }
}

export type Planner = ReturnType<typeof createPlanner>

export function createPlanner(opts: ResolvedQuotaOptions) {
  // The checks and counter keys of one identity in one set of windows: the same for every request
  // until a window rolls over or a grant starts or ends, so built once and reused (key strings
  // included: the request path then hashes no new strings). The cache key holds the window ids, so
  // a new minute is a new entry and the old ones age out. ttls computed at build time are a little
  // longer than needed later in the window, which only keeps a closed window's counter longer.
  const plans = new LRUCache<string, Plan>({ max: 2000 })

  // Intl time-zone math costs ~70 µs; a window stays valid until it ends, so compute it once per window
  let calendarCache: { from: number; until: number; day: Window; month: Window } | undefined

  return {
    /** the day and month windows around `now` in the configured time zone */
    calendar(now: number): { day: Window; month: Window } {
      if (!calendarCache || now < calendarCache.from || now >= calendarCache.until) {
        const day = dayWindow(now, opts.timezone)
        const month = monthWindow(now, opts.timezone)
        calendarCache = { from: now, until: Math.min(day.resetAt, month.resetAt), day, month }
      }
      return calendarCache
    },

    planFor(id: Identity, now: number, active: Grant[]): Plan {
      const { day, month } = this.calendar(now)
      const minute = minuteWindow(now)
      let grantsKey = ''
      for (const g of active) grantsKey += g.id + ','
      const key = `${id.team}\0${id.user}\0${id.tool}\0${day.id}\0${month.id}\0${minute.id}\0${grantsKey}`
      let plan = plans.get(key)
      if (!plan) {
        plan = buildPlan(opts, id, now, active, { day, month, minute })
        plans.set(key, plan)
      }
      return plan
    },
  }
}
