// A plugin that makes the proxy child misbehave on request, for the stall oracle's own test
// (test/fuzz-oracle.test.ts): only loaded when the child runs with FUZZ_STALL_PROBE=1.
//   x-fuzz-busy-ms: N         holds the event loop for N ms of CPU in one go (a real stall)
//   x-fuzz-sleep-ms: N        waits N ms asynchronously (slow, but the loop is free)
//   x-fuzz-slices: K          with x-fuzz-busy-ms: K blocks of N ms, the loop given back between
//   x-fuzz-descheduled-ms: N  the process is stopped (SIGSTOP) for N ms, as a busy OS would
import { spawn } from 'node:child_process'
import { definePlugin } from '../../core/plugin.ts'
import type { MeshContext } from '../../core/types.ts'

const ms = (ctx: MeshContext, name: string): number => Math.min(Number(ctx.request.headers.get(name) ?? 0) || 0, 5000)

const cpuNow = () => {
  const c = process.cpuUsage()
  return (c.user + c.system) / 1000
}

/** N ms of CPU, not of the clock: on a shared machine 200 ms of spinning by the clock got 96 ms of CPU */
function busy(n: number) {
  const end = cpuNow() + n
  while (cpuNow() < end) {
    // spinning: the work a stall is made of
  }
}

/** stopped by SIGSTOP, continued N ms later by a shell started first (a stopped process cannot wake itself) */
async function descheduled(n: number) {
  const waker = spawn('sh', ['-c', `sleep ${n / 1000}; kill -CONT ${process.pid}`], { stdio: 'ignore' })
  await new Promise((r) => waker.once('spawn', r))
  process.kill(process.pid, 'SIGSTOP')
  await new Promise((r) => waker.once('exit', r))
}

export function stallProbe() {
  return definePlugin({
    name: 'fuzz-stall-probe',
    hooks: {
      async beforeRequest(ctx) {
        const stopped = ms(ctx, 'x-fuzz-descheduled-ms')
        if (stopped) await descheduled(stopped)
        const sleep = ms(ctx, 'x-fuzz-sleep-ms')
        if (sleep) await new Promise((r) => setTimeout(r, sleep))
        const block = ms(ctx, 'x-fuzz-busy-ms')
        const slices = Math.max(1, Math.min(Number(ctx.request.headers.get('x-fuzz-slices') ?? 1) || 1, 100))
        for (let i = 0; block && i < slices; i++) {
          if (i) await new Promise(setImmediate)
          busy(block)
        }
      },
    },
  })
}
