// BOOTSTRAP (lead): replaced by the governance helper's pricing table.
import type { Logger, ModelPrice, Pricing, Usage } from './types.ts'
export function createPricing(overrides: Record<string, ModelPrice>, _log: Logger): Pricing {
  const table: Record<string, ModelPrice> = { 'gpt-4o-mini': { input: 0.15, output: 0.6 }, 'claude-haiku-4-5': { input: 1, output: 5 }, ...overrides }
  const price = (m: string) => table[m]
  return { price, cost: (m: string, u: Usage) => { const p = price(m); return p ? (u.inputTokens * p.input + u.outputTokens * p.output) / 1e6 : 0 } }
}
