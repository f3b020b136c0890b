// How the passes over a body give the event loop back: a large body's passes (tens of thousands of
// messages, or of blocks in a few messages) work in slices of about SLICE_MS (core/slicer.ts), a
// small body's never stop.
import { Slicer } from '../../core/slicer.ts'

export interface Pace {
  /** the slice is used up: await yield() */
  due(): boolean
  yield(): Promise<void>
}

/** issue 11: no request may hold the others up for more than about 50 ms */
export const SLICE_MS = 10

/** a small body's pace: never due */
export const NEVER: Pace = { due: () => false, yield: async () => {} }

export const slices = (): Pace => new Slicer(SLICE_MS)

/** the steps (parts, or KB of their text) between two looks at the clock */
export const STEP = 64

/**
 * A look at the clock every STEP steps, for loops over the parts of one message: a message may hold
 * 110,000 blocks (one pass over them: 60-100 ms), and performance.now() per part cost a tenth of
 * the pass. `tick(chars)` counts a part and its text's KB; true when the slice is used up (then
 * await pace.yield()).
 */
export function ticker(pace: Pace): (chars?: number) => boolean {
  if (pace === NEVER) return () => false
  let n = 0
  return (chars = 0) => {
    n += 1 + (chars >> 10)
    if (n < STEP) return false
    n = 0
    return pace.due()
  }
}

export type Steps<T> = Generator<undefined, T, undefined>

/** a generator's value in one go */
export function runThrough<T>(steps: Steps<T>): T {
  let r = steps.next()
  while (!r.done) r = steps.next()
  return r.value
}
