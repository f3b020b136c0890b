// The OpenAI Responses API through a real proxy, driven by the official openai SDK against the
// mock upstream: bodies byte for byte, reasoning state kept, usage settled from the stream's final
// event, function-call round trips, the stored-state routes, input_tokens, cache and quota rules.
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { definePlugin } from '../core/plugin.ts'
import type { MeshContext } from '../core/types.ts'
import { exactCache } from '../plugins/exact-cache/index.ts'
import { quota } from '../plugins/quota/index.ts'
import {
  capturingFetch,
  clearVendorEnv,
  governanceHeadersOf,
  openaiClient,
  postJson,
  sseEvents,
  startCoreMockAndProxy,
  until,
  type Proxy,
} from './helpers/core-harness.ts'
import { MOCK_ENCRYPTED, MOCK_RESPONSES_INPUT_TOKENS } from './helpers/mock-responses.ts'
import { mockText, type MockUpstream } from './helpers/mock-upstream.ts'

const words = (s: string) => s.split(/\s+/).filter(Boolean).length

interface Seen {
  id: string
  usage: MeshContext['usage']
  status?: number
  text?: string
  aborted?: boolean
  cache: string
  tool: string
  cost: number
}
function recorder(seen: Seen[]) {
  return definePlugin({
    name: 'test:recorder',
    enforce: 'post',
    hooks: {
      afterResponse(ctx) {
        seen.push({
          id: ctx.id,
          usage: { ...ctx.usage },
          status: ctx.status,
          text: ctx.answer?.text,
          aborted: ctx.aborted,
          cache: ctx.cache.status,
          tool: ctx.identity.tool,
          cost: ctx.cost.usd,
        })
      },
    },
  })
}

const weather: OpenAI.Responses.FunctionTool = {
  type: 'function',
  name: 'get_weather',
  description: 'Weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  strict: false,
}

const textOf = (r: OpenAI.Responses.Response) =>
  r.output
    .flatMap((i) => (i.type === 'message' ? i.content : []))
    .map((c: any) => c.text ?? '')
    .join('')

beforeAll(() => clearVendorEnv())

