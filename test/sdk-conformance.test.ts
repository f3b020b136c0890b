// Every method AgentMesh claims to serve, called by the official SDKs themselves (`openai`,
// `@anthropic-ai/sdk`, `@google/genai` on Gemini's v1beta and v1 paths) against a running proxy:
// a route the proxy lacks, or answers in the wrong shape, fails here. Run twice: the solo preset's
// vendors in front of the mock upstream (with quota and audit on, so the calls are governed), and
// the demo preset with no keys.
import Anthropic from '@anthropic-ai/sdk'
import { ApiError, GoogleGenAI } from '@google/genai'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { definePlugin } from '../core/plugin.ts'
import type { MeshContext } from '../core/types.ts'
import { audit } from '../plugins/audit/index.ts'
import { quota } from '../plugins/quota/index.ts'
import { demo } from '../plugins/vendors/demo.ts'
import {
  anthropicClient,
  clearVendorEnv,
  openaiClient,
  postJson,
  startCoreProxy,
  startMockAndProxy,
  type Proxy,
} from './helpers/core-harness.ts'
import { MOCK_GEMINI_COUNT, type MockUpstream } from './helpers/mock-upstream.ts'

type Governed = { protocol: string; operation: string; vendor: string; status?: number }
const seen: Governed[] = []
const recorder = definePlugin({
  name: 'test:recorder',
  enforce: 'post',
  hooks: {
    afterResponse: (ctx: MeshContext) =>
      void seen.push({
        protocol: ctx.protocol,
        operation: ctx.operation,
        vendor: ctx.route.vendor,
        status: ctx.status,
      }),
  },
})

interface Env {
  oa: OpenAI
  an: Anthropic
  /** the Gemini client of the run: apiVersion v1beta or v1 */
  ai: GoogleGenAI
  mock?: MockUpstream
}

interface Method {
  name: string
  /** an LLM call: the proxy must have run it through the pipeline as this protocol and operation */
  governed?: { protocol: string; operation: string }
  /** the mock set-up: the upstream path the call must reach */
  upstream?: RegExp
  run(env: Env): Promise<void>
}

const genai = (url: string, apiVersion: 'v1beta' | 'v1') =>
  new GoogleGenAI({
    apiKey: 'AIza-client-key',
    httpOptions: { baseUrl: url, apiVersion, retryOptions: { attempts: 1 } },
  })

async function rejectsWith(p: Promise<unknown>, status: number): Promise<any> {
  const err: any = await p.then(
    () => undefined,
    (e) => e,
  )
  expect(err, 'the call should have failed').toBeDefined()
  expect(err.status).toBe(status)
  return err
}

const openaiMethods: Method[] = [
  {
    name: 'chat.completions.create',
    governed: { protocol: 'openai', operation: 'chat' },
    upstream: /^\/v1\/chat\/completions$/,
    async run({ oa }) {
      const r = await oa.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'Say hi' }],
      })
      expect(r.choices[0]!.message.content).toBeTruthy()
    },
  },
  {
    name: 'chat.completions.create (stream)',
    governed: { protocol: 'openai', operation: 'chat' },
    upstream: /^\/v1\/chat\/completions$/,
    async run({ oa }) {
      let text = ''
      for await (const c of await oa.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'Stream hi' }],
        stream: true,
      }))
        text += c.choices[0]?.delta.content ?? ''
      expect(text).toBeTruthy()
    },
  },
  {
    name: 'embeddings.create',
    governed: { protocol: 'openai', operation: 'embeddings' },
    upstream: /^\/v1\/embeddings$/,
    async run({ oa }) {
      const r = await oa.embeddings.create({
        model: 'text-embedding-3-small',
        input: 'hello',
        encoding_format: 'float',
      })
      expect(r.data[0]!.embedding.length).toBeGreaterThan(0)
    },
  },
  {
    name: 'models.list',
    async run({ oa }) {
      const ids: string[] = []
      for await (const m of oa.models.list()) ids.push(m.id)
      expect(ids).toContain('gpt-4o-mini')
    },
  },
  {
    name: 'models.retrieve',
    async run({ oa }) {
      expect(await oa.models.retrieve('gpt-4o-mini')).toMatchObject({ id: 'gpt-4o-mini', object: 'model' })
      const err = await rejectsWith(oa.models.retrieve('no-such-model'), 404)
      expect(err).toBeInstanceOf(OpenAI.NotFoundError)
      expect(err.error.message).toContain('no-such-model')
    },
  },
]

