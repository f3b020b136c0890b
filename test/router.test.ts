// Issue 16 item 2 (and the router's part of item 6): aliases, rules and cheapest-capable choice,
// through the official OpenAI SDK against a real proxy with one mock upstream per vendor, so each
// test can tell which vendor (and which model) a request reached. The decision is checked where a
// user reads it: the X-AgentMesh-Route headers, the `route` event and the signed audit log; the
// budget where the quota plugin keeps it (/agentmesh/admin/usage).
import { readdirSync, readFileSync } from 'node:fs'
import { GoogleGenAI } from '@google/genai'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type OpenAI from 'openai'
import { definePlugin } from '../core/plugin.ts'
import type { MeshContext, MeshEvent } from '../core/types.ts'
import { audit } from '../plugins/audit/index.ts'
import { quota } from '../plugins/quota/index.ts'
import { router, type RouterOptions } from '../plugins/router/index.ts'
import { anthropicClient, clearVendorEnv, openaiClient, startProxy, until, type Proxy } from './helpers/core-harness.ts'
import { mockText, startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'

const ADMIN = 'router-test-admin-token'
const words = (s: string) => s.split(/\s+/).filter(Boolean).length

const weatherTool: OpenAI.Chat.Completions.ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
}

const routerOptions: RouterOptions = {
  aliases: {
    // list prices per million tokens (in/out): haiku 1/5, gpt-4o-mini 0.15/0.6, gemini-2.5-flash 0.3/2.5
    fast: ['claude-haiku-4-5', 'gpt-4o-mini', 'gemini-2.5-flash'],
    // o1-mini (1.1/4.4) has no tools and no image input: cheaper than haiku for a 1,024-token answer
    agent: ['o1-mini', 'claude-haiku-4-5'],
    // gpt-3.5-turbo (0.5/1.5): 16k context, 4k output, no image input
    look: ['gpt-3.5-turbo', 'claude-haiku-4-5'],
    tiny: ['gpt-3.5-turbo'],
    // claude-haiku-5-5 (0.1/0.5) is the cheapest; Anthropic has JSON schemas but no schema-less JSON mode
    json: ['claude-haiku-5-5', 'gpt-4o-mini'],
    // small, medium, large
    smart: ['gpt-4o-mini', 'gpt-4o', 'o3'],
    // no configured vendor serves mistral-small here
    mixed: ['mistral-small', 'gpt-4o-mini'],
  },
  rules: [
    { name: 'research-pins-sonnet', match: { team: 'research' }, model: 'claude-sonnet-4-5' },
    // a TypeScript function as the condition; `concrete` lets it change a named model
    { name: 'cli-to-gemini', match: (r) => r.tool === 'router-test-cli', model: 'gemini-2.5-flash', concrete: true },
    { name: 'flat-price', match: { tool: 'flat' }, candidates: 'smart', complexity: false },
    { name: 'fast-by-latency', match: { tool: 'latency' }, candidates: 'fast', strategy: 'lowest-latency' },
    { name: 'tools-to-cheap', match: { tools: true, model: 'cheap-tools' }, candidates: ['gpt-4o-mini'] },
    // no team (nor model) in the match: it routes aliases, never a model a client named
    { name: 'agent-cli-tools', match: { tools: true, tool: 'agent-cli' }, candidates: ['gpt-4o-mini'] },
  ],
}

interface Seen {
  id: string
  route: MeshContext['route']
  state: MeshContext['state']['route']
  usage: MeshContext['usage']
  cost: number
  answerModel?: string
}
const seen: Seen[] = []
const recorder = definePlugin({
  name: 'test:recorder',
  hooks: {
    afterResponse(ctx) {
      seen.push({
        id: ctx.id,
        route: { ...ctx.route },
        state: ctx.state.route,
        usage: { ...ctx.usage },
        cost: ctx.cost.usd,
        answerModel: ctx.answer?.model,
      })
    },
  },
})
// stands in for a fallback to a pricier model (issue 16 item 3 does it for real): after the
// router chose, the call goes to claude-sonnet-4-5 instead
const reroute = definePlugin({
  name: 'test:reroute',
  hooks: {
    route(ctx) {
      if (ctx.request.headers.get('x-test-reroute'))
        ctx.route = { ...ctx.route, vendor: 'anthropic', model: 'claude-sonnet-4-5' }
    },
  },
})

