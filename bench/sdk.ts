// SDK mode's cost per call: the official OpenAI client wrapped (wrapOpenAI over createMesh) against
// the same client bare, one call at a time, in alternating blocks so drift on a shared machine hits
// both alike. Four comparisons, each without and with the governance plugins (governed: the solo
// preset's plugins: keys, guard, mask, normalise, breaker, quota, exact cache (every prompt new:
// misses and stores), prompt cache, approval, dry-run, audit, metrics, ...; the semantic cache
// off, its embedding model is its own benchmark, bench:cache):
//  - in process (the summary's added_*/cpu_* and governed_* fields): the same canned answer on both
//    sides (a fetch that returns it to the bare client; a vendor that returns it to the mesh), no
//    network, so the difference is SDK mode's own cost: the SDK layer, the core pipeline, plugins.
//  - against the zero-delay mock (bench/lib/fast-mock.ts; mock_* fields): both sides call it over
//    HTTP, but the wrapped client goes through the mesh's vendor (node:http, its own pool) and not
//    through the client's global fetch, so these differences include that swap of HTTP clients
//    (cheaper than the fetch it replaces: the core's can be negative) and are not the pipeline's cost.
// Uses the built package (dist/, what `node app.mjs` gets) when there is one, else the sources
// through jiti (slower: jiti reads imports through a proxy); --source forces the sources.
//   npm run build && npm run bench:sdk            BENCH_CALLS=4000 npm run bench:sdk
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import OpenAI from 'openai'
import { startFastMock } from './lib/fast-mock.ts'

const CALLS = Number(process.env.BENCH_CALLS ?? 3000)
const BLOCK = 250
// more of the preset's plugins to leave out of the governed mesh, to see what each costs: BENCH_DISABLE=audit,exact-cache
const DISABLE = (process.env.BENCH_DISABLE ?? '').split(',').filter(Boolean)
const built = new URL('../dist/core/sdk/index.js', import.meta.url)
const useDist = existsSync(built) && !process.argv.includes('--source')
const sdk: typeof import('../core/sdk/index.ts') = await import(useDist ? built.href : '../core/sdk/index.ts')
const { openai: openaiVendor }: typeof import('../plugins/vendors/openai.ts') = await import(
  useDist ? new URL('../dist/plugins/vendors/openai.js', import.meta.url).href : '../plugins/vendors/openai.ts'
)

interface Sample {
  ms: number[]
  cpuUs: number
}

/** one block of sequential calls: wall time of each, CPU of the whole block */
async function block(client: OpenAI, n: number, tag: string, into: Sample) {
  const cpu = process.cpuUsage()
  for (let i = 0; i < n; i++) {
    const t = performance.now()
    await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: `${tag} call ${i} ${Math.random()}` }],
    })
    into.ms.push(performance.now() - t)
  }
  const d = process.cpuUsage(cpu)
  into.cpuUs += d.user + d.system
}

const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!

async function compare(label: string, bare: OpenAI, wrapped: OpenAI) {
  // warm-up: JIT, connection pools, lazy imports on the request path
  await block(bare, 300, 'warm', { ms: [], cpuUs: 0 })
  await block(wrapped, 300, 'warm', { ms: [], cpuUs: 0 })
  const a: Sample = { ms: [], cpuUs: 0 }
  const b: Sample = { ms: [], cpuUs: 0 }
  for (let done = 0; done < CALLS; done += BLOCK) {
    await block(bare, BLOCK, 'bare', a)
    await block(wrapped, BLOCK, label, b)
  }
  const r = {
    bareP50: pct(a.ms, 50),
    bareP99: pct(a.ms, 99),
    wrappedP50: pct(b.ms, 50),
    wrappedP99: pct(b.ms, 99),
    cpuBare: a.cpuUs / 1000 / a.ms.length,
    cpuWrapped: b.cpuUs / 1000 / b.ms.length,
  }
  const added = { p50: r.wrappedP50 - r.bareP50, p99: r.wrappedP99 - r.bareP99, cpu: r.cpuWrapped - r.cpuBare }
  console.log(
    `${label.padEnd(9)} bare p50 ${r.bareP50.toFixed(3)} p99 ${r.bareP99.toFixed(3)} ms, cpu ${r.cpuBare.toFixed(3)} ms/call | wrapped p50 ${r.wrappedP50.toFixed(3)} p99 ${r.wrappedP99.toFixed(3)} ms, cpu ${r.cpuWrapped.toFixed(3)} ms/call | added p50 ${added.p50.toFixed(3)} p99 ${added.p99.toFixed(3)} ms, cpu ${added.cpu.toFixed(3)} ms/call`,
  )
  return added
}

