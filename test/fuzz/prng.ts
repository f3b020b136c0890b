// A small seeded PRNG (mulberry32): a case is a pure function of (seed, index), so a failure
// replays exactly from the two numbers it prints.

export interface Rng {
  /** float in [0, 1) */
  next(): number
  /** integer in [lo, hi] */
  int(lo: number, hi: number): number
  chance(p: number): boolean
  pick<T>(items: readonly T[]): T
  /** a size spread over orders of magnitude (log-uniform), so small and huge both occur */
  size(lo: number, hi: number): number
}

export function mulberry32(seed: number): Rng {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const rng: Rng = {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    chance: (p) => next() < p,
    pick: (items) => items[Math.floor(next() * items.length)]!,
    size: (lo, hi) => Math.round(Math.exp(Math.log(lo) + next() * (Math.log(hi) - Math.log(lo)))),
  }
  return rng
}

/** The generator for case `index` of run `seed`: independent of every other case. */
export function caseRng(seed: number, index: number): Rng {
  // mix the two so neighbouring seeds or indexes do not give correlated streams
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0
  return mulberry32((h ^ (h >>> 16)) >>> 0)
}
