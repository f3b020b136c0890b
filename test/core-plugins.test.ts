// The plugin lifecycle: order (enforce, then config order), short-circuits, a throwing plugin,
// shutdown, and the playground's custom plugin loaded from its config file.
import { fileURLToPath } from 'node:url'
import { rmSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { APIError } from 'openai'
import { createAgentMesh } from '../core/app.ts'
import { loadMeshConfig } from '../core/config.ts'
import { definePlugin } from '../core/plugin.ts'
import type { CanonicalAnswer, HookName, MeshContext, Plugin } from '../core/types.ts'
import { demo } from '../plugins/vendors/demo.ts'
import {
  anthropicClient,
  clearVendorEnv,
  governanceHeadersOf,
  openaiClient,
  postJson,
  sseEvents,
  startCoreMockAndProxy,
  startCoreProxy,
  tempDir,
  until,
  type Proxy,
} from './helpers/core-harness.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const HOOKS: HookName[] = ['beforeRequest', 'cacheLookup', 'route', 'afterResponse']

/** A plugin that records `name:hook` in ctx.meta.order for every hook. */
function tracer(name: string, enforce?: 'pre' | 'post'): Plugin {
  const hooks = Object.fromEntries(
    HOOKS.map((h) => [h, (ctx: MeshContext) => void (ctx.meta.order ??= []).push(`${name}:${h}`)]),
  )
  return definePlugin({ name, enforce, hooks })
}

beforeAll(() => clearVendorEnv())

describe('plugin order', () => {
  const orders: string[][] = []
  let proxy: Proxy
  beforeAll(async () => {
    proxy = await startCoreProxy({
      preset: 'demo',
      plugins: [
        tracer('post-a', 'post'),
        tracer('normal-b'),
        tracer('pre-c', 'pre'),
        tracer('normal-d'),
        tracer('pre-e', 'pre'),
        demo({ latencyMs: 0, chunkDelayMs: 0 }),
      ],
      // config hooks run after every plugin's hook of the same name
      hooks: { afterResponse: (ctx) => void orders.push([...ctx.meta.order]) },
    })
  })
  afterAll(() => proxy.close())

  it('runs hooks by enforce (pre, normal, post), then config order, phase by phase', async () => {
    const res = await postJson(proxy.url + '/v1/chat/completions', {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'order?' }],
    })
    expect(res.status).toBe(200)
    const names = ['pre-c', 'pre-e', 'normal-b', 'normal-d', 'post-a']
    expect(orders.at(-1)).toEqual(HOOKS.flatMap((h) => names.map((n) => `${n}:${h}`)))
    // the vendor plugins are `post` and come after the user's post plugin; user's demo() replaces the preset's
    expect(proxy.instance.plugins.map((p) => p.name)).toEqual([...names, 'vendor:demo'])
    expect(proxy.instance.plugins.at(-1)!.options).toEqual({ latencyMs: 0, chunkDelayMs: 0 })
  })

  it('reports the order at /agentmesh/health', async () => {
    const health = await (await fetch(proxy.url + '/agentmesh/health')).json()
    expect(health).toMatchObject({
      ok: true,
      preset: 'demo',
      plugins: ['pre-c', 'pre-e', 'normal-b', 'normal-d', 'post-a', 'vendor:demo'],
      storage: { driver: 'memory', reachable: true },
    })
  })
})

