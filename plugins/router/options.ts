// The router's options as a config file writes them, and their validation into the compiled form
// the request path reads (globs to RegExps, name lists to Sets), so a request does no parsing.
import type { ProtocolName } from '../../core/types.ts'
import type { ModelCapabilities } from './capabilities.ts'

/** What a rule (data or function) can see of a request. */
export interface RouteRequest {
  team: string
  user: string
  tool: string
  protocol: ProtocolName
  /** the model as the client asked for it (an alias, or a concrete model) */
  model: string
  /** whether `model` is one of the configured aliases */
  alias: boolean
  /** estimated input tokens (the prompt's size) */
  inputTokens: number
  /** max output tokens the client asked for, if it did */
  maxTokens: number | undefined
  tools: boolean
  images: boolean
  /** JSON output asked for: 'object' (schema-less JSON mode), 'schema', or false */
  json: 'object' | 'schema' | false
  stream: boolean
}

/** A data condition: every field given must hold. Strings accept `*` globs; a list means any of. */
export interface RouteMatch {
  team?: string | string[]
  user?: string | string[]
  tool?: string | string[]
  protocol?: ProtocolName | ProtocolName[]
  /** the requested model (or alias) */
  model?: string | string[]
  /** estimated input tokens at least / at most */
  minInputTokens?: number
  maxInputTokens?: number
  /** the request carries tools (true) or none (false) */
  tools?: boolean
  /** the request carries images (true) or none (false) */
  images?: boolean
}

/** 'ordered': the chosen target, then the fallbacks in order; 'lowest-latency': the fastest of them first */
export type RouteStrategy = 'ordered' | 'lowest-latency'

/** A target: `model` (the vendor is the configured one serving it) or `vendor/model`. */
export type RouteTarget = string

export interface RouteRule {
  /** named in X-AgentMesh-Route-Reason, the route event and the audit log */
  name: string
  /** a data condition, or a TypeScript function of the request (never a string to evaluate) */
  match?: RouteMatch | ((req: RouteRequest) => boolean)
  /** pin this model: no choice is made */
  model?: RouteTarget
  /** choose the cheapest capable among these (model names, or the name of an alias) */
  candidates?: RouteTarget[] | string
  /** ordered fallback targets after the chosen one (default: the other capable candidates, cheapest first) */
  fallbacks?: RouteTarget[]
  /** the complexity tier for this rule's choices (default: the router's `complexity`) */
  complexity?: boolean
  /** how the core's attempt loop orders this route and its fallbacks (default: the router's `strategy`; docs/routing.md) */
  strategy?: RouteStrategy
  /**
   * whether the rule also applies to a request that names a concrete model (not an alias); default
   * true when `match` names a team (or the model), false otherwise: a client that names a model
   * keeps it unless a rule for its team says otherwise
   */
  concrete?: boolean
}

export interface ComplexityOptions {
  /** a question at most this many estimated input tokens, without code, tools or images, is "short" (default 400) */
  shortTokens?: number
  /** at least this many estimated input tokens makes a request "long" (default 8,000) */
  longTokens?: number
}

export interface RouterOptions {
  /** model names clients may send that stand for a list of candidates: `{ fast: ['claude-haiku-4-5', 'gpt-4o-mini'] }` */
  aliases?: Record<string, RouteTarget[]>
  /** evaluated in order; the first that matches decides */
  rules?: RouteRule[]
  /** per-model capability rows, over the built-in table (plugins/router/capabilities.ts) */
  capabilities?: Record<string, Partial<ModelCapabilities>>
  /**
   * the complexity tier (default on): a short plain question may go to a small model, a long or
   * code/reasoning request only to a large one (or the largest capable candidate); false: cheapest capable, always
   */
  complexity?: boolean | ComplexityOptions
  /** output tokens assumed when pricing candidates for a request that sets no max_tokens (default 1,024) */
  assumedOutputTokens?: number
  /** fallbacks added from the other capable candidates when a rule gives none (default 2; 0: none) */
  maxFallbacks?: number
  /** the attempt loop's order for routed requests (default: the core's, 'ordered') */
  strategy?: RouteStrategy
}

// ---------------------------------------------------------------- compiled form

export type Matcher = (req: RouteRequest) => boolean

export interface CompiledRule {
  name: string
  test: Matcher
  concrete: boolean
  model?: RouteTarget
  candidates?: RouteTarget[]
  fallbacks?: RouteTarget[]
  complexity?: boolean
  strategy?: RouteStrategy
}

export interface CompiledOptions {
  aliases: Map<string, RouteTarget[]>
  rules: CompiledRule[]
  /** the rules that apply to a request naming a concrete model */
  concreteRules: CompiledRule[]
  capabilities: Record<string, ModelCapabilities>
  complexity: false | Required<ComplexityOptions>
  assumedOutputTokens: number
  maxFallbacks: number
  strategy?: RouteStrategy
}

const fail = (msg: string): never => {
  throw new Error(`router: ${msg}`)
}

