// One suite over every client protocol, as unstorage's testDriver() runs one suite over every
// driver: each protocol's official SDK asks through a real proxy in front of the mock upstream,
// and the same things must hold for all four (the answer, the governance headers, the usage the
// proxy settles on, the body and key that reach the vendor, streams, a tool-call round trip).
// What is particular to one protocol stays in its own file (core-openai, core-anthropic, ...).
import Anthropic from '@anthropic-ai/sdk'
import { GoogleGenAI } from '@google/genai'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { definePlugin } from '../core/plugin.ts'
import type { MeshContext } from '../core/types.ts'
import {
  clearVendorEnv,
  governanceHeadersOf,
  startCoreMockAndProxy,
  until,
  type Proxy,
} from './helpers/core-harness.ts'
import { mockText, type MockUpstream } from './helpers/mock-upstream.ts'

interface Settled {
  id: string
  usage: MeshContext['usage']
  text?: string
  rawBody: string
}
const settled: Settled[] = []
// what the proxy received and settled on, per request id
const recorder = definePlugin({
  name: 'test:settled',
  hooks: {
    afterResponse: (ctx) =>
      void settled.push({ id: ctx.id, usage: { ...ctx.usage }, text: ctx.answer?.text, rawBody: ctx.request.rawBody }),
  },
})

let mock: MockUpstream
let proxy: Proxy
beforeAll(async () => {
  clearVendorEnv()
  ;({ mock, proxy } = await startCoreMockAndProxy({ config: { plugins: [recorder] } }))
})
afterAll(async () => {
  await proxy.close()
  await mock.close()
})

/** what a protocol's SDK got back: the text and the response headers */
interface Reply {
  text: string
  headers: Headers
}

/** One client protocol, driven by its official SDK. */
interface Driver {
  name: string
  vendor: string
  /** the upstream path a chat call reaches */
  path: RegExp
  /** the header carrying the configured vendor key upstream, and its value */
  key: [string, string]
  /** the key the client itself sent, which must not reach the vendor */
  clientKey: string
  /** what the vendor gets for a streamed request's body (the same bytes, unless the proxy must add something) */
  streamedUpstream?(clientBody: string): string
  ask(question: string): Promise<Reply>
  stream(question: string): Promise<Reply>
  /** ask for the weather with a get_weather tool, answer the call with `result`; the final text */
  toolRoundTrip(result: string): Promise<{ call: { name: string; args: unknown }; final: string }>
  /** start a stream, read its first piece of text, then hang up (the SDK's abort signal) */
  streamThenAbort(question: string): Promise<void>
}

const weather = {
  name: 'get_weather',
  description: 'Weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
}

function openaiDriver(): Driver {
  const client = () => new OpenAI({ baseURL: proxy.url + '/v1', apiKey: 'sk-client-openai-key', maxRetries: 0 })
  const tools = [{ type: 'function' as const, function: weather }]
  return {
    name: 'openai chat completions',
    vendor: 'openai',
    path: /^\/v1\/chat\/completions$/,
    key: ['authorization', 'Bearer sk-test-openai-configured'],
    clientKey: 'sk-client-openai-key',
    // usage only comes in a stream when asked for: the proxy asks (and hides that chunk from the client)
    streamedUpstream: (body) => JSON.stringify({ ...JSON.parse(body), stream_options: { include_usage: true } }),
    async ask(q) {
      const { data, response } = await client()
        .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: q }] })
        .withResponse()
      return { text: data.choices[0]!.message.content ?? '', headers: response.headers }
    },
    async stream(q) {
      const { data, response } = await client()
        .chat.completions.create({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: q }] })
        .withResponse()
      let text = ''
      for await (const c of data) text += c.choices[0]?.delta?.content ?? ''
      return { text, headers: response.headers }
    },
    async toolRoundTrip(result) {
      const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [
        { role: 'user', content: 'Weather in Paris?' },
      ]
      const first = await client().chat.completions.create({ model: 'gpt-4o-mini', messages, tools })
      const call = first.choices[0]!.message
        .tool_calls![0] as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall
      messages.push(first.choices[0]!.message, { role: 'tool', tool_call_id: call.id, content: result })
      const second = await client().chat.completions.create({ model: 'gpt-4o-mini', messages, tools })
      return {
        call: { name: call.function.name, args: JSON.parse(call.function.arguments) },
        final: second.choices[0]!.message.content ?? '',
      }
    },
    async streamThenAbort(q) {
      const ac = new AbortController()
      const s = await client().chat.completions.create(
        { model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: q }] },
        { signal: ac.signal },
      )
      for await (const c of s) if (c.choices[0]?.delta?.content) break
      ac.abort()
    },
  }
}

