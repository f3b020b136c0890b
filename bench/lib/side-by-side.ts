// One side-by-side measure for bench:proxy's gains lines (router, translated stream, metrics+tracing,
// dashboard, breaker+approval). This machine's speed drifts from second to second, so two
// configurations are never measured one after the other: two fresh proxies run at the same time,
// pinned on the same CPU (the last), each under its own wrk load started at the same moment (wrk,
// the mock upstream and any helper on CPU 0), and each window gives each proxy's CPU per request
// from /proc; the lines report medians over the windows. BENCH_CONTROL=1 adds an A/A control in the
// same sitting: two more fresh proxies with A's config, loaded against each other in windows
// interleaved with the A/B ones (fresh twins, not A itself, so every proxy serves the same load and
// the A/B figure is what it is without the control), so a reader can judge a figure of 0.01 ms
// against the noise beside it.
import { type ChildProcess, execFile, execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'

/** what bench/proxy.ts switches off in its proxy (caches, normalise, the preset's breaker), plus BENCH_DISABLE */
export const BENCH_DISABLE = [
  'exact-cache',
  'semantic-cache',
  'normalise',
  'prompt-cache',
  'breaker',
  ...(process.env.BENCH_DISABLE?.split(',').filter(Boolean) ?? []),
]

/** what bench/proxy.ts hands every gains line */
export interface BenchDeps {
  root: string
  dir: string
  mockPort: number
  /** the mock upstream's process, pinned with the load generators (off the proxies' CPU) */
  mockPid?: number
  seconds: number
  connections: number
  /** the bench's non-streaming Chat Completions body */
  plainLua: string
  freePort: () => Promise<number>
  start: (args: string[], ready: RegExp, env?: NodeJS.ProcessEnv) => Promise<ChildProcess>
  /** CPU ms per request of the bench's main proxy alone under wrk, this run (set once measured) */
  standaloneMs?: number
}

/** the bench's Chat Completions request (what wrk repeats) */
export const chatBody = (stream: boolean) =>
  JSON.stringify({
    model: 'gpt-4o-mini',
    stream,
    max_tokens: 64,
    messages: [{ role: 'user', content: 'Say something short about foxes.' }],
  })

/** one side's proxy: the bench's config with its own plugins, and the load wrk puts on it */
export interface Side {
  /** names the config file and the data dir */
  name: string
  /** extra named imports: export name -> module path under the repo root */
  imports?: Record<string, string>
  /** plugin expressions, in order (default: the OpenAI vendor alone, see `openaiVendor`) */
  plugins?: string[]
  /** preset plugins switched off besides the bench's own */
  disable?: string[]
  env?: NodeJS.ProcessEnv
  /** request path (default /v1/chat/completions) and wrk script (default the bench's plain body) */
  path?: string
  lua?: string
}

export interface BenchProxy {
  pid: number
  port: number
  /** where this side's load goes */
  url: string
  lua: string
  child: ChildProcess
}

/** utime+stime of a process, in ms */
export function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10
}

export const openaiVendor = (d: BenchDeps) =>
  `openai({ baseURL: 'http://127.0.0.1:${d.mockPort}', apiKey: 'sk-bench-not-a-real-key' })`
export const anthropicVendor = (d: BenchDeps) =>
  `anthropic({ baseURL: 'http://127.0.0.1:${d.mockPort}', apiKey: 'sk-ant-bench-not-a-real-key' })`

/** the bench's config (solo, caching and the preset's breaker off, memory storage) with the side's plugins */
export function writeConfig(d: BenchDeps, side: Side): string {
  const imports = { openai: 'plugins/vendors/openai.ts', ...side.imports }
  const file = join(d.dir, `agentmesh.${side.name}.config.ts`)
  writeFileSync(
    file,
    `${Object.entries(imports)
      .map(([name, path]) => `import { ${name} } from ${JSON.stringify(join(d.root, path))}\n`)
      .join('')}export default {
  preset: 'solo',
  storage: { driver: 'memory' },
  log: { level: 'warn' },
  disable: ${JSON.stringify([...BENCH_DISABLE, ...(side.disable ?? [])])},
  plugins: [${(side.plugins ?? [openaiVendor(d)]).join(', ')}],
}
`,
  )
  return file
}

