// OpenAI Chat Completions through a real proxy, driven by the official openai SDK, against the
// mock upstream: bodies unchanged, keys, headers, usage from streams, tool-call round trips.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type OpenAI from 'openai'
import { definePlugin } from '../core/plugin.ts'
import type { MeshContext } from '../core/types.ts'
import {
  clearVendorEnv,
  governanceHeadersOf,
  openaiClient,
  startCoreMockAndProxy,
  until,
  type Proxy,
} from './helpers/core-harness.ts'
import { mockText, type MockUpstream } from './helpers/mock-upstream.ts'

const words = (s: string) => s.split(/\s+/).filter(Boolean).length

interface Seen {
  id: string
  usage: MeshContext['usage']
  status?: number
  text?: string
  aborted?: boolean
}
const seen: Seen[] = []
const recorder = definePlugin({
  name: 'test:recorder',
  hooks: {
    afterResponse(ctx) {
      seen.push({
        id: ctx.id,
        usage: { ...ctx.usage },
        status: ctx.status,
        text: ctx.answer?.text,
        aborted: ctx.aborted,
      })
    },
  },
})

const weatherTool: OpenAI.Chat.Completions.ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
}

let mock: MockUpstream
let proxy: Proxy
let client: OpenAI
let sent: string[]

beforeAll(async () => {
  clearVendorEnv()
  ;({ mock, proxy } = await startCoreMockAndProxy({ config: { plugins: [recorder] } }))
  sent = []
  client = openaiClient(proxy, sent)
})
afterAll(async () => {
  await proxy.close()
  await mock.close()
})

const lastReceived = () => mock.received.at(-1)!

describe('openai: non-streaming', () => {
  it('answers through the mock, with the upstream answer, usage and governance headers', async () => {
    const prompt = 'What is the capital of France?'
    const { data, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: prompt }] })
      .withResponse()
    expect(data.choices[0]!.message.content).toBe(mockText(prompt))
    expect(data.model).toBe('gpt-4o-mini-2025')
    const h = governanceHeadersOf(response.headers)
    expect(h['x-agentmesh-vendor']).toBe('openai')
    // the model that answered, not the one asked for
    expect(h['x-agentmesh-model']).toBe('gpt-4o-mini-2025')
    expect(Number(h['x-agentmesh-tokens'])).toBe(10 + words(prompt) + words(mockText(prompt)))
    expect(h['x-agentmesh-cache']).toBe('bypass')
    expect(response.headers.get('x-agentmesh-request-id')).toBe(seen.at(-1)!.id)
    expect(lastReceived().path).toBe('/v1/chat/completions')
  })

  it('sends the client body upstream byte for byte: tools, tool results, images, metadata, unknown fields', async () => {
    const before = sent.length
    const body = {
      model: 'gpt-4o-mini',
      messages: [
        { role: 'system', content: 'Be brief.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is in this picture, and the weather?' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'low' } },
          ],
        },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'call_9', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'call_9', content: 'rain, 4C' },
      ],
      tools: [weatherTool],
      tool_choice: 'auto',
      temperature: 0.2,
      metadata: { ticket: 'T-1234', team: 'eng' },
      store: false,
      x_agentmesh_unknown_field: { nested: [1, 'two', { three: true }] },
    }
    const res = await client.chat.completions.create(body as any)
    expect(res.choices[0]!.message.content).toBe(`tool said: ${JSON.stringify('rain, 4C')}`)
    expect(sent.length).toBe(before + 1)
    expect(lastReceived().raw).toBe(sent.at(-1))
    expect(lastReceived().body.x_agentmesh_unknown_field).toEqual({ nested: [1, 'two', { three: true }] })
    expect(lastReceived().body.messages[1].content[1].image_url.url).toBe('data:image/png;base64,iVBORw0KGgo=')
  })
})

