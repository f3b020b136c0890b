// Budgets that hold under load and across instances. Before the call a reservation (estimated
// input + max_tokens, and its price) is taken on every applicable counter in one atomic step
// (mesh.counters.reserve: a Map in one process, a Lua script on redis); after it, the reservation
// is settled to what the vendor reported, also when the stream was aborted or the upstream failed.
// Nothing is ever granted automatically: headroom comes only from an admin's grant.
import { createHash } from 'node:crypto'
import { hasBatch, type CounterEntry } from '../../core/counters.ts'
import { definePlugin } from '../../core/plugin.ts'
import { totalTokens } from '../../core/pricing.ts'
import type { Identity, Mesh, MeshContext, Plugin } from '../../core/types.ts'
import { adminError, checkAdmin, json, readJson, resolveAdminToken } from '../../core/admin.ts'
import { createGrantStore, validateGrant, type Grant, type GrantStore } from './grants.ts'
import { LIMIT_KINDS, resolveQuotaOptions, type LimitKind, type QuotaLimits, type QuotaOptions, type ResolvedQuotaOptions } from './options.ts'
import { dayWindow, humanDuration, minuteWindow, monthWindow, type Window } from './windows.ts'

export type { QuotaLimits, QuotaOptions } from './options.ts'

/** What the audit plugin reads from ctx.meta.quota. */
export interface QuotaDecision {
  decision: 'allow' | 'warn' | 'block' | 'soft'
  /** the most constrained limit, e.g. "team:eng tokensPerDay" */
  limit?: string
  pct?: number
}

const MICRO = 1_000_000
// "no limit" for the counters: large, finite (redis Lua reads it with tonumber)
const UNLIMITED = Number.MAX_SAFE_INTEGER
type Unit = 'tokens' | 'usd' | 'requests'
const UNIT: Record<LimitKind, Unit> = { tokensPerDay: 'tokens', tokensPerMonth: 'tokens', usdPerDay: 'usd', usdPerMonth: 'usd', requestsPerMinute: 'requests' }
const KIND_LABEL: Record<LimitKind, string> = { tokensPerDay: 'tokens per day', tokensPerMonth: 'tokens per month', usdPerDay: 'USD per day', usdPerMonth: 'USD per month', requestsPerMinute: 'requests per minute' }

interface Scope {
  /** global | team:eng | user:alice | tool:cursor */
  name: string
  limits: QuotaLimits
}

