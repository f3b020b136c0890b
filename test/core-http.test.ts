// The HTTP surface around the LLM endpoints: identity from headers and User-Agent, CORS and
// preflight, the SSE event stream.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Identity } from '../core/types.ts'
import { demo } from '../plugins/vendors/demo.ts'
import {
  anthropicClient,
  clearVendorEnv,
  openaiClient,
  type Proxy,
  postJson,
  sseEvents,
  startCoreProxy,
  until,
} from './helpers/core-harness.ts'

const OA = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'who am i' }] }
const fast = () => demo({ latencyMs: 0, chunkDelayMs: 0 })

beforeAll(() => clearVendorEnv())

/** The identity the core resolved for the request with this id, from its `request` event. */
function identityOf(proxy: Proxy, res: Response): Identity {
  const id = res.headers.get('x-agentmesh-request-id')
  const e = proxy.events.find((x) => x.type === 'request' && (x.data as any).id === id)
  if (!e) throw new Error(`no request event for ${id}`)
  return (e.data as any).identity
}

describe('identity', () => {
  let proxy: Proxy
  beforeAll(async () => {
    proxy = await startCoreProxy({
      preset: 'demo',
      plugins: [fast()],
      defaultIdentity: { team: 'platform', user: 'nobody' },
    })
  })
  afterAll(() => proxy.close())

  it('reads team, user and tool from X-AgentMesh-* headers', async () => {
    const res = await postJson(proxy.url + '/v1/chat/completions', OA, {
      'x-agentmesh-team': 'eng',
      'x-agentmesh-user': 'alice@example.com',
      'x-agentmesh-tool': 'my-agent',
    })
    expect(res.status).toBe(200)
    expect(identityOf(proxy, res)).toMatchObject({
      team: 'eng',
      user: 'alice@example.com',
      tool: 'my-agent',
      source: 'header',
    })
  })

  it('falls back to the configured default identity', async () => {
    const res = await postJson(proxy.url + '/v1/chat/completions', OA, { 'user-agent': 'something/1.0' })
    expect(identityOf(proxy, res)).toMatchObject({
      team: 'platform',
      user: 'nobody',
      tool: 'unknown',
      source: 'default',
    })
  })

  const agents: Array<[string, string]> = [
    ['claude-cli/2.0.14 (external, cli)', 'claude-code'],
    ['curl/8.5.0', 'curl'],
    ['OpenAI/Python 1.99.0', 'openai-sdk'],
    ['Anthropic/Python 0.60.0', 'anthropic-sdk'],
  ]
  it.each(agents)('detects the tool from User-Agent %s -> %s', async (ua, tool) => {
    const res = await postJson(proxy.url + '/v1/chat/completions', OA, { 'user-agent': ua })
    expect(identityOf(proxy, res).tool).toBe(tool)
  })

  it('detects the official JS SDKs from their real User-Agent', async () => {
    const before = proxy.events.length
    await openaiClient(proxy).chat.completions.create(OA as any)
    await anthropicClient(proxy).messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 5,
      messages: [{ role: 'user', content: 'hi' }],
    })
    const tools = proxy.events
      .slice(before)
      .filter((e) => e.type === 'request')
      .map((e) => (e.data as any).identity.tool)
    expect(tools).toEqual(['openai-sdk', 'anthropic-sdk'])
  })

  it('an explicit X-AgentMesh-Tool wins over the User-Agent', async () => {
    const res = await postJson(proxy.url + '/v1/chat/completions', OA, {
      'user-agent': 'curl/8.5.0',
      'x-agentmesh-tool': 'nightly-job',
    })
    expect(identityOf(proxy, res).tool).toBe('nightly-job')
  })

  it('rejects a malformed identity header with a 400 in the client protocol', async () => {
    const res = await postJson(
      proxy.url + '/v1/messages',
      { model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] },
      { 'x-agentmesh-team': 'eng team; drop' },
    )
    expect(res.status).toBe(400)
    const body = await res.json()
    expect(body).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } })
    expect(body.error.message).toContain('X-AgentMesh-Team')
  })

  it('ignores identity headers when trustIdentityHeaders is off', async () => {
    const strict = await startCoreProxy({ preset: 'demo', plugins: [fast()], trustIdentityHeaders: false })
    try {
      const res = await postJson(strict.url + '/v1/chat/completions', OA, {
        'x-agentmesh-team': 'eng',
        'x-agentmesh-user': 'mallory',
        'user-agent': 'curl/8.5.0',
      })
      expect(identityOf(strict, res)).toMatchObject({
        team: 'default',
        user: 'anonymous',
        tool: 'curl',
        source: 'default',
      })
    } finally {
      await strict.close()
    }
  })

  it('lets a plugin replace the resolver (the hook a key-based resolver uses)', async () => {
    const keyed = await startCoreProxy({
      preset: 'demo',
      plugins: [
        fast(),
        {
          name: 'test:key-identity',
          setup(mesh) {
            mesh.setIdentityResolver((ctx) => {
              const key = ctx.request.headers.get('x-api-key')
              if (key !== 'am-team-key')
                return { kind: 'error', status: 401, type: 'authentication_error', message: 'unknown virtual key' }
              return { team: 'billing', user: 'svc', tool: 'batch', keyId: 'k1', source: 'key' }
            })
          },
        },
      ],
    })
    try {
      const ok = await postJson(keyed.url + '/v1/chat/completions', OA, {
        'x-api-key': 'am-team-key',
        'x-agentmesh-team': 'eng',
      })
      expect(ok.status).toBe(200)
      expect(identityOf(keyed, ok)).toMatchObject({ team: 'billing', keyId: 'k1', source: 'key' })
      const denied = await postJson(keyed.url + '/v1/chat/completions', OA, { 'x-api-key': 'am-wrong' })
      expect(denied.status).toBe(401)
      expect((await denied.json()).error.type).toBe('authentication_error')
    } finally {
      await keyed.close()
    }
  })
})

