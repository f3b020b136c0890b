// The judgement on top of cosine, with the real USE-lite model: near misses that clear the
// similarity floor are refused for the reason that makes them different questions.
import { beforeAll, describe, expect, it } from 'vitest'
import { useLiteEmbedder } from '../plugins/semantic-cache/embedders.ts'
import { analyse, pairFeatures, stem } from '../plugins/semantic-cache/features.ts'
import { createJudge, judgeFile } from '../plugins/semantic-cache/judge.ts'
import { embeddingText } from '../plugins/semantic-cache/text.ts'
import { dequantise, quantise } from '../plugins/semantic-cache/vector-index.ts'
import { mlpPredict, unpack } from '../plugins/semantic-cache/mlp.ts'
import { mlpPredictPlain, mlpTrain } from '../tools/semantic-train/mlp-train.ts'

const embedder = useLiteEmbedder()
const judge = createJudge(embedder.id)

/** as the cache does it: a stored, asks b; vectors through the index's int8 form */
async function verdict(a: string, b: string) {
  const [va, vb] = (await embedder.embed([embeddingText(a), embeddingText(b)])).map((v) => dequantise(quantise(v).q))
  let cos = 0
  for (let i = 0; i < va!.length; i++) cos += va![i]! * vb![i]!
  return {
    cos,
    ...judge.judge(analyse(embeddingText(b), b), analyse(embeddingText(a), a), cos, { query: vb!, stored: va! }),
  }
}

beforeAll(async () => {
  await embedder.load()
})

