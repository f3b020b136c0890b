// More vendors (issue 16 items 4 and 5): openaiCompatible servers (two at once, routed by model),
// Azure OpenAI's URL styles and header, and one vendor spread over several keys and base URLs:
// weights, fewest requests in flight, a 429 or failing deployment cooled down and probed. Keys
// must never show in response headers, events, the targets listing or `agentmesh config`.
import { spawn } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import OpenAI from 'openai'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import type { Plugin, Vendor } from '../core/types.ts'
import { retryAfterMs } from '../core/vendor.ts'
import { azureOpenAI } from '../plugins/vendors/azure.ts'
import { openaiCompatible } from '../plugins/vendors/openai-compatible.ts'
import { VENDOR_ENV, clearVendorEnv, postJson, startProxy, tempDir, until, type Proxy } from './helpers/core-harness.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

interface Seen {
  method: string
  path: string
  headers: IncomingHttpHeaders
  body: any
}
interface CompatBehaviour {
  status?: number
  retryAfter?: string
  delayMs?: number
  /** a server that sends no usage, in streams even when asked (older llama.cpp, some gateways) nor in JSON */
  noUsage?: boolean
}
interface CompatMock {
  url: string
  received: Seen[]
  behaviour: CompatBehaviour
  close(): Promise<void>
}

const USAGE = { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 }