interface Check {
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

interface UsageKeys { ttl: number; req: string; hit: string; blk: string; stok: string; susd: string }

interface Plan {
  scopes: Scope[]
  rpm: Check[]
  tok: Check[]
  usd: Check[]
  /** usage-report counters, per window and scope */
  usage: UsageKeys[]
}

interface Reservation {
  tok: Check[]
  usd: Check[]
  tokenDelta: number
  usdDelta: number
  usage: UsageKeys[]
}

/** counter-key form of a scope name: short and free of surprises */
const sk = (name: string) => (name.length <= 140 ? name : 'h:' + createHash('sha256').update(name).digest('hex').slice(0, 32))
const b64 = (s: string) => Buffer.from(s).toString('base64url')

function fmt(unit: Unit, v: number): string {
  if (unit === 'usd') return `$${(v / MICRO).toFixed(v / MICRO < 10 ? 4 : 2)}`
  return Math.round(v).toLocaleString('en-US')
}

function scopeLabel(name: string): string {
  if (name === 'global') return 'the global budget'
  const i = name.indexOf(':')
  return `${name.slice(0, i)} "${name.slice(i + 1)}"`
}

export function quota(options: QuotaOptions = {}): Plugin {
  // validated now, so a bad config fails at load naming the field; again in setup with the CLI flags
  let opts: ResolvedQuotaOptions = resolveQuotaOptions(options)
  let mesh: Mesh
  let grants: GrantStore
  const reservations = new WeakMap<MeshContext, Reservation>()
  const warned = new Set<string>()
  const knownScopes = new Set<string>()

  function scopesFor(id: Identity): Scope[] {
    const L = opts.limits
    return [
      { name: 'global', limits: L.global ?? {} },
      { name: `team:${id.team}`, limits: L.teams[id.team] ?? L.defaultTeam ?? {} },
      { name: `user:${id.user}`, limits: L.users[id.user] ?? L.defaultUser ?? {} },
      { name: `tool:${id.tool}`, limits: L.tools[id.tool] ?? L.defaultTool ?? {} },
    ]
  }

  function limitsOf(scopeName: string): QuotaLimits {
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

  /** counter units of a configured limit plus the scope's active grants */
  function effectiveLimit(scope: Scope, kind: LimitKind, active: Grant[]): number {
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

  function checksFor(scopes: Scope[], kinds: LimitKind[], prefix: string, now: number, active: Grant[], day: Window, month: Window, minute: Window, onlyLimited: boolean): Check[] {
    const out: Check[] = []
    for (const scope of scopes) {
      for (const kind of kinds) {
        const limit = effectiveLimit(scope, kind, active)
        if (onlyLimited && limit === Infinity) continue
        const window = kind.endsWith('PerDay') ? day : kind.endsWith('PerMonth') ? month : minute
        // keep a closed window's counters a little while (usage reports, clock skew between instances)
        const ttl = Math.ceil((window.resetAt - now) / 1000) + (window === minute ? 60 : 2 * 86_400)
        const stop = limit === Infinity ? Infinity : Math.floor((limit * opts.hardStopAt) / 100)
        out.push({ scope, kind, key: `q:${prefix}:${window.id}:${sk(scope.name)}`, window, ttl, limit, stop })
      }
    }
    return out
  }

  // The checks and counter keys of one identity in one set of windows: the same for every request
  // until a window rolls over or a grant starts or ends, so built once and reused (key strings
  // included: the request path then hashes no new strings). ttls computed at build time are a little
  // longer than needed later in the window, which only keeps a closed window's counter longer.
  const plans = new Map<string, Plan>()
  function planFor(id: Identity, now: number, active: Grant[], day: Window, month: Window, minute: Window): Plan {
    let grantsKey = ''
    for (const g of active) grantsKey += g.id + ','
    const key = `${id.team}\0${id.user}\0${id.tool}\0${day.id}\0${month.id}\0${minute.id}\0${grantsKey}`
    let plan = plans.get(key)
    if (plan) return plan
    const scopes = scopesFor(id)
    const usage: UsageKeys[] = []
    for (const w of [day, month]) {
      const ttl = Math.ceil((w.resetAt - now) / 1000) + 2 * 86_400
      for (const sc of scopes) usage.push({ ttl, req: usageKey(w, sc.name, 'req'), hit: usageKey(w, sc.name, 'hit'), blk: usageKey(w, sc.name, 'blk'), stok: usageKey(w, sc.name, 'stok'), susd: usageKey(w, sc.name, 'susd') })
    }
    plan = {
      scopes,
      rpm: checksFor(scopes, ['requestsPerMinute'], 'rpm', now, active, day, month, minute, true),
      tok: checksFor(scopes, ['tokensPerDay', 'tokensPerMonth'], 'tok', now, active, day, month, minute, false),
      usd: checksFor(scopes, ['usdPerDay', 'usdPerMonth'], 'usd', now, active, day, month, minute, false),
      usage,
    }
    // bounded: many identities or a new minute start over
    if (plans.size >= 2000) plans.clear()
    plans.set(key, plan)
    return plan
  }

  async function reserve(checks: Check[], delta: number) {
    const soft = opts.mode === 'soft'
    return mesh.counters.reserve(checks.map((c) => c.key), delta, checks.map((c) => (soft || c.stop === Infinity ? UNLIMITED : c.stop)), checks.map((c) => c.ttl))
  }

  async function release(checks: Check[], delta: number) {
    await Promise.all(checks.map((c) => mesh.counters.incr(c.key, -delta, c.ttl)))
  }

  function noteScope(name: string) {
    if (knownScopes.has(name)) return
    knownScopes.add(name)
    // the list of scopes `usage` reports on; one write per scope per process
    void mesh.storage.setItem(`agentmesh:quota:scopes:${b64(name)}`, { scope: name }).catch((err) => {
      knownScopes.delete(name)
      mesh.log.warn(`quota: cannot record scope ${name}: ${(err as Error).message}`)
    })
  }

  // Intl time-zone math costs ~70 µs; a window stays valid until it ends, so compute it once per window
  let windowCache: { from: number; until: number; day: Window; month: Window } | undefined
  function calendar(now: number): { day: Window; month: Window } {
    if (!windowCache || now < windowCache.from || now >= windowCache.until) {
      const day = dayWindow(now, opts.timezone)
      const month = monthWindow(now, opts.timezone)
      windowCache = { from: now, until: Math.min(day.resetAt, month.resetAt), day, month }
    }
    return windowCache
  }

  const usageKey = (win: Window, scope: string, what: 'req' | 'hit' | 'blk' | 'stok' | 'susd') => `u:${win.id}:${sk(scope)}:${what}`

  async function beforeRequest(ctx: MeshContext) {
    if (ctx.operation === 'count_tokens') return
    const now = Date.now()
    const { day, month } = calendar(now)
    const minute = minuteWindow(now)
    const active = await grants.active(now)
    const { scopes, rpm, tok, usd, usage } = planFor(ctx.identity, now, active, day, month, minute)
    const model = ctx.route.model || ctx.prompt.model

    const input = Math.max(0, Math.round(ctx.usage.inputTokens || 0))
    const maxOut = ctx.operation === 'embeddings' ? 0 : ctx.prompt.maxTokens ?? opts.defaultMaxTokens
    // at least 1: a limit of 0 must refuse even an empty request
    const tokenDelta = Math.max(1, input + maxOut)
    const usdDelta = Math.max(1, Math.ceil(mesh.pricing.cost(model, { inputTokens: input, outputTokens: maxOut, cacheReadTokens: 0, cacheWriteTokens: 0 }) * MICRO))
    const inputUsd = Math.ceil(mesh.pricing.cost(model, { inputTokens: input, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 }) * MICRO)

    const groups: Array<{ checks: Check[]; delta: number; certain: number }> = [
      { checks: rpm, delta: 1, certain: 1 },
      { checks: tok, delta: tokenDelta, certain: Math.max(1, input) },
      { checks: usd, delta: usdDelta, certain: inputUsd },
    ]

    // take every group or none
    const soft = opts.mode === 'soft'
    const limitOf = (c: Check) => (soft || c.stop === Infinity ? UNLIMITED : c.stop)
    let taken: typeof groups = []
    let results: Array<{ values: number[]; ok: boolean }> = []
    let refused = -1
    const counters = mesh.counters
    if (hasBatch(counters)) {
      // one atomic step for all limits (one redis round trip)
      const r = await counters.reserveMany(groups.flatMap((g) => g.checks.map((c) => ({ key: c.key, delta: g.delta, limit: limitOf(c), ttl: c.ttl }))))
      let off = 0
      results = groups.map((g) => {
        const values = r.values.slice(off, off + g.checks.length)
        off += g.checks.length
        return { ok: r.ok, values }
      })
      if (!r.ok) refused = Math.max(0, groups.findIndex((g, gi) => g.checks.some((c, i) => (results[gi]!.values[i] ?? 0) + g.delta > limitOf(c))))
    } else {
      // group by group; a refused group gives back what the earlier ones took
      for (const g of groups) {
        if (!g.checks.length) {
          results.push({ ok: true, values: [] })
          continue
        }
        const r = await reserve(g.checks, g.delta)
        results.push(r)
        if (!r.ok) break
        taken.push(g)
      }
      refused = results.findIndex((r) => !r.ok)
      if (refused < 0) taken = []
    }
    for (const s of scopes) noteScope(s.name)

    // where every limited counter stands
    const states: Array<{ c: Check; used: number; shown: number; pct: number; blocking: boolean; overStop: boolean }> = []
    groups.forEach((g, gi) => {
      const r = results[gi]
      if (!r) return
      g.checks.forEach((c, i) => {
        if (c.limit === Infinity) return
        const v = r.values[i] ?? 0
        const used = r.ok ? v - g.delta : v
        const shown = r.ok ? used + g.certain : used
        states.push({ c, used, shown, pct: c.limit > 0 ? (shown / c.limit) * 100 : 100, blocking: !r.ok && used + g.delta > c.stop, overStop: used + g.delta > c.stop })
      })
    })
    let top = states[0]
    for (const s of states) if (s.pct > top!.pct) top = s

    if (refused >= 0) {
      await Promise.all(taken.map((g) => release(g.checks, g.delta)))
      const blocking = states.filter((s) => s.blocking)
      const first = blocking[0] ?? top!
      const g = groups[refused]!
      const unit = UNIT[first.c.kind]
      const resetAt = Math.max(...blocking.map((s) => s.c.window.resetAt), first.c.window.resetAt)
      const retryAfter = Math.max(1, Math.ceil((resetAt - now) / 1000))
      const need = unit === 'tokens' ? ` (this request reserves up to ${fmt('tokens', g.delta)}: ${fmt('tokens', input)} estimated input + ${fmt('tokens', maxOut)} max output)` : unit === 'usd' ? ` (this request reserves up to ${fmt('usd', g.delta)})` : ''
      const grantHint = first.c.scope.name === 'global' ? 'agentmesh grant --global' : `agentmesh grant --${first.c.scope.name.replace(':', ' ')}`
      const message = `quota exceeded: ${scopeLabel(first.c.scope.name)} ${KIND_LABEL[first.c.kind]}: ${fmt(unit, first.used)} of ${fmt(unit, first.c.limit)} used${need}. ` +
        `Resets in ${humanDuration(resetAt - now)} (${new Date(resetAt).toISOString()}); an admin can add headroom with \`${grantHint} ${unit === 'usd' ? '--usd N' : '--tokens N'} --for 24h\`.`
      ctx.response = { kind: 'error', status: 429, type: 'quota_exceeded', message, headers: { 'Retry-After': String(retryAfter) } }
      ctx.meta.quota = { decision: 'block', limit: `${first.c.scope.name} ${first.c.kind}`, pct: round1(first.pct) } satisfies QuotaDecision
      setHeaders(ctx, first)
      for (const s of blocking) mesh.emit('quota_block', { id: ctx.id, scope: s.c.scope.name, limit: s.c.kind, used: toUnit(s.c.kind, s.used), max: toUnit(s.c.kind, s.c.limit) })
      void addAll(usage.map((u) => ({ key: u.blk, delta: 1, ttl: u.ttl }))).catch(() => {})
      return
    }

    reservations.set(ctx, { tok, usd, tokenDelta, usdDelta, usage })

    const warnings = states.filter((s) => s.pct >= opts.warnAt || s.overStop)
    const softOver = soft && states.some((s) => s.overStop)
    const decision: QuotaDecision['decision'] = softOver ? 'soft' : warnings.length ? 'warn' : 'allow'
    ctx.meta.quota = { decision, ...(top ? { limit: `${top.c.scope.name} ${top.c.kind}`, pct: round1(top.pct) } : {}) } satisfies QuotaDecision
    setHeaders(ctx, top)
    if (warnings.length) {
      const w = warnings.reduce((a, b) => (b.pct > a.pct ? b : a))
      const unit = UNIT[w.c.kind]
      ctx.headers['X-AgentMesh-Quota-Warn'] = `${w.c.scope.name} ${w.c.kind} at ${round1(w.pct).toFixed(1)}% (${fmt(unit, w.shown)} of ${fmt(unit, w.c.limit)})${softOver ? '; over the limit, soft mode does not block' : ''}`
      for (const s of warnings) {
        // one event per limit and window in this process, not one per request
        const key = `${s.c.window.id}|${s.c.key}`
        if (warned.has(key)) continue
        if (warned.size > 10_000) warned.clear()
        warned.add(key)
        mesh.emit('quota_warn', { id: ctx.id, scope: s.c.scope.name, limit: s.c.kind, used: toUnit(s.c.kind, s.shown), max: toUnit(s.c.kind, s.c.limit), pct: round1(s.pct) })
      }
    }
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
    ctx.headers['X-AgentMesh-Quota-Remaining'] = unit === 'usd' ? (remaining / MICRO).toFixed(6) : String(Math.floor(remaining))
    ctx.headers['X-AgentMesh-Quota-Limit'] = `${top.c.scope.name} ${top.c.kind}`
  }

  async function afterResponse(ctx: MeshContext) {
    const r = reservations.get(ctx)
    if (!r) return
    reservations.delete(ctx)
    const hit = ctx.cache.status === 'exact' || ctx.cache.status === 'semantic'
    const model = ctx.answer?.model || ctx.route.model || ctx.prompt.model
    // what the vendor will bill: actual usage when reported; an aborted stream still pays for what
    // it read (the core keeps at least the input estimate); no answer at all (upstream error,
    // another plugin answered) costs nothing
    const billed = hit ? false : !ctx.usage.estimated || !!ctx.aborted
    const tokens = billed ? Math.max(0, Math.round(totalTokens(model, ctx.usage))) : 0
    const micro = billed ? Math.max(0, Math.round((ctx.cost.usd || 0) * MICRO)) : 0
    const entries: CounterEntry[] = []
    if (tokens !== r.tokenDelta) for (const c of r.tok) entries.push({ key: c.key, delta: tokens - r.tokenDelta, ttl: c.ttl })
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
    await addAll(entries)
  }

  /** several increments: one round trip when the counters can batch */
  async function addAll(entries: CounterEntry[]) {
    const counters = mesh.counters
    if (hasBatch(counters)) await counters.incrMany(entries)
    else await Promise.all(entries.map((e) => counters.incr(e.key, e.delta, e.ttl)))
  }

  // --- usage reports ---------------------------------------------------------------------------

  async function listScopes(): Promise<string[]> {
    const keys = await mesh.storage.getKeys('agentmesh:quota:scopes')
    const names = new Set<string>(['global'])
    for (const k of keys) {
      const tail = k.split(':').pop() ?? ''
      try {
        const name = Buffer.from(tail, 'base64url').toString('utf8')
        if (name) names.add(name)
      } catch { /* not ours */ }
    }
    const order = (n: string) => (n === 'global' ? 0 : n.startsWith('team:') ? 1 : n.startsWith('user:') ? 2 : 3)
    return [...names].sort((a, b) => order(a) - order(b) || a.localeCompare(b))
  }

  async function usageReport(now = Date.now()) {
    const day = dayWindow(now, opts.timezone)
    const month = monthWindow(now, opts.timezone)
    const minute = minuteWindow(now)
    const active = await grants.active(now)
    const names = await listScopes()
    const get = (k: string) => mesh.counters.get(k)
    const scopes = await Promise.all(names.map(async (name) => {
      const scope: Scope = { name, limits: limitsOf(name) }
      const windowReport = async (w: Window, kinds: LimitKind[]) => {
        const [requests, hits, blocked, savedTokens, savedMicro, tokens, micro] = await Promise.all([
          get(usageKey(w, name, 'req')), get(usageKey(w, name, 'hit')), get(usageKey(w, name, 'blk')), get(usageKey(w, name, 'stok')), get(usageKey(w, name, 'susd')),
          get(`q:tok:${w.id}:${sk(name)}`), get(`q:usd:${w.id}:${sk(name)}`),
        ])
        const limits: Record<string, { limit: number; used: number; pct: number; remaining: number }> = {}
        for (const kind of kinds) {
          const limit = effectiveLimit(scope, kind, active)
          if (limit === Infinity) continue
          const used = UNIT[kind] === 'tokens' ? tokens : micro
          const stop = Math.floor((limit * opts.hardStopAt) / 100)
          limits[kind] = { limit: toUnit(kind, limit), used: toUnit(kind, used), pct: round1(limit > 0 ? (used / limit) * 100 : 100), remaining: toUnit(kind, Math.max(0, stop - used)) }
        }
        return { window: w.id.slice(1), resetsAt: new Date(w.resetAt).toISOString(), requests, cacheHits: hits, blocked, tokens, usd: micro / MICRO, savedTokens, savedUsd: savedMicro / MICRO, limits }
      }
      const rpmLimit = effectiveLimit(scope, 'requestsPerMinute', active)
      const rpm = rpmLimit === Infinity ? undefined : { limit: rpmLimit, used: await get(`q:rpm:${minute.id}:${sk(name)}`) }
      return {
        scope: name,
        day: await windowReport(day, ['tokensPerDay', 'usdPerDay']),
        month: await windowReport(month, ['tokensPerMonth', 'usdPerMonth']),
        ...(rpm ? { requestsPerMinute: rpm } : {}),
        grants: active.filter((g) => g.scope === name),
      }
    }))
    return { timezone: opts.timezone, generatedAt: new Date(now).toISOString(), mode: opts.mode, warnAt: opts.warnAt, hardStopAt: opts.hardStopAt, scopes }
  }

  function printUsage(report: Awaited<ReturnType<typeof usageReport>>, print: (l: string) => void) {
    for (const which of ['day', 'month'] as const) {
      const first = report.scopes[0]?.[which]
      print(`${which === 'day' ? 'Today' : 'This month'} (${first?.window ?? ''}, ${report.timezone}; resets ${first?.resetsAt ?? ''})`)
      const rows = [['SCOPE', 'REQUESTS', 'TOKENS', 'USD', 'CACHE HITS', 'SAVED TOKENS', 'SAVED USD', 'BLOCKED', 'QUOTA USED']]
      for (const s of report.scopes) {
        const w = s[which]
        const quotaUsed = Object.entries(w.limits).map(([k, l]) => `${l.pct.toFixed(1)}% ${UNIT[k as LimitKind] === 'usd' ? 'usd' : 'tokens'}`).join(', ') || '-'
        rows.push([s.scope, String(w.requests), w.tokens.toLocaleString('en-US'), `$${w.usd.toFixed(4)}`, String(w.cacheHits), w.savedTokens.toLocaleString('en-US'), `$${w.savedUsd.toFixed(4)}`, String(w.blocked), quotaUsed])
      }
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
      for (const r of rows) print('  ' + r.map((c, i) => (i === 0 || i === r.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd())
      print('')
    }
  }

  // --- admin API and CLI ---------------------------------------------------------------------

  function addRoutes() {
    const token = resolveAdminToken(opts.adminToken, 'quota')
    mesh.addRoute('GET', '/agentmesh/admin/usage', async (request) => checkAdmin(request, token) ?? json(200, await usageReport()))
    mesh.addRoute('GET', '/agentmesh/admin/grants', async (request) => {
      const denied = checkAdmin(request, token)
      if (denied) return denied
      const all = new URL(request.url).searchParams.get('all')
      const now = Date.now()
      const list = await grants.list(now)
      return json(200, { grants: all === '1' || all === 'true' ? list : list.filter((g) => Date.parse(g.expires) > now) })
    })
    mesh.addRoute('POST', '/agentmesh/admin/grants', async (request) => {
      const denied = checkAdmin(request, token)
      if (denied) return denied
      const { body, error } = await readJson(request)
      if (error) return error
      const { value, errors } = validateGrant(body)
      if (!value) return adminError(400, 'invalid_request_error', errors.join('; '))
      const grant = await grants.create(value)
      mesh.log.info('quota grant created', { id: grant.id, scope: grant.scope, tokens: grant.tokens, usd: grant.usd, expires: grant.expires })
      return json(201, grant)
    })
    mesh.addRoute('DELETE', '/agentmesh/admin/grants/:id', async (request, params) => {
      const denied = checkAdmin(request, token)
      if (denied) return denied
      const id = params.id ?? ''
      if (!/^grant_[0-9a-f]{12}$/.test(id)) return adminError(400, 'invalid_request_error', `malformed grant id "${id.slice(0, 60)}"`)
      if (!(await grants.remove(id))) return adminError(404, 'not_found_error', `no grant with id ${id}`)
      return json(200, { id, removed: true })
    })
  }

  const needsSharedStorage = (m: Mesh, what: string, print: (l: string) => void) => {
    if (m.config.storage.driver !== 'memory') return false
    print(`${what}: storage is the in-memory driver, so this command cannot reach the running proxy's ${what === 'usage' ? 'counters' : 'grants'}.`)
    print('Configure storage: { driver: \'fs\' } or { driver: \'redis\', url } in agentmesh.config.ts, or use the admin API of the running proxy:')
    print(what === 'usage' ? '  curl http://HOST:PORT/agentmesh/admin/usage -H "Authorization: Bearer $AGENTMESH_ADMIN_TOKEN"' : '  curl -X POST http://HOST:PORT/agentmesh/admin/grants -H "Authorization: Bearer $AGENTMESH_ADMIN_TOKEN" -d \'{"team":"eng","tokens":500000,"for":"24h"}\'')
    return true
  }

  return definePlugin({
    name: 'quota',
    options: { ...options, ...(options.adminToken ? { adminToken: '(set)' } : {}) } as Record<string, unknown>,
    setup(m) {
      mesh = m
      opts = resolveQuotaOptions(options, m.config.quota)
      plans.clear()
      grants = createGrantStore(m.storage, opts.grantsCacheMs)
      if (m.mode === 'serve') addRoutes()
    },
    hooks: { beforeRequest, afterResponse },
    commands: [
      {
        name: 'grant',
        description: 'Add temporary headroom: grant --team eng --tokens 500000 --for 24h (also --user, --tool, --global, --usd)',
        options: [
          { flags: '--team <team>', description: 'team to grant to' },
          { flags: '--user <user>', description: 'user to grant to' },
          { flags: '--tool <tool>', description: 'tool to grant to' },
          { flags: '--global', description: 'grant to the global budget' },
          { flags: '--tokens <n>', description: 'extra tokens on the scope\'s token limits' },
          { flags: '--usd <n>', description: 'extra USD on the scope\'s USD limits' },
          { flags: '--for <duration>', description: 'how long the grant lasts: 24h, 30m, 7d', default: '24h' },
          { flags: '--reason <text>', description: 'why (kept with the grant)' },
        ],
        async run({ mesh: m, options: o, print }) {
          if (needsSharedStorage(m, 'grant', print)) return 1
          const num = (v: unknown) => (v === undefined ? undefined : typeof v === 'number' ? v : /^\s*\d+(\.\d+)?\s*$/.test(String(v)) ? Number(v) : (String(v) as unknown as number))
          const input = {
            ...(o.team !== undefined ? { team: String(o.team) } : {}),
            ...(o.user !== undefined ? { user: String(o.user) } : {}),
            ...(o.tool !== undefined ? { tool: String(o.tool) } : {}),
            ...(o.global ? { global: true } : {}),
            ...(o.tokens !== undefined ? { tokens: num(o.tokens) } : {}),
            ...(o.usd !== undefined ? { usd: num(o.usd) } : {}),
            for: o.for === undefined ? '24h' : String(o.for),
            ...(o.reason !== undefined ? { reason: String(o.reason) } : {}),
          }
          const { value, errors } = validateGrant(input)
          if (!value) {
            print(`grant: ${errors.join('; ')}`)
            return 1
          }
          const store = createGrantStore(m.storage, 0)
          const g = await store.create(value)
          const what = [g.tokens ? `${g.tokens.toLocaleString('en-US')} tokens` : '', g.usd ? `$${g.usd}` : ''].filter(Boolean).join(' and ')
          print(`granted ${what} to ${g.scope} until ${g.expires} (${g.id}); running proxies apply it within ${opts.grantsCacheMs / 1000} s`)
          return 0
        },
      },
      {
        name: 'grants',
        description: 'List temporary grants (--all includes expired ones)',
        options: [{ flags: '--all', description: 'include expired grants' }, { flags: '--json', description: 'print JSON' }],
        async run({ mesh: m, options: o, print }) {
          if (needsSharedStorage(m, 'grants', print)) return 1
          const now = Date.now()
          const list = (await createGrantStore(m.storage, 0).list(now)).filter((g) => o.all || Date.parse(g.expires) > now)
          if (o.json) print(JSON.stringify(list, null, 2))
          else if (!list.length) print(o.all ? 'no grants' : 'no active grants')
          else for (const g of list) print(`${g.id}  ${g.scope}  ${[g.tokens ? `+${g.tokens} tokens` : '', g.usd ? `+$${g.usd}` : ''].filter(Boolean).join(' ')}  until ${g.expires}${Date.parse(g.expires) <= now ? ' (expired)' : ''}${g.reason ? `  "${g.reason}"` : ''}`)
          return 0
        },
      },
      {
        name: 'usage',
        description: 'Usage per team, user and tool today and this month: requests, tokens, USD, cache savings, quota used',
        options: [{ flags: '--json', description: 'print JSON (the same as GET /agentmesh/admin/usage)' }],
        async run({ mesh: m, options: o, print }) {
          if (needsSharedStorage(m, 'usage', print)) return 1
          const report = await usageReport()
          if (o.json) print(JSON.stringify(report, null, 2))
          else printUsage(report, print)
          return 0
        },
      },
    ],
  })
}

const round1 = (n: number) => Math.round(n * 10) / 10

/** counter units back to the limit's own unit (USD for usd limits) */
function toUnit(kind: LimitKind, v: number): number {
  return UNIT[kind] === 'usd' ? v / MICRO : v
}

export { LIMIT_KINDS }
export default quota