describe('semantic judgement', () => {
  it('ships weights learned for USE-lite, with their provenance', () => {
    const f = judgeFile()
    expect(f.source).toMatch(/Quora Question Pairs/)
    expect(f.source).toMatch(/non-commercial/)
    expect(judge.modelName).toBe('use-lite-en@0.2.0')
    expect(judge.minScore).toBeGreaterThan(0)
    expect(judge.minScore).toBeLessThan(1)
  })

  const nearMisses: Array<[string, string, string]> = [
    ['How do I reverse a linked list in Java?', 'How do I reverse a linked list in Python?', 'language'],
    ['Summarise this article in 3 bullet points.', 'Summarise this article in 5 bullet points.', 'number'],
    ['Should black people adopt white children?', 'Should white people adopt black children?', 'swap'],
    ['Is it safe to drink tap water in Mexico?', 'Is it not safe to drink tap water in Mexico?', 'negation'],
    ['What is the best time to visit France?', 'What is the best time to visit Italy?', 'entity'],
    ['What is the best laptop for programming?', 'What is the worst laptop for programming?', 'opposite'],
  ]
  for (const [a, b, reason] of nearMisses) {
    it(`refuses "${b}" for "${a}" (${reason}) although cosine alone would accept it`, async () => {
      const v = await verdict(a, b)
      expect(v.cos).toBeGreaterThanOrEqual(judge.minSimilarity)
      expect(v.ok).toBe(false)
      expect(v.reason).toBe(reason)
    })
  }

  it('accepts paraphrases', async () => {
    for (const [a, b] of [
      ['How can I improve my English speaking skills?', 'How do I improve my English speaking skill?'],
      ['What are the best ways to lose weight?', 'What are the best ways for losing weight?'],
      ['What is the capital of France?', 'what is the capital of france'],
    ] as const) {
      const v = await verdict(a, b)
      expect(v, `${a} / ${b}`).toMatchObject({ ok: true })
    }
  })

  it('features are symmetric: storing a and asking b judges like the reverse', () => {
    const a = analyse('how do i learn python fast', 'How do I learn Python fast')
    const b = analyse('what is the quickest way to learn python', 'What is the quickest way to learn Python')
    expect(pairFeatures(a, b, 0.8).features).toEqual(pairFeatures(b, a, 0.8).features)
  })

  it('spots names from the original wording when the cache view is lowercased', () => {
    const lower = analyse('what is the capital of france')
    const hinted = analyse('what is the capital of france', 'What is the capital of France?')
    expect(lower.entities.has(stem('france'))).toBe(false)
    expect(hinted.entities.has(stem('france'))).toBe(true)
  })

  it('a projected network is symmetric, and reusing the query projection changes nothing', () => {
    // a tiny network on synthetic pairs: label 1 when the two vectors are close
    let seed = 7
    const rand = () => (seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5
    const unit = (v: Float32Array) => {
      let n = 0
      for (const x of v) n += x * x
      return v.map((x) => x / Math.sqrt(n))
    }
    const vec = () => unit(Float32Array.from({ length: 16 }, rand))
    const near = (v: Float32Array) => unit(v.map((x) => x + rand() * 0.1))
    const samples = Array.from({ length: 200 }, (_, i) => {
      const u = vec()
      const same = i % 2 === 0
      return { u, v: same ? near(u) : vec(), f: [rand(), rand()], y: same ? 1 : 0, w: 1 }
    })
    const model = mlpTrain(samples.slice(0, 160), samples.slice(160), { hidden: 8, epochs: 3, proj: 4 })
    expect(model.proj).toBe(4)
    const rt = unpack(model)
    const [a, b, c] = [samples[0]!, samples[1]!, samples[2]!]
    expect(mlpPredict(rt, a.u, b.v, a.f)).toBeCloseTo(mlpPredict(unpack(model), b.v, a.u, a.f), 12)
    // same query object against two candidates, then a fresh runtime that has no cached projection
    mlpPredict(rt, a.u, b.v, a.f)
    const reused = mlpPredict(rt, a.u, c.v, a.f)
    expect(reused).toBeCloseTo(mlpPredict(unpack(model), a.u, c.v, a.f), 12)
    // a different query object is projected anew
    expect(mlpPredict(rt, b.u, c.v, a.f)).toBeCloseTo(mlpPredict(unpack(model), b.u, c.v, a.f), 12)
  })

  it('the inference kernels give what the training loops give (odd sizes, and the shipped networks)', () => {
    let seed = 11
    const rand = () => (seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5
    const unit = (v: Float32Array) => {
      let n = 0
      for (const x of v) n += x * x
      return v.map((x) => x / Math.sqrt(n))
    }
    // hidden 6 and proj 5 leave remainders after the kernels' four-at-a-time passes
    const samples = Array.from({ length: 120 }, (_, i) => ({
      u: unit(Float32Array.from({ length: 10 }, rand)),
      v: unit(Float32Array.from({ length: 10 }, rand)),
      f: [rand(), rand(), rand()],
      y: i % 2,
      w: 1,
    }))
    const odd = mlpTrain(samples.slice(0, 100), samples.slice(100), { hidden: 6, epochs: 2, proj: 5 })
    const shipped = (judgeFile().models['use-lite-en@0.2.0'] as { members: Parameters<typeof unpack>[0][] }).members
    for (const model of [
      odd,
      mlpTrain(samples.slice(0, 100), samples.slice(100), { hidden: 7, epochs: 2 }),
      ...shipped.slice(0, 2),
    ]) {
      const rt = unpack(model)
      const dim = model.dim,
        nf = model.mean.length
      for (let t = 0; t < 5; t++) {
        const u = unit(Float32Array.from({ length: dim }, rand)),
          v = unit(Float32Array.from({ length: dim }, rand))
        const f = Array.from({ length: nf }, () => rand() * 4)
        const fast = mlpPredict(rt, u, v, f)
        expect(fast).toBeGreaterThan(0)
        expect(Math.abs(fast - mlpPredictPlain(rt, u, v, f))).toBeLessThan(1e-12)
      }
    }
  })

  it('refusing before every network has run gives the verdict of the full average', async () => {
    const model = judgeFile().models['use-lite-en@0.2.0'] as { members: Parameters<typeof unpack>[0][] }
    const nets = model.members.map(unpack)
    const pairs = [
      ['How do I learn to play the guitar quickly?', 'How can I learn to play guitar quickly?'],
      ['How do I make a cup of tea?', 'How do I make a cup of coffee?'],
      ['What is the best way to learn machine learning?', 'What is the best way to learn deep learning?'],
      ['What is the boiling point of water at sea level?', 'At sea level, what temperature does water boil at?'],
      ['Why is the sky blue?', 'Why is the ocean blue?'],
      ['What are the best ways to lose weight?', 'What are the best ways for losing weight?'],
    ]
    let refusedEarly = 0
    for (const [a, b] of pairs) {
      const [va, vb] = (await embedder.embed([embeddingText(a!), embeddingText(b!)])).map((v) =>
        dequantise(quantise(v).q),
      )
      let cos = 0
      for (let i = 0; i < va!.length; i++) cos += va![i]! * vb![i]!
      const qa = analyse(embeddingText(b!), b),
        sa = analyse(embeddingText(a!), a)
      const v = judge.judge(qa, sa, cos, { query: vb!, stored: va! })
      if (v.reason === 'similarity' || (v.reason && v.reason !== 'score')) continue
      const features = pairFeatures(qa, sa, cos).features
      const full = nets.reduce((s, n) => s + mlpPredict(n, vb!, va!, features), 0) / nets.length
      expect(v.ok, `${a} / ${b}`).toBe(full >= judge.minScore)
      if (v.ok) expect(v.score).toBeCloseTo(full, 9)
      else if (v.score < full - 1e-9) refusedEarly++
    }
    expect(refusedEarly).toBeGreaterThan(0)
  })
})
