// The fuzz loop: cases in order against the proxy child, every oracle on every response, crashes
// and stalls confirmed by replaying the case alone, failures deduplicated by kind (first case
// kept, with its reproduction), memory compared between warm-up and the end.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { join } from 'node:path'
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.ts'
import { fillCase, generateCase, requestBytes, seedCase, type FuzzCase } from './cases.ts'
import { startChild, type ProxyChild } from './child.ts'
import { sendRaw } from './client.ts'
import { checkResponse, type Failure } from './oracle.ts'
import { reproOf } from './repro.ts'
import { SEEDS } from './seeds.ts'
import type { Stats } from './stats.ts'

export interface FuzzOptions {
  seed: number
  /** stop after this many cases ... */
  cases?: number
  /** ... or after this many minutes, whichever comes first */
  minutes?: number
  /** run only this case index */
  only?: number
  semantic?: boolean
  /** event-loop stall limit (default 100 ms) */
  stallMs?: number
  /**
   * growth of the heap after GC between warm-up and the end (default 24 MB). Warm-up fills the
   * character-bounded caches (normalised text, token counts) with two-byte text, so they are at
   * their most before the baseline; what may still grow is the exact caches (2 MB each), the demo
   * preset's memory storage (about 1 KB per distinct prompt) and quota counters for the teams a
   * run invents: a few MB over the longest runs. 24 MB is several times that.
   */
  heapBoundMb?: number
  /**
   * growth of RSS between warm-up and the end (default 128 MB). A 10 MB body costs 60-100 MB at
   * its peak (the bytes, the string, the parsed body, the upstream copy, the echoed answer) and
   * the allocator keeps freed pages: RSS moves by tens of MB with no leak. Beyond two such peaks
   * the heap figure above says whether it is retained.
   */
  rssBoundMb?: number
  /** write each case's request bytes here (with --case: the reproduction as a file) */
  dump?: string
  /** write heap snapshots of the proxy at warm-up and at the end here */
  snapshots?: string
  progress?: (line: string) => void
  /** extra environment of the proxy child (FUZZ_STALL_PROBE=1 for the oracle's own test) */
  childEnv?: Record<string, string>
}

export interface FailureRecord {
  kind: string
  count: number
  detail: string
  repro: string
  /** the proxy's stderr during the first case of this kind */
  log: string
  /** for crashes and stalls: did the case alone do it again? */
  confirmed?: boolean
}

/** failures whose kind starts with '(' are shown for information and do not fail a run */
export const isCounted = (f: { kind: string }) => !f.kind.startsWith('(')

export interface MemoryFigures {
  warm: Stats
  end: Stats
  heapGrowthMb: number
  rssGrowthMb: number
  casesMeasured: number
}

export interface FuzzReport {
  seed: number
  cases: number
  ms: number
  failures: FailureRecord[]
  statuses: Record<string, number>
  crashes: number
  memory?: MemoryFigures
  /** the bound that was checked, in MB */
  bounds: { heapMb: number; rssMb: number; stallMs: number }
  elMaxMs: number
  /** every case that stalled the loop (failures keep only a kind's first), to see delay against size */
  stalls: StallRecord[]
}

export interface StallRecord {
  index: number
  bodyBytes: number
  elMaxMs: number
  cpuMs: number
  /** CPU spent in the costliest block, and that block's length */
  blockCpuMs: number
  blockMs: number
  what: string
  /** replayed alone: true or false; undefined when not replayed (its kind was settled) */
  confirmed?: boolean
}

