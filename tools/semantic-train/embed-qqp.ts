// Embeds the QQP texts once with an embedder (default USE-lite) so train-judge.ts can read
// cosines without re-running the model. Resumable: re-running appends what is missing.
//   node bin/run-ts.mjs tools/semantic-train/embed-qqp.ts [--out DIR] [--limit PAIRS]
import { appendFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { useLiteEmbedder } from '../../plugins/semantic-cache/embedders.ts'
import { embeddingText } from '../../plugins/semantic-cache/text.ts'
import { defaultEmbeddingDir, readPairs, shuffled, TRAIN_FILE, DEV_FILE } from './data.ts'

const args = process.argv.slice(2)
const flag = (name: string) => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}
const out = flag('--out') ?? defaultEmbeddingDir()
const limit = Number(flag('--limit') ?? Infinity)
mkdirSync(out, { recursive: true })

const embedder = useLiteEmbedder()
// dev first (small, used for the report), then train pairs in a fixed shuffled order so a
// partial run still covers whole pairs
const pairs = [...readPairs(DEV_FILE), ...shuffled(readPairs(TRAIN_FILE), 1).slice(0, limit)]
const seen = new Set<string>()
const texts: string[] = []
for (const p of pairs)
  for (const t of [p.a, p.b]) {
    const e = embeddingText(t)
    if (!seen.has(e)) {
      seen.add(e)
      texts.push(e)
    }
  }
const textsFile = join(out, 'texts.jsonl')
const vecFile = join(out, `vectors-${embedder.dimension}.f32`)
let done = existsSync(textsFile) ? readFileSync(textsFile, 'utf8').split('\n').filter(Boolean).length : 0
if (existsSync(vecFile) && statSync(vecFile).size !== done * embedder.dimension * 4)
  throw new Error(`${vecFile} does not match ${textsFile}; delete both`)
console.log(`${texts.length} texts, ${done} already embedded, writing to ${out}`)
const t0 = performance.now()
const BATCH = 32
for (let i = done; i < texts.length; i += BATCH) {
  const chunk = texts.slice(i, i + BATCH)
  const vecs = await embedder.embed(chunk)
  const buf = new Float32Array(chunk.length * embedder.dimension)
  vecs.forEach((v, j) => buf.set(v, j * embedder.dimension))
  appendFileSync(vecFile, Buffer.from(buf.buffer))
  appendFileSync(textsFile, chunk.map((t) => JSON.stringify(t)).join('\n') + '\n')
  done += chunk.length
  if ((i / BATCH) % 50 === 0) console.log(`${done}/${texts.length} ${((performance.now() - t0) / 1000).toFixed(0)} s`)
}
console.log('done', done)
