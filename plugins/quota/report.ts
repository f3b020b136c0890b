// Usage reports (GET /agentmesh/admin/usage, `agentmesh usage`): per scope, today and this month,
// requests, tokens, USD, cache savings and how much of each limit is used.
import type { Mesh } from '../../core/types.ts'
import type { Grant } from './grants.ts'
import type { LimitKind } from './options.ts'
import { effectiveLimit, limitsOf, usageKey, type QuotaRuntime, type Scope } from './plan.ts'
import { counterScope, MICRO, round1, toUnit, UNIT } from './units.ts'
import { dayWindow, minuteWindow, monthWindow, type Window } from './windows.ts'

const SCOPES = 'agentmesh:quota:scopes'

/** the storage item that lists a scope for reports (written once per scope per process) */
export const scopeRecordKey = (name: string) => `${SCOPES}:${Buffer.from(name).toString('base64url')}`

async function listScopes(mesh: Mesh): Promise<string[]> {
  const keys = await mesh.storage.getKeys(SCOPES)
  const names = new Set<string>(['global'])
  for (const k of keys) {
    const tail = k.split(':').pop() ?? ''
    try {
      const name = Buffer.from(tail, 'base64url').toString('utf8')
      if (name) names.add(name)
    } catch {
      /* not ours */
    }
  }
  const order = (n: string) => (n === 'global' ? 0 : n.startsWith('team:') ? 1 : n.startsWith('user:') ? 2 : 3)
  return [...names].sort((a, b) => order(a) - order(b) || a.localeCompare(b))
}

interface LimitReport {
  limit: number
  used: number
  pct: number
  remaining: number
}

async function windowReport(rt: QuotaRuntime, scope: Scope, w: Window, kinds: LimitKind[], active: Grant[]) {
  const get = (k: string) => rt.mesh.counters.get(k)
  const name = scope.name
  const [requests, hits, blocked, savedTokens, savedMicro, tokens, micro] = await Promise.all([
    get(usageKey(w, name, 'req')),
    get(usageKey(w, name, 'hit')),
    get(usageKey(w, name, 'blk')),
    get(usageKey(w, name, 'stok')),
    get(usageKey(w, name, 'susd')),
    get(`q:tok:${w.id}:${counterScope(name)}`),
    get(`q:usd:${w.id}:${counterScope(name)}`),
  ])
  const limits: Record<string, LimitReport> = {}
  for (const kind of kinds) {
    const limit = effectiveLimit(scope, kind, active)
    if (limit === Infinity) continue
    const used = UNIT[kind] === 'tokens' ? tokens : micro
    const stop = Math.floor((limit * rt.opts.hardStopAt) / 100)
    limits[kind] = {
      limit: toUnit(kind, limit),
      used: toUnit(kind, used),
      pct: round1(limit > 0 ? (used / limit) * 100 : 100),
      remaining: toUnit(kind, Math.max(0, stop - used)),
    }
  }
  return {
    window: w.id.slice(1),
    resetsAt: new Date(w.resetAt).toISOString(),
    requests,
    cacheHits: hits,
    blocked,
    tokens,
    usd: micro / MICRO,
    savedTokens,
    savedUsd: savedMicro / MICRO,
    limits,
  }
}

export async function usageReport(rt: QuotaRuntime, now = Date.now()) {
  const { opts } = rt
  const day = dayWindow(now, opts.timezone)
  const month = monthWindow(now, opts.timezone)
  const minute = minuteWindow(now)
  const active = await rt.grants.active(now)
  const names = await listScopes(rt.mesh)
  const scopes = await Promise.all(
    names.map(async (name) => {
      const scope: Scope = { name, limits: limitsOf(opts, name) }
      const rpmLimit = effectiveLimit(scope, 'requestsPerMinute', active)
      const rpm =
        rpmLimit === Infinity
          ? undefined
          : { limit: rpmLimit, used: await rt.mesh.counters.get(`q:rpm:${minute.id}:${counterScope(name)}`) }
      return {
        scope: name,
        day: await windowReport(rt, scope, day, ['tokensPerDay', 'usdPerDay'], active),
        month: await windowReport(rt, scope, month, ['tokensPerMonth', 'usdPerMonth'], active),
        ...(rpm ? { requestsPerMinute: rpm } : {}),
        grants: active.filter((g) => g.scope === name),
      }
    }),
  )
  return {
    timezone: opts.timezone,
    generatedAt: new Date(now).toISOString(),
    mode: opts.mode,
    warnAt: opts.warnAt,
    hardStopAt: opts.hardStopAt,
    scopes,
  }
}

export type UsageReport = Awaited<ReturnType<typeof usageReport>>

/** the report as two tables (today, this month) for the terminal */
export function printUsage(report: UsageReport, print: (l: string) => void) {
  for (const which of ['day', 'month'] as const) {
    const first = report.scopes[0]?.[which]
    print(
      `${which === 'day' ? 'Today' : 'This month'} (${first?.window ?? ''}, ${report.timezone}; resets ${first?.resetsAt ?? ''})`,
    )
    const rows = [
      ['SCOPE', 'REQUESTS', 'TOKENS', 'USD', 'CACHE HITS', 'SAVED TOKENS', 'SAVED USD', 'BLOCKED', 'QUOTA USED'],
    ]
    for (const s of report.scopes) {
      const w = s[which]
      const quotaUsed =
        Object.entries(w.limits)
          .map(([k, l]) => `${l.pct.toFixed(1)}% ${UNIT[k as LimitKind] === 'usd' ? 'usd' : 'tokens'}`)
          .join(', ') || '-'
      rows.push([
        s.scope,
        String(w.requests),
        w.tokens.toLocaleString('en-US'),
        `$${w.usd.toFixed(4)}`,
        String(w.cacheHits),
        w.savedTokens.toLocaleString('en-US'),
        `$${w.savedUsd.toFixed(4)}`,
        String(w.blocked),
        quotaUsed,
      ])
    }
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
    for (const r of rows)
      print(
        '  ' +
          r
            .map((c, i) => (i === 0 || i === r.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
            .join('  ')
            .trimEnd(),
      )
    print('')
  }
}
