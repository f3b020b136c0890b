// USD per million tokens for the models AgentMesh routes to, priced at the model that answered.
// Prices are the vendors' published list prices (standard tier, no batch discount) as read from
// their pricing pages in November 2026; `pricing` in config overrides any entry or adds new ones.
// cacheWrite is Anthropic's 5-minute cache write (1.25x input); 1-hour writes cost 2x input and are
// not distinguished in usage, so they are under-priced by 37.5% here.
import { LRUCache } from 'lru-cache'
import type { Logger, ModelPrice, Pricing, Usage } from './types.ts'

interface TablePrice extends ModelPrice {
  /** a higher price for requests whose prompt exceeds `above` tokens (long-context tiers) */
  long?: { above: number } & ModelPrice
}

const anthropic = (input: number, output: number, cacheRead = input / 10, cacheWrite = input * 1.25): TablePrice => ({
  input,
  output,
  cacheRead,
  cacheWrite,
})
const openai = (input: number, output: number, cacheRead?: number): TablePrice => ({
  input,
  output,
  cacheRead: cacheRead ?? input,
  cacheWrite: input,
})
const google = (input: number, output: number, cacheRead: number, long?: TablePrice['long']): TablePrice => ({
  input,
  output,
  cacheRead,
  cacheWrite: input,
  ...(long ? { long } : {}),
})

