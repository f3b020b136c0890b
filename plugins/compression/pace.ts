// How the passes over a body give the event loop back: a large body's passes (tens of thousands of
// messages, or of blocks in a few messages) work in slices of about SLICE_MS (core/slicer.ts), a
// small body's never stop.
import { stringifySliced } from '../../core/json-sliced.ts'
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

/**
 * What a step generator yields: undefined, a place to pause when the slice is used up; NOW, a
 * place to pause whatever is left of the slice (a flat copy of megabytes comes next, or has just
 * been made: 20-40 ms on this machine, so it gets a slice of its own); an Ask, a question whose
 * answer the generator needs (a paced driver answers it in slices, the one-go one at once).
 */
export type Yielded = undefined | typeof NOW | Ask
/** a flat copy at least this long is a NOW step of its own (shorter ones cost under ~5 ms) */
export const FLAT_CHARS = 512 * 1024
export const NOW = 1

/** a question a step generator asks its driver, the same answer whether made at once or in slices */
export abstract class Ask {
  abstract now(): string | undefined
  abstract paced(pace: Pace): Promise<string | undefined>
}

/** JSON.stringify(value): a tool call's arguments of megabytes */
export class JsonOf extends Ask {
  constructor(readonly value: unknown) {
    super()
  }
  now(): string | undefined {
    return JSON.stringify(this.value)
  }
  paced(pace: Pace): Promise<string | undefined> {
    return jsonPaced(this.value, pace)
  }
}

export type Steps<T> = Generator<Yielded, T, string | undefined>

/** a generator's value in one go */
export function runThrough<T>(steps: Steps<T>): T {
  let r = steps.next()
  while (!r.done) r = steps.next(r.value instanceof Ask ? r.value.now() : undefined)
  return r.value
}

/** a generator's value, the loop given back at its pauses when the slice is used up (at NOW always) */
export async function runPaced<T>(steps: Steps<T>, pace: Pace): Promise<T> {
  let r = steps.next()
  while (!r.done) r = await stepPaced(steps, r.value, pace)
  return r.value
}

/** the generator's next step after it yielded `y`: a pause, or the answer it asked for */
export async function stepPaced<T>(steps: Steps<T>, y: Yielded, pace: Pace): Promise<IteratorResult<Yielded, T>> {
  if (y instanceof Ask) return steps.next(await y.paced(pace))
  if (y === NOW || pace.due()) await pace.yield()
  return steps.next()
}

/**
 * JSON.stringify(value) made in slices (the core's stringifySliced: the same text), its one flat
 * join in a slice of its own: one JSON.stringify of a 3 MB tool input held the loop 35-90 ms.
 */
export async function jsonPaced(value: unknown, pace: Pace): Promise<string | undefined> {
  if (pace === NEVER) return JSON.stringify(value)
  const pieces = await stringifySliced(value, slicerOf(pace))
  if (!pieces) return undefined
  await pace.yield()
  const text = pieces.join('')
  await pace.yield()
  return text
}

/** the core's sliced work takes a Slicer: a pace looks like one (due, yield) plus pause */
export const slicerOf = (pace: Pace): Slicer =>
  ({
    due: () => pace.due(),
    yield: () => pace.yield(),
    pause: async () => {
      if (pace.due()) await pace.yield()
    },
  }) as unknown as Slicer
