// The SSE reader under the stream relay: events split anywhere between chunks (inside the blank
// line too) come out whole and in order, and one event of megabytes in many chunks is read once.
import { describe, expect, it } from 'vitest'
import type { StreamReader } from '../core/protocols/shared.ts'
import { SseParser } from '../core/stream.ts'

function collect(dropEvents: boolean) {
  const seen: string[] = []
  const reader: StreamReader = {
    event: (data) => {
      seen.push(data)
      return !data.startsWith('drop')
    },
    finish: () => undefined,
    partialUsage: () => ({ inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 }),
  }
  const parser = new SseParser(reader, dropEvents)
  return { seen, parser }
}

const STREAM =
  'event: a\ndata: one\n\ndata: two\r\n\r\ndata: drop me\n\ndata: {"x":\ndata: 3}\n\n: comment\n\ndata: last'

describe('SseParser', () => {
  it('reads the same events whichever byte each chunk ends at', () => {
    const bytes = Buffer.from(STREAM)
    for (let cut = 1; cut < bytes.length; cut++) {
      for (const step of [1, 2, 3, cut]) {
        const { seen, parser } = collect(true)
        let kept = ''
        for (let i = 0; i < bytes.length; i += i === 0 ? cut : step)
          kept += parser.feed(bytes.subarray(i, i + (i === 0 ? cut : step)))
        kept += parser.flush()
        expect(seen).toEqual(['one', 'two', 'drop me', '{"x":\n3}', 'last'])
        // what is forwarded is every event the reader kept, byte for byte
        expect(kept).toBe(STREAM.replace('data: drop me\n\n', ''))
      }
    }
  })

  it('splits a multi-byte character across chunks without damage', () => {
    const bytes = Buffer.from('data: 模型测试\n\n')
    const { seen, parser } = collect(false)
    for (let i = 0; i < bytes.length; i++) parser.feed(bytes.subarray(i, i + 1))
    expect(seen).toEqual(['模型测试'])
  })

  it('reads an event of megabytes that arrives in 64 KB chunks', () => {
    const big = 'x'.repeat(8 * 1024 * 1024)
    const bytes = Buffer.from(`data: ${big}\n\ndata: after\n\n`)
    const { seen, parser } = collect(false)
    for (let i = 0; i < bytes.length; i += 65536) expect(parser.feed(bytes.subarray(i, i + 65536))).toBe('')
    expect(seen.length).toBe(2)
    expect(seen[0]!.length).toBe(big.length)
    expect(seen[1]).toBe('after')
  })
})
