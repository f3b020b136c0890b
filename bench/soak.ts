// npm run bench:soak -- [--minutes 10] [--concurrency 16] [--rps 400] [--semantic] [--snapshots DIR] [--distinct]
// Memory under load: the proxy (solo preset: keys, quota, exact cache, audit) in a child process
// run with --expose-gc, the mock upstream and the traffic here. Mixed traffic for the given time;
// RSS and heap after GC at the end of warm-up and at the end, sampled every 30 s between, and one
// summary line. With --snapshots, heap snapshots at both points (compare them with
// bench/lib/soak-heapdiff.ts or DevTools). Prompts come from a bounded pool, so caches keyed by
// prompt text are full after warm-up; --distinct makes every prompt new, to see those caches fill.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { startMockUpstream } from '../test/helpers/mock-upstream.ts'
import { startChild, type ProxyChild } from '../test/fuzz/child.ts'
import type { Stats } from '../test/fuzz/stats.ts'
import { KINDS, drive, newTally, type Tally } from './lib/soak-traffic.ts'

const MB = 1024 * 1024
const mb = (n: number) => (n / MB).toFixed(1)
const signed = (n: number) => `${n >= 0 ? '+' : ''}${mb(n)}`

const { values } = parseArgs({
  args: process.argv.slice(3),
  options: {
    minutes: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '16' },
    rps: { type: 'string', default: '400' },
    semantic: { type: 'boolean' },
    snapshots: { type: 'string' },
    distinct: { type: 'boolean' },
  },
})
const minutes = Number(values.minutes)
const concurrency = Number(values.concurrency)
const rps = Number(values.rps)
if (!(minutes > 0) || !(concurrency >= 1) || !(rps >= 0)) {
  console.error('bench:soak: --minutes > 0, --concurrency >= 1, --rps >= 0 (0: unpaced)')
  process.exit(2)
}

/**
 * heap after GC and RSS, optionally with a heap snapshot. At the two points that are compared,
 * GC runs twice 3 s apart: the pages the first full GC frees leave RSS only a little later (the
 * first soak read 277 MB at warm-up and 208 MB 30 s on, with the same heap).
 */
async function measure(
  child: ProxyChild,
  label: string,
  t0: number,
  snapshotDir?: string,
  settle = false,
): Promise<Stats> {
  if (settle) {
    await child.stats({ gc: true })
    await new Promise((r) => setTimeout(r, 3000))
  }
  const s = await child.stats({
    gc: true,
    ...(snapshotDir ? { snapshot: join(snapshotDir, `${label}.heapsnapshot`) } : {}),
  })
  console.log(
    `  ${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s  ${label.padEnd(8)} rss ${mb(s.rss)} MB, heap after GC ${mb(s.heapUsed)} MB, external ${mb(s.external)} MB${s.snapshot ? `, snapshot ${s.snapshot}` : ''}`,
  )
  return s
}

function printTally(t: Tally, seconds: number) {
  console.log(`requests: ${t.total} in ${seconds.toFixed(0)} s (${(t.total / seconds).toFixed(0)} rps)`)
  for (const { kind } of KINDS) {
    const by = t.byKind[kind]
    const n = Object.values(by).reduce((a, b) => a + b, 0)
    console.log(
      `  ${kind.padEnd(8)} ${String(n).padStart(8)}  ${Object.entries(by)
        .map(([k, v]) => `${k}: ${v}`)
        .join(', ')}`,
    )
  }
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'agentmesh-soak-'))
  const snapshotDir = values.snapshots ? resolve(values.snapshots) : undefined
  if (snapshotDir) mkdirSync(snapshotDir, { recursive: true })
  // streams last a few ms per event, so an aborting client leaves mid-stream
  const mock = await startMockUpstream({ eventGapMs: 1 }, { record: false })
  const child = await startChild({
    upstream: mock.url,
    dataDir: dir,
    semantic: values.semantic,
    script: 'bench/lib/soak-server.ts',
  })
  const port = child.ports.proxy!
  const t0 = Date.now()
  const end = t0 + minutes * 60_000
  // JIT, pools, the small team's budget running out, the hit pool filling: 60 s, or a fifth of a short run
  const warmMs = Math.min(60_000, minutes * 60_000 * 0.2)
  const tally = newTally()
  let stopped = false
  console.log(
    `soak: ${minutes} min, ${concurrency} connections, ${rps || 'unpaced'} rps target, warm-up ${(warmMs / 1000).toFixed(0)} s, ${values.distinct ? 'every prompt new' : 'bounded prompt pool'}; proxy pid ${child.proc.pid}`,
  )
  const traffic = drive(port, {
    concurrency,
    rps,
    until: () => stopped || Date.now() >= end,
    tally,
    distinct: values.distinct,
  })
  let warm: Stats | undefined
  let last: Stats | undefined
  // both compared points under the same load: the end one is read 10 s before the traffic stops
  const sampler = (async () => {
    await new Promise((r) => setTimeout(r, warmMs))
    warm = await measure(child, 'warm', t0, snapshotDir, true)
    while (Date.now() + 40_000 < end && !stopped) {
      await new Promise((r) => setTimeout(r, 30_000))
      await measure(child, 'sample', t0)
    }
    await new Promise((r) => setTimeout(r, Math.max(0, end - 10_000 - Date.now())))
    if (!stopped) last = await measure(child, 'end', t0, snapshotDir, true)
  })()
  const died = child.exit.then(({ code, signal }) => {
    stopped = true
    return `proxy exited (${code ?? signal}) during the soak:\n${child.tail().slice(-3000)}`
  })
  const outcome = await Promise.race([traffic.then(() => undefined), died])
  if (outcome) {
    sampler.catch(() => {})
    throw new Error(outcome)
  }
  await sampler
  stopped = true
  // idle, once the last streams' afterResponse (audit, quota) has run: for information
  await new Promise((r) => setTimeout(r, 2000))
  await measure(child, 'idle', t0)
  const seconds = (Date.now() - t0) / 1000
  printTally(tally, seconds - 2)
  if (!warm || !last) throw new Error('the run was too short to measure both points')
  console.log(
    `rss: ${mb(warm.rss)} MB after warm-up, ${mb(last.rss)} MB at the end (${signed(last.rss - warm.rss)} MB); heap after GC: ${mb(warm.heapUsed)} -> ${mb(last.heapUsed)} MB (${signed(last.heapUsed - warm.heapUsed)} MB)`,
  )
  if (snapshotDir)
    console.log(
      '(writing a heap snapshot grows RSS by a few hundred MB: read the heap figures, or run again without --snapshots for RSS)',
    )
  console.log(
    `soak: ${minutes} min, ${tally.total} requests, rss ${signed(last.rss - warm.rss)} MB, heap after gc ${signed(last.heapUsed - warm.heapUsed)} MB`,
  )
  await child.stop()
  await mock.close()
  rmSync(dir, { recursive: true, force: true })
}

await main()
