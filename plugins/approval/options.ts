// The approval gate's options and rules. A rule holds a request when every condition it gives
// holds: estimated cost over $X, model in a list, team/user/tool in a list, prompt over N tokens,
// a predicate of your own (TypeScript, never eval'd text). The first rule that fires decides.
import type { Identity, Pricing, ProtocolName } from '../../core/types.ts'

export type ApprovalMode = 'hold' | 'ask'

/** what a rule sees of a request */
export interface ApprovalRequest {
  identity: Identity
  protocol: ProtocolName
  /** model that would answer (after routing) and its vendor */
  model: string
  vendor: string
  /** worst case: estimated input plus max_tokens (or defaultMaxTokens), priced for the model */
  estimatedUsd: number
  /** estimated input tokens */
  promptTokens: number
}

export interface ApprovalRule {
  /** shown to the client, in the list and in the audit log (default rule-<n>) */
  name?: string
  /** overrides the plugin's mode for this rule */
  mode?: ApprovalMode
  costOverUsd?: number
  /** model names; `*` is a wildcard ('*expensive*') */
  models?: string[]
  teams?: string[]
  users?: string[]
  tools?: string[]
  promptTokensOver?: number
  when?: (request: ApprovalRequest) => boolean
}

export interface ApprovalOptions {
  rules?: ApprovalRule[]
  /** hold: the request waits up to holdSeconds for a decision, then 403; ask (default): 403 at once with the approval id */
  mode?: ApprovalMode
  /** (default 120) */
  holdSeconds?: number
  /** how long a pending approval can still be decided (default 24 h) */
  pendingSeconds?: number
  /** how long an approved id can be re-sent (default 1 h); it is single use either way */
  grantSeconds?: number
  /** the output a request that names no max_tokens is priced at (default 4096) */
  defaultMaxTokens?: number
  /** how often a held request looks for a decision made elsewhere (default 500 ms) */
  pollMs?: number
  /** an `ask` rule for requests estimated above this cost (what `--approve-over USD` sets) */
  approveOverUsd?: number
  /** token for /agentmesh/admin/approvals (default: env AGENTMESH_ADMIN_TOKEN) */
  adminToken?: string
}

export interface ResolvedRule extends ApprovalRule {
  name: string
  mode: ApprovalMode
}

const KEYS = [
  'rules',
  'mode',
  'holdSeconds',
  'pendingSeconds',
  'grantSeconds',
  'defaultMaxTokens',
  'pollMs',
  'approveOverUsd',
  'adminToken',
]
const RULE_KEYS = ['name', 'mode', 'costOverUsd', 'models', 'teams', 'users', 'tools', 'promptTokensOver', 'when']
const CONDITIONS = ['costOverUsd', 'models', 'teams', 'users', 'tools', 'promptTokensOver', 'when']

function fail(field: string, expected: string, got: unknown): never {
  throw new Error(
    `approval: ${field} must be ${expected}, got ${typeof got === 'function' ? 'a function' : JSON.stringify(got)?.slice(0, 80)}`,
  )
}

const positive = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v > 0

function checkRule(r: ApprovalRule, at: string) {
  if (!r || typeof r !== 'object' || Array.isArray(r)) fail(at, 'an object', r)
  for (const k of Object.keys(r))
    if (!RULE_KEYS.includes(k)) fail(`${at}.${k}`, `one of ${RULE_KEYS.join(', ')} (unknown field)`, k)
  if (!CONDITIONS.some((k) => (r as Record<string, unknown>)[k] !== undefined))
    fail(at, `a rule with at least one of ${CONDITIONS.join(', ')}`, r)
  if (r.name !== undefined && (typeof r.name !== 'string' || !/^[\w.:-]{1,64}$/.test(r.name)))
    fail(`${at}.name`, '1 to 64 letters, digits or . _ : -', r.name)
  if (r.mode !== undefined && r.mode !== 'hold' && r.mode !== 'ask') fail(`${at}.mode`, '"hold" or "ask"', r.mode)
  if (r.costOverUsd !== undefined && !(typeof r.costOverUsd === 'number' && r.costOverUsd >= 0))
    fail(`${at}.costOverUsd`, 'a number of USD >= 0', r.costOverUsd)
  if (r.promptTokensOver !== undefined && !(typeof r.promptTokensOver === 'number' && r.promptTokensOver >= 0))
    fail(`${at}.promptTokensOver`, 'a number >= 0', r.promptTokensOver)
  for (const k of ['models', 'teams', 'users', 'tools'] as const) {
    const v = r[k]
    if (v !== undefined && (!Array.isArray(v) || !v.length || v.some((s) => typeof s !== 'string' || !s)))
      fail(`${at}.${k}`, 'a non-empty array of names', v)
  }
  if (r.when !== undefined && typeof r.when !== 'function')
    fail(`${at}.when`, 'a function (request) => boolean', r.when)
}

