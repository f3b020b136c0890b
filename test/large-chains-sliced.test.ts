// Pieces of the work a Responses chain of megabytes takes through the proxy (issue 11 item 2),
// each checked against the one-go code: stringifySliced of a body whose large object is nested
// in arrays (its keys enumerated once, in a turn with little else), ...
import { describe, expect, it } from 'vitest'
import { stringifySliced } from '../core/json-sliced.ts'
import { Slicer } from '../core/slicer.ts'

const keysOf = (n: number) => {
  const o: Record<string, unknown> = { seed: 1 }
  for (let i = 0; i < n; i++) o[`key_${i}`] = `value ${i}`
  return o
}
/** a Gemini body's shape: the object of many keys under two arrays and three objects */
const nested = (response: unknown) => ({
  contents: [{ role: 'user', parts: [{ functionResponse: { name: 'look', response } }] }],
})
const cpuMs = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

/** the longest turn's CPU while `run` works (a turn: between two setImmediate ticks) */
async function longestTurn<T>(run: () => Promise<T>): Promise<{ value: T; longest: number }> {
  let longest = 0
  let last = cpuMs()
  let live = true
  const tick = () => {
    const now = cpuMs()
    longest = Math.max(longest, now - last)
    last = now
    if (live) setImmediate(tick)
  }
  setImmediate(tick)
  const value = await run()
  live = false
  longest = Math.max(longest, cpuMs() - last)
  return { value, longest }
}

describe('stringifySliced of an object of many keys nested in arrays', () => {
  it('enumerates its keys once (the size checks of the containers around it made one each before)', async () => {
    let enumerations = 0
    const response = new Proxy(keysOf(5000), {
      ownKeys(target) {
        enumerations++
        return Reflect.ownKeys(target)
      },
    })
    const value = nested(response)
    const pieces = await stringifySliced(value, new Slicer(10))
    enumerations-- // JSON.stringify's own below
    expect(pieces!.join('')).toBe(JSON.stringify(value))
    expect(enumerations).toBe(1)
  })

  it('100,000 keys: the same text, no turn over 45 ms of CPU (115-130 before: five enumerations in one turn)', async () => {
    const value = nested(keysOf(100_000))
    const oneGo = JSON.stringify(value)
    let best = Number.POSITIVE_INFINITY
    for (let i = 0; i < 3 && best > 45; i++) {
      const { value: pieces, longest } = await longestTurn(() => stringifySliced(value, new Slicer(10)))
      expect(pieces!.join('')).toBe(oneGo)
      best = Math.min(best, longest)
    }
    expect(best).toBeLessThanOrEqual(45)
  })
})
