// npm run bench:guard — detection recall and false positives of the prompt guards (secrets:
// plugins/guard; personal data: plugins/mask) on the labelled corpus of bench/data/guard, and
// their CPU cost per KB of prompt.
//
// A label counts as found when a detection of the same kind overlaps it. A detection that
// overlaps no label of its kind is a false positive; false_positive_rate is the share of all
// prompts with at least one (for a clean prompt: any detection at all). cpu_ms_per_kb is the CPU
// time of running every detector measured on each prompt, per KB of prompt text.
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { buildCorpus, corpusDigest, type CorpusItem, type Label } from './data/guard/generate.ts'
import { SECRET_KINDS, detectSecrets } from '../plugins/guard/detect.ts'
import { guard } from '../plugins/guard/index.ts'
import type { MeshContext } from '../core/types.ts'

type Detector = (text: string) => Array<{ kind: string; start: number; end: number }>

const root = resolve(import.meta.dirname, '..')
const PERSONAL_KINDS = ['email', 'phone', 'card', 'iban', 'national-id', 'ip']

/** the personal-data detector when plugins/mask has one (built alongside, issue 21 item 3) */
async function personalDetector(): Promise<Detector | undefined> {
  const file = resolve(root, 'plugins/mask/detect.ts')
  if (!existsSync(file)) return undefined
  const mod: any = await import(file)
  return typeof mod.detectPersonalData === 'function' ? (text) => mod.detectPersonalData(text) : undefined
}

interface KindScore {
  labels: number
  found: number
  spurious: number
  spuriousPrompts: Set<string>
  missed: string[]
}

const overlaps = (a: { start: number; end: number }, b: { start: number; end: number }) =>
  a.start < b.end && b.start < a.end

function score(items: CorpusItem[], detectors: Detector[], kinds: string[]) {
  const per = new Map<string, KindScore>(
    kinds.map((k) => [k, { labels: 0, found: 0, spurious: 0, spuriousPrompts: new Set(), missed: [] }]),
  )
  const flagged = new Set<string>()
  for (const item of items) {
    const found = detectors.flatMap((d) => d(item.text)).filter((f) => per.has(f.kind))
    const labels = item.labels.filter((l) => per.has(l.kind))
    for (const l of labels) {
      const s = per.get(l.kind)!
      s.labels++
      if (found.some((f) => f.kind === l.kind && overlaps(f, l))) s.found++
      else s.missed.push(item.id)
    }
    for (const f of found) {
      if (labels.some((l: Label) => l.kind === f.kind && overlaps(f, l))) continue
      const s = per.get(f.kind)!
      s.spurious++
      s.spuriousPrompts.add(item.id)
      flagged.add(item.id)
    }
  }
  return { per, flagged }
}

/**
 * The personal-data detector as the proxy runs it: after the guard (enforce 'pre', listed first)
 * replaced each secret by [REDACTED:kind]. Its findings are mapped back to the original text.
 */
function afterRedaction(personal: Detector): Detector {
  return (text) => {
    const secrets = detectSecrets(text)
    if (!secrets.length) return personal(text)
    let redacted = ''
    let at = 0
    // [redacted start, original start] of each unchanged stretch after a replacement
    const marks: Array<[number, number]> = [[0, 0]]
    for (const s of secrets) {
      redacted += text.slice(at, s.start) + `[REDACTED:${s.kind}]`
      at = s.end
      marks.push([redacted.length, s.end])
    }
    redacted += text.slice(at)
    const toOriginal = (p: number) => {
      let m = marks[0]!
      for (const k of marks) if (k[0] <= p) m = k
      return m[1] + (p - m[0])
    }
    return personal(redacted).map((f) => ({ kind: f.kind, start: toOriginal(f.start), end: toOriginal(f.end) }))
  }
}

/** CPU ms per KB of running the detectors over every prompt, best of three rounds */
function cpuPerKb(items: CorpusItem[], detectors: Detector[]): number {
  const kb = items.reduce((n, i) => n + i.text.length, 0) / 1024
  const round = () => {
    const t0 = process.cpuUsage()
    for (let rep = 0; rep < 20; rep++) for (const it of items) for (const d of detectors) d(it.text)
    const d = process.cpuUsage(t0)
    return (d.user + d.system) / 1000 / (20 * kb)
  }
  round()
  return Math.min(round(), round(), round())
}

const f = (n: number, d = 4) => n.toFixed(d)

function table(title: string, per: Map<string, KindScore>, kinds: string[], prompts: number) {
  console.log(`\n${title}`)
  console.log(
    `${'kind'.padEnd(22)} ${'labels'.padStart(6)} ${'found'.padStart(6)} ${'recall'.padStart(7)} ${'false+'.padStart(7)} ${'fp_rate'.padStart(8)}  missed (ids)`,
  )
  for (const k of kinds) {
    const s = per.get(k)!
    const recall = s.labels ? s.found / s.labels : NaN
    console.log(
      `${k.padEnd(22)} ${String(s.labels).padStart(6)} ${String(s.found).padStart(6)} ${(s.labels ? f(recall, 3) : '-').padStart(7)} ${String(s.spurious).padStart(7)} ${f(s.spuriousPrompts.size / prompts).padStart(8)}  ${s.missed.slice(0, 4).join(' ')}${s.missed.length > 4 ? ' ...' : ''}`,
    )
  }
}

