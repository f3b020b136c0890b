// Issue 16 item 1: the official Anthropic SDK asking for an OpenAI model is served by OpenAI
// through translation (whole and streamed, tool-call round trips), and a Gemini client by
// Anthropic; the mock upstream shows what the vendor received.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type Anthropic from '@anthropic-ai/sdk'
import { definePlugin } from '../core/plugin.ts'
import type { MeshContext } from '../core/types.ts'
import {
  anthropicClient,
  clearVendorEnv,
  postJson,
  sseEvents,
  startCoreMockAndProxy,
  until,
  type Proxy,
} from './helpers/core-harness.ts'
import { mockText, type MockUpstream } from './helpers/mock-upstream.ts'

const words = (s: string) => s.split(/\s+/).filter(Boolean).length
const seen: Array<{ id: string; usage: MeshContext['usage'] }> = []
const recorder = definePlugin({
  name: 'test:recorder',
  hooks: {
    afterResponse(ctx) {
      seen.push({ id: ctx.id, usage: { ...ctx.usage } })
    },
  },
})

const weatherTool: Anthropic.Tool = {
  name: 'get_weather',
  description: 'Weather for a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
}

let mock: MockUpstream
let proxy: Proxy
let client: Anthropic

beforeAll(async () => {
  clearVendorEnv()
  ;({ mock, proxy } = await startCoreMockAndProxy({ config: { plugins: [recorder] } }))
  client = anthropicClient(proxy)
})
afterAll(async () => {
  await proxy.close()
  await mock.close()
})

const last = () => mock.received.at(-1)!

