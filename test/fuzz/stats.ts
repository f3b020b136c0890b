// The child side of the IPC channel the fuzzer and the soak use: event-loop delay (max since the
// last reset), memory (optionally after a forced GC: run the child with --expose-gc) and heap
// snapshots on request. Measured in the proxy's process, so the load generator is not counted.
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { writeHeapSnapshot } from 'node:v8'

export interface StatsRequest {
  type: 'stats'
  id: number
  gc?: boolean
  reset?: boolean
  snapshot?: string
}
export interface Stats {
  elMaxMs: number
  /** CPU time of the process so far (all threads), ms: tells a stall from a process the OS did not schedule */
  cpuMs: number
  rss: number
  heapUsed: number
  external: number
  arrayBuffers: number
  snapshot?: string
}
export type ChildMessage =
  | { type: 'ready'; ports: Record<string, number> }
  | { type: 'stats'; id: number; stats: Stats }

export function serveStats(): void {
  const loop = monitorEventLoopDelay({ resolution: 10 })
  loop.enable()
  process.on('message', (msg: StatsRequest) => {
    if (msg?.type !== 'stats') return
    if (msg.gc) {
      // two passes: the first may only finalise what the second frees
      globalThis.gc?.()
      globalThis.gc?.()
    }
    const m = process.memoryUsage()
    const cpu = process.cpuUsage()
    const stats: Stats = {
      elMaxMs: loop.max / 1e6,
      cpuMs: (cpu.user + cpu.system) / 1000,
      rss: m.rss,
      heapUsed: m.heapUsed,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
    }
    if (msg.snapshot) stats.snapshot = writeHeapSnapshot(msg.snapshot)
    // after a snapshot too: writing one blocks the loop, and that is not the next request's doing
    if (msg.reset || msg.snapshot) loop.reset()
    process.send!({ type: 'stats', id: msg.id, stats } satisfies ChildMessage)
  })
}

export function sendReady(ports: Record<string, number>): void {
  process.send!({ type: 'ready', ports } satisfies ChildMessage)
}
