// Pricing: the model that answered, dated ids resolved to their family, each vendor's cache
// convention, overrides, and unknown models at $0 with one warning.
import { describe, expect, it } from 'vitest'
import { createPricing, modelCandidates, totalTokens } from '../core/pricing.ts'
import type { Usage } from '../core/types.ts'

const u = (inputTokens: number, outputTokens: number, cacheReadTokens = 0, cacheWriteTokens = 0): Usage => ({
  inputTokens,
  outputTokens,
  cacheReadTokens,
  cacheWriteTokens,
})
const M = 1_000_000

function quietPricing(overrides = {}) {
  const warnings: string[] = []
  const p = createPricing(overrides, { warn: (m: string) => warnings.push(m) })
  return { p, warnings }
}

describe('model resolution', () => {
  it.each([
    ['claude-sonnet-4-5-20250929', 'claude-sonnet-4-5'],
    ['claude-3-5-sonnet-latest', 'claude-3-5-sonnet'],
    ['claude-opus-4-0', 'claude-opus-4'],
    ['claude-sonnet-4.5', 'claude-sonnet-4-5'],
    ['anthropic.claude-3-5-sonnet-20240620-v1:0', 'claude-3-5-sonnet'],
    ['gpt-4o-2024-08-06', 'gpt-4o'],
    ['gpt-4o-mini-2024-07-18', 'gpt-4o-mini'],
    ['gpt-4-0613', 'gpt-4'],
    ['o3-2025-04-16', 'o3'],
    ['gpt-5-chat-latest', 'gpt-5-chat'],
    ['gemini-2.5-flash-preview-05-20', 'gemini-2.5-flash'],
    ['gemini-2.0-flash-001', 'gemini-2.0-flash'],
    ['models/gemini-2.5-pro', 'gemini-2.5-pro'],
  ])('%s is priced as %s', (id, family) => {
    const { p } = quietPricing()
    expect(modelCandidates(id)).toContain(family)
    expect(p.price(id)).toEqual(p.price(family))
    expect(p.price(id)).toBeDefined()
  })

  it('keeps a dated snapshot that has its own price (gpt-4o-2024-05-13)', () => {
    const { p } = quietPricing()
    expect(p.price('gpt-4o-2024-05-13')!.input).toBe(5)
    expect(p.price('gpt-4o-2024-08-06')!.input).toBe(2.5)
  })

  it('does not confuse a family with a longer one (gpt-4o vs gpt-4o-mini, gpt-5 vs gpt-5.2)', () => {
    const { p } = quietPricing()
    expect(p.price('gpt-4o-mini')!.input).toBe(0.15)
    expect(p.price('gpt-5.2')!.input).toBe(1.75)
    expect(p.price('gpt-5')!.input).toBe(1.25)
  })
})

describe('cost', () => {
  it('prices Anthropic usage: input excludes cache reads and writes, each at its own rate', () => {
    const { p } = quietPricing()
    // sonnet 4.5: $3 in, $15 out, $0.30 cache read, $3.75 cache write
    expect(p.cost('claude-sonnet-4-5-20250929', u(1000, 500, 20_000, 4000))).toBeCloseTo(
      (1000 * 3 + 500 * 15 + 20_000 * 0.3 + 4000 * 3.75) / M,
      12,
    )
    expect(totalTokens('claude-sonnet-4-5', u(1000, 500, 20_000, 4000))).toBe(25_500)
  })

  it('prices OpenAI usage: prompt_tokens include the cached ones, billed at the cached rate', () => {
    const { p } = quietPricing()
    // gpt-4o: $2.50 in, $1.25 cached, $10 out
    expect(p.cost('gpt-4o-2024-08-06', u(10_000, 1000, 4000))).toBeCloseTo(
      (6000 * 2.5 + 4000 * 1.25 + 1000 * 10) / M,
      12,
    )
    expect(totalTokens('gpt-4o', u(10_000, 1000, 4000))).toBe(11_000)
  })

  it('applies long-context prices above the threshold (gemini-2.5-pro over 200k prompt tokens)', () => {
    const { p } = quietPricing()
    expect(p.cost('gemini-2.5-pro', u(100_000, 1000))).toBeCloseTo((100_000 * 1.25 + 1000 * 10) / M, 12)
    expect(p.cost('gemini-2.5-pro', u(300_000, 1000))).toBeCloseTo((300_000 * 2.5 + 1000 * 15) / M, 12)
  })

  it('prices demo models like a small real model (claude-haiku-4-5)', () => {
    const { p } = quietPricing()
    expect(p.price('demo-fast')).toEqual(p.price('claude-haiku-4-5'))
    expect(p.cost('demo-smart', u(1000, 1000))).toBeCloseTo(0.006, 12)
  })

  it("prices Mistral's API ids from its own model pages; a local server's plain name or a retired snapshot has no price", () => {
    const { p } = quietPricing()
    expect(p.price('mistral-large-latest')).toMatchObject({ input: 0.5, output: 1.5 })
    expect(p.price('mistral-large-2512')).toEqual(p.price('mistral-large-latest'))
    expect(p.price('mistral-medium-latest')).toMatchObject({ input: 1.5, output: 7.5 })
    expect(p.price('codestral-latest')).toMatchObject({ input: 0.3, output: 0.9 })
    // 1M in, 1M out on Mistral Small 4
    expect(p.cost('mistral-small-latest', u(M, M))).toBeCloseTo(0.75, 12)
    // Ollama's names for the open models, and snapshots Mistral priced otherwise (Large 2.1 was
    // $2/$6): not billed at today's API price
    for (const m of ['mistral-large', 'mistral-small', 'codestral', 'mistral-large-2411', 'mistral-small-2506'])
      expect(p.price(m), m).toBeUndefined()
  })

  it('an unknown model costs 0 and is reported once in the log', () => {
    const { p, warnings } = quietPricing()
    expect(p.cost('llama-99-mystery', u(1000, 1000))).toBe(0)
    expect(p.cost('llama-99-mystery', u(5, 5))).toBe(0)
    expect(p.cost('another-unknown', u(5, 5))).toBe(0)
    expect(warnings).toHaveLength(2)
    expect(warnings[0]).toContain('llama-99-mystery')
  })

  it('config overrides replace or add prices', () => {
    const { p, warnings } = quietPricing({
      'gpt-4o': { input: 1, output: 2 },
      'my-finetune': { input: 4, output: 8, cacheRead: 1 },
    })
    expect(p.cost('gpt-4o-2024-08-06', u(M, M))).toBeCloseTo(3, 9)
    // a non-Claude model follows the OpenAI convention: 2M prompt tokens of which 1M cached
    expect(p.cost('my-finetune', u(2 * M, 0, M))).toBeCloseTo(4 + 1, 9)
    expect(warnings).toHaveLength(0)
  })

  it('refuses a negative or non-numeric override, naming the model', () => {
    expect(() => createPricing({ 'gpt-4o': { input: -1, output: 2 } })).toThrow(/pricing\.gpt-4o/)
    expect(() => createPricing({ x: { input: 'abc' as any, output: 2 } })).toThrow(/pricing\.x/)
  })
})
