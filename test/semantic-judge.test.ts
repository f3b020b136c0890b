// The judgement on top of cosine, with the real USE-lite model: near misses that clear the
// similarity floor are refused for the reason that makes them different questions.
import { beforeAll, describe, expect, it } from 'vitest'
import { useLiteEmbedder } from '../plugins/semantic-cache/embedders.ts'
import { analyse, pairFeatures, stem } from '../plugins/semantic-cache/features.ts'
import { createJudge, judgeFile } from '../plugins/semantic-cache/judge.ts'
import { embeddingText } from '../plugins/semantic-cache/text.ts'
import { dequantise, quantise } from '../plugins/semantic-cache/vector-index.ts'

const embedder = useLiteEmbedder()
const judge = createJudge(embedder.id)

/** as the cache does it: a stored, asks b; vectors through the index's int8 form */
async function verdict(a: string, b: string) {
  const [va, vb] = (await embedder.embed([embeddingText(a), embeddingText(b)])).map((v) => dequantise(quantise(v).q))
  let cos = 0
  for (let i = 0; i < va!.length; i++) cos += va![i]! * vb![i]!
  return { cos, ...judge.judge(analyse(embeddingText(b), b), analyse(embeddingText(a), a), cos, { query: vb!, stored: va! }) }
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
})