describe('responses: the SDK against a mock OpenAI', () => {
  let mock: MockUpstream
  let proxy: Proxy
  let client: OpenAI
  const sent: string[] = []
  const seen: Seen[] = []
  beforeAll(async () => {
    ;({ mock, proxy } = await startCoreMockAndProxy({ config: { plugins: [recorder(seen)] } }))
    client = openaiClient(proxy, sent)
  })
  afterAll(async () => {
    await proxy.close()
    await mock.close()
  })
  const last = () => mock.received.at(-1)!

  it('responses.create: the body goes up byte for byte; the answer, its reasoning state and unknown fields come back; usage and headers', async () => {
    const prompt = 'What is the capital of France?'
    const { data, response } = await client.responses
      .create({
        model: 'gpt-5-mini',
        instructions: 'Be brief.',
        input: prompt,
        include: ['reasoning.encrypted_content'],
        metadata: { ticket: 'T-1' },
      })
      .withResponse()
    expect(textOf(data)).toBe(mockText(prompt))
    expect(last().path).toBe('/v1/responses')
    expect(last().raw).toBe(sent.at(-1))
    expect(last().headers.authorization).toBe('Bearer sk-test-openai-configured')
    const reasoning = data.output.find((i) => i.type === 'reasoning') as any
    expect(reasoning.encrypted_content).toBe(MOCK_ENCRYPTED)
    expect((data as any).x_mock_unknown_field).toEqual({ kept: true })
    const h = governanceHeadersOf(response.headers)
    expect(h['x-agentmesh-vendor']).toBe('openai')
    expect(h['x-agentmesh-model']).toBe('gpt-5-mini-2025-08-07')
    // reasoning tokens (7) are inside output_tokens: billed as output
    const input = 20 + words(prompt)
    const output = words(mockText(prompt)) + 7
    expect(Number(h['x-agentmesh-tokens'])).toBe(input + output)
    expect(seen.at(-1)!.usage).toMatchObject({ inputTokens: input, outputTokens: output, cacheReadTokens: 8 })
    expect(seen.at(-1)!.cost).toBeGreaterThan(0)
  })

  it('a function-call round trip, plain: the reasoning item and the call go back up untouched, the answer reads the result', async () => {
    const input: OpenAI.Responses.ResponseInput = [
      { role: 'user', content: [{ type: 'input_text', text: 'Weather in Paris?' }] },
    ]
    const first = await client.responses.create({
      model: 'gpt-5-mini',
      input,
      tools: [weather],
      store: false,
      include: ['reasoning.encrypted_content'],
    })
    const call = first.output.find((i) => i.type === 'function_call') as OpenAI.Responses.ResponseFunctionToolCall
    expect(call).toMatchObject({ name: 'get_weather', arguments: '{"city":"Paris"}' })
    const second = await client.responses.create({
      model: 'gpt-5-mini',
      input: [
        ...input,
        ...(first.output as any[]),
        { type: 'function_call_output', call_id: call.call_id, output: 'sunny, 21C' },
      ],
      tools: [weather],
      store: false,
    })
    expect(textOf(second)).toBe('tool said: sunny, 21C')
    expect(last().raw).toBe(sent.at(-1))
    const back = last().body.input.find((i: any) => i.type === 'reasoning')
    expect(back.encrypted_content).toBe(MOCK_ENCRYPTED)
    expect(last().raw).toContain(JSON.stringify(MOCK_ENCRYPTED))
  })

  it('responses.stream: events pass through, the helper assembles the answer, usage settles on the final event', async () => {
    const prompt = 'Tell me about streaming please'
    const stream = client.responses.stream({ model: 'gpt-5-mini', input: prompt })
    let deltas = ''
    for await (const e of stream) if (e.type === 'response.output_text.delta') deltas += e.delta
    const final = await stream.finalResponse()
    expect(deltas).toBe(mockText(prompt))
    expect(textOf(final)).toBe(mockText(prompt))
    expect(last().raw).toBe(sent.at(-1))
    await until(() => seen.some((s) => s.text === mockText(prompt)), 'the stream settled')
    const s = seen.find((x) => x.text === mockText(prompt))!
    expect(s.usage.estimated).toBeFalsy()
    expect(s.usage).toMatchObject({ inputTokens: 20 + words(prompt), outputTokens: words(mockText(prompt)) + 7 })
  })

  it('a function-call round trip, streamed', async () => {
    const input: any[] = [{ role: 'user', content: 'Weather in Oslo, streamed?' }]
    const s1 = client.responses.stream({ model: 'gpt-5-mini', input, tools: [weather] })
    const args: string[] = []
    s1.on('response.function_call_arguments.delta', (e) => args.push(e.delta))
    const first = await s1.finalResponse()
    expect(args.join('')).toBe('{"city":"Paris"}')
    const call = first.output.find((i) => i.type === 'function_call') as OpenAI.Responses.ResponseFunctionToolCall
    const s2 = client.responses.stream({
      model: 'gpt-5-mini',
      input: [
        ...input,
        ...first.output,
        { type: 'function_call_output', call_id: call.call_id, output: 'snow' },
      ] as any,
      tools: [weather],
    })
    expect(textOf(await s2.finalResponse())).toBe('tool said: snow')
    expect(last().raw).toBe(sent.at(-1))
  })

  it('unknown fields, item types and tools pass through byte for byte', async () => {
    const body = JSON.stringify({
      model: 'gpt-5-mini',
      input: [
        { type: 'item_reference', id: 'msg_abc' },
        {
          role: 'user',
          content: [
            { type: 'input_text', text: 'hi' },
            { type: 'input_image', image_url: 'data:image/png;base64,iVBORw0KGgo=' },
          ],
        },
      ],
      tools: [{ type: 'web_search' }, { type: 'x_future_tool', knobs: [1, 2] }],
      x_future_field: { a: [1, 'b'] },
      text: { format: { type: 'text' }, verbosity: 'low' },
    })
    const res = await postJson(`${proxy.url}/v1/responses`, body, { authorization: 'Bearer sk-x' })
    expect(res.status).toBe(200)
    expect(last().raw).toBe(body)
  })

  it('a stream cut before its final event ends with an error event; the request is settled as aborted', async () => {
    // paced, so the first events reach the client before the cut
    Object.assign(mock.behaviour, { cutAfterEvents: 4, eventGapMs: 5 })
    try {
      const stream = client.responses.stream({ model: 'gpt-5-mini', input: 'cut me off please' })
      await expect(stream.finalResponse()).rejects.toThrow(/stream (failed|ended)|incomplete/)
      const raw = await (
        await postJson(`${proxy.url}/v1/responses`, { model: 'gpt-5-mini', input: 'cut me off again', stream: true })
      ).text()
      const events = sseEvents(raw)
      expect(events.length).toBe(5)
      expect(events.at(-1)).toMatchObject({ event: 'error' })
      expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ type: 'error', code: 'upstream_stream_error' })
    } finally {
      Object.assign(mock.behaviour, { cutAfterEvents: undefined, eventGapMs: undefined })
    }
    await until(() => seen.at(-1)?.aborted === true, 'the aborted stream settled')
    expect(seen.at(-1)!.usage.inputTokens).toBeGreaterThan(0)
  })

  it('bad input is a 400 in the Responses error shape', async () => {
    for (const [body, pattern] of [
      [{ model: 'gpt-5-mini', input: 42 }, /`input` must be a string or an array/],
      [{ model: 'gpt-5-mini', input: 'x', max_output_tokens: 'many' }, /max_output_tokens/],
      [{ input: 'x' }, /`model` is required/],
      [{ model: 'gpt-5-mini', input: [7] }, /input\[0\] must be an object/],
    ] as const) {
      const res = await postJson(`${proxy.url}/v1/responses`, body)
      expect(res.status).toBe(400)
      const j = await res.json()
      expect(Object.keys(j.error).sort()).toEqual(['code', 'message', 'param', 'type'])
      expect(j.error.message).toMatch(pattern)
    }
    const before = mock.received.length
    await expect(client.responses.create({ model: 'gpt-5-mini', input: 42 as any })).rejects.toMatchObject({
      status: 400,
    })
    expect(mock.received.length).toBe(before)
  })

  it('input_tokens: the vendor counts when the proxy has a key', async () => {
    const { data, response } = await client.responses.inputTokens
      .count({ model: 'gpt-5-mini', input: 'count me' })
      .withResponse()
    expect(data.input_tokens).toBe(MOCK_RESPONSES_INPUT_TOKENS)
    expect(response.headers.get('x-agentmesh-usage')).toBeNull()
    expect(last().path).toBe('/v1/responses/input_tokens')
    expect(last().raw).toBe(sent.at(-1))
  })

  it('retrieve, input items, cancel and delete go to the vendor with their query', async () => {
    const created = await client.responses.create({ model: 'gpt-5-mini', input: 'keep me' })
    const got = await client.responses.retrieve(created.id, { include: ['reasoning.encrypted_content'] })
    expect(got.id).toBe(created.id)
    expect(last().path).toBe(`/v1/responses/${created.id}?include%5B%5D=reasoning.encrypted_content`)
    const items = await client.responses.inputItems.list(created.id, { limit: 5 })
    expect(items.data[0]).toMatchObject({ role: 'user', content: 'keep me' })
    expect(last().path).toBe(`/v1/responses/${created.id}/input_items?limit=5`)
    expect((await client.responses.cancel(created.id)).status).toBe('cancelled')
    await client.responses.delete(created.id)
    expect(last().headers.authorization).toBe('Bearer sk-test-openai-configured')
    const gone = await fetch(`${proxy.url}/v1/responses/${created.id}`)
    expect(gone.status).toBe(404)
    governanceHeadersOf(gone.headers)
  })
})

