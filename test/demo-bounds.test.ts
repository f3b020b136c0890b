// The demo vendor on requests the fuzzer found holding the event loop (issue 11): embeddings of
// 20,000 inputs (850-1,020 ms in one block), and a tool result answering a call whose function
// name was 137,855 characters (echoed whole, streamed as 34,000 events: 525 ms). Embeddings are
// bounded as the vendors bound them (OpenAI: 2048 inputs, Gemini: 100 per batch, each refused
// with the vendor's own 400) and computed in slices; a tool's name is quoted within bounds.
// Through a real socket with the official SDK, and through the fuzzer's proxy child, which
// measures the CPU spent in its longest event-loop block (test/fuzz/stats.ts).
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { definePlugin } from '../core/plugin.ts'
import { demo } from '../plugins/vendors/demo.ts'
import { readDemoRequest } from '../plugins/vendors/demo-request.ts'
import { argumentsFor } from '../plugins/vendors/demo-tools.ts'
import type { MeshContext } from '../core/types.ts'
import type { ProxyChild } from './fuzz/child.ts'
import { sendRaw } from './fuzz/client.ts'
import {
  clearVendorEnv,
  openaiClient,
  postJson,
  sseEvents,
  startCoreProxy,
  type Proxy,
} from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'
import { startChildAndMock, stopChildAndMock } from './helpers/proxy-child.ts'

/** the fuzzer's stall limit: CPU in one block of the proxy's own work */
const STALL_MS = 100
const inputs = (n: number) =>
  Array.from({ length: n }, (_, i) => `input number ${i} of a batch to embed, 模型 ${i % 97}`)
const GEMINI = '/v1beta/models/gemini-embedding-001'

let proxy: Proxy
beforeAll(async () => {
  clearVendorEnv()
  proxy = await startCoreProxy({ preset: 'demo', plugins: [demo({ latencyMs: 0, chunkDelayMs: 0 })] })
})
afterAll(() => proxy.close())