export function resolveApprovalOptions(o: ApprovalOptions, approveOverUsd?: number) {
  if (!o || typeof o !== 'object' || Array.isArray(o)) fail('options', 'an object', o)
  for (const k of Object.keys(o)) if (!KEYS.includes(k)) fail(k, `one of ${KEYS.join(', ')} (unknown option)`, k)
  if (o.rules !== undefined && !Array.isArray(o.rules)) fail('rules', 'an array of rules', o.rules)
  o.rules?.forEach((r, i) => checkRule(r, `rules[${i}]`))
  if (o.mode !== undefined && o.mode !== 'hold' && o.mode !== 'ask') fail('mode', '"hold" or "ask"', o.mode)
  for (const k of ['holdSeconds', 'pendingSeconds', 'grantSeconds', 'defaultMaxTokens', 'pollMs'] as const)
    if (o[k] !== undefined && !positive(o[k])) fail(k, 'a positive number', o[k])
  const over = approveOverUsd ?? o.approveOverUsd
  if (over !== undefined && !(typeof over === 'number' && over >= 0))
    fail('approveOverUsd', 'a number of USD >= 0', over)
  if (o.adminToken !== undefined && (typeof o.adminToken !== 'string' || o.adminToken.length < 16))
    fail('adminToken', 'a string of at least 16 characters', '(hidden)')
  const mode = o.mode ?? 'ask'
  const rules: ResolvedRule[] = (o.rules ?? []).map((r, i) => ({
    ...r,
    name: r.name ?? `rule-${i + 1}`,
    mode: r.mode ?? mode,
  }))
  if (over !== undefined) rules.push({ name: `approve-over-${over}`, mode: 'ask', costOverUsd: over })
  return {
    rules,
    holdSeconds: o.holdSeconds ?? 120,
    pendingSeconds: o.pendingSeconds ?? 24 * 3600,
    grantSeconds: o.grantSeconds ?? 3600,
    defaultMaxTokens: o.defaultMaxTokens ?? 4096,
    pollMs: o.pollMs ?? 500,
    adminToken: o.adminToken,
  }
}
export type ResolvedApprovalOptions = ReturnType<typeof resolveApprovalOptions>

const globs = new Map<string, RegExp>()
function globOf(p: string): RegExp {
  let re = globs.get(p)
  if (!re) {
    const source = p
      .split('*')
      .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')
    re = new RegExp(`^${source}$`, 'i')
    globs.set(p, re)
  }
  return re
}

// a loop, not some(): no closure per rule and request
function matches(patterns: string[] | undefined, name: string): boolean {
  if (!patterns) return true
  for (const p of patterns) if (p.includes('*') ? globOf(p).test(name) : p === name) return true
  return false
}

/** req.estimatedUsd, priced on first use (NaN until then): a rule that fails on its names needs no price */
function priced(req: ApprovalRequest, pricing: Pricing, outputTokens: number): number {
  if (Number.isNaN(req.estimatedUsd))
    req.estimatedUsd = pricing.cost(req.model, {
      inputTokens: req.promptTokens,
      outputTokens,
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
    })
  return req.estimatedUsd
}

/**
 * The first rule that fires, with why in words; undefined when none does. req.estimatedUsd may be
 * NaN (not priced yet): it is priced with `outputTokens` when a rule gets to its cost or its own
 * condition, and always for the rule that fires.
 */
export function firstRule(
  rules: ResolvedRule[],
  req: ApprovalRequest,
  pricing: Pricing,
  outputTokens: number,
): { rule: ResolvedRule; reason: string } | undefined {
  for (const rule of rules) {
    // every condition first, the words only for the rule that fires: no list per rule and request;
    // the cheap ones before the price, the rule's own predicate last (it sees the whole request)
    if (rule.promptTokensOver !== undefined && !(req.promptTokens > rule.promptTokensOver)) continue
    if (
      !matches(rule.models, req.model) ||
      !matches(rule.teams, req.identity.team) ||
      !matches(rule.users, req.identity.user) ||
      !matches(rule.tools, req.identity.tool)
    )
      continue
    const usd = priced(req, pricing, outputTokens)
    if (rule.costOverUsd !== undefined && !(usd > rule.costOverUsd)) continue
    if (rule.when && !rule.when(req)) continue
    return { rule, reason: reasonOf(rule, req) }
  }
  return undefined
}

function reasonOf(rule: ResolvedRule, req: ApprovalRequest): string {
  const why: string[] = []
  if (rule.costOverUsd !== undefined)
    why.push(`estimated cost up to $${req.estimatedUsd.toFixed(4)} is over $${rule.costOverUsd}`)
  if (rule.promptTokensOver !== undefined)
    why.push(`prompt of about ${req.promptTokens} tokens is over ${rule.promptTokensOver}`)
  if (rule.models) why.push(`model ${req.model} is listed`)
  if (rule.teams || rule.users || rule.tools)
    why.push(`team ${req.identity.team} / user ${req.identity.user} / tool ${req.identity.tool} is listed`)
  if (rule.when) why.push('its condition holds')
  return why.join('; ')
}