/**
 * The guard's beforeRequest hook on bench:proxy's request (nothing to find), in process: what the
 * guard adds to every request that holds no secret. CPU µs per call over 200,000 calls, best of 3.
 */
function hookCostUs(): number {
  const rawBody = JSON.stringify({
    model: 'gpt-4o-mini',
    stream: false,
    max_tokens: 64,
    messages: [{ role: 'user', content: 'Say something short about foxes.' }],
  })
  const ctx = {
    operation: 'chat',
    protocol: 'openai',
    request: { rawBody, body: JSON.parse(rawBody), dirty: false },
    headers: {},
    state: {},
  } as unknown as MeshContext
  const hook = guard().hooks!.beforeRequest!
  const round = () => {
    const t0 = process.cpuUsage()
    for (let i = 0; i < 200_000; i++) hook(ctx)
    const d = process.cpuUsage(t0)
    return (d.user + d.system) / 200_000
  }
  round()
  if (ctx.request.dirty || Object.keys(ctx.headers).length)
    throw new Error('the guard changed a request without secrets')
  return Math.min(round(), round(), round())
}

async function main() {
  const items = buildCorpus()
  const clean = items.filter((i) => i.labels.length === 0)
  const personal = await personalDetector()
  const secretKinds = [...SECRET_KINDS]
  const kinds = personal ? [...secretKinds, ...PERSONAL_KINDS] : secretKinds
  const detectors: Detector[] = personal ? [(t) => detectSecrets(t), personal] : [(t) => detectSecrets(t)]
  const kb = items.reduce((n, i) => n + i.text.length, 0) / 1024

  console.log(
    `bench:guard corpus: ${items.length} prompts (${items.length - clean.length} labelled, ${clean.length} clean), ${f(kb, 0)} KB, sha256 ${corpusDigest(items).slice(0, 16)}`,
  )
  if (!personal)
    console.log('note: plugins/mask/detect.ts (detectPersonalData) is not there: personal-data kinds are skipped')

  const { per, flagged } = score(items, detectors, kinds)
  table('secrets (plugins/guard)', per, secretKinds, items.length)
  if (personal) table('personal data (plugins/mask)', per, PERSONAL_KINDS, items.length)

  const sum = (ks: string[], field: 'labels' | 'found') => ks.reduce((n, k) => n + per.get(k)![field], 0)
  const secretRecall = sum(secretKinds, 'found') / sum(secretKinds, 'labels')
  const recall = sum(kinds, 'found') / sum(kinds, 'labels')
  const fpRate = flagged.size / items.length
  const cleanFlagged = clean.filter((i) => flagged.has(i.id))
  // the same, with personal data searched in the redacted text, as the two plugins run in the proxy
  const piped = personal
    ? score(items, [(t) => detectSecrets(t), afterRedaction(personal)], kinds).flagged.size / items.length
    : undefined
  const cpuSecrets = cpuPerKb(items, [detectors[0]!])
  const cpuPersonal = personal ? cpuPerKb(items, [personal]) : 0
  const cpu = cpuPerKb(items, detectors)

  console.log(
    `\nsecrets recall ${f(secretRecall)}${personal ? `, personal data recall ${f(sum(PERSONAL_KINDS, 'found') / sum(PERSONAL_KINDS, 'labels'))}` : ''}`,
  )
  console.log(
    `prompts with a false positive: ${flagged.size} of ${items.length}; clean prompts flagged: ${cleanFlagged.length} of ${clean.length} ${cleanFlagged
      .slice(0, 6)
      .map((i) => i.id)
      .join(' ')}`,
  )
  if (piped !== undefined)
    console.log(
      `as the proxy runs them (personal data searched after the guard's redaction): false positive rate ${f(piped)}`,
    )
  console.log(
    `CPU per KB: secrets ${f(cpuSecrets, 5)} ms${personal ? `, personal data ${f(cpuPersonal, 5)} ms` : ''}, together ${f(cpu, 5)} ms`,
  )
  console.log(
    `guard hook on a request with nothing to find (bench:proxy's body, in process): ${f(hookCostUs(), 3)} µs CPU per request`,
  )
  console.log(
    `aims: secrets recall >= 0.98 ${secretRecall >= 0.98 ? 'met' : 'NOT met'}; false positives <= 1% ${fpRate <= 0.01 ? 'met' : 'NOT met'}; <= 0.02 ms CPU per KB ${cpu <= 0.02 ? 'met' : 'NOT met'}`,
  )
  console.log(`bench:guard recall=${f(recall)} false_positive_rate=${f(fpRate)} cpu_ms_per_kb=${f(cpu, 5)}`)
}

await main()