/** a wrk script that POSTs one JSON body, as the bench team, with any extra headers */
export function writeLua(d: BenchDeps, name: string, body: string, headers: Record<string, string> = {}): string {
  const file = join(d.dir, `${name}.lua`)
  const extra = Object.entries(headers).map(([k, v]) => `wrk.headers["${k}"] = "${v}"\n`)
  writeFileSync(
    file,
    `wrk.method = "POST"\nwrk.body = [[${body}]]\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-AgentMesh-Team"] = "bench"\n${extra.join('')}`,
  )
  return file
}

export async function startProxy(d: BenchDeps, children: ChildProcess[], side: Side): Promise<BenchProxy> {
  const port = await d.freePort()
  const config = writeConfig(d, side)
  const args = ['serve', '--config', config, '--port', String(port), '--data-dir', join(d.dir, `data-${side.name}`)]
  // the OTLP endpoint only where a side asks for it: an inherited one would switch otel on in every proxy
  const env = { NODE_ENV: 'production', OTEL_EXPORTER_OTLP_ENDPOINT: '', ...side.env }
  const child = await d.start(['bin/agentmesh.mjs', ...args], /listening on/, env)
  children.push(child)
  const url = `http://127.0.0.1:${port}${side.path ?? '/v1/chat/completions'}`
  return { pid: child.pid!, port, url, lua: side.lua ?? d.plainLua, child }
}

/** the CPU the proxies share (the last one) and the one wrk, the mock and helpers use */
const CPUS = availableParallelism()
export const PROXY_CPU = String(CPUS - 1)
export const LOAD_CPU = '0'