let mocks: { openai: MockUpstream; anthropic: MockUpstream; google: MockUpstream }
let proxy: Proxy
let client: OpenAI

beforeAll(async () => {
  clearVendorEnv()
  mocks = { openai: await startMockUpstream(), anthropic: await startMockUpstream(), google: await startMockUpstream() }
  proxy = await startProxy(
    {
      preset: 'solo',
      vendors: {
        openai: { baseURL: mocks.openai.url, apiKey: 'sk-test-openai-configured' },
        anthropic: { baseURL: mocks.anthropic.url, apiKey: 'sk-ant-test-configured' },
        google: { baseURL: mocks.google.url, apiKey: 'AIza-test-configured' },
      },
      plugins: [
        router(routerOptions),
        quota({ adminToken: ADMIN, limits: { teams: { budget: { usdPerDay: 100 } } } }),
        audit({ checkpointSeconds: 0, fsync: 'never' }),
        recorder,
        reroute,
      ],
    },
    { features: false },
  )
  client = openaiClient(proxy)
})
afterAll(async () => {
  await proxy.close()
  await Promise.all(Object.values(mocks).map((m) => m.close()))
})
beforeEach(() => {
  for (const m of Object.values(mocks)) m.received.length = 0
})

/** which mock got the request, and the model it was asked for */
function reached(): { vendor: string; model: string; path: string } {
  const hits = Object.entries(mocks).flatMap(([vendor, m]) =>
    m.received.map((r) => ({
      vendor,
      model: r.body.model ?? decodeURIComponent(/models\/([^:]+):/.exec(r.path)?.[1] ?? ''),
      path: r.path,
    })),
  )
  expect(hits).toHaveLength(1)
  return hits[0]!
}

async function ask(
  body: Partial<OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming>,
  headers: Record<string, string> = {},
) {
  const { data, response } = await client.chat.completions
    .create(
      {
        model: 'fast',
        messages: [{ role: 'user', content: 'What is the capital of France?' }],
        ...body,
      } as OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming,
      { headers },
    )
    .withResponse()
  return { data, headers: response.headers, id: response.headers.get('x-agentmesh-request-id')! }
}

const routeEvent = (id: string) =>
  proxy.events.find((e): e is MeshEvent<'route'> => e.type === 'route' && (e.data as { id: string }).id === id)?.data

function auditEntry(id: string): Record<string, any> | undefined {
  const dir = join(proxy.dataDir, 'audit')
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.jsonl'))) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      if (!line.includes(id)) continue
      const e = JSON.parse(line)
      if (e.kind === 'request' && e.id === id) return e
    }
  }
  return undefined
}