describe('embeddings bounds', () => {
  it("OpenAI: 2049 inputs are refused with OpenAI's 400 invalid_request_error; 2048 answer the vectors each input gets alone", async () => {
    const oa = openaiClient(proxy)
    const err = await oa.embeddings
      .create({ model: 'text-embedding-3-small', input: inputs(2049), encoding_format: 'float' })
      .catch((e) => e)
    expect(err).toBeInstanceOf(OpenAI.BadRequestError)
    expect(err.status).toBe(400)
    expect(err.error).toMatchObject({ type: 'invalid_request_error', param: 'input', code: null })
    expect(err.error.message).toContain('2048')

    const all = await oa.embeddings.create({
      model: 'text-embedding-3-small',
      input: inputs(2048),
      encoding_format: 'float',
    })
    expect(all.data).toHaveLength(2048)
    expect(all.data.map((d) => d.index)).toEqual([...Array(2048).keys()])
    expect(all.usage.prompt_tokens).toBeGreaterThan(2048 * 10)
    // across the slices' edges (256 inputs each) the same vector as the input alone
    for (const i of [0, 255, 256, 1023, 2047]) {
      const alone = await oa.embeddings.create({
        model: 'text-embedding-3-small',
        input: inputs(2048)[i]!,
        encoding_format: 'float',
      })
      expect(all.data[i]!.embedding).toEqual(alone.data[0]!.embedding)
    }
  })

  it("Gemini: a batch of 101 is refused with Google's 400 INVALID_ARGUMENT; 100 answer each request's vector", async () => {
    const batch = (n: number) => ({
      requests: inputs(n).map((text) => ({ model: 'models/gemini-embedding-001', content: { parts: [{ text }] } })),
    })
    const refused = await postJson(proxy.url + GEMINI + ':batchEmbedContents', batch(101))
    expect(refused.status).toBe(400)
    expect((await refused.json()).error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT' })
    const res = await postJson(proxy.url + GEMINI + ':batchEmbedContents', batch(100))
    expect(res.status).toBe(200)
    const { embeddings } = await res.json()
    expect(embeddings).toHaveLength(100)
    const alone = await (
      await postJson(proxy.url + GEMINI + ':embedContent', { content: { parts: [{ text: inputs(100)[99] }] } })
    ).json()
    expect(embeddings[99].values).toEqual(alone.embedding.values)
  })
})

describe('tool results answered within bounds', () => {
  it('a tool call named with 137,855 characters: its result is answered quoting the name briefly, in a short stream', async () => {
    const name = '模 型 测 试 '.repeat(17_232).slice(0, 137_855)
    const res = await postJson(proxy.url + '/v1/chat/completions', toolResultBody(name))
    expect(res.status).toBe(200)
    const events = sseEvents(await res.text())
    expect(events.at(-1)!.data).toBe('[DONE]')
    expect(events.length).toBeLessThan(200)
    const text = events
      .slice(0, -1)
      .map((e) => JSON.parse(e.data).choices?.[0]?.delta?.content ?? '')
      .join('')
    expect(text).toContain('returned: "{"temp":21}"')
    expect(text.length).toBeLessThan(1000)
  })
})

describe('the answer in a turn of its own', () => {
  it('with no latency, timers set before the vendor call run before the demo computes its answer', async () => {
    // the demo's answer counts the input tokens: that call marks when its work ran
    const marks: string[] = []
    const marker = definePlugin({
      name: 'turn-marker',
      setup(mesh) {
        // the demo takes the sliced estimate (a large prompt's BPE gives the loop back); either marks
        const estimate = mesh.tokens.estimateInput.bind(mesh.tokens)
        const estimateAsync = mesh.tokens.estimateInputAsync.bind(mesh.tokens)
        mesh.tokens.estimateInput = (prompt, model) => {
          marks.push('estimate')
          return estimate(prompt, model)
        }
        mesh.tokens.estimateInputAsync = (prompt, model) => {
          marks.push('estimate')
          return estimateAsync(prompt, model)
        }
      },
      hooks: {
        route() {
          marks.length = 0
          setTimeout(() => marks.push('timer'), 0)
        },
      },
    })
    const p = await startCoreProxy({ preset: 'demo', plugins: [marker, demo({ latencyMs: 0, chunkDelayMs: 0 })] })
    try {
      for (const stream of [false, true]) {
        const res = await postJson(p.url + '/v1/chat/completions', {
          model: 'gpt-4o-mini',
          stream,
          messages: [{ role: 'user', content: `turns ${stream}` }],
        })
        expect(res.status).toBe(200)
        await res.text()
        // the request's own turn ends before the answer is made (a 5,401-turn answer held it 129 ms)
        expect(marks).toEqual(['timer', 'estimate'])
      }
    } finally {
      await p.close()
    }
  })
})

function toolResultBody(name: string) {
  return {
    model: 'gpt-4o-mini',
    stream: true,
    messages: [
      { role: 'user', content: 'What is the weather in Paris?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'call_1', type: 'function', function: { name, arguments: '{"city":"Paris"}' } }],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temp":21}' },
    ],
  }
}

describe('a conversation longer than any real one', () => {
  it('only its newest turns are read (120,238 messages read whole held the loop ~110 ms: npm run fuzz seed 1992691901 case 3826)', () => {
    const turn = (i: number) => [
      { role: 'user', content: `question ${i}` },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: `c${i}`, type: 'function', function: { name: 'f', arguments: '{}' } }],
      },
      { role: 'tool', tool_call_id: `c${i}`, content: `result ${i}` },
    ]
    const ctxOf = (messages: unknown[]) =>
      ({
        protocol: 'openai',
        prompt: {},
        request: { body: { model: 'gpt-4o-mini', messages } },
      }) as unknown as MeshContext
    const long: unknown[] = Array.from({ length: 40_000 }, (_, i) => turn(i)).flat()
    // the oldest message counts its reads: reading all 120,000 and then cutting reads it too
    let oldRead = 0
    long[0] = Object.defineProperty({ content: 'question 0' }, 'role', {
      enumerable: true,
      get: () => {
        oldRead++
        return 'user'
      },
    })
    const read = readDemoRequest(ctxOf(long))
    expect(oldRead).toBe(0)
    // what the newest 2,048 alone give: the last question and the last tool result
    expect(read).toEqual(readDemoRequest(ctxOf(long.slice(-2048))))
    expect(read.question).toBe('question 39999')
    expect(read.toolResults.map((r) => r.text)).toEqual(['result 39999'])
  })
})