describe('openai: streaming', () => {
  it('streams the answer; asks upstream for usage but hides that chunk from a client that did not ask', async () => {
    const prompt = 'Stream me a short answer please'
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: prompt }], stream: true })
      .withResponse()
    governanceHeadersOf(response.headers)
    expect(response.headers.get('content-type')).toContain('text/event-stream')
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = []
    for await (const c of stream) chunks.push(c)
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(mockText(prompt))
    expect(chunks.some((c) => c.usage)).toBe(false)
    expect(chunks.every((c) => c.choices.length > 0)).toBe(true)
    // what went up is the client's body plus stream_options.include_usage
    const clientBody = JSON.parse(sent.at(-1)!)
    expect(clientBody.stream_options).toBeUndefined()
    expect(lastReceived().body).toEqual({ ...clientBody, stream_options: { include_usage: true } })
    // and the proxy read the real usage from the stream
    const id = response.headers.get('x-agentmesh-request-id')!
    await until(() => seen.some((s) => s.id === id), 'afterResponse of the stream')
    const s = seen.find((x) => x.id === id)!
    expect(s.usage).toMatchObject({ inputTokens: 10 + words(prompt), outputTokens: words(mockText(prompt)) })
    expect(s.usage.estimated).toBeFalsy()
    expect(s.text).toBe(mockText(prompt))
    const call = proxy.events.find((e) => e.type === 'llm_call' && (e.data as any).id === id)!
    expect((call.data as any).usage.inputTokens).toBe(10 + words(prompt))
  })

  it('shows the usage chunk to a client that asked for it, and sends its body unchanged', async () => {
    const prompt = 'usage please'
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: prompt }],
      stream: true,
      stream_options: { include_usage: true },
    })
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = []
    for await (const c of stream) chunks.push(c)
    const usage = chunks.at(-1)!.usage!
    expect(usage.prompt_tokens).toBe(10 + words(prompt))
    expect(usage.completion_tokens).toBe(words(mockText(prompt)))
    expect(lastReceived().raw).toBe(sent.at(-1))
  })

  it('runs a streamed tool-call round trip', async () => {
    const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [
      { role: 'user', content: 'Weather in Paris, streamed?' },
    ]
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages,
      tools: [weatherTool],
      stream: true,
    })
    let id = ''
    let name = ''
    let args = ''
    let finish: string | null = null
    for await (const c of stream) {
      for (const tc of c.choices[0]?.delta.tool_calls ?? []) {
        id ||= tc.id ?? ''
        name += tc.function?.name ?? ''
        args += tc.function?.arguments ?? ''
      }
      finish = c.choices[0]?.finish_reason ?? finish
    }
    expect(finish).toBe('tool_calls')
    expect(name).toBe('get_weather')
    expect(JSON.parse(args)).toEqual({ city: 'Paris' })
    messages.push(
      { role: 'assistant', content: null, tool_calls: [{ id, type: 'function', function: { name, arguments: args } }] },
      { role: 'tool', tool_call_id: id, content: 'cloudy' },
    )
    const second = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages,
      tools: [weatherTool],
      stream: true,
    })
    let text = ''
    for await (const c of second) text += c.choices[0]?.delta.content ?? ''
    expect(text).toBe(`tool said: ${JSON.stringify('cloudy')}`)
    expect(lastReceived().body.messages.at(-1)).toEqual({ role: 'tool', tool_call_id: 'call_1', content: 'cloudy' })
  })
})

describe('openai: models and embeddings', () => {
  it('lists models in the OpenAI shape', async () => {
    const res = await fetch(proxy.url + '/v1/models')
    governanceHeadersOf(res.headers)
    expect((await res.json()).object).toBe('list')
    const ids: string[] = []
    for await (const m of client.models.list()) {
      expect(m.object).toBe('model')
      ids.push(m.id)
    }
    expect(ids).toContain('gpt-4o-mini')
    expect(ids).toContain('claude-sonnet-4-5')
    expect(ids).toContain('gemini-2.5-flash')
  })

  it('passes embeddings through with the body unchanged and the configured key', async () => {
    const { data, response } = await client.embeddings
      .create({
        model: 'text-embedding-3-small',
        input: ['first text', 'second'],
        encoding_format: 'float',
        dimensions: 2,
      })
      .withResponse()
    expect(data.data[0]!.embedding).toEqual([0.1, 0.2])
    expect(lastReceived().path).toBe('/v1/embeddings')
    expect(lastReceived().raw).toBe(sent.at(-1))
    expect(lastReceived().headers.authorization).toBe('Bearer sk-test-openai-configured')
    const h = governanceHeadersOf(response.headers)
    expect(h['x-agentmesh-vendor']).toBe('openai')
    expect(h['x-agentmesh-tokens']).toBe('3')
  })
})