/** An OpenAI-compatible server at any path prefix; answers say which mock (`label`) answered. */
async function startCompatMock(label: string, behaviour: CompatBehaviour = {}): Promise<CompatMock> {
  const mock: CompatMock = { url: '', received: [], behaviour, close: async () => {} }
  const server: Server = createServer((req, res) => {
    let raw = ''
    req.on('data', (c) => (raw += c))
    req.on('end', async () => {
      const body = raw ? JSON.parse(raw) : {}
      mock.received.push({ method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers, body })
      const b = mock.behaviour
      if (b.delayMs) await new Promise((r) => setTimeout(r, b.delayMs))
      if (b.status && b.status >= 400) {
        res.writeHead(b.status, {
          'content-type': 'application/json',
          ...(b.retryAfter ? { 'retry-after': b.retryAfter } : {}),
        })
        return res.end(JSON.stringify({ error: { type: 'mock_error', message: `${label} failure ${b.status}` } }))
      }
      const path = (req.url ?? '').split('?')[0]!
      if (path.endsWith('/embeddings')) {
        res.writeHead(200, { 'content-type': 'application/json' })
        return res.end(
          JSON.stringify({
            object: 'list',
            data: [{ object: 'embedding', index: 0, embedding: [0.5, 0.25] }],
            model: body.model,
            usage: { prompt_tokens: 4, total_tokens: 4 },
          }),
        )
      }
      if (!path.endsWith('/chat/completions')) {
        res.writeHead(404, { 'content-type': 'application/json' })
        return res.end(JSON.stringify({ error: { message: `no route ${path}` } }))
      }
      const text = `${label} says hi`
      const base = { id: `chatcmpl-${label}`, created: 1, model: body.model }
      if (!body.stream) {
        res.writeHead(200, { 'content-type': 'application/json' })
        return res.end(
          JSON.stringify({
            ...base,
            object: 'chat.completion',
            choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
            ...(b.noUsage ? {} : { usage: USAGE }),
          }),
        )
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      const chunk = (delta: unknown, finish: string | null = null) =>
        `data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`
      res.write(chunk({ role: 'assistant', content: '' }))
      for (const w of text.split(/(?<= )/)) res.write(chunk({ content: w }))
      res.write(chunk({}, 'stop'))
      if (body.stream_options?.include_usage && !b.noUsage)
        res.write(
          `data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [], usage: USAGE })}\n\n`,
        )
      res.end('data: [DONE]\n\n')
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  mock.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  mock.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections()
      server.close(() => r())
    })
  return mock
}

const GROQ_KEY = 'gsk-secret-groq-0000-aaaa-zz91'
const AZURE_KEY = 'azure-secret-key-1111-bbbb-zz92'
const KEY_A = 'sk-secret-deployment-a-2222-zz93'
const KEY_B = 'sk-secret-deployment-b-3333-zz94'
const SECRETS = [GROQ_KEY, AZURE_KEY, KEY_A, KEY_B]

/** No key, nor its last 6 characters, anywhere in this text. */
function expectNoSecrets(text: string) {
  for (const k of SECRETS) {
    expect(text).not.toContain(k)
    expect(text).not.toContain(k.slice(-6))
  }
}

const headersText = (res: Response | Headers) =>
  JSON.stringify([...((res instanceof Headers ? res : res.headers) as Headers).entries()])

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})
afterAll(() => clearVendorEnv())

async function proxyWith(plugins: Plugin[]): Promise<Proxy> {
  clearVendorEnv()
  delete process.env.AZURE_OPENAI_API_KEY
  delete process.env.AZURE_OPENAI_ENDPOINT
  const proxy = await startProxy({ plugins })
  cleanups.push(() => proxy.close())
  return proxy
}
async function mockOf(label: string, b: CompatBehaviour = {}) {
  const m = await startCompatMock(label, b)
  cleanups.push(() => m.close())
  return m
}
const ask = (proxy: Proxy, model: string, extra: Record<string, unknown> = {}) =>
  postJson(`${proxy.url}/v1/chat/completions`, { model, messages: [{ role: 'user', content: 'hello' }], ...extra })
const vendorOf = (proxy: Proxy, name: string) => proxy.instance.mesh.vendors.get(name) as Vendor

describe('openaiCompatible', () => {
  it('serves the official OpenAI SDK through the proxy, streamed and not, and the usage settles', async () => {
    const groq = await mockOf('groq')
    const proxy = await proxyWith([
      openaiCompatible({
        name: 'groq',
        baseURL: `${groq.url}/openai/v1`,
        apiKey: GROQ_KEY,
        models: ['llama-3.3-70b-versatile'],
      }),
    ])
    const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'sk-client-own-openai-key', maxRetries: 0 })

    const { data, response } = await client.chat.completions
      .create({ model: 'llama-3.3-70b-versatile', messages: [{ role: 'user', content: 'hello' }] })
      .withResponse()
    expect(data.choices[0]!.message.content).toBe('groq says hi')
    expect(response.headers.get('x-agentmesh-vendor')).toBe('groq')
    expect(response.headers.get('x-agentmesh-tokens')).toBe('18')
    // Groq's published price for the model (core/pricing.ts): 11 x $0.59 + 7 x $0.79 per million
    expect(Number(response.headers.get('x-agentmesh-cost-usd'))).toBeCloseTo((11 * 0.59 + 7 * 0.79) / 1e6, 6)
    expect(response.headers.get('x-agentmesh-price')).toBeNull()
    const sent = groq.received[0]!
    expect(sent.path).toBe('/openai/v1/chat/completions')
    expect(sent.headers.authorization).toBe(`Bearer ${GROQ_KEY}`)
    expect(sent.body.model).toBe('llama-3.3-70b-versatile')
    // one key: called directly, no balancer and nothing to list
    expect(vendorOf(proxy, 'groq').targets).toBeUndefined()

    const stream = await client.chat.completions.create({
      model: 'llama-3.3-70b-versatile',
      messages: [{ role: 'user', content: 'hello' }],
      stream: true,
    })
    let text = ''
    let usageChunks = 0
    for await (const c of stream) {
      text += c.choices[0]?.delta?.content ?? ''
      if (c.usage) usageChunks++
    }
    expect(text).toBe('groq says hi')
    // the proxy asked for usage on the client's behalf and kept that chunk from it
    expect(groq.received[1]!.body.stream_options).toEqual({ include_usage: true })
    expect(usageChunks).toBe(0)
    await until(() => proxy.events.filter((e) => e.type === 'llm_call').length === 2, 'two llm_call events')
    const calls = proxy.events.filter((e) => e.type === 'llm_call').map((e) => e.data as any)
    expect(calls[1]).toMatchObject({ vendor: 'groq', stream: true, usage: { inputTokens: 11, outputTokens: 7 } })
    expect(calls[1].costUsd).toBeCloseTo((11 * 0.59 + 7 * 0.79) / 1e6, 9)
  })

  it('routes two compatible vendors by model; a local model without a price costs $0 and says so', async () => {
    const ollama = await mockOf('ollama')
    const together = await mockOf('together')
    const proxy = await proxyWith([
      openaiCompatible({
        name: 'ollama',
        baseURL: `${ollama.url}/v1`,
        models: ['llama3.2:3b'],
        match: (m) => m.endsWith(':latest'),
      }),
      openaiCompatible({
        name: 'together',
        baseURL: `${together.url}/v1`,
        apiKey: 'together-key-xyz',
        models: ['meta-llama/*'],
        pricing: { 'meta-llama/Llama-3.3-70B-Instruct-Turbo': { input: 0.88, output: 0.88 } },
      }),
    ])
    // a client's own OpenAI key is sent along: it must reach neither server
    const headers = { authorization: 'Bearer sk-client-own-openai-key' }
    const local = await postJson(
      `${proxy.url}/v1/chat/completions`,
      { model: 'llama3.2:3b', messages: [{ role: 'user', content: 'hi' }] },
      headers,
    )
    expect(local.status).toBe(200)
    expect((await local.json()).choices[0].message.content).toBe('ollama says hi')
    expect(local.headers.get('x-agentmesh-vendor')).toBe('ollama')
    expect(local.headers.get('x-agentmesh-cost-usd')).toBe('0.000000')
    expect(local.headers.get('x-agentmesh-price')).toBe('none: counted as $0')
    expect(ollama.received[0]!.path).toBe('/v1/chat/completions')
    expect(ollama.received[0]!.headers.authorization).toBeUndefined()

    const hosted = await postJson(
      `${proxy.url}/v1/chat/completions`,
      { model: 'meta-llama/Llama-3.3-70B-Instruct-Turbo', messages: [{ role: 'user', content: 'hi' }] },
      headers,
    )
    expect((await hosted.json()).choices[0].message.content).toBe('together says hi')
    expect(hosted.headers.get('x-agentmesh-vendor')).toBe('together')
    expect(Number(hosted.headers.get('x-agentmesh-cost-usd'))).toBeCloseTo((18 * 0.88) / 1e6, 6)
    expect(hosted.headers.get('x-agentmesh-price')).toBeNull()
    expect(together.received[0]!.headers.authorization).toBe('Bearer together-key-xyz')
    expect(ollama.received).toHaveLength(1)
    expect(together.received).toHaveLength(1)

    // the predicate: served, not listed
    const byPredicate = await ask(proxy, 'qwen2.5:latest')
    expect(byPredicate.headers.get('x-agentmesh-vendor')).toBe('ollama')
    expect(ollama.received.at(-1)!.body.model).toBe('qwen2.5:latest')
    // a model neither serves goes to neither (here: the demo vendor the harness adds)
    const other = await ask(proxy, 'mistral-small-latest')
    expect(other.headers.get('x-agentmesh-vendor')).toBe('demo')
    // both list their models
    const list = await (await fetch(`${proxy.url}/v1/models`)).json()
    expect(list.data.map((m: any) => m.id)).toContain('llama3.2:3b')
    expect(list.data.map((m: any) => m.id)).not.toContain('qwen2.5:latest')

    const emb = await postJson(`${proxy.url}/v1/embeddings`, { model: 'llama3.2:3b', input: 'a sentence' })
    expect(emb.status).toBe(200)
    expect((await emb.json()).data[0].embedding).toEqual([0.5, 0.25])
    expect(ollama.received.at(-1)!.path).toBe('/v1/embeddings')
  })

  it('a server that sends no usage is billed on the counted answer, streamed or not, never on zero', async () => {
    const llamacpp = await mockOf('llamacpp', { noUsage: true })
    const proxy = await proxyWith([
      openaiCompatible({
        name: 'llamacpp',
        baseURL: `${llamacpp.url}/v1`,
        models: ['qwen2.5-7b'],
        pricing: { 'qwen2.5-7b': { input: 1, output: 1 } },
      }),
    ])
    const res = await ask(proxy, 'qwen2.5-7b', { stream: true })
    expect(res.status).toBe(200)
    expect(await res.text()).toContain('[DONE]')
    await until(() => proxy.events.some((e) => e.type === 'llm_call'), 'llm_call')
    const call = proxy.events.find((e) => e.type === 'llm_call')!.data as any
    // the estimated input and the counted answer ('llamacpp says hi'), at $1/$1 per million
    expect(call.usage).toMatchObject({
      estimated: true,
      outputTokens: proxy.instance.mesh.tokens.count('llamacpp says hi', 'qwen2.5-7b'),
    })
    expect(call.usage.inputTokens).toBeGreaterThan(0)
    expect(call.costUsd).toBeCloseTo((call.usage.inputTokens + call.usage.outputTokens) / 1e6, 12)

    const whole = await ask(proxy, 'qwen2.5-7b')
    expect(whole.status).toBe(200)
    expect(whole.headers.get('x-agentmesh-usage')).toBe('estimated')
    expect(Number(whole.headers.get('x-agentmesh-tokens'))).toBe(call.usage.inputTokens + call.usage.outputTokens)
    expect(Number(whole.headers.get('x-agentmesh-cost-usd'))).toBeGreaterThan(0)
  })

  it('refuses a bad config with a message naming the field', () => {
    expect(() => openaiCompatible({ name: 'openai', baseURL: 'http://x/v1', models: ['m'] })).toThrow(/built-in vendor/)
    expect(() => openaiCompatible({ name: 'groq', baseURL: 'api.groq.com', models: ['m'] })).toThrow(/baseURL/)
    expect(() => openaiCompatible({ name: 'groq', baseURL: 'http://x/v1', models: 'm' as any })).toThrow(/models/)
    expect(() =>
      openaiCompatible({
        name: 'groq',
        baseURL: 'http://x/v1',
        models: ['m'],
        deployments: [{ apiKey: 'k', weight: 0 }],
      }),
    ).toThrow(/weight/)
    expect(() =>
      openaiCompatible({
        name: 'groq',
        baseURL: 'http://x/v1',
        models: ['m'],
        pricing: { m: { input: -1, output: 1 } },
      }),
    ).toThrow(/pricing\.m/)
  })
})

