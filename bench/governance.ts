// What identity (virtual keys) and budgets (quota) add per request, in process (app.fetch, no
// socket), with the demo vendor answering at once. Counters in memory and on a real redis-server
// (started here on a free port if redis-server is installed).
//   node bin/run-ts.mjs bench/governance.ts
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { createAgentMesh } from '../core/app.ts'
import type { MeshConfig } from '../core/types.ts'
import { virtualKeys } from '../plugins/keys/index.ts'
import { quota } from '../plugins/quota/index.ts'
import { demo } from '../plugins/vendors/demo.ts'

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 3000)
const CONCURRENCY = 32
const ADMIN = 'bench-admin-token-0123456789'

function freePort(): Promise<number> {
  return new Promise((r) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as any).port
      s.close(() => r(p))
    })
  })
}

async function startRedis(): Promise<{ url: string; stop(): void } | undefined> {
  const port = await freePort()
  return new Promise((resolve) => {
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    )
    child.once('error', () => resolve(undefined))
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('Ready to accept connections'))
        resolve({ url: `redis://127.0.0.1:${port}`, stop: () => child.kill('SIGTERM') })
    })
  })
}

async function run(label: string, config: MeshConfig, withKey: boolean) {
  const mesh = await createAgentMesh({ log: { level: 'silent' }, ...config })
  let key = ''
  if (withKey) {
    const res = await mesh.fetch(
      new Request('http://bench/agentmesh/admin/keys', {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ team: 'eng', user: 'bench' }),
      }),
    )
    key = ((await res.json()) as any).key
  }
  const body = JSON.stringify({
    model: 'demo-fast',
    max_tokens: 64,
    messages: [{ role: 'user', content: 'What does the quarterly report say about hiring?' }],
  })
  const one = async () => {
    const res = await mesh.fetch(
      new Request('http://bench/v1/chat/completions', {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(key ? { authorization: `Bearer ${key}` } : { 'x-agentmesh-team': 'eng' }),
        },
        body,
      }),
    )
    if (res.status !== 200) throw new Error(`${label}: status ${res.status} ${await res.text()}`)
    await res.arrayBuffer()
  }
  for (let i = 0; i < 200; i++) await one()
  const latencies: number[] = []
  let next = 0
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < REQUESTS) {
        const t = performance.now()
        await one()
        latencies.push(performance.now() - t)
      }
    }),
  )
  const secs = (performance.now() - t0) / 1000
  latencies.sort((a, b) => a - b)
  console.log(
    `  ${label.padEnd(44)} ${(REQUESTS / secs).toFixed(0).padStart(6)} req/s   p50 ${latencies[Math.floor(latencies.length / 2)]!.toFixed(2)} ms   p99 ${latencies[Math.floor(latencies.length * 0.99)]!.toFixed(2)} ms`,
  )
  await mesh.close()
}

const vendor = demo({ latencyMs: 0, chunkDelayMs: 0 })
const limits = {
  limits: {
    global: { tokensPerDay: 1e12 },
    teams: { eng: { tokensPerDay: 1e12, usdPerDay: 1e6, requestsPerMinute: 1e9 } },
    defaultUser: { tokensPerMonth: 1e12 },
  },
}
console.log(`${REQUESTS} requests, ${CONCURRENCY} at a time, demo vendor with no delay, app.fetch without sockets`)
// a throw-away round first: JIT and tokenizer tables warm for every row alike
await run(
  '(warm-up)',
  {
    storage: { driver: 'memory' },
    plugins: [vendor, virtualKeys({ required: true, adminToken: ADMIN }), quota(limits)],
  },
  true,
)
await run('baseline (no keys, no quota), memory', { storage: { driver: 'memory' }, plugins: [vendor] }, false)
await run('quota, memory counters', { storage: { driver: 'memory' }, plugins: [vendor, quota(limits)] }, false)
await run(
  'keys (required) + quota, memory',
  {
    storage: { driver: 'memory' },
    plugins: [vendor, virtualKeys({ required: true, adminToken: ADMIN }), quota(limits)],
  },
  true,
)
const redis = await startRedis()
if (redis) {
  try {
    const storage = { driver: 'redis' as const, url: redis.url, prefix: `bench-${Date.now()}` }
    await run('baseline, redis storage', { storage, plugins: [vendor] }, false)
    await run(
      'keys (required) + quota, redis counters',
      { storage, plugins: [vendor, virtualKeys({ required: true, adminToken: ADMIN }), quota(limits)] },
      true,
    )
  } finally {
    redis.stop()
  }
} else console.log('  (redis-server not found: redis rows skipped)')
