// Pieces of the work a Responses chain of megabytes takes through the proxy (issue 11 item 2),
// each checked against the one-go code: stringifySliced of a body whose large object is nested
// in arrays (its keys enumerated once, in a turn with little else); the chain's store, which sizes
// a turn from the turns before it (no JSON.stringify of the whole chain on each turn); a small
// request continuing a chain of megabytes, translated as a body of megabytes (its call's arguments
// parsed in slices), to the same vendor body as the one-go translation.
import { describe, expect, it } from 'vitest'
import { stringifySliced } from '../core/json-sliced.ts'
import { SLICED_PARSE_CHARS } from '../core/protocols/shared.ts'
import { Slicer } from '../core/slicer.ts'
import { chainChars, expandChain, recordTurn } from '../core/translate/chains.ts'
import { translateRequest } from '../core/translate/index.ts'
import type { Mesh, MeshContext, ProtocolName, Vendor } from '../core/types.ts'
import { longestJson } from './helpers/longest-block.ts'

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
  it('enumerates its keys twice, in turns of their own (the size checks of the containers around it made one each, in one turn)', async () => {
    let turn = 0
    let live = true
    const tick = () => {
      turn++
      if (live) setImmediate(tick)
    }
    setImmediate(tick)
    const turns: number[] = []
    const response = new Proxy(keysOf(5000), {
      ownKeys(target) {
        turns.push(turn)
        return Reflect.ownKeys(target)
      },
    })
    const value = nested(response)
    // a slice of 0 ms: each check of the slice finds it used up, as a body of megabytes would
    const pieces = await stringifySliced(value, new Slicer(0))
    live = false
    // the walk of the outermost container's size check, then Object.keys: in two turns
    expect(turns).toHaveLength(2)
    expect(turns[0]).not.toBe(turns[1])
    expect(pieces!.join('')).toBe(JSON.stringify(value))
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

const argsText = JSON.stringify({
  file_path: '/tmp/x',
  lines: Array.from({ length: 40_000 }, (_, i) => `line ${i}: "é😀\\ ${'w'.repeat(i % 17)}`),
})
const call = { type: 'function_call', call_id: 'c1', name: 'write', arguments: argsText }
const firstInput = [
  { type: 'message', role: 'user', content: 'write' },
  call,
  { type: 'function_call_output', call_id: 'c1', output: 'ok' },
]
const output = [
  { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'done', annotations: [] }] },
]

const meshOf = () => ({ config: { storage: { driver: 'memory' } }, log: { warn() {}, debug() {} } }) as unknown as Mesh
function ctxOf(
  mesh: Mesh,
  body: Record<string, any>,
  rawBody = JSON.stringify(body),
  protocol: ProtocolName = 'responses',
) {
  return {
    mesh,
    protocol,
    prompt: { stream: false },
    route: { model: 'm', vendor: 'v' },
    headers: {},
    identity: { team: 't' },
    request: { body, rawBody, search: '', dirty: false },
  } as unknown as MeshContext
}

describe('the chain store of translated Responses turns', () => {
  it('a turn of megabytes and the small turns after it: each sized without a JSON.stringify of the chain', async () => {
    const mesh = meshOf()
    const seen: { chars: number; items: unknown[]; kept: number }[] = []
    // its raw body made before the JSON texts are looked at
    const first = ctxOf(mesh, { model: 'm', input: firstInput })
    const { longest } = await longestJson(async () => {
      await recordTurn(first, 'resp_1', firstInput, output)
      let previous = 'resp_1'
      for (let turn = 2; turn <= 4; turn++) {
        const body = { model: 'm', previous_response_id: previous, input: `and ${turn}?` }
        const ctx = ctxOf(mesh, body)
        const { input, prior } = await expandChain(ctx, body)
        seen.push({ chars: prior!.chars, items: input.slice(0, prior!.items), kept: chainChars(ctx.request) })
        previous = `resp_${turn}`
        await recordTurn(ctx, previous, input, output, prior)
      }
    })
    // the lengths the store keeps are those of the one-go JSON text
    for (const { chars, items, kept } of seen) {
      expect(chars).toBe(JSON.stringify(items).length)
      expect(kept).toBe(chars)
    }
    // before: JSON.stringify of each whole turn (the call's 1.2M characters and more) to size it
    expect(longest).toBeLessThan(SLICED_PARSE_CHARS)
    const last = { model: 'm', previous_response_id: 'resp_4', input: 'last' }
    const { input } = await expandChain(ctxOf(mesh, last), last)
    const said = (text: string) => ({ type: 'message', role: 'user', content: text })
    expect(input).toEqual([
      ...firstInput,
      ...output,
      ...[2, 3, 4].flatMap((n) => [said(`and ${n}?`), ...output]),
      said('last'),
    ])
  })

  it('small turns: measured at once, the chain there as soon as recordTurn returns', async () => {
    const mesh = meshOf()
    const small = [{ type: 'message', role: 'user', content: 'hi' }]
    expect(recordTurn(ctxOf(mesh, {}), 'resp_a', small, output)).toBeUndefined()
    const body = { model: 'm', previous_response_id: 'resp_a', input: 'again' }
    const { input, prior } = await expandChain(ctxOf(mesh, body), body)
    expect(prior).toEqual({ items: 2, chars: JSON.stringify([...small, ...output]).length })
    expect(input).toEqual([...small, ...output, { type: 'message', role: 'user', content: 'again' }])
  })
})