export const PRICES: Record<string, TablePrice> = {
  // Anthropic (platform.claude.com pricing). The 5.x rows were read from the pricing page in
  // November 2026; Haiku 5.5 bills prompts over 100k tokens at the higher tier on every token.
  'claude-fable-5-1': anthropic(10, 50, 0.25),
  'claude-fable-5': anthropic(10, 50, 1),
  'claude-opus-5-5': anthropic(4, 20, 0.2),
  'claude-opus-5': anthropic(5, 25),
  'claude-sonnet-5-5': anthropic(2, 10, 0.1),
  'claude-sonnet-5': anthropic(2, 10),
  'claude-haiku-5-5': { ...anthropic(0.1, 0.5), long: { above: 100_000, ...anthropic(0.5, 2.5) } },
  // Claude 4.5+ Opus dropped to $5/$25.
  'claude-opus-4-8': anthropic(5, 25),
  'claude-opus-4-7': anthropic(5, 25),
  'claude-opus-4-6': anthropic(5, 25),
  'claude-opus-4-5': anthropic(5, 25),
  'claude-opus-4-1': anthropic(15, 75),
  'claude-opus-4': anthropic(15, 75),
  // Sonnet 4 / 4.5 with the 1M-context beta bill prompts over 200k tokens at $6/$22.50
  'claude-sonnet-4-6': anthropic(3, 15),
  'claude-sonnet-4-5': { ...anthropic(3, 15), long: { above: 200_000, ...anthropic(6, 22.5) } },
  'claude-sonnet-4': { ...anthropic(3, 15), long: { above: 200_000, ...anthropic(6, 22.5) } },
  'claude-haiku-4-5': anthropic(1, 5),
  'claude-3-7-sonnet': anthropic(3, 15),
  'claude-3-5-sonnet': anthropic(3, 15),
  'claude-3-5-haiku': anthropic(0.8, 4),
  'claude-3-opus': anthropic(15, 75),
  'claude-3-haiku': anthropic(0.25, 1.25, 0.03, 0.3),

  // OpenAI (platform pricing, standard tier). cacheRead is the "cached input" price.
  'gpt-5': openai(1.25, 10, 0.125),
  'gpt-5-chat': openai(1.25, 10, 0.125),
  'gpt-5-codex': openai(1.25, 10, 0.125),
  'gpt-5-mini': openai(0.25, 2, 0.025),
  'gpt-5-nano': openai(0.05, 0.4, 0.005),
  'gpt-5-pro': openai(15, 120),
  'gpt-5.1': openai(1.25, 10, 0.125),
  'gpt-5.1-chat': openai(1.25, 10, 0.125),
  'gpt-5.1-codex': openai(1.25, 10, 0.125),
  'gpt-5.1-codex-mini': openai(0.25, 2, 0.025),
  'gpt-5.2': openai(1.75, 14, 0.175),
  'gpt-5.2-chat': openai(1.75, 14, 0.175),
  'gpt-5.2-pro': openai(21, 168),
  'gpt-5.4': openai(2.5, 15, 0.25),
  'gpt-5.4-mini': openai(0.75, 4.5, 0.075),
  'gpt-4.1': openai(2, 8, 0.5),
  'gpt-4.1-mini': openai(0.4, 1.6, 0.1),
  'gpt-4.1-nano': openai(0.1, 0.4, 0.025),
  'gpt-4o': openai(2.5, 10, 1.25),
  // the first gpt-4o snapshot kept its launch price
  'gpt-4o-2024-05-13': openai(5, 15),
  'chatgpt-4o': openai(5, 15),
  'gpt-4o-mini': openai(0.15, 0.6, 0.075),
  o1: openai(15, 60, 7.5),
  'o1-mini': openai(1.1, 4.4, 0.55),
  'o1-pro': openai(150, 600),
  o3: openai(2, 8, 0.5),
  'o3-pro': openai(20, 80),
  'o3-mini': openai(1.1, 4.4, 0.55),
  'o4-mini': openai(1.1, 4.4, 0.275),
  'gpt-4-turbo': openai(10, 30),
  'gpt-4': openai(30, 60),
  'gpt-3.5-turbo': openai(0.5, 1.5),
  'text-embedding-3-small': openai(0.02, 0),
  'text-embedding-3-large': openai(0.13, 0),
  'text-embedding-ada-002': openai(0.1, 0),

  // Google (ai.google.dev pricing, paid tier, text input). Pro models charge more above 200k
  // prompt tokens. Context-cache storage (per hour) is not a token price and is not included.
  'gemini-3-pro': google(2, 12, 0.2, { above: 200_000, ...google(4, 18, 0.4) }),
  'gemini-2.5-pro': google(1.25, 10, 0.125, { above: 200_000, ...google(2.5, 15, 0.25) }),
  'gemini-2.5-flash': google(0.3, 2.5, 0.03),
  'gemini-2.5-flash-lite': google(0.1, 0.4, 0.01),
  'gemini-2.0-flash': google(0.1, 0.4, 0.025),
  'gemini-2.0-flash-lite': google(0.075, 0.3, 0.075),
  'gemini-embedding-001': google(0.15, 0, 0.15),
  'text-embedding-004': google(0, 0, 0),

  // ---- OpenAI-compatible hosted vendors (issue 16; plugins/vendors/openai-compatible.ts) ----
  // Read with the search tool on 2026-12-05. Groq: groq.com/pricing as quoted alike by several
  // public price tables (one dated 2026-07); DeepSeek: api-docs.deepseek.com/quick_start/
  // pricing-details-usd as stored (cacheRead is its "cache hit" input price). Together is left
  // out: its own pages (docs.together.ai/docs/serverless/models, together.ai/pricing) were found
  // but not their price tables, and third-party copies disagree (Llama 3.3 70B $0.88, $0.99 or
  // $0.80/$2.40); give its prices in `pricing` (config or the vendor's own option). Only ids one
  // vendor uses: an open model's plain id (gpt-oss-120b, or Ollama's `mistral-small`) is also
  // served locally, where it must not be billed at a host's price. A model without a price is
  // counted as $0, and `X-AgentMesh-Price` says so.
  'llama-3.3-70b-versatile': openai(0.59, 0.79),
  'llama-3.1-8b-instant': openai(0.05, 0.08),
  'deepseek-chat': openai(0.27, 1.1, 0.07),
  'deepseek-reasoner': openai(0.55, 2.19, 0.14),
  // Mistral: its own model pages (docs.mistral.ai/models/<slug>), read from their source,
  // github.com/mistralai/platform-docs-public src/schema/models/models/*.ts at commit 222f4ba
  // (2026-08-21), seen 2026-12-05; USD per million tokens, the models marked GA there, each under
  // its API names (`identifiers.apiNames`). Mistral publishes no cached-input price.
  'mistral-large-2512': openai(0.5, 1.5), // Mistral Large 3
  'mistral-large-latest': openai(0.5, 1.5),
  'mistral-medium-3-5': openai(1.5, 7.5), // Mistral Medium 3.5
  'mistral-medium-3': openai(1.5, 7.5),
  'mistral-medium-latest': openai(1.5, 7.5),
  'mistral-small-2603': openai(0.15, 0.6), // Mistral Small 4
  'mistral-small-latest': openai(0.15, 0.6),
  'codestral-2508': openai(0.3, 0.9),
  'codestral-latest': openai(0.3, 0.9),
  'ministral-14b-2512': openai(0.2, 0.2),
  'ministral-14b-latest': openai(0.2, 0.2),
  'ministral-8b-2512': openai(0.15, 0.15),
  'ministral-8b-latest': openai(0.15, 0.15),
  'ministral-3b-2512': openai(0.1, 0.1),
  'ministral-3b-latest': openai(0.1, 0.1),
  'mistral-embed': openai(0.1, 0),
  'mistral-embed-2312': openai(0.1, 0),
  // ---- end of the OpenAI-compatible block ----

  // Demo vendor models are priced like claude-haiku-4-5 ($1 in / $5 out): a small real model, so
  // the demo's dollar figures are the ones a team would see on a cheap production model.
  'demo-*': anthropic(1, 5),
}

/** Vendors whose reported input count already includes cache-read tokens (OpenAI prompt_tokens, Gemini promptTokenCount). */
export function inputIncludesCache(model: string): boolean {
  return !/claude/i.test(model)
}

/** Tokens a request consumed, counting cached input once whatever the vendor's convention. */
export function totalTokens(model: string, u: Usage): number {
  const input = inputIncludesCache(model) ? u.inputTokens : u.inputTokens + u.cacheReadTokens + u.cacheWriteTokens
  return input + u.outputTokens
}