describe('short-circuits', () => {
  const calls: string[] = []
  let afterCount = 0
  const answer = (text: string): CanonicalAnswer => ({
    id: 'cached-1',
    model: 'gpt-4o-mini',
    text,
    toolCalls: [],
    stopReason: 'stop',
    usage: { inputTokens: 7, outputTokens: 5, cacheReadTokens: 0, cacheWriteTokens: 0 },
  })
  let proxy: Proxy
  beforeAll(async () => {
    proxy = await startCoreProxy({
      preset: 'demo',
      plugins: [
        definePlugin({
          name: 'gate',
          hooks: {
            beforeRequest(ctx) {
              calls.push('gate')
              if (ctx.request.headers.get('x-test') === 'json')
                ctx.response = {
                  kind: 'json',
                  status: 202,
                  body: { queued: true },
                  headers: { 'x-agentmesh-dry-run': '1' },
                }
            },
            cacheLookup(ctx) {
              calls.push('lookup')
              if (ctx.request.headers.get('x-test') === 'hit') {
                ctx.cache.status = 'exact'
                ctx.response = { kind: 'answer', answer: answer('from the cache') }
              }
            },
            afterResponse() {
              afterCount++
            },
          },
        }),
        definePlugin({
          name: 'later',
          hooks: {
            beforeRequest: () => void calls.push('later:before'),
            cacheLookup: () => void calls.push('later:lookup'),
            route: () => void calls.push('later:route'),
          },
        }),
        demo({ latencyMs: 0, chunkDelayMs: 0 }),
      ],
    })
  })
  afterAll(() => proxy.close())

  it('a beforeRequest answer stops the chain: later hooks and phases are skipped, afterResponse runs once', async () => {
    calls.length = 0
    afterCount = 0
    const res = await postJson(
      proxy.url + '/v1/chat/completions',
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
      { 'x-test': 'json' },
    )
    expect(res.status).toBe(202)
    expect(await res.json()).toEqual({ queued: true })
    expect(res.headers.get('x-agentmesh-dry-run')).toBe('1')
    governanceHeadersOf(res.headers)
    expect(calls).toEqual(['gate'])
    expect(afterCount).toBe(1)
    expect(
      proxy.events.filter(
        (e) => e.type === 'llm_call' && (e.data as any).id === res.headers.get('x-agentmesh-request-id'),
      ),
    ).toHaveLength(0)
  })

  it('a cacheLookup answer is rendered in the client protocol, streamed when asked, and skips route and vendor', async () => {
    calls.length = 0
    const oa = openaiClient(proxy, [], { headers: { 'x-test': 'hit' } })
    const { data, response } = await oa.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] })
      .withResponse()
    expect(data.choices[0]!.message.content).toBe('from the cache')
    expect(response.headers.get('x-agentmesh-cache')).toBe('exact')
    // a hit costs nothing
    expect(response.headers.get('x-agentmesh-tokens')).toBe('0')
    expect(calls).toEqual(['gate', 'later:before', 'lookup'])

    let streamed = ''
    let usageChunks = 0
    for await (const c of await oa.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'x' }],
      stream: true,
    })) {
      streamed += c.choices[0]?.delta.content ?? ''
      if (c.usage) usageChunks++
    }
    expect(streamed).toBe('from the cache')
    // a replayed stream has a usage chunk only for a client that asked for one
    expect(usageChunks).toBe(0)
    const withUsage = await oa.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'x' }],
      stream: true,
      stream_options: { include_usage: true },
    })
    const usages: any[] = []
    for await (const c of withUsage) if (c.usage) usages.push(c.usage)
    expect(usages).toHaveLength(1)

    const an = anthropicClient(proxy, [], { headers: { 'x-test': 'hit' } })
    const msg = await an.messages
      .stream({ model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] })
      .finalMessage()
    expect(msg.content).toEqual([{ type: 'text', text: 'from the cache' }])

    const g = await postJson(
      proxy.url + '/v1beta/models/gemini-2.5-flash:generateContent',
      { contents: [{ parts: [{ text: 'x' }] }] },
      { 'x-test': 'hit' },
    )
    expect((await g.json()).candidates[0].content.parts[0].text).toBe('from the cache')
  })
})

