// bench:proxy's translated streaming line (issue 16: "translated streaming (OpenAI client ->
// Anthropic mock): added time to first chunk <= 1 ms, CPU per streamed request reported"). A fresh
// proxy with the bench's config plus an Anthropic vendor at the same fast mock (its Anthropic SSE
// mode); an OpenAI Chat Completions client streams from claude-haiku-4-5, so every event is
// translated Anthropic -> OpenAI on its way. Compared with the Anthropic mock called directly (first
// chunk, sequential requests alternating) and, for CPU, with a second proxy of the same config
// relaying an Anthropic client's own stream untranslated, both loaded at once (side-by-side.ts).
import type { ChildProcess } from 'node:child_process'
import { request } from 'node:http'
import {
  anthropicVendor,
  type BenchDeps,
  controlNote,
  how,
  measure,
  openaiVendor,
  type Side,
  withSideBySide,
  writeLua,
} from './side-by-side.ts'

const TEXT = 'The quick brown fox jumps over the lazy dog.'
const PROMPT = [{ role: 'user', content: 'Say something short about foxes.' }]
/** what the OpenAI SDK sends for a streamed chat completion */
const openaiBody = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: 'claude-haiku-4-5', stream: true, max_tokens: 64, messages: PROMPT, ...extra })
/** the same request as the Anthropic SDK sends it */
const anthropicBody = JSON.stringify({ model: 'claude-haiku-4-5', stream: true, max_tokens: 64, messages: PROMPT })
const ANTHROPIC_HEADERS = { 'anthropic-version': '2023-06-01', 'x-api-key': 'sk-ant-bench-client' }

/** one streamed request: time to the first body chunk, the whole body, the status */
function streamOnce(
  port: number,
  path: string,
  body: string,
  headers: Record<string, string>,
): Promise<{ firstMs: number; text: string; status: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers },
      },
      (res) => {
        let firstMs = 0
        const parts: Buffer[] = []
        res.on('data', (c: Buffer) => {
          firstMs ||= performance.now() - t0
          parts.push(c)
        })
        res.on('end', () =>
          resolve({ firstMs, text: Buffer.concat(parts).toString('utf8'), status: res.statusCode ?? 0 }),
        )
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

/**
 * Whether a translated stream is the whole answer as OpenAI chunks: the text, a stop, the usage
 * the Anthropic mock reported (asked for with include_usage), and [DONE]. A bench of a broken
 * translation would measure nothing.
 */
function translatedProblem(r: { text: string; status: number }): string | undefined {
  if (r.status !== 200) return `status ${r.status}: ${r.text.slice(0, 200)}`
  const events = r.text
    .split('\n\n')
    .map((e) => e.trim())
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice(6))
  if (events.at(-1) !== '[DONE]') return 'no [DONE] at the end'
  let text = ''
  let finish: string | undefined
  let usage: { prompt_tokens?: number; completion_tokens?: number } | undefined
  for (const e of events.slice(0, -1)) {
    const c = JSON.parse(e)
    if (c.object !== 'chat.completion.chunk') return `not an OpenAI chunk: ${e.slice(0, 120)}`
    text += c.choices?.[0]?.delta?.content ?? ''
    finish = c.choices?.[0]?.finish_reason ?? finish
    if (c.usage) usage = c.usage
  }
  if (text !== TEXT) return `text "${text}"`
  if (finish !== 'stop') return `finish_reason ${finish}`
  if (usage?.prompt_tokens !== 12 || usage?.completion_tokens !== 10) return `usage ${JSON.stringify(usage)}`
  return undefined
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!

/** the translation checked on 20 streamed requests: how many were broken, and the first problem */
async function checkTranslation(port: number): Promise<{ broken: number; problem?: string }> {
  let broken = 0
  let problem: string | undefined
  for (let i = 0; i < 20; i++) {
    const body = openaiBody({ stream_options: { include_usage: true } })
    const p = translatedProblem(await streamOnce(port, '/v1/chat/completions', body, {}))
    if (p) {
      broken++
      problem ??= p
    }
  }
  return { broken, problem }
}

/** first chunk, sequential, direct and through the proxy alternately (drift falls on both); sorted ms */
async function firstChunks(d: BenchDeps, port: number, n: number) {
  const direct: number[] = []
  const proxied: number[] = []
  let broken = 0
  for (let i = 0; i < n; i++) {
    const a = await streamOnce(d.mockPort, '/v1/messages', anthropicBody, ANTHROPIC_HEADERS)
    const b = await streamOnce(port, '/v1/chat/completions', openaiBody(), {})
    if (a.status !== 200 || b.status !== 200) broken++
    direct.push(a.firstMs)
    proxied.push(b.firstMs)
  }
  return { direct: direct.sort((x, y) => x - y), proxied: proxied.sort((x, y) => x - y), broken }
}

/** the printed line; BENCH_TRANSLATE=0 leaves it out (bench/proxy.ts) */
export async function translatedStreamLine(d: BenchDeps, children: ChildProcess[]): Promise<string> {
  // one config (both vendors) on both sides; A relays the Anthropic client's stream, B translates
  const config = {
    imports: { anthropic: 'plugins/vendors/anthropic.ts' },
    plugins: [openaiVendor(d), anthropicVendor(d)],
  }
  const native: Side = {
    ...config,
    name: 'translate-native',
    path: '/v1/messages',
    lua: writeLua(d, 'anthropic-stream', anthropicBody, ANTHROPIC_HEADERS),
  }
  const translated: Side = { ...config, name: 'translate', lua: writeLua(d, 'translate-stream', openaiBody()) }
  const n = 300
  const { check, r, fc } = await withSideBySide(d, children, native, translated, async (p) => {
    // the translation is checked before it is timed
    const check = await checkTranslation(p.b.port)
    const r = await measure(d, p, 7)
    return { check, r, fc: await firstChunks(d, p.b.port, n) }
  })
  const { direct, proxied } = fc
  const broken = check.broken + fc.broken
  const f = (x: number, digits = 3) => x.toFixed(digits)
  const added = pct(proxied, 50) - pct(direct, 50)
  const control = controlNote(r, (c) => `ratio ${f(c.cpuRatio)}, ${f(c.msB)} vs ${f(c.msA)} ms/req`)
  return `translated stream (OpenAI client -> Anthropic mock)  first chunk direct p50 ${f(pct(direct, 50))} ms | proxy p50 ${f(pct(proxied, 50))} ms p99 ${f(pct(proxied, 99))} ms | added ${f(added)} ms (${n} sequential, alternating) | ${f(r.rpsB, 0)} rps, proxy CPU ${f(r.msB)} ms/req translated vs ${f(r.msA)} ms/req Anthropic client untranslated, translated/untranslated ${f(r.cpuRatio)}${control} (${how(d, r)}), errors ${r.errorsB + broken}${check.problem ? ` (${check.problem})` : ''}${r.errorsA ? `, untranslated errors ${r.errorsA}` : ''}`
}