describe('translated turns in shared storage (redis: another instance continues the chain)', () => {
  const sharedMesh = (items: Map<string, unknown>) =>
    ({
      config: { storage: { driver: 'redis' } },
      log: { warn() {}, debug() {} },
      storage: {
        getItem: async (k: string) => structuredClone(items.get(k) ?? null),
        setItem: async (k: string, v: unknown) => void items.set(k, structuredClone(v)),
      },
    }) as unknown as Mesh

  it.each([
    ['with the lengths it keeps', false],
    ['stored without them (an older version): measured in slices', true],
  ])('a turn of megabytes read by another instance, %s', async (_name, strip) => {
    const items = new Map<string, unknown>()
    await recordTurn(ctxOf(sharedMesh(items), { model: 'm', input: firstInput }), 'resp_1', firstInput, output)
    const stored = items.get('responses:translated:resp_1') as Record<string, unknown>
    expect(stored).toMatchObject({ team: 't', input: firstInput, output })
    if (strip) {
      delete stored.inputChars
      delete stored.outputChars
    }
    const other = sharedMesh(items)
    const body = { model: 'm', previous_response_id: 'resp_1', input: 'go on' }
    const { value, longest } = await longestJson(() => expandChain(ctxOf(other, body, '{}'), body))
    expect(value.prior).toEqual({ items: 4, chars: JSON.stringify([...firstInput, ...output]).length })
    expect(value.input).toEqual([...firstInput, ...output, { type: 'message', role: 'user', content: 'go on' }])
    // the storage's own copies aside (structuredClone here), no JSON text of the chain made in one go
    expect(longest).toBeLessThan(SLICED_PARSE_CHARS)
  })
})

describe('a small Responses request continuing a chain of megabytes, to a vendor of another protocol', () => {
  it.each(['anthropic', 'gemini', 'openai'] as const)(
    'to %s: the one-go body of the whole input, its call parsed in slices',
    async (to) => {
      const mesh = meshOf()
      await recordTurn(ctxOf(mesh, { model: 'm', input: firstInput }), 'resp_1', firstInput, output)
      const body = { model: 'm', previous_response_id: 'resp_1', input: 'go on' }
      const chained = ctxOf(mesh, structuredClone(body))
      expect(chained.request.rawBody.length).toBeLessThan(1000)
      const { longest } = await longestJson(async () => translateRequest(chained, { protocol: to } as Vendor))
      // the one-go translation: the whole input in a small body's path
      const whole = {
        model: 'm',
        input: [...firstInput, ...output, { type: 'message', role: 'user', content: 'go on' }],
      }
      const oneGo = ctxOf(mesh, structuredClone(whole), '')
      await translateRequest(oneGo, { protocol: to } as Vendor)
      expect(chained.request.body).toEqual(oneGo.request.body)
      // before: the call's arguments parsed in one go (JSON.parse of 1.2M characters) for Anthropic and Gemini
      if (to !== 'openai') expect(longest).toBeLessThan(SLICED_PARSE_CHARS)
    },
  )
})
