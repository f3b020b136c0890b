// The demo vendor as a faithful stand-in for a real one (issue 12, item 4): it honours the output
// token limit, calls tools deterministically and answers their results, serves base64 embeddings,
// keeps one abort listener per response, marks every answer as a demo, and quotes the question
// rather than a Claude Code <system-reminder>. Through a real socket with the official SDKs.
import { getEventListeners } from 'node:events'
import Anthropic from '@anthropic-ai/sdk'
import { betaTool } from '@anthropic-ai/sdk/helpers/beta/json-schema'
import type OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { definePlugin } from '../core/plugin.ts'
import { demo } from '../plugins/vendors/demo.ts'
import {
  anthropicClient,
  capturingFetch,
  clearVendorEnv,
  openaiClient,
  postJson,
  sseEvents,
  startCoreProxy,
  startProxy,
  type Proxy,
} from './helpers/core-harness.ts'

let proxy: Proxy
beforeAll(async () => {
  clearVendorEnv()
  proxy = await startCoreProxy({ preset: 'demo', plugins: [demo({ latencyMs: 0, chunkDelayMs: 0 })] })
})
afterAll(() => proxy.close())

const GEMINI = '/v1beta/models/gemini-2.5-flash'
const geminiText = (json: any): string => (json.candidates[0].content.parts as any[]).map((p) => p.text ?? '').join('')
const geminiStream = async (body: unknown, base = proxy.url) => {
  const res = await postJson(base + GEMINI + ':streamGenerateContent?alt=sse', body)
  return { res, chunks: sseEvents(await res.text()).map((e) => JSON.parse(e.data)) }
}
const geminiChunksText = (chunks: any[]) => chunks.map(geminiText).join('')

describe('max tokens', () => {
  const prompt = 'Tell me everything about exact and semantic caching in a governance proxy.'

  it('OpenAI: stops at max_tokens / max_completion_tokens with finish_reason "length", streamed too', async () => {
    const oa = openaiClient(proxy)
    const whole = (
      await oa.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: prompt }] })
    ).choices[0]!.message.content!
    const cut = await oa.chat.completions.create({
      model: 'gpt-4o-mini',
      max_tokens: 6,
      messages: [{ role: 'user', content: prompt }],
    })
    expect(cut.choices[0]!.finish_reason).toBe('length')
    expect(cut.usage!.completion_tokens).toBeGreaterThan(0)
    expect(cut.usage!.completion_tokens).toBeLessThanOrEqual(6)
    const text = cut.choices[0]!.message.content!
    expect(text.length).toBeLessThan(whole.length)
    expect(whole.startsWith(text)).toBe(true)

    const stream = await oa.chat.completions
      .stream({
        model: 'gpt-4o-mini',
        max_completion_tokens: 6,
        messages: [{ role: 'user', content: prompt }],
        stream_options: { include_usage: true },
      })
      .finalChatCompletion()
    expect(stream.choices[0]!.finish_reason).toBe('length')
    expect(stream.usage!.completion_tokens).toBeLessThanOrEqual(6)
    expect(whole.startsWith(stream.choices[0]!.message.content!)).toBe(true)
  })

  it('Anthropic: stops at max_tokens with stop_reason "max_tokens", streamed too', async () => {
    const an = anthropicClient(proxy)
    const whole = await an.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 1024,
      messages: [{ role: 'user', content: prompt }],
    })
    expect(whole.stop_reason).toBe('end_turn')
    const cut = await an.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 8,
      messages: [{ role: 'user', content: prompt }],
    })
    expect(cut.stop_reason).toBe('max_tokens')
    expect(cut.usage.output_tokens).toBeGreaterThan(0)
    expect(cut.usage.output_tokens).toBeLessThanOrEqual(8)
    const text = (cut.content[0] as Anthropic.TextBlock).text
    expect(text.length).toBeLessThan((whole.content[0] as Anthropic.TextBlock).text.length)
    const streamed = await an.messages
      .stream({ model: 'claude-haiku-4-5', max_tokens: 8, messages: [{ role: 'user', content: prompt }] })
      .finalMessage()
    expect(streamed.stop_reason).toBe('max_tokens')
    expect((streamed.content[0] as Anthropic.TextBlock).text).toBe(text)
    expect(streamed.usage.output_tokens).toBe(cut.usage.output_tokens)
  })

  it('Gemini: stops at generationConfig.maxOutputTokens (and snake_case max_output_tokens) with MAX_TOKENS, streamed too', async () => {
    const contents = [{ role: 'user', parts: [{ text: prompt }] }]
    const whole = await (await postJson(proxy.url + GEMINI + ':generateContent', { contents })).json()
    const cut = await (
      await postJson(proxy.url + GEMINI + ':generateContent', { contents, generationConfig: { maxOutputTokens: 7 } })
    ).json()
    expect(cut.candidates[0].finishReason).toBe('MAX_TOKENS')
    expect(cut.usageMetadata.candidatesTokenCount).toBeGreaterThan(0)
    expect(cut.usageMetadata.candidatesTokenCount).toBeLessThanOrEqual(7)
    expect(geminiText(whole).startsWith(geminiText(cut))).toBe(true)
    expect(geminiText(cut).length).toBeLessThan(geminiText(whole).length)
    const { chunks } = await geminiStream({ contents, generationConfig: { maxOutputTokens: 7 } })
    expect(chunks.at(-1).candidates[0].finishReason).toBe('MAX_TOKENS')
    expect(geminiChunksText(chunks)).toBe(geminiText(cut))
    // the REST API also takes the proto field names
    const snake = await (
      await postJson(proxy.url + GEMINI + ':generateContent', { contents, generation_config: { max_output_tokens: 7 } })
    ).json()
    expect(snake.candidates[0].finishReason).toBe('MAX_TOKENS')
    expect(geminiText(snake)).toBe(geminiText(cut))
  })
})