describe('azureOpenAI', () => {
  it('calls the deployment path with api-version and the key in api-key, never in Authorization', async () => {
    const azure = await mockOf('azure')
    const proxy = await proxyWith([
      azureOpenAI({
        baseURL: azure.url,
        apiKey: AZURE_KEY,
        deployments: { 'gpt-4o': 'prod-gpt4o' },
        apiVersion: '2024-10-21',
      }),
    ])
    const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'sk-client-own-openai-key', maxRetries: 0 })
    const { data, response } = await client.chat.completions
      .create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] })
      .withResponse()
    expect(data.choices[0]!.message.content).toBe('azure says hi')
    expect(response.headers.get('x-agentmesh-vendor')).toBe('azure')
    const sent = azure.received[0]!
    expect(sent.path).toBe('/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21')
    expect(sent.headers['api-key']).toBe(AZURE_KEY)
    expect(sent.headers.authorization).toBeUndefined()
    // the key is in exactly one header
    expect(
      Object.entries(sent.headers)
        .filter(([, v]) => String(v).includes(AZURE_KEY))
        .map(([k]) => k),
    ).toEqual(['api-key'])
    expectNoSecrets(headersText(response.headers as unknown as Headers))

    const stream = await client.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hello' }],
      stream: true,
    })
    let text = ''
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? ''
    expect(text).toBe('azure says hi')
    expect(azure.received[1]!.path).toBe('/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21')

    const emb = await postJson(`${proxy.url}/v1/embeddings`, { model: 'text-embedding-3-small', input: 'x' })
    expect(emb.headers.get('x-agentmesh-vendor')).not.toBe('azure')
  })

  it('the v1 API: /openai/v1/chat/completions with the deployment as the model, no api-version', async () => {
    const azure = await mockOf('azure-v1')
    const proxy = await proxyWith([
      azureOpenAI({
        name: 'azure-eu',
        baseURL: `${azure.url}/openai/v1/`,
        apiKey: AZURE_KEY,
        api: 'v1',
        deployments: { 'gpt-4o-mini': 'mini-eu', 'text-embedding-3-small': 'embed-eu' },
      }),
    ])
    const res = await ask(proxy, 'gpt-4o-mini')
    expect(res.status).toBe(200)
    expect(res.headers.get('x-agentmesh-vendor')).toBe('azure-eu')
    expect(azure.received[0]!.path).toBe('/openai/v1/chat/completions')
    expect(azure.received[0]!.body.model).toBe('mini-eu')
    expect(azure.received[0]!.headers['api-key']).toBe(AZURE_KEY)
    const emb = await postJson(`${proxy.url}/v1/embeddings`, { model: 'text-embedding-3-small', input: 'x' })
    expect(emb.status).toBe(200)
    expect(azure.received[1]!.path).toBe('/openai/v1/embeddings')
    expect(azure.received[1]!.body.model).toBe('embed-eu')
  })

  it("without a configured key, the client's own key does not go to Azure", async () => {
    const azure = await mockOf('azure')
    const proxy = await proxyWith([azureOpenAI({ baseURL: azure.url, deployments: { 'gpt-4o': 'prod-gpt4o' } })])
    await postJson(
      `${proxy.url}/v1/chat/completions`,
      { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] },
      { authorization: 'Bearer sk-client-own-openai-key', 'x-api-key': 'sk-client-other' },
    )
    expect(azure.received).toHaveLength(1)
    expect(azure.received[0]!.headers.authorization).toBeUndefined()
    expect(azure.received[0]!.headers['api-key']).toBeUndefined()
    expect(JSON.stringify(azure.received[0]!.headers)).not.toContain('sk-client')
  })
})

