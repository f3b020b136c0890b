// canonicalSha256Async hashes a value of megabytes in slices of the event loop (its walk, the
// escaping of its large strings and the hashing all pause): it must give the digest of
// canonicalJson exactly, for every value, or exact-cache keys would change with the body's size.
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { canonicalJson, canonicalSha256, canonicalSha256Async } from '../core/canonical.ts'
import { longestBlock } from './helpers/longest-block.ts'

const sha = (s: string) => createHash('sha256').update(s).digest('hex')
// sizeHint past the threshold: the sliced path, whatever the value's real size
const SLICED = 2 ** 30

let seed = 1234
const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n
const CHARS = ['a', 'é', '\u{1F600}', '"', '\\', '\n', '\u0000', '\u2028', '\ud800', '\udc00', 'z', ' ']
const str = (n: number) => Array.from({ length: n }, () => CHARS[rnd(CHARS.length)]).join('')

function value(d: number): unknown {
  const k = rnd(d > 4 ? 6 : 10)
  if (k === 0) return str(rnd(30))
  if (k === 1) return [0, -0, 1e21, 1.5e-7, -3, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53][rnd(8)]
  if (k === 2) return [true, false, null][rnd(3)]
  if (k === 3) return [undefined, () => 1, Symbol('s'), 12n][rnd(4)]
  if (k === 4) {
    // toJSON gives the same each time it is called
    const to = rnd(2) ? value(d + 1) : undefined
    return { toJSON: () => to }
  }
  if (k === 5) return new Date(rnd(1e12))
  if (k < 8) return Array.from({ length: rnd(5) }, () => value(d + 1))
  const o: Record<string, unknown> = {}
  for (let i = 0; i < rnd(6); i++) o[[`k${rnd(100)}`, str(2), '10', '2', '__x', 'é'][rnd(6)]!] = value(d + 1)
  return o
}

describe('canonicalSha256Async', () => {
  it('gives canonicalSha256 for 2,000 random values, slices of 0 ms (a pause at every check)', async () => {
    for (let i = 0; i < 2000; i++) {
      const v = value(0)
      const want = sha(canonicalJson(v))
      expect(canonicalSha256(v)).toBe(want)
      expect(await canonicalSha256Async(v, SLICED, 0), canonicalJson(v).slice(0, 80)).toBe(want)
    }
  })

  it('escapes a string of megabytes piece by piece as JSON.stringify does, pairs and lone surrogates included', async () => {
    const MB = 1024 * 1024
    // a pair across the 1 MB piece boundary, a lone high surrogate at it, a lone low one after it
    for (const around of ['\u{1F600}', '\ud800x', 'x\udc00', '\ud800\ud800', '"\\', '\u0001']) {
      for (const shift of [-1, 0, 1]) {
        const s = 'a'.repeat(MB + shift) + around + 'b'.repeat(MB / 2) + around
        for (const v of [s, { a: s, b: [1, s] }]) {
          expect(await canonicalSha256Async(v, SLICED)).toBe(sha(canonicalJson(v)))
        }
      }
    }
  })

  it('hashes a prompt of 70,000 turns (10 MB) giving the event loop back, with the digest of the one-go hash', async () => {
    const messages = Array.from({ length: 70_000 }, (_, i) => [i % 2 ? 'assistant' : 'user', str(120), null])
    const v = { v: 1, model: 'm', messages, params: { temperature: 0.5 }, scope: 'global' }
    let turns = 0
    const tick = setInterval(() => turns++, 0)
    let got: string
    try {
      got = await canonicalSha256Async(v, 10_000_000)
    } finally {
      clearInterval(tick)
    }
    expect(got).toBe(canonicalSha256(v, 10_000_000))
    expect(got).toBe(sha(canonicalJson(v)))
    expect(turns).toBeGreaterThan(2)
  })
  it('escapes 3 million characters of lone surrogates in short blocks (npm run fuzz, seed 1992691901 case 3470: 1 M characters at a time held the loop ~80 ms each)', async () => {
    const v = { type: 'image', source: { data: 'a\ud800 '.repeat(1_000_000) } }
    const { value, maxMs } = await longestBlock(() => canonicalSha256Async(v, 10_000_000))
    expect(value).toBe(canonicalSha256(v, 10_000_000))
    // 12-20 ms here; 1 M characters at a time: 60-90
    expect(maxMs).toBeLessThan(45)
  })
})
