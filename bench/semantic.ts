// Semantic cache benchmark: QQP precision/recall at the shipped defaults, then lookup latency
// and index memory at 10,000 and 100,000 entries in one partition (embedding excluded).
// With --paws, PAWS-Wiki dev through the HTTP path (shipped defaults; ~10 minutes here) and what
// judging costs per candidate.
//   node bin/run-ts.mjs bench/semantic.ts [--limit N] [--skip-qqp] [--skip-index] [--paws]
import { runIndexBench, runQqpBench } from './lib/semantic-bench.ts'
import { runJudgeCost, runPairsOverHttp, sharedPairs } from './lib/pairs-http.ts'

const args = process.argv.slice(2)
const limitAt = args.indexOf('--limit')
const limit = limitAt >= 0 ? Number(args[limitAt + 1]) : undefined
const f = (v: number, d = 3) => v.toFixed(d)

if (!args.includes('--skip-qqp')) {
  console.log('QQP dev pairs: store a, ask b, each pair in a scope of its own (USE-lite, shipped defaults)')
  const q = await runQqpBench({ limit, log: (l) => process.stderr.write(`  ${l}\r`) })
  console.log(`  pairs ${q.pairs} (${q.positives} same meaning, ${q.negatives} near misses)`)
  console.log(
    `  precision ${f(q.precision)}, recall ${f(q.recall)}: ${q.truePositives} true hits, ${q.falseHits} false hits`,
  )
  console.log(
    `  cosine alone at the same floor (${q.minSimilarity}): precision ${f(q.cosineOnlyPrecision)}, recall ${f(q.cosineOnlyRecall)}`,
  )
  console.log(`  judge ${q.judgeModel}, minScore ${q.minScore}; ${f(q.seconds, 1)} s`)
  console.log(
    `  target precision >= 0.90 with recall >= 0.30: ${q.precision >= 0.9 && q.recall >= 0.3 ? 'met' : 'NOT met'}`,
  )
}
if (args.includes('--paws')) {
  const pairs = sharedPairs('paws-wiki-dev.jsonl.gz').slice(0, limit)
  const p = await runPairsOverHttp(pairs, { lanes: 8, log: (l) => process.stderr.write(`  ${l}\r`) })
  console.log(
    `PAWS-Wiki dev over HTTP (shipped defaults; the reordering threshold was chosen on it): precision ${f(p.precision)}, recall ${f(p.recall)}: ${p.truePositives} true hits, ${p.falseHits} false hits of ${p.pairs} pairs; ${f(p.seconds, 0)} s`,
  )
  const c = await runJudgeCost(sharedPairs('qqp-dev-pairs.jsonl').slice(0, 300))
  console.log(
    `judging one candidate: ${f(c.withRolesUs / 1000)} ms (${f(c.withoutRolesUs / 1000)} ms without the reordering trees; alignment ${f(c.alignmentUs / 1000)} ms)`,
  )
}
if (!args.includes('--skip-index')) {
  console.log('Lookup in one partition (index search + reading and judging candidates; embedding excluded)')
  for (const entries of [10_000, 100_000]) {
    const r = await runIndexBench({ entries })
    console.log(
      `  ${entries.toLocaleString('en-US').padStart(7)} entries: hit p50 ${f(r.lookupHitP50Ms)} / p99 ${f(r.lookupHitP99Ms)} ms, miss p50 ${f(r.lookupMissP50Ms)} / p99 ${f(r.lookupMissP99Ms)} ms, ${f(r.bytesPerEntry, 0)} bytes per entry, hit queries found ${f(r.hitRate * 100, 1)}%`,
    )
  }
}