describe('aliases and cheapest-capable', () => {
  it('the OpenAI SDK asking for `fast` reaches the cheapest capable vendor; headers, event and audit say why', async () => {
    const { data, headers, id } = await ask({})
    expect(reached()).toMatchObject({ vendor: 'openai', model: 'gpt-4o-mini', path: '/v1/chat/completions' })
    expect(data.choices[0]!.message.content).toBe(mockText('What is the capital of France?'))
    expect(headers.get('x-agentmesh-route')).toBe('openai/gpt-4o-mini')
    expect(headers.get('x-agentmesh-route-reason')).toBe('cheapest-capable: 3 candidates, picked gpt-4o-mini (128k)')
    const ev = routeEvent(id)
    expect(ev).toMatchObject({
      requested: 'fast',
      vendor: 'openai',
      model: 'gpt-4o-mini',
      reason: 'cheapest-capable: 3 candidates, picked gpt-4o-mini (128k)',
      candidates: 3,
    })
    // the other capable candidates, cheapest first, are the fallbacks (for the attempt loop)
    expect(ev!.fallbacks).toEqual([
      { vendor: 'google', model: 'gemini-2.5-flash' },
      { vendor: 'anthropic', model: 'claude-haiku-4-5' },
    ])
    await until(() => seen.some((s) => s.id === id), 'afterResponse')
    const s = seen.find((x) => x.id === id)!
    expect(s.route.fallbacks).toEqual(ev!.fallbacks)
    // published for other plugins as ctx.state.route
    expect(s.state).toMatchObject({
      requested: 'fast',
      vendor: 'openai',
      model: 'gpt-4o-mini',
      candidates: 3,
      reason: ev!.reason,
    })
    await until(() => auditEntry(id) !== undefined, 'audit entry', 5000)
    expect(auditEntry(id)).toMatchObject({
      requestedModel: 'fast',
      vendor: 'openai',
      route: 'cheapest-capable: 3 candidates, picked gpt-4o-mini (128k)',
    })
  })

  it('the Anthropic SDK asking for `fast` is served by the OpenAI mock (translation)', async () => {
    const { data, response } = await anthropicClient(proxy)
      .messages.create({ model: 'fast', max_tokens: 100, messages: [{ role: 'user', content: 'Name a river.' }] })
      .withResponse()
    expect(reached()).toMatchObject({ vendor: 'openai', model: 'gpt-4o-mini', path: '/v1/chat/completions' })
    expect(data.content[0]).toMatchObject({ type: 'text', text: mockText('Name a river.') })
    expect(response.headers.get('x-agentmesh-route')).toBe('openai/gpt-4o-mini')
    expect(response.headers.get('x-agentmesh-translated')).toBe('anthropic->openai')
  })

  it('the Gemini SDK asking for `fast` (a model in the URL path) is served by the OpenAI mock', async () => {
    const gemini = new GoogleGenAI({
      apiKey: 'AIza-client-key',
      httpOptions: { baseUrl: proxy.url, apiVersion: 'v1beta', retryOptions: { attempts: 1 } },
    })
    const r = await gemini.models.generateContent({ model: 'fast', contents: 'Name a mountain.' })
    expect(reached()).toMatchObject({ vendor: 'openai', model: 'gpt-4o-mini', path: '/v1/chat/completions' })
    expect(r.text).toBe(mockText('Name a mountain.'))
    expect(new Headers(r.sdkHttpResponse?.headers ?? {}).get('x-agentmesh-route')).toBe('openai/gpt-4o-mini')
  })

  it('a streamed request is routed the same way, headers included', async () => {
    const stream = await client.chat.completions
      .create({ model: 'fast', stream: true, messages: [{ role: 'user', content: 'Name a colour.' }] })
      .withResponse()
    let text = ''
    for await (const chunk of stream.data) text += chunk.choices[0]?.delta?.content ?? ''
    expect(text).toBe(mockText('Name a colour.'))
    expect(stream.response.headers.get('x-agentmesh-route')).toBe('openai/gpt-4o-mini')
    expect(reached()).toMatchObject({ vendor: 'openai', model: 'gpt-4o-mini' })
  })

  it('a request with tools skips models without tools', async () => {
    // without tools o1-mini is the cheaper of the two
    await ask({ model: 'agent' })
    expect(reached()).toMatchObject({ vendor: 'openai', model: 'o1-mini' })
    for (const m of Object.values(mocks)) m.received.length = 0
    const { data, headers, id } = await ask({
      model: 'agent',
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
      tools: [weatherTool],
    })
    // served by Anthropic through translation: the tool call comes back in OpenAI's shape
    expect(reached()).toMatchObject({ vendor: 'anthropic', model: 'claude-haiku-4-5', path: '/v1/messages' })
    expect(data.choices[0]!.finish_reason).toBe('tool_calls')
    expect(headers.get('x-agentmesh-route-reason')).toBe(
      'cheapest-capable: 2 candidates, picked claude-haiku-4-5 (tools, 200k)',
    )
    expect(routeEvent(id)!.skipped).toEqual([{ model: 'o1-mini', why: 'no tools' }])
  })

  it('a request with an image skips models without image input', async () => {
    await ask({ model: 'look' })
    expect(reached()).toMatchObject({ vendor: 'openai', model: 'gpt-3.5-turbo' })
    for (const m of Object.values(mocks)) m.received.length = 0
    const { headers } = await ask({
      model: 'look',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is this?' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
          ],
        },
      ],
    })
    expect(reached()).toMatchObject({ vendor: 'anthropic', model: 'claude-haiku-4-5' })
    expect(headers.get('x-agentmesh-route-reason')).toBe(
      'cheapest-capable: 2 candidates, picked claude-haiku-4-5 (vision, 200k)',
    )
  })

  it("a prompt too large for a window skips that model; max_tokens above a model's output limit too", async () => {
    // ~20,000 tokens: over gpt-3.5-turbo's 16k window
    const long = Array.from({ length: 2000 }, (_, i) => `Sentence ${i} about the history of bridges and rivers.`).join(
      ' ',
    )
    const { id } = await ask({ model: 'look', messages: [{ role: 'user', content: long }] })
    expect(reached()).toMatchObject({ vendor: 'anthropic', model: 'claude-haiku-4-5' })
    expect(routeEvent(id)!.skipped![0]).toMatchObject({
      model: 'gpt-3.5-turbo',
      why: expect.stringMatching(/^context 16k < \d+k needed$/),
    })
    for (const m of Object.values(mocks)) m.received.length = 0
    const { id: id2 } = await ask({ model: 'look', max_tokens: 6000 })
    expect(reached()).toMatchObject({ vendor: 'anthropic', model: 'claude-haiku-4-5' })
    expect(routeEvent(id2)!.skipped).toEqual([{ model: 'gpt-3.5-turbo', why: 'max output 4k < 6000 asked' }])
  })

  it('JSON mode skips models without it; a JSON schema goes to any model with schemas', async () => {
    await ask({ model: 'json' })
    expect(reached()).toMatchObject({ vendor: 'anthropic', model: 'claude-haiku-5-5' })
    for (const m of Object.values(mocks)) m.received.length = 0
    const { headers, id } = await ask({ model: 'json', response_format: { type: 'json_object' } })
    expect(reached()).toMatchObject({ vendor: 'openai', model: 'gpt-4o-mini' })
    expect(headers.get('x-agentmesh-route-reason')).toBe(
      'cheapest-capable: 2 candidates, picked gpt-4o-mini (json, 128k)',
    )
    expect(routeEvent(id)!.skipped).toEqual([{ model: 'claude-haiku-5-5', why: 'no JSON mode' }])
    for (const m of Object.values(mocks)) m.received.length = 0
    const schema = {
      type: 'object',
      properties: { city: { type: 'string' } },
      required: ['city'],
      additionalProperties: false,
    }
    const s = await ask({
      model: 'json',
      response_format: { type: 'json_schema', json_schema: { name: 'answer', schema, strict: true } },
    })
    expect(reached()).toMatchObject({ vendor: 'anthropic', model: 'claude-haiku-5-5' })
    expect(mocks.anthropic.received[0]!.body.output_format).toEqual({ type: 'json_schema', schema })
    expect(s.headers.get('x-agentmesh-route-reason')).toBe(
      'cheapest-capable: 2 candidates, picked claude-haiku-5-5 (json schema, 1M)',
    )
  })

  it('when no candidate fits, the client gets a 400 in its protocol naming each reason', async () => {
    const long = Array.from({ length: 2000 }, (_, i) => `Sentence ${i} about the history of bridges and rivers.`).join(
      ' ',
    )
    const err = await ask({ model: 'tiny', messages: [{ role: 'user', content: long }] }).catch((e) => e)
    expect(err.status).toBe(400)
    expect(err.error).toMatchObject({
      type: 'invalid_request_error',
      message: expect.stringMatching(
        /^no model behind "tiny" can take this request: gpt-3\.5-turbo \(context 16k < \d+k needed\)$/,
      ),
    })
    expect(Object.values(mocks).every((m) => m.received.length === 0)).toBe(true)
  })

  it('a candidate no configured vendor serves is left out', async () => {
    const { id } = await ask({ model: 'mixed' })
    expect(reached()).toMatchObject({ vendor: 'openai', model: 'gpt-4o-mini' })
    expect(routeEvent(id)!.skipped).toEqual([{ model: 'mistral-small', why: 'no configured vendor serves it' }])
  })

  it('the complexity tier sends long code to a large model, a short question to a small one; a rule can switch it off', async () => {
    await ask({ model: 'smart' })
    expect(reached().model).toBe('gpt-4o-mini')
    for (const m of Object.values(mocks)) m.received.length = 0
    const code = `Refactor this function and explain the trade-offs:\n\`\`\`ts\n${Array.from({ length: 120 }, (_, i) => `function step${i}(x: number) { return x * ${i} + step${i + 1}(x - 1) }`).join('\n')}\n\`\`\``
    const { headers } = await ask({ model: 'smart', messages: [{ role: 'user', content: code }] })
    expect(reached().model).toBe('o3')
    expect(headers.get('x-agentmesh-route-reason')).toBe(
      'cheapest-capable: 3 candidates, picked o3 (200k, large request)',
    )
    for (const m of Object.values(mocks)) m.received.length = 0
    const flat = await ask(
      { model: 'smart', messages: [{ role: 'user', content: code }] },
      { 'X-AgentMesh-Tool': 'flat' },
    )
    expect(reached().model).toBe('gpt-4o-mini')
    expect(flat.headers.get('x-agentmesh-route-reason')).toBe(
      'flat-price; cheapest-capable: 3 candidates, picked gpt-4o-mini (128k)',
    )
  })
})