const list = <T>(v: T | T[]): T[] => (Array.isArray(v) ? v : [v])

function glob(pattern: string): RegExp {
  const src = pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')
  return new RegExp(`^${src}$`, 'i')
}

/** one field of a data match: exact names in a Set, globs as RegExps */
function nameTest(field: string, v: unknown): (s: string) => boolean {
  const names = list(v as string | string[])
  if (!names.length || names.some((n) => typeof n !== 'string' || !n))
    fail(`${field} must be a non-empty string or list of strings`)
  const plain = names.filter((n) => !n.includes('*'))
  const globs = names.filter((n) => n.includes('*')).map(glob)
  // one name (the usual `team: 'x'`): a comparison, not a Set's hash lookup, on every request
  if (!globs.length && plain.length === 1) {
    const only = plain[0]!
    return (s) => s === only
  }
  const exact = new Set(plain)
  if (!globs.length) return (s) => exact.has(s)
  return (s) => exact.has(s) || globs.some((g) => g.test(s))
}

const MATCH_KEYS = new Set([
  'team',
  'user',
  'tool',
  'protocol',
  'model',
  'minInputTokens',
  'maxInputTokens',
  'tools',
  'images',
])

/** a test of one named field, read as a fixed property (r[f] with f a variable is a keyed load on every request) */
function fieldTest(f: 'team' | 'user' | 'tool' | 'protocol' | 'model', t: (s: string) => boolean): Matcher {
  switch (f) {
    case 'team':
      return (r) => t(r.team)
    case 'user':
      return (r) => t(r.user)
    case 'tool':
      return (r) => t(r.tool)
    case 'protocol':
      return (r) => t(r.protocol)
    case 'model':
      return (r) => t(r.model)
  }
}

function compileMatch(where: string, m: RouteMatch | Matcher | undefined): Matcher {
  if (m === undefined) return () => true
  if (typeof m === 'function') return m
  if (!m || typeof m !== 'object') return fail(`${where}.match must be an object or a function`)
  for (const k of Object.keys(m))
    if (!MATCH_KEYS.has(k)) fail(`${where}.match has an unknown field "${k}" (expected ${[...MATCH_KEYS].join(', ')})`)
  const tests: Matcher[] = []
  for (const f of ['team', 'user', 'tool', 'protocol', 'model'] as const) {
    if (m[f] === undefined) continue
    const t = nameTest(`${where}.match.${f}`, m[f])
    tests.push(fieldTest(f, t))
  }
  for (const f of ['minInputTokens', 'maxInputTokens'] as const) {
    const n = m[f]
    if (n === undefined) continue
    if (typeof n !== 'number' || !(n >= 0)) fail(`${where}.match.${f} must be a non-negative number`)
  }
  if (m.minInputTokens !== undefined) tests.push((r) => r.inputTokens >= m.minInputTokens!)
  if (m.maxInputTokens !== undefined) tests.push((r) => r.inputTokens <= m.maxInputTokens!)
  for (const f of ['tools', 'images'] as const) {
    if (m[f] === undefined) continue
    if (typeof m[f] !== 'boolean') fail(`${where}.match.${f} must be true or false`)
    const want = m[f]
    tests.push(f === 'tools' ? (r) => r.tools === want : (r) => r.images === want)
  }
  if (tests.length === 1) return tests[0]!
  return (r) => {
    for (const t of tests) if (!t(r)) return false
    return true
  }
}

function targets(where: string, v: unknown): RouteTarget[] {
  if (!Array.isArray(v) || !v.length || v.some((t) => typeof t !== 'string' || !t.trim()))
    fail(`${where} must be a non-empty list of model names (or vendor/model)`)
  return (v as string[]).map((t) => t.trim())
}

function compileRule(r: RouteRule, i: number, aliases: Map<string, RouteTarget[]>): CompiledRule {
  const where = `rules[${i}]`
  if (!r || typeof r !== 'object') return fail(`${where} must be an object`)
  if (typeof r.name !== 'string' || !r.name.trim())
    fail(`${where}.name must be a non-empty string (it names the decision in X-AgentMesh-Route-Reason)`)
  if (r.model !== undefined && r.candidates !== undefined)
    fail(`${where} (${r.name}) sets both model and candidates; a rule pins a model or chooses among candidates`)
  if (r.model !== undefined && (typeof r.model !== 'string' || !r.model.trim()))
    fail(`${where}.model must be a model name`)
  let candidates: RouteTarget[] | undefined
  if (typeof r.candidates === 'string')
    candidates = aliases.get(r.candidates) ?? fail(`${where}.candidates names "${r.candidates}", which is not an alias`)
  else if (r.candidates !== undefined) candidates = targets(`${where}.candidates`, r.candidates)
  if (r.complexity !== undefined && typeof r.complexity !== 'boolean') fail(`${where}.complexity must be true or false`)
  if (r.concrete !== undefined && typeof r.concrete !== 'boolean') fail(`${where}.concrete must be true or false`)
  checkStrategy(`${where}.strategy`, r.strategy)
  const dataMatch = r.match && typeof r.match === 'object' ? r.match : undefined
  return {
    name: r.name.trim(),
    test: compileMatch(where, r.match),
    concrete: r.concrete ?? (dataMatch?.team !== undefined || dataMatch?.model !== undefined),
    model: r.model?.trim(),
    candidates,
    fallbacks: r.fallbacks === undefined ? undefined : targets(`${where}.fallbacks`, r.fallbacks),
    complexity: r.complexity,
    strategy: r.strategy,
  }
}