const MB = 1024 * 1024
const CASE_TIMEOUT_MS = 20_000
/** a stall kind not confirmed alone after this many replays is reported unconfirmed */
const MAX_STALL_REPLAYS = 2
const STATS_TIMEOUT_MS = 10_000
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** stats, or undefined when the child is dead or its event loop does not come back */
async function statsOf(
  child: ProxyChild,
  o: { gc?: boolean; reset?: boolean; snapshot?: string } = {},
): Promise<Stats | undefined> {
  let timer: NodeJS.Timeout | undefined
  // a heap snapshot of a few hundred MB takes a while on a busy machine
  const timeout = new Promise<undefined>(
    (r) => (timer = setTimeout(() => r(undefined), o.snapshot ? 10 * STATS_TIMEOUT_MS : STATS_TIMEOUT_MS)),
  )
  try {
    return await Promise.race([child.stats(o).catch(() => undefined), timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** the error line of a crash, with numbers and ids blanked so one defect is one kind */
export function crashKind(stderr: string): string {
  const lines = stderr.split('\n')
  const line =
    lines.find((l) => /^(\w*Error|Error \[|\s*\w+Error\b)|^\S+Error:|Uncaught|FATAL ERROR/.test(l)) ??
    lines.filter(Boolean).at(-1) ??
    'no output'
  return line
    .trim()
    .replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, 'ID')
    .replace(/\d+/g, 'N')
    .slice(0, 160)
}

interface Outcome {
  failures: Failure[]
  status: number
  /** the child died during the case */
  crashed: boolean
  elMaxMs: number
  cpuMs: number
  blockCpuMs: number
  blockMs: number
  log: string
}

/** what a stall is grouped by: big inputs are expected suspects, a stall on a small request is news */
function sizeClass(c: FuzzCase): string {
  const head = c.headers.reduce((n, [k, v]) => n + k.length + v.length, c.path.length)
  if (c.body.length >= 1_000_000) return 'a body of 1-10 MB'
  if (c.body.length >= 100_000) return 'a body of 100 KB-1 MB'
  if (head >= 8_000) return 'a request head over 8 KB'
  return 'a small request'
}

/**
 * A stall is the proxy's own work holding its loop: the CPU it spent in its longest block. The
 * delay alone is not enough on a shared machine (the OS not scheduling the process delays the
 * loop just the same, with little CPU spent), nor is the case's CPU (many short turns add up
 * without holding the loop). Undefined when there was none; else both figures, for the report.
 */
export function stallOf(s: Pick<Stats, 'blockMs' | 'blockCpuMs'>, stallMs: number): string | undefined {
  if (s.blockCpuMs <= stallMs) return undefined
  return `longest block ${s.blockMs.toFixed(0)} ms, ${s.blockCpuMs.toFixed(0)} ms of CPU in it`
}

/**
 * The mock upstream shares this process's event loop: when that loop stalls (the mock counting
 * the words of a 10 MB prompt) or the mock throws on a body it cannot read, the mock answered
 * late or never, and the proxy's 502/504 for it is right.
 */
export const runnerTrouble = { errors: 0, loop: monitorEventLoopDelay({ resolution: 20 }) }
runnerTrouble.loop.enable()

async function runCase(child: ProxyChild, mock: MockUpstream, c: FuzzCase, stallMs: number): Promise<Outcome> {
  // a new object each case: a stream still running from the last case keeps its own behaviour
  mock.behaviour = { ...c.upstream }
  const errorsBefore = runnerTrouble.errors
  runnerTrouble.loop.reset()
  const before = await statsOf(child, { reset: true })
  child.takeLog()
  const port = child.ports[c.target]!
  const r = await sendRaw(port, requestBytes(c, port), {
    timeoutMs: CASE_TIMEOUT_MS,
    head: c.method === 'HEAD',
    abortAfterBytes: c.abort?.afterBytes,
    abortAfterMs: c.abort?.afterMs,
  })
  // work after the response (afterResponse, a stream's settling) may be what fails
  // (and a proxy that dies right after closing the connection takes a moment to exit)
  if (c.abort || c.upstream.cutAfterEvents !== undefined || r.error || r.empty || !r.complete) await delay(50)
  const stats = await statsOf(child)
  const crashed = !stats
  const mockTrouble = runnerTrouble.errors > errorsBefore || runnerTrouble.loop.max / 1e6 > 1000
  const failures = crashed ? [] : checkResponse(c, r, mockTrouble)
  const cpuMs = stats && before ? stats.cpuMs - before.cpuMs : 0
  const stall = stats && stallOf(stats, stallMs)
  if (stall) failures.push({ kind: `event-loop stall over ${stallMs} ms on ${sizeClass(c)}`, detail: stall })
  return {
    failures,
    status: r.status,
    crashed,
    elMaxMs: stats?.elMaxMs ?? 0,
    cpuMs,
    blockCpuMs: stats?.blockCpuMs ?? 0,
    blockMs: stats?.blockMs ?? 0,
    log: child.takeLog(),
  }
}

export class Fuzzer {
  readonly failures = new Map<string, FailureRecord>()
  readonly statuses: Record<string, number> = {}
  crashes = 0
  elMaxMs = 0
  readonly stalls: StallRecord[] = []
  /** replays alone per stall kind, bounded: each starts a proxy (5-20 s here) */
  private stallReplays = new Map<string, number>()
  private child!: ProxyChild
  private mock!: MockUpstream
  private dataDir = mkdtempSync(join(tmpdir(), 'agentmesh-fuzz-run-'))
  private guard = (err: Error) => {
    runnerTrouble.errors++
    this.progress(`runner: mock upstream error ignored: ${err.message}`)
  }

  constructor(readonly opts: FuzzOptions) {}

  progress(line: string) {
    this.opts.progress?.(line)
  }

  async start() {
    // the mock runs in this process; a request the proxy forwards must not kill the fuzzer
    process.on('uncaughtException', this.guard)
    this.mock = await startMockUpstream({}, { record: false })
    const t0 = Date.now()
    this.child = await this.freshChild()
    this.progress(`proxy child started and warmed up in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  }

  /** a new proxy child, warmed up: the first request of each kind compiles code and loads modules (250 ms here) */
  private async freshChild() {
    const t0 = Date.now()
    const child = await startChild({
      upstream: this.mock.url,
      dataDir: mkdtempSync(join(this.dataDir, 'c-')),
      semantic: this.opts.semantic,
      env: this.opts.childEnv,
    })
    this.progress(`proxy child up in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    this.mock.behaviour = {}
    for (const target of ['mock', 'demo'] as const) {
      const port = child.ports[target]!
      for (let round = 0; round < 2; round++) {
        for (const s of SEEDS)
          await sendRaw(port, requestBytes(seedCase(s, target), port), { timeoutMs: CASE_TIMEOUT_MS })
      }
      // 10 x 900k characters: the normalise memo (8M characters) and the token caches are full.
      // The mock answers them 503 at once: echoing 900k characters word by word is slow, and
      // the caches are filled before the call
      this.mock.behaviour = { status: 503 }
      for (let i = 0; i < 10; i++)
        await sendRaw(port, requestBytes(fillCase(target, i), port), { timeoutMs: CASE_TIMEOUT_MS })
      this.mock.behaviour = {}
    }
    return child
  }

  async stop() {
    await this.child?.stop()
    await this.mock?.close()
    process.off('uncaughtException', this.guard)
    rmSync(this.dataDir, { recursive: true, force: true })
  }

  get stallMs() {
    return this.opts.stallMs ?? 100
  }

  private record(f: Failure, c: FuzzCase, log: string, confirmed?: boolean) {
    const have = this.failures.get(f.kind)
    if (have) {
      have.count++
      return
    }
    this.failures.set(f.kind, {
      kind: f.kind,
      count: 1,
      detail: f.detail,
      repro: reproOf(c),
      log: log.slice(0, 2000),
      ...(confirmed === undefined ? {} : { confirmed }),
    })
    this.progress(`NEW ${f.kind} (case ${c.index})`)
  }

  /** one case, with crash and stall handling; returns false when the child had to be replaced */
  async step(c: FuzzCase): Promise<boolean> {
    if (this.opts.dump) writeDump(this.opts.dump, c, this.child.ports)
    const out = await runCase(this.child, this.mock, c, this.stallMs)
    this.statuses[out.status] = (this.statuses[out.status] ?? 0) + 1
    this.elMaxMs = Math.max(this.elMaxMs, out.elMaxMs)
    if (out.crashed) {
      await this.onCrash(c, out)
      return false
    }
    for (const f of out.failures) {
      if (f.kind.startsWith('event-loop stall')) await this.onStall(c, f, out)
      else this.record(f, c, out.log)
    }
    return true
  }

  /** a stall: listed, and its kind settled by replaying the case alone (a few tries per kind) */
  private async onStall(c: FuzzCase, f: Failure, out: Outcome) {
    const stall: StallRecord = {
      index: c.index,
      bodyBytes: c.body.length,
      elMaxMs: out.elMaxMs,
      cpuMs: out.cpuMs,
      blockCpuMs: out.blockCpuMs,
      blockMs: out.blockMs,
      what: `${c.target} ${c.seedName}: ${c.mutations.join(' | ')}`.slice(0, 240),
    }
    this.stalls.push(stall)
    if (this.failures.has(f.kind)) return this.record(f, c, out.log)
    const unconfirmed = { ...f, kind: `(unconfirmed, not counted) ${f.kind}` }
    const tries = this.stallReplays.get(f.kind) ?? 0
    if (tries >= MAX_STALL_REPLAYS) return this.record(unconfirmed, c, out.log, false)
    this.stallReplays.set(f.kind, tries + 1)
    stall.confirmed = await this.replayStall(c)
    this.record(stall.confirmed ? f : unconfirmed, c, out.log, stall.confirmed)
  }

  private async onCrash(c: FuzzCase, out: Outcome) {
    this.crashes++
    // alive but not answering: its event loop is stuck (an endless loop, a pathological regex)
    const stuck = await retire(this.child)
    const tail = this.child.tail()
    const kind = stuck
      ? `stuck: the proxy did not answer for ${STATS_TIMEOUT_MS / 1000} s`
      : `crash: ${crashKind(tail.slice(-8000))}`
    if (this.failures.has(kind)) {
      this.failures.get(kind)!.count++
      this.child = await this.freshChild()
      return
    }
    // the case alone, on a fresh proxy: was it this request, or something earlier?
    this.child = await this.freshChild()
    const again = await runCase(this.child, this.mock, c, this.stallMs)
    if (again.crashed) {
      await retire(this.child)
      this.child = await this.freshChild()
    }
    this.record(
      { kind, detail: `proxy child exited during case ${c.index}` },
      c,
      (out.log + tail.slice(-2000)).slice(-2000),
      again.crashed,
    )
  }

  /**
   * The case alone on a fresh proxy, warmed up as the first was. On the same proxy the second run
   * found its caches warm (token counts, exact answers): 142 ms of counting a 64 KB word did not
   * recur there, and did every time alone.
   */
  private async replayStall(c: FuzzCase): Promise<boolean> {
    const fresh = await this.freshChild()
    try {
      const again = await runCase(fresh, this.mock, c, this.stallMs)
      return !again.crashed && again.failures.some((f) => f.kind.startsWith('event-loop stall'))
    } finally {
      await fresh.stop()
    }
  }

  /**
   * heap after GC and RSS of the current child (and a heap snapshot named `label` with
   * --snapshots). With a label (the compared points) GC runs twice, 2 s apart: the pages a full
   * GC frees leave RSS a little later, and after 10 MB bodies that is tens of MB.
   */
  async memory(label?: string): Promise<Stats | undefined> {
    const snapshot = label && this.opts.snapshots ? join(this.opts.snapshots, `fuzz-${label}.heapsnapshot`) : undefined
    if (snapshot) mkdirSync(this.opts.snapshots!, { recursive: true })
    if (label) {
      await statsOf(this.child, { gc: true })
      await delay(2000)
    }
    return statsOf(this.child, { gc: true, ...(snapshot ? { snapshot } : {}) })
  }
}

/** a child that failed a case: killed if it still runs (stuck), then gone; true if it was stuck */
async function retire(child: ProxyChild): Promise<boolean> {
  const stuck = child.alive()
  if (stuck) child.proc.kill('SIGKILL')
  await child.exit
  return stuck
}

function writeDump(dir: string, c: FuzzCase, ports: Record<string, number>) {
  mkdirSync(dir, { recursive: true })
  const port = ports[c.target]!
  writeFileSync(join(dir, `seed${c.seed}-case${c.index}.http`), requestBytes(c, port))
  writeFileSync(join(dir, `seed${c.seed}-case${c.index}.body`), c.body)
}

/** Run the cases (or one case), then compare memory between warm-up and the end. */
export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const t0 = Date.now()
  const fz = new Fuzzer(opts)
  const bounds = { heapMb: opts.heapBoundMb ?? 24, rssMb: opts.rssBoundMb ?? 128, stallMs: fz.stallMs }
  const deadline = opts.minutes ? t0 + opts.minutes * 60_000 : Infinity
  const total = opts.only !== undefined ? 1 : (opts.cases ?? (opts.minutes ? Infinity : 2000))
  // warm-up (JIT, pools, caches filling) after each (re)start of the proxy; memory is compared from there
  const warmCases = opts.cases ? Math.max(20, Math.floor(opts.cases * 0.15)) : 200
  let warm: Stats | undefined
  let warmIndex = 0
  let started = 0
  let n = 0
  await fz.start()
  try {
    for (let i = opts.only ?? 0; n < total && Date.now() < deadline; i++, n++) {
      const c = generateCase(opts.seed, i)
      if (!(await fz.step(c))) {
        warm = undefined
        started = n + 1
      }
      if (!warm && opts.only === undefined && n + 1 - started >= warmCases && n < total - 50) {
        warm = await fz.memory('warm')
        warmIndex = n
      }
      if (n % 100 === 99)
        fz.progress(`${n + 1} cases, ${fz.failures.size} kinds of failure, ${((Date.now() - t0) / 1000).toFixed(0)} s`)
      if (n % 1000 === 999 && opts.progress) {
        const m = await fz.memory()
        if (m)
          fz.progress(`memory: heap after GC ${(m.heapUsed / MB).toFixed(1)} MB, rss ${(m.rss / MB).toFixed(1)} MB`)
      }
    }
    const end = warm ? await fz.memory('end') : undefined
    const memory =
      warm && end
        ? {
            warm,
            end,
            heapGrowthMb: (end.heapUsed - warm.heapUsed) / MB,
            rssGrowthMb: (end.rss - warm.rss) / MB,
            casesMeasured: n - warmIndex,
          }
        : undefined
    if (memory && (memory.heapGrowthMb > bounds.heapMb || memory.rssGrowthMb > bounds.rssMb)) {
      fz.failures.set('memory', {
        kind: `memory growth beyond the bound after warm-up`,
        count: 1,
        detail: `heap after GC ${memory.heapGrowthMb.toFixed(1)} MB (bound ${bounds.heapMb}), rss ${memory.rssGrowthMb.toFixed(1)} MB (bound ${bounds.rssMb}) over ${memory.casesMeasured} cases`,
        repro: `npm run fuzz -- --seed ${opts.seed} --cases ${n}`,
        log: '',
      })
    }
    return {
      seed: opts.seed,
      cases: n,
      ms: Date.now() - t0,
      failures: [...fz.failures.values()],
      statuses: fz.statuses,
      crashes: fz.crashes,
      memory,
      bounds,
      elMaxMs: fz.elMaxMs,
      stalls: fz.stalls,
    }
  } finally {
    await fz.stop()
  }
}

/** a report as text: one paragraph per kind, most frequent first */
export function formatReport(r: FuzzReport): string {
  const counted = r.failures.filter(isCounted)
  const lines = [
    `fuzz: seed ${r.seed}, ${r.cases} cases in ${(r.ms / 1000).toFixed(0)} s, ${counted.length} distinct failures, ${r.crashes} crashes, max event-loop delay ${r.elMaxMs.toFixed(0)} ms`,
  ]
  lines.push(
    `statuses: ${Object.entries(r.statuses)
      .map(([s, n]) => `${s}:${n}`)
      .join(' ')}`,
  )
  if (r.memory)
    lines.push(
      `memory after warm-up (${r.memory.casesMeasured} cases): heap after GC ${(r.memory.warm.heapUsed / MB).toFixed(1)} -> ${(r.memory.end.heapUsed / MB).toFixed(1)} MB (${r.memory.heapGrowthMb >= 0 ? '+' : ''}${r.memory.heapGrowthMb.toFixed(1)}, bound ${r.bounds.heapMb}), rss ${(r.memory.warm.rss / MB).toFixed(1)} -> ${(r.memory.end.rss / MB).toFixed(1)} MB (${r.memory.rssGrowthMb >= 0 ? '+' : ''}${r.memory.rssGrowthMb.toFixed(1)}, bound ${r.bounds.rssMb})`,
    )
  else lines.push('memory: not measured (too few cases after warm-up, or the proxy was restarted after a crash)')
  if (r.stalls.length) {
    lines.push(
      '',
      `stalls, most CPU first (case: body bytes, CPU in the costliest block, its length, CPU in the whole case; replayed alone):`,
    )
    for (const s of [...r.stalls].sort((a, b) => b.blockCpuMs - a.blockCpuMs).slice(0, 40))
      lines.push(
        `  ${s.index}: ${s.bodyBytes} B, ${s.blockCpuMs.toFixed(0)} ms CPU in a block of ${s.blockMs.toFixed(0)} ms, ${s.cpuMs.toFixed(0)} ms CPU in the case${s.confirmed === undefined ? '' : s.confirmed ? ', recurred alone' : ', not alone'}; ${s.what.slice(0, 160)}`,
      )
  }
  for (const f of [...r.failures].sort((a, b) => b.count - a.count)) {
    lines.push(
      '',
      `[${f.count}x] ${f.kind}${f.confirmed === undefined ? '' : f.confirmed ? ' (confirmed alone)' : ' (did not recur alone)'}`,
      `  ${f.detail}`,
    )
    lines.push(...f.repro.split('\n').map((l) => `  ${l}`))
    if (f.log.trim())
      lines.push(
        ...f.log
          .trim()
          .split('\n')
          .slice(0, 6)
          .map((l) => `  | ${l.slice(0, 300)}`),
      )
  }
  return lines.join('\n')
}