describe('tool arguments from a schema with names of megabytes', () => {
  // npm run fuzz seed 555222016 case 3657: a `required` name of 3.4M characters was read by the
  // name regexes, copied into the arguments and counted, one block of ~600 ms
  it('a property name over 256 characters is passed over; the others are filled as before', () => {
    const huge = 'a\ud800 '.repeat(500_000)
    const schema = {
      type: 'object',
      properties: { city: { type: 'string' }, [huge]: { type: 'string', enum: [huge] } },
      required: ['city', huge, 'x'.repeat(257)],
    }
    const plain = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }
    const t0 = performance.now()
    const args = argumentsFor({ name: 'get_weather', description: '', schema }, 'What is the weather in Paris?')
    const ms = performance.now() - t0
    expect(Object.keys(args)).toEqual(['city'])
    expect(args).toEqual(
      argumentsFor({ name: 'get_weather', description: '', schema: plain }, 'What is the weather in Paris?'),
    )
    // the names are not even read: a regex over 4M characters alone takes tens of ms
    expect(ms).toBeLessThan(20)
  })
})

describe('the same requests through the proxy child: no block over the stall limit', () => {
  let mock: MockUpstream
  let child: ProxyChild
  let dataDir: string
  let port: number
  beforeAll(async () => {
    ;({ mock, child, dataDir } = await startChildAndMock('demo-bounds'))
    port = child.ports.demo!
    // the first request of each kind compiles code: not what is measured
    for (let i = 0; i < 3; i++) {
      await send('/v1/embeddings', { model: 'text-embedding-3-small', input: inputs(300) })
      await send('/v1/chat/completions', toolResultBody(`warm_${i}`))
    }
  }, 120_000)
  afterAll(() => stopChildAndMock({ mock, child, dataDir }))

  function send(path: string, body: unknown) {
    const bytes = Buffer.from(JSON.stringify(body))
    const head =
      `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\n` +
      `content-length: ${bytes.length}\r\nconnection: close\r\n\r\n`
    return sendRaw(port, Buffer.concat([Buffer.from(head), bytes]), { timeoutMs: 30_000 })
  }

  /** the status and the CPU the child spent in its longest block while answering */
  async function measured(path: string, body: unknown) {
    await child.stats({ reset: true })
    const r = await send(path, body)
    await new Promise((r) => setTimeout(r, 100)) // afterResponse (audit, events) runs after the answer
    const s = await child.stats()
    console.log(
      `demo-bounds ${path}: ${r.status}, longest block ${s.elMaxMs.toFixed(0)} ms, ${s.blockCpuMs.toFixed(0)} ms of CPU in it`,
    )
    return { status: r.status, body: r.body.toString(), blockCpuMs: s.blockCpuMs }
  }

  // as the fuzzer sent them: 20,000 short inputs in 125-142 KB
  const short = (n: number) => Array.from({ length: n }, (_, i) => `w${i}`)
  it.each([
    ['20,000 embeddings inputs (refused)', short(20_000), 400],
    ['2048 embeddings inputs (answered)', inputs(2048), 200],
  ])(
    '%s',
    async (_, input, status) => {
      const m = await measured('/v1/embeddings', { model: 'text-embedding-3-small', input, encoding_format: 'float' })
      expect(m.status, m.body.slice(0, 300)).toBe(status)
      expect(m.blockCpuMs).toBeLessThanOrEqual(STALL_MS)
    },
    60_000,
  )

  it('the tool result named with 137,855 characters (case 1365 of seed 1039025087)', async () => {
    const m = await measured('/v1/chat/completions', toolResultBody('模 型 测 试 '.repeat(17_232).slice(0, 137_855)))
    expect(m.status).toBe(200)
    expect(m.blockCpuMs).toBeLessThanOrEqual(STALL_MS)
  }, 60_000)
})
