// Word order and roles (issue 14): the same words in another order that gives them other roles
// is another question and must miss; a clause, a date or list items moved keep their hit. The
// alignment on its own, then the shipped judge with the real USE-lite model, then a real proxy.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAgentMesh } from '../core/index.ts'
import type { MeshEvent } from '../core/types.ts'
import { useLiteEmbedder } from '../plugins/semantic-cache/embedders.ts'
import { analyse } from '../plugins/semantic-cache/features.ts'
import { createJudge, judgeFile, ROLE_REASONS } from '../plugins/semantic-cache/judge.ts'
import { roleFeatures } from '../plugins/semantic-cache/roles.ts'
import { embeddingText } from '../plugins/semantic-cache/text.ts'
import { dequantise, quantise } from '../plugins/semantic-cache/vector-index.ts'
import { semanticCache } from '../plugins/semantic-cache/index.ts'
import { normalise } from '../plugins/normalise/index.ts'
import { demo } from '../plugins/vendors/demo.ts'

const info = (t: string) => analyse(embeddingText(t), t)

// a query and a stored prompt with the same words, whose order gives them other roles
const SWAPS: Array<[string, string]> = [
  ['How much are flights from Paris to Rome in May?', 'How much are flights from Rome to Paris in May?'],
  ['Does Alice owe Bob money?', 'Does Bob owe Alice money?'],
  ['How do I convert Celsius to Fahrenheit?', 'How do I convert Fahrenheit to Celsius?'],
  ['How do I merge branch main into feature?', 'How do I merge branch feature into main?'],
  ['Is Java faster than Python?', 'Is Python faster than Java?'],
  ['Should I run the tests before the deploy?', 'Should I run the deploy before the tests?'],
  ['Do dogs chase cats?', 'Do cats chase dogs?'],
  [
    'What is the hyperbolic curve with an unmarked straight edge?',
    'What is the unmarked straight curve with a hyperbolic edge?',
  ],
]
// the same request reordered: a clause or a date moved, list items reordered, a symmetric relation
const BENIGN: Array<[string, string]> = [
  ['In 1990 he moved to Paris. Why did he leave London?', 'He moved to Paris in 1990. Why did he leave London?'],
  ['What should I buy: apples, pears and plums?', 'What should I buy: plums, pears and apples?'],
  ['What is the difference between Java and Python?', 'What is the difference between Python and Java?'],
  [
    'What are the best books on machine learning for beginners?',
    'For beginners, what are the best books on machine learning?',
  ],
  ['Why is the sky blue during the day?', 'During the day, why is the sky blue?'],
]

describe('role alignment (roles.ts)', () => {
  it('finds the exchanged arguments of a directed relation and of a verb, in both directions', () => {
    for (const [a, b] of SWAPS.slice(0, 7)) {
      expect(roleFeatures(info(a), info(b)).swapped, `${a} / ${b}`).toBe(true)
      expect(roleFeatures(info(b), info(a)).swapped, `${b} / ${a}`).toBe(true)
    }
  })

  it('does not call a moved clause, a moved date, a reordered list or a symmetric relation a swap', () => {
    for (const [a, b] of BENIGN) expect(roleFeatures(info(a), info(b)).swapped, `${a} / ${b}`).toBe(false)
    const list = roleFeatures(info('Buy apples, pears and plums'), info('Buy plums, pears and apples'))
    expect(list.listOnly).toBe(true)
    // a transposition that is not between list items is not a list reorder
    expect(
      roleFeatures(info('Should black people adopt white children?'), info('Should white people adopt black children?'))
        .listOnly,
    ).toBe(false)
  })

  it('is symmetric and says nothing about prompts in the same order', () => {
    const a = info('How do I deploy a Flask app to Heroku?'),
      b = info('How can I deploy my Flask app to Heroku?')
    const x = roleFeatures(a, b),
      y = roleFeatures(b, a)
    expect(x.features).toEqual(y.features)
    expect(x.sameOrder).toBe(true)
    expect(roleFeatures(info(SWAPS[0]![0]), info(SWAPS[0]![1])).sameOrder).toBe(false)
  })
})

describe('the shipped judge on reorderings (USE-lite)', () => {
  const embedder = useLiteEmbedder()
  const judge = createJudge(embedder.id)
  beforeAll(async () => {
    await embedder.load()
  })
  afterAll(async () => {
    await embedder.close?.()
  })

  async function verdict(stored: string, query: string) {
    const [vs, vq] = (await embedder.embed([embeddingText(stored), embeddingText(query)])).map((v) =>
      dequantise(quantise(v).q),
    )
    let cos = 0
    for (let i = 0; i < vs!.length; i++) cos += vs![i]! * vq![i]!
    return { cos, ...judge.judge(info(query), info(stored), cos, { query: vq!, stored: vs! }) }
  }

  it('ships the reordering judge with its provenance: Google (PAWS-Wiki)', () => {
    const f = judgeFile()
    expect(f.roles?.source).toMatch(/PAWS-Wiki/)
    expect(f.roles?.source).toMatch(/Google/)
    expect(f.source).toMatch(/Google/)
    expect(f.roles!.minScore).toBeGreaterThan(0)
    expect(f.roles!.minScore).toBeLessThan(1)
  })

  for (const [a, b] of SWAPS) {
    it(`refuses "${b}" for "${a}" for its roles, although cosine alone would serve it`, async () => {
      const v = await verdict(a, b)
      expect(v.cos).toBeGreaterThanOrEqual(judge.minSimilarity)
      expect(v.ok).toBe(false)
      expect(ROLE_REASONS.has(v.reason!), `reason ${v.reason}`).toBe(true)
    })
  }

  for (const [a, b] of BENIGN) {
    it(`keeps the hit for "${b}" against "${a}"`, async () => {
      const v = await verdict(a, b)
      expect(v.ok, `score ${v.score} reason ${v.reason}`).toBe(true)
    })
  }
})

describe('roles over HTTP', () => {
  it('a swapped request misses with cache_miss reason "roles differ"; a moved clause is a semantic hit', async () => {
    const plugin = semanticCache()
    const app = await createAgentMesh({
      preset: 'demo',
      disable: ['exact-cache', 'quota', 'audit'],
      storage: { driver: 'memory' },
      plugins: [normalise(), plugin, demo({ latencyMs: 0, chunkDelayMs: 0 })],
    })
    const events: MeshEvent[] = []
    app.mesh.on((e) => {
      events.push(e)
    })
    const server = await app.listen({ port: 0, host: '127.0.0.1' })
    const ask = async (content: string) => {
      const res = await fetch(`${server.url}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-agentmesh-team': 'eng', 'x-agentmesh-user': 'alice' },
        body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 256, messages: [{ role: 'user', content }] }),
      })
      await res.arrayBuffer()
      await plugin.semantic.flush()
      return res.headers.get('x-agentmesh-cache')
    }
    try {
      // (without an exact cache in front, a miss is reported as 'bypass')
      expect(await ask(SWAPS[0]![0])).not.toBe('semantic')
      expect(await ask(SWAPS[0]![1])).not.toBe('semantic')
      const miss = events
        .filter((e) => e.type === 'cache_miss')
        .map((e) => e.data as { kind?: string; reason?: string; similarity?: number })
      expect(miss.at(-1)).toMatchObject({ kind: 'semantic', reason: 'roles differ' })
      expect(miss.at(-1)!.similarity).toBeGreaterThan(0.9)
      expect(await ask(BENIGN[0]![0])).not.toBe('semantic')
      expect(await ask(BENIGN[0]![1])).toBe('semantic')
    } finally {
      await server.close()
      await app.close()
    }
  })
})