const anthropicMethods: Method[] = [
  {
    name: 'messages.create',
    governed: { protocol: 'anthropic', operation: 'chat' },
    upstream: /^\/v1\/messages$/,
    async run({ an }) {
      const r = await an.messages.create({
        model: 'claude-haiku-4-5',
        max_tokens: 64,
        messages: [{ role: 'user', content: 'Say hi' }],
      })
      expect(r.content[0]).toMatchObject({ type: 'text' })
    },
  },
  {
    name: 'messages.stream',
    governed: { protocol: 'anthropic', operation: 'chat' },
    upstream: /^\/v1\/messages$/,
    async run({ an }) {
      const m = await an.messages
        .stream({ model: 'claude-haiku-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'Stream hi' }] })
        .finalMessage()
      expect(m.content[0]).toMatchObject({ type: 'text' })
    },
  },
  {
    name: 'messages.countTokens',
    upstream: /^\/v1\/messages\/count_tokens$/,
    async run({ an }) {
      expect(
        (await an.messages.countTokens({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hi' }] }))
          .input_tokens,
      ).toBeGreaterThan(0)
    },
  },
  {
    name: 'models.list',
    async run({ an }) {
      const ids: string[] = []
      for await (const m of an.models.list()) ids.push(m.id)
      expect(ids).toContain('claude-haiku-4-5')
      // pages follow after_id: every model exactly once
      expect(new Set(ids).size).toBe(ids.length)
    },
  },
  {
    name: 'models.retrieve',
    async run({ an }) {
      expect(await an.models.retrieve('claude-haiku-4-5')).toMatchObject({ type: 'model', id: 'claude-haiku-4-5' })
      const err = await rejectsWith(an.models.retrieve('no-such-model'), 404)
      expect(err).toBeInstanceOf(Anthropic.NotFoundError)
      expect(err.error).toMatchObject({ type: 'error', error: { type: 'not_found_error' } })
    },
  },
]

// core/pipeline.ts reads every embeddings request as OpenAI's ({model, input} in, {data} out);
// core/embeddings.ts has the Gemini reading, which the pipeline calls once the lead applies it

const user = (text: string) => [{ role: 'user', parts: [{ text }] }]
const geminiMethods = (v: 'v1beta' | 'v1'): Method[] => [
  {
    name: 'models.generateContent',
    governed: { protocol: 'gemini', operation: 'chat' },
    upstream: new RegExp(`^/${v}/models/gemini-2\\.5-flash:generateContent$`),
    async run({ ai }) {
      expect(
        (await ai.models.generateContent({ model: 'gemini-2.5-flash', contents: user('Say hi') })).text,
      ).toBeTruthy()
    },
  },
  {
    name: 'models.generateContentStream',
    governed: { protocol: 'gemini', operation: 'chat' },
    upstream: new RegExp(`^/${v}/models/gemini-2\\.5-flash:streamGenerateContent\\?alt=sse$`),
    async run({ ai }) {
      let text = ''
      for await (const c of await ai.models.generateContentStream({
        model: 'gemini-2.5-flash',
        contents: user('Stream hi'),
      }))
        text += c.text ?? ''
      expect(text).toBeTruthy()
    },
  },
  {
    name: 'models.countTokens',
    upstream: new RegExp(`^/${v}/models/gemini-2\\.5-flash:countTokens$`),
    async run({ ai, mock }) {
      const r = await ai.models.countTokens({ model: 'gemini-2.5-flash', contents: user('How many tokens?') })
      // Google's own count when a key is configured (the mock's figure), the local estimate otherwise
      if (mock) expect(r.totalTokens).toBe(MOCK_GEMINI_COUNT)
      else expect(r.totalTokens).toBeGreaterThan(0)
    },
  },
  {
    name: 'models.embedContent',
    governed: { protocol: 'gemini', operation: 'embeddings' },
    // the SDK sends every embedContent as :batchEmbedContents
    upstream: new RegExp(`^/${v}/models/gemini-embedding-001:batchEmbedContents$`),
    async run({ ai }) {
      const r = await ai.models.embedContent({ model: 'gemini-embedding-001', contents: ['first text', 'second text'] })
      expect(r.embeddings).toHaveLength(2)
      expect(r.embeddings![0]!.values!.length).toBeGreaterThan(0)
    },
  },
  {
    name: 'models.list',
    async run({ ai, mock }) {
      const names: string[] = []
      for await (const m of await ai.models.list()) names.push(m.name!)
      expect(names).toContain('models/gemini-2.5-flash')
      // a Gemini client sees only what a Gemini-speaking vendor serves (the demo serves all)
      if (mock) expect(names.some((n) => n.includes('claude'))).toBe(false)
    },
  },
  {
    name: 'models.get',
    async run({ ai }) {
      expect(await ai.models.get({ model: 'gemini-2.5-flash' })).toMatchObject({
        name: 'models/gemini-2.5-flash',
        supportedActions: expect.arrayContaining(['generateContent']),
      })
      const err = await rejectsWith(ai.models.get({ model: 'no-such-model' }), 404)
      expect(err).toBeInstanceOf(ApiError)
    },
  },
]

const suites = (env: () => Env, v1: () => Env) => [
  ...openaiMethods.map((m) => ({ sdk: 'openai', ...m, env })),
  ...anthropicMethods.map((m) => ({ sdk: 'anthropic', ...m, env })),
  ...geminiMethods('v1beta').map((m) => ({ sdk: 'genai v1beta', ...m, env })),
  ...geminiMethods('v1').map((m) => ({ sdk: 'genai v1', ...m, env: v1 })),
]

/** One method through the proxy: it answers, and an LLM call was governed by the expected vendor. */
async function check(m: Method, env: Env, vendorOf: (protocol: string) => string) {
  const before = seen.length
  const sentBefore = env.mock?.received.length ?? 0
  await m.run(env)
  if (m.governed) {
    const rec = seen
      .slice(before)
      .find((r) => r.protocol === m.governed!.protocol && r.operation === m.governed!.operation)
    expect(
      rec,
      `${m.name} was not run through the pipeline as ${m.governed.protocol} ${m.governed.operation}`,
    ).toMatchObject({ vendor: vendorOf(m.governed.protocol), status: 200 })
  }
  if (env.mock && m.upstream) {
    const paths = env.mock.received.slice(sentBefore).map((r) => r.path)
    expect(
      paths.some((p) => m.upstream!.test(p)),
      `upstream got ${JSON.stringify(paths)}`,
    ).toBe(true)
  }
}

describe('the official SDKs against the mock upstream (solo, quota and audit on)', () => {
  let mock: MockUpstream
  let proxy: Proxy
  let env: Env
  let envV1: Env
  beforeAll(async () => {
    clearVendorEnv()
    ;({ mock, proxy } = await startMockAndProxy({ config: { plugins: [quota(), audit(), recorder] } }))
    const base = { oa: openaiClient(proxy), an: anthropicClient(proxy), mock }
    env = { ...base, ai: genai(proxy.url, 'v1beta') }
    envV1 = { ...base, ai: genai(proxy.url, 'v1') }
  })
  afterAll(async () => {
    await proxy?.close()
    await mock?.close()
  })
  const vendors: Record<string, string> = { openai: 'openai', anthropic: 'anthropic', gemini: 'google' }

  for (const m of suites(
    () => env,
    () => envV1,
  )) {
    it(`${m.sdk} ${m.name}`, () => check(m, m.env(), (p) => vendors[p]!))
  }

  it('REST :embedContent (one content) is forwarded and governed as embeddings', async () => {
    const before = seen.length
    const raw = JSON.stringify({
      content: { parts: [{ text: 'embed me' }] },
      taskType: 'RETRIEVAL_QUERY',
      outputDimensionality: 2,
    })
    const res = await postJson(`${proxy.url}/v1beta/models/gemini-embedding-001:embedContent`, raw)
    expect(res.status).toBe(200)
    expect((await res.json()).embedding.values).toHaveLength(2)
    expect(mock.received.at(-1)).toMatchObject({ path: '/v1beta/models/gemini-embedding-001:embedContent', raw })
    expect(mock.received.at(-1)!.headers['x-goog-api-key']).toBe('AIza-test-configured')
    // Google reports no usage for embeddings: billed on the estimate, and said so
    expect(res.headers.get('x-agentmesh-usage')).toBe('estimated')
    expect(Number(res.headers.get('x-agentmesh-tokens'))).toBeGreaterThan(0)
    expect(seen.slice(before)).toContainEqual(
      expect.objectContaining({ protocol: 'gemini', operation: 'embeddings', vendor: 'google' }),
    )
  })

  it('a Gemini embeddings request over budget is refused with a 429 in the Gemini shape, before Google is asked', async () => {
    const { mock: m2, proxy: p2 } = await startMockAndProxy({
      config: { plugins: [quota({ limits: { defaultTeam: { tokensPerDay: 1 } } })] },
    })
    try {
      const res = await postJson(`${p2.url}/v1beta/models/gemini-embedding-001:embedContent`, {
        content: { parts: [{ text: 'a text longer than one token' }] },
      })
      expect(res.status).toBe(429)
      expect((await res.json()).error).toMatchObject({ code: 429, status: 'RESOURCE_EXHAUSTED' })
      expect(m2.received).toHaveLength(0)
    } finally {
      await p2.close()
      await m2.close()
    }
  })

  it('rejects a Gemini embeddings request without content in the Gemini error shape', async () => {
    const res = await postJson(`${proxy.url}/v1beta/models/gemini-embedding-001:embedContent`, {
      taskType: 'RETRIEVAL_QUERY',
    })
    expect(res.status).toBe(400)
    expect((await res.json()).error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT' })
  })
})

describe('the official SDKs against the demo preset (no keys)', () => {
  let proxy: Proxy
  let env: Env
  let envV1: Env
  beforeAll(async () => {
    clearVendorEnv()
    proxy = await startCoreProxy({ preset: 'demo', plugins: [demo({ latencyMs: 0, chunkDelayMs: 0 }), recorder] })
    const base = {
      oa: openaiClient(proxy, [], { apiKey: 'unused' }),
      an: anthropicClient(proxy, [], { apiKey: 'unused' }),
    }
    env = { ...base, ai: genai(proxy.url, 'v1beta') }
    envV1 = { ...base, ai: genai(proxy.url, 'v1') }
  })
  afterAll(() => proxy?.close())

  for (const m of suites(
    () => env,
    () => envV1,
  )) {
    it(`${m.sdk} ${m.name}`, () => check(m, m.env(), () => 'demo'))
  }
})

describe('model routes and unknown routes answer in the protocol of the path', () => {
  let proxy: Proxy
  beforeAll(async () => {
    proxy = await startCoreProxy({ preset: 'demo', plugins: [demo({ latencyMs: 0 })] })
  })
  afterAll(() => proxy?.close())
  const get = (path: string, headers: Record<string, string> = {}) => fetch(proxy.url + path, { headers })

  it.each([
    ['/v1beta/nothing', 'gemini'],
    ['/v1alpha/models/gemini-2.5-flash:generateContent', 'gemini'],
    ['/v1/messages/nothing', 'anthropic'],
    ['/v1/nothing', 'openai'],
  ])('GET %s: a 404 in the %s shape', async (path, protocol) => {
    const res = await get(path)
    expect(res.status).toBe(404)
    expect(res.headers.get('x-agentmesh-request-id')).toBeTruthy()
    expectShape(await res.json(), protocol)
  })

  it('POST /v1/models/{m}:unknownMethod: a 404 in the Gemini shape; without a method, in the OpenAI shape', async () => {
    const res = await postJson(proxy.url + '/v1/models/gemini-2.5-flash:predict', { instances: [] })
    expect(res.status).toBe(404)
    expectShape(await res.json(), 'gemini')
    const plain = await postJson(proxy.url + '/v1/models/gpt-4o', { contents: [] })
    expect(plain.status).toBe(404)
    expectShape(await plain.json(), 'openai')
  })

  it('GET /v1/models/{id}: the shape follows the client (anthropic-version, x-goog-api-key, else OpenAI)', async () => {
    expect(await (await get('/v1/models/gemini-2.5-flash', { 'x-goog-api-key': 'k' })).json()).toMatchObject({
      name: 'models/gemini-2.5-flash',
    })
    expect(
      await (await get('/v1/models/claude-haiku-4-5', { 'anthropic-version': '2023-06-01' })).json(),
    ).toMatchObject({ type: 'model', id: 'claude-haiku-4-5' })
    expect(await (await get('/v1/models/demo-fast')).json()).toMatchObject({
      object: 'model',
      id: 'demo-fast',
      owned_by: 'demo',
    })
    expectShape(await (await get('/v1/models/nope', { 'anthropic-version': '2023-06-01' })).json(), 'anthropic')
    expectShape(await (await get('/v1beta/models/nope')).json(), 'gemini')
  })

  it('rejects a model id that is bad percent-encoding, has control characters or is too long, in the protocol shape', async () => {
    for (const [path, protocol] of [
      ['/v1/models/%E0%A4%A', 'openai'],
      ['/v1beta/models/a%0Ab', 'gemini'],
      ['/v1/models/' + 'x'.repeat(300), 'openai'],
    ] as const) {
      const res = await get(path)
      expect(res.status, path).toBe(400)
      expectShape(await res.json(), protocol)
    }
  })

  it('pages Anthropic and Gemini lists', async () => {
    const an = await (await get('/v1/models?limit=2', { 'anthropic-version': '2023-06-01' })).json()
    expect(an.data).toHaveLength(2)
    expect(an.has_more).toBe(true)
    const next = await (
      await get(`/v1/models?limit=2&after_id=${an.last_id}`, { 'anthropic-version': '2023-06-01' })
    ).json()
    expect(next.data[0].id).not.toBe(an.data[0].id)
    const g = await (await get('/v1beta/models?pageSize=1')).json()
    expect(g.models).toHaveLength(1)
    expect(g.nextPageToken).toBeTruthy()
    const g2 = await (await get(`/v1beta/models?pageSize=1&pageToken=${g.nextPageToken}`)).json()
    expect(g2.models[0].name).not.toBe(g.models[0].name)
    expect((await get('/v1beta/models?pageToken=zzz')).status).toBe(400)
    expect((await get('/v1/models?limit=0', { 'anthropic-version': '2023-06-01' })).status).toBe(400)
  })
})

function expectShape(body: any, protocol: string) {
  if (protocol === 'gemini') expect(body.error).toMatchObject({ code: expect.any(Number), status: expect.any(String) })
  else if (protocol === 'anthropic') expect(body).toMatchObject({ type: 'error', error: { type: expect.any(String) } })
  else {
    expect(body.error).toMatchObject({ type: expect.any(String), message: expect.any(String) })
    expect(body.type).toBeUndefined()
  }
}
