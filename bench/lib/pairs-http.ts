// Labelled pairs through the real HTTP path at the shipped defaults: a listening proxy with the
// default cache plugins (normalise, exact, semantic) and the demo vendor; each pair in a namespace
// of its own (X-AgentMesh-Cache-Namespace); `a` is sent and stored, then `b` is sent, and a hit
// (X-AgentMesh-Cache exact or semantic) on a label-1 pair is a true hit, on a label-0 pair a wrong
// answer served. Also what judging costs per candidate.
import { existsSync, readFileSync } from 'node:fs'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gunzipSync } from 'node:zlib'
import { Agent, request } from 'undici'
import { createAgentMesh } from '../../core/index.ts'
import { exactCache } from '../../plugins/exact-cache/index.ts'
import { normalise } from '../../plugins/normalise/index.ts'
import { analyse } from '../../plugins/semantic-cache/features.ts'
import { createJudge } from '../../plugins/semantic-cache/judge.ts'
import { semanticCache, useLiteEmbedder } from '../../plugins/semantic-cache/index.ts'
import { embeddingText } from '../../plugins/semantic-cache/text.ts'
import { dequantise, quantise } from '../../plugins/semantic-cache/vector-index.ts'
import { demo } from '../../plugins/vendors/demo.ts'

const here = dirname(fileURLToPath(import.meta.url))

export interface Pair {
  a: string
  b: string
  label: number
}

/** a file of ../shared/data (AGENTMESH_SHARED_DATA overrides), gzipped or not */
export function sharedPairs(name: string): Pair[] {
  const dirs = [process.env.AGENTMESH_SHARED_DATA, resolve(here, '../../../shared/data'), '/work/shared/data'].filter(
    Boolean,
  ) as string[]
  const dir = dirs.find((d) => existsSync(join(d, name)))
  if (!dir) throw new Error(`${name} not found (looked in ../shared/data; set AGENTMESH_SHARED_DATA)`)
  let raw = readFileSync(join(dir, name))
  if (name.endsWith('.gz')) raw = gunzipSync(raw)
  return raw
    .toString('utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Pair)
}

export interface HttpPairsResult {
  pairs: number
  positives: number
  truePositives: number
  falseHits: number
  precision: number
  recall: number
  seconds: number
}

/** the pairs through a fresh proxy; `lanes` pairs at a time (each lane: a, wait for the store, b) */
export async function runPairsOverHttp(
  pairs: Pair[],
  opts: { lanes?: number; log?: (l: string) => void } = {},
): Promise<HttpPairsResult> {
  const t0 = performance.now()
  // the judgement at its shipped defaults; the lookup timeout raised, so that a loaded machine
  // (2 cores shared here) measures the judge and not the embedding queue (a timed-out lookup is a miss)
  const semantic = semanticCache({ lookupTimeoutMs: 60_000 })
  const dataDir = mkdtempSync(join(tmpdir(), 'agentmesh-bench-pairs-'))
  // keys, quota and audit have their own benchmarks; the cache plugins are the shipped defaults
  const app = await createAgentMesh({
    preset: 'demo',
    dataDir,
    disable: ['keys', 'quota', 'audit'],
    log: { level: 'warn' },
    plugins: [normalise(), exactCache(), semantic, demo({ latencyMs: 0, chunkDelayMs: 0 })],
  })
  const server = await app.listen({ port: 0, host: '127.0.0.1' })
  const agent = new Agent({ keepAliveTimeout: 60_000, connections: 8 })
  const send = async (i: number, prompt: string) => {
    const res = await request(`${server.url}/v1/messages`, {
      method: 'POST',
      dispatcher: agent,
      headers: {
        'content-type': 'application/json',
        'anthropic-version': '2023-06-01',
        'x-agentmesh-team': 'bench',
        'x-agentmesh-user': 'pairs',
        'x-agentmesh-cache-namespace': `pair-${i}`,
      },
      body: JSON.stringify({
        model: 'claude-haiku-4-5',
        max_tokens: 256,
        messages: [{ role: 'user', content: prompt }],
      }),
    })
    await res.body.arrayBuffer()
    if (res.statusCode !== 200) throw new Error(`pair ${i} answered ${res.statusCode}`)
    return String(res.headers['x-agentmesh-cache'] ?? '')
  }
  let tp = 0,
    fp = 0,
    next = 0,
    done = 0
  const lane = async () => {
    for (let i = next++; i < pairs.length; i = next++) {
      const p = pairs[i]!
      await send(i, p.a)
      // the store is off the response path: wait for it, as a client's think time would
      await semantic.semantic.flush()
      const cache = await send(i, p.b)
      if (cache === 'semantic' || cache === 'exact') p.label ? tp++ : fp++
      if (++done % 500 === 0) opts.log?.(`${done}/${pairs.length}`)
    }
  }
  try {
    await Promise.all(Array.from({ length: opts.lanes ?? 4 }, lane))
  } finally {
    await agent.close()
    await server.close()
    await app.close()
    rmSync(dataDir, { recursive: true, force: true })
  }
  const positives = pairs.filter((p) => p.label === 1).length
  return {
    pairs: pairs.length,
    positives,
    truePositives: tp,
    falseHits: fp,
    precision: tp + fp ? tp / (tp + fp) : 1,
    recall: positives ? tp / positives : 0,
    seconds: (performance.now() - t0) / 1000,
  }
}

export interface JudgeCost {
  candidates: number
  withRolesUs: number
  withoutRolesUs: number
  alignmentUs: number
}

/**
 * Mean time to judge one candidate (features, role alignment, trees, networks) at the shipped
 * defaults, against the same judge without the reordering trees; over `pairs` embedded once.
 */
export async function runJudgeCost(pairs: Pair[], rounds = 20): Promise<JudgeCost> {
  const embedder = useLiteEmbedder()
  const vecs = (await embedder.embed(pairs.flatMap((p) => [embeddingText(p.a), embeddingText(p.b)]))).map((v) =>
    dequantise(quantise(v).q),
  )
  await embedder.close?.()
  const items = pairs.map((p, i) => {
    const u = vecs[2 * i]!,
      v = vecs[2 * i + 1]!
    let cos = 0
    for (let k = 0; k < u.length; k++) cos += u[k]! * v[k]!
    return {
      q: analyse(embeddingText(p.b), p.b),
      s: analyse(embeddingText(p.a), p.a),
      cos,
      vectors: { query: v, stored: u },
    }
  })
  const time = (judge: ReturnType<typeof createJudge>) => {
    for (const x of items) judge.judge(x.q, x.s, Math.max(x.cos, judge.minSimilarity), x.vectors)
    const t = performance.now()
    for (let r = 0; r < rounds; r++)
      for (const x of items) judge.judge(x.q, x.s, Math.max(x.cos, judge.minSimilarity), x.vectors)
    return ((performance.now() - t) * 1000) / (rounds * items.length)
  }
  const { roleFeatures } = await import('../../plugins/semantic-cache/roles.ts')
  const t = performance.now()
  for (let r = 0; r < rounds; r++) for (const x of items) roleFeatures(x.q, x.s)
  const alignmentUs = ((performance.now() - t) * 1000) / (rounds * items.length)
  // every candidate is judged in full (cosine lifted to the floor), as candidates in a lookup are
  return {
    candidates: items.length,
    withRolesUs: time(createJudge(embedder.id)),
    withoutRolesUs: time(createJudge(embedder.id, { rolesModel: null })),
    alignmentUs,
  }
}