/** every thread of a process onto one CPU (where taskset exists and there are two CPUs) */
export function pin(pid: number, cpu: string): boolean {
  if (CPUS < 2) return false
  try {
    execFileSync('taskset', ['-a', '-p', '-c', cpu, String(pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

interface WrkRun {
  requests: number
  rps: number
  errors: number
}

/** wrk without blocking the event loop (two run at once), on the load generators' CPU when pinned */
function wrkAsync(p: BenchProxy, conns: number, secs: number, pinned: boolean): Promise<WrkRun> {
  const args = ['-t1', `-c${conns}`, `-d${secs}s`, '-s', p.lua, p.url]
  const [cmd, argv] = pinned ? ['taskset', ['-c', LOAD_CPU, 'wrk', ...args]] : ['wrk', args]
  return new Promise((resolve, reject) => {
    execFile(cmd as string, argv as string[], { encoding: 'utf8' }, (err, out) => {
      if (err) return reject(err)
      const errs = /Non-2xx or 3xx responses: (\d+)/.exec(out)
      const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
      resolve({
        requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? 0),
        rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
        errors: Number(errs?.[1] ?? 0) + (sock ? sock.slice(1).reduce((n, x) => n + Number(x), 0) : 0),
      })
    })
  })
}

export const median = (xs: number[]) =>
  xs.length ? [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]! : Number.NaN

/** medians over the windows of one pair of proxies (A is the baseline) */
export interface PairResult {
  /** CPU ms per request and rps of A and B */
  msA: number
  msB: number
  rpsA: number
  rpsB: number
  /** B/A of CPU per request and of rps */
  cpuRatio: number
  rpsRatio: number
  /** B minus A, CPU ms per request */
  added: number
  errorsA: number
  errorsB: number
  /** windows run, and those counted (a window in which either proxy was starved is left out) */
  windows: number
  used: number
  /** B/A of rps in each window counted, in the order run (what a noise test compares) */
  rpsWindows: number[]
}

export interface SideBySideResult extends PairResult {
  /** every request B served, the warm-up's too (what its exports and counters should account for) */
  requestsB: number
  pinned: boolean
  /** A against a second proxy with A's config, in windows interleaved with A/B's (BENCH_CONTROL=1) */
  control?: PairResult
}

class Windows {
  private ms: [number[], number[]] = [[], []]
  private rps: [number[], number[]] = [[], []]
  private cpuRatios: number[] = []
  private rpsRatios: number[] = []
  private diffs: number[] = []
  errors: [number, number] = [0, 0]
  windows = 0

  add(ms: [number, number], runs: [WrkRun, WrkRun]) {
    this.windows++
    this.errors[0] += runs[0].errors
    this.errors[1] += runs[1].errors
    // a window in which either proxy was starved (another job took the machine) says nothing
    if (runs[0].requests < 100 || runs[1].requests < 100) return
    for (const i of [0, 1] as const) {
      this.ms[i].push(ms[i])
      this.rps[i].push(runs[i].rps)
    }
    this.cpuRatios.push(ms[1] / ms[0])
    this.rpsRatios.push(runs[1].rps / runs[0].rps)
    this.diffs.push(ms[1] - ms[0])
  }

  // medians throughout: one window of a machine busy elsewhere does not move them
  result(): PairResult {
    return {
      msA: median(this.ms[0]),
      msB: median(this.ms[1]),
      rpsA: median(this.rps[0]),
      rpsB: median(this.rps[1]),
      cpuRatio: median(this.cpuRatios),
      rpsRatio: median(this.rpsRatios),
      added: median(this.diffs),
      errorsA: this.errors[0],
      errorsB: this.errors[1],
      windows: this.windows,
      used: this.diffs.length,
      rpsWindows: [...this.rpsRatios],
    }
  }
}

/** one window: both proxies loaded at once by two wrk, each one's CPU per request */
async function window(x: BenchProxy, y: BenchProxy, conns: number, secs: number, pinned: boolean) {
  const cpu0 = [cpuMs(x.pid), cpuMs(y.pid)]
  const runs = (await Promise.all([x, y].map((p) => wrkAsync(p, conns, secs, pinned)))) as [WrkRun, WrkRun]
  const ms: [number, number] = [
    (cpuMs(x.pid) - cpu0[0]!) / Math.max(1, runs[0].requests),
    (cpuMs(y.pid) - cpu0[1]!) / Math.max(1, runs[1].requests),
  ]
  return { ms, runs }
}

export interface Proxies {
  a: BenchProxy
  b: BenchProxy
  /** two more proxies with A's config (BENCH_CONTROL=1) */
  control?: [BenchProxy, BenchProxy]
}

/** A and B (and A's control twins) pinned together, warmed up, then `windows` windows of each pair */
export async function measure(d: BenchDeps, p: Proxies, windows: number): Promise<SideBySideResult> {
  const pairs: [BenchProxy, BenchProxy][] = [[p.a, p.b], ...(p.control ? [p.control] : [])]
  let pinned = pairs.flat().every((x) => pin(x.pid, PROXY_CPU))
  if (pinned && d.mockPid) pinned = pin(d.mockPid, LOAD_CPU)
  const conns = Math.max(1, Math.floor(d.connections / 2))
  const sums = pairs.map(() => new Windows())
  // warm up JIT and connection pools of every proxy
  const warm = await window(p.a, p.b, conns, 3, pinned)
  let requestsB = warm.runs[1].requests
  if (p.control) await window(...p.control, conns, 3, pinned)
  for (let i = 0; i < windows; i++) {
    // A/B and A/A take turns at going first, so neither always follows the other
    for (let k = 0; k < pairs.length; k++) {
      const j = (i + k) % pairs.length
      const w = await window(...pairs[j]!, conns, d.seconds, pinned)
      sums[j]!.add(w.ms, w.runs)
      if (j === 0) requestsB += w.runs[1].requests
    }
  }
  return { ...sums[0]!.result(), requestsB, pinned, control: sums[1]?.result() }
}

export const controlWanted = () => process.env.BENCH_CONTROL === '1'

/**
 * Whether B's rps differs from A's beyond the noise of the sitting: a two-sided permutation test of
 * the difference of medians between the A/B windows' rps ratios and the A/A control's (windows
 * interleaved, same proxies' CPU). `p` is the share of relabellings of the pooled windows whose
 * medians differ at least as much (every relabelling up to 20,000 of them, else 20,000 seeded
 * random ones); beyond noise when p < 0.05. `band` is the A/A windows' range.
 */
export function rpsNoiseTest(ab: PairResult, aa: PairResult): { p: number; band: [number, number]; beyond: boolean } {
  const x = ab.rpsWindows
  const y = aa.rpsWindows
  const observed = Math.abs(median(x) - median(y))
  const pooled = [...x, ...y]
  let seed = 0x9e3779b9
  const random = () => {
    // xorshift32: a fixed seed, so a run's p is reproducible from its windows
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    return (seed >>> 0) / 2 ** 32
  }
  let asExtreme = 0
  let tried = 0
  const trial = (pick: (i: number) => boolean) => {
    const a: number[] = []
    const b: number[] = []
    pooled.forEach((v, i) => (pick(i) ? a : b).push(v))
    tried++
    if (Math.abs(median(a) - median(b)) >= observed - 1e-12) asExtreme++
  }
  const n = pooled.length
  if (n <= 20 && binomial(n, x.length) <= 20_000) {
    // every way to label x.length of the pooled windows as A/B
    for (let mask = 0; mask < 2 ** n; mask++) if (bitCount(mask) === x.length) trial((i) => ((mask >> i) & 1) === 1)
  } else
    for (let t = 0; t < 20_000; t++) {
      const order = pooled.map((_, i) => i)
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1))
        ;[order[i], order[j]] = [order[j]!, order[i]!]
      }
      const chosen = new Set(order.slice(0, x.length))
      trial((i) => chosen.has(i))
    }
  const p = tried === 0 ? 1 : asExtreme / tried
  return { p, band: [Math.min(...y), Math.max(...y)], beyond: p < 0.05 }
}

function binomial(n: number, k: number): number {
  let r = 1
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i
  return r
}

function bitCount(v: number): number {
  let c = 0
  for (; v; v &= v - 1) c++
  return c
}

/**
 * Starts A and B (and, with BENCH_CONTROL=1, a second proxy with A's config), hands them to `fn`
 * (which measures, and checks what it needs), and stops them however `fn` ends.
 */
export async function withSideBySide<T>(
  d: BenchDeps,
  children: ChildProcess[],
  a: Side,
  b: Side,
  fn: (p: Proxies) => Promise<T>,
  /** run the A/A control whatever BENCH_CONTROL says (a line whose target is "no change beyond noise") */
  forceControl = false,
): Promise<T> {
  const started: BenchProxy[] = []
  try {
    const pa = await startProxy(d, children, a)
    started.push(pa)
    const pb = await startProxy(d, children, b)
    started.push(pb)
    let control: Proxies['control']
    if (forceControl || controlWanted()) {
      const c1 = await startProxy(d, children, { ...a, name: `${a.name}-control1` })
      started.push(c1)
      const c2 = await startProxy(d, children, { ...a, name: `${a.name}-control2` })
      started.push(c2)
      control = [c1, c2]
    }
    return await fn({ a: pa, b: pb, control })
  } finally {
    for (const p of started) p.child.kill('SIGKILL')
  }
}

/** how a side-by-side figure was made, for the printed line */
export const how = (d: BenchDeps, r: SideBySideResult) =>
  `medians of ${r.used} of ${r.windows} windows of ${d.seconds}s, two fresh proxies loaded at once${r.pinned ? ' on one CPU' : ''}, errors ${r.errorsA + r.errorsB}`

/**
 * A side-by-side ratio as added CPU ms per request. Two proxies sharing one core each read more CPU
 * per request than one alone (cache and scheduler contention: ~1.3-1.9x on this machine), so the
 * side-by-side baseline's ms overstates both the cost and what is added to it; the ratio is what
 * the side-by-side run measures well. Both figures are given: the ratio times the side-by-side
 * baseline, and the ratio times the main proxy's standalone CPU per request from the same run.
 */
export function addedMs(d: BenchDeps, p: PairResult): string {
  const sideBySide = `${((p.cpuRatio - 1) * p.msA).toFixed(4)} ms/req`
  if (d.standaloneMs === undefined) return sideBySide
  return `${sideBySide} side by side, ${((p.cpuRatio - 1) * d.standaloneMs).toFixed(4)} ms/req at the standalone proxy's ${d.standaloneMs.toFixed(3)}`
}

/**
 * The A/A control beside a figure (empty without BENCH_CONTROL=1): `text` gives the control's
 * figures as the line gives its own (same formula), from A's two twins.
 */
export function controlNote(r: SideBySideResult, text: (c: PairResult) => string): string {
  const c = r.control
  if (!c) return ''
  return ` [A/A control, same sitting: ${text(c)}; ${c.used} of ${c.windows} windows, errors ${c.errorsA + c.errorsB}]`
}