const WEATHER = {
  name: 'get_weather',
  description: 'Get the current weather for a city.',
  schema: {
    type: 'object',
    properties: {
      city: { type: 'string', description: 'the city name' },
      unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
      days: { type: 'integer', minimum: 1, maximum: 7 },
    },
    required: ['city', 'unit'],
  },
}
// every kind of schema the arguments must fit: lengths, enums, bounds, nesting, formats, refs, defaults
const TICKET = {
  name: 'create_ticket',
  description: 'Open a ticket in the issue tracker.',
  schema: {
    type: 'object',
    properties: {
      title: { type: 'string', minLength: 24, maxLength: 80 },
      priority: { type: 'string', enum: ['low', 'normal', 'high'] },
      estimate: { type: 'integer', minimum: 2, maximum: 8 },
      ratio: { type: 'number', exclusiveMinimum: 1 },
      labels: { type: 'array', items: { type: 'string', enum: ['bug', 'feature'] }, minItems: 2 },
      assignee: {
        type: 'object',
        properties: { email: { type: 'string', format: 'email' }, team: { type: 'string', default: 'platform' } },
        required: ['email', 'team'],
      },
      notify: { type: 'boolean', default: true },
      due: { type: 'string', format: 'date' },
      parent: { $ref: '#/$defs/TicketRef' },
      note: { anyOf: [{ type: 'null' }, { type: 'string' }] },
      watchers: { type: 'array', items: { type: 'string' } },
    },
    required: ['title', 'priority', 'estimate', 'ratio', 'labels', 'assignee', 'notify', 'due', 'parent', 'note'],
    additionalProperties: false,
    $defs: { TicketRef: { type: 'object', properties: { id: { type: 'integer', minimum: 100 } }, required: ['id'] } },
  },
}
const WEATHER_QUESTION = 'What is the weather in Paris today?'
const WEATHER_REPORT = 'Sunny, 21 degrees, light wind from the west'

const openaiTools = (...tools: Array<typeof WEATHER | typeof TICKET>): OpenAI.ChatCompletionTool[] =>
  tools.map((t) => ({ type: 'function', function: { name: t.name, description: t.description, parameters: t.schema } }))
const anthropicTools = (...tools: Array<typeof WEATHER | typeof TICKET>): Anthropic.Tool[] =>
  tools.map((t) => ({ name: t.name, description: t.description, input_schema: t.schema as Anthropic.Tool.InputSchema }))
