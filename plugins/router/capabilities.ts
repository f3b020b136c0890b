// What each model in the pricing table (core/pricing.ts) can take: context window, output limit,
// tools, images, JSON mode, and a size tier for the complexity rule. Read from the vendors' model
// pages (Anthropic models overview, OpenAI model pages, Google's Gemini models page), December
// 2026; `router({ capabilities })` overrides any row or adds models (a local server's, say).
import { modelCandidates } from '../../core/pricing.ts'

export type ModelTier = 'small' | 'medium' | 'large'

export interface ModelCapabilities {
  /** input + output tokens the model accepts in one request */
  contextWindow: number
  /** the most output tokens one answer may have (max_tokens above it is refused by the vendor) */
  maxOutput: number
  /** function / tool calling */
  tools: boolean
  /** image input */
  vision: boolean
  /** JSON mode without a schema (OpenAI `json_object`, Gemini `application/json`) */
  json: boolean
  /** JSON constrained by a schema (OpenAI `json_schema`, Anthropic `output_format`, Gemini `responseSchema`) */
  jsonSchema: boolean
  /** for the complexity rule: small models take short plain questions, large ones long code and reasoning */
  tier: ModelTier
}

const K = 1000
const M = 1_000_000
type Row = ModelCapabilities
const row = (contextWindow: number, maxOutput: number, tier: ModelTier, more: Partial<Row> = {}): Row => ({
  contextWindow,
  maxOutput,
  tools: true,
  vision: true,
  json: true,
  jsonSchema: true,
  tier,
  ...more,
})
// Anthropic has schema-constrained output (structured outputs) but no schema-less JSON mode, which
// core/translate refuses for Anthropic targets; Claude 3.x and the first 4.0 models have neither
const claude = (contextWindow: number, maxOutput: number, tier: ModelTier, more: Partial<Row> = {}) =>
  row(contextWindow, maxOutput, tier, { json: false, ...more })
const noSchema = { jsonSchema: false }