/**
 * Model id as the table knows it: vendor prefixes and suffixes dropped, dated snapshots resolved to
 * their family (claude-sonnet-4-5-20250929 -> claude-sonnet-4-5, gpt-4o-2024-08-06 -> gpt-4o,
 * gemini-2.5-flash-preview-05-20 -> gemini-2.5-flash). Returns the candidates, most specific first.
 */
export function modelCandidates(model: string): string[] {
  let m = model.trim().toLowerCase()
  m = m.replace(/^(models\/|openai\/|anthropic\/|google\/|vertex_ai\/|(?:[a-z]{2}\.)?anthropic\.)/, '')
  m = m
    .replace(/-v\d+(?::\d+)?$/, '')
    .replace(/@\d{8}$/, '')
    .replace(/\[1m\]$/, '')
  const out: string[] = [m]
  const push = (x: string) => {
    if (x && !out.includes(x)) out.push(x)
  }
  // claude-sonnet-4.5 -> claude-sonnet-4-5
  if (m.includes('claude')) push(m.replace(/(\d)\.(\d)/g, '$1-$2'))
  for (const base of [...out]) {
    let x = base
    for (let i = 0; i < 4; i++) {
      const next = x
        .replace(/-(\d{4}-\d{2}-\d{2}|\d{8})$/, '') // -2024-08-06, -20250929
        .replace(/-(latest|preview|exp|experimental)$/, '')
        .replace(/-(preview|exp)-\d{2}-\d{2}(\d{2})?$/, '') // gemini-2.5-flash-preview-05-20, -09-2025
        .replace(/-\d{2}-\d{2}(\d{2})?$/, '')
        .replace(/-\d{3}$/, '') // gemini-2.0-flash-001
        .replace(/-\d{4}$/, '') // gpt-4-0613, gpt-3.5-turbo-0125
        .replace(/-0$/, '') // claude-sonnet-4-0, claude-opus-4-0
      if (next === x) break
      x = next
      push(x)
    }
  }
  return out
}

function validPrice(p: unknown): p is ModelPrice {
  const ok = (v: unknown, required: boolean) =>
    v === undefined ? !required : typeof v === 'number' && v >= 0 && Number.isFinite(v)
  const q = p as ModelPrice
  return (
    !!p &&
    typeof p === 'object' &&
    ok(q.input, true) &&
    ok(q.output, true) &&
    ok(q.cacheRead, false) &&
    ok(q.cacheWrite, false)
  )
}

// lru-cache holds no undefined or null: a model without a price is cached as this
const NOT_PRICED: unique symbol = Symbol('not priced')

export function createPricing(overrides: Record<string, ModelPrice> = {}, log?: Pick<Logger, 'warn'>): Pricing {
  const table = new Map<string, TablePrice>()
  for (const [k, v] of Object.entries(PRICES)) table.set(k, v)
  for (const [k, v] of Object.entries(overrides ?? {})) {
    if (!validPrice(v))
      throw new Error(
        `pricing.${k} must be { input, output, cacheRead?, cacheWrite? } in USD per million tokens, non-negative numbers; got ${JSON.stringify(v)}`,
      )
    table.set(k.toLowerCase(), { ...v })
  }
  // model names come from clients: both are bounded, so made-up names cannot grow memory
  const warned = new LRUCache<string, true>({ max: 10_000 })
  // the model id as sent -> its row (or NOT_PRICED): the candidate search runs once per id
  const resolved = new LRUCache<string, TablePrice | typeof NOT_PRICED>({ max: 10_000 })

  function lookup(model: string): TablePrice | undefined {
    if (!model) return undefined
    const hit = resolved.get(model)
    if (hit !== undefined) return hit === NOT_PRICED ? undefined : hit
    let found: TablePrice | undefined
    // an override for the exact id as the client wrote it wins
    found = table.get(model) ?? table.get(model.toLowerCase())
    if (!found) for (const c of modelCandidates(model)) if ((found = table.get(c))) break
    if (!found && /^demo-/i.test(model)) found = table.get('demo-*')
    resolved.set(model, found ?? NOT_PRICED)
    return found
  }

  return {
    price(model: string): ModelPrice | undefined {
      const p = lookup(model)
      if (!p) return undefined
      const { long: _long, ...base } = p
      return base
    },
    cost(model: string, usage: Usage): number {
      const p = lookup(model)
      if (!p) {
        if (model && !warned.has(model)) {
          warned.set(model, true)
          log?.warn(
            `no price for model "${model}": its calls are counted at $0; add it under \`pricing\` in agentmesh.config.ts`,
          )
        }
        return 0
      }
      const includes = inputIncludesCache(model)
      const cacheRead = usage.cacheReadTokens || 0
      const cacheWrite = usage.cacheWriteTokens || 0
      const uncached = includes ? Math.max(0, (usage.inputTokens || 0) - cacheRead) : usage.inputTokens || 0
      const prompt = uncached + cacheRead + cacheWrite
      const tier: ModelPrice = p.long && prompt > p.long.above ? p.long : p
      const usd =
        uncached * tier.input +
        (usage.outputTokens || 0) * tier.output +
        cacheRead * (tier.cacheRead ?? tier.input) +
        cacheWrite * (tier.cacheWrite ?? tier.input)
      return usd / 1e6
    },
  }
}
