// Options, their defaults and their validation (a bad config fails at load, naming the field).
import type { MeshContext } from '../../core/types.ts'
import type { ResolvedStrategies } from './compress.ts'
import type { ToolResultOptions } from './strategies.ts'

type Match = string | RegExp | Array<string | RegExp>

/** Compress always for requests this rule matches (all given fields must match; `when` is a TS predicate). */
export interface CompressionRule {
  team?: Match
  user?: Match
  tool?: Match
  /** the model that will answer (after routing) */
  model?: Match
  when?: (ctx: MeshContext) => boolean
  /** compress to this share of the estimated input (default 0.7) */
  targetRatio?: number
  /** strategies for this rule's requests, replacing the plugin's */
  strategies?: StrategyOptions
}

export interface SummaryOptions {
  /** the cheap model that writes summaries, called through this proxy (billed to the same identity) */
  model: string
  /** answer length of a summary (default 400 tokens) */
  maxTokens?: number
  /** characters of the dropped turns' transcript sent to the summary model (default 60,000) */
  maxChars?: number
  /** summaries kept in memory, by model, team and transcript (default 500) */
  cacheSize?: number
}

export interface StrategyOptions {
  /** whitespace and JSON minification, duplicate outputs and file reads (default on) */
  lossless?: boolean | { duplicates?: boolean; minify?: boolean }
  /** old long tool outputs cut to head and tail (default on) */
  toolResults?: boolean | Partial<ToolResultOptions>
  /** turns beyond the last `keepTurns` dropped, oldest first (default on, keepTurns 6) */
  oldTurns?: boolean | { keepTurns?: number }
  /** dropped turns summarised by a cheap model (default off) */
  summary?: false | SummaryOptions
}

export interface CompressionOptions extends StrategyOptions {
  /** act when the most constrained quota limit has less than this percentage left (default 30; false: never) */
  budgetRemainingPct?: number | false
  /** acting for the budget: compress to this share of the estimated input (default 0.6) */
  budgetTargetRatio?: number
  /** act when the prompt and its answer would not fit the model's context window (default true) */
  overflow?: boolean
  /** output tokens kept free in the window when the request names no maximum (default 4096) */
  reserveOutputTokens?: number
  /** context windows (tokens) by model id or prefix ending in '*', over the built-in table */
  contextWindows?: Record<string, number>
  rules?: CompressionRule[]
}

export interface ResolvedRule extends Omit<CompressionRule, 'strategies' | 'targetRatio'> {
  targetRatio: number
  strategies?: ResolvedStrategies
}

export interface ResolvedOptions {
  budgetRemainingPct: number | false
  budgetTargetRatio: number
  overflow: boolean
  reserveOutputTokens: number
  contextWindows: Record<string, number>
  rules: ResolvedRule[]
  strategies: ResolvedStrategies
  summary: SummaryOptions | undefined
}

const KNOWN = new Set([
  'budgetRemainingPct',
  'budgetTargetRatio',
  'overflow',
  'reserveOutputTokens',
  'contextWindows',
  'rules',
  'lossless',
  'toolResults',
  'oldTurns',
  'summary',
])
const fail = (field: string, want: string, got: unknown): never => {
  throw new Error(`compression: ${field} must be ${want}, got ${JSON.stringify(got)}`)
}
const ratio = (field: string, v: unknown, dflt: number): number => {
  if (v === undefined) return dflt
  return typeof v === 'number' && v > 0 && v <= 1 ? v : fail(field, 'a number in (0, 1]', v)
}
const count = (field: string, v: unknown, dflt: number): number => {
  if (v === undefined) return dflt
  return Number.isInteger(v) && (v as number) >= 0 ? (v as number) : fail(field, 'a non-negative integer', v)
}

function resolveStrategies(s: StrategyOptions, where: string): ResolvedStrategies {
  const on = (v: unknown, field: string) =>
    v === undefined || v === true || (typeof v === 'object' && v !== null)
      ? true
      : v === false
        ? false
        : fail(where + field, 'a boolean or an object', v)
  const ll = typeof s.lossless === 'object' ? s.lossless : {}
  const tr = typeof s.toolResults === 'object' ? s.toolResults : {}
  const ot = typeof s.oldTurns === 'object' ? s.oldTurns : {}
  if (
    s.summary !== undefined &&
    s.summary !== false &&
    (typeof s.summary !== 'object' || typeof s.summary.model !== 'string' || !s.summary.model)
  )
    fail(`${where}summary`, 'false or { model: "<a cheap model>" }', s.summary)
  return {
    lossless: on(s.lossless, 'lossless') && { duplicates: ll.duplicates !== false, minify: ll.minify !== false },
    toolResults: on(s.toolResults, 'toolResults') && {
      keepTurns: count(`${where}toolResults.keepTurns`, tr.keepTurns, 4),
      maxTokens: count(`${where}toolResults.maxTokens`, tr.maxTokens, 400),
      headTokens: count(`${where}toolResults.headTokens`, tr.headTokens, 150),
      tailTokens: count(`${where}toolResults.tailTokens`, tr.tailTokens, 100),
    },
    oldTurns: on(s.oldTurns, 'oldTurns') && { keepTurns: count(`${where}oldTurns.keepTurns`, ot.keepTurns, 6) },
    summary: s.summary ? { maxChars: count(`${where}summary.maxChars`, s.summary.maxChars, 60_000) } : false,
  }
}

export function resolveOptions(o: CompressionOptions): ResolvedOptions {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) fail('options', 'an object', o)
  for (const k of Object.keys(o))
    if (!KNOWN.has(k)) throw new Error(`compression: unknown option "${k}" (expected one of ${[...KNOWN].join(', ')})`)
  const b = o.budgetRemainingPct
  if (b !== undefined && b !== false && !(typeof b === 'number' && b >= 0 && b <= 100))
    fail('budgetRemainingPct', 'a percentage (0-100) or false', b)
  if (o.overflow !== undefined && typeof o.overflow !== 'boolean') fail('overflow', 'a boolean', o.overflow)
  for (const [k, v] of Object.entries(o.contextWindows ?? {}))
    if (!Number.isInteger(v) || v <= 0) fail(`contextWindows.${k}`, 'a positive integer (tokens)', v)
  if (o.rules !== undefined && !Array.isArray(o.rules)) fail('rules', 'an array', o.rules)
  const rules = (o.rules ?? []).map((r, i): ResolvedRule => {
    if (!r || typeof r !== 'object') fail(`rules[${i}]`, 'an object', r)
    if (r.when !== undefined && typeof r.when !== 'function')
      fail(`rules[${i}].when`, 'a function (ctx) => boolean', typeof r.when)
    const { strategies, targetRatio, ...rest } = r
    return {
      ...rest,
      targetRatio: ratio(`rules[${i}].targetRatio`, targetRatio, 0.7),
      ...(strategies ? { strategies: resolveStrategies(strategies, `rules[${i}].strategies.`) } : {}),
    }
  })
  const strategies = resolveStrategies(o, '')
  return {
    budgetRemainingPct: b === undefined ? 30 : b,
    budgetTargetRatio: ratio('budgetTargetRatio', o.budgetTargetRatio, 0.6),
    overflow: o.overflow !== false,
    reserveOutputTokens: count('reserveOutputTokens', o.reserveOutputTokens, 4096),
    contextWindows: o.contextWindows ?? {},
    rules,
    strategies,
    summary: o.summary || undefined,
  }
}
