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
  /**
   * CPU time (all threads) the process spent during its longest block of the event loop since the
   * last reset, ms, capped at the block's length: on a busy machine a loop delayed because the OS
   * ran other processes shows a long delay but little CPU; a block of the proxy's own work shows both
   */
  blockCpuMs: number
  /**
   * the length of that block, ms (wall time between the meter's ticks). monitorEventLoopDelay
   * (elMaxMs) misses a block that starts right after its reset: 142 ms of CPU in one block showed
   * an elMaxMs of 0
   */
  blockMs: number
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

/**
 * The costliest block's CPU and length: a 5 ms timer notes wall and process CPU at each tick; a gap
 * between ticks longer than 15 ms is a block, and what the process spent in it is its cost.
 */
function blockMeter() {
  let last = performance.now()
  let lastCpu = cpuNow()
  let max = 0
  let maxWall = 0
  setInterval(() => {
    const now = performance.now()
    const cpu = cpuNow()
    const wall = now - last
    const spent = Math.min(wall, cpu - lastCpu)
    if (wall > 15 && spent > max) {
      max = spent
      maxWall = wall
    }
    last = now
    lastCpu = cpu
  }, 5).unref()
  return {
    get max() {
      return max
    },
    get wall() {
      return maxWall
    },
    /** from now: the work of the stats request itself (a forced GC, a heap snapshot) is not counted */
    reset() {
      max = 0
      maxWall = 0
      last = performance.now()
      lastCpu = cpuNow()
    },
  }
}

const cpuNow = () => {
  const c = process.cpuUsage()
  return (c.user + c.system) / 1000
}

export function serveStats(): void {
  const loop = monitorEventLoopDelay({ resolution: 10 })
  loop.enable()
  const blocks = blockMeter()
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
      blockCpuMs: blocks.max,
      blockMs: blocks.wall,
      cpuMs: (cpu.user + cpu.system) / 1000,
      rss: m.rss,
      heapUsed: m.heapUsed,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
    }
    if (msg.snapshot) stats.snapshot = writeHeapSnapshot(msg.snapshot)
    // after a snapshot too: writing one blocks the loop, and that is not the next request's doing
    if (msg.reset || msg.snapshot) {
      loop.reset()
      blocks.reset()
    }
    process.send!({ type: 'stats', id: msg.id, stats } satisfies ChildMessage)
  })
}

export function sendReady(ports: Record<string, number>): void {
  process.send!({ type: 'ready', ports } satisfies ChildMessage)
}
