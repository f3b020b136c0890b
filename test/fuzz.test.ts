// A short, fixed-seed run of the fuzzer (npm run fuzz runs minutes of it): the proxy in a child
// process, mutated bodies, paths and headers in the three protocols, streamed and not. Any crash,
// 5xx the upstream did not cause, answer outside the client's protocol, event-loop stall over
// 100 ms or memory growth beyond the bound fails it; the message lists every distinct failure
// with the line that replays it.
import { describe, expect, it } from 'vitest'
import { formatReport, isCounted, runFuzz } from './fuzz/fuzzer.ts'

// fixed: a failure here replays with `npm run fuzz -- --seed 11 --case N`
const SEED = 11

describe('fuzz (short run)', () => {
  it('survives 400 mutated requests with every oracle holding', async () => {
    // a minute at most: each new kind of stall is replayed on a fresh proxy (5-20 s here)
    const report = await runFuzz({ seed: SEED, cases: 400, minutes: 1 })
    // every kind counts, stalls on bodies of 1-10 MB too (reported only, until the large-body
    // work of issue 11: seed 11's longest block is now 44 ms of CPU on 3 MB, 55 on 148 KB)
    const failures = report.failures.filter(isCounted)
    expect(report.cases).toBeGreaterThan(100)
    // the kinds compared, the whole report (with reproductions) as the message
    expect(
      failures.map((f) => f.kind),
      formatReport(report),
    ).toEqual([])
  }, 180_000)
})
