// bench:audit: append 100,000 entries through the real writer (fs store, default fsync policy
// and checkpoints), then time a full verify of the log.
//   node bin/run-ts.mjs bench/audit.ts [--entries N] [--fsync always|checkpoint|never]
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import os, { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash, randomUUID } from 'node:crypto'
import { AuditWriter, fsStore, listLogFiles, loadSigner, verifyAuditDir, type AuditEntry, type FsyncPolicy } from '../plugins/audit/index.ts'

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? process.argv[i + 1] : undefined
}
const N = Number(arg('entries') ?? 100_000)
const fsync = (arg('fsync') ?? 'always') as FsyncPolicy
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
    identity: { team: teams[i % 4]!, user: `user${i % 97}@example.com`, tool: i % 2 ? 'claude-code' : 'openai-sdk', keyId: `vk_${i % 13}` },
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

try {
  const signer = loadSigner(dir)
  const writer = new AuditWriter(fsStore({ dir, fsync }), signer, { checkpointSeconds: 0 })
  await writer.open()
  const entries = Array.from({ length: N }, (_, i) => entry(i))
  const t0 = performance.now()
  for (const e of entries) {
    const wait = writer.append(e)
    if (wait) await wait
  }
  await writer.close()
  const appendMs = performance.now() - t0
  const bytes = listLogFiles(dir).reduce((n, f) => n + statSync(f.path).size, 0)

  const t1 = performance.now()
  const cpu0 = process.cpuUsage()
  const result = await verifyAuditDir(dir)
  const verifyMs = performance.now() - t1
  const cpu = process.cpuUsage(cpu0)
  if (!result.ok || result.entries !== N) throw new Error(`verify failed: ${JSON.stringify(result)}`)
  console.log(`log: ${N} entries + ${result.checkpoints} checkpoints, ${(bytes / 1e6).toFixed(1)} MB in ${listLogFiles(dir).length} file(s), fsync=${fsync}`)
  // CPU time too: on a shared machine wall time mostly measures the neighbours
  console.log(`verify: ${Math.round((cpu.user + cpu.system) / 1000)} ms CPU, load average ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} cores`)
  console.log(`bench:audit entries=${N} verify_ms=${Math.round(verifyMs)} append_per_s=${Math.round(N / (appendMs / 1000))}`)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
