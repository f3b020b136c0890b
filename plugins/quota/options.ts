// Quota options: their types (editor completion in agentmesh.config.ts) and the validation that
// names the field, e.g. `quota: limits.teams.eng.tokensPerDay must be a non-negative number, got "abc"`.
import type { QuotaShortConfig } from '../../core/types.ts'
import { zoneFormatter } from './windows.ts'

/** Limits for one scope. Absent = unlimited; 0 = nothing allowed. */
export interface QuotaLimits {
  /** tokens (input + output, cached input counted once) per calendar day */
  tokensPerDay?: number
  /** tokens per calendar month */
  tokensPerMonth?: number
  /** USD per calendar day, priced at the model that answered */
  usdPerDay?: number
  /** USD per calendar month */
  usdPerMonth?: number
  /** requests per minute */
  requestsPerMinute?: number
}

export interface QuotaOptions {
  limits?: {
    /** one budget for all traffic through this AgentMesh */
    global?: QuotaLimits
    /** per team, by team name */
    teams?: Record<string, QuotaLimits>
    /** per user, by user name */
    users?: Record<string, QuotaLimits>
    /** per tool (claude-code, cursor, openai-sdk, ...) */
    tools?: Record<string, QuotaLimits>
    /** for every team not listed in `teams` */
    defaultTeam?: QuotaLimits
    /** for every user not listed in `users` */
    defaultUser?: QuotaLimits
    /** for every tool not listed in `tools` */
    defaultTool?: QuotaLimits
  }
  /** warn (header X-AgentMesh-Quota-Warn, event quota_warn) from this percentage of a limit (default 80) */
  warnAt?: number
  /** block from this percentage of a limit (default 100; 110 lets a team overrun by 10%) */
  hardStopAt?: number
  /** 'hard' blocks with a 429 (default); 'soft' only warns */
  mode?: 'hard' | 'soft'
  /** IANA time zone of the calendar windows (default 'UTC') */
  timezone?: string
  /** output tokens reserved for a request that sets no max_tokens (default 4096) */
  defaultMaxTokens?: number
  /** token for /agentmesh/admin/usage and /agentmesh/admin/grants (default: env AGENTMESH_ADMIN_TOKEN) */
  adminToken?: string
  /** how long grants read from storage are reused, ms (default 2000): the delay before a grant made by another process applies */
  grantsCacheMs?: number
}

export type LimitKind = keyof QuotaLimits
export const LIMIT_KINDS: LimitKind[] = [
  'tokensPerDay',
  'tokensPerMonth',
  'usdPerDay',
  'usdPerMonth',
  'requestsPerMinute',
]

export interface ResolvedQuotaOptions {
  limits: {
    global?: QuotaLimits
    teams: Record<string, QuotaLimits>
    users: Record<string, QuotaLimits>
    tools: Record<string, QuotaLimits>
    defaultTeam?: QuotaLimits
    defaultUser?: QuotaLimits
    defaultTool?: QuotaLimits
  }
  warnAt: number
  hardStopAt: number
  mode: 'hard' | 'soft'
  timezone: string
  defaultMaxTokens: number
  adminToken?: string
  grantsCacheMs: number
}

const shown = (v: unknown) =>
  typeof v === 'string'
    ? `"${v}"`
    : v === undefined
      ? 'undefined'
      : typeof v === 'number' && !Number.isFinite(v)
        ? String(v)
        : JSON.stringify(v)

function fail(field: string, expected: string, got: unknown): never {
  throw new Error(`quota: ${field} must be ${expected}, got ${shown(got)}`)
}

const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v)

function checkLimits(field: string, v: unknown): QuotaLimits {
  if (!isObj(v)) fail(field, 'an object such as { tokensPerDay: 1000000 }', v)
  for (const [k, n] of Object.entries(v)) {
    if (!(LIMIT_KINDS as string[]).includes(k)) fail(`${field}.${k}`, `one of ${LIMIT_KINDS.join(', ')}`, k)
    if (n === undefined) continue
    if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) fail(`${field}.${k}`, 'a non-negative number', n)
  }
  return { ...v } as QuotaLimits
}

function checkMap(field: string, v: unknown): Record<string, QuotaLimits> {
  if (v === undefined) return {}
  if (!isObj(v)) fail(field, 'an object keyed by name', v)
  return Object.fromEntries(Object.entries(v).map(([name, l]) => [name, checkLimits(`${field}.${name}`, l)]))
}

