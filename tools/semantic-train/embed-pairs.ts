// Embeds the texts of any labelled pair file ({a, b, label} JSONL, gzipped or not) once, so the
// trainer can score pairs with the networks without re-running the model (PAWS-Wiki here).
// Resumable: re-running appends what is missing.
//   node bin/run-ts.mjs tools/semantic-train/embed-pairs.ts FILE... [--out DIR]
import { appendFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { useLiteInThread } from '../../plugins/semantic-cache/embedders.ts'
import { embeddingText } from '../../plugins/semantic-cache/text.ts'
import { readPairs } from './data.ts'

const args = process.argv.slice(2)
const at = args.indexOf('--out')
const out = at >= 0 ? args[at + 1]! : join(process.env.TMPDIR ?? '/tmp', 'agentmesh-paws-embeddings')
const files = args.filter((a, i) => /\.jsonl(\.gz)?$/.test(a) && (at < 0 || i !== at + 1))
mkdirSync(out, { recursive: true })

const embedder = useLiteInThread()
const textsFile = join(out, 'texts.jsonl')
const vecFile = join(out, `vectors-${embedder.dimension}.f32`)
const have = new Set(
  existsSync(textsFile)
    ? readFileSync(textsFile, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as string)
    : [],
)
if (existsSync(vecFile) && statSync(vecFile).size !== have.size * embedder.dimension * 4)
  throw new Error(`${vecFile} does not match ${textsFile}; delete both`)
const todo: string[] = []
for (const f of files)
  for (const p of readPairs(f))
    for (const t of [p.a, p.b]) {
      const e = embeddingText(t)
      if (!have.has(e)) {
        have.add(e)
        todo.push(e)
      }
    }
console.log(`${todo.length} texts to embed into ${out}`)
const t0 = performance.now()
for (let i = 0; i < todo.length; i += 32) {
  const chunk = todo.slice(i, i + 32)
  const vecs = await embedder.embed(chunk)
  const buf = new Float32Array(chunk.length * embedder.dimension)
  vecs.forEach((v, j) => buf.set(v, j * embedder.dimension))
  appendFileSync(vecFile, Buffer.from(buf.buffer))
  appendFileSync(textsFile, chunk.map((t) => JSON.stringify(t)).join('\n') + '\n')
  if ((i / 32) % 50 === 0)
    console.log(`${i + chunk.length}/${todo.length} ${((performance.now() - t0) / 1000).toFixed(0)} s`)
}
console.log('done')
process.exit(0)