describe('Anthropic SDK served by OpenAI', () => {
  it('answers a whole request: system prompt, parameters, image, metadata', async () => {
    const prompt = 'Describe this'
    // temperature is a Messages API field the SDK's types of this version leave out
    const params = {
      model: 'gpt-4o-mini',
      max_tokens: 200,
      system: 'Be brief.',
      temperature: 0.5,
      stop_sequences: ['STOP'],
      metadata: { user_id: 'u-7' },
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: prompt },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
          ],
        },
      ],
    } as unknown as Anthropic.MessageCreateParamsNonStreaming
    const { data, response } = await client.messages.create(params).withResponse()
    expect(data.content).toEqual([{ type: 'text', text: mockText(prompt) }])
    expect(data.stop_reason).toBe('end_turn')
    expect(data.usage.input_tokens).toBe(10 + words(prompt))
    expect(data.usage.output_tokens).toBe(words(mockText(prompt)))
    expect(response.headers.get('x-agentmesh-vendor')).toBe('openai')
    expect(response.headers.get('x-agentmesh-translated')).toBe('anthropic->openai')
    expect(last().path).toBe('/v1/chat/completions')
    expect(last().headers.authorization).toBe('Bearer sk-test-openai-configured')
    expect(last().body).toEqual({
      model: 'gpt-4o-mini',
      messages: [
        { role: 'system', content: 'Be brief.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: prompt },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
          ],
        },
      ],
      stop: ['STOP'],
      temperature: 0.5,
      max_completion_tokens: 200,
      user: 'u-7',
    })
  })

  it('runs a tool-call round trip, whole answers', async () => {
    const messages: Anthropic.MessageParam[] = [{ role: 'user', content: 'Weather in Paris?' }]
    const first = await client.messages.create({
      model: 'gpt-4o-mini',
      max_tokens: 100,
      messages,
      tools: [weatherTool],
      tool_choice: { type: 'tool', name: 'get_weather' },
    })
    expect(first.stop_reason).toBe('tool_use')
    const use = first.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use')!
    expect(use).toMatchObject({ id: 'call_1', name: 'get_weather', input: { city: 'Paris' } })
    expect(last().body.tools).toEqual([
      {
        type: 'function',
        function: { name: 'get_weather', description: 'Weather for a city', parameters: weatherTool.input_schema },
      },
    ])
    expect(last().body.tool_choice).toEqual({ type: 'function', function: { name: 'get_weather' } })
    messages.push(
      { role: 'assistant', content: first.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'sunny, 21C' }] },
    )
    const second = await client.messages.create({
      model: 'gpt-4o-mini',
      max_tokens: 100,
      messages,
      tools: [weatherTool],
    })
    expect(second.content).toEqual([{ type: 'text', text: `tool said: ${JSON.stringify('sunny, 21C')}` }])
    expect(last().body.messages).toEqual([
      { role: 'user', content: 'Weather in Paris?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: 'sunny, 21C' },
    ])
  })

  it('streams text with real usage, asking OpenAI for the usage chunk', async () => {
    const prompt = 'Stream it please'
    const stream = client.messages.stream({
      model: 'gpt-4o-mini',
      max_tokens: 100,
      messages: [{ role: 'user', content: prompt }],
    })
    const deltas: string[] = []
    stream.on('text', (t) => deltas.push(t))
    const final = await stream.finalMessage()
    expect(deltas.join('')).toBe(mockText(prompt))
    expect(deltas.length).toBe(words(mockText(prompt)))
    expect(final.stop_reason).toBe('end_turn')
    expect(final.usage.output_tokens).toBe(words(mockText(prompt)))
    expect(last().body.stream_options).toEqual({ include_usage: true })
    const id = (await stream.withResponse()).response.headers.get('x-agentmesh-request-id')!
    await until(() => seen.some((s) => s.id === id), 'afterResponse')
    expect(seen.find((s) => s.id === id)!.usage).toMatchObject({
      inputTokens: 10 + words(prompt),
      outputTokens: words(mockText(prompt)),
    })
  })

  it('runs a streamed tool-call round trip (tool_calls deltas into input_json_delta)', async () => {
    const messages: Anthropic.MessageParam[] = [{ role: 'user', content: 'Weather, streamed?' }]
    const stream = client.messages.stream({ model: 'gpt-4o-mini', max_tokens: 100, messages, tools: [weatherTool] })
    const partial: string[] = []
    stream.on('inputJson', (p) => partial.push(p))
    const final = await stream.finalMessage()
    expect(final.stop_reason).toBe('tool_use')
    const use = final.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use')!
    expect(use).toMatchObject({ id: 'call_1', name: 'get_weather', input: { city: 'Paris' } })
    expect(partial.join('')).toBe('{"city":"Paris"}')
    messages.push(
      { role: 'assistant', content: final.content },
      {
        role: 'user',
        content: [{ type: 'tool_result', tool_use_id: use.id, content: [{ type: 'text', text: 'cloudy' }] }],
      },
    )
    const second = client.messages.stream({ model: 'gpt-4o-mini', max_tokens: 100, messages, tools: [weatherTool] })
    expect(await second.finalText()).toBe(`tool said: ${JSON.stringify('cloudy')}`)
  })

  it('answers a feature OpenAI lacks with a 400 in the Anthropic shape, and a vendor error in it', async () => {
    const res = await postJson(proxy.url + '/v1/messages', {
      model: 'gpt-4o-mini',
      max_tokens: 10,
      top_k: 5,
      messages: [{ role: 'user', content: 'hi' }],
    })
    expect(res.status).toBe(400)
    const body = await res.json()
    expect(body).toMatchObject({ type: 'error', error: { type: 'unsupported_feature' } })
    expect(body.error.message).toContain('top_k')
    mock.behaviour.status = 500
    try {
      const err = await postJson(proxy.url + '/v1/messages', {
        model: 'gpt-4o-mini',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'hi' }],
      })
      expect(err.status).toBe(500)
      expect(await err.json()).toEqual({
        type: 'error',
        error: { type: 'api_error', message: 'openai: mock failure 500' },
      })
    } finally {
      delete mock.behaviour.status
    }
  })

  it('names dropped bookkeeping in a header (thinking)', async () => {
    const res = await postJson(proxy.url + '/v1/messages', {
      model: 'gpt-4o-mini',
      max_tokens: 10,
      thinking: { type: 'enabled', budget_tokens: 1024 },
      messages: [{ role: 'user', content: 'hi' }],
    })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-agentmesh-translation-dropped')).toBe('thinking')
  })
})

