// Token estimates: exact for OpenAI models (checked against gpt-tokenizer's own counts and chat
// formula), calibrated for Anthropic and Gemini (checked against the vendors' documented examples),
// bounded on hostile input.
import { readFileSync } from 'node:fs'
import { countTokens as o200k } from 'gpt-tokenizer/encoding/o200k_base'
import { countTokens as cl100k } from 'gpt-tokenizer/encoding/cl100k_base'
import { computeChatCompletionTokenCount, type ChatCompletionRequest } from 'gpt-tokenizer/functionCalling'
import { describe, expect, it } from 'vitest'
import { createTokenCounter, stripBase64Blobs, tokenFamily } from '../core/tokens.ts'
import type { CanonicalMessage, Prompt } from '../core/types.ts'

const tc = createTokenCounter()
// gpt-tokenizer's own rendering of OpenAI's chat-format rule, independent of core/tokens.ts
const countChatCompletionTokens = (r: ChatCompletionRequest) => computeChatCompletionTokenCount(r, (t) => o200k(t))
const prompt = (system: string, messages: CanonicalMessage[], extra: Partial<Prompt> = {}): Prompt => ({
  model: 'x',
  system,
  messages,
  params: {},
  stream: false,
  hasImages: false,
  ...extra,
})
const user = (text: string): CanonicalMessage => ({ role: 'user', text })
const readme = readFileSync(new URL('../node_modules/gpt-tokenizer/README.md', import.meta.url), 'utf8')
// a pinned dependency's source: a sample of real code that does not change when ours does
const code = readFileSync(new URL('../node_modules/hookable/dist/index.mjs', import.meta.url), 'utf8')

describe('token families', () => {
  it('maps model ids to the tokenizer their vendor uses', () => {
    expect(tokenFamily('gpt-4o-2024-08-06')).toBe('o200k')
    expect(tokenFamily('gpt-4.1-mini')).toBe('o200k')
    expect(tokenFamily('gpt-5')).toBe('o200k')
    expect(tokenFamily('o3')).toBe('o200k')
    expect(tokenFamily('o4-mini')).toBe('o200k')
    expect(tokenFamily('gpt-4-turbo')).toBe('cl100k')
    expect(tokenFamily('gpt-3.5-turbo')).toBe('cl100k')
    expect(tokenFamily('text-embedding-3-small')).toBe('cl100k')
    expect(tokenFamily('claude-sonnet-4-5-20250929')).toBe('anthropic')
    expect(tokenFamily('anthropic.claude-3-5-sonnet-20240620-v1:0')).toBe('anthropic')
    expect(tokenFamily('gemini-2.5-flash')).toBe('gemini')
    expect(tokenFamily('models/gemini-2.0-flash')).toBe('gemini')
  })
})

describe('OpenAI models: the real tokenizer', () => {
  it('counts text exactly as o200k / cl100k do', () => {
    for (const text of [
      'Hello, world!',
      readme,
      code,
      'naïve café — 日本語のテキスト 🦊',
      '<|endoftext|> is plain text here',
    ]) {
      expect(tc.count(text, 'gpt-4o')).toBe(o200k(text, { disallowedSpecial: new Set() }))
      expect(tc.count(text, 'gpt-4')).toBe(cl100k(text, { disallowedSpecial: new Set() }))
    }
  })

  it('includes the chat format overhead (3 per message + role, 3 to prime the reply)', () => {
    const p = prompt('You are a helpful assistant.', [
      user('What is the capital of France?'),
      { role: 'assistant', text: 'Paris.' },
      user('And of Spain?'),
    ])
    const expected = countChatCompletionTokens({
      messages: [{ role: 'system', content: p.system }, ...p.messages.map((m) => ({ role: m.role, content: m.text }))],
    })
    expect(tc.estimateInput(p, 'gpt-4o')).toBe(expected)
  })

  it('counts function tools the way OpenAI renders them', () => {
    const tools = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Get the weather',
          parameters: {
            type: 'object',
            properties: { city: { type: 'string', description: 'City name' } },
            required: ['city'],
          },
        },
      },
    ]
    const p = prompt('You are terse.', [user('Weather in Paris?')], { tools })
    const expected = countChatCompletionTokens({
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'Weather in Paris?' },
      ],
      functions: [tools[0]!.function as any],
    })
    // gpt-tokenizer pads the system message with a newline when functions are present: one token at most
    expect(Math.abs(tc.estimateInput(p, 'gpt-4o-mini') - expected)).toBeLessThanOrEqual(1)
  })

  it('gives images an allowance instead of counting their base64 bytes', () => {
    const b64 = 'iVBORw0KGgo' + 'A'.repeat(200_000)
    const extra = JSON.stringify([{ type: 'image_url', image_url: { url: `data:image/png;base64,${b64}` } }])
    const withImage = tc.estimateInput(
      prompt('', [{ role: 'user', text: 'What is in this picture?', extra }], { hasImages: true }),
      'gpt-4o',
    )
    const without = tc.estimateInput(prompt('', [user('What is in this picture?')]), 'gpt-4o')
    expect(withImage - without).toBeGreaterThanOrEqual(765)
    expect(withImage - without).toBeLessThan(765 + 60)
  })
})