describe('CORS', () => {
  let proxy: Proxy
  beforeAll(async () => {
    proxy = await startCoreProxy({
      preset: 'demo',
      plugins: [fast()],
      cors: { origins: ['https://app.example.com', 'chrome-extension://*'] },
    })
  })
  afterAll(() => proxy.close())

  it('allows a configured origin and exposes the governance headers', async () => {
    const res = await postJson(proxy.url + '/v1/chat/completions', OA, { origin: 'https://app.example.com' })
    expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example.com')
    expect(res.headers.get('access-control-expose-headers')).toBe('*')
    expect(res.headers.get('vary')?.toLowerCase()).toContain('origin')
  })

  it('matches origin patterns like chrome-extension://*', async () => {
    const res = await postJson(proxy.url + '/v1/chat/completions', OA, {
      origin: 'chrome-extension://abcdefghijklmnop',
    })
    expect(res.headers.get('access-control-allow-origin')).toBe('chrome-extension://abcdefghijklmnop')
  })

  it("refuses calls from other origins, in the client protocol, with no CORS grant (issue 11: a page on any site could spend the operator's key)", async () => {
    const before = proxy.events.filter((e) => e.type === 'request').length
    const res = await postJson(proxy.url + '/v1/chat/completions', OA, { origin: 'https://evil.example.net' })
    expect(res.status).toBe(403)
    expect((await res.json()).error.type).toBe('permission_error')
    expect(res.headers.get('access-control-allow-origin')).toBeNull()
    // refused before the pipeline: no request started
    expect(proxy.events.filter((e) => e.type === 'request').length).toBe(before)
  })

  it('answers a preflight with 204, methods and the requested headers', async () => {
    const res = await fetch(proxy.url + '/v1/messages', {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example.com',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type, x-api-key, anthropic-version',
      },
    })
    expect(res.status).toBe(204)
    expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example.com')
    expect(res.headers.get('access-control-allow-methods')).toContain('POST')
    expect(res.headers.get('access-control-allow-headers')).toBe('content-type, x-api-key, anthropic-version')
  })

  it('puts CORS headers on errors too', async () => {
    const res = await postJson(proxy.url + '/v1/chat/completions', '{oops', { origin: 'https://app.example.com' })
    expect(res.status).toBe(400)
    expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example.com')
    const nf = await fetch(proxy.url + '/nowhere', { headers: { origin: 'https://app.example.com' } })
    expect(nf.status).toBe(404)
    expect(nf.headers.get('access-control-allow-origin')).toBe('https://app.example.com')
  })

  it('the demo preset allows loopback pages and extensions, no longer any origin', async () => {
    const open = await startCoreProxy({ preset: 'demo', plugins: [fast()] })
    try {
      const res = await postJson(open.url + '/v1/chat/completions', OA, { origin: 'http://localhost:5173' })
      expect(res.headers.get('access-control-allow-origin')).toBe('http://localhost:5173')
      const other = await postJson(open.url + '/v1/chat/completions', OA, { origin: 'https://evil.example.net' })
      expect(other.status).toBe(403)
      expect(other.headers.get('access-control-allow-origin')).toBeNull()
    } finally {
      await open.close()
    }
  })
})

/** what an event stream has sent so far, read as it comes; `done` once its request is aborted */
function collect(res: Response): { text: () => string; done: Promise<void> } {
  const reader = res.body!.getReader()
  let buf = ''
  const done = (async () => {
    for (;;) {
      const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }))
      if (done) return
      buf += new TextDecoder().decode(value)
    }
  })()
  return { text: () => buf, done }
}

/** a demo proxy with its event stream (`query`) open and read; close() ends both */
async function proxyWithEvents(query: string) {
  const proxy = await startCoreProxy({ preset: 'demo', plugins: [fast()] })
  const ac = new AbortController()
  const stream = collect(await fetch(`${proxy.url}/agentmesh/events${query}`, { signal: ac.signal }))
  await until(() => stream.text().includes(': agentmesh events'), 'the event stream to open')
  const close = async () => {
    ac.abort()
    await proxy.close()
  }
  return { proxy, stream, ac, close }
}