describe('rules and concrete models', () => {
  it('a rule for a team pins its model, even over a model the client named', async () => {
    const { headers, id } = await ask({ model: 'gpt-4o' }, { 'X-AgentMesh-Team': 'research' })
    expect(reached()).toMatchObject({ vendor: 'anthropic', model: 'claude-sonnet-4-5' })
    expect(headers.get('x-agentmesh-route')).toBe('anthropic/claude-sonnet-4-5')
    expect(headers.get('x-agentmesh-route-reason')).toBe('research-pins-sonnet')
    expect(routeEvent(id)).toMatchObject({
      requested: 'gpt-4o',
      rule: 'research-pins-sonnet',
      reason: 'research-pins-sonnet',
    })
    await until(() => auditEntry(id) !== undefined, 'audit entry', 5000)
    expect(auditEntry(id)).toMatchObject({
      requestedModel: 'gpt-4o',
      vendor: 'anthropic',
      route: 'research-pins-sonnet',
      identity: { team: 'research' },
    })
  })

  it('a client that names a concrete model keeps it when no rule for its team applies', async () => {
    // agent-cli-tools matches this request, but names no team: it routes aliases, never a named model
    const { headers, id } = await ask(
      { model: 'gpt-4o', tools: [weatherTool] },
      { 'X-AgentMesh-Team': 'eng', 'X-AgentMesh-Tool': 'agent-cli' },
    )
    expect(reached()).toMatchObject({ vendor: 'openai', model: 'gpt-4o' })
    expect(headers.get('x-agentmesh-route')).toBe('openai/gpt-4o')
    expect(headers.get('x-agentmesh-route-reason')).toBe('requested model')
    expect(routeEvent(id)).toBeUndefined()
    // the same request naming an alias is routed by it
    for (const m of Object.values(mocks)) m.received.length = 0
    const alias = await ask(
      { model: 'agent', tools: [weatherTool] },
      { 'X-AgentMesh-Team': 'eng', 'X-AgentMesh-Tool': 'agent-cli' },
    )
    expect(reached()).toMatchObject({ vendor: 'openai', model: 'gpt-4o-mini' })
    expect(alias.headers.get('x-agentmesh-route-reason')).toBe(
      'agent-cli-tools; cheapest-capable: 1 candidate, picked gpt-4o-mini (tools, 128k)',
    )
  })

  it('a rule naming the model in its match does apply to it; a function rule marked concrete too (Gemini via translation)', async () => {
    const a = await ask({ model: 'cheap-tools', tools: [weatherTool] })
    expect(reached()).toMatchObject({ vendor: 'openai', model: 'gpt-4o-mini' })
    expect(a.headers.get('x-agentmesh-route-reason')).toBe(
      'tools-to-cheap; cheapest-capable: 1 candidate, picked gpt-4o-mini (tools, 128k)',
    )
    for (const m of Object.values(mocks)) m.received.length = 0
    const b = await ask({ model: 'gpt-4o' }, { 'X-AgentMesh-Tool': 'router-test-cli' })
    expect(reached()).toMatchObject({ vendor: 'google', model: 'gemini-2.5-flash' })
    expect(b.data.choices[0]!.message.content).toContain('What is the capital of France?')
    expect(b.headers.get('x-agentmesh-route-reason')).toBe('cli-to-gemini')
  })

  it('a rule can hand the attempt loop its strategy with the fallbacks', async () => {
    const { id } = await ask({}, { 'X-AgentMesh-Tool': 'latency' })
    await until(() => seen.some((s) => s.id === id), 'afterResponse')
    expect(seen.find((s) => s.id === id)!.state).toMatchObject({
      rule: 'fast-by-latency',
      model: 'gpt-4o-mini',
      strategy: 'lowest-latency',
      fallbacks: [
        { vendor: 'google', model: 'gemini-2.5-flash' },
        { vendor: 'anthropic', model: 'claude-haiku-4-5' },
      ],
    })
    // the loop tries the fastest of the three first (no history yet: any of them answers)
    expect(['gpt-4o-mini', 'gemini-2.5-flash', 'claude-haiku-4-5']).toContain(reached().model)
  })

  it('the OpenAI SDK asking for claude-haiku-4-5 is served by the Anthropic mock (translation), with the route headers', async () => {
    const { data, headers } = await ask({ model: 'claude-haiku-4-5' })
    expect(reached()).toMatchObject({ vendor: 'anthropic', model: 'claude-haiku-4-5', path: '/v1/messages' })
    expect(data.choices[0]!.message.content).toBe(mockText('What is the capital of France?'))
    expect(headers.get('x-agentmesh-route')).toBe('anthropic/claude-haiku-4-5')
    expect(headers.get('x-agentmesh-route-reason')).toBe('requested model')
    expect(headers.get('x-agentmesh-translated')).toBe('openai->anthropic')
  })
})

