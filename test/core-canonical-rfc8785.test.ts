// canonicalJson against RFC 8785 (JSON Canonicalization Scheme), with the RFC's own examples: the
// sample of section 3.2.2, the property-sorting example of 3.2.3 and the number samples of
// Appendix B. Where we knowingly differ (values JCS rejects: NaN, Infinity, lone surrogates; values
// outside JSON: undefined, functions, bigint), the difference is pinned here and documented in
// core/canonical.ts and plugins/audit/README.md.
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { canonicalJson, canonicalSha256 } from '../core/canonical.ts'

const double = (hex: string) => Buffer.from(hex, 'hex').readDoubleBE(0)

/** both code paths: keys already in order (JSON.stringify) and keys out of order (the walk) */
function bothPaths(v: unknown, expected: string) {
  expect(canonicalJson({ a: v, b: 1 })).toBe(`{"a":${expected},"b":1}`)
  expect(canonicalJson({ b: 1, a: v })).toBe(`{"a":${expected},"b":1}`)
  expect(canonicalSha256({ b: 1, a: v })).toBe(createHash('sha256').update(`{"a":${expected},"b":1}`).digest('hex'))
}

describe('RFC 8785 examples', () => {
  it('section 3.2.2: the sample with numbers, a string with escapes and literals', () => {
    const input = String.raw`{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }`
    expect(canonicalJson(JSON.parse(input))).toBe(
      String.raw`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`,
    )
  })

  it('section 3.2.3: properties sorted by UTF-16 code units, not code points or locale', () => {
    const input = String.raw`{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }`
    const out = canonicalJson(JSON.parse(input))
    const order = [...out.matchAll(/":"([^"]+)"/g)].map((m) => m[1])
    // U+1F600 is the surrogate pair D83D DE00, which sorts before U+FB33 by code unit
    expect(order).toEqual([
      'Carriage Return',
      'One',
      'Control',
      'Latin Small Letter O With Diaeresis',
      'Euro Sign',
      'Emoji: Grinning Face',
      'Hebrew Letter Dalet With Dagesh',
    ])
    expect(out.startsWith('{"\\r":"Carriage Return","1":"One","\u0080":"Control"')).toBe(true)
  })

  it('Appendix B: number serialisation samples (IEEE 754 bits -> JSON text)', () => {
    const samples: Array<[string, string]> = [
      ['0000000000000000', '0'],
      ['8000000000000000', '0'], // -0 prints as 0
      ['0000000000000001', '5e-324'],
      ['8000000000000001', '-5e-324'],
      ['7fefffffffffffff', '1.7976931348623157e+308'],
      ['ffefffffffffffff', '-1.7976931348623157e+308'],
      ['4340000000000000', '9007199254740992'],
      ['c340000000000000', '-9007199254740992'],
      ['4430000000000000', '295147905179352830000'],
      ['44b52d02c7e14af5', '9.999999999999997e+22'],
      ['44b52d02c7e14af6', '1e+23'],
      ['44b52d02c7e14af7', '1.0000000000000001e+23'],
      ['444b1ae4d6e2ef4e', '999999999999999700000'],
      ['444b1ae4d6e2ef4f', '999999999999999900000'],
      ['444b1ae4d6e2ef50', '1e+21'],
      ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
      ['3eb0c6f7a0b5ed8d', '0.000001'],
      ['41b3de4355555553', '333333333.3333332'],
      ['41b3de4355555554', '333333333.33333325'],
      ['41b3de4355555555', '333333333.3333333'],
      ['41b3de4355555556', '333333333.3333334'],
      ['41b3de4355555557', '333333333.33333343'],
      ['becbf647612f3696', '-0.0000033333333333333333'],
      ['43143ff3c1cb0959', '1424953923781206.2'],
    ]
    for (const [bits, text] of samples) {
      expect(canonicalJson(double(bits)), bits).toBe(text)
      bothPaths(double(bits), text)
    }
  })
})

describe('where we differ from RFC 8785 (documented)', () => {
  it('NaN and ±Infinity (Appendix B: "must cause an error") print as null, as JSON.stringify does', () => {
    for (const bits of ['7fffffffffffffff', '7ff0000000000000', 'fff0000000000000']) {
      expect(canonicalJson(double(bits))).toBe('null')
      bothPaths(double(bits), 'null')
    }
  })

  it('a lone surrogate (not I-JSON, so outside JCS) is escaped as \\uXXXX, in values and keys', () => {
    expect(canonicalJson('a\ud800b')).toBe('"a\\ud800b"')
    expect(canonicalJson({ '\udc00': 1, a: '\ud83d' })).toBe('{"a":"\\ud83d","\\udc00":1}')
    bothPaths('\udfff', '"\\udfff"')
  })

  it('values outside JSON: undefined, functions and symbols dropped (null in arrays), bigint as a decimal string, toJSON used', () => {
    expect(canonicalJson({ b: undefined, a: () => 1, c: Symbol('s') })).toBe('{}')
    expect(canonicalJson([undefined, () => 1])).toBe('[null,null]')
    expect(canonicalJson(undefined)).toBe('null')
    expect(canonicalJson({ n: BigInt('12345678901234567890') })).toBe('{"n":"12345678901234567890"}')
    expect(canonicalJson({ d: new Date(0) })).toBe('{"d":"1970-01-01T00:00:00.000Z"}')
  })
})