export const CAPABILITIES: Record<string, ModelCapabilities> = {
  // Claude 5.x: 1M context and 128k output natively
  'claude-fable-5-1': claude(M, 128 * K, 'large'),
  'claude-fable-5': claude(M, 128 * K, 'large'),
  'claude-opus-5-5': claude(M, 128 * K, 'large'),
  'claude-opus-5': claude(M, 128 * K, 'large'),
  'claude-sonnet-5-5': claude(M, 128 * K, 'medium'),
  'claude-sonnet-5': claude(M, 128 * K, 'medium'),
  'claude-haiku-5-5': claude(M, 128 * K, 'small'),
  // Claude 4.x: 200k (the 1M beta is opt-in per request, not assumed)
  'claude-opus-4-8': claude(200 * K, 128 * K, 'large'),
  'claude-opus-4-7': claude(200 * K, 128 * K, 'large'),
  'claude-opus-4-6': claude(200 * K, 128 * K, 'large'),
  'claude-opus-4-5': claude(200 * K, 64 * K, 'large'),
  'claude-opus-4-1': claude(200 * K, 32 * K, 'large'),
  'claude-opus-4': claude(200 * K, 32 * K, 'large', noSchema),
  'claude-sonnet-4-6': claude(200 * K, 64 * K, 'medium'),
  'claude-sonnet-4-5': claude(200 * K, 64 * K, 'medium'),
  'claude-sonnet-4': claude(200 * K, 64 * K, 'medium', noSchema),
  'claude-haiku-4-5': claude(200 * K, 64 * K, 'small'),
  'claude-3-7-sonnet': claude(200 * K, 64 * K, 'medium', noSchema),
  'claude-3-5-sonnet': claude(200 * K, 8192, 'medium', noSchema),
  'claude-3-5-haiku': claude(200 * K, 8192, 'small', { ...noSchema, vision: false }),
  'claude-3-opus': claude(200 * K, 4096, 'large', noSchema),
  'claude-3-haiku': claude(200 * K, 4096, 'small', noSchema),

  // OpenAI
  'gpt-5': row(400 * K, 128 * K, 'large'),
  'gpt-5-chat': row(128 * K, 16_384, 'medium'),
  'gpt-5-codex': row(400 * K, 128 * K, 'large'),
  'gpt-5-mini': row(400 * K, 128 * K, 'small'),
  'gpt-5-nano': row(400 * K, 128 * K, 'small'),
  'gpt-5-pro': row(400 * K, 272 * K, 'large'),
  'gpt-5.1': row(400 * K, 128 * K, 'large'),
  'gpt-5.1-chat': row(128 * K, 16_384, 'medium'),
  'gpt-5.1-codex': row(400 * K, 128 * K, 'large'),
  'gpt-5.1-codex-mini': row(400 * K, 128 * K, 'small'),
  'gpt-5.2': row(400 * K, 128 * K, 'large'),
  'gpt-5.2-chat': row(128 * K, 16_384, 'medium'),
  'gpt-5.2-pro': row(400 * K, 128 * K, 'large'),
  'gpt-5.4': row(1_050_000, 128 * K, 'large'),
  'gpt-5.4-mini': row(400 * K, 128 * K, 'small'),
  'gpt-4.1': row(1_047_576, 32_768, 'medium'),
  'gpt-4.1-mini': row(1_047_576, 32_768, 'small'),
  'gpt-4.1-nano': row(1_047_576, 32_768, 'small'),
  'gpt-4o': row(128 * K, 16_384, 'medium'),
  'gpt-4o-2024-05-13': row(128 * K, 4096, 'medium', noSchema),
  // ChatGPT's model: no function calling
  'chatgpt-4o': row(128 * K, 16_384, 'medium', { tools: false, jsonSchema: false }),
  'gpt-4o-mini': row(128 * K, 16_384, 'small'),
  o1: row(200 * K, 100 * K, 'large'),
  'o1-mini': row(128 * K, 65_536, 'medium', { tools: false, vision: false, json: false, jsonSchema: false }),
  'o1-pro': row(200 * K, 100 * K, 'large'),
  o3: row(200 * K, 100 * K, 'large'),
  'o3-pro': row(200 * K, 100 * K, 'large'),
  'o3-mini': row(200 * K, 100 * K, 'medium', { vision: false }),
  'o4-mini': row(200 * K, 100 * K, 'medium'),
  'gpt-4-turbo': row(128 * K, 4096, 'medium', noSchema),
  'gpt-4': row(8192, 8192, 'medium', { vision: false, json: false, jsonSchema: false }),
  'gpt-3.5-turbo': row(16_385, 4096, 'small', { vision: false, jsonSchema: false }),

  // Google
  'gemini-3-pro': row(1_048_576, 65_536, 'large'),
  'gemini-2.5-pro': row(1_048_576, 65_536, 'large'),
  'gemini-2.5-flash': row(1_048_576, 65_536, 'medium'),
  'gemini-2.5-flash-lite': row(1_048_576, 65_536, 'small'),
  'gemini-2.0-flash': row(1_048_576, 8192, 'small'),
  'gemini-2.0-flash-lite': row(1_048_576, 8192, 'small'),
}

/** The demo vendor answers any request (tools and images included) for free-standing demo models. */
const DEMO: ModelCapabilities = row(M, 128 * K, 'medium')

/**
 * A model's capabilities: an override for the exact id first, then the table under the id's
 * family names (dated snapshots and vendor prefixes resolved as pricing resolves them).
 */
export function capabilitiesOf(
  model: string,
  overrides: Record<string, ModelCapabilities>,
): ModelCapabilities | undefined {
  const own = overrides[model] ?? overrides[model.toLowerCase()]
  if (own) return own
  for (const c of modelCandidates(model)) {
    const hit = overrides[c] ?? CAPABILITIES[c]
    if (hit) return hit
  }
  if (/^demo-/i.test(model)) return DEMO
  return undefined
}

/** `200k`, `1M`, `16k`: a context window as the reason header shows it */
export function shortTokens(n: number): string {
  if (n >= M) return `${+(n / M).toFixed(2)}M`
  if (n >= K) return `${Math.round(n / K)}k`
  return String(n)
}
