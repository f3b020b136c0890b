// bench:proxy's translated streaming line (issue 16: "translated streaming (OpenAI client ->
// Anthropic mock): added time to first chunk <= 1 ms, CPU per streamed request reported"). A fresh
// proxy with the bench's config plus an Anthropic vendor at the same fast mock (its Anthropic SSE
// mode); an OpenAI Chat Completions client streams from claude-haiku-4-5, so every event is
// translated Anthropic -> OpenAI on its way. Compared with the Anthropic mock called directly (first
// chunk) and with the same proxy relaying an Anthropic client's own stream untranslated (CPU).
import type { ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'

export interface TranslateDeps {
  root: string
  dir: string
  mockPort: number
  seconds: number
  connections: number
  freePort: () => Promise<number>
  start: (args: string[], ready: RegExp, env?: NodeJS.ProcessEnv) => Promise<ChildProcess>
  wrk: (url: string, conns: number, secs: number, script: string) => { requests: number; rps: number; errors: number }
  cpuMs: (pid: number) => number
}

// what bench/proxy.ts switches off in its proxy, plus BENCH_DISABLE
const BENCH_DISABLE = [
  'exact-cache',
  'semantic-cache',
  'normalise',
  'prompt-cache',
  'breaker',
  ...(process.env.BENCH_DISABLE?.split(',').filter(Boolean) ?? []),
]

const TEXT = 'The quick brown fox jumps over the lazy dog.'
const PROMPT = [{ role: 'user', content: 'Say something short about foxes.' }]
/** what the OpenAI SDK sends for a streamed chat completion */
const openaiBody = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: 'claude-haiku-4-5', stream: true, max_tokens: 64, messages: PROMPT, ...extra })
/** the same request as the Anthropic SDK sends it */
const anthropicBody = JSON.stringify({ model: 'claude-haiku-4-5', stream: true, max_tokens: 64, messages: PROMPT })
const ANTHROPIC_HEADERS = { 'anthropic-version': '2023-06-01', 'x-api-key': 'sk-ant-bench-client' }

const lua = (body: string, headers: Record<string, string>) =>
  `wrk.method = "POST"\nwrk.body = [[${body}]]\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-AgentMesh-Team"] = "bench"\n${Object.entries(
    headers,
  )
    .map(([k, v]) => `wrk.headers["${k}"] = "${v}"\n`)
    .join('')}`

async function startProxy(d: TranslateDeps, children: ChildProcess[]): Promise<{ pid: number; port: number }> {
  const port = await d.freePort()
  const config = join(d.dir, 'agentmesh.translate.config.ts')
  const mock = `http://127.0.0.1:${d.mockPort}`
  writeFileSync(
    config,
    `import { openai } from ${JSON.stringify(join(d.root, 'plugins/vendors/openai.ts'))}
import { anthropic } from ${JSON.stringify(join(d.root, 'plugins/vendors/anthropic.ts'))}
export default {
  preset: 'solo',
  storage: { driver: 'memory' },
  log: { level: 'warn' },
  disable: ${JSON.stringify(BENCH_DISABLE)},
  plugins: [openai({ baseURL: '${mock}', apiKey: 'sk-bench-not-a-real-key' }), anthropic({ baseURL: '${mock}', apiKey: 'sk-ant-bench-not-a-real-key' })],
}
`,
  )
  const child = await d.start(
    [
      'bin/agentmesh.mjs',
      'serve',
      '--config',
      config,
      '--port',
      String(port),
      '--data-dir',
      join(d.dir, 'data-translate'),
    ],
    /listening on/,
    { NODE_ENV: 'production' },
  )
  children.push(child)
  return { pid: child.pid!, port }
}

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

/** the printed line; BENCH_TRANSLATE=0 leaves it out (bench/proxy.ts) */
export async function translatedStreamLine(d: TranslateDeps, children: ChildProcess[]): Promise<string> {
  const proxy = await startProxy(d, children)
  const translatedLua = join(d.dir, 'translate-stream.lua')
  const nativeLua = join(d.dir, 'anthropic-stream.lua')
  writeFileSync(translatedLua, lua(openaiBody(), {}))
  writeFileSync(nativeLua, lua(anthropicBody, ANTHROPIC_HEADERS))
  const translatedUrl = `http://127.0.0.1:${proxy.port}/v1/chat/completions`
  const nativeUrl = `http://127.0.0.1:${proxy.port}/v1/messages`

  // the translation is checked before it is timed
  let broken = 0
  let problem: string | undefined
  for (let i = 0; i < 20; i++) {
    const r = await streamOnce(
      proxy.port,
      '/v1/chat/completions',
      openaiBody({ stream_options: { include_usage: true } }),
      {},
    )
    const p = translatedProblem(r)
    if (p) {
      broken++
      problem ??= p
    }
  }

  // warm up JIT and connection pools on both paths
  d.wrk(translatedUrl, d.connections, 2, translatedLua)
  d.wrk(nativeUrl, d.connections, 2, nativeLua)

  // first chunk, sequential, direct and through the proxy alternately (drift falls on both)
  const direct: number[] = []
  const proxied: number[] = []
  const n = 300
  for (let i = 0; i < n; i++) {
    const a = await streamOnce(d.mockPort, '/v1/messages', anthropicBody, ANTHROPIC_HEADERS)
    const b = await streamOnce(proxy.port, '/v1/chat/completions', openaiBody(), {})
    if (a.status !== 200 || b.status !== 200) broken++
    direct.push(a.firstMs)
    proxied.push(b.firstMs)
  }
  direct.sort((x, y) => x - y)
  proxied.sort((x, y) => x - y)

  // CPU per streamed request: translated, and the Anthropic client's own stream relayed as it is;
  // alternating rounds, so drift in the machine's load falls on both
  const sum = {
    translated: { cpu: 0, requests: 0, errors: 0, secs: 0 },
    native: { cpu: 0, requests: 0, errors: 0, secs: 0 },
  }
  const rounds = 2
  for (let i = 0; i < rounds; i++) {
    const order = i % 2 ? (['native', 'translated'] as const) : (['translated', 'native'] as const)
    for (const side of order) {
      const cpu0 = d.cpuMs(proxy.pid)
      const r = d.wrk(
        side === 'native' ? nativeUrl : translatedUrl,
        d.connections,
        d.seconds,
        side === 'native' ? nativeLua : translatedLua,
      )
      sum[side].cpu += d.cpuMs(proxy.pid) - cpu0
      sum[side].requests += r.requests
      sum[side].errors += r.errors
      sum[side].secs += d.seconds
    }
  }
  const cpuTranslated = sum.translated.cpu / Math.max(1, sum.translated.requests)
  const cpuNative = sum.native.cpu / Math.max(1, sum.native.requests)
  const rps = sum.translated.requests / sum.translated.secs

  const f = (x: number, digits = 3) => x.toFixed(digits)
  const added = pct(proxied, 50) - pct(direct, 50)
  return `translated stream (OpenAI client -> Anthropic mock)  first chunk direct p50 ${f(pct(direct, 50))} ms | proxy p50 ${f(pct(proxied, 50))} ms p99 ${f(pct(proxied, 99))} ms | added ${f(added)} ms (${n} sequential, alternating) | ${f(rps, 0)} rps, proxy CPU ${f(cpuTranslated)} ms/req translated vs ${f(cpuNative)} ms/req Anthropic client untranslated (wrk ${rounds}x${d.seconds}s each, alternating), errors ${sum.translated.errors + broken}${problem ? ` (${problem})` : ''}${sum.native.errors ? `, untranslated errors ${sum.native.errors}` : ''}`
}
