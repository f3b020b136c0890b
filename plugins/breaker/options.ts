// The breaker's options: per-run budgets and loop thresholds, as defaults, per team and per rule
// (first matching rule, then the team's entry, then the defaults; field by field). `null` turns a
// limit off, so a config can switch off what a preset sets.

export interface RunLimits {
  /** LLM calls per run (default 200) */
  calls?: number | null
  /** tokens per run, input and output (default: off) */
  tokens?: number | null
  /** USD per run (default 20) */
  usd?: number | null
  /** seconds from the run's first call (default 7200) */
  wallSeconds?: number | null
}

export interface LoopLimits {
  /** the same tool call with the same arguments this many times in one transcript (default 5) */
  toolCallRepeats?: number | null
  /** the same assistant answer (text, no tool call) this many times in a row in the transcript (default 4) */
  answerRepeats?: number | null
  /** the same request body this many times within bodyWindowSeconds (default 20; a script that repeats one prompt trips it) */
  bodyRepeats?: number | null
  /** (default 60) */
  bodyWindowSeconds?: number
}

export interface BreakerRule {
  /** every given field must match; a list matches any of its names, `*` anywhere in a name is a wildcard */
  match: { teams?: string[]; users?: string[]; tools?: string[]; models?: string[] }
  limits?: RunLimits
  loops?: LoopLimits
}

export interface BreakerOptions {
  limits?: RunLimits
  loops?: LoopLimits
  teams?: Record<string, { limits?: RunLimits; loops?: LoopLimits }>
  rules?: BreakerRule[]
  /** run_warn and X-AgentMesh-Run-Warn from this percentage of a limit (default 80) */
  warnAt?: number
  /** how long a run's state is kept after its first call, seconds (default 24 h, at least wallSeconds) */
  ttlSeconds?: number
  /** token for /agentmesh/admin/runs (default: env AGENTMESH_ADMIN_TOKEN) */
  adminToken?: string
}

/** limits as the counters use them: Infinity when off */
export interface Effective {
  calls: number
  tokens: number
  usd: number
  wallSeconds: number
  toolCallRepeats: number
  answerRepeats: number
  bodyRepeats: number
  bodyWindowSeconds: number
}

export const DEFAULT_LIMITS: Required<RunLimits> = { calls: 200, tokens: null, usd: 20, wallSeconds: 7200 }
export const DEFAULT_LOOPS: Required<LoopLimits> = {
  toolCallRepeats: 5,
  answerRepeats: 4,
  bodyRepeats: 20,
  bodyWindowSeconds: 60,
}

const LIMIT_KEYS = ['calls', 'tokens', 'usd', 'wallSeconds'] as const
const LOOP_KEYS = ['toolCallRepeats', 'answerRepeats', 'bodyRepeats', 'bodyWindowSeconds'] as const
const OPTION_KEYS = ['limits', 'loops', 'teams', 'rules', 'warnAt', 'ttlSeconds', 'adminToken']

function fail(field: string, expected: string, got: unknown): never {
  throw new Error(`breaker: ${field} must be ${expected}, got ${JSON.stringify(got)?.slice(0, 80)}`)
}

function checkObject(v: unknown, field: string, keys: readonly string[]): asserts v is Record<string, unknown> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) fail(field, 'an object', v)
  for (const k of Object.keys(v))
    if (!keys.includes(k)) fail(`${field}.${k}`, `one of ${keys.join(', ')} (unknown field)`, k)
}

function checkNumbers(v: unknown, field: string, keys: readonly string[]): void {
  if (v === undefined) return
  checkObject(v, field, keys)
  for (const [k, n] of Object.entries(v)) {
    if (n === null && k !== 'bodyWindowSeconds') continue
    if (typeof n !== 'number' || !Number.isFinite(n) || n <= 0)
      fail(`${field}.${k}`, k === 'bodyWindowSeconds' ? 'a positive number' : 'a positive number or null (off)', n)
    if (k.endsWith('Repeats') && (!Number.isInteger(n) || n < 2))
      fail(`${field}.${k}`, 'an integer of at least 2, or null (off)', n)
  }
}

