// npm run fuzz -- [--seed N] [--cases M] [--minutes T] [--case I] [--semantic] [--dump DIR] [--snapshots DIR] [--json FILE]
// Bounded, seeded: the same seed runs the same cases. Exit 1 when any failure was found.
import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { formatReport, isCounted, runFuzz } from './fuzzer.ts'

const { values } = parseArgs({
  args: process.argv.slice(3),
  options: {
    seed: { type: 'string' },
    cases: { type: 'string' },
    minutes: { type: 'string' },
    case: { type: 'string' },
    semantic: { type: 'boolean' },
    dump: { type: 'string' },
    snapshots: { type: 'string' },
    json: { type: 'string' },
    'stall-ms': { type: 'string' },
    'heap-bound-mb': { type: 'string' },
    'rss-bound-mb': { type: 'string' },
    quiet: { type: 'boolean' },
  },
})

const num = (v: string | undefined, name: string): number | undefined => {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isFinite(n) || n < 0) {
    console.error(`fuzz: --${name} must be a non-negative number, got "${v}"`)
    process.exit(2)
  }
  return n
}

// a fresh seed unless one is given: printed first, so any run can be replayed
const seed = num(values.seed, 'seed') ?? Math.floor(Math.random() * 2 ** 31)
const only = num(values.case, 'case')
const minutes = num(values.minutes, 'minutes') ?? (values.cases || only !== undefined ? undefined : 3)
console.log(
  `fuzz: seed ${seed}${only !== undefined ? `, case ${only}` : ''}${minutes ? `, up to ${minutes} min` : ''}${values.cases ? `, up to ${values.cases} cases` : ''}`,
)
const report = await runFuzz({
  seed,
  cases: num(values.cases, 'cases'),
  minutes,
  only,
  semantic: values.semantic,
  dump: values.dump,
  snapshots: values.snapshots,
  stallMs: num(values['stall-ms'], 'stall-ms'),
  heapBoundMb: num(values['heap-bound-mb'], 'heap-bound-mb'),
  rssBoundMb: num(values['rss-bound-mb'], 'rss-bound-mb'),
  progress: values.quiet ? undefined : (l) => console.log(`  ${l}`),
})
console.log(formatReport(report))
if (values.json) writeFileSync(values.json, JSON.stringify(report, null, 2))
process.exit(report.failures.some(isCounted) ? 1 : 0)
