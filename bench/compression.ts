// bench:compression: tokens before and after each compression strategy on multi-turn coding-agent
// transcripts with tool use (bench/data/transcripts, see its README), and whether every
// identifier, file path and number named in each transcript's last user message is still in the
// prompt after compression.
//   npm run bench:compression
// Rows per transcript: each strategy alone (lossless and tool-results with no target, so they do
// all they can; old-turns to the budget target), then the plugin's default chain to the budget
// target (60% of the input, what the plugin aims at when a budget runs low), which the summary
// line reports. Tokens are the proxy's own estimates (core/tokens.ts) for each transcript's model.
import { readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { protocols } from '../core/protocols/index.ts'
import { createTokenCounter } from '../core/tokens.ts'
import type { Prompt, ProtocolName } from '../core/types.ts'
import { compressBody, type ResolvedStrategies } from '../plugins/compression/compress.ts'
import { resolveOptions } from '../plugins/compression/options.ts'
import { viewOf } from '../plugins/compression/view.ts'

const dir = resolve(import.meta.dirname ?? '.', 'data/transcripts')
const tokens = createTokenCounter()
const BUDGET_RATIO = resolveOptions({}).budgetTargetRatio

interface Transcript {
  file: string
  protocol: ProtocolName
  model: string
  body: any
}

function load(): Transcript[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => {
      const t = JSON.parse(readFileSync(join(dir, file), 'utf8'))
      return { file, protocol: t.protocol, model: t.model, body: t.body }
    })
}

const parse = (t: Transcript, body: any): Prompt => protocols[t.protocol].parse(body, { pathModel: t.model })
const measure = (t: Transcript) => (body: any) => tokens.estimateInput(parse(t, body), t.model)

/** everything of a prompt a model reads, as one text */
const allText = (p: Prompt) => [p.system, ...p.messages.map((m) => `${m.text}\n${m.extra ?? ''}`)].join('\n')

function lastUserText(p: Prompt): string {
  for (let i = p.messages.length - 1; i >= 0; i--)
    if (p.messages[i]!.role === 'user' && p.messages[i]!.text.trim()) return p.messages[i]!.text
  return ''
}

