// Issue 16 item 1: the official OpenAI SDK (Chat Completions) asking for a Claude or a Gemini model
// is served by that vendor through translation, whole answers and streams, tool calls included;
// the mock upstream shows what the vendor received.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type OpenAI from 'openai'
import { definePlugin } from '../core/plugin.ts'
import type { MeshContext } from '../core/types.ts'
import {
  clearVendorEnv,
  openaiClient,
  postJson,
  sseEvents,
  startCoreMockAndProxy,
  until,
  type Proxy,
} from './helpers/core-harness.ts'
import { mockText, type MockUpstream } from './helpers/mock-upstream.ts'

const words = (s: string) => s.split(/\s+/).filter(Boolean).length
const seen: Array<{ id: string; usage: MeshContext['usage']; vendor: string; status?: number }> = []
const recorder = definePlugin({
  name: 'test:recorder',
  hooks: {
    afterResponse(ctx) {
      seen.push({ id: ctx.id, usage: { ...ctx.usage }, vendor: ctx.route.vendor, status: ctx.status })
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

beforeAll(async () => {
  clearVendorEnv()
  ;({ mock, proxy } = await startCoreMockAndProxy({ config: { plugins: [recorder] } }))
  client = openaiClient(proxy)
})
afterAll(async () => {
  await proxy.close()
  await mock.close()
})

const last = () => mock.received.at(-1)!
const usageOf = async (id: string) => {
  await until(() => seen.some((s) => s.id === id), 'afterResponse')
  return seen.find((s) => s.id === id)!
}

describe('OpenAI SDK served by Anthropic', () => {
  it('answers a whole request: system prompt, parameters, image, usage in OpenAI terms', async () => {
    const prompt = 'What is in this picture?'
    const { data, response } = await client.chat.completions
      .create({
        model: 'claude-haiku-4-5',
        messages: [
          { role: 'system', content: 'Be brief.' },
          {
            role: 'user',
            content: [
              { type: 'text', text: prompt },
              { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
              { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } },
            ],
          },
        ],
        temperature: 0.2,
        top_p: 0.9,
        max_tokens: 100,
        stop: ['END'],
        user: 'u-1',
      })
      .withResponse()
    expect(data.choices[0]!.message.content).toBe(mockText(prompt))
    expect(data.choices[0]!.finish_reason).toBe('stop')
    expect(data.usage!.prompt_tokens).toBe(10 + words(prompt))
    expect(data.usage!.completion_tokens).toBe(words(mockText(prompt)))
    expect(response.headers.get('x-agentmesh-vendor')).toBe('anthropic')
    expect(response.headers.get('x-agentmesh-translated')).toBe('openai->anthropic')
    expect(last().path).toBe('/v1/messages')
    expect(last().headers['x-api-key']).toBe('sk-ant-test-configured')
    expect(last().body).toEqual({
      model: 'claude-haiku-4-5',
      max_tokens: 100,
      system: 'Be brief.',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: prompt },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
            { type: 'image', source: { type: 'url', url: 'https://example.com/cat.png' } },
          ],
        },
      ],
      stop_sequences: ['END'],
      temperature: 0.2,
      top_p: 0.9,
      metadata: { user_id: 'u-1' },
    })
    const s = await usageOf(response.headers.get('x-agentmesh-request-id')!)
    expect(s.usage.inputTokens).toBe(10 + words(prompt))
  })

  it('runs a tool-call round trip, whole answers', async () => {
    const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [
      { role: 'user', content: 'Weather in Paris?' },
    ]
    const first = await client.chat.completions.create({
      model: 'claude-haiku-4-5',
      messages,
      tools: [weatherTool],
      tool_choice: 'auto',
    })
    const choice = first.choices[0]!
    expect(choice.finish_reason).toBe('tool_calls')
    const call = choice.message.tool_calls![0]! as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall
    expect(call).toMatchObject({ id: 'toolu_1', type: 'function', function: { name: 'get_weather' } })
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'Paris' })
    expect(last().body.tools).toEqual([
      { name: 'get_weather', description: 'Weather for a city', input_schema: weatherTool.function.parameters },
    ])
    expect(last().body.tool_choice).toEqual({ type: 'auto' })
    messages.push(choice.message, { role: 'tool', tool_call_id: call.id, content: 'sunny, 21C' })
    const second = await client.chat.completions.create({ model: 'claude-haiku-4-5', messages, tools: [weatherTool] })
    // the mock echoes the last user turn's content: the tool result, as Anthropic receives it
    expect(second.choices[0]!.message.content).toBe(
      `tool said: ${JSON.stringify([{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'sunny, 21C' }])}`,
    )
    expect(last().body.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'Weather in Paris?' }] },
      {
        role: 'assistant',
        content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } }],
      },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'sunny, 21C' }] },
    ])
  })

  it('sends parallel tool results in one user turn', async () => {
    await client.chat.completions.create({
      model: 'claude-haiku-4-5',
      messages: [
        { role: 'user', content: 'Weather in Paris and Oslo?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
            { id: 'c2', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'c1', content: 'sunny' },
        { role: 'tool', tool_call_id: 'c2', content: 'rain' },
      ],
      tools: [weatherTool],
      parallel_tool_calls: false,
    })
    expect(last().body.messages.at(-1)).toEqual({
      role: 'user',
      content: [
        { type: 'tool_result', tool_use_id: 'c1', content: 'sunny' },
        { type: 'tool_result', tool_use_id: 'c2', content: 'rain' },
      ],
    })
    expect(last().body.messages[1].content).toHaveLength(2)
    expect(last().body.tool_choice).toEqual({ type: 'auto', disable_parallel_tool_use: true })
  })

  it('streams text event by event, with the usage chunk the client asked for and real usage billed', async () => {
    const prompt = 'Stream me something'
    const { data: stream, response } = await client.chat.completions
      .create({
        model: 'claude-haiku-4-5',
        messages: [{ role: 'user', content: prompt }],
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse()
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = []
    for await (const c of stream) chunks.push(c)
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(mockText(prompt))
    expect(chunks.filter((c) => c.choices[0]?.delta.content).length).toBe(words(mockText(prompt)))
    expect(chunks.find((c) => c.choices[0]?.finish_reason)!.choices[0]!.finish_reason).toBe('stop')
    expect(chunks.at(-1)!.usage).toMatchObject({
      prompt_tokens: 10 + words(prompt),
      completion_tokens: words(mockText(prompt)),
    })
    expect(last().body.stream).toBe(true)
    const s = await usageOf(response.headers.get('x-agentmesh-request-id')!)
    expect(s.usage).toMatchObject({ inputTokens: 10 + words(prompt), outputTokens: words(mockText(prompt)) })
    expect(s.usage.estimated).toBeFalsy()
  })

  it('runs a streamed tool-call round trip (input_json_delta into tool_calls deltas)', async () => {
    const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [
      { role: 'user', content: 'Weather, streamed?' },
    ]
    const stream = await client.chat.completions.create({
      model: 'claude-haiku-4-5',
      messages,
      tools: [weatherTool],
      stream: true,
    })
    let id = ''
    let name = ''
    let args = ''
    let finish: string | null = null
    let argChunks = 0
    for await (const c of stream) {
      for (const tc of c.choices[0]?.delta.tool_calls ?? []) {
        id ||= tc.id ?? ''
        name += tc.function?.name ?? ''
        if (tc.function?.arguments) argChunks++
        args += tc.function?.arguments ?? ''
      }
      finish = c.choices[0]?.finish_reason ?? finish
    }
    expect({ id, name, finish, argChunks }).toEqual({
      id: 'toolu_1',
      name: 'get_weather',
      finish: 'tool_calls',
      argChunks: 2,
    })
    expect(JSON.parse(args)).toEqual({ city: 'Paris' })
    messages.push(
      { role: 'assistant', content: null, tool_calls: [{ id, type: 'function', function: { name, arguments: args } }] },
      { role: 'tool', tool_call_id: id, content: 'cloudy' },
    )
    const second = await client.chat.completions.create({
      model: 'claude-haiku-4-5',
      messages,
      tools: [weatherTool],
      stream: true,
    })
    let text = ''
    for await (const c of second) text += c.choices[0]?.delta.content ?? ''
    expect(text).toBe(
      `tool said: ${JSON.stringify([{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'cloudy' }])}`,
    )
  })

  it('ends a stream cut mid-way with the OpenAI error event, billed on what was seen', async () => {
    // a gap between events, so that the first ones reach the proxy before the cut
    Object.assign(mock.behaviour, { cutAfterEvents: 3, eventGapMs: 20 })
    try {
      const res = await postJson(proxy.url + '/v1/chat/completions', {
        model: 'claude-haiku-4-5',
        messages: [{ role: 'user', content: 'cut me off please' }],
        stream: true,
      })
      expect(res.status).toBe(200)
      const events = sseEvents(await res.text())
      expect(JSON.parse(events[0]!.data).choices[0].delta.role).toBe('assistant')
      const lastEvent = JSON.parse(events.at(-1)!.data)
      expect(lastEvent.error.type).toBe('upstream_stream_error')
      expect(events.some((e) => e.data === '[DONE]')).toBe(false)
      const s = await usageOf(res.headers.get('x-agentmesh-request-id')!)
      expect(s.usage.inputTokens).toBeGreaterThan(0)
    } finally {
      delete mock.behaviour.cutAfterEvents
      delete mock.behaviour.eventGapMs
    }
  })

  it('answers a feature Anthropic lacks with a 400 in the OpenAI shape naming it', async () => {
    const before = mock.received.length
    const res = await postJson(proxy.url + '/v1/chat/completions', {
      model: 'claude-haiku-4-5',
      messages: [{ role: 'user', content: 'hi' }],
      response_format: { type: 'json_object' },
    })
    expect(res.status).toBe(400)
    const body = await res.json()
    expect(body.error.type).toBe('unsupported_feature')
    expect(body.error.message).toContain('json_object')
    const logprobs = await postJson(proxy.url + '/v1/chat/completions', {
      model: 'claude-haiku-4-5',
      messages: [{ role: 'user', content: 'hi' }],
      logprobs: true,
    })
    expect(logprobs.status).toBe(400)
    expect((await logprobs.json()).error.message).toContain('`logprobs`')
    const n = await postJson(proxy.url + '/v1/chat/completions', {
      model: 'claude-haiku-4-5',
      messages: [{ role: 'user', content: 'hi' }],
      n: 2,
    })
    expect(n.status).toBe(400)
    expect((await n.json()).error.message).toContain('`n`')
    expect(mock.received.length).toBe(before)
  })

  it('names reasoning_effort and metadata as dropped in a header', async () => {
    const res = await postJson(proxy.url + '/v1/chat/completions', {
      model: 'claude-haiku-4-5',
      messages: [{ role: 'user', content: 'hi' }],
      reasoning_effort: 'low',
      metadata: { ticket: 'T-1' },
    })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-agentmesh-translation-dropped')).toBe('metadata, reasoning_effort')
    expect(Object.keys(last().body).sort()).toEqual(['max_tokens', 'messages', 'model'])
  })

  it('maps a vendor error to the OpenAI error shape and status', async () => {
    mock.behaviour.status = 429
    try {
      const res = await postJson(proxy.url + '/v1/chat/completions', {
        model: 'claude-haiku-4-5',
        messages: [{ role: 'user', content: 'hi' }],
      })
      expect(res.status).toBe(429)
      const body = await res.json()
      expect(body.error).toMatchObject({ type: 'rate_limit_error', message: 'anthropic: mock failure 429' })
    } finally {
      delete mock.behaviour.status
    }
  })
})

describe('OpenAI SDK served by Gemini', () => {
  it('answers a whole request with a JSON schema and parameters', async () => {
    const prompt = 'Name a colour'
    const schema = { type: 'object', properties: { colour: { type: 'string' } } }
    const { data, response } = await client.chat.completions
      .create({
        model: 'gemini-2.5-flash',
        messages: [
          { role: 'system', content: 'JSON only.' },
          { role: 'user', content: prompt },
        ],
        response_format: { type: 'json_schema', json_schema: { name: 'colour', schema } },
        max_completion_tokens: 50,
        temperature: 0,
        seed: 7,
      })
      .withResponse()
    expect(data.choices[0]!.message.content).toBe(mockText(prompt))
    expect(data.usage!.prompt_tokens).toBe(10 + words(prompt))
    expect(response.headers.get('x-agentmesh-translated')).toBe('openai->gemini')
    expect(last().path).toBe('/v1beta/models/gemini-2.5-flash:generateContent')
    expect(last().headers['x-goog-api-key']).toBe('AIza-test-configured')
    expect(last().body).toEqual({
      contents: [{ role: 'user', parts: [{ text: prompt }] }],
      systemInstruction: { parts: [{ text: 'JSON only.' }] },
      generationConfig: {
        temperature: 0,
        seed: 7,
        maxOutputTokens: 50,
        responseMimeType: 'application/json',
        responseJsonSchema: schema,
      },
    })
  })

  it('runs a tool-call round trip, whole answers', async () => {
    const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [
      { role: 'user', content: 'Weather in Paris?' },
    ]
    const first = await client.chat.completions.create({
      model: 'gemini-2.5-flash',
      messages,
      tools: [weatherTool],
      tool_choice: 'required',
    })
    const choice = first.choices[0]!
    expect(choice.finish_reason).toBe('tool_calls')
    const call = choice.message.tool_calls![0]! as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall
    expect(call.function.name).toBe('get_weather')
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'Paris' })
    expect(last().body.tools).toEqual([
      {
        functionDeclarations: [
          {
            name: 'get_weather',
            description: 'Weather for a city',
            parametersJsonSchema: weatherTool.function.parameters,
          },
        ],
      },
    ])
    expect(last().body.toolConfig).toEqual({ functionCallingConfig: { mode: 'ANY' } })
    messages.push(choice.message, { role: 'tool', tool_call_id: call.id, content: 'sunny' })
    const second = await client.chat.completions.create({ model: 'gemini-2.5-flash', messages, tools: [weatherTool] })
    expect(second.choices[0]!.message.content).toBe(`tool said: ${JSON.stringify({ content: 'sunny' })}`)
    expect(last().body.contents.slice(1)).toEqual([
      { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } } }] },
      { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { content: 'sunny' } } }] },
    ])
  })

  it('streams text and a tool call, with usage', async () => {
    const prompt = 'Stream from Gemini'
    const { data: stream, response } = await client.chat.completions
      .create({
        model: 'gemini-2.5-flash',
        messages: [{ role: 'user', content: prompt }],
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse()
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = []
    for await (const c of stream) chunks.push(c)
    expect(last().path).toBe('/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse')
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(mockText(prompt))
    expect(chunks.at(-1)!.usage!.prompt_tokens).toBe(10 + words(prompt))
    const s = await usageOf(response.headers.get('x-agentmesh-request-id')!)
    expect(s.usage.inputTokens).toBe(10 + words(prompt))

    const tools = await client.chat.completions.create({
      model: 'gemini-2.5-flash',
      messages: [{ role: 'user', content: 'Weather?' }],
      tools: [weatherTool],
      stream: true,
    })
    let args = ''
    let id = ''
    let finish: string | null = null
    for await (const c of tools) {
      for (const tc of c.choices[0]?.delta.tool_calls ?? []) {
        id ||= tc.id ?? ''
        args += tc.function?.arguments ?? ''
      }
      finish = c.choices[0]?.finish_reason ?? finish
    }
    expect(finish).toBe('tool_calls')
    expect(JSON.parse(args)).toEqual({ city: 'Paris' })
    const second = await client.chat.completions.create({
      model: 'gemini-2.5-flash',
      messages: [
        { role: 'user', content: 'Weather?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id, type: 'function', function: { name: 'get_weather', arguments: args } }],
        },
        { role: 'tool', tool_call_id: id, content: 'fog' },
      ],
      tools: [weatherTool],
      stream: true,
    })
    let text = ''
    for await (const c of second) text += c.choices[0]?.delta.content ?? ''
    expect(text).toBe(`tool said: ${JSON.stringify({ content: 'fog' })}`)
  })

  it('refuses an image by URL for Gemini with a 400 naming it', async () => {
    const res = await postJson(proxy.url + '/v1/chat/completions', {
      model: 'gemini-2.5-flash',
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] }],
    })
    expect(res.status).toBe(400)
    expect((await res.json()).error.message).toContain('image by URL')
  })
})
