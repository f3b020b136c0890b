// bench:audit: append 100,000 entries through the real writer (fs store, default fsync policy,
// checkpoints and head publishing), time a full verify of the log, then what one checkpoint with
// its signed head costs (the price of checkpointing every second).
//   node bin/run-ts.mjs bench/audit.ts [--entries N] [--fsync always|checkpoint|never] [--checkpoint-seconds S]
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import os, { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash, randomUUID } from 'node:crypto'
import {
  AuditWriter,
  fsStore,
  listLogFiles,
  loadSigner,
  verifyAuditDir,
  type AuditEntry,
  type FsyncPolicy,
} from '../plugins/audit/index.ts'

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? process.argv[i + 1] : undefined
}
const N = Number(arg('entries') ?? 100_000)
const fsync = (arg('fsync') ?? 'always') as FsyncPolicy
// the writer's default unless given
const checkpointSeconds = arg('checkpoint-seconds') === undefined ? undefined : Number(arg('checkpoint-seconds'))
const dir = mkdtempSync(join(tmpdir(), 'agentmesh-bench-audit-'))
const teams = ['engineering', 'research', 'support', 'marketing']
const models = ['gpt-4o-mini', 'claude-haiku-4-5', 'gemini-2.0-flash', 'gpt-4o']
const sha = (s: string) => createHash('sha256').update(s).digest('hex')

function entry(i: number): AuditEntry {
  const cached = i % 5 === 0
  return {
    v: 1,
    kind: 'request',
    ts: new Date(Date.now() + i).toISOString(),
    id: randomUUID(),
    identity: {
      team: teams[i % 4]!,
      user: `user${i % 97}@example.com`,
      tool: i % 2 ? 'claude-code' : 'openai-sdk',
      keyId: `vk_${i % 13}`,
    },
    protocol: i % 2 ? 'anthropic' : 'openai',
    operation: 'chat',
    stream: i % 3 === 0,
    vendor: 'demo',
    requestedModel: models[i % 4]!,
    model: models[i % 4]!,
    cache: { status: cached ? 'exact' : 'miss' },
    tokens: { input: 100 + (i % 900), output: cached ? 0 : 50 + (i % 400), cacheRead: 0, cacheWrite: 0 },
    costUsd: cached ? 0 : (i % 1000) / 1e6,
    savedUsd: cached ? (i % 700) / 1e6 : 0,
    quota: i % 50 === 0 ? 'warn' : 'allow',
    route: 'default',
    latencyMs: Math.round((i % 3000) * 1.37) / 100,
    status: 200,
    promptHash: sha(`prompt ${i}`),
    answerHash: sha(`answer ${i}`),
  }
}

/**
 * CPU and wall time of one checkpoint with its head published (sign, write, fsync, head.json),
 * as the difference between rounds of one entry each with and without a checkpoint.
 */
async function checkpointCost(signer: ReturnType<typeof loadSigner>, rounds: number) {
  const round = async (withCheckpoint: boolean) => {
    const d = mkdtempSync(join(dir, 'cp-'))
    // every head written (no rate limit), to price each one
    const w = new AuditWriter(fsStore({ dir: d, fsync }), signer, {
      checkpointSeconds: 0,
      checkpointEvery: 1e9,
      headIntervalMs: 0,
    })
    await w.open()
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    for (let i = 0; i < rounds; i++) {
      w.append(entry(i))
      if (withCheckpoint) w.checkpoint()
      // waits for the write and, with a checkpoint, for its head to be published
      await w.flush()
    }
    const cpu = process.cpuUsage(cpu0)
    const wallMs = performance.now() - t0
    await w.close()
    return { cpuUs: (cpu.user + cpu.system) / rounds, wallMs: wallMs / rounds }
  }
  const plain = await round(false)
  const cp = await round(true)
  return { cpuUs: cp.cpuUs - plain.cpuUs, wallMs: cp.wallMs - plain.wallMs }
}

try {
  const signer = loadSigner(dir)
  const writer = new AuditWriter(fsStore({ dir, fsync }), signer, { checkpointSeconds })
  await writer.open()
  const entries = Array.from({ length: N }, (_, i) => entry(i))
  const appendCpu0 = process.cpuUsage()
  const t0 = performance.now()
  for (const e of entries) {
    const wait = writer.append(e)
    if (wait) await wait
  }
  await writer.close()
  const appendMs = performance.now() - t0
  const appendCpu = process.cpuUsage(appendCpu0)
  const bytes = listLogFiles(dir).reduce((n, f) => n + statSync(f.path).size, 0)

  const t1 = performance.now()
  const cpu0 = process.cpuUsage()
  const result = await verifyAuditDir(dir)
  const verifyMs = performance.now() - t1
  const cpu = process.cpuUsage(cpu0)
  if (!result.ok || result.entries !== N || result.heads === 0)
    throw new Error(`verify failed: ${JSON.stringify(result)}`)
  const cp = await checkpointCost(signer, 300)
  console.log(
    `log: ${N} entries + ${result.checkpoints} checkpoints, ${(bytes / 1e6).toFixed(1)} MB in ${listLogFiles(dir).length} file(s), fsync=${fsync}`,
  )
  console.log(`append: ${((appendCpu.user + appendCpu.system) / N).toFixed(1)} µs CPU per entry`)
  // CPU time too: on a shared machine wall time mostly measures the neighbours
  console.log(
    `verify: ${Math.round((cpu.user + cpu.system) / 1000)} ms CPU, load average ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} cores`,
  )
  // one checkpoint a second (the default) costs this much CPU per second of running
  console.log(
    `checkpoint with its signed head: ${Math.round(cp.cpuUs)} µs CPU, ${cp.wallMs.toFixed(2)} ms wall (fsync=${fsync}); once a second that is ${(cp.cpuUs / 1e4).toFixed(3)}% of a core`,
  )
  console.log(
    `bench:audit entries=${N} verify_ms=${Math.round(verifyMs)} append_per_s=${Math.round(N / (appendMs / 1000))} checkpoint_cpu_us=${Math.round(cp.cpuUs)}`,
  )
} finally {
  rmSync(dir, { recursive: true, force: true })
}
