// bench:proxy's router line (issue 16: "router with 5 rules on vs off: added CPU per request
// <= 0.01 ms"). Three measures, because the difference is far below the noise of one wrk run on a
// shared machine: the router's hooks alone on a real request context (precise), the whole pipeline
// in process with an A/A control (the noise floor beside the figure), and through the proxy (two
// fresh proxy processes, the bench's config with and without the router, loaded at the same time).
import type { ChildProcess } from 'node:child_process'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import type { MeshContext } from '../../core/types.ts'
import type { RouterOptions } from '../../plugins/router/index.ts'
import {
  BENCH_DISABLE,
  type BenchDeps,
  controlNote,
  how,
  measure,
  median,
  openaiVendor,
  type Side,
  type SideBySideResult,
  withSideBySide,
} from './side-by-side.ts'

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

/** the router's config for a proxy's `plugins` list, before the vendor as in a user's config */
const routerPlugins = (d: BenchDeps) => [`router(${JSON.stringify(BENCH_ROUTER)})`, openaiVendor(d)]

/**
 * Through the proxy: two fresh proxies, the bench's config without and with the router, loaded
 * at the same time (bench/lib/side-by-side.ts); medians of the windows' ratios and differences.
 */
function throughProxy(d: BenchDeps, children: ChildProcess[]): Promise<SideBySideResult> {
  const off: Side = { name: 'router-off' }
  const on: Side = { name: 'router-on', imports: { router: 'plugins/router/index.ts' }, plugins: routerPlugins(d) }
  return withSideBySide(d, children, off, on, (p) => measure(d, p, 7))
}

/** the router's two hooks alone on a context captured from a real request, vs the same loop without them */
async function hooksAlone(d: BenchDeps): Promise<{ usPerRequest: number; calls: number; reason: string }> {
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
  d: BenchDeps,
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
export async function routerGainsLine(d: BenchDeps, children: ChildProcess[]): Promise<string> {
  const load0 = loadavg()[0]!
  const hooks = await hooksAlone(d)
  const inProcess = await pipelineInProcess(d)
  const p = await throughProxy(d, children)
  const load = `load average ${load0.toFixed(1)} -> ${loadavg()[0]!.toFixed(1)}`
  const control = controlNote(p, (c) => `on/off ${c.cpuRatio.toFixed(3)}, added ${c.added.toFixed(4)} ms/req`)
  return `router (5 rules) on vs off  through the proxy: CPU ${p.msB.toFixed(3)} vs ${p.msA.toFixed(3)} ms/req, on/off ${p.cpuRatio.toFixed(3)}, added ${p.added.toFixed(4)} ms/req${control} (${how(d, p)}) | hooks alone: added ${(hooks.usPerRequest / 1000).toFixed(4)} ms/req (${hooks.calls.toLocaleString('en-US')} calls in process; decision "${hooks.reason}") | whole pipeline in process: added ${inProcess.addedMs.toFixed(4)} ms/req, A/A control ${inProcess.controlMs.toFixed(4)} ms/req (medians of ${inProcess.blocks} rotating blocks of ${inProcess.perBlock}) | ${load}`
}
