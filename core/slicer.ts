// Long work split into slices of the event loop: a plugin that scans or rewrites a body of
// megabytes calls pause() between steps, and the other requests' I/O runs whenever a slice of
// about `sliceMs` of work has passed. A small body never reaches a pause that yields.
import { performance } from 'node:perf_hooks'

/**
 * A request or answer body over this many characters is a large one: the lifecycle gives its heavy
 * steps (parse, hooks, the upstream bytes) turns or slices of their own
 */
export const LARGE_BODY_CHARS = 256 * 1024

export class Slicer {
  private until: number
  constructor(private readonly sliceMs = 10) {
    this.until = performance.now() + sliceMs
  }
  /** whether the slice is used up (then await yield()) */
  due(): boolean {
    return performance.now() >= this.until
  }
  /** give the event loop back now; a new slice starts after it */
  async yield(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve))
    this.until = performance.now() + this.sliceMs
  }
  /** give the event loop back if the slice is used up */
  async pause(): Promise<void> {
    if (this.due()) await this.yield()
  }
}
