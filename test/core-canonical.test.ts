// canonicalSha256 hashes the bytes of canonicalJson without building the whole string (issue 11:
// multi-megabyte prompts): both must agree on every value, or cache keys and audit hashes drift.
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { canonicalJson, canonicalSha256, canonicalSha256Async } from '../core/canonical.ts'
import { mulberry32, type Rng } from './fuzz/prng.ts'

const sha = (s: string) => createHash('sha256').update(s).digest('hex')

function randomValue(r: Rng, depth: number): unknown {
  const n = (k: number) => r.int(0, k - 1)
  const pick = n(depth > 3 ? 6 : 9)
  switch (pick) {
    case 0:
      return null
    case 1:
      return n(2) === 0
    case 2:
      return [0, -0, 1.5, 1e21, -7, NaN, Infinity][n(7)]
    case 3:
      return ['', 'a', 'é\n"\\', '\u2028', '\ud800', 'x'.repeat(70_000)][n(6)]
    case 4:
      return undefined
    case 5:
      return [() => 1, Symbol('s'), BigInt(12), new Date(0)][n(4)]
    case 6:
      return Array.from({ length: n(5) }, () => randomValue(r, depth + 1))
    default: {
      const o: Record<string, unknown> = {}
      for (let i = n(6); i > 0; i--) o[['b', 'a', 'é', 'A', '10', '9', 'z z'][n(7)]!] = randomValue(r, depth + 1)
      if (n(8) === 0) {
        const gone = n(2) === 0
        o.nested = { toJSON: () => (gone ? undefined : { y: 1, x: [undefined] }) }
      }
      return o
    }
  }
}

describe('canonicalSha256', () => {
  it('equals SHA-256 of canonicalJson on 2,000 random values (toJSON, undefined, large strings, key order)', () => {
    const r = mulberry32(20261205)
    for (let i = 0; i < 2000; i++) {
      const v = randomValue(r, 0)
      const expected = sha(canonicalJson(v))
      expect(canonicalSha256(v), canonicalJson(v).slice(0, 200)).toBe(expected)
      expect(canonicalSha256(v, 10)).toBe(expected)
    }
  })

  it('a prompt of several megabytes hashes to the same key', () => {
    const prompt = {
      model: 'm',
      messages: [
        { role: 'user', text: 'word '.repeat(1_500_000) },
        { role: 'assistant', text: 'ok' },
      ],
      system: 's'.repeat(100_000),
    }
    expect(canonicalSha256(prompt)).toBe(sha(canonicalJson(prompt)))
  })
})

describe('canonicalSha256Async', () => {
  it('gives the digest of canonicalSha256 for values of megabytes, surrogate pairs at slice edges included', async () => {
    // a pair straddles the 1 MB slice boundary at several offsets
    for (const pad of [0, 1, 2, 3]) {
      const text = 'a'.repeat(1024 * 1024 - 2 - pad) + '😀'.repeat(600_000) + '模'
      const value = { b: [1, 'x', { z: null, a: text }], a: text.slice(5, 2_000_000), n: -0 }
      const size = text.length * 2
      expect(await canonicalSha256Async(value, size)).toBe(canonicalSha256(value, size))
      expect(await canonicalSha256Async(value, size)).toBe(canonicalSha256(value))
    }
    expect(await canonicalSha256Async({ small: true }, 10)).toBe(canonicalSha256({ small: true }))
  })
})