describe('Anthropic and Gemini: calibrated estimates against documented counts', () => {
  it('Anthropic count_tokens example: system "You are a scientist" + "Hello, Claude" = 14', () => {
    expect(tc.estimateInput(prompt('You are a scientist', [user('Hello, Claude')]), 'claude-sonnet-4-5-20250929')).toBe(
      14,
    )
  })

  it('Anthropic tool example (documented 403 tokens) within 10%', () => {
    const tools = [
      {
        name: 'get_weather',
        description: 'Get the current weather in a given location',
        input_schema: {
          type: 'object',
          properties: { location: { type: 'string', description: 'The city and state, e.g. San Francisco, CA' } },
          required: ['location'],
        },
      },
    ]
    const n = tc.estimateInput(
      prompt('', [user("What's the weather like in San Francisco?")], { tools }),
      'claude-sonnet-4-5',
    )
    expect(Math.abs(n - 403) / 403).toBeLessThan(0.1)
  })

  it('Gemini: "The quick brown fox jumps over the lazy dog." is 10 tokens, 11 billed in generateContent', () => {
    expect(tc.count('The quick brown fox jumps over the lazy dog.', 'gemini-2.5-flash')).toBe(10)
    expect(
      tc.estimateInput(prompt('', [user('The quick brown fox jumps over the lazy dog.')]), 'gemini-2.5-flash'),
    ).toBe(11)
  })

  it('Claude counts more tokens than o200k for the same text, more so for code', () => {
    const prose =
      'Budgets are the reason a company installs a governance proxy. They must hold under load, across instances, and to the token. ' +
      'When a team runs out of its daily allowance, the next request is refused with a clear message that says which limit was reached and when it resets. ' +
      'An administrator can add temporary headroom, which expires on its own; nothing is ever granted automatically.'
    const proseRatio = tc.count(prose, 'claude-haiku-4-5') / o200k(prose)
    const codeRatio = tc.count(code, 'claude-haiku-4-5') / o200k(code)
    expect(proseRatio).toBeGreaterThan(1.14)
    expect(proseRatio).toBeLessThan(1.2)
    expect(codeRatio).toBeGreaterThan(proseRatio)
    // the calibrated ratio is capped at 1.3; count() rounds to a whole token
    expect(codeRatio).toBeLessThanOrEqual(1.3 + 0.5 / o200k(code))
  })
})

describe('bounded work on hostile input', () => {
  it('long runs without whitespace are counted in slices, still close to the exact count', () => {
    // a run of one letter: o200k packs 8 per token
    expect(tc.count('a'.repeat(100_000), 'gpt-4o')).toBe(12_500)
    const zh = '中文文本'.repeat(5000)
    const exact = o200k(zh.slice(0, 2000)) * 10
    expect(Math.abs(tc.count(zh, 'gpt-4o') - exact) / exact).toBeLessThan(0.02)
  })

  it('texts longer than the exact limit are sampled within 3%', () => {
    const big = readFileSync(new URL('../node_modules/typescript/lib/lib.dom.d.ts', import.meta.url), 'utf8').slice(
      0,
      600_000,
    )
    const exact = o200k(big)
    const est = tc.count(big, 'gpt-4o')
    expect(Math.abs(est - exact) / exact).toBeLessThan(0.03)
  })

  it('a request past the tokenizing budget still gets an estimate within 20% (character classes)', () => {
    const small = createTokenCounter({ requestBudgetChars: 0 })
    const est = small.estimateInput(prompt('', [user(readme)]), 'gpt-4o')
    const exact = o200k(readme) + 7
    expect(Math.abs(est - exact) / exact).toBeLessThan(0.2)
  })

  it('repeated texts come from the cache with the same count', () => {
    const a = tc.estimateInput(prompt('', [user(readme), user(code)]), 'claude-sonnet-4-5')
    const b = tc.estimateInput(prompt('', [user(readme), user(code)]), 'claude-sonnet-4-5')
    expect(a).toBe(b)
  })

  it('base64 blobs are left out by a scan that equals the old regex and does not throw on a run of megabytes', () => {
    // the regex the scan replaced: it threw "Maximum call stack size exceeded" on 7.9 MB of letters
    const old = /(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{512,}={0,2}/g
    let seed = 7
    const rnd = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
      return (seed >>> 8) / 0x1000000
    }
    const alphabet = 'aZ09+/_-= "{}é\n'
    for (let k = 0; k < 2000; k++) {
      let s = ''
      const len = Math.floor(rnd() * 3000)
      while (s.length < len)
        s += rnd() < 0.03 ? 'Q'.repeat(Math.floor(rnd() * 1100)) : alphabet[Math.floor(rnd() * alphabet.length)]
      expect(stripBase64Blobs(s)).toBe(s.replace(old, ''))
    }
    const huge = `[{"type":"text","text":"x"},{"type":"${'q'.repeat(7_955_508)}"}]`
    expect(stripBase64Blobs(huge)).toBe('[{"type":"text","text":"x"},{"type":""}]')
    const m: CanonicalMessage = { role: 'user', text: 'What is this?', extra: huge }
    expect(tc.estimateInput(prompt('', [m]), 'gpt-4o')).toBeGreaterThan(0)
  })
})