describe('budgets (issue 16 item 6)', () => {
  const usage = async () => {
    const res = await fetch(`${proxy.url}/agentmesh/admin/usage`, { headers: { authorization: `Bearer ${ADMIN}` } })
    const report = (await res.json()) as { scopes: Array<{ scope: string; day: { usd: number } }> }
    return report.scopes.find((s) => s.scope === 'team:budget')?.day.usd ?? 0
  }

  it('reserves for the routed model, not the alias, and settles on the price of the model that answered', async () => {
    const before = await usage()
    mocks.anthropic.behaviour.delayMs = 400
    try {
      // `agent` with tools goes to claude-haiku-4-5 ($1 in, $5 out per million)
      const pending = ask(
        {
          model: 'agent',
          max_tokens: 1000,
          messages: [{ role: 'user', content: 'Weather in Paris?' }],
          tools: [weatherTool],
        },
        { 'X-AgentMesh-Team': 'budget' },
      )
      await until(() => mocks.anthropic.received.length === 1, 'the call upstream')
      // in flight: the reservation is haiku's price for 1,000 output tokens and the estimated input
      // (an alias has no price: reserved for "agent" it would be $0.000001)
      const reserved = (await usage()) - before
      expect(reserved).toBeGreaterThan((1000 * 5) / 1e6)
      expect(reserved).toBeLessThan((1000 * 5 + 2000 * 1) / 1e6)
      const { headers, id } = await pending
      await until(() => seen.some((s) => s.id === id), 'afterResponse')
      const s = seen.find((x) => x.id === id)!
      // the mock reported its usage: 10 + 3 words in, 12 out (a tool call)
      expect(s.usage).toMatchObject({ inputTokens: 13, outputTokens: 12 })
      const haiku = (13 * 1 + 12 * 5) / 1e6
      expect(Number(headers.get('x-agentmesh-cost-usd'))).toBeCloseTo(haiku, 9)
      await until(() => false, 'settlement', 300).catch(() => {})
      expect((await usage()) - before).toBeCloseTo(haiku, 9)
    } finally {
      mocks.anthropic.behaviour.delayMs = 0
    }
  })

  it("a call answered by a pricier model than the router chose settles at that model's price", async () => {
    const before = await usage()
    const { headers, id } = await ask(
      { model: 'fast', max_tokens: 50 },
      { 'X-AgentMesh-Team': 'budget', 'x-test-reroute': '1' },
    )
    expect(reached()).toMatchObject({ vendor: 'anthropic', model: 'claude-sonnet-4-5' })
    await until(() => seen.some((s) => s.id === id), 'afterResponse')
    const s = seen.find((x) => x.id === id)!
    expect(s.answerModel).toBe('claude-sonnet-4-5-20250101')
    const text = mockText('What is the capital of France?')
    // claude-sonnet-4-5: $3 in, $15 out per million; gpt-4o-mini (the router's choice) would be 0.15 / 0.6
    const sonnet = ((10 + 6) * 3 + words(text) * 15) / 1e6
    expect(s.cost).toBeCloseTo(sonnet, 9)
    expect(Number(headers.get('x-agentmesh-cost-usd'))).toBeCloseTo(sonnet, 9)
    await until(() => false, 'settlement', 300).catch(() => {})
    expect((await usage()) - before).toBeCloseTo(sonnet, 9)
  })
})

