// A Responses chain of megabytes through the fuzzer's proxy child (issue 11 item 2): a turn whose
// input holds a call of 5 MB is answered by a vendor of another protocol, and the next turns are
// small requests that name it (`previous_response_id`). The proxy keeps the chain (core/translate/
// chains.ts): each turn's expansion, translation and record is worked in slices, though the
// client's own body is small, and the chain goes on at a vendor of the same protocol as well.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ProxyChild } from './fuzz/child.ts'
import { sendRaw } from './fuzz/client.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'
import { startChildAndMock, stopChildAndMock } from './helpers/proxy-child.ts'
import { wordText } from './helpers/word-text.ts'

const WORDS = ['the', 'quick', 'café', '€uro', '中文字', '😀🚀', '"quoted"', 'back\\slash', 'line\nbreak', 'tab\t']
const text = (chars: number): string => wordText(WORDS, chars)
/** a tool's arguments of about `chars` characters: a file's lines (many short strings) */
const argsOf = (chars: number) => ({ file_path: '/tmp/x', lines: text(chars).match(/.{1,40}/gs)! })
const ARGS_TEXT = JSON.stringify(argsOf(5_000_000))

/** the first turn: a call of 5 MB and its result in the input */
const firstTurn = (model: string, n: number) => ({
  model,
  input: [
    { type: 'message', role: 'user', content: `write the file ${n}` },
    { type: 'function_call', call_id: 'c1', name: 'write', arguments: ARGS_TEXT },
    { type: 'function_call_output', call_id: 'c1', output: 'ok' },
  ],
})
const nextTurn = (model: string, previous: string, n: number) => ({
  model,
  previous_response_id: previous,
  input: `and now ${n}?`,
})

/**
 * The longest block of the proxy's own work in the small turns, as CPU ms (the best of up to three
 * runs). Before this code they were 77-94 (Anthropic, Gemini vendors) and 41-60 (the Responses
 * vendor): the chain's translation in one go (its call's JSON.parse, 17 ms), the stored turn's
 * JSON.stringify to size it (38 ms), the vendor body's JSON.stringify and encoding (30-60 ms). The
 * last is core/vendor.ts's, which decides a body is large by the client's raw body: with it sending
 * a body of rawBody.length + chainChars(request) characters in slices, they are 19-33 here. The first
 * turn (a body of 5 MB) is logged, not bounded: its work is the large-request path's (75-88 ms before
 * the breaker keyed a call of megabytes in slices, 28-39 after).
 */
const BLOCK_MS = 45

describe('a Responses chain of megabytes through the proxy child', () => {
  let mock: MockUpstream
  let child: ProxyChild
  let dataDir: string
  let port: number
  beforeAll(async () => {
    ;({ mock, child, port, dataDir } = await startChildAndMock('large-chains', { FUZZ_UPSTREAM_TIMEOUT_MS: '30000' }))
  }, 120_000)
  afterAll(() => stopChildAndMock({ mock, child, dataDir }))

  let n = 0
  async function send(body: unknown): Promise<{ status: number; json: any; blockCpuMs: number }> {
    const bytes = Buffer.from(JSON.stringify(body))
    const head =
      `POST /v1/responses HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\n` +
      `cache-control: no-store\r\ncontent-length: ${bytes.length}\r\nconnection: close\r\n\r\n`
    await child.stats({ gc: true, reset: true })
    const r = await sendRaw(port, Buffer.concat([Buffer.from(head), bytes]), { timeoutMs: 60_000 })
    await new Promise((res) => setTimeout(res, 500))
    const s = await child.stats()
    let json: any
    try {
      json = JSON.parse(r.body.toString('utf8'))
    } catch {
      json = r.body.toString('utf8').slice(0, 500)
    }
    return { status: r.status, json, blockCpuMs: s.blockCpuMs }
  }

  it.each([
    ['claude-3-5-haiku-latest', 'claude-3-5-haiku-latest'],
    ['gemini-2.5-pro', 'gemini-2.5-pro'],
    // a chain the proxy translated, continued at a vendor that speaks Responses: expanded for it
    ['claude-3-5-haiku-latest', 'gpt-4o-mini'],
  ])(
    'a chain of 5 MB made at %s, small turns continued at %s: each under the bound',
    async (first, next) => {
      const blocks: string[] = []
      let best = Number.POSITIVE_INFINITY
      for (let run = 0; run < 4 && best > BLOCK_MS; run++) {
        const t1 = await send(firstTurn(first, n++))
        expect(t1.status, JSON.stringify(t1.json)).toBe(200)
        let id: string = t1.json.id
        let worst = 0
        for (let turn = 2; turn <= 3; turn++) {
          const t = await send(nextTurn(next, id, n++))
          expect(t.status, JSON.stringify(t.json)).toBe(200)
          expect(typeof t.json.id).toBe('string')
          id = t.json.id
          worst = Math.max(worst, t.blockCpuMs)
          blocks.push(`turn ${turn}: ${t.blockCpuMs.toFixed(0)}`)
        }
        blocks.push(`turn 1: ${t1.blockCpuMs.toFixed(0)}`)
        // the first run compiles the paths
        if (run > 0) best = Math.min(best, worst)
      }
      console.log(`${first} -> ${next}: ${blocks.join(', ')} ms of CPU in the longest block`)
      // until then the vendor body's JSON.stringify and encoding in one go hold the loop 50-66 ms: the chain is only checked to work
      expect(best).toBeLessThanOrEqual(BLOCK_MS)
    },
    300_000,
  )
})
