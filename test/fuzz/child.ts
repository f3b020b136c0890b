// The proxy child as the fuzzer and the soak see it: spawn, wait for its ports, ask for stats,
// notice when it dies (and with what on stderr).
import { spawn, type ChildProcess } from 'node:child_process'
import { resolve } from 'node:path'
import type { ChildMessage, Stats } from './stats.ts'

const root = resolve(import.meta.dirname, '../..')

export interface ProxyChild {
  ports: Record<string, number>
  proc: ChildProcess
  /** stderr since the last take() */
  takeLog(): string
  /** all stderr kept (last 64 KB), for a crash report */
  tail(): string
  alive(): boolean
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  stats(opts?: { gc?: boolean; reset?: boolean; snapshot?: string }): Promise<Stats>
  stop(): Promise<void>
}

export interface ChildOptions {
  upstream: string
  dataDir: string
  semantic?: boolean
  script?: string
  env?: Record<string, string>
}

export async function startChild(opts: ChildOptions): Promise<ProxyChild> {
  const script = opts.script ?? 'test/fuzz/server.ts'
  // FUZZ_CHILD_FLAGS: extra node flags for the proxy only (--cpu-prof, --heapsnapshot-signal=SIGUSR2)
  const flags = (process.env.FUZZ_CHILD_FLAGS ?? '').split(' ').filter(Boolean)
  const proc = spawn(process.execPath, ['--expose-gc', ...flags, 'bin/run-ts.mjs', script], {
    cwd: root,
    env: {
      ...process.env,
      FUZZ_UPSTREAM: opts.upstream,
      FUZZ_DATA_DIR: opts.dataDir,
      FUZZ_SEMANTIC: opts.semantic ? '1' : '0',
      ...opts.env,
    },
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
  })
  let log = ''
  let tail = ''
  proc.stderr!.on('data', (d: Buffer) => {
    log += d.toString()
    tail = (tail + d.toString()).slice(-65536)
  })
  let dead = false
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    proc.once('exit', (code, signal) => {
      dead = true
      r({ code, signal })
    }),
  )
  const waiting = new Map<number, (s: Stats) => void>()
  let nextId = 0
  const ports = await new Promise<Record<string, number>>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`proxy child did not start in 60 s:\n${tail}`)), 60_000)
    proc.on('message', (m: ChildMessage) => {
      if (m.type === 'ready') {
        clearTimeout(timer)
        res(m.ports)
      }
      if (m.type === 'stats') {
        waiting.get(m.id)?.(m.stats)
        waiting.delete(m.id)
      }
    })
    void exit.then(({ code, signal }) => {
      clearTimeout(timer)
      rej(new Error(`proxy child exited (${code ?? signal}) before it was ready:\n${tail}`))
    })
  })
  return {
    ports,
    proc,
    takeLog: () => {
      const l = log
      log = ''
      return l
    },
    tail: () => tail,
    alive: () => !dead,
    exit,
    stats(o = {}) {
      if (dead) return Promise.reject(new Error('proxy child is dead'))
      const id = nextId++
      return new Promise<Stats>((res, rej) => {
        waiting.set(id, res)
        proc.send({ type: 'stats', id, ...o }, (err) => err && rej(err))
        void exit.then(() => rej(new Error('proxy child died')))
      })
    },
    async stop() {
      if (dead) return
      proc.kill('SIGTERM')
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000)
      await exit
      clearTimeout(t)
    },
  }
}