const geminiTools = (...tools: Array<typeof WEATHER | typeof TICKET>) => [
  { functionDeclarations: tools.map((t) => ({ name: t.name, description: t.description, parameters: t.schema })) },
]

function expectTicketArguments(args: any) {
  expect(Object.keys(args).sort()).toEqual([
    'assignee',
    'due',
    'estimate',
    'labels',
    'note',
    'notify',
    'parent',
    'priority',
    'ratio',
    'title',
  ])
  expect(args.title.length).toBeGreaterThanOrEqual(24)
  expect(args.title.length).toBeLessThanOrEqual(80)
  expect(['low', 'normal', 'high']).toContain(args.priority)
  expect(Number.isInteger(args.estimate) && args.estimate >= 2 && args.estimate <= 8).toBe(true)
  expect(args.ratio).toBeGreaterThan(1)
  expect(args.labels.length).toBeGreaterThanOrEqual(2)
  for (const l of args.labels) expect(['bug', 'feature']).toContain(l)
  expect(args.assignee.email).toMatch(/^[^@\s]+@[^@\s]+\.[a-z]+$/)
  expect(args.assignee.team).toBe('platform')
  expect(args.notify).toBe(true)
  expect(args.due).toMatch(/^\d{4}-\d{2}-\d{2}$/)
  expect(Number.isInteger(args.parent.id) && args.parent.id >= 100).toBe(true)
  expect(typeof args.note).toBe('string')
}

