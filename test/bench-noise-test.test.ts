// bench:proxy's dashboard line says whether five dashboards change rps "beyond noise"
// (bench/lib/side-by-side.ts rpsNoiseTest): a permutation test of the A/B windows' rps ratios
// against the A/A control's, from the same sitting.
import { describe, expect, it } from 'vitest'
import { type PairResult, median, rpsNoiseTest } from '../bench/lib/side-by-side.ts'

const pair = (rpsWindows: number[]) => ({ rpsWindows, rpsRatio: median(rpsWindows) }) as PairResult

describe('rpsNoiseTest', () => {
  const aa = [0.97, 1.02, 0.99, 1.04, 0.96, 1.01, 1.0]

  it('calls windows drawn from the A/A spread within noise', () => {
    const t = rpsNoiseTest(pair([1.0, 0.98, 1.03, 0.97, 1.01, 0.99, 1.02]), pair(aa))
    expect(t.beyond).toBe(false)
    expect(t.p).toBeGreaterThan(0.3)
    expect(t.band).toEqual([0.96, 1.04])
  })

  it('calls a shift every A/B window shows beyond noise, though each lies in the A/A band', () => {
    const t = rpsNoiseTest(pair([0.96, 0.965, 0.97, 0.96, 0.975, 0.965, 0.97]), pair(aa))
    expect(t.beyond).toBe(true)
    expect(t.p).toBeLessThan(0.05)
  })

  it('is exact for 7 + 7 windows (every relabelling) and seeded past 20,000 of them: the same windows, the same p', () => {
    const many = (shift: number) => Array.from({ length: 15 }, (_, i) => 1 + shift + ((i * 7) % 5) / 100 - 0.02)
    const a = rpsNoiseTest(pair(many(-0.01)), pair(many(0)))
    const b = rpsNoiseTest(pair(many(-0.01)), pair(many(0)))
    expect(a.p).toBe(b.p)
    // 7 + 7: p is a count over C(14, 7) = 3,432 relabellings
    const t = rpsNoiseTest(pair([1.0, 0.98, 1.03, 0.97, 1.01, 0.99, 1.02]), pair(aa))
    expect(Number.isInteger(Math.round(t.p * 3432 * 1e6) / 1e6)).toBe(true)
  })
})