describe('responses: without a vendor key, input_tokens is estimated locally', () => {
  it('answers the Responses shape, marked estimated', async () => {
    const { mock, proxy } = await startCoreMockAndProxy({ keys: false })
    try {
      const { data, response } = await openaiClient(proxy)
        .responses.inputTokens.count({ model: 'gpt-5-mini', input: 'count me locally, please' })
        .withResponse()
      expect(response.headers.get('x-agentmesh-usage')).toBe('estimated')
      expect(data).toMatchObject({ object: 'response.input_tokens' })
      expect(data.input_tokens).toBeGreaterThan(3)
      expect(data.input_tokens).not.toBe(MOCK_RESPONSES_INPUT_TOKENS)
      expect(mock.received.length).toBe(0)
    } finally {
      await proxy.close()
      await mock.close()
    }
  })
})

describe('responses: exact cache and chains', () => {
  let mock: MockUpstream
  let proxy: Proxy
  const seen: Seen[] = []
  const team = (name: string) =>
    new OpenAI({
      baseURL: proxy.url + '/v1',
      apiKey: 'sk-client',
      maxRetries: 0,
      defaultHeaders: { 'X-AgentMesh-Team': name },
    })
  beforeAll(async () => {
    ;({ mock, proxy } = await startCoreMockAndProxy({
      config: { trustIdentityHeaders: true, plugins: [exactCache(), recorder(seen)] },
    }))
  })
  afterAll(async () => {
    await proxy.close()
    await mock.close()
  })

  it('a hit replays the vendor body to the stream helper with a fresh resp_ id, reasoning state intact', async () => {
    const c = team('eng')
    const params = {
      model: 'gpt-5-mini',
      input: 'Cache this answer',
      include: ['reasoning.encrypted_content' as const],
    }
    const first = await c.responses.create({ ...params })
    const calls = mock.received.length
    const stream = c.responses.stream({ ...params })
    const types: string[] = []
    stream.on('event', (e) => types.push(e.type))
    const hit = await stream.finalResponse()
    expect(mock.received.length).toBe(calls)
    expect(seen.at(-1)!.cache).toBe('exact')
    expect(hit.id).toMatch(/^resp_cache_/)
    expect(hit.id).not.toBe(first.id)
    expect(types[0]).toBe('response.created')
    expect(types.at(-1)).toBe('response.completed')
    const strip = (r: any) =>
      JSON.parse(JSON.stringify({ ...r, id: undefined, output_text: undefined, output_parsed: undefined }), (k, v) =>
        k === 'parsed' || k === 'parsed_arguments' ? undefined : v,
      )
    expect(strip(hit)).toEqual(strip(first))
    expect((hit.output[0] as any).encrypted_content).toBe(MOCK_ENCRYPTED)
  })

  it("continuing from a cached id reaches the vendor's stored response; the chain is cached for its team only", async () => {
    const eng = team('eng')
    await eng.responses.create({ model: 'gpt-5-mini', input: 'Start a chain' })
    const cached = await eng.responses.create({ model: 'gpt-5-mini', input: 'Start a chain' })
    expect(seen.at(-1)!.cache).toBe('exact')
    const next = await eng.responses.create({
      model: 'gpt-5-mini',
      input: 'and then?',
      previous_response_id: cached.id,
    })
    // the mock answers 400 to an id it never issued: the proxy sent the vendor's
    expect(textOf(next)).toBe(mockText('and then?'))
    expect(mock.received.at(-1)!.body.previous_response_id).toMatch(/^resp_mock_/)
    expect(seen.at(-1)!.cache).toBe('miss')
    await eng.responses.create({ model: 'gpt-5-mini', input: 'and then?', previous_response_id: cached.id })
    expect(seen.at(-1)!.cache).toBe('exact')
    // another team naming the same id is never served from the cache
    const ops = team('ops')
    await expect(
      ops.responses.create({ model: 'gpt-5-mini', input: 'and then?', previous_response_id: cached.id }),
    ).rejects.toMatchObject({ status: 400 })
    expect(seen.at(-1)!.cache).toBe('bypass')
  })

  it('a chain the proxy never saw is not cached', async () => {
    const direct = new OpenAI({ baseURL: mock.url + '/v1', apiKey: 'sk-direct', maxRetries: 0 })
    const elsewhere = await direct.responses.create({ model: 'gpt-5-mini', input: 'made without the proxy' })
    const eng = team('eng')
    for (let i = 0; i < 2; i++) {
      const r = await eng.responses.create({
        model: 'gpt-5-mini',
        input: 'continue',
        previous_response_id: elsewhere.id,
      })
      expect(textOf(r)).toBe(mockText('continue'))
      expect(seen.at(-1)!.cache).toBe('bypass')
    }
  })
})

