// A second measure of what a plugin set adds per request, beside the side-by-side one
// (side-by-side.ts): three proxies in ONE process (A, B, and C with A's config as an A/A control),
// loaded in turn, in blocks of requests, by a keep-alive client in the same process; the process's
// CPU per request of each block. The machine's drift hits the blocks of a round alike (a round is
// ~1 s), and no second process shares the core, so there is no context switching between two
// proxies (which inflates both sides' CPU per request 1.3-1.9x in the side-by-side run and, with
// it, what B adds). What the client costs is in every block alike and cancels in B - A. What it
// cannot see: work B leaves for later (a span batch exported after its block, a collection of its
// garbage) lands in whichever block comes next. (Forcing a collection between blocks, outside the
// measure, made every block 2.5x dearer: the heap starts each block small and collects more often.)
//
// Run as a child of bench:proxy (on the proxies' CPU), with the bench's helper process (its OTLP
// sink and its SSE readers, off this CPU):
//   node bin/run-ts.mjs bench/lib/in-process-ab.ts observe|dashboard MOCK_PORT HELPER_PORT
// observe: B has metrics and tracing (exporting to the helper), A and C neither; dashboard: the
// same config three times, the helper's 5 readers on B's dashboard URL (DASHBOARD_EVENTS, or
// BENCH_INPROC_EVENTS: /agentmesh/events, every event, cost +0.011 ms/req where the dashboard's
// URL cost +0.004, control 0.002).
// Prints one JSON line: { aMs, addedMs, controlMs, blocks, requests }.
import { Agent, request } from 'node:http'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createAgentMesh } from '../../core/app.ts'
import { listenServe } from '../../core/cli-listen.ts'
import { DASHBOARD_EVENTS } from '../../plugins/dashboard/index.ts'
import { openai } from '../../plugins/vendors/openai.ts'
import { BENCH_DISABLE, chatBody, median } from './side-by-side.ts'

// the last three arguments (under bin/run-ts.mjs the script's path comes before them)
const mode = process.argv.at(-3)
const [mockPort, helperPort] = process.argv.slice(-2).map(Number)
if (mode !== 'observe' && mode !== 'dashboard')
  throw new Error('usage: in-process-ab.ts observe|dashboard MOCK_PORT HELPER_PORT')
const BLOCK = Number(process.env.BENCH_INPROC_BLOCK ?? 2000)
const ROUNDS = Number(process.env.BENCH_INPROC_ROUNDS ?? 16)
const CONNECTIONS = 25
const dir = mkdtempSync(join(tmpdir(), 'agentmesh-inproc-'))

/** a proxy as `agentmesh serve` runs one (the bench's config), on a free port; `otel`: exporting to the sink */
async function proxy(name: string, disable: string[], otel: boolean): Promise<number> {
  // the otel plugin reads its endpoint when the preset makes it
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = otel ? `http://127.0.0.1:${helperPort}` : ''
  const mesh = await createAgentMesh({
    preset: 'solo',
    storage: { driver: 'memory' },
    log: { level: 'warn' },
    dataDir: join(dir, name),
    disable: [...BENCH_DISABLE, ...disable],
    plugins: [openai({ baseURL: `http://127.0.0.1:${mockPort}`, apiKey: 'sk-bench-not-a-real-key' })],
  })
  const listening = await listenServe(mesh.fetch, { port: 0, host: '127.0.0.1' } as Parameters<typeof listenServe>[1])
  return listening.port
}

const body = Buffer.from(chatBody(false))
const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS })

function call(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/v1/chat/completions',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': body.length, 'x-agentmesh-team': 'bench' },
      },
      (res) => {
        if (res.statusCode !== 200) {
          let text = ''
          res.on('data', (d) => (text += d))
          res.on('end', () => reject(new Error(`status ${res.statusCode}: ${text.slice(0, 300)}`)))
          return
        }
        res.resume()
        res.on('end', resolve)
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

/** `n` requests, CONNECTIONS at a time: the process's CPU µs per request */
async function block(port: number, n: number): Promise<number> {
  const cpu = process.cpuUsage()
  let sent = 0
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (sent++ < n) await call(port)
    }),
  )
  const d = process.cpuUsage(cpu)
  return (d.user + d.system) / n
}

const off = mode === 'observe' ? ['metrics', 'otel'] : []
const a = await proxy('a', off, false)
const b = await proxy('b', [], mode === 'observe')
const c = await proxy('c', off, false)
if (mode === 'dashboard') {
  // the helper connects its readers and answers once all five are in
  const events = `http://127.0.0.1:${b}${process.env.BENCH_INPROC_EVENTS ?? DASHBOARD_EVENTS}`
  await (await fetch(`http://127.0.0.1:${helperPort}/sse?n=5&url=${encodeURIComponent(events)}`)).text()
}
const ports = [a, b, c]
// warm-up: JIT, pools
for (const p of ports) await block(p, 3000)
const added: number[] = []
const control: number[] = []
const aUs: number[] = []
for (let r = 0; r < ROUNDS; r++) {
  // each proxy goes first, second and third in turn
  const us = new Map<number, number>()
  for (let k = 0; k < 3; k++) {
    const p = ports[(r + k) % 3]!
    us.set(p, await block(p, BLOCK))
  }
  added.push(us.get(b)! - us.get(a)!)
  control.push(us.get(c)! - us.get(a)!)
  aUs.push(us.get(a)!)
}
console.log(
  JSON.stringify({
    aMs: median(aUs) / 1000,
    addedMs: median(added) / 1000,
    controlMs: median(control) / 1000,
    blocks: ROUNDS,
    requests: BLOCK,
  }),
)
process.exit(0)
