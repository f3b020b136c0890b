// SDK mode with the official clients: wrapOpenAI / wrapAnthropic over createMesh, called against
// the mock upstream with no proxy listening. Plain, streamed, a tool round trip, a cache hit on
// repeat, and the SDKs' own error classes for a quota block (429) and a guard (403).
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { definePlugin } from '../core/plugin.ts'
import {
  createMesh,
  governanceOf,
  withIdentity,
  withRun,
  wrapAnthropic,
  wrapOpenAI,
  type SdkMesh,
} from '../core/sdk/index.ts'
import type { MeshEvent } from '../core/types.ts'
import { exactCache } from '../plugins/exact-cache/index.ts'
import { quota } from '../plugins/quota/index.ts'
import { anthropic } from '../plugins/vendors/anthropic.ts'
import { openai } from '../plugins/vendors/openai.ts'
import { clearVendorEnv, tempDir } from './helpers/core-harness.ts'
import { mockText, startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'

// a guard of the test's own: team "blocked" is refused as a policy would refuse it; it also notes each call's run
const runs: Array<string | null> = []
const policy = definePlugin({
  name: 'test:policy',
  hooks: {
    beforeRequest(ctx) {
      runs.push(ctx.request.headers.get('x-agentmesh-run-id'))
      if (ctx.identity?.team === 'blocked')
        ctx.response = {
          kind: 'error',
          status: 403,
          type: 'permission_error',
          message: 'AgentMesh policy: team blocked may not call models',
        }
    },
  },
})

let mock: MockUpstream
let mesh: SdkMesh
const events: MeshEvent[] = []
const weather = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
}

beforeAll(async () => {
  clearVendorEnv()
  mock = await startMockUpstream({})
  mesh = await createMesh({
    config: {
      log: { level: 'silent' },
      dataDir: tempDir(),
      plugins: [
        policy,
        quota({ limits: { teams: { tiny: { tokensPerDay: 5 } } } }),
        exactCache({ retryWindowSeconds: 0 }),
        openai({ baseURL: mock.url, apiKey: 'sk-configured' }),
        anthropic({ baseURL: mock.url, apiKey: 'sk-ant-configured' }),
      ],
    },
  })
  mesh.on((e) => events.push(e))
})
afterAll(async () => {
  await mesh.close()
  await mock.close()
})

describe('wrapOpenAI', () => {
  const client = () =>
    wrapOpenAI(new OpenAI({ apiKey: 'unused', maxRetries: 0 }), { mesh, identity: { team: 'eng', user: 'ada' } })

  it('is the same client type, and answers through the mesh with governance headers', async () => {
    const c = client()
    expect(c).toBeInstanceOf(OpenAI)
    const { data, response } = await c.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'sdk plain' }] })
      .withResponse()
    expect(data.choices[0]!.message.content).toBe(mockText('sdk plain'))
    const g = governanceOf(response)
    expect(g.vendor).toBe('openai')
    expect(g.cache).toBe('miss')
    expect(g.tokens).toBeGreaterThan(0)
    expect(mock.received.at(-1)!.headers.authorization).toBe('Bearer sk-configured')
    const req = events.find((e) => e.type === 'request' && (e.data as any).id === g.requestId)
    expect((req?.data as any)?.identity).toMatchObject({ team: 'eng', user: 'ada' })
  })

  it('streams', async () => {
    const stream = await client().chat.completions.create({
      model: 'gpt-4o-mini',
      stream: true,
      messages: [{ role: 'user', content: 'sdk stream' }],
    })
    let text = ''
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ''
    expect(text).toBe(mockText('sdk stream'))
  })

  it('a tool round trip', async () => {
    const c = client()
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'weather in Paris?' }]
    const first = await c.chat.completions.create({ model: 'gpt-4o-mini', messages, tools: [weather] })
    const call = first.choices[0]!.message.tool_calls![0]! as OpenAI.Chat.ChatCompletionMessageFunctionToolCall
    expect(call.function.name).toBe('get_weather')
    messages.push(first.choices[0]!.message, { role: 'tool', tool_call_id: call.id, content: 'sunny' })
    const second = await c.chat.completions.create({ model: 'gpt-4o-mini', messages, tools: [weather] })
    expect(second.choices[0]!.message.content).toContain('sunny')
  })

  it('a repeat is a cache hit, not a vendor call', async () => {
    const c = client()
    const ask = () =>
      c.chat.completions
        .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'sdk repeat please' }] })
        .withResponse()
    const first = await ask()
    // the entry is stored after the answer is read
    await new Promise((r) => setTimeout(r, 50))
    const calls = mock.received.length
    const second = await ask()
    expect(governanceOf(first.response).cache).toBe('miss')
    expect(governanceOf(second.response).cache).toBe('exact')
    expect(second.data.choices[0]!.message.content).toBe(first.data.choices[0]!.message.content)
    expect(mock.received.length).toBe(calls)
  })

  it("a quota block is the SDK's RateLimitError (429) with the AgentMesh message; identity per call", async () => {
    const c = client()
    const err = await withIdentity({ team: 'tiny' }, () =>
      c.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'over budget' }] }),
    ).catch((e) => e)
    expect(err).toBeInstanceOf(OpenAI.RateLimitError)
    expect(err.status).toBe(429)
    expect(err.message).toMatch(/tiny/)
    expect(events.some((e) => e.type === 'quota_block')).toBe(true)
  })

  it("a guard is the SDK's PermissionDeniedError (403)", async () => {
    const err = await withIdentity({ team: 'blocked' }, () =>
      client().chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
    ).catch((e) => e)
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError)
    expect(err.message).toMatch(/policy/)
  })
})