function responsesDriver(): Driver {
  const client = () => new OpenAI({ baseURL: proxy.url + '/v1', apiKey: 'sk-client-openai-key', maxRetries: 0 })
  const tools = [{ type: 'function' as const, strict: false, ...weather }]
  return {
    name: 'openai responses',
    vendor: 'openai',
    path: /^\/v1\/responses$/,
    key: ['authorization', 'Bearer sk-test-openai-configured'],
    clientKey: 'sk-client-openai-key',
    async ask(q) {
      const { data, response } = await client().responses.create({ model: 'gpt-4o-mini', input: q }).withResponse()
      return { text: data.output_text, headers: response.headers }
    },
    async stream(q) {
      const { data, response } = await client()
        .responses.create({ model: 'gpt-4o-mini', input: q, stream: true })
        .withResponse()
      let text = ''
      for await (const e of data) if (e.type === 'response.output_text.delta') text += e.delta
      return { text, headers: response.headers }
    },
    async toolRoundTrip(result) {
      const first = await client().responses.create({ model: 'gpt-4o-mini', input: 'Weather in Paris?', tools })
      const call = first.output.find((o): o is OpenAI.Responses.ResponseFunctionToolCall => o.type === 'function_call')!
      const second = await client().responses.create({
        model: 'gpt-4o-mini',
        tools,
        input: [
          { role: 'user', content: 'Weather in Paris?' },
          call,
          { type: 'function_call_output', call_id: call.call_id, output: result },
        ],
      })
      return { call: { name: call.name, args: JSON.parse(call.arguments) }, final: second.output_text }
    },
    async streamThenAbort(q) {
      const ac = new AbortController()
      const s = await client().responses.create({ model: 'gpt-4o-mini', input: q, stream: true }, { signal: ac.signal })
      for await (const e of s) if (e.type === 'response.output_text.delta') break
      ac.abort()
    },
  }
}

function anthropicDriver(): Driver {
  const client = () => new Anthropic({ baseURL: proxy.url, apiKey: 'sk-ant-client-key', maxRetries: 0 })
  const tools: Anthropic.Tool[] = [
    {
      name: weather.name,
      description: weather.description,
      input_schema: weather.parameters as Anthropic.Tool['input_schema'],
    },
  ]
  const text = (m: Anthropic.Message) => m.content.map((b) => (b.type === 'text' ? b.text : '')).join('')
  return {
    name: 'anthropic messages',
    vendor: 'anthropic',
    path: /^\/v1\/messages$/,
    key: ['x-api-key', 'sk-ant-test-configured'],
    clientKey: 'sk-ant-client-key',
    async ask(q) {
      const { data, response } = await client()
        .messages.create({ model: 'claude-haiku-4-5', max_tokens: 100, messages: [{ role: 'user', content: q }] })
        .withResponse()
      return { text: text(data), headers: response.headers }
    },
    async stream(q) {
      const s = client().messages.stream({
        model: 'claude-haiku-4-5',
        max_tokens: 100,
        messages: [{ role: 'user', content: q }],
      })
      let streamed = ''
      s.on('text', (t) => {
        streamed += t
      })
      await s.finalMessage()
      return { text: streamed, headers: (await s.withResponse()).response.headers }
    },
    async toolRoundTrip(result) {
      const messages: Anthropic.MessageParam[] = [{ role: 'user', content: 'Weather in Paris?' }]
      const first = await client().messages.create({ model: 'claude-haiku-4-5', max_tokens: 100, messages, tools })
      const use = first.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use')!
      messages.push(
        { role: 'assistant', content: first.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: result }] },
      )
      const second = await client().messages.create({ model: 'claude-haiku-4-5', max_tokens: 100, messages, tools })
      return { call: { name: use.name, args: use.input }, final: text(second) }
    },
    async streamThenAbort(q) {
      const ac = new AbortController()
      const s = await client().messages.create(
        { model: 'claude-haiku-4-5', max_tokens: 100, stream: true, messages: [{ role: 'user', content: q }] },
        { signal: ac.signal },
      )
      for await (const e of s) if (e.type === 'content_block_delta') break
      ac.abort()
    },
  }
}

function geminiDriver(): Driver {
  // the SDK's fetch is the global one: headers come back through the raw HTTP response
  const client = () =>
    new GoogleGenAI({
      apiKey: 'AIza-client-key',
      httpOptions: { baseUrl: proxy.url, apiVersion: 'v1beta', retryOptions: { attempts: 1 } },
    })
  const headersOf = (r: { sdkHttpResponse?: { headers?: Record<string, string> } }) =>
    new Headers(r.sdkHttpResponse?.headers ?? {})
  const tools = [
    {
      functionDeclarations: [
        { name: weather.name, description: weather.description, parametersJsonSchema: weather.parameters },
      ],
    },
  ]
  return {
    name: 'gemini',
    vendor: 'google',
    path: /^\/v1beta\/models\/gemini-2\.5-flash:(generateContent|streamGenerateContent\?alt=sse)$/,
    key: ['x-goog-api-key', 'AIza-test-configured'],
    clientKey: 'AIza-client-key',
    async ask(q) {
      const r = await client().models.generateContent({ model: 'gemini-2.5-flash', contents: q })
      return { text: r.text ?? '', headers: headersOf(r) }
    },
    async stream(q) {
      let text = ''
      let headers = new Headers()
      for await (const c of await client().models.generateContentStream({ model: 'gemini-2.5-flash', contents: q })) {
        text += c.text ?? ''
        if (c.sdkHttpResponse?.headers) headers = headersOf(c)
      }
      return { text, headers }
    },
    async toolRoundTrip(result) {
      const ask = { role: 'user', parts: [{ text: 'Weather in Paris?' }] }
      const first = await client().models.generateContent({
        model: 'gemini-2.5-flash',
        contents: [ask],
        config: { tools },
      })
      const call = first.functionCalls![0]!
      const second = await client().models.generateContent({
        model: 'gemini-2.5-flash',
        contents: [
          ask,
          { role: 'model', parts: [{ functionCall: call }] },
          { role: 'user', parts: [{ functionResponse: { name: call.name, response: { result } } }] },
        ],
        config: { tools },
      })
      return { call: { name: call.name!, args: call.args }, final: second.text ?? '' }
    },
    async streamThenAbort(q) {
      const ac = new AbortController()
      for await (const c of await client().models.generateContentStream({
        model: 'gemini-2.5-flash',
        contents: q,
        config: { abortSignal: ac.signal },
      }))
        if (c.text) break
      ac.abort()
    },
  }
}

