// Anthropic Messages through a real proxy, driven by the official @anthropic-ai/sdk, against the
// mock upstream: bodies unchanged, both auth headers, usage from streams, tool-call round trips.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type Anthropic from '@anthropic-ai/sdk'
import { definePlugin } from '../core/plugin.ts'
import type { MeshContext } from '../core/types.ts'
import {
  anthropicClient,
  clearVendorEnv,
  governanceHeadersOf,
  startCoreMockAndProxy,
  type Proxy,
} from './helpers/core-harness.ts'
import { mockText, type MockUpstream } from './helpers/mock-upstream.ts'

const words = (s: string) => s.split(/\s+/).filter(Boolean).length

const seen: Array<{ id: string; usage: MeshContext['usage']; text?: string }> = []
const recorder = definePlugin({
  name: 'test:recorder',
  hooks: { afterResponse: (ctx) => void seen.push({ id: ctx.id, usage: { ...ctx.usage }, text: ctx.answer?.text }) },
})

const weatherTool: Anthropic.Tool = {
  name: 'get_weather',
  description: 'Weather for a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
}

let mock: MockUpstream
let proxy: Proxy
let client: Anthropic
let sent: string[]

beforeAll(async () => {
  clearVendorEnv()
  ;({ mock, proxy } = await startCoreMockAndProxy({ config: { plugins: [recorder] } }))
  sent = []
  client = anthropicClient(proxy, sent)
})
afterAll(async () => {
  await proxy.close()
  await mock.close()
})

const lastReceived = () => mock.received.at(-1)!

describe('anthropic: non-streaming', () => {
  it('answers through the mock with usage and governance headers', async () => {
    const prompt = 'Name three primary colours'
    const { data, response } = await client.messages
      .create({ model: 'claude-haiku-4-5', max_tokens: 100, messages: [{ role: 'user', content: prompt }] })
      .withResponse()
    expect(data.content).toEqual([{ type: 'text', text: mockText(prompt) }])
    expect(data.model).toBe('claude-haiku-4-5-20250101')
    const h = governanceHeadersOf(response.headers)
    expect(h['x-agentmesh-vendor']).toBe('anthropic')
    expect(h['x-agentmesh-model']).toBe('claude-haiku-4-5-20250101')
    expect(Number(h['x-agentmesh-tokens'])).toBe(10 + words(prompt) + words(mockText(prompt)))
    expect(lastReceived().path).toBe('/v1/messages')
    expect(lastReceived().raw).toBe(sent.at(-1))
  })

  it('sends the client body upstream byte for byte: tools, tool results, images, metadata, unknown fields', async () => {
    const body = {
      model: 'claude-haiku-4-5',
      max_tokens: 200,
      system: [{ type: 'text', text: 'Be brief.', cache_control: { type: 'ephemeral' } }],
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Describe this and check the weather' },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
          ],
        },
        {
          role: 'assistant',
          content: [{ type: 'tool_use', id: 'toolu_9', name: 'get_weather', input: { city: 'Oslo' } }],
        },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_9', content: 'rain, 4C' }] },
      ],
      tools: [weatherTool],
      metadata: { user_id: 'user-42' },
      x_agentmesh_unknown_field: { keep: ['me', 1] },
    }
    const res = await client.messages.create(body as any, { headers: { 'anthropic-beta': 'test-beta-2025-01-01' } })
    expect(res.content[0]).toMatchObject({
      type: 'text',
      text: `tool said: ${JSON.stringify(body.messages[2]!.content)}`,
    })
    expect(lastReceived().raw).toBe(sent.at(-1))
    expect(lastReceived().body.x_agentmesh_unknown_field).toEqual({ keep: ['me', 1] })
    expect(lastReceived().body.messages[0].content[1].source.data).toBe('iVBORw0KGgo=')
    // the version and beta headers the client chose reach the vendor
    expect(lastReceived().headers['anthropic-version']).toMatch(/^\d{4}-\d{2}-\d{2}$/)
    expect(lastReceived().headers['anthropic-beta']).toBe('test-beta-2025-01-01')
  })
})

describe('anthropic: keys', () => {
  it('replaces the client x-api-key with the configured key', async () => {
    await client.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'key check' }],
    })
    expect(lastReceived().headers['x-api-key']).toBe('sk-ant-test-configured')
    expect(JSON.stringify(lastReceived().headers)).not.toContain('sk-ant-client-key')
  })

  it('accepts Authorization: Bearer (authToken) from the client', async () => {
    const bearer = anthropicClient(proxy, sent, { authToken: 'sk-ant-bearer-token' })
    const res = await bearer.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'bearer check' }],
    })
    expect(res.content[0]).toMatchObject({ text: mockText('bearer check') })
    expect(lastReceived().headers['x-api-key']).toBe('sk-ant-test-configured')
    expect(lastReceived().headers.authorization).toBeUndefined()
  })
})

describe('anthropic: streaming', () => {
  it('runs a streamed tool-call round trip with the SDK stream helper', async () => {
    const messages: Anthropic.MessageParam[] = [{ role: 'user', content: 'Weather in Paris, streamed?' }]
    const first = await client.messages
      .stream({ model: 'claude-haiku-4-5', max_tokens: 100, messages, tools: [weatherTool] })
      .finalMessage()
    expect(first.stop_reason).toBe('tool_use')
    const use = first.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use')!
    expect(use).toMatchObject({ id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } })
    messages.push(
      { role: 'assistant', content: first.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'cloudy' }] },
    )
    const second = await client.messages
      .stream({ model: 'claude-haiku-4-5', max_tokens: 100, messages, tools: [weatherTool] })
      .finalMessage()
    expect(second.content[0]).toMatchObject({
      type: 'text',
      text: `tool said: ${JSON.stringify([{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'cloudy' }])}`,
    })
    expect(lastReceived().raw).toBe(sent.at(-1))
  })
})

describe('anthropic: models and count_tokens', () => {
  it('lists models in the Anthropic shape', async () => {
    const ids: string[] = []
    for await (const m of client.models.list()) {
      expect(m.type).toBe('model')
      ids.push(m.id)
    }
    expect(ids).toContain('claude-haiku-4-5')
  })

  it('counts tokens at Anthropic when a key is configured (issue 12: the exact count); nothing is spent', async () => {
    const before = mock.received.length
    const { data, response } = await client.messages
      .countTokens({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hi' }] })
      .withResponse()
    expect(governanceHeadersOf(response.headers)).toMatchObject({
      'x-agentmesh-model': 'claude-haiku-4-5',
      'x-agentmesh-tokens': '0',
    })
    // the mock's count, not the local estimate
    expect(data.input_tokens).toBe(4242)
    expect(mock.received.length).toBe(before + 1)
    expect(mock.received.at(-1)!.path).toBe('/v1/messages/count_tokens')
  })

  it('rejects count_tokens without messages in the Anthropic error shape', async () => {
    const res = await fetch(proxy.url + '/v1/messages/count_tokens', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'claude-haiku-4-5' }),
    })
    expect(res.status).toBe(400)
    const body = await res.json()
    expect(body).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } })
    expect(body.error.message).toContain('messages')
  })
})