describe('tool calls', () => {
  it('OpenAI SDK: a tool-call round trip with runTools, not streamed and streamed', async () => {
    const oa = openaiClient(proxy)
    for (const stream of [false, true]) {
      const calls: unknown[] = []
      const tool = {
        type: 'function' as const,
        function: {
          name: WEATHER.name,
          description: WEATHER.description,
          parameters: WEATHER.schema,
          parse: JSON.parse,
          function: (args: unknown) => {
            calls.push(args)
            return WEATHER_REPORT
          },
        },
      }
      const runner = stream
        ? oa.chat.completions.runTools({
            model: 'gpt-4o-mini',
            stream: true,
            messages: [{ role: 'user', content: WEATHER_QUESTION }],
            tools: [tool],
          })
        : oa.chat.completions.runTools({
            model: 'gpt-4o-mini',
            messages: [{ role: 'user', content: WEATHER_QUESTION }],
            tools: [tool],
          })
      const final = await runner.finalChatCompletion()
      expect(calls, `stream: ${stream}`).toEqual([{ city: 'Paris', unit: 'celsius' }])
      const messages = runner.messages as any[]
      expect(messages.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'assistant'])
      expect(messages[1].tool_calls[0].id).toMatch(/^call_/)
      expect(final.choices[0]!.finish_reason).toBe('stop')
      const answer = final.choices[0]!.message.content!
      expect(answer).toContain(`"${WEATHER_REPORT}"`)
      expect(answer).toContain(`"${WEATHER_QUESTION}"`)
    }
  })

  it('OpenAI: the same deterministic call streamed and not, finish_reason "tool_calls"', async () => {
    const oa = openaiClient(proxy)
    const req = {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user' as const, content: WEATHER_QUESTION }],
      tools: openaiTools(TICKET, WEATHER),
    }
    const plain = await oa.chat.completions.create(req)
    expect(plain.choices[0]!.finish_reason).toBe('tool_calls')
    const call = plain.choices[0]!.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall
    expect(call.function.name).toBe('get_weather')
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'Paris', unit: 'celsius' })
    const again = await oa.chat.completions.create(req)
    expect(again.choices[0]!.message.tool_calls).toEqual(plain.choices[0]!.message.tool_calls)
    const streamed = await oa.chat.completions.stream(req).finalChatCompletion()
    expect(streamed.choices[0]!.finish_reason).toBe('tool_calls')
    expect(streamed.choices[0]!.message.tool_calls).toEqual(plain.choices[0]!.message.tool_calls)
  })

  it('Anthropic SDK: a tool-call round trip, not streamed and streamed, and with the beta tool runner (which validates the input)', async () => {
    const an = anthropicClient(proxy)
    const tools = anthropicTools(TICKET, WEATHER)
    for (const stream of [false, true]) {
      const send = (messages: Anthropic.MessageParam[]) => {
        const req = { model: 'claude-haiku-4-5', max_tokens: 1024, tools, messages }
        return stream ? an.messages.stream(req).finalMessage() : an.messages.create(req)
      }
      const first = await send([{ role: 'user', content: WEATHER_QUESTION }])
      expect(first.stop_reason, `stream: ${stream}`).toBe('tool_use')
      const use = first.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use')!
      expect(use.id).toMatch(/^toolu_/)
      expect(use.name).toBe('get_weather')
      expect(use.input).toEqual({ city: 'Paris', unit: 'celsius' })
      const second = await send([
        { role: 'user', content: WEATHER_QUESTION },
        { role: 'assistant', content: first.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: WEATHER_REPORT }] },
      ])
      expect(second.stop_reason).toBe('end_turn')
      const text = (second.content[0] as Anthropic.TextBlock).text
      expect(text).toContain(`"${WEATHER_REPORT}"`)
      expect(text).toContain('get_weather')
    }

    const ran: unknown[] = []
    const ticket = betaTool({
      name: TICKET.name,
      description: TICKET.description,
      inputSchema: TICKET.schema as any,
      run: (input) => {
        ran.push(input)
        return 'ticket OPS-7 opened'
      },
    })
    const final = await an.beta.messages.toolRunner({
      model: 'claude-haiku-4-5',
      max_tokens: 1024,
      tools: [ticket],
      tool_choice: { type: 'tool', name: 'create_ticket' },
      max_iterations: 1,
      messages: [{ role: 'user', content: 'Please file this.' }],
    })
    expect(ran).toHaveLength(1)
    expectTicketArguments(ran[0])
    expect(final.stop_reason).toBe('tool_use')
  })

  it('Gemini: functionCall parts, streamed and not, and a functionResponse gets a final answer quoting it', async () => {
    const contents = [{ role: 'user', parts: [{ text: WEATHER_QUESTION }] }]
    const body = { contents, tools: geminiTools(TICKET, WEATHER) }
    const res = await (await postJson(proxy.url + GEMINI + ':generateContent', body)).json()
    const parts = res.candidates[0].content.parts as any[]
    const call = parts.find((p) => p.functionCall)!.functionCall
    expect(call).toEqual({ name: 'get_weather', args: { city: 'Paris', unit: 'celsius' } })
    expect(res.candidates[0].finishReason).toBe('STOP')
    const { chunks } = await geminiStream(body)
    expect(chunks.flatMap((c) => c.candidates[0].content.parts).filter((p: any) => p.functionCall)).toEqual([
      { functionCall: call },
    ])
    const answer = await (
      await postJson(proxy.url + GEMINI + ':generateContent', {
        ...body,
        contents: [
          ...contents,
          { role: 'model', parts: [{ functionCall: call }] },
          {
            role: 'user',
            parts: [{ functionResponse: { name: 'get_weather', response: { forecast: WEATHER_REPORT } } }],
          },
        ],
      })
    ).json()
    expect(answer.candidates[0].content.parts.some((p: any) => p.functionCall)).toBe(false)
    expect(geminiText(answer)).toContain(WEATHER_REPORT)
    expect(geminiText(answer)).toContain('get_weather')
    // Gemini's own schema dialect: upper-case type names
    const upper = await (
      await postJson(proxy.url + GEMINI + ':generateContent', {
        contents,
        tools: [
          {
            functionDeclarations: [
              {
                name: 'get_weather',
                description: 'Weather for a city',
                parameters: {
                  type: 'OBJECT',
                  properties: { city: { type: 'STRING' }, days: { type: 'INTEGER' } },
                  required: ['city', 'days'],
                },
              },
            ],
          },
        ],
      })
    ).json()
    expect(upper.candidates[0].content.parts.find((p: any) => p.functionCall).functionCall.args).toEqual({
      city: 'Paris',
      days: 1,
    })
  })

  it('tool_choice forces a call whose arguments fit the schema, in each protocol; "none" forbids one', async () => {
    const unrelated = 'Hello there, how are you?'
    const oa = openaiClient(proxy)
    const forced = await oa.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: unrelated }],
      tools: openaiTools(WEATHER, TICKET),
      tool_choice: { type: 'function', function: { name: 'create_ticket' } },
    })
    const fcall = forced.choices[0]!.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall
    expect(fcall.function.name).toBe('create_ticket')
    expectTicketArguments(JSON.parse(fcall.function.arguments))
    const required = await oa.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: unrelated }],
      tools: openaiTools(TICKET, WEATHER),
      tool_choice: 'required',
    })
    expect(required.choices[0]!.finish_reason).toBe('tool_calls')
    expect(
      (required.choices[0]!.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall).function.name,
    ).toBe('create_ticket')
    const none = await oa.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: WEATHER_QUESTION }],
      tools: openaiTools(WEATHER),
      tool_choice: 'none',
    })
    expect(none.choices[0]!.message.tool_calls).toBeUndefined()
    expect(none.choices[0]!.finish_reason).toBe('stop')
    const auto = await oa.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: unrelated }],
      tools: openaiTools(WEATHER, TICKET),
    })
    expect(auto.choices[0]!.message.tool_calls).toBeUndefined()

    const an = anthropicClient(proxy)
    const atool = await an.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 1024,
      messages: [{ role: 'user', content: unrelated }],
      tools: anthropicTools(WEATHER, TICKET),
      tool_choice: { type: 'tool', name: 'create_ticket' },
    })
    const ause = atool.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use')!
    expect(ause.name).toBe('create_ticket')
    expectTicketArguments(ause.input)
    const anyTool = await an.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 1024,
      messages: [{ role: 'user', content: unrelated }],
      tools: anthropicTools(WEATHER, TICKET),
      tool_choice: { type: 'any' },
    })
    expect(anyTool.stop_reason).toBe('tool_use')

    const g = await (
      await postJson(proxy.url + GEMINI + ':generateContent', {
        contents: [{ role: 'user', parts: [{ text: unrelated }] }],
        tools: geminiTools(WEATHER, TICKET),
        toolConfig: { functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['create_ticket'] } },
      })
    ).json()
    const gcall = g.candidates[0].content.parts.find((p: any) => p.functionCall).functionCall
    expect(gcall.name).toBe('create_ticket')
    expectTicketArguments(gcall.args)
  })

  it('which tool a prompt asks for: a specific name word, or a verb with a path or URL; a generic verb alone is not enough', async () => {
    // Claude Code's tools, shortened
    const tools: Anthropic.Tool[] = [
      {
        name: 'Read',
        description: 'Reads a file from the local filesystem. You can access any file directly by using this tool.',
        input_schema: {
          type: 'object',
          properties: { file_path: { type: 'string' }, offset: { type: 'number' } },
          required: ['file_path'],
        },
      },
      {
        name: 'Write',
        description: 'Writes a file to the local filesystem.',
        input_schema: {
          type: 'object',
          properties: { file_path: { type: 'string' }, content: { type: 'string' } },
          required: ['file_path', 'content'],
        },
      },
      {
        name: 'WebFetch',
        description: 'Fetches content from a specified URL and processes it using an AI model.',
        input_schema: {
          type: 'object',
          properties: { url: { type: 'string', format: 'uri' }, prompt: { type: 'string' } },
          required: ['url', 'prompt'],
        },
      },
      {
        name: WEATHER.name,
        description: WEATHER.description,
        input_schema: WEATHER.schema as Anthropic.Tool.InputSchema,
      },
    ]
    const an = anthropicClient(proxy)
    const callFor = async (prompt: string) => {
      const msg = await an.messages.create({
        model: 'claude-haiku-4-5',
        max_tokens: 1024,
        tools,
        messages: [{ role: 'user', content: prompt }],
      })
      const use = msg.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use')
      return use && { name: use.name, input: use.input }
    }
    expect(await callFor('Read src/app.ts and summarise it')).toEqual({
      name: 'Read',
      input: { file_path: 'src/app.ts' },
    })
    expect(await callFor('Fetch https://example.org/docs/intro for me')).toEqual({
      name: 'WebFetch',
      input: { url: 'https://example.org/docs/intro', prompt: 'Fetch https://example.org/docs/intro for me' },
    })
    expect(await callFor('Write the meeting notes to notes.md')).toEqual({
      name: 'Write',
      input: { file_path: 'notes.md', content: 'demo content' },
    })
    expect(await callFor('What is the weather like in New York, in fahrenheit please?')).toEqual({
      name: 'get_weather',
      input: { city: 'New York', unit: 'fahrenheit' },
    })
    expect(await callFor('Write a haiku about caching')).toBeUndefined()
    expect(await callFor('What is 2+2?')).toBeUndefined()
  })

  it('arguments stay bounded for schemas that recurse, point nowhere or ask for the impossible', async () => {
    const schema = {
      type: 'object',
      properties: {
        tree: { $ref: '#' },
        broken: { $ref: '#/$defs/%E0%A4%A' },
        long: { type: 'string', minLength: 1_000_000 },
        none: { type: 'array', items: { type: 'string' }, maxItems: -1 },
        many: {
          type: 'array',
          items: { type: 'array', items: { type: 'array', items: { type: 'string' }, minItems: 1000 }, minItems: 1000 },
          minItems: 1000,
        },
      },
      required: ['tree', 'broken', 'long', 'none', 'many'],
    }
    const res = await openaiClient(proxy).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'go' }],
      tools: [{ type: 'function', function: { name: 'weird', parameters: schema } }],
      tool_choice: 'required',
    })
    const call = res.choices[0]!.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall
    expect(call.function.name).toBe('weird')
    expect(call.function.arguments.length).toBeLessThan(100_000)
    const args = JSON.parse(call.function.arguments)
    expect(args.broken).toBe('demo broken')
    expect(args.long.length).toBeLessThanOrEqual(1000)
    expect(args.none).toEqual([])
    expect(args.many.length).toBeLessThanOrEqual(16)
  })

  it('a tool-call round trip in the demo preset (caches, quota, audit on) with both SDKs, streamed and not', async () => {
    const full = await startProxy(
      { preset: 'demo', plugins: [demo({ latencyMs: 0, chunkDelayMs: 0 })] },
      { features: true },
    )
    try {
      const oa = openaiClient(full)
      for (const stream of [false, true]) {
        const tool = {
          type: 'function' as const,
          function: {
            name: WEATHER.name,
            description: WEATHER.description,
            parameters: WEATHER.schema,
            parse: JSON.parse,
            function: () => WEATHER_REPORT,
          },
        }
        const runner = stream
          ? oa.chat.completions.runTools({
              model: 'gpt-4o-mini',
              stream: true,
              messages: [{ role: 'user', content: WEATHER_QUESTION }],
              tools: [tool],
            })
          : oa.chat.completions.runTools({
              model: 'gpt-4o-mini',
              messages: [{ role: 'user', content: WEATHER_QUESTION }],
              tools: [tool],
            })
        expect(await runner.finalContent()).toContain(`"${WEATHER_REPORT}"`)
      }
      const an = anthropicClient(full)
      for (const stream of [false, true]) {
        const send = (messages: Anthropic.MessageParam[]) => {
          const req = { model: 'claude-haiku-4-5', max_tokens: 1024, tools: anthropicTools(WEATHER), messages }
          return stream ? an.messages.stream(req).finalMessage() : an.messages.create(req)
        }
        const first = await send([{ role: 'user', content: WEATHER_QUESTION }])
        const use = first.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use')!
        const second = await send([
          { role: 'user', content: WEATHER_QUESTION },
          { role: 'assistant', content: first.content },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: WEATHER_REPORT }] },
        ])
        expect((second.content[0] as Anthropic.TextBlock).text).toContain(`"${WEATHER_REPORT}"`)
      }
    } finally {
      await full.close()
    }
  })
})