describe('events', () => {
  it('GET /agentmesh/events streams request, llm_call and response events as SSE', async () => {
    const proxy = await startCoreProxy({ preset: 'demo', plugins: [fast()] })
    const ac = new AbortController()
    try {
      const es = await fetch(proxy.url + '/agentmesh/events', { signal: ac.signal })
      expect(es.status).toBe(200)
      expect(es.headers.get('content-type')).toContain('text/event-stream')
      const stream = collect(es)
      await until(() => stream.text().includes(': agentmesh events'), 'the event stream to open')
      const res = await postJson(proxy.url + '/v1/chat/completions', OA, { 'x-agentmesh-team': 'eng' })
      const id = res.headers.get('x-agentmesh-request-id')
      await res.json()
      await until(() => sseEvents(stream.text()).filter((e) => e.event === 'response').length > 0, 'a response event')
      const events = sseEvents(stream.text()).filter((e) => e.event)
      const types = events.map((e) => e.event)
      expect(types).toEqual(expect.arrayContaining(['request', 'llm_call', 'response']))
      expect(types.indexOf('request')).toBeLessThan(types.indexOf('response'))
      const request = JSON.parse(events.find((e) => e.event === 'request')!.data)
      expect(request).toMatchObject({
        type: 'request',
        data: { id, protocol: 'openai', model: 'gpt-4o-mini', identity: { team: 'eng' } },
      })
      const response = JSON.parse(events.find((e) => e.event === 'response')!.data)
      expect(response.data).toMatchObject({ id, status: 200, vendor: 'demo' })
      expect(response.data.tokens).toBeGreaterThan(0)
      ac.abort()
      await stream.done
    } finally {
      ac.abort()
      await proxy.close()
    }
  })

  it('a request answered before its lifecycle began (a body that does not parse) still has its request event, before its response, once', async () => {
    const { proxy, stream, close } = await proxyWithEvents('?types=request,response')
    try {
      const res = await fetch(proxy.url + '/v1/chat/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-agentmesh-team': 'eng' },
        body: '{"model": "gpt-4o-mini", "messages": [',
      })
      expect(res.status).toBe(400)
      const id = res.headers.get('x-agentmesh-request-id')
      await res.text()
      await until(() => sseEvents(stream.text()).some((e) => e.event === 'response'), 'a response event')
      const mine = sseEvents(stream.text())
        .map((e) => JSON.parse(e.data))
        .filter((e) => e.data.id === id)
      expect(mine.map((e) => e.type)).toEqual(['request', 'response'])
      expect(mine[1].data.status).toBe(400)
    } finally {
      await close()
    }
  })

  it("a stream's response event comes at its end, with the usage and cost its llm_call settled", async () => {
    const { proxy, stream, ac, close } = await proxyWithEvents('?types=llm_call,response')
    try {
      const res = await postJson(
        proxy.url + '/v1/chat/completions',
        { ...OA, stream: true },
        { 'x-agentmesh-team': 'eng' },
      )
      await res.text()
      await until(() => sseEvents(stream.text()).some((e) => e.event === 'response'), 'a response event')
      const events = sseEvents(stream.text())
        .filter((e) => e.event)
        .map((e) => JSON.parse(e.data))
      expect(events.map((e) => e.type)).toEqual(['llm_call', 'response'])
      const [call, response] = events
      expect(call.data.usage.outputTokens).toBeGreaterThan(0)
      expect(response.data).toMatchObject({
        id: res.headers.get('x-agentmesh-request-id'),
        status: 200,
        protocol: 'openai',
        stream: true,
        requested: 'gpt-4o-mini',
        usage: call.data.usage,
        costUsd: call.data.costUsd,
        tokens: call.data.usage.inputTokens + call.data.usage.outputTokens,
        vendorCalled: true,
      })
      expect(response.data.aborted).toBeUndefined()
      ac.abort()
      await stream.done
    } finally {
      await close()
    }
  })

  it('filters with ?types= and reports errors', async () => {
    const proxy = await startCoreProxy({ preset: 'demo', plugins: [fast()] })
    const ac = new AbortController()
    try {
      const es = await fetch(proxy.url + '/agentmesh/events?types=error', { signal: ac.signal })
      const stream = collect(es)
      await until(() => stream.text().includes(': agentmesh events'), 'the event stream to open')
      await (await postJson(proxy.url + '/v1/chat/completions', OA)).text()
      await (await postJson(proxy.url + '/v1/chat/completions', { model: 'gpt-4o-mini' })).text()
      await until(() => sseEvents(stream.text()).some((e) => e.event === 'error'), 'an error event')
      const types = sseEvents(stream.text()).map((e) => e.event)
      expect(new Set(types)).toEqual(new Set(['error']))
      expect(JSON.parse(sseEvents(stream.text())[0]!.data).data).toMatchObject({
        status: 400,
        type: 'invalid_request_error',
      })
    } finally {
      ac.abort()
      await proxy.close()
    }
  })
})
