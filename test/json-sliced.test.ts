// The sliced JSON.stringify (core/json-sliced.ts) against JSON.stringify itself, byte for byte, on
// random values: unicode, lone surrogates, control characters, numbers JSON writes specially,
// members JSON.stringify drops, toJSON, nesting, strings longer than a piece with a surrogate pair
// across every place a run could be cut.
import { describe, expect, it } from 'vitest'
import { PIECE_CHARS, cutString, stringifySliced, utf8Sliced } from '../core/json-sliced.ts'
import { Slicer } from '../core/slicer.ts'
import { mulberry32 } from './fuzz/prng.ts'

/** the fuzzer's seeded generator (mulberry32), as a function of floats in [0, 1) */
const prng = (seed: number) => mulberry32(seed).next

const CHARS = [
  'a',
  'Z',
  ' ',
  '"',
  '\\',
  '/',
  '\n',
  '\u0000',
  '\u001f',
  '\u007f',
  'é',
  '€',
  '模',
  '😀',
  '\ud800',
  '\udfff',
  '\u2028',
]
const NUMBERS = [
  0,
  -0,
  1,
  -1,
  1.5,
  1e21,
  1e-7,
  -1e21,
  123456789012345680000,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  2 ** 53 + 2,
]

function randomString(rnd: () => number, max: number): string {
  let s = ''
  const n = Math.floor(rnd() * max)
  for (let i = 0; i < n; i++) s += CHARS[Math.floor(rnd() * CHARS.length)]
  return s
}

function randomValue(rnd: () => number, depth: number): unknown {
  const x = rnd()
  if (depth <= 0 || x < 0.45) {
    const y = rnd()
    if (y < 0.35) return randomString(rnd, 40)
    if (y < 0.6) return NUMBERS[Math.floor(rnd() * NUMBERS.length)]
    if (y < 0.7) return rnd() < 0.5
    if (y < 0.78) return null
    if (y < 0.84) return undefined
    if (y < 0.87) return () => 1
    if (y < 0.9) return Symbol('s')
    if (y < 0.93) return new Date(Math.floor(rnd() * 2e12))
    if (y < 0.95) return { toJSON: (key: string) => (key.length % 2 ? undefined : `k=${key}`) }
    if (y < 0.97) return new String('boxed')
    return randomString(rnd, 3000)
  }
  const n = Math.floor(rnd() * (depth > 3 ? 60 : 10))
  if (x < 0.7) return Array.from({ length: n }, () => randomValue(rnd, depth - 1))
  const o: Record<string, unknown> = {}
  for (let i = 0; i < n; i++) {
    const k =
      rnd() < 0.1 ? ['__proto__', '', '0', '10', 'a"b', '😀', '\ud800'][Math.floor(rnd() * 7)]! : randomString(rnd, 8)
    // an own property whatever its name, as JSON.parse makes it (`__proto__` included)
    Object.defineProperty(o, k, {
      value: randomValue(rnd, depth - 1),
      enumerable: true,
      writable: true,
      configurable: true,
    })
  }
  return o
}

/** every run cut with a slice of 0 ms: the loop is given back as often as the walk allows */
const eager = () => new Slicer(0)

async function same(v: unknown): Promise<void> {
  let whole: string | undefined
  try {
    whole = JSON.stringify(v)
  } catch (err) {
    await expect(stringifySliced(v, eager())).rejects.toThrow((err as Error).message)
    return
  }
  const pieces = await stringifySliced(v, eager())
  if (whole === undefined) expect(pieces).toBeUndefined()
  else {
    expect(pieces!.join('')).toBe(whole)
    // the bytes too: no piece ends in the first half of a surrogate pair
    expect(Buffer.concat(await utf8Sliced(pieces!, eager())).equals(Buffer.from(whole))).toBe(true)
  }
}

describe('stringifySliced', () => {
  it('gives what JSON.stringify gives on 300 random values', async () => {
    const rnd = prng(11)
    for (let i = 0; i < 300; i++) await same(randomValue(rnd, 4))
  })

  it('on scalars and edge values', async () => {
    for (const v of [
      ...NUMBERS,
      '',
      'x',
      '\ud800',
      null,
      true,
      undefined,
      () => 1,
      Symbol('x'),
      [],
      {},
      [undefined, () => 1, Symbol('y')],
      { a: undefined, b: () => 1 },
      new Date(0),
      Object.create(null),
      [[[]]],
      { a: { b: { c: {} } } },
    ])
      await same(v)
  })

  it('on large bodies: tens of thousands of messages, and strings longer than a piece cut inside a pair', async () => {
    const rnd = prng(5)
    const messages = Array.from({ length: 20_000 }, (_, i) => ({
      role: i % 2 ? 'assistant' : 'user',
      content:
        i % 97 === 0
          ? [
              { type: 'text', text: randomString(rnd, 200) },
              { type: 'image', skip: undefined },
            ]
          : randomString(rnd, 120),
      ...(i % 50 === 0 ? { name: undefined, at: new Date(i) } : {}),
    }))
    await same({ model: 'm', messages, max_tokens: 5 })
    for (const at of [PIECE_CHARS - 2, PIECE_CHARS - 1, PIECE_CHARS, PIECE_CHARS + 1, 2 * PIECE_CHARS - 1]) {
      const s = 'a'.repeat(at) + '😀' + '\ud800'.repeat(3) + 'é'.repeat(PIECE_CHARS) + '\udc00' + '"\\\n'.repeat(1000)
      await same(s)
      await same({ messages: [{ role: 'user', content: s }, s, { big: [s, s] }] })
    }
  })

  it('the pieces are about PIECE_CHARS long, and the loop turns between them', async () => {
    const body = {
      messages: Array.from({ length: 30_000 }, (_, i) => ({ role: 'user', content: `message ${i} `.repeat(8) })),
    }
    let turns = 0
    let on = true
    const tick = () => {
      turns++
      if (on) setImmediate(tick)
    }
    setImmediate(tick)
    const pieces = (await stringifySliced(body, new Slicer(1)))!
    on = false
    expect(pieces.join('')).toBe(JSON.stringify(body))
    expect(pieces.slice(0, -1).every((p) => p.length >= PIECE_CHARS && p.length < PIECE_CHARS + 2048)).toBe(true)
    expect(turns).toBeGreaterThan(2)
  })

  it('throws what JSON.stringify throws: a circle, a BigInt', async () => {
    const a: any = { x: [1, 2, { y: 'z'.repeat(20_000) }] }
    a.x[2].back = a
    for (const v of [a, { n: 1n }, [{ deep: { n: 2n } }]]) {
      let native: unknown
      try {
        JSON.stringify(v)
      } catch (err) {
        native = err
      }
      expect(native).toBeInstanceOf(TypeError)
      await expect(stringifySliced(v, eager())).rejects.toThrow((native as Error).message)
    }
  })
})

describe('cutString', () => {
  it('never cuts a surrogate pair, and the pieces encode to the bytes of the whole', () => {
    const s = `${'x'.repeat(9)}😀${'y'.repeat(8)}😀😀\ud800z`
    for (let size = 2; size < 14; size++) {
      const pieces = cutString(s, size)
      expect(pieces.join('')).toBe(s)
      expect(Buffer.concat(pieces.map((p) => Buffer.from(p))).equals(Buffer.from(s))).toBe(true)
    }
  })
})