/** identifiers, file paths and numbers named in a message */
export function factsOf(text: string): string[] {
  const facts = new Set<string>()
  for (const m of text.matchAll(/`([^`\n]+)`/g)) facts.add(m[1]!)
  for (const m of text.matchAll(/(?:[\w.-]+\/)+[\w.-]+|\b[\w-]+\.(?:ts|tsx|js|mjs|py|json|ya?ml|md|go|rs)\b/g))
    facts.add(m[0].replace(/[.,;:]+$/, ''))
  for (const m of text.matchAll(/\b(?:[a-z]+[A-Z]\w*|[A-Z][a-z]+[A-Z]\w*|[a-z]+_[a-z0-9_]+)\b/g)) facts.add(m[0])
  for (const m of text.matchAll(/\b\d+(?:\.\d+)?\b/g)) facts.add(m[0])
  return [...facts]
}

/**
 * What the vendor would refuse: a call without its result or a result without its call, or
 * (Anthropic, Gemini) two messages of the same role side by side. undefined when valid.
 */
function problem(t: Transcript, body: any): string | undefined {
  const view = viewOf(t.protocol, body)!
  const calls: string[] = []
  const results: string[] = []
  let prev: string | undefined
  for (const m of view.msgs) {
    for (const p of m.parts) {
      // Gemini calls without ids are paired by position: compared as counts
      if (p.kind === 'call') calls.push(t.protocol === 'gemini' ? 'call' : p.id!)
      if (p.kind === 'result') results.push(t.protocol === 'gemini' ? 'call' : p.id!)
    }
    if (view.strictRoles && m.role !== 'system') {
      if (prev === m.role) return `two ${m.role} messages side by side`
      prev = m.role
    }
  }
  const a = [...calls].sort().join()
  const b = [...results].sort().join()
  return a === b ? undefined : 'tool calls and results do not pair up'
}

const STRATEGY_ONLY: Record<string, Partial<ResolvedStrategies>> = {
  lossless: { toolResults: false, oldTurns: false },
  'tool-results': { lossless: false, oldTurns: false },
  'old-turns': { lossless: false, toolResults: false },
}

async function run(t: Transcript, strategies: ResolvedStrategies, target: number) {
  const body = structuredClone(t.body)
  const before = measure(t)(t.body)
  const started = performance.now()
  const r = await compressBody({
    protocol: t.protocol,
    body,
    before,
    target,
    measure: measure(t),
    count: (s) => tokens.count(s, t.model),
    strategies,
  })
  return { ...r, ms: performance.now() - started, body }
}

const pad = (s: string | number, n: number) => String(s).padStart(n)

async function main() {
  const transcripts = load()
  const defaults = resolveOptions({}).strategies
  let totalBefore = 0
  let totalAfter = 0
  let factsKept = 0
  let factsAll = 0
  let ctxKept = 0
  let ctxHad = 0
  const perStrategy: Record<string, { before: number; after: number }> = {}
  const invalid: string[] = []
  console.log(
    `${'transcript'.padEnd(28)} ${pad('before', 7)} ${pad('lossless', 8)} ${pad('tool-res', 8)} ${pad('old-turn', 8)} ${pad('chain', 7)} ${pad('saved', 6)} ${pad('ms', 6)}  facts  applied`,
  )
  for (const t of transcripts) {
    const before = measure(t)(t.body)
    const row: Record<string, number> = {}
    for (const [name, off] of Object.entries(STRATEGY_ONLY)) {
      const target = name === 'old-turns' ? Math.floor(before * BUDGET_RATIO) : 0
      const r = await run(t, { ...defaults, ...off }, target)
      row[name] = r.after
      const agg = (perStrategy[name] ??= { before: 0, after: 0 })
      agg.before += before
      agg.after += r.after
    }
    const chain = await run(t, defaults, Math.floor(before * BUDGET_RATIO))
    // the deepest cut this bench makes (old turns to 30%) must still be a body the vendor takes
    const deep = await run(t, defaults, Math.floor(before * 0.3))
    for (const [what, body] of [
      ['chain', chain.body],
      ['deep', deep.body],
    ] as const) {
      const p = problem(t, body)
      if (p) invalid.push(`${t.file} (${what}): ${p}`)
    }
    if (problem(t, t.body)) throw new Error(`${t.file} is not valid as written: ${problem(t, t.body)}`)
    const original = parse(t, t.body)
    const compressed = parse(t, chain.body)
    const facts = factsOf(lastUserText(original))
    const text = allText(compressed)
    const kept = facts.filter((f) => text.includes(f))
    // besides the last message itself (never changed): do the rest of the prompt still name them?
    const rest = (p: Prompt) => allText({ ...p, messages: p.messages.slice(0, -1) })
    const had = facts.filter((f) => rest(original).includes(f))
    const stillThere = had.filter((f) => rest(compressed).includes(f))
    totalBefore += before
    totalAfter += chain.after
    factsKept += kept.length
    factsAll += facts.length
    ctxHad += had.length
    ctxKept += stillThere.length
    const saved = (1 - chain.after / before) * 100
    console.log(
      `${t.file.padEnd(28)} ${pad(before, 7)} ${pad(row.lossless!, 8)} ${pad(row['tool-results']!, 8)} ${pad(row['old-turns']!, 8)} ${pad(chain.after, 7)} ${pad(saved.toFixed(1), 5)}% ${pad(chain.ms.toFixed(0), 6)}  ${kept.length}/${facts.length}  ${chain.applied.join(',')}${chain.met ? '' : ' (target not met)'}`,
    )
    if (kept.length < facts.length)
      console.log(`  missing after compression: ${facts.filter((f) => !kept.includes(f)).join(', ')}`)
  }
  console.log('')
  for (const [name, a] of Object.entries(perStrategy))
    console.log(
      `strategy ${name.padEnd(13)} alone: ${a.before} -> ${a.after} tokens (${((1 - a.after / a.before) * 100).toFixed(1)}% saved)`,
    )
  console.log(`chain to ${BUDGET_RATIO * 100}% of the input (budget trigger): ${totalBefore} -> ${totalAfter} tokens`)
  console.log(
    `facts of the last user message also named elsewhere in the prompt: ${ctxKept}/${ctxHad} still named after compression`,
  )
  console.log(
    `bodies the vendor would refuse after compression: ${invalid.length}${invalid.length ? `\n  ${invalid.join('\n  ')}` : ''}`,
  )
  const savedPct = ((1 - totalAfter / totalBefore) * 100).toFixed(1)
  console.log(
    `bench:compression transcripts=${transcripts.length} tokens_before=${totalBefore} tokens_after=${totalAfter} saved_pct=${savedPct} last_message_facts_kept=${factsKept}/${factsAll}`,
  )
  if (factsKept < factsAll || invalid.length) process.exitCode = 1
}

await main()