describe('embeddings', () => {
  it('encoding_format "base64" (the OpenAI SDK default): the SDK decodes the same non-zero vectors as "float"', async () => {
    const oa = openaiClient(proxy)
    const input = ['alpha', 'a longer sentence to embed']
    const byDefault = await oa.embeddings.create({ model: 'text-embedding-3-small', input })
    const floats = await oa.embeddings.create({ model: 'text-embedding-3-small', input, encoding_format: 'float' })
    expect(byDefault.data).toHaveLength(2)
    for (const [i, d] of byDefault.data.entries()) {
      const want = floats.data[i]!.embedding
      expect(d.embedding).toHaveLength(want.length)
      expect(d.embedding.some((x) => x !== 0)).toBe(true)
      d.embedding.forEach((x, j) => expect(x).toBeCloseTo(want[j]!, 6))
    }
    const raw = await (
      await postJson(proxy.url + '/v1/embeddings', {
        model: 'text-embedding-3-small',
        input: 'alpha',
        encoding_format: 'base64',
      })
    ).json()
    expect(typeof raw.data[0].embedding).toBe('string')
    expect(Buffer.from(raw.data[0].embedding, 'base64').length).toBe(4 * floats.data[0]!.embedding.length)
  })
})

describe('abort listeners', () => {
  it('a stream of 30+ events adds no MaxListenersExceededWarning and leaves no abort listener behind, in each protocol', async () => {
    const left: number[] = []
    // what remains on the request's signal once the answer has ended
    const probe = definePlugin({
      name: 'listener-probe',
      hooks: {
        afterResponse(ctx) {
          left.push(getEventListeners(ctx.signal, 'abort').length)
        },
      },
    })
    const paced = await startCoreProxy({ preset: 'demo', plugins: [probe, demo({ latencyMs: 1, chunkDelayMs: 1 })] })
    const warnings: Error[] = []
    const onWarning = (w: Error) => warnings.push(w)
    process.on('warning', onWarning)
    try {
      const question =
        'Could you walk me through, step by step and with an example for each step, how a governance proxy decides whether a prompt it has seen before may be answered from its cache?'
      const counts: number[] = []
      const openai = await postJson(paced.url + '/v1/chat/completions', {
        model: 'gpt-4o-mini',
        stream: true,
        messages: [{ role: 'user', content: question }],
      })
      counts.push(sseEvents(await openai.text()).length)
      const anthropic = await postJson(paced.url + '/v1/messages', {
        model: 'claude-haiku-4-5',
        max_tokens: 1024,
        stream: true,
        messages: [{ role: 'user', content: question }],
      })
      counts.push(sseEvents(await anthropic.text()).length)
      const { chunks } = await geminiStream({ contents: [{ role: 'user', parts: [{ text: question }] }] }, paced.url)
      counts.push(chunks.length)
      // warnings are emitted on the next tick
      await new Promise((r) => setTimeout(r, 20))
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message)).toEqual([])
      expect(left).toEqual([0, 0, 0])
      for (const n of counts) expect(n).toBeGreaterThanOrEqual(30)
    } finally {
      process.off('warning', onWarning)
      await paced.close()
    }
  })
})