describe('scopes', () => {
  it('withRun names the agent run of every call inside; nested withIdentity keeps it', async () => {
    const c = wrapOpenAI(new OpenAI({ apiKey: 'unused', maxRetries: 0 }), { mesh, runId: 'default-run' })
    const ask = (content: string) =>
      c.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] })
    await ask('outside any run')
    await withRun('nightly-42', () =>
      withIdentity({ team: 'eng' }, () => Promise.all([ask('in run a'), ask('in run b')])),
    )
    expect(runs.slice(-3)).toEqual(['default-run', 'nightly-42', 'nightly-42'])
  })
})

describe('wrapAnthropic', () => {
  const client = () =>
    wrapAnthropic(new Anthropic({ apiKey: 'unused', maxRetries: 0 }), { mesh, identity: { team: 'eng' } })

  it('plain, with governance headers through the raw-response API', async () => {
    const c = client()
    expect(c).toBeInstanceOf(Anthropic)
    const { data, response } = await c.messages
      .create({ model: 'claude-haiku-4-5', max_tokens: 50, messages: [{ role: 'user', content: 'anthropic plain' }] })
      .withResponse()
    expect(data.content[0]).toMatchObject({ type: 'text', text: mockText('anthropic plain') })
    expect(governanceOf(response).vendor).toBe('anthropic')
    expect(mock.received.at(-1)!.headers['x-api-key']).toBe('sk-ant-configured')
  })

  it('streams', async () => {
    const stream = client().messages.stream({
      model: 'claude-haiku-4-5',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'anthropic stream' }],
    })
    const final = await stream.finalMessage()
    expect(final.content[0]).toMatchObject({ type: 'text', text: mockText('anthropic stream') })
  })

  it('a tool round trip', async () => {
    const c = client()
    const tools: Anthropic.Tool[] = [
      {
        name: 'get_weather',
        description: 'weather',
        input_schema: { type: 'object', properties: { city: { type: 'string' } } },
      },
    ]
    const messages: Anthropic.MessageParam[] = [{ role: 'user', content: 'weather in Paris?' }]
    const first = await c.messages.create({ model: 'claude-haiku-4-5', max_tokens: 50, messages, tools })
    const use = first.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use')!
    expect(use.name).toBe('get_weather')
    messages.push(
      { role: 'assistant', content: first.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'sunny' }] },
    )
    const second = await c.messages.create({ model: 'claude-haiku-4-5', max_tokens: 50, messages, tools })
    expect(second.content[0]).toMatchObject({ type: 'text' })
    expect((second.content[0] as Anthropic.TextBlock).text).toContain('sunny')
  })

  it('a repeat is a cache hit', async () => {
    const c = client()
    const ask = () =>
      c.messages
        .create({
          model: 'claude-haiku-4-5',
          max_tokens: 50,
          messages: [{ role: 'user', content: 'anthropic repeat' }],
        })
        .withResponse()
    await ask()
    await new Promise((r) => setTimeout(r, 50))
    const calls = mock.received.length
    const second = await ask()
    expect(governanceOf(second.response).cache).toBe('exact')
    expect(mock.received.length).toBe(calls)
  })

  it("quota block and guard are the SDK's own errors", async () => {
    const c = client()
    const ask = () =>
      c.messages.create({ model: 'claude-haiku-4-5', max_tokens: 50, messages: [{ role: 'user', content: 'no' }] })
    const blocked = await withIdentity({ team: 'tiny' }, ask).catch((e) => e)
    expect(blocked).toBeInstanceOf(Anthropic.RateLimitError)
    expect(blocked.status).toBe(429)
    const refused = await withIdentity({ team: 'blocked' }, ask).catch((e) => e)
    expect(refused).toBeInstanceOf(Anthropic.PermissionDeniedError)
  })
})