function percentage(field: string, v: unknown, dflt: number): number {
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > 1000)
    fail(field, 'a percentage above 0 (e.g. 80)', v)
  return v
}

const OPTION_KEYS = [
  'limits',
  'warnAt',
  'hardStopAt',
  'mode',
  'timezone',
  'defaultMaxTokens',
  'adminToken',
  'grantsCacheMs',
]

/** Validates options (and the CLI's short form merged over them); throws naming the field. */
export function resolveQuotaOptions(options: QuotaOptions, short?: QuotaShortConfig): ResolvedQuotaOptions {
  if (!isObj(options)) fail('options', 'an object', options)
  for (const k of Object.keys(options))
    if (!OPTION_KEYS.includes(k)) fail(k, `a known option (${OPTION_KEYS.join(', ')})`, k)
  const l = options.limits ?? {}
  if (!isObj(l)) fail('limits', 'an object with global, teams, users, tools, defaultTeam, defaultUser, defaultTool', l)
  for (const k of Object.keys(l))
    if (!['global', 'teams', 'users', 'tools', 'defaultTeam', 'defaultUser', 'defaultTool'].includes(k))
      fail(`limits.${k}`, 'one of global, teams, users, tools, defaultTeam, defaultUser, defaultTool', k)
  const limits: ResolvedQuotaOptions['limits'] = {
    teams: checkMap('limits.teams', l.teams),
    users: checkMap('limits.users', l.users),
    tools: checkMap('limits.tools', l.tools),
    ...(l.global !== undefined ? { global: checkLimits('limits.global', l.global) } : {}),
    ...(l.defaultTeam !== undefined ? { defaultTeam: checkLimits('limits.defaultTeam', l.defaultTeam) } : {}),
    ...(l.defaultUser !== undefined ? { defaultUser: checkLimits('limits.defaultUser', l.defaultUser) } : {}),
    ...(l.defaultTool !== undefined ? { defaultTool: checkLimits('limits.defaultTool', l.defaultTool) } : {}),
  }
  let warnAt = percentage('warnAt', options.warnAt, 80)
  let hardStopAt = percentage('hardStopAt', options.hardStopAt, 100)
  if (short !== undefined) {
    // the CLI form (--team-limit, --warn-at, --hard-stop-at) wins over the config file
    if (!isObj(short)) fail('config.quota', 'an object { teamDailyTokens, warnAt?, hardStopAt? }', short)
    const daily = short.teamDailyTokens ?? {}
    if (!isObj(daily)) fail('config.quota.teamDailyTokens', 'an object of team -> tokens', daily)
    for (const [team, n] of Object.entries(daily)) {
      if (typeof n !== 'number' || !Number.isFinite(n) || n < 0)
        fail(`config.quota.teamDailyTokens.${team} (--team-limit ${team}=...)`, 'a non-negative number', n)
      limits.teams[team] = { ...limits.teams[team], tokensPerDay: n }
    }
    warnAt = percentage('config.quota.warnAt (--warn-at)', short.warnAt, warnAt)
    hardStopAt = percentage('config.quota.hardStopAt (--hard-stop-at)', short.hardStopAt, hardStopAt)
  }
  const mode = options.mode ?? 'hard'
  if (mode !== 'hard' && mode !== 'soft') fail('mode', '"hard" or "soft"', mode)
  const timezone = options.timezone ?? 'UTC'
  try {
    if (typeof timezone !== 'string') throw new RangeError()
    zoneFormatter(timezone)
  } catch {
    fail('timezone', 'an IANA time zone such as "UTC" or "Europe/Berlin"', timezone)
  }
  const defaultMaxTokens = options.defaultMaxTokens ?? 4096
  if (typeof defaultMaxTokens !== 'number' || !Number.isInteger(defaultMaxTokens) || defaultMaxTokens < 0)
    fail('defaultMaxTokens', 'a non-negative integer', defaultMaxTokens)
  if (options.adminToken !== undefined && (typeof options.adminToken !== 'string' || options.adminToken.length < 16))
    fail('adminToken', 'a string of at least 16 characters', '(hidden)')
  const grantsCacheMs = options.grantsCacheMs ?? 2000
  if (typeof grantsCacheMs !== 'number' || !(grantsCacheMs >= 0))
    fail('grantsCacheMs', 'a non-negative number of milliseconds', grantsCacheMs)
  return {
    limits,
    warnAt,
    hardStopAt,
    mode,
    timezone,
    defaultMaxTokens,
    ...(options.adminToken ? { adminToken: options.adminToken } : {}),
    grantsCacheMs,
  }
}
