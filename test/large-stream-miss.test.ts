// A streamed cache MISS of megabytes made of many small events (issue 11): the proxy relays the
// vendor's stream, its protocol reader builds the answer from the events on the side, and at the
// end the solo preset's plugins work on the whole answer (the exact cache stores the entry, the
// audit hashes the answer). The longest block of the proxy's own work is measured in the
// fuzzer's proxy child; the client must get the vendor's bytes and a later hit the whole answer.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ProxyChild } from './fuzz/child.ts'
import { sendRaw } from './fuzz/client.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'
import { startChildAndMock, stopChildAndMock } from './helpers/proxy-child.ts'
import { vendorStream } from './helpers/vendor-streams.ts'
import { wordText } from './helpers/word-text.ts'

const PLAIN = 'the quick brown fox jumps over a lazy dog while seven wizards judge boxing matches café €uro'.split(' ')
const text = (chars: number, seed: number) => wordText(PLAIN, chars, seed)

type P = 'openai' | 'anthropic' | 'gemini'

const GEMINI = '/v1beta/models/gemini-2.5-pro:streamGenerateContent'

function raw(port: number, p: P, prompt: string, stream = true): Buffer {
  const path = p === 'openai' ? '/v1/chat/completions' : p === 'anthropic' ? '/v1/messages' : `${GEMINI}?alt=sse`
  const messages = [{ role: 'user', content: prompt }]
  const body = Buffer.from(
    JSON.stringify(
      p === 'openai'
        ? { model: 'gpt-4o-mini', stream, messages }
        : p === 'anthropic'
          ? { model: 'claude-3-5-haiku-latest', max_tokens: 64, stream, messages }
          : { contents: [{ role: 'user', parts: [{ text: prompt }] }] },
    ),
  )
  // the hit is asked for as JSON (Gemini: the non-streaming method): the stored text, read whole
  const at = p === 'gemini' && !stream ? '/v1beta/models/gemini-2.5-pro:generateContent' : path
  const head =
    `POST ${at} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\n` +
    `anthropic-version: 2023-06-01\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n`
  return Buffer.concat([Buffer.from(head), body])
}

/** the text of a JSON answer in the protocol's shape */
function textOf(p: P, body: Buffer): string {
  const j = JSON.parse(body.toString('utf8'))
  if (p === 'openai') return j.choices[0].message.content
  if (p === 'anthropic') return j.content.map((b: { text?: string }) => b.text ?? '').join('')
  return j.candidates[0].content.parts.map((x: { text?: string }) => x.text ?? '').join('')
}

/**
 * The longest block of the proxy's own work while it relays a 5 MB answer in small events and its
 * plugins store and audit it, as CPU ms (test/fuzz/stats.ts). Before: 61-103 ms (the exact cache
 * joined the entry's JSON into one string of 5-10 MB in one block, after the text itself was made
 * one string in the turn that ended the stream; chunks of ~1,000 events read in one go). After:
 * 28-60 under a load of 4-6, what remains being the answer's text made one string (10 MB of fresh
 * memory for this non-Latin-1 text: ~30 ms quiet) and scavenges. A block over the bound is
 * measured again (another prompt), up to MISS_TRIES times, before the test fails.
 */
const STREAM_MISS_BLOCK_MS = 60
const MISS_TRIES = 3

describe('the longest block for a streamed miss of 5 MB in small events through the proxy child', () => {
  let mock: MockUpstream
  let child: ProxyChild
  let dataDir: string
  let port: number
  beforeAll(async () => {
    ;({ mock, child, port, dataDir } = await startChildAndMock('large-stream-miss', {
      FUZZ_UPSTREAM_TIMEOUT_MS: '60000',
    }))
    // a warm proxy: the first large answers of a process also pay for compiling its code and
    // growing its heap, once
    for (const p of ['openai', 'anthropic', 'gemini'] as const) await streamedMiss(p, text(1_000_000, 1), 100, 'warm')
  }, 120_000)
  afterAll(() => stopChildAndMock({ mock, child, dataDir }))

  /** a streamed miss of `t`; the child's longest block from the request until the proxy is idle again */
  async function streamedMiss(p: P, t: string, size: number, prompt: string) {
    const vendor = vendorStream(p, t, size)
    mock.behaviour.okBody = { body: vendor, contentType: 'text/event-stream' }
    await child.stats({ gc: true, reset: true })
    const miss = await sendRaw(port, raw(port, p, prompt), { timeoutMs: 120_000 })
    delete mock.behaviour.okBody
    // the cache store and the audit run after the answer: wait until the proxy is idle again
    // (at most 15 s: a child run with --cpu-prof is never quite idle)
    let s = await child.stats()
    for (let cpu = -1, n = 0; s.cpuMs - cpu > 20 && n < 30; n++, s = await child.stats()) {
      cpu = s.cpuMs
      await new Promise((r) => setTimeout(r, 500))
    }
    expect(miss.status).toBe(200)
    expect(miss.headers.get('x-agentmesh-cache')).toBe('miss')
    // an OpenAI client that did not ask for usage does not get the usage chunk the proxy asked for
    const usage = /data: [^\n]*"usage"[^\n]*\n\n/
    expect(miss.body.toString('utf8')).toBe(p === 'openai' ? vendor.replace(usage, '') : vendor)
    return s
  }

  const cases: [P, number][] = [
    ['openai', 1000],
    ['anthropic', 1000],
    ['gemini', 1000],
    ['openai', 20],
    ['anthropic', 20],
    ['gemini', 20],
  ]
  it.each(cases)(
    '%s, deltas of %s characters: the vendor bytes, the answer stored whole, under STREAM_MISS_BLOCK_MS',
    async (p, size) => {
      const t = text(5_000_000, size + p.length)
      const blocks: number[] = []
      for (let i = 0; i < MISS_TRIES && !(blocks.at(-1)! <= STREAM_MISS_BLOCK_MS); i++) {
        const prompt = `miss ${p} ${size} ${i}`
        const s = await streamedMiss(p, t, size, prompt)
        blocks.push(Math.round(s.blockCpuMs))
        // the stored answer is the whole text: a hit asked for as JSON gives it back
        const hit = await sendRaw(port, raw(port, p, prompt, false), { timeoutMs: 60_000 })
        expect(hit.status).toBe(200)
        expect(hit.headers.get('x-agentmesh-cache')).toBe('exact')
        expect(textOf(p, hit.body)).toBe(t)
      }
      console.log(`streamed miss 5 MB ${p}, deltas of ${size}: ${blocks.join(', ')} ms of CPU in the longest block`)
      expect(Math.min(...blocks)).toBeLessThanOrEqual(STREAM_MISS_BLOCK_MS)
    },
    400_000,
  )
})