function checkStrategy(where: string, v: unknown): void {
  if (v !== undefined && v !== 'ordered' && v !== 'lowest-latency')
    fail(`${where} must be 'ordered' or 'lowest-latency'`)
}

const CAP_KEYS: Record<keyof ModelCapabilities, 'number' | 'boolean' | 'tier'> = {
  contextWindow: 'number',
  maxOutput: 'number',
  tools: 'boolean',
  vision: 'boolean',
  json: 'boolean',
  jsonSchema: 'boolean',
  tier: 'tier',
}

function compileCapabilities(
  given: RouterOptions['capabilities'],
  base: (model: string) => ModelCapabilities | undefined,
): Record<string, ModelCapabilities> {
  const out: Record<string, ModelCapabilities> = {}
  for (const [model, row] of Object.entries(given ?? {})) {
    if (!row || typeof row !== 'object') fail(`capabilities.${model} must be an object`)
    for (const [k, v] of Object.entries(row)) {
      const kind = CAP_KEYS[k as keyof ModelCapabilities]
      if (!kind)
        fail(`capabilities.${model} has an unknown field "${k}" (expected ${Object.keys(CAP_KEYS).join(', ')})`)
      const ok =
        kind === 'number'
          ? typeof v === 'number' && v > 0
          : kind === 'boolean'
            ? typeof v === 'boolean'
            : v === 'small' || v === 'medium' || v === 'large'
      if (!ok)
        fail(
          `capabilities.${model}.${k} must be ${kind === 'number' ? 'a positive number' : kind === 'boolean' ? 'true or false' : "'small', 'medium' or 'large'"}`,
        )
    }
    const known = base(model)
    if (!known && (row.contextWindow === undefined || row.maxOutput === undefined)) {
      fail(`capabilities.${model}: a model the built-in table does not know needs at least contextWindow and maxOutput`)
    }
    // a partial row completes the built-in one; a new model gets permissive defaults for the rest
    out[model.toLowerCase()] = {
      ...(known ?? { tools: true, vision: false, json: true, jsonSchema: false, tier: 'medium' }),
      ...row,
    } as ModelCapabilities
  }
  return out
}

const OPTION_KEYS = new Set([
  'aliases',
  'rules',
  'capabilities',
  'complexity',
  'assumedOutputTokens',
  'maxFallbacks',
  'strategy',
])

export function compileOptions(
  options: RouterOptions,
  base: (model: string) => ModelCapabilities | undefined,
): CompiledOptions {
  if (!options || typeof options !== 'object') fail('options must be an object')
  for (const k of Object.keys(options))
    if (!OPTION_KEYS.has(k)) fail(`unknown option "${k}" (expected ${[...OPTION_KEYS].join(', ')})`)
  const aliases = new Map<string, RouteTarget[]>()
  for (const [name, t] of Object.entries(options.aliases ?? {})) aliases.set(name, targets(`aliases.${name}`, t))
  if (options.rules !== undefined && !Array.isArray(options.rules)) fail('rules must be a list')
  const rules = (options.rules ?? []).map((r, i) => compileRule(r, i, aliases))
  const c = options.complexity ?? true
  if (typeof c !== 'boolean' && (!c || typeof c !== 'object'))
    fail('complexity must be true, false or { shortTokens, longTokens }')
  const co = typeof c === 'object' ? c : {}
  const complexity = c === false ? false : { shortTokens: co.shortTokens ?? 400, longTokens: co.longTokens ?? 8000 }
  if (complexity && !(complexity.shortTokens >= 0 && complexity.longTokens > complexity.shortTokens))
    fail('complexity.longTokens must be above complexity.shortTokens')
  const assumedOutputTokens = options.assumedOutputTokens ?? 1024
  if (!(Number.isInteger(assumedOutputTokens) && assumedOutputTokens >= 0))
    fail('assumedOutputTokens must be a non-negative integer')
  const maxFallbacks = options.maxFallbacks ?? 2
  if (!(Number.isInteger(maxFallbacks) && maxFallbacks >= 0)) fail('maxFallbacks must be a non-negative integer')
  checkStrategy('strategy', options.strategy)
  return {
    aliases,
    rules,
    concreteRules: rules.filter((r) => r.concrete),
    capabilities: compileCapabilities(options.capabilities, base),
    complexity,
    assumedOutputTokens,
    maxFallbacks,
    strategy: options.strategy,
  }
}