describe('X-AgentMesh-Demo', () => {
  it('is on every demo answer: each protocol, streamed and not, embeddings, and cache hits', async () => {
    const seen: Array<[string, string | null]> = []
    const record = (what: string, res: Response) => seen.push([what, res.headers.get('x-agentmesh-demo')])
    const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Is this a demo?' }] }
    const messages = {
      model: 'claude-haiku-4-5',
      max_tokens: 256,
      messages: [{ role: 'user', content: 'Is this a demo?' }],
    }
    const gemini = { contents: [{ role: 'user', parts: [{ text: 'Is this a demo?' }] }] }
    const all = async (base: string, tag: string) => {
      for (const stream of [false, true]) {
        const s = stream ? ' stream' : ''
        const o = await postJson(base + '/v1/chat/completions', { ...chat, stream })
        await o.text()
        record(tag + 'openai' + s, o)
        const a = await postJson(base + '/v1/messages', { ...messages, stream })
        await a.text()
        record(tag + 'anthropic' + s, a)
        const g = await postJson(
          base + GEMINI + (stream ? ':streamGenerateContent?alt=sse' : ':generateContent'),
          gemini,
        )
        await g.text()
        record(tag + 'gemini' + s, g)
      }
    }
    await all(proxy.url, '')
    const e = await postJson(proxy.url + '/v1/embeddings', { model: 'text-embedding-3-small', input: 'x' })
    await e.text()
    record('embeddings', e)
    const full = await startProxy(
      { preset: 'demo', plugins: [demo({ latencyMs: 0, chunkDelayMs: 0 })] },
      { features: true },
    )
    try {
      await all(full.url, 'preset ')
      // another client of the team: the same client asking again after a hit would be a retry (issue 14)
      const other = { 'x-agentmesh-user': 'second-client' }
      const hit = await postJson(full.url + '/v1/chat/completions', chat, other)
      expect(hit.headers.get('x-agentmesh-cache')).toBe('exact')
      await hit.text()
      record('exact hit', hit)
      const streamedHit = await postJson(full.url + '/v1/messages', { ...messages, stream: true }, other)
      expect(streamedHit.headers.get('x-agentmesh-cache')).toBe('exact')
      await streamedHit.text()
      record('exact hit stream', streamedHit)
    } finally {
      await full.close()
    }
    expect(seen.filter(([, v]) => v !== 'true')).toEqual([])
    expect(seen).toHaveLength(15)
  })
})