// the pipeline alone: the same canned answer handed over in process on both sides (a fetch that
// returns it to the bare client; a vendor that returns it to the mesh), no network either way
const ANSWER = Buffer.from(
  JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created: 1,
    model: 'gpt-4o-mini-2024-07-18',
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: 'The quick brown fox jumps over the lazy dog.' },
        finish_reason: 'stop',
      },
    ],
    usage: { prompt_tokens: 12, completion_tokens: 10, total_tokens: 22 },
  }),
)
const cannedFetch = async () => new Response(ANSWER, { status: 200, headers: { 'content-type': 'application/json' } })
const cannedVendor = sdk.definePlugin({
  name: 'bench:canned-openai',
  setup(mesh) {
    mesh.registerVendor({
      name: 'openai',
      protocol: 'openai',
      handles: () => true,
      call: async () => ({ status: 200, headers: { 'content-type': 'application/json' }, body: ANSWER, stream: false }),
    })
  },
})

const { port, server } = await startFastMock()
const base = `http://127.0.0.1:${port}`
const dataDir = mkdtempSync(join(tmpdir(), 'agentmesh-bench-sdk-'))
const quiet = { log: { level: 'silent' as const }, storage: { driver: 'memory' as const } }
// the solo preset's plugins, the semantic cache (and its embedding model) left out
const solo = { preset: 'solo', disable: ['semantic-cache', ...DISABLE], ...quiet }
const meshes = {
  // in process: the canned vendor serves every call
  core: await sdk.createMesh({ config: { ...quiet, dataDir: join(dataDir, 'core'), plugins: [cannedVendor] } }),
  governed: await sdk.createMesh({
    config: {
      ...solo,
      disable: [...solo.disable, 'vendor:openai'],
      dataDir: join(dataDir, 'governed'),
      plugins: [cannedVendor],
    },
  }),
  // the zero-delay mock over HTTP
  mockCore: await sdk.createMesh({
    config: {
      ...quiet,
      dataDir: join(dataDir, 'mock'),
      plugins: [openaiVendor({ baseURL: base, apiKey: 'sk-bench' })],
    },
  }),
  mockGoverned: await sdk.createMesh({
    config: {
      ...solo,
      dataDir: join(dataDir, 'mock-governed'),
      vendors: { openai: { baseURL: base, apiKey: 'sk-bench' } },
    },
  }),
}
console.log(
  `bench:sdk ${CALLS} sequential calls each, ${useDist ? 'built package (dist/)' : 'sources through jiti'}; governed plugins: ${meshes.governed.instance.plugins.map((p) => p.name).join(', ')}`,
)
const bareCanned = new OpenAI({ apiKey: 'sk-bench', maxRetries: 0, fetch: cannedFetch })
const bareMock = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sk-bench', maxRetries: 0 })
const wrap = (client: OpenAI, mesh: typeof meshes.core) => sdk.wrapOpenAI(client, { mesh, identity: { team: 'bench' } })
const c = await compare('core', bareCanned, wrap(bareCanned, meshes.core))
const g = await compare('governed', bareCanned, wrap(bareCanned, meshes.governed))
const mc = await compare('mock', bareMock, wrap(bareMock, meshes.mockCore))
const mg = await compare('mock-gov', bareMock, wrap(bareMock, meshes.mockGoverned))
const f = (x: number) => x.toFixed(3)
console.log(
  "bench:sdk summary: added_*/cpu_* = the wrapped client over the bare one, the same canned answer in process on both sides, no plugins (governed_*: the solo plugins); mock_*: both over HTTP to the zero-delay mock, which also swaps the client's fetch for the mesh's HTTP client",
)
console.log(
  `bench:sdk added_p50_ms=${f(c.p50)} cpu_ms_per_call=${f(c.cpu)} added_p99_ms=${f(c.p99)} plugins=none governed_added_p50_ms=${f(g.p50)} governed_cpu_ms_per_call=${f(g.cpu)} governed_added_p99_ms=${f(g.p99)} mock_added_p50_ms=${f(mc.p50)} mock_cpu_ms_per_call=${f(mc.cpu)} mock_governed_added_p50_ms=${f(mg.p50)} mock_governed_cpu_ms_per_call=${f(mg.cpu)}`,
)
for (const mesh of Object.values(meshes)) await mesh.close()
server.close()
rmSync(dataDir, { recursive: true, force: true })
process.exit(0)
