// The token estimate in slices (issue 11 item 2): BPE time grows with how novel a text is (random
// words and CJK cost 2-4 µs a character), so ordinary text is counted in pieces cut where the
// count cannot change, and estimateInputAsync gives the loop back between pieces with the same
// result as estimateInput.
import { countTokens as o200k } from 'gpt-tokenizer/encoding/o200k_base'
import { countTokens as cl100k } from 'gpt-tokenizer/encoding/cl100k_base'
import { describe, expect, it } from 'vitest'
import { createTokenCounter } from '../core/tokens.ts'
import { longestBlock } from './helpers/longest-block.ts'
import type { Prompt } from '../core/types.ts'

function rng(seed: number) {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

/** words of letters, digits, CJK, punctuation and emoji, between every kind of separator; no run of 256 */
function randomText(r: () => number, chars: number): string {
  const seps = [' ', ' ', ' ', '  ', '\n', '\n\n', '\t', ' \n', '. ', ', ', '\r\n', ' - ']
  const word = () => {
    const kind = r()
    const n = 1 + Math.floor(r() * 12)
    let w = ''
    for (let i = 0; i < n; i++) {
      if (kind < 0.45) w += String.fromCharCode(97 + Math.floor(r() * 26))
      else if (kind < 0.55) w += String.fromCharCode(65 + Math.floor(r() * 26))
      else if (kind < 0.65) w += String(Math.floor(r() * 10))
      else if (kind < 0.8) w += String.fromCharCode(0x4e00 + Math.floor(r() * 3000))
      else if (kind < 0.9) w += '{}()[];=<>_*/\\|&^%$#@~`+:"\'-.!?'[Math.floor(r() * 31)]
      else w += ['é', 'ß', 'ж', '🦊', 'ü', "'s", "'ll"][Math.floor(r() * 7)]
    }
    return w
  }
  let s = ''
  while (s.length < chars) s += word() + seps[Math.floor(r() * seps.length)]
  return s
}

const prompt = (messages: string[], extra: Partial<Prompt> = {}): Prompt => ({
  model: 'x',
  system: 'You are terse.',
  messages: messages.map((text, i) => ({ role: i % 2 ? 'assistant' : 'user', text })),
  params: {},
  stream: false,
  hasImages: false,
  ...extra,
})

const cpuMs = () => {
  const c = process.cpuUsage()
  return (c.user + c.system) / 1000
}

describe('counting in pieces', () => {
  it('a text cut into pieces counts what it counts whole (o200k and cl100k), on 60 random texts', () => {
    const r = rng(7)
    for (let i = 0; i < 60; i++) {
      const text = randomText(r, 2500 + Math.floor(r() * 12_000))
      // fresh counters: no cache between the two
      expect(createTokenCounter().count(text, 'gpt-4o'), `text ${i}`).toBe(o200k(text))
      expect(createTokenCounter().count(text, 'gpt-4-turbo'), `text ${i}`).toBe(cl100k(text))
    }
  })
})

describe('estimateInputAsync', () => {
  const r = rng(11)
  const longRun = Array.from({ length: 3000 }, () => String.fromCharCode(97 + Math.floor(r() * 26))).join('')
  const prompts: Array<[string, Prompt]> = [
    ['small', prompt(['hello there', 'hi', 'what is a fox?'])],
    ['random words', prompt([randomText(r, 40_000), 'ok', randomText(r, 30_000)])],
    ['one long run', prompt([`look: ${longRun} end`])],
    ['over the sampling size', prompt([randomText(r, 90_000)])],
    ['over the request budget', prompt(Array.from({ length: 40 }, () => randomText(r, 5_000)))],
    ['many short turns', prompt(Array.from({ length: 3000 }, () => randomText(r, 60)))],
    [
      'tools and extras',
      prompt([randomText(r, 5_000)], {
        tools: [{ type: 'function', function: { name: 'f', description: randomText(r, 3000), parameters: {} } }],
      }),
    ],
  ]
  const models = ['gpt-4o', 'gpt-4-turbo', 'claude-sonnet-4-5', 'claude-opus-4-7', 'gemini-2.5-pro']
  it.each(prompts)('%s: the same number as estimateInput, for every family', async (name, p) => {
    const within = !['over the request budget', 'many short turns'].includes(name)
    for (const model of models) {
      const sync = createTokenCounter().estimateInput(p, model)
      const fresh = createTokenCounter()
      expect(await fresh.estimateInputAsync(p, model), model).toBe(sync)
      // the counts it made are cached: a sync estimate after it agrees at once (over the request
      // budget it need not: cached texts are free, so more of the rest is counted exactly)
      if (within) expect(fresh.estimateInput(p, model), model).toBe(sync)
    }
  })

  it('gives the loop back: 120k characters of random words held it for well under 50 ms at a time', async () => {
    const p = prompt([randomText(rng(3), 60_000), randomText(rng(4), 60_000)])
    const warm = createTokenCounter()
    warm.estimateInput(prompt([randomText(rng(5), 2000)]), 'gpt-4o') // the tables loaded
    const c0 = cpuMs()
    const sync = createTokenCounter().estimateInput(p, 'gpt-4o')
    const syncMs = cpuMs() - c0
    const { value, maxMs: longest } = await longestBlock(() => createTokenCounter().estimateInputAsync(p, 'gpt-4o'))
    console.log(
      `120k chars of random words: in one go ${syncMs.toFixed(0)} ms of CPU, sliced longest ${longest.toFixed(0)} ms`,
    )
    expect(value).toBe(sync)
    expect(longest).toBeLessThan(40)
  })
})

describe('the tools of a request of megabytes, counted in slices', () => {
  // npm run fuzz seed 318839108 case 3482: a tool whose `type` is 2.9M characters of lone
  // surrogates; its JSON (each one escaped as \ud800) took one JSON.stringify of ~50 ms
  const withTools = (tools: unknown[]): Prompt => ({ ...prompt(['what is the weather?']), tools }) as Prompt

  it('gives the loop back while it prints a tool holding 3M characters of lone surrogates', async () => {
    const p = withTools([{ type: 'a\ud800 '.repeat(1_000_000), function: { name: 'get_weather' } }])
    await createTokenCounter().estimateInputAsync(withTools([{ type: 'a\ud800 '.repeat(100_000) }]), 'gpt-4o')
    const { maxMs } = await longestBlock(() => createTokenCounter().estimateInputAsync(p, 'gpt-4o'))
    console.log(`a tool of 3M lone surrogates: sliced longest ${maxMs.toFixed(0)} ms of CPU`)
    expect(maxMs).toBeLessThan(35)
  })

  // o200k renders functions (a tool that is not one: the tools' JSON); Anthropic counts the JSON
  it.each(['gpt-4o', 'claude-sonnet-4'])(
    '%s: the same count as in one go, for tools that are and are not functions, with long strings',
    async (model) => {
      const lone = 'a\ud800 '.repeat(5_000)
      const shapes: unknown[][] = [
        [{ type: lone, function: { name: 'get_weather', parameters: { type: 'object' } } }],
        [
          {
            type: 'function',
            function: { name: 'w', description: 'the weather '.repeat(25_000), parameters: { type: 'object' } },
          },
        ],
        [{ name: 'plain', input_schema: { type: 'object' } }, undefined, { name: 'big', description: lone }],
      ]
      for (const tools of shapes) {
        const p = withTools(tools)
        expect(await createTokenCounter().estimateInputAsync(p, model)).toBe(
          createTokenCounter().estimateInput(p, model),
        )
      }
    },
  )
})
