// bench:proxy's router line (issue 16: "router with 5 rules on vs off: added CPU per request
// <= 0.01 ms"). Three measures, because the difference is far below the noise of one wrk run on a
// shared machine: the router's hooks alone on a real request context (precise), the whole pipeline
// in process with an A/A control (the noise floor beside the figure), and through the proxy (two
// fresh proxy processes, the bench's config with and without the router, loaded at the same time).
import { type ChildProcess, execFile, execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { availableParallelism, loadavg } from 'node:os'
import { join } from 'node:path'
import type { MeshContext } from '../../core/types.ts'
import type { RouterOptions } from '../../plugins/router/index.ts'

/**
 * Five rules every bench request is tested against (team rules apply to a named model): four for
 * other teams, of each kind of condition, and the last pins the bench team to the model it asks
 * for, so the upstream call is the same with the router on or off.
 */
export const BENCH_ROUTER: RouterOptions = {
  aliases: { fast: ['claude-haiku-4-5', 'gpt-4o-mini', 'gemini-2.5-flash'] },
  rules: [
    { name: 'research-4o', match: { team: 'research', model: 'gpt-4o*' }, model: 'gpt-4o' },
    { name: 'design-tools', match: { team: ['design', 'sales'], tools: true }, candidates: 'fast' },
    { name: 'ops-long', match: { team: 'ops', minInputTokens: 2000 }, model: 'gpt-4.1' },
    { name: 'bench-images', match: { team: 'bench', images: true }, model: 'gpt-4o' },
    { name: 'bench-mini', match: { team: 'bench' }, model: 'gpt-4o-mini' },
  ],
}

// what bench/proxy.ts switches off in its proxy (caches, normalise, breaker), plus BENCH_DISABLE
const BENCH_DISABLE = [
  'exact-cache',
  'semantic-cache',
  'normalise',
  'prompt-cache',
  'breaker',
  ...(process.env.BENCH_DISABLE?.split(',').filter(Boolean) ?? []),
]

export interface GainsDeps {
  root: string
  dir: string
  mockPort: number
  seconds: number
  connections: number
  plainLua: string
  freePort: () => Promise<number>
  start: (args: string[], ready: RegExp, env?: NodeJS.ProcessEnv) => Promise<ChildProcess>
  wrk: (url: string, conns: number, secs: number, script: string) => { requests: number; rps: number; errors: number }
  cpuMs: (pid: number) => number
}

/** a proxy like the bench's own (solo, caching and breaker off), with the router or without */
async function startPair(
  d: GainsDeps,
  children: ChildProcess[],
  withRouter: boolean,
): Promise<{ pid: number; url: string; child: ChildProcess }> {
  const port = await d.freePort()
  const config = join(d.dir, `agentmesh.router-${withRouter ? 'on' : 'off'}.config.ts`)
  writeFileSync(
    config,
    `import { openai } from ${JSON.stringify(join(d.root, 'plugins/vendors/openai.ts'))}
import { router } from ${JSON.stringify(join(d.root, 'plugins/router/index.ts'))}
export default {
  preset: 'solo',
  storage: { driver: 'memory' },
  log: { level: 'warn' },
  disable: ${JSON.stringify(BENCH_DISABLE)},
  plugins: [${withRouter ? `router(${JSON.stringify(BENCH_ROUTER)}), ` : ''}openai({ baseURL: 'http://127.0.0.1:${d.mockPort}', apiKey: 'sk-bench-not-a-real-key' })],
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
      join(d.dir, `data-router-${withRouter}`),
    ],
    /listening on/,
    { NODE_ENV: 'production' },
  )
  children.push(child)
  return { pid: child.pid!, url: `http://127.0.0.1:${port}/v1/chat/completions`, child }
}

/** wrk without blocking the event loop, so two can run at once; the requests it made and its errors */
function wrkAsync(
  url: string,
  conns: number,
  secs: number,
  script: string,
): Promise<{ requests: number; errors: number }> {
  return new Promise((resolve, reject) => {
    execFile('wrk', ['-t1', `-c${conns}`, `-d${secs}s`, '-s', script, url], { encoding: 'utf8' }, (err, out) => {
      if (err) return reject(err)
      const errs = /Non-2xx or 3xx responses: (\d+)/.exec(out)
      const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
      resolve({
        requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? 0),
        errors: Number(errs?.[1] ?? 0) + (sock ? sock.slice(1).reduce((n, x) => n + Number(x), 0) : 0),
      })
    })
  })
}

/** where taskset exists: both proxies on the last CPU (one core, shared alike), else left where they are */
function pinTogether(pids: number[]): boolean {
  const cpus = availableParallelism()
  if (cpus < 2) return false
  try {
    for (const pid of pids)
      execFileSync('taskset', ['-a', '-p', '-c', String(cpus - 1), String(pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!

/**
 * Through the proxy: two fresh proxies, router off and on, loaded at the same time by two wrk
 * (the machine's drift, and other work on it, falls on both alike), CPU per request of each per
 * window; the medians of the windows' ratios and differences.
 */
async function throughProxy(d: GainsDeps, children: ChildProcess[]) {
  const off = await startPair(d, children, false)
  const on = await startPair(d, children, true)
  const pinned = pinTogether([off.pid, on.pid])
  const conns = Math.max(1, Math.floor(d.connections / 2))
  await Promise.all([off, on].map((p) => wrkAsync(p.url, conns, 3, d.plainLua)))
  const ratios: number[] = []
  const added: number[] = []
  const msOff: number[] = []
  const msOn: number[] = []
  let errors = 0
  const windows = 7
  for (let i = 0; i < windows; i++) {
    const cpu0 = [d.cpuMs(off.pid), d.cpuMs(on.pid)]
    const [a, b] = await Promise.all([off, on].map((p) => wrkAsync(p.url, conns, d.seconds, d.plainLua)))
    errors += a!.errors + b!.errors
    // a window in which either proxy was starved (another job took the machine) says nothing
    if (a!.requests < 100 || b!.requests < 100) continue
    msOff.push((d.cpuMs(off.pid) - cpu0[0]!) / a!.requests)
    msOn.push((d.cpuMs(on.pid) - cpu0[1]!) / b!.requests)
    ratios.push(msOn.at(-1)! / msOff.at(-1)!)
    added.push(msOn.at(-1)! - msOff.at(-1)!)
  }
  off.child.kill('SIGKILL')
  on.child.kill('SIGKILL')
  const used = ratios.length
  if (!used)
    return { off: Number.NaN, on: Number.NaN, ratio: Number.NaN, added: Number.NaN, errors, windows, used, pinned }
  return {
    off: median(msOff),
    on: median(msOn),
    ratio: median(ratios),
    added: median(added),
    errors,
    windows,
    used,
    pinned,
  }
}

/** the router's two hooks alone on a context captured from a real request, vs the same loop without them */
async function hooksAlone(d: GainsDeps): Promise<{ usPerRequest: number; calls: number; reason: string }> {
  const { createAgentMesh } = await import('../../core/app.ts')
  const { router } = await import('../../plugins/router/index.ts')
  const { openai } = await import('../../plugins/vendors/openai.ts')
  const plugin = router(BENCH_ROUTER)
  let ctx: MeshContext | undefined
  const capture = {
    name: 'bench:capture',
    hooks: {
      afterResponse: (c: MeshContext) => {
        ctx = c
      },
    },
  }
  const instance = await createAgentMesh({
    storage: { driver: 'memory' },
    log: { level: 'silent' },
    dataDir: join(d.dir, 'data-hooks'),
    trustIdentityHeaders: true,
    plugins: [
      plugin,
      openai({ baseURL: `http://127.0.0.1:${d.mockPort}`, apiKey: 'sk-bench-not-a-real-key' }),
      capture,
    ],
  })
  const body = JSON.stringify({
    model: 'gpt-4o-mini',
    max_tokens: 64,
    messages: [{ role: 'user', content: 'Say something short about foxes.' }],
  })
  const res = await instance.fetch(
    new Request('http://127.0.0.1/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-agentmesh-team': 'bench' },
      body,
    }),
  )
  await res.text()
  const reason = res.headers.get('x-agentmesh-route-reason') ?? '(none)'
  const c = ctx!
  const before = plugin.hooks!.beforeRequest! as (ctx: MeshContext) => void
  const route = plugin.hooks!.route! as (ctx: MeshContext) => void
  const initial = { vendor: 'openai', model: 'gpt-4o-mini' }
  const calls = 200_000
  const loop = (withRouter: boolean) => {
    const t0 = performance.now()
    for (let i = 0; i < calls; i++) {
      // what the core does for every request: a fresh default route, no decision yet
      c.route = { ...initial }
      c.state.route = undefined
      if (withRouter) {
        before(c)
        route(c)
      }
    }
    return performance.now() - t0
  }
  let bestOn = Infinity
  let bestOff = Infinity
  for (let i = 0; i < 7; i++) {
    bestOff = Math.min(bestOff, loop(false))
    bestOn = Math.min(bestOn, loop(true))
  }
  await instance.close()
  return { usPerRequest: ((bestOn - bestOff) / calls) * 1000, calls, reason }
}

/**
 * The whole pipeline in process (no sockets on the client side, the upstream over HTTP as in the
 * proxy): the bench's config with the router and twice without it, requests one at a time in
 * rotating blocks, CPU of this process per request. Medians of the blocks' differences: router on
 * minus off, and off minus off again (an A/A control: the noise floor of the machine right now).
 */
async function pipelineInProcess(
  d: GainsDeps,
): Promise<{ addedMs: number; controlMs: number; blocks: number; perBlock: number }> {
  const { createAgentMesh } = await import('../../core/app.ts')
  const { router } = await import('../../plugins/router/index.ts')
  const { openai } = await import('../../plugins/vendors/openai.ts')
  const make = (name: string, withRouter: boolean) =>
    createAgentMesh({
      preset: 'solo',
      storage: { driver: 'memory' },
      log: { level: 'silent' },
      dataDir: join(d.dir, `data-inproc-${name}`),
      disable: BENCH_DISABLE,
      plugins: [
        ...(withRouter ? [router(BENCH_ROUTER)] : []),
        openai({ baseURL: `http://127.0.0.1:${d.mockPort}`, apiKey: 'sk-bench-not-a-real-key' }),
      ],
    })
  const meshes = [await make('off', false), await make('control', false), await make('on', true)]
  const body = JSON.stringify({
    model: 'gpt-4o-mini',
    max_tokens: 64,
    messages: [{ role: 'user', content: 'Say something short about foxes.' }],
  })
  const headers = { 'content-type': 'application/json', 'x-agentmesh-team': 'bench' }
  const run = async (instance: (typeof meshes)[number], n: number) => {
    const c0 = process.cpuUsage()
    for (let i = 0; i < n; i++)
      await (
        await instance.fetch(new Request('http://127.0.0.1/v1/chat/completions', { method: 'POST', headers, body }))
      ).arrayBuffer()
    const c = process.cpuUsage(c0)
    return (c.user + c.system) / 1000 / n
  }
  for (const m of meshes) await run(m, 500)
  const perBlock = 200
  const blocks = 24
  const added: number[] = []
  const control: number[] = []
  for (let i = 0; i < blocks; i++) {
    // the order rotates, so no mesh always runs first (or right after a GC of another)
    const ms = [0, 0, 0]
    for (let k = 0; k < 3; k++) {
      const j = (i + k) % 3
      ms[j] = await run(meshes[j]!, perBlock)
    }
    added.push(ms[2]! - ms[0]!)
    control.push(ms[1]! - ms[0]!)
  }
  for (const m of meshes) await m.close()
  return { addedMs: median(added), controlMs: median(control), blocks, perBlock }
}

/** the printed line, with the machine's load (the through-proxy figure is only as good as it is quiet) */
export async function routerGainsLine(d: GainsDeps, children: ChildProcess[]): Promise<string> {
  const load0 = loadavg()[0]!
  const hooks = await hooksAlone(d)
  const inProcess = await pipelineInProcess(d)
  const p = await throughProxy(d, children)
  const load = `load average ${load0.toFixed(1)} -> ${loadavg()[0]!.toFixed(1)}`
  return `router (5 rules) on vs off  through the proxy: CPU ${p.on.toFixed(3)} vs ${p.off.toFixed(3)} ms/req, on/off ${p.ratio.toFixed(3)}, added ${p.added.toFixed(4)} ms/req (medians of ${p.used} of ${p.windows} windows of ${d.seconds}s, two fresh proxies loaded at once${p.pinned ? ' on one CPU' : ''}, errors ${p.errors}) | hooks alone: added ${(hooks.usPerRequest / 1000).toFixed(4)} ms/req (${hooks.calls.toLocaleString('en-US')} calls in process; decision "${hooks.reason}") | whole pipeline in process: added ${inProcess.addedMs.toFixed(4)} ms/req, A/A control ${inProcess.controlMs.toFixed(4)} ms/req (medians of ${inProcess.blocks} rotating blocks of ${inProcess.perBlock}) | ${load}`
}
