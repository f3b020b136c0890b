// bench:proxy's guards line (issue 17: "Breaker and approval plugins on with rules that never fire:
// added CPU per request <= 0.02 ms"). Two fresh proxies, the bench's config without and with the
// breaker and the approval gate, loaded at once on one CPU (side-by-side.ts). The breaker makes
// every check with its limits out of reach; the gate tests rules that never fire. After the
// windows, one more request shows that the breaker counted the run (a bench of a plugin that did
// nothing would measure nothing).
import type { ChildProcess } from 'node:child_process'
import { loadavg } from 'node:os'
import {
  addedMs,
  type BenchDeps,
  chatBody,
  controlNote,
  how,
  measure,
  openaiVendor,
  type PairResult,
  withSideBySide,
} from './side-by-side.ts'

/** what BENCH_GUARDS=1 adds to the bench's own proxy, and this line's B side */
export const GUARD_IMPORTS = { breaker: 'plugins/breaker/index.ts', approval: 'plugins/approval/index.ts' }
export const GUARD_PLUGINS = [
  // wrk repeats one body, so the body-repeat loop detection is set out of reach too (null would skip it)
  'breaker({ limits: { calls: 1e9, usd: 1e9, wallSeconds: 1e9 }, loops: { bodyRepeats: 1e9 } })',
  // a model list and a cost the bench's request never matches: both rules are tested on every call
  `approval({ rules: [{ models: ['never-*'] }, { costOverUsd: 1000 }] })`,
]

/** one more request as wrk sends it: its status and the breaker's count of the run */
async function runCalls(port: number): Promise<{ status: number; calls: number }> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-agentmesh-team': 'bench' },
    body: chatBody(false),
  })
  await res.arrayBuffer()
  return { status: res.status, calls: Number(res.headers.get('x-agentmesh-run-calls') ?? Number.NaN) }
}

/** the printed line; BENCH_GUARDS_LINE=0 leaves it out (bench/proxy.ts) */
export async function guardsGainsLine(d: BenchDeps, children: ChildProcess[]): Promise<string> {
  const load0 = loadavg()[0]!
  const off = { name: 'guards-off' }
  const on = { name: 'guards-on', imports: GUARD_IMPORTS, plugins: [openaiVendor(d), ...GUARD_PLUGINS] }
  const { r, run } = await withSideBySide(d, children, off, on, async (p) => {
    const r = await measure(d, p, 7)
    return { r, run: await runCalls(p.b.port) }
  })
  const load = `load average ${load0.toFixed(1)} -> ${loadavg()[0]!.toFixed(1)}`
  // the ratio is what the side-by-side run measures well; a baseline's ms/req turns it into ms
  const added = (p: PairResult) => addedMs(d, p)
  const control = controlNote(r, (c) => `on/off ${c.cpuRatio.toFixed(3)}, added ${added(c)}`)
  const checked =
    run.status === 200
      ? `the breaker's count of the run ${run.calls.toLocaleString('en-US')} calls, wrk's completed requests ${r.requestsB.toLocaleString('en-US')} (and those in flight when each run ended)`
      : `a last request answered ${run.status}`
  return `breaker+approval on vs off  through the proxy: CPU ${r.msB.toFixed(3)} vs ${r.msA.toFixed(3)} ms/req, on/off ${r.cpuRatio.toFixed(3)}, added ${added(r)}${control} (${how(d, r)}; ${checked}) | ${load}`
}