describe('responses: quota', () => {
  it('a blocked team gets a 429 in the Responses error shape, with Retry-After, and nothing goes upstream', async () => {
    const { mock, proxy } = await startCoreMockAndProxy({
      config: { trustIdentityHeaders: true, plugins: [quota({ limits: { teams: { tiny: { tokensPerDay: 50 } } } })] },
    })
    try {
      const res = await postJson(
        `${proxy.url}/v1/responses`,
        { model: 'gpt-5-mini', input: 'a question', max_output_tokens: 500 },
        { 'x-agentmesh-team': 'tiny' },
      )
      expect(res.status).toBe(429)
      expect(res.headers.get('retry-after')).toMatch(/^\d+$/)
      const j = await res.json()
      expect(Object.keys(j.error).sort()).toEqual(['code', 'message', 'param', 'type'])
      expect(mock.received.length).toBe(0)
      // the reservation counts max_output_tokens: a small one fits
      const ok = await postJson(
        `${proxy.url}/v1/responses`,
        { model: 'gpt-5-mini', input: 'a question', max_output_tokens: 16 },
        { 'x-agentmesh-team': 'tiny' },
      )
      expect(ok.status).toBe(200)
      const sdk = new OpenAI({
        baseURL: proxy.url + '/v1',
        apiKey: 'sk-client',
        maxRetries: 0,
        defaultHeaders: { 'X-AgentMesh-Team': 'tiny' },
        fetch: capturingFetch([]),
      })
      await expect(
        sdk.responses.create({ model: 'gpt-5-mini', input: 'a question', max_output_tokens: 500 }),
      ).rejects.toMatchObject({ status: 429 })
    } finally {
      await proxy.close()
      await mock.close()
    }
  })
})
