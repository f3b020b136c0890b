// An object of 100,000 keys nested in arrays, through the proxy child (issue 11 item 2): a Gemini
// vendor's function call whose arguments have 100,000 keys, for a Gemini client, stored by the
// exact cache (its entry made in slices by stringifySliced, which enumerated those keys once per
// container around them, all in one turn, before this code).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ProxyChild } from './fuzz/child.ts'
import { sendRaw } from './fuzz/client.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'
import { startChildAndMock, stopChildAndMock } from './helpers/proxy-child.ts'

const keysOf = (n: number) => {
  const o: Record<string, unknown> = {}
  for (let i = 0; i < n; i++) o[`key_${i}`] = `value ${i}`
  return o
}
const ARGS = keysOf(100_000)
const answer = JSON.stringify({
  candidates: [
    {
      index: 0,
      content: { role: 'model', parts: [{ functionCall: { name: 'write', args: ARGS } }] },
      finishReason: 'STOP',
    },
  ],
  usageMetadata: { promptTokenCount: 10, candidatesTokenCount: 1000, totalTokenCount: 1010 },
  modelVersion: 'gemini-2.5-pro',
})

describe('an answer with an object of 100,000 keys, cached, through the proxy child', () => {
  let mock: MockUpstream
  let child: ProxyChild
  let dataDir: string
  let port: number
  beforeAll(async () => {
    ;({ mock, child, port, dataDir } = await startChildAndMock('large-chains-keys', {
      FUZZ_UPSTREAM_TIMEOUT_MS: '30000',
    }))
  }, 120_000)
  afterAll(() => stopChildAndMock({ mock, child, dataDir }))

  let n = 0
  async function ask(): Promise<number> {
    const bytes = Buffer.from(JSON.stringify({ contents: [{ role: 'user', parts: [{ text: `look ${n++}` }] }] }))
    const head =
      `POST /v1beta/models/gemini-2.5-pro:generateContent HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n` +
      `content-type: application/json\r\ncontent-length: ${bytes.length}\r\nconnection: close\r\n\r\n`
    await child.stats({ gc: true, reset: true })
    const r = await sendRaw(port, Buffer.concat([Buffer.from(head), bytes]), { timeoutMs: 60_000 })
    // the cache's store runs after the answer
    await new Promise((res) => setTimeout(res, 1000))
    expect(r.status).toBe(200)
    const args = JSON.parse(r.body.toString('utf8')).candidates[0].content.parts[0].functionCall.args
    expect(Object.keys(args).length).toBe(100_000)
    return (await child.stats()).blockCpuMs
  }

  /**
   * The longest block, CPU ms, best of up to three runs after one that compiles the paths. Before
   * this code: 166-215, by profile the exact cache's stringifySliced of the entry (isSmall of each
   * container around the arguments enumerating their keys: 150-190 ms, then Object.keys 17-19, in
   * one turn). After: 31-40 (41-53 under --cpu-prof): two enumerations (20 ms each), in turns of their own.
   */
  it('a Gemini client, a Gemini vendor: under 45 ms of CPU in the longest block', async () => {
    mock.behaviour.okBody = { body: answer, contentType: 'application/json' }
    const blocks = [await ask()]
    let best = Number.POSITIVE_INFINITY
    for (let i = 0; i < 3 && best > 45; i++) {
      blocks.push(await ask())
      best = Math.min(best, blocks.at(-1)!)
    }
    console.log(`100,000 keys cached: ${blocks.map(Math.round).join(', ')} ms of CPU in the longest block`)
    expect(best).toBeLessThanOrEqual(45)
  }, 300_000)
})