function checkNames(v: unknown, field: string): void {
  if (v === undefined) return
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || !s)) fail(field, 'an array of names', v)
}

export function validateBreakerOptions(o: BreakerOptions): void {
  checkObject(o, 'options', OPTION_KEYS)
  checkNumbers(o.limits, 'limits', LIMIT_KEYS)
  checkNumbers(o.loops, 'loops', LOOP_KEYS)
  if (o.teams !== undefined) {
    checkObject(o.teams, 'teams', Object.keys(o.teams ?? {}))
    for (const [team, t] of Object.entries(o.teams)) {
      checkObject(t, `teams.${team}`, ['limits', 'loops'])
      checkNumbers(t.limits, `teams.${team}.limits`, LIMIT_KEYS)
      checkNumbers(t.loops, `teams.${team}.loops`, LOOP_KEYS)
    }
  }
  if (o.rules !== undefined && !Array.isArray(o.rules)) fail('rules', 'an array', o.rules)
  o.rules?.forEach((r, i) => {
    checkObject(r, `rules[${i}]`, ['match', 'limits', 'loops'])
    checkObject(r.match, `rules[${i}].match`, ['teams', 'users', 'tools', 'models'])
    for (const k of ['teams', 'users', 'tools', 'models'] as const) checkNames(r.match[k], `rules[${i}].match.${k}`)
    checkNumbers(r.limits, `rules[${i}].limits`, LIMIT_KEYS)
    checkNumbers(r.loops, `rules[${i}].loops`, LOOP_KEYS)
  })
  if (o.warnAt !== undefined && (typeof o.warnAt !== 'number' || !(o.warnAt > 0 && o.warnAt <= 100)))
    fail('warnAt', 'a percentage above 0, at most 100', o.warnAt)
  if (o.ttlSeconds !== undefined && (typeof o.ttlSeconds !== 'number' || !(o.ttlSeconds > 0)))
    fail('ttlSeconds', 'a positive number of seconds', o.ttlSeconds)
  if (o.adminToken !== undefined && (typeof o.adminToken !== 'string' || o.adminToken.length < 16))
    fail('adminToken', 'a string of at least 16 characters', '(hidden)')
}

const globs = new Map<string, RegExp>()
export function nameMatches(patterns: string[] | undefined, name: string): boolean {
  if (!patterns) return true
  return patterns.some((p) => {
    if (!p.includes('*')) return p === name
    let re = globs.get(p)
    if (!re)
      globs.set(
        p,
        (re = new RegExp(
          '^' +
            p
              .split('*')
              .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
              .join('.*') +
            '$',
        )),
      )
    return re.test(name)
  })
}

/** The limits for one request: rule over team over defaults, field by field. */
export function effectiveLimits(
  o: BreakerOptions,
  who: { team: string; user: string; tool: string; model: string },
): Effective {
  const rule = o.rules?.find(
    (r) =>
      nameMatches(r.match.teams, who.team) &&
      nameMatches(r.match.users, who.user) &&
      nameMatches(r.match.tools, who.tool) &&
      nameMatches(r.match.models, who.model),
  )
  const team = o.teams?.[who.team]
  const layers = [rule, team, { limits: o.limits, loops: o.loops }, { limits: DEFAULT_LIMITS, loops: DEFAULT_LOOPS }]
  const pick = <K extends keyof RunLimits | keyof LoopLimits>(group: 'limits' | 'loops', k: K): number => {
    for (const l of layers) {
      const v = (l?.[group] as Record<string, number | null | undefined> | undefined)?.[k]
      if (v !== undefined) return v === null ? Infinity : v
    }
    return Infinity
  }
  const out = {} as Effective
  for (const k of LIMIT_KEYS) out[k] = pick('limits', k)
  for (const k of LOOP_KEYS) out[k] = pick('loops', k)
  return out
}
