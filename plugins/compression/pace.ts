// How the passes over a body give the event loop back: a large body's passes (tens of thousands of
// messages) work in slices of about SLICE_MS (core/slicer.ts), a small body's never stop.
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
