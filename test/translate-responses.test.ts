// Issue 16 item 1: the OpenAI SDK's Responses API asking for a Claude model is served by Anthropic,
// across turns: the proxy keeps the responses it produced and expands previous_response_id before
// translating; reasoning items are dropped with a header; the mock shows what Anthropic received.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type OpenAI from 'openai'
import { clearVendorEnv, openaiClient, postJson, startCoreMockAndProxy, type Proxy } from './helpers/core-harness.ts'
import { mockText, type MockUpstream } from './helpers/mock-upstream.ts'

const words = (s: string) => s.split(/\s+/).filter(Boolean).length
const weatherTool: OpenAI.Responses.FunctionTool = {
  type: 'function',
  name: 'get_weather',
  description: 'Weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  strict: false,
}

let mock: MockUpstream
let proxy: Proxy
let client: OpenAI

beforeAll(async () => {
  clearVendorEnv()
  ;({ mock, proxy } = await startCoreMockAndProxy())
  client = openaiClient(proxy)
})
afterAll(async () => {
  await proxy.close()
  await mock.close()
})

const last = () => mock.received.at(-1)!

describe('Responses API served by Anthropic', () => {
  it('runs a tool call across two turns with previous_response_id, whole answers', async () => {
    const first = await client.responses.create({
      model: 'claude-haiku-4-5',
      instructions: 'Be brief.',
      input: 'Weather in Paris?',
      tools: [weatherTool],
      max_output_tokens: 100,
    })
    expect(first.id).toMatch(/^resp_/)
    const call = first.output.find((i): i is OpenAI.Responses.ResponseFunctionToolCall => i.type === 'function_call')!
    expect(call).toMatchObject({ call_id: 'toolu_1', name: 'get_weather' })
    expect(JSON.parse(call.arguments)).toEqual({ city: 'Paris' })
    expect(last().path).toBe('/v1/messages')
    expect(last().body).toEqual({
      model: 'claude-haiku-4-5',
      max_tokens: 100,
      system: 'Be brief.',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Weather in Paris?' }] }],
      tools: [{ name: 'get_weather', description: 'Weather for a city', input_schema: weatherTool.parameters }],
    })
    const second = await client.responses.create({
      model: 'claude-haiku-4-5',
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: 'sunny, 21C' }],
      tools: [weatherTool],
    })
    expect(second.output_text).toBe(
      `tool said: ${JSON.stringify([{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'sunny, 21C' }])}`,
    )
    // the chain expanded: the first question, the call, its result (instructions are not inherited)
    expect(last().body.system).toBeUndefined()
    expect(last().body.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'Weather in Paris?' }] },
      {
        role: 'assistant',
        content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } }],
      },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'sunny, 21C' }] },
    ])
    expect(second.usage!.input_tokens).toBeGreaterThan(0)
    // a third turn continues from the second
    const third = await client.responses.create({
      model: 'claude-haiku-4-5',
      previous_response_id: second.id,
      input: 'Thanks! And tomorrow?',
    })
    expect(third.output_text).toBe(mockText('Thanks! And tomorrow?'))
    expect(last().body.messages).toHaveLength(5)
  })

  it('continues a translated chain at OpenAI when the next turn asks for an OpenAI model', async () => {
    const first = await client.responses.create({ model: 'claude-haiku-4-5', input: 'Start with Claude' })
    const second = await client.responses.create({
      model: 'gpt-5-mini',
      previous_response_id: first.id,
      input: 'Go on with GPT',
    })
    expect(second.output_text).toBe(mockText('Go on with GPT'))
    expect(last().path).toBe('/v1/responses')
    expect(last().body.previous_response_id).toBeUndefined()
    expect(last().body.input).toEqual([
      { type: 'message', role: 'user', content: 'Start with Claude' },
      {
        type: 'message',
        status: 'completed',
        role: 'assistant',
        content: [{ type: 'output_text', text: mockText('Start with Claude'), annotations: [], logprobs: [] }],
      },
      { type: 'message', role: 'user', content: 'Go on with GPT' },
    ])
  })

  it('streams both turns, the second continuing the streamed first', async () => {
    const stream = await client.responses.create({
      model: 'claude-haiku-4-5',
      input: 'Weather, streamed?',
      tools: [weatherTool],
      stream: true,
    })
    const types: string[] = []
    let done: OpenAI.Responses.Response | undefined
    let args = ''
    for await (const e of stream) {
      types.push(e.type)
      if (e.type === 'response.function_call_arguments.delta') args += e.delta
      if (e.type === 'response.completed') done = e.response
    }
    expect(types[0]).toBe('response.created')
    expect(types).toContain('response.output_item.added')
    expect(types.filter((t) => t === 'response.function_call_arguments.delta')).toHaveLength(2)
    expect(JSON.parse(args)).toEqual({ city: 'Paris' })
    const call = done!.output.find((i): i is OpenAI.Responses.ResponseFunctionToolCall => i.type === 'function_call')!
    expect(call.call_id).toBe('toolu_1')
    const second = await client.responses.create({
      model: 'claude-haiku-4-5',
      previous_response_id: done!.id,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: 'rain' }],
      tools: [weatherTool],
      stream: true,
    })
    let text = ''
    let usage: OpenAI.Responses.ResponseUsage | undefined
    for await (const e of second) {
      if (e.type === 'response.output_text.delta') text += e.delta
      if (e.type === 'response.completed') usage = e.response.usage ?? undefined
    }
    expect(text).toBe(
      `tool said: ${JSON.stringify([{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'rain' }])}`,
    )
    expect(usage!.output_tokens).toBe(words(text))
    expect(last().body.messages).toHaveLength(3)
  })

  it('drops reasoning items with a header, and refuses an id it did not issue', async () => {
    const res = await postJson(proxy.url + '/v1/responses', {
      model: 'claude-haiku-4-5',
      input: [
        { type: 'reasoning', id: 'rs_1', summary: [], encrypted_content: 'x' },
        { role: 'user', content: 'hi' },
      ],
      reasoning: { effort: 'low' },
    })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-agentmesh-translation-dropped')).toBe('reasoning, reasoning items (1)')
    expect(last().body.messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'hi' }] }])
    const unknown = await postJson(proxy.url + '/v1/responses', {
      model: 'claude-haiku-4-5',
      previous_response_id: 'resp_nope',
      input: 'hi',
    })
    expect(unknown.status).toBe(400)
    expect((await unknown.json()).error.message).toContain("Previous response with id 'resp_nope' not found")
    // another team cannot continue this team's chain
    const first = await (
      await postJson(
        proxy.url + '/v1/responses',
        { model: 'claude-haiku-4-5', input: 'mine' },
        { 'x-agentmesh-team': 'a' },
      )
    ).json()
    const other = await postJson(
      proxy.url + '/v1/responses',
      { model: 'claude-haiku-4-5', previous_response_id: first.id, input: 'theirs' },
      { 'x-agentmesh-team': 'b' },
    )
    expect(other.status).toBe(400)
  })

  it('leaves out an offered hosted tool with a header, and refuses one the request forces', async () => {
    const res = await postJson(proxy.url + '/v1/responses', {
      model: 'claude-haiku-4-5',
      input: 'search',
      tools: [{ type: 'web_search' }, weatherTool],
    })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-agentmesh-translation-dropped')).toBe('tool web_search')
    expect(last().body.tools.map((t: any) => t.name)).toEqual(['get_weather'])
    const forced = await postJson(proxy.url + '/v1/responses', {
      model: 'claude-haiku-4-5',
      input: 'search',
      tools: [{ type: 'web_search' }],
      tool_choice: { type: 'web_search' },
    })
    expect(forced.status).toBe(400)
    expect((await forced.json()).error.message).toContain('tool_choice')
  })
})