describe('a plugin that throws', () => {
  const afterSeen: Array<{ status?: number; error?: MeshContext['error'] }> = []
  let proxy: Proxy
  beforeAll(async () => {
    proxy = await startCoreProxy({
      preset: 'demo',
      plugins: [
        definePlugin({
          name: 'flaky-policy',
          hooks: {
            beforeRequest(ctx) {
              if (ctx.request.headers.get('x-test') === 'boom') throw new Error('policy store unavailable')
              if (ctx.request.headers.get('x-test') === 'leaky')
                throw new Error(
                  'cannot reach redis://admin:hunter2secret@10.0.0.5:6379 with key sk-proj-abcdefghijklmnopqrstuvwxyz012345',
                )
            },
          },
        }),
        definePlugin({
          name: 'flaky-audit',
          hooks: {
            afterResponse(ctx) {
              if (ctx.request.headers.get('x-test') === 'after-boom') throw new Error('disk full')
            },
          },
        }),
        definePlugin({
          name: 'watcher',
          enforce: 'post',
          hooks: { afterResponse: (ctx) => void afterSeen.push({ status: ctx.status, error: ctx.error }) },
        }),
        demo({ latencyMs: 0, chunkDelayMs: 0 }),
      ],
    })
  })
  afterAll(() => proxy.close())

  it('gives a 500 in the OpenAI shape naming the plugin, and the next request works', async () => {
    const oa = openaiClient(proxy, [], { headers: { 'x-test': 'boom' } })
    const err = await oa.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e) => e)
    expect(err).toBeInstanceOf(APIError)
    expect(err.status).toBe(500)
    expect(err.message).toContain('flaky-policy')
    expect(err.message).toContain('policy store unavailable')
    expect(afterSeen.at(-1)).toMatchObject({ status: 500, error: { plugin: 'flaky-policy' } })
    const ok = await openaiClient(proxy).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
    })
    expect(ok.choices[0]!.message.content).toContain('AgentMesh demo answer')
  })

  it('masks keys and URL credentials in the error text the client gets', async () => {
    const res = await postJson(
      proxy.url + '/v1/chat/completions',
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
      { 'x-test': 'leaky' },
    )
    expect(res.status).toBe(500)
    const text = await res.text()
    expect(text).toContain('flaky-policy')
    expect(text).toContain('redis://***@10.0.0.5:6379')
    expect(text).not.toContain('hunter2secret')
    expect(text).not.toContain('abcdefghijklmnopqrstuvwxyz012345')
  })

  it('gives a 500 in the Anthropic and Gemini shapes too', async () => {
    const a = await postJson(
      proxy.url + '/v1/messages',
      { model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] },
      { 'x-test': 'boom' },
    )
    expect(a.status).toBe(500)
    governanceHeadersOf(a.headers)
    const ab = await a.json()
    expect(ab).toMatchObject({ type: 'error', error: { type: 'plugin_error' } })
    expect(ab.error.message).toContain('flaky-policy')
    const g = await postJson(
      proxy.url + '/v1beta/models/gemini-2.5-flash:generateContent',
      { contents: [{ parts: [{ text: 'hi' }] }] },
      { 'x-test': 'boom' },
    )
    expect(g.status).toBe(500)
    const gb = await g.json()
    expect(gb.error).toMatchObject({ code: 500, status: 'INTERNAL' })
    expect(gb.error.message).toContain('flaky-policy')
  })

  it('a throwing afterResponse plugin does not spoil the answer nor stop later afterResponse plugins', async () => {
    const before = afterSeen.length
    const res = await postJson(
      proxy.url + '/v1/chat/completions',
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
      { 'x-test': 'after-boom' },
    )
    expect(res.status).toBe(200)
    expect((await res.json()).choices[0].message.content).toContain('AgentMesh demo answer')
    expect(afterSeen.length).toBe(before + 1)
  })
})

describe('shutdown', () => {
  it('close() waits for a stream in flight: its afterResponse runs before the plugins are closed', async () => {
    const log: string[] = []
    const proxy = await startCoreProxy({
      preset: 'demo',
      plugins: [
        definePlugin({
          name: 'flusher',
          setup(mesh) {
            mesh.onClose(() => void log.push('closed'))
          },
          // slow on purpose, like a flush to disk
          hooks: {
            afterResponse: async (ctx) => {
              await new Promise((r) => setTimeout(r, 30))
              log.push(`after:${ctx.aborted ? 'aborted' : 'complete'}`)
            },
          },
        }),
        demo({ latencyMs: 0, chunkDelayMs: 20 }),
      ],
    })
    const res = await postJson(proxy.url + '/v1/chat/completions', {
      model: 'gpt-4o-mini',
      stream: true,
      messages: [{ role: 'user', content: 'a slow stream' }],
    })
    const reader = res.body!.getReader()
    await reader.read()
    const closing = proxy.instance.close()
    let text = ''
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      text += new TextDecoder().decode(value)
    }
    await closing
    expect(text).toContain('[DONE]')
    expect(log).toEqual(['after:complete', 'closed'])
    await proxy.close()
  })
})