describe('several deployments per vendor', () => {
  it('spreads sequential calls by weight (3:1 over 200 calls)', async () => {
    const a = await mockOf('a')
    const b = await mockOf('b')
    const proxy = await proxyWith([
      openaiCompatible({
        name: 'pool',
        baseURL: `${a.url}/v1`,
        models: ['m'],
        deployments: [
          { baseURL: `${a.url}/v1`, apiKey: KEY_A, weight: 3 },
          { baseURL: `${b.url}/v1`, apiKey: KEY_B, weight: 1 },
        ],
      }),
    ])
    for (let i = 0; i < 200; i++) expect((await ask(proxy, 'm')).status).toBe(200)
    expect(a.received.length + b.received.length).toBe(200)
    expect(a.received.length).toBeGreaterThanOrEqual(140)
    expect(a.received.length).toBeLessThanOrEqual(160)
    // each deployment gets its own key
    expect(a.received.every((r) => r.headers.authorization === `Bearer ${KEY_A}`)).toBe(true)
    expect(b.received.every((r) => r.headers.authorization === `Bearer ${KEY_B}`)).toBe(true)
  })

  it('apiKeys: several keys on one base URL, equal shares', async () => {
    const a = await mockOf('a')
    const proxy = await proxyWith([
      openaiCompatible({ name: 'keys', baseURL: `${a.url}/v1`, models: ['m'], apiKeys: [KEY_A, KEY_B] }),
    ])
    for (let i = 0; i < 20; i++) await ask(proxy, 'm')
    const byKey = (k: string) => a.received.filter((r) => r.headers.authorization === `Bearer ${k}`).length
    expect([byKey(KEY_A), byKey(KEY_B)]).toEqual([10, 10])
    const ids = vendorOf(proxy, 'keys').targets!().map((t) => t.id)
    expect(new Set(ids).size).toBe(2)
    for (const id of ids) expect(id).toMatch(/^keys\/127\.0\.0\.1:\d+#[0-9a-f]{8}$/)
  })

  it('sends new calls to the deployment with the fewest in flight (a slow one gets few under concurrency)', async () => {
    const slow = await mockOf('slow', { delayMs: 400 })
    const fast = await mockOf('fast')
    const proxy = await proxyWith([
      openaiCompatible({
        name: 'pool',
        baseURL: `${fast.url}/v1`,
        models: ['m'],
        deployments: [
          { baseURL: `${slow.url}/v1`, apiKey: KEY_A },
          { baseURL: `${fast.url}/v1`, apiKey: KEY_B },
        ],
      }),
    ])
    // 4 workers, 10 calls each: equal weights alone would send 20 to each
    const worker = async () => {
      for (let i = 0; i < 10; i++) expect((await ask(proxy, 'm')).status).toBe(200)
    }
    await Promise.all([worker(), worker(), worker(), worker()])
    expect(slow.received.length + fast.received.length).toBe(40)
    expect(slow.received.length).toBeLessThanOrEqual(8)
    expect(fast.received.length).toBeGreaterThanOrEqual(32)
    const t = vendorOf(proxy, 'pool').targets!()
    expect(t.every((x) => x.inFlight === 0 && x.state === 'healthy')).toBe(true)
    expect(t[0]!.latencyEwmaMs!).toBeGreaterThan(t[1]!.latencyEwmaMs!)
  })

  it('a 429 cools a deployment down until Retry-After, then one probe brings it back', async () => {
    const a = await mockOf('a', { status: 429, retryAfter: '1' })
    const b = await mockOf('b')
    const proxy = await proxyWith([
      openaiCompatible({
        name: 'pool',
        baseURL: `${a.url}/v1`,
        apiKey: 'unused',
        models: ['m'],
        deployments: [
          { baseURL: `${a.url}/v1`, apiKey: KEY_A },
          { baseURL: `${b.url}/v1`, apiKey: KEY_B },
        ],
      }),
    ])
    const vendor = vendorOf(proxy, 'pool')
    // the first call goes to a (first in the list, weights equal) and meets its 429; b answers it at once
    expect((await ask(proxy, 'm')).status).toBe(200)
    expect(a.received).toHaveLength(1)
    expect(b.received).toHaveLength(1)
    const cooling = vendor.targets!()[0]!
    expect(cooling.state).toBe('cooldown')
    expect(cooling.cooldownUntil! - Date.now()).toBeGreaterThan(500)
    expect(cooling.cooldownUntil! - Date.now()).toBeLessThanOrEqual(1000)
    expect(proxy.events.find((e) => (e.type as string) === 'target_cooldown')?.data).toMatchObject({
      vendor: 'pool',
      target: cooling.id,
      reason: 'rate limited (429)',
    })
    // while it cools, every call goes to b
    for (let i = 0; i < 5; i++) expect((await ask(proxy, 'm')).status).toBe(200)
    expect(a.received).toHaveLength(1)
    expect(b.received).toHaveLength(6)
    // Retry-After passed: a is half-open; its one probe succeeds and it is healthy again
    a.behaviour.status = undefined
    await new Promise((r) => setTimeout(r, 1100))
    expect(vendor.targets!()[0]!.state).toBe('half-open')
    for (let i = 0; i < 4; i++) expect((await ask(proxy, 'm')).status).toBe(200)
    expect(a.received.length).toBeGreaterThanOrEqual(2)
    expect(vendor.targets!()[0]!.state).toBe('healthy')
    expect(
      proxy.events.some((e) => (e.type as string) === 'target_recovered' && (e.data as any).target === cooling.id),
    ).toBe(true)
  })

  it('N failures within the window cool a deployment down; a failed probe cools it again after one request', async () => {
    const a = await mockOf('a', { status: 500 })
    const b = await mockOf('b')
    const proxy = await proxyWith([
      openaiCompatible({
        name: 'pool',
        baseURL: `${a.url}/v1`,
        models: ['m'],
        cooldown: { failures: 3, windowMs: 10_000, ms: 600 },
        deployments: [
          { baseURL: `${a.url}/v1`, apiKey: KEY_A },
          { baseURL: `${b.url}/v1`, apiKey: KEY_B },
        ],
      }),
    ])
    const vendor = vendorOf(proxy, 'pool')
    // each of a's 500s is left for b at once: every request is answered
    for (let i = 0; i < 12; i++) expect((await ask(proxy, 'm')).status).toBe(200)
    // a failed 3 times (it had half the calls until then), then was skipped
    expect(a.received).toHaveLength(3)
    expect(vendor.targets!()[0]).toMatchObject({ state: 'cooldown', failures: 3 })
    await new Promise((r) => setTimeout(r, 700))
    // still failing: its one probe fails and it cools down again; b answers every request, the
    // probe's too (a 500 from one key is left for another at once)
    const before = b.received.length
    for (let i = 0; i < 6; i++) expect((await ask(proxy, 'm')).status).toBe(200)
    expect(a.received).toHaveLength(4)
    expect(b.received.length - before).toBe(6)
    expect(vendor.targets!()[0]!.state).toBe('cooldown')
  })

  it('every deployment cooling down: one clear 503', async () => {
    const a = await mockOf('a', { status: 429, retryAfter: '30' })
    const proxy = await proxyWith([
      openaiCompatible({ name: 'pool', baseURL: `${a.url}/v1`, models: ['m'], apiKeys: [KEY_A, KEY_B] }),
    ])
    await ask(proxy, 'm')
    await ask(proxy, 'm')
    const res = await ask(proxy, 'm')
    expect(res.status).toBe(503)
    expect((await res.json()).error.message).toMatch(
      /every deployment of pool is cooling down \(the first is back in (29|30) s\)/,
    )
    expect(a.received).toHaveLength(2)
  })

  it('Retry-After in seconds, as a date and as retry-after-ms', () => {
    const now = Date.parse('2026-12-05T10:00:00Z')
    expect(retryAfterMs({ 'retry-after': '2' }, now)).toBe(2000)
    expect(retryAfterMs({ 'retry-after': 'Sat, 05 Dec 2026 10:00:05 GMT' }, now)).toBe(5000)
    expect(retryAfterMs({ 'retry-after-ms': '250', 'retry-after': '1' }, now)).toBe(250)
    expect(retryAfterMs({ 'retry-after': 'soon' }, now)).toBeUndefined()
    expect(retryAfterMs({}, now)).toBeUndefined()
  })
})

describe('keys stay secret', () => {
  it('not in response headers, events, the targets listing, nor `agentmesh config`', async () => {
    const a = await mockOf('a', { status: 429, retryAfter: '5' })
    const b = await mockOf('b')
    const azure = await mockOf('azure')
    const proxy = await proxyWith([
      openaiCompatible({
        name: 'pool',
        baseURL: `${a.url}/v1`,
        apiKey: GROQ_KEY,
        models: ['m'],
        deployments: [
          { baseURL: `${a.url}/v1`, apiKey: KEY_A },
          { baseURL: `${b.url}/v1`, apiKey: KEY_B },
        ],
      }),
      azureOpenAI({ baseURL: azure.url, apiKey: AZURE_KEY, deployments: { 'gpt-4o': 'd' } }),
    ])
    const texts: string[] = []
    for (const model of ['m', 'm', 'm', 'gpt-4o']) {
      const res = await ask(proxy, model, { stream: model === 'gpt-4o' })
      texts.push(headersText(res), await res.text())
    }
    await until(() => proxy.events.some((e) => (e.type as string) === 'target_cooldown'), 'a cooldown event')
    texts.push(JSON.stringify(proxy.events))
    texts.push(JSON.stringify(vendorOf(proxy, 'pool').targets!()))
    // the admin listing (core/routes-service.ts) reads the token from the environment per request
    const ADMIN = 'admin-token-for-vendors-more-test'
    process.env.AGENTMESH_ADMIN_TOKEN = ADMIN
    cleanups.push(async () => {
      delete process.env.AGENTMESH_ADMIN_TOKEN
    })
    const admin = await fetch(`${proxy.url}/agentmesh/admin/targets`, { headers: { authorization: `Bearer ${ADMIN}` } })
    expect(admin.status).toBe(200)
    const adminText = await admin.text()
    const listed = JSON.parse(adminText).targets.filter((t: any) => t.kind === 'deployment' && t.vendor === 'pool')
    expect(listed.map((t: any) => t.state).sort()).toEqual(['cooldown', 'healthy'])
    texts.push(headersText(admin), adminText)
    for (const t of texts) expectNoSecrets(t)

    const dir = tempDir('agentmesh-vendors-cli-')
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }))
    writeFileSync(
      join(dir, 'agentmesh.config.ts'),
      [
        `import { openaiCompatible } from ${JSON.stringify(join(ROOT, 'plugins/vendors/openai-compatible.ts'))}`,
        `import { azureOpenAI } from ${JSON.stringify(join(ROOT, 'plugins/vendors/azure.ts'))}`,
        'export default {',
        `  plugins: [openaiCompatible({ name: 'groq', baseURL: 'https://api.groq.com/openai/v1', apiKey: ${JSON.stringify(GROQ_KEY)}, models: ['llama-3.3-70b-versatile'], deployments: [{ apiKey: ${JSON.stringify(KEY_A)} }, { apiKey: ${JSON.stringify(KEY_B)}, weight: 2 }] }),`,
        `    azureOpenAI({ resource: 'my-res', apiKeys: [${JSON.stringify(AZURE_KEY)}, 'azure-second-key-9999'], deployments: { 'gpt-4o': 'prod' } })],`,
        '}',
      ].join('\n'),
    )
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' }
    for (const k of VENDOR_ENV) delete env[k]
    const out = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const child = spawn(process.execPath, [join(ROOT, 'bin/agentmesh.mjs'), 'config'], {
        cwd: dir,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let o = ''
      let e = ''
      child.stdout.on('data', (d) => (o += d))
      child.stderr.on('data', (d) => (e += d))
      child.once('close', (code) => resolve({ code, out: o, err: e }))
    })
    expect(out.err).toBe('')
    expect(out.code).toBe(0)
    expectNoSecrets(out.out)
    expect(out.out).not.toContain('azure-second-key-9999')
    const printed = JSON.parse(out.out)
    const groq = printed.plugins.find((p: any) => p.name === 'vendor:groq')
    expect(groq.options.deployments).toEqual([
      { id: expect.stringMatching(/^api\.groq\.com#[0-9a-f]{8}$/), weight: 1 },
      { id: expect.stringMatching(/^api\.groq\.com#[0-9a-f]{8}$/), weight: 2 },
    ])
    expect(printed.plugins.find((p: any) => p.name === 'vendor:azure').options.deployments).toHaveLength(2)
  }, 60_000)
})
