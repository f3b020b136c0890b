// A body of megabytes goes up as pieces made in slices of the event loop (core/vendor.ts
// upstreamBodyPieces): the vendor must get exactly the bytes of the one-go path, JSON.stringify of
// the body a plugin changed or the client's own text, with a Content-Length that matches them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { definePlugin } from '../core/plugin.ts'
import { startCoreMockAndProxy, type Proxy } from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'

/** about `bytes` of turns, with text JSON escapes and UTF-8 of 2, 3 and 4 bytes (after `asciiBytes` of ASCII only) */
function turns(bytes: number, seed: number, asciiBytes = 0) {
  const all = ['fox', 'naïve', '模型', '😀', 'a"quote"', 'back\\slash', 'tab\there', 'line\nbreak', 'ok']
  const plain = ['fox', 'a"quote"', 'back\\slash', 'tab\there', 'line\nbreak', 'ok']
  const messages = []
  let size = 0
  for (let i = 0; size < bytes; i++) {
    const words = size < asciiBytes ? plain : all
    let content = ''
    for (let w = 0; w < 20; w++) content += `${words[(i * 7 + w * 3 + seed) % words.length]} `
    messages.push({ role: i % 2 ? 'assistant' : 'user', content })
    size += content.length + 40
  }
  if (messages.at(-1)!.role !== 'user') messages.push({ role: 'user', content: 'and?' })
  return messages
}

describe('a large body to the vendor', () => {
  let mock: MockUpstream
  let proxy: Proxy
  beforeAll(async () => {
    ;({ mock, proxy } = await startCoreMockAndProxy({
      config: {
        plugins: [
          // a plugin that changes the body (as the guard's redaction or compression do), when asked to
          definePlugin({
            name: 'rewrite',
            hooks: {
              beforeRequest(ctx) {
                if (ctx.request.headers.get('x-test-rewrite') !== '1') return
                const body = ctx.request.body as any
                body.messages[0].content = `rewritten ${'😀'.repeat(3)} \ud800 lone`
                body.metadata = { dropped: undefined, kept: [1, -0, 1e21, null] }
                ctx.request.dirty = true
              },
            },
          }),
        ],
      },
    }))
  })
  afterAll(async () => {
    await proxy?.close()
    await mock?.close()
  })

  const send = (body: unknown, rewrite: boolean) =>
    fetch(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(rewrite ? { 'x-test-rewrite': '1' } : {}) },
      body: JSON.stringify(body),
    })

  // as the client sent it, the body read by the core goes up as it came: its text decoded exactly
  // (all ASCII: read as Latin-1; ASCII for 1 MB, then characters of several bytes across chunks)
  it.each([
    ['changed by a plugin', true, 2_000_000, 0],
    ['as the client sent it', false, 2_000_000, 0],
    ['as the client sent it, all ASCII', false, 2_000_000, Number.POSITIVE_INFINITY],
    ['as the client sent it, ASCII for 1 MB', false, 2_000_000, 1_000_000],
    ['changed, just over the threshold', true, 300_000, 0],
  ])('%s (%s): the bytes of the one-go path, with their Content-Length', async (_name, rewrite, bytes, ascii) => {
    const body = { model: 'gpt-4o-mini', messages: turns(bytes, bytes % 7, ascii), temperature: 0 }
    mock.received.length = 0
    const res = await send(body, rewrite)
    expect(res.status).toBe(200)
    await res.text()
    expect(mock.received).toHaveLength(1)
    const got = mock.received[0]!
    const expected = structuredClone(body) as any
    if (rewrite) {
      expected.messages[0].content = `rewritten ${'😀'.repeat(3)} \ud800 lone`
      expected.metadata = { dropped: undefined, kept: [1, -0, 1e21, null] }
    }
    const text = JSON.stringify(expected)
    // the mock decoded the bytes as UTF-8: the text it read is the text JSON.stringify gives
    expect(got.raw.length).toBe(text.length)
    expect(got.raw === text).toBe(true)
    expect(Number(got.headers['content-length'])).toBe(Buffer.byteLength(text))
    expect(got.headers['transfer-encoding']).toBeUndefined()
  })
})