const drivers = [openaiDriver, responsesDriver, anthropicDriver, geminiDriver]

const settledFor = async (headers: Headers): Promise<Settled> => {
  const id = headers.get('x-agentmesh-request-id')!
  await until(() => settled.some((s) => s.id === id), `request ${id} to settle`)
  return settled.find((s) => s.id === id)!
}

describe.each(drivers.map((d) => [d().name, d] as const))('%s', (_name, make) => {
  const d = make()

  it('answers through the vendor, with governance headers that match what was settled', async () => {
    const q = `What is the capital of France, asks ${d.name}?`
    const before = mock.received.length
    const r = await d.ask(q)
    expect(r.text).toBe(mockText(q))
    const h = governanceHeadersOf(r.headers)
    expect(h['x-agentmesh-vendor']).toBe(d.vendor)
    expect(h['x-agentmesh-cache']).toBe('bypass')
    const s = await settledFor(r.headers)
    expect(s.usage.estimated).toBeFalsy()
    expect(s.usage.inputTokens).toBeGreaterThan(0)
    expect(Number(h['x-agentmesh-tokens'])).toBe(s.usage.inputTokens + s.usage.outputTokens)
    expect(mock.received.length).toBe(before + 1)
    expect(mock.received.at(-1)!.path).toMatch(d.path)
  })

  it('sends the SDK body byte for byte, with the configured key and never the client key', async () => {
    const r = await d.ask(`byte for byte, ${d.name}`)
    const got = mock.received.at(-1)!
    expect(got.raw).toBe((await settledFor(r.headers)).rawBody)
    expect(got.headers[d.key[0]]).toBe(d.key[1])
    expect(JSON.stringify(got.headers)).not.toContain(d.clientKey)
  })

  it('streams the answer and settles on the usage the stream reported', async () => {
    const q = `Stream a short answer for ${d.name}`
    const r = await d.stream(q)
    expect(r.text).toBe(mockText(q))
    const s = await settledFor(r.headers)
    expect(mock.received.at(-1)!.raw).toBe(d.streamedUpstream ? d.streamedUpstream(s.rawBody) : s.rawBody)
    expect(s.text).toBe(mockText(q))
    expect(s.usage.estimated).toBeFalsy()
    expect(s.usage.outputTokens).toBeGreaterThan(0)
  })

  it('runs a tool-call round trip', async () => {
    const { call, final } = await d.toolRoundTrip('sunny, 21C')
    expect(call).toEqual({ name: 'get_weather', args: { city: 'Paris' } })
    expect(final).toContain('tool said')
    expect(final).toContain('sunny, 21C')
    expect(mock.received.at(-1)!.raw).toBe(settled.at(-1)!.rawBody)
  })

  it("passes the vendor's own error through with its status, as the SDK's own error", async () => {
    for (const status of [400, 429, 500]) {
      mock.behaviour.status = status
      try {
        const err = await d.ask(`an error ${status} for ${d.name}`).then(
          () => undefined,
          (e) => e,
        )
        expect(err, `status ${status}`).toBeInstanceOf(Error)
        expect(err.status, `status ${status}`).toBe(status)
      } finally {
        mock.behaviour.status = undefined
      }
    }
  })

  it('a stream the vendor cuts off mid-way fails in the SDK, never ends as if complete', async () => {
    mock.behaviour.cutAfterEvents = 2
    try {
      const q = `cut me off, ${d.name}, after a few words of the answer please`
      const out = await d.stream(q).then(
        (r) => r,
        (e: Error) => e,
      )
      expect(out).toBeInstanceOf(Error)
    } finally {
      mock.behaviour.cutAfterEvents = undefined
    }
  })

  it('a client that hangs up mid-stream ends the call to the vendor', async () => {
    const before = mock.aborted
    mock.behaviour.eventGapMs = 200
    try {
      await d.streamThenAbort(`hang up on this long answer, ${d.name}, one two three four five six`)
      await until(() => mock.aborted > before, 'the upstream call to be aborted', 5000)
    } finally {
      mock.behaviour.eventGapMs = undefined
    }
  })
})