describe('the playground', () => {
  let proxy: Proxy
  let mocked: Proxy
  let mockStop: () => Promise<void>
  let received: () => number
  const dataDir = tempDir()
  beforeAll(async () => {
    const { config } = await loadMeshConfig({
      cwd: ROOT,
      configFile: 'playground/agentmesh.config.ts',
      overrides: { dataDir, log: { level: 'silent' } },
    })
    expect(config.preset).toBe('demo')
    expect(config.sources).toContain('playground/agentmesh.config.ts')
    const instance = await createAgentMesh(config)
    const events: any[] = []
    instance.mesh.on((e) => events.push(e))
    const server = await instance.listen({ port: 0, host: '127.0.0.1' })
    proxy = {
      url: server.url,
      port: server.port,
      instance,
      events,
      dataDir,
      close: async () => {
        await server.close()
        await instance.close()
      },
    }
    // the same config in front of the mock upstream, to count what reaches a vendor
    const { mock, proxy: p2 } = await startCoreMockAndProxy({
      config: { plugins: config.plugins.filter((p) => p.name === 'block-words') },
    })
    mocked = p2
    received = () => mock.received.length
    mockStop = async () => {
      await p2.close()
      await mock.close()
    }
  })
  afterAll(async () => {
    await proxy.close()
    await mockStop()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('loads block-words from the config file and runs it first, the vendor last', () => {
    // between them: the demo preset's own feature plugins
    const names = proxy.instance.plugins.map((p) => p.name)
    expect(names[0]).toBe('block-words')
    expect(names.at(-1)).toBe('vendor:demo')
  })

  it('blocks a prompt with a configured word: 403 in each client protocol, no vendor call', async () => {
    const oa = openaiClient(proxy)
    const err = await oa.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Summarise Project-Atlas for me' }] })
      .catch((e) => e)
    expect(err).toBeInstanceOf(APIError)
    expect(err.status).toBe(403)
    expect(err.message).toContain('Project-Atlas')

    const an = anthropicClient(proxy)
    const aerr = await an.messages
      .create({
        model: 'claude-haiku-4-5',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'what is my password' }],
      })
      .catch((e) => e)
    expect(aerr.status).toBe(403)
    expect(aerr.error).toMatchObject({ type: 'error', error: { type: 'permission_error' } })

    const g = await postJson(proxy.url + '/v1beta/models/gemini-2.5-flash:generateContent', {
      contents: [{ parts: [{ text: 'the password is' }] }],
    })
    expect(g.status).toBe(403)
    expect((await g.json()).error).toMatchObject({ code: 403, status: 'PERMISSION_DENIED' })

    expect(proxy.events.filter((e) => e.type === 'llm_call')).toHaveLength(0)
    const r = await postJson(mocked.url + '/v1/chat/completions', {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'about project-atlas' }],
    })
    expect(r.status).toBe(403)
    expect(received()).toBe(0)
  })

  it('answers a prompt without a blocked word normally', async () => {
    const res = await openaiClient(proxy).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Summarise the atlas of the world' }],
    })
    expect(res.choices[0]!.message.content).toContain('Summarise the atlas of the world')
    expect(proxy.events.filter((e) => e.type === 'llm_call')).toHaveLength(1)
    const r = await postJson(mocked.url + '/v1/chat/completions', {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'about the atlas' }],
    })
    expect(r.status).toBe(200)
    expect(received()).toBe(1)
  })

  it('streams a blocked prompt as a 403 error, not as a stream', async () => {
    const res = await postJson(proxy.url + '/v1/chat/completions', {
      model: 'gpt-4o-mini',
      stream: true,
      messages: [{ role: 'user', content: 'password' }],
    })
    expect(res.status).toBe(403)
    expect(res.headers.get('content-type')).toContain('application/json')
    expect(sseEvents(await res.text())).toHaveLength(0)
  })

  it('rejects bad options at creation, naming the field', async () => {
    const { blockWords } = await import('../playground/plugins/block-words.ts')
    expect(() => blockWords({ words: 'password' as any })).toThrow(/words/)
    expect(() => blockWords({ words: [''] })).toThrow(/words/)
  })
})

describe('after the stream', () => {
  it('afterResponse of a stream runs once, with the complete answer and actual usage', async () => {
    const seen: Array<{ text?: string; usage: MeshContext['usage'] }> = []
    const proxy = await startCoreProxy({
      preset: 'demo',
      plugins: [
        definePlugin({
          name: 'count',
          hooks: { afterResponse: (ctx) => void seen.push({ text: ctx.answer?.text, usage: { ...ctx.usage } }) },
        }),
        demo({ latencyMs: 0, chunkDelayMs: 5 }),
      ],
    })
    try {
      const stream = await openaiClient(proxy).chat.completions.create({
        model: 'gpt-4o-mini',
        stream: true,
        messages: [{ role: 'user', content: 'count me' }],
      })
      let text = ''
      for await (const c of stream) text += c.choices[0]?.delta.content ?? ''
      await until(() => seen.length > 0, 'afterResponse')
      await new Promise((r) => setTimeout(r, 20))
      expect(seen).toHaveLength(1)
      expect(seen[0]!.text).toBe(text)
      expect(seen[0]!.usage.outputTokens).toBeGreaterThan(10)
      expect(seen[0]!.usage.estimated).toBeFalsy()
    } finally {
      await proxy.close()
    }
  })
})