describe('the quoted question', () => {
  const REMINDER =
    "<system-reminder>\nAs you answer the user's questions, you can use the following context:\n# claudeMd\nCodebase and user instructions are shown below.\n</system-reminder>"
  const QUESTION = 'What does the audit plugin sign?'

  it('is the last text block of the last user message, not a <system-reminder> block (Anthropic, OpenAI, Gemini)', async () => {
    const an = anthropicClient(proxy)
    for (const content of [
      [
        { type: 'text' as const, text: REMINDER },
        { type: 'text' as const, text: QUESTION },
      ],
      [
        { type: 'text' as const, text: REMINDER },
        { type: 'text' as const, text: QUESTION },
        { type: 'text' as const, text: REMINDER },
      ],
    ]) {
      const msg = await an.messages.create({
        model: 'claude-haiku-4-5',
        max_tokens: 1024,
        messages: [{ role: 'user', content }],
      })
      const text = (msg.content[0] as Anthropic.TextBlock).text
      expect(text).toContain(`You asked: "${QUESTION}"`)
      expect(text).not.toContain('system-reminder')
    }
    const oa = openaiClient(proxy)
    const o = await oa.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: REMINDER },
            { type: 'text', text: QUESTION },
          ],
        },
      ],
    })
    expect(o.choices[0]!.message.content).toContain(`You asked: "${QUESTION}"`)
    const g = await (
      await postJson(proxy.url + GEMINI + ':generateContent', {
        contents: [{ role: 'user', parts: [{ text: REMINDER }, { text: QUESTION }] }],
      })
    ).json()
    expect(geminiText(g)).toContain(`You asked: "${QUESTION}"`)
  })

  it("Claude Code's tool-result turn (a tool_result and a reminder): the answer quotes the result and the earlier question", async () => {
    const sent: string[] = []
    const an = new Anthropic({
      baseURL: proxy.url,
      apiKey: 'sk-ant-client-key',
      maxRetries: 0,
      fetch: capturingFetch(sent),
    })
    const msg = await an.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 1024,
      tools: anthropicTools(WEATHER),
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: REMINDER },
            { type: 'text', text: WEATHER_QUESTION },
          ],
        },
        {
          role: 'assistant',
          content: [
            { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { city: 'Paris', unit: 'celsius' } },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_01', content: [{ type: 'text', text: WEATHER_REPORT }] },
            { type: 'text', text: REMINDER },
          ],
        },
      ],
    })
    const text = (msg.content[0] as Anthropic.TextBlock).text
    expect(msg.stop_reason).toBe('end_turn')
    expect(text).toContain(`get_weather returned: "${WEATHER_REPORT}"`)
    expect(text).toContain(`You asked: "${WEATHER_QUESTION}"`)
    expect(text).not.toContain('system-reminder')
  })
})