describe('options', () => {
  it('are validated at load, naming the field', () => {
    expect(() => router({ rules: [{ name: '' }] })).toThrow(/rules\[0\]\.name must be a non-empty string/)
    expect(() => router({ rules: [{ name: 'x', candidates: 'nope' }] })).toThrow(
      /rules\[0\]\.candidates names "nope", which is not an alias/,
    )
    expect(() => router({ rules: [{ name: 'x', model: 'a', candidates: ['b'] }] })).toThrow(
      /sets both model and candidates/,
    )
    expect(() => router({ rules: [{ name: 'x', match: { teem: 'eng' } as never }] })).toThrow(
      /rules\[0\]\.match has an unknown field "teem"/,
    )
    expect(() => router({ aliases: { fast: [] } })).toThrow(/aliases\.fast must be a non-empty list/)
    expect(() => router({ capabilities: { 'my-local': { tools: true } } })).toThrow(
      /capabilities\.my-local: a model the built-in table does not know needs at least contextWindow and maxOutput/,
    )
    expect(() => router({ complexity: { shortTokens: 500, longTokens: 100 } })).toThrow(/longTokens must be above/)
    expect(() => router({ routes: [] } as never)).toThrow(/unknown option "routes"/)
    expect(() => router({ rules: [{ name: 'x', strategy: 'fastest' as never }] })).toThrow(
      /rules\[0\]\.strategy must be 'ordered' or 'lowest-latency'/,
    )
  })
})
