// One SSE event of megabytes relayed on a cache miss (issue 11 item 2): each flat copy of it (the
// join of the chunks it came in, the join of a long string's parsed runs) in a turn of its own,
// and no reader searching its text again. The relay's own measure is test/large-events-relay.test.ts;
// these are the parts of it that can be checked without a clock.
import { describe, expect, it } from 'vitest'
import { primedEventJson } from '../core/protocols/event-json.ts'
import { protocols } from '../core/protocols/index.ts'
import type { StreamReader } from '../core/protocols/shared.ts'
import type { Slicer } from '../core/slicer.ts'
import { SseParser } from '../core/stream.ts'

/** a pacer never due: a turn is given back only where the code yields whatever the time */
function neverDue() {
  let yields = 0
  const pacer = {
    due: () => false,
    yield: async () => {
      yields++
      await new Promise((r) => setImmediate(r))
    },
    pause: async () => {},
    get yields() {
      return yields
    },
  }
  return pacer
}

const noUsage = () => ({ inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 })

/** `bytes` in chunks of `size` */
function chunksOf(bytes: Buffer, size: number): Buffer[] {
  const out: Buffer[] = []
  for (let at = 0; at < bytes.length; at += size) out.push(bytes.subarray(at, at + size))
  return out
}

describe('an SSE event of megabytes, relayed', () => {
  it('gives the loop back before each chunk once the waiting event is large (queued chunks were decoded back to back, and the join of the event came in their turn)', async () => {
    const datas: string[] = []
    const reader: StreamReader = {
      event: (d) => {
        datas.push(d)
        return true
      },
      finish: () => undefined,
      partialUsage: noUsage,
    }
    const parser = new SseParser(reader, false)
    const big = '中文字 "quoted" 😀 '.repeat(80_000)
    const stream = `data: ${JSON.stringify({ text: big })}\n\ndata: [DONE]\n\n`
    const pacer = neverDue()
    const before: number[] = []
    // as the relay feeds them: heavy() for every chunk, then feedSliced in order
    for (const c of chunksOf(Buffer.from(stream), 64 * 1024)) {
      parser.heavy(c)
      const y = pacer.yields
      await parser.feedSliced(c, pacer as unknown as Slicer, () => {})
      before.push(pacer.yields - y)
    }
    expect(datas.length).toBe(2)
    expect(JSON.parse(datas[0]!).text === big).toBe(true)
    // every chunk after the first 256K characters waited: a turn at least before it
    const late = before.slice(Math.ceil((256 * 1024 * 3) / (64 * 1024)))
    expect(late.length).toBeGreaterThan(10)
    expect(late.every((n) => n >= 1)).toBe(true)
  })

  it('Responses: the value of a large event the relay parsed is read, not its text searched for "response" (a key written with escapes was missed)', async () => {
    const reader = protocols.responses.streamReader({})
    const parser = new SseParser(reader, false)
    const big = 'café "quoted" 😀 '.repeat(30_000)
    const item = {
      id: 'msg_1',
      type: 'message',
      status: 'completed',
      role: 'assistant',
      content: [{ type: 'output_text', text: big, annotations: [] }],
    }
    const response = {
      // no "response" anywhere in the text but the escaped key
      id: 'resp_1',
      status: 'completed',
      model: 'gpt-4o-mini',
      output: [item],
      usage: { input_tokens: 3, output_tokens: 7, total_tokens: 10 },
    }
    // the same JSON value as {"type":..., "response": ...}: a key may be written with escapes
    const data = JSON.stringify({ type: 'response.completed', response }).replace('"response":', '"\\u0072esponse":')
    expect(data.length).toBeGreaterThan(256 * 1024)
    expect(data.includes('"response"')).toBe(false)
    const pacer = neverDue()
    for (const c of chunksOf(Buffer.from(`event: response.completed\ndata: ${data}\n\n`), 64 * 1024)) {
      parser.heavy(c)
      await parser.feedSliced(c, pacer as unknown as Slicer, () => {})
    }
    const answer = reader.finish()
    expect(answer?.text === big).toBe(true)
    expect(answer?.usage.outputTokens).toBe(7)
  })

  it('Responses: a delta of megabytes is not parsed for the reader (it reads only the events that carry the whole response)', async () => {
    const reader = protocols.responses.streamReader({})
    const parser = new SseParser(reader, false)
    const big = 'café "quoted" 😀 '.repeat(30_000)
    const e = (d: Record<string, unknown>) => `event: ${d.type}\ndata: ${JSON.stringify(d)}\n\n`
    const delta = {
      type: 'response.output_text.delta',
      item_id: 'msg_1',
      output_index: 0,
      content_index: 0,
      delta: big,
    }
    const item = { id: 'msg_1', type: 'message', role: 'assistant', content: [{ type: 'output_text', text: big }] }
    const done = { type: 'response.output_item.done', output_index: 0, item }
    const completed = {
      type: 'response.completed',
      response: { id: 'resp_1', status: 'completed', output: [item], usage: { input_tokens: 3, output_tokens: 7 } },
    }
    const pacer = neverDue()
    const feed = async (text: string) => {
      for (const c of chunksOf(Buffer.from(text), 64 * 1024)) {
        parser.heavy(c)
        await parser.feedSliced(c, pacer as unknown as Slicer, () => {})
      }
    }
    // the delta and the item's done event are not parsed; the completed event is (and read)
    await feed(e(delta))
    expect(primedEventJson(JSON.stringify(delta))).toBeUndefined()
    await feed(e(done))
    expect(primedEventJson(JSON.stringify(done))).toBeUndefined()
    await feed(e(completed))
    expect(primedEventJson(JSON.stringify(completed))).toBeDefined()
    expect(reader.finish()?.text === big).toBe(true)
  })
})
