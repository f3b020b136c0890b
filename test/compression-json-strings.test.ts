// The lossless strategy's JSON minify over a text whose strings are megabytes (a file's content in
// a tool call's arguments): a string's end is found by indexOf, and a string of many escaped
// quotes gives the loop back every 64K characters, as the whitespace outside strings does.
import { describe, expect, it } from 'vitest'
import { minifyJson, minifyJsonPaced } from '../plugins/compression/text.ts'

/** a pacer whose slice is always used up: counts the pauses the steps ask for */
function countingPacer() {
  const pacer = {
    yields: 0,
    due: () => true,
    yield: async () => {
      pacer.yields++
    },
  }
  return pacer
}

describe('JSON minify, strings of megabytes', () => {
  it('the same text as before: strings whole (escapes, backslashes before quotes), whitespace outside them gone', async () => {
    const strings = ['plain', 'a \\"quoted\\" word', 'ends in a backslash \\\\', '\\\\\\"', 'x'.repeat(200_000)]
    for (const s of strings) {
      const pretty = `{\n  "path" : "src/a.ts",\n  "content": "${s}" ,\n  "n": [1, 2, { "k" : "v" }]\n}\n`
      const expected = `{"path":"src/a.ts","content":"${s}","n":[1,2,{"k":"v"}]}`
      expect(minifyJson(pretty)).toBe(expected)
      expect(await minifyJsonPaced(pretty, countingPacer())).toBe(expected)
    }
    // not JSON: no minify
    expect(minifyJson('{"a": "unterminated}')).toBeUndefined()
  })

  it('a string of 4M characters with an escaped quote every 50K: pauses inside it (at the first escaped quote past each 64K characters; 3 in the old scan)', async () => {
    // the check (the core's sliced parse) pauses every 1,024 escaped quotes: here it does not
    const text = `{ "content": ${JSON.stringify(`${'x'.repeat(50_000)}"`.repeat(80))} }`
    const pacer = countingPacer()
    const out = await minifyJsonPaced(text, pacer)
    expect(out).toBe(JSON.stringify(JSON.parse(text)))
    const plain = countingPacer()
    await minifyJsonPaced(`{ "content": ${JSON.stringify(`${'x'.repeat(50_000)}'`.repeat(80))} }`, plain)
    // the old scan went through the whole string in one step, whatever was in it
    expect(pacer.yields - plain.yields).toBeGreaterThanOrEqual(30)
  })
})