describe('a Gemini client served by Anthropic', () => {
  it('answers whole and streamed (alt=sse)', async () => {
    const body = {
      contents: [{ role: 'user', parts: [{ text: 'Hello Claude' }] }],
      systemInstruction: { parts: [{ text: 'Be kind.' }] },
      generationConfig: { maxOutputTokens: 64, temperature: 0.1 },
    }
    const res = await postJson(proxy.url + '/v1beta/models/claude-haiku-4-5:generateContent', body)
    expect(res.status).toBe(200)
    const json = await res.json()
    expect(json.candidates[0].content.parts[0].text).toBe(mockText('Hello Claude'))
    expect(json.usageMetadata.promptTokenCount).toBe(10 + words('Hello Claude'))
    expect(last().body).toEqual({
      model: 'claude-haiku-4-5',
      max_tokens: 64,
      system: 'Be kind.',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Hello Claude' }] }],
      temperature: 0.1,
    })
    const streamed = await postJson(proxy.url + '/v1beta/models/claude-haiku-4-5:streamGenerateContent?alt=sse', body)
    const events = sseEvents(await streamed.text()).map((e) => JSON.parse(e.data))
    expect(events.map((e) => e.candidates[0].content.parts[0]?.text ?? '').join('')).toBe(mockText('Hello Claude'))
    expect(events.at(-1).candidates[0].finishReason).toBe('STOP')
    expect(events.at(-1).usageMetadata.promptTokenCount).toBe(10 + words('Hello Claude'))
    // without alt=sse a Gemini stream is one JSON array, built from the vendor's whole answer
    const array = await postJson(proxy.url + '/v1beta/models/claude-haiku-4-5:streamGenerateContent', body)
    expect(last().body.stream).toBeUndefined()
    const chunks = await array.json()
    expect(chunks.map((c: any) => c.candidates[0].content.parts[0]?.text ?? '').join('')).toBe(mockText('Hello Claude'))
  })

  it('runs a function-call round trip served by OpenAI', async () => {
    const tools = [
      {
        functionDeclarations: [
          {
            name: 'get_weather',
            description: 'Weather for a city',
            parameters: { type: 'object', properties: { city: { type: 'string' } } },
          },
        ],
      },
    ]
    const contents: any[] = [{ role: 'user', parts: [{ text: 'Weather in Paris?' }] }]
    const first = await (
      await postJson(proxy.url + '/v1beta/models/gpt-4o-mini:generateContent', { contents, tools })
    ).json()
    const call = first.candidates[0].content.parts[0].functionCall
    expect(call).toEqual({ name: 'get_weather', args: { city: 'Paris' } })
    expect(last().body.tools).toEqual([
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Weather for a city',
          parameters: tools[0]!.functionDeclarations[0]!.parameters,
        },
      },
    ])
    contents.push(first.candidates[0].content, {
      role: 'user',
      parts: [{ functionResponse: { name: 'get_weather', response: { forecast: 'sunny' } } }],
    })
    const second = await (
      await postJson(proxy.url + '/v1beta/models/gpt-4o-mini:streamGenerateContent?alt=sse', { contents, tools })
    ).text()
    const text = sseEvents(second)
      .map((e) => JSON.parse(e.data).candidates[0].content.parts[0]?.text ?? '')
      .join('')
    expect(text).toBe(`tool said: ${JSON.stringify(JSON.stringify({ forecast: 'sunny' }))}`)
    // the call and its result are matched by name; the result goes up as the tool message of that call
    expect(last().body.messages.slice(1)).toEqual([
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'call_0', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_0', content: JSON.stringify({ forecast: 'sunny' }) },
    ])
  })
})
