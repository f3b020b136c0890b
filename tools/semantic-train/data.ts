// Reading the labelled QQP pairs (see ../../../shared/data/README.md) for training and measuring.
import { readFileSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export interface Pair {
  a: string
  b: string
  label: number
}

const here = dirname(fileURLToPath(import.meta.url))
/** shared/ sits beside the repo (../shared from the repo root); AGENTMESH_SHARED_DATA overrides */
export const DATA_DIR = process.env.AGENTMESH_SHARED_DATA ?? resolve(here, '../../../shared/data')
export const TRAIN_FILE = join(DATA_DIR, 'qqp-train-pairs.jsonl.gz')
export const DEV_FILE = join(DATA_DIR, 'qqp-dev-pairs.jsonl')

export function readPairs(file: string): Pair[] {
  let raw = readFileSync(file)
  if (file.endsWith('.gz')) raw = gunzipSync(raw)
  return raw
    .toString('utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Pair)
}

export function defaultEmbeddingDir(): string {
  return process.env.AGENTMESH_QQP_EMBEDDINGS ?? join(tmpdir(), 'agentmesh-qqp-embeddings')
}

import { rng } from '../../plugins/semantic-cache/random.ts'
export { rng }

export function shuffled<T>(xs: T[], seed: number): T[] {
  const r = rng(seed)
  const out = xs.slice()
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}
