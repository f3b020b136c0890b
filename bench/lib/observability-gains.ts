// bench:proxy's observability lines (issue 18: "Metrics and tracing on vs off: added CPU per request
// <= 0.02 ms; dashboard with 5 browsers connected: no change in rps beyond noise"). The machine's
// speed drifts from second to second, so the two configurations are never measured one after the
// other: two fresh proxies run at the same time, on the same CPU, under the same wrk load, and each
// window gives the ratio of their CPU per request (and of their rps); the line reports medians.
import { type ChildProcess, execFile, execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { availableParallelism, loadavg } from 'node:os'
import { join } from 'node:path'

// what bench/proxy.ts switches off in its proxy (caches, normalise, breaker), plus BENCH_DISABLE
const BENCH_DISABLE = [
  'exact-cache',
  'semantic-cache',
  'normalise',
  'prompt-cache',
  'breaker',
  ...(process.env.BENCH_DISABLE?.split(',').filter(Boolean) ?? []),
]

export interface ObserveDeps {
  root: string
  dir: string
  mockPort: number
  seconds: number
  connections: number
  plainLua: string
  freePort: () => Promise<number>
  start: (args: string[], ready: RegExp, env?: NodeJS.ProcessEnv) => Promise<ChildProcess>
  cpuMs: (pid: number) => number
}

/**
 * The other side of the wire, in its own process (on the load generators' CPU, not the proxies'):
 * an OTLP/HTTP sink that reads and decodes every export (so the proxy's exporter does all its real
 * work) and counts the spans, and dashboard-like clients of /agentmesh/events that read continuously.
 */
const HELPER = `import { createServer, get } from 'node:http'
const stats = { exports: 0, spans: 0, metricExports: 0, sseClients: 0, sseEvents: 0, sseBytes: 0 }
const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://x')
  if (req.method === 'POST' && url.pathname.startsWith('/v1/')) {
    const parts = []
    req.on('data', (d) => parts.push(d))
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(parts).toString())
      if (url.pathname === '/v1/traces') {
        stats.exports++
        for (const rs of body.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) stats.spans += ss.spans?.length ?? 0
      } else stats.metricExports++
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
    return
  }
  if (url.pathname === '/sse') {
    // n clients of an events URL, each reading (and splitting into events) everything it gets
    const n = Number(url.searchParams.get('n'))
    let open = 0
    for (let i = 0; i < n; i++)
      get(url.searchParams.get('url'), (r) => {
        stats.sseClients++
        if (++open === n) res.end('ok')
        let tail = ''
        r.setEncoding('utf8')
        r.on('data', (d) => {
          stats.sseBytes += d.length
          const chunks = (tail + d).split('\\n\\n')
          tail = chunks.pop()
          for (const c of chunks) if (c.startsWith('id:')) stats.sseEvents++
        })
      })
    return
  }
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(stats))
})
server.listen(Number(process.argv[2]), '127.0.0.1', () => console.log('observe-helper listening'))
`

interface Proxy {
  pid: number
  port: number
  url: string
  child: ChildProcess
}

/** a proxy like the bench's own (solo, caching and breaker off, memory storage), with `disable` added */
async function startProxy(
  d: ObserveDeps,
  children: ChildProcess[],
  name: string,
  disable: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<Proxy> {
  const port = await d.freePort()
  const config = join(d.dir, `agentmesh.observe-${name}.config.ts`)
  writeFileSync(
    config,
    `import { openai } from ${JSON.stringify(join(d.root, 'plugins/vendors/openai.ts'))}
export default {
  preset: 'solo',
  storage: { driver: 'memory' },
  log: { level: 'warn' },
  disable: ${JSON.stringify([...BENCH_DISABLE, ...disable])},
  plugins: [openai({ baseURL: 'http://127.0.0.1:${d.mockPort}', apiKey: 'sk-bench-not-a-real-key' })],
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
      join(d.dir, `data-observe-${name}`),
    ],
    /listening on/,
    // the OTLP endpoint only where asked: an inherited one would switch otel on in both
    { NODE_ENV: 'production', OTEL_EXPORTER_OTLP_ENDPOINT: '', ...env },
  )
  children.push(child)
  return { pid: child.pid!, port, url: `http://127.0.0.1:${port}/v1/chat/completions`, child }
}

/** the CPU the proxies share (the last one) and the one the load generators and the helper use */
const CPUS = availableParallelism()
const PROXY_CPU = String(CPUS - 1)

function pin(pid: number, cpu: string): boolean {
  if (CPUS < 2) return false
  try {
    execFileSync('taskset', ['-a', '-p', '-c', cpu, String(pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** wrk without blocking the event loop (two run at once), on the load generators' CPU when pinned */
function wrkAsync(url: string, conns: number, secs: number, script: string, pinned: boolean) {
  const args = ['-t1', `-c${conns}`, `-d${secs}s`, '-s', script, url]
  const [cmd, argv] = pinned ? ['taskset', ['-c', '0', 'wrk', ...args]] : ['wrk', args]
  return new Promise<{ requests: number; rps: number; errors: number }>((resolve, reject) => {
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

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!

interface SideBySide {
  /** medians over the windows: CPU ms per request and rps of A and B */
  msA: number
  msB: number
  rpsA: number
  rpsB: number
  /** B's requests, warm-up included */
  requests: number
  /** medians over the windows of B/A */
  cpuRatio: number
  rpsRatio: number
  errors: number
  windows: number
  pinned: boolean
}

/** A and B loaded at once by two wrk, CPU per request and rps of each per window */
async function sideBySide(d: ObserveDeps, a: Proxy, b: Proxy, windows: number): Promise<SideBySide> {
  const pinned = pin(a.pid, PROXY_CPU) && pin(b.pid, PROXY_CPU)
  const conns = Math.max(1, Math.floor(d.connections / 2))
  const warm = await Promise.all([a, b].map((p) => wrkAsync(p.url, conns, 3, d.plainLua, pinned)))
  // every request B served, the warm-up's too (what its exports and scrape should account for)
  const r = { errors: 0, requests: warm[1]!.requests }
  const w = { msA: [] as number[], msB: [] as number[], rpsA: [] as number[], rpsB: [] as number[] }
  const cpuRatios: number[] = []
  const rpsRatios: number[] = []
  for (let i = 0; i < windows; i++) {
    const cpu0 = [d.cpuMs(a.pid), d.cpuMs(b.pid)]
    const [wa, wb] = await Promise.all([a, b].map((p) => wrkAsync(p.url, conns, d.seconds, d.plainLua, pinned)))
    const msA = (d.cpuMs(a.pid) - cpu0[0]!) / Math.max(1, wa!.requests)
    const msB = (d.cpuMs(b.pid) - cpu0[1]!) / Math.max(1, wb!.requests)
    cpuRatios.push(msB / msA)
    rpsRatios.push(wb!.rps / Math.max(1, wa!.rps))
    w.msA.push(msA)
    w.msB.push(msB)
    w.rpsA.push(wa!.rps)
    w.rpsB.push(wb!.rps)
    r.errors += wa!.errors + wb!.errors
    r.requests += wb!.requests
  }
  // medians throughout: one window of a machine busy elsewhere does not move them
  return {
    ...r,
    msA: median(w.msA),
    msB: median(w.msB),
    rpsA: median(w.rpsA),
    rpsB: median(w.rpsB),
    cpuRatio: median(cpuRatios),
    rpsRatio: median(rpsRatios),
    windows,
    pinned,
  }
}

async function helperStats(port: number) {
  const res = await fetch(`http://127.0.0.1:${port}/stats`)
  return (await res.json()) as {
    exports: number
    spans: number
    metricExports: number
    sseClients: number
    sseEvents: number
    sseBytes: number
  }
}

/** the Prometheus scrape's request count: the metrics really counted what the proxy served */
async function scrapedRequests(p: Proxy): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${p.port}/metrics`)).text()
  let n = 0
  for (const m of text.matchAll(/^agentmesh_requests_total\{[^}]*\} (\d+)/gm)) n += Number(m[1])
  return n
}

/** metrics and tracing (exporting to the helper's sink) vs both disabled */
async function metricsTracing(d: ObserveDeps, children: ChildProcess[], helperPort: number, windows: number) {
  const off = await startProxy(d, children, 'off', ['metrics', 'otel'])
  const on = await startProxy(d, children, 'on', [], { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${helperPort}` })
  try {
    const s0 = await helperStats(helperPort)
    const r = await sideBySide(d, off, on, windows)
    // the batch processor's delay (2 s): the spans of the last window reach the sink
    await new Promise((res) => setTimeout(res, 2500))
    const s1 = await helperStats(helperPort)
    return { ...r, spans: s1.spans - s0.spans, exports: s1.exports - s0.exports, scraped: await scrapedRequests(on) }
  } finally {
    off.child.kill('SIGKILL')
    on.child.kill('SIGKILL')
  }
}

/** the same config twice, 5 readers of /agentmesh/events connected to B */
async function dashboardClients(d: ObserveDeps, children: ChildProcess[], helperPort: number, windows: number) {
  const bare = await startProxy(d, children, 'no-sse', [])
  const watched = await startProxy(d, children, 'sse', [])
  try {
    const events = `http://127.0.0.1:${watched.port}/agentmesh/events`
    await (await fetch(`http://127.0.0.1:${helperPort}/sse?n=5&url=${encodeURIComponent(events)}`)).text()
    const s0 = await helperStats(helperPort)
    const r = await sideBySide(d, bare, watched, windows)
    const s1 = await helperStats(helperPort)
    return { ...r, clients: s1.sseClients, events: s1.sseEvents - s0.sseEvents }
  } finally {
    bare.child.kill('SIGKILL')
    watched.child.kill('SIGKILL')
  }
}

/** issue 18's two lines, with the machine's load (the figures are only as good as it is quiet) */
export async function observabilityGainsLines(d: ObserveDeps, children: ChildProcess[]): Promise<string[]> {
  const windows = Number(process.env.BENCH_OBSERVE_WINDOWS ?? 7)
  const helperPort = await d.freePort()
  const helperFile = join(d.dir, 'observe-helper.mjs')
  writeFileSync(helperFile, HELPER)
  const helper = await d.start([helperFile, String(helperPort)], /observe-helper listening/)
  children.push(helper)
  pin(helper.pid!, '0')
  try {
    const load0 = loadavg()[0]!
    const mt = await metricsTracing(d, children, helperPort, windows)
    const db = await dashboardClients(d, children, helperPort, windows)
    const load = `load average ${load0.toFixed(1)} -> ${loadavg()[0]!.toFixed(1)}`
    const how = (p: SideBySide) =>
      `medians of ${p.windows} windows of ${d.seconds}s, two fresh proxies loaded at once${p.pinned ? ' on one CPU' : ''}, errors ${p.errors}`
    // the ratio is what the side-by-side run measures well; the baseline's ms/req turns it into ms
    const added = (mt.cpuRatio - 1) * mt.msA
    return [
      `metrics+tracing  on vs off: CPU ${mt.msB.toFixed(3)} vs ${mt.msA.toFixed(3)} ms/req, on/off ${mt.cpuRatio.toFixed(3)}, added CPU ${added.toFixed(4)} ms/req (${how(mt)}; OTLP sink got ${mt.spans.toLocaleString('en-US')} spans in ${mt.exports} exports for ${mt.requests.toLocaleString('en-US')} requests, /metrics counted ${mt.scraped.toLocaleString('en-US')}) | ${load}`,
      `dashboard 5 SSE clients: rps ${db.rpsB.toFixed(0)} vs ${db.rpsA.toFixed(0)} (${db.rpsRatio.toFixed(3)}), CPU ${db.msB.toFixed(3)} vs ${db.msA.toFixed(3)} ms/req (${db.cpuRatio.toFixed(3)}) (with vs without ${db.clients} clients reading /agentmesh/events, ${db.events.toLocaleString('en-US')} events read; ${how(db)})`,
    ]
  } finally {
    helper.kill('SIGKILL')
  }
}
