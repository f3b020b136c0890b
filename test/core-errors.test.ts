// Bad input and upstream failures: each answered with the right status, in the client's own
// protocol error shape, with governance headers, and never as a made-up 200.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { APIError } from 'openai'
import { definePlugin } from '../core/plugin.ts'
import type { MeshContext } from '../core/types.ts'
import {
  anthropicClient,
  clearVendorEnv,
  closedPort,
  governanceHeadersOf,
  openaiClient,
  postJson,
  startCoreMockAndProxy,
  startCoreProxy,
  until,
  type Proxy,
} from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'

type Proto = 'openai' | 'anthropic' | 'gemini'
const PATHS: Record<Proto, string> = {
  openai: '/v1/chat/completions',
  anthropic: '/v1/messages',
  gemini: '/v1beta/models/gemini-2.5-flash:generateContent',
}
const GOOD: Record<Proto, object> = {
  openai: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] },
  anthropic: { model: 'claude-haiku-4-5', max_tokens: 50, messages: [{ role: 'user', content: 'hello' }] },
  gemini: { contents: [{ role: 'user', parts: [{ text: 'hello' }] }] },
}

/** The error body in the protocol's own shape; returns the message. */
function expectErrorShape(proto: Proto, body: any, status: number): string {
  if (proto === 'openai') {
    expect(body).toMatchObject({ error: { type: expect.any(String), message: expect.any(String) } })
    return body.error.message
  }
  if (proto === 'anthropic') {
    expect(body).toMatchObject({ type: 'error', error: { type: expect.any(String), message: expect.any(String) } })
    return body.error.message
  }
  expect(body).toMatchObject({ error: { code: status, message: expect.any(String), status: expect.any(String) } })
  return body.error.message
}

const seen: Array<{
  id: string
  status?: number
  aborted?: boolean
  error?: MeshContext['error']
  usage: MeshContext['usage']
}> = []
const recorder = definePlugin({
  name: 'test:recorder',
  hooks: {
    afterResponse: (ctx) =>
      void seen.push({
        id: ctx.id,
        status: ctx.status,
        aborted: ctx.aborted,
        error: ctx.error,
        usage: { ...ctx.usage },
      }),
  },
})

beforeAll(() => clearVendorEnv())

describe('bad input', () => {
  let mock: MockUpstream
  let proxy: Proxy
  beforeAll(async () => {
    ;({ mock, proxy } = await startCoreMockAndProxy({ config: { limits: { bodyBytes: 2048 } } }))
  })
  afterAll(async () => {
    await proxy.close()
    await mock.close()
  })

  const cases: Array<[Proto, string, string, RegExp]> = [
    ['openai', 'malformed JSON', '{"model": "gpt-4o-mini", "messages": [', /malformed JSON/],
    ['openai', 'missing model', JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }), /model/],
    ['openai', 'missing messages', JSON.stringify({ model: 'gpt-4o-mini' }), /messages/],
    ['anthropic', 'malformed JSON', '{"model": ', /malformed JSON/],
    [
      'anthropic',
      'missing model',
      JSON.stringify({ max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }),
      /model/,
    ],
    ['anthropic', 'missing messages', JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 5 }), /messages/],
    ['gemini', 'malformed JSON', 'not json at all', /malformed JSON/],
    ['gemini', 'missing contents', JSON.stringify({ generationConfig: {} }), /contents/],
  ]
  it.each(cases)('%s: %s -> 400 in the protocol error shape', async (proto, _what, raw, mentions) => {
    const before = mock.received.length
    const res = await postJson(proxy.url + PATHS[proto], raw)
    expect(res.status).toBe(400)
    governanceHeadersOf(res.headers)
    expect(expectErrorShape(proto, await res.json(), 400)).toMatch(mentions)
    expect(mock.received.length).toBe(before)
  })

  it('gemini: a missing model in the path -> 400', async () => {
    const res = await postJson(proxy.url + '/v1beta/models/:generateContent', GOOD.gemini)
    expect(res.status).toBe(400)
    expect(expectErrorShape('gemini', await res.json(), 400)).toMatch(/model/)
  })

  it('the official SDKs surface a 400 as their BadRequestError', async () => {
    const oa = openaiClient(proxy)
    await expect(oa.chat.completions.create({ model: 'gpt-4o-mini', messages: [] })).rejects.toMatchObject({
      status: 400,
      type: 'invalid_request_error',
    })
    const an = anthropicClient(proxy)
    await expect(an.messages.create({ model: 'claude-haiku-4-5', max_tokens: 5, messages: [] })).rejects.toMatchObject({
      status: 400,
      error: { type: 'error', error: { type: 'invalid_request_error' } },
    })
  })

  it.each(['openai', 'anthropic', 'gemini'] as Proto[])(
    '%s: a body over limits.bodyBytes -> 413 in the protocol shape',
    async (proto) => {
      const big = { ...GOOD[proto], padding: 'x'.repeat(4096) }
      const res = await postJson(proxy.url + PATHS[proto], big)
      expect(res.status).toBe(413)
      governanceHeadersOf(res.headers)
      expect(expectErrorShape(proto, await res.json(), 413)).toMatch(/2048/)
    },
  )

  it('413 also for a chunked body with no content-length', async () => {
    const chunk = new TextEncoder().encode('x'.repeat(1024))
    let n = 0
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (n++ < 8) c.enqueue(chunk)
        else c.close()
      },
    })
    const res = await fetch(proxy.url + PATHS.openai, {
      method: 'POST',
      body,
      duplex: 'half',
      headers: { 'content-type': 'application/json' },
    } as RequestInit)
    expect(res.status).toBe(413)
    expect(expectErrorShape('openai', await res.json(), 413)).toMatch(/limit/)
  })

  it('a body just under the limit is accepted', async () => {
    const body = JSON.stringify(GOOD.openai)
    const res = await postJson(proxy.url + PATHS.openai, body + ' '.repeat(2048 - Buffer.byteLength(body)))
    expect(res.status).toBe(200)
  })

  it('an unknown route -> 404 JSON', async () => {
    for (const [method, path] of [
      ['GET', '/nope'],
      ['POST', '/v1/completions'],
      ['DELETE', '/v1/messages'],
    ] as const) {
      const res = await fetch(proxy.url + path, { method })
      expect(res.status).toBe(404)
      expect(res.headers.get('content-type')).toContain('application/json')
      const body = await res.json()
      expect(body.error.message).toContain(path)
      expect(res.headers.get('x-agentmesh-request-id')).toBeTruthy()
    }
  })
})

describe('upstream failures', () => {
  it.each(['openai', 'anthropic', 'gemini'] as Proto[])(
    '%s: upstream refused -> 502 in the protocol shape',
    async (proto) => {
      const port = await closedPort()
      const dead = `http://127.0.0.1:${port}`
      const proxy = await startCoreProxy({
        preset: 'solo',
        vendors: {
          openai: { baseURL: dead, apiKey: 'sk-x' },
          anthropic: { baseURL: dead, apiKey: 'sk-x' },
          google: { baseURL: dead, apiKey: 'k' },
        },
      })
      try {
        const res = await postJson(proxy.url + PATHS[proto], GOOD[proto])
        expect(res.status).toBe(502)
        const h = governanceHeadersOf(res.headers)
        expect(h['x-agentmesh-vendor']).toBe(proto === 'gemini' ? 'google' : proto)
        expect(expectErrorShape(proto, await res.json(), 502)).toContain(`127.0.0.1:${port}`)
      } finally {
        await proxy.close()
      }
    },
  )

  it('upstream timeout -> 504 in each protocol shape (streaming too), and the upstream calls are dropped', async () => {
    const { mock, proxy } = await startCoreMockAndProxy({
      behaviour: { hang: true },
      config: { limits: { upstreamTimeoutMs: 150 } },
    })
    try {
      const protos: Proto[] = ['openai', 'anthropic', 'gemini']
      // in parallel: undici fires its timers with a resolution of about a second
      const results = await Promise.all([
        ...protos.map(async (proto) => {
          const res = await postJson(proxy.url + PATHS[proto], GOOD[proto])
          return { proto, res, body: await res.json() }
        }),
        (async () => {
          const res = await postJson(proxy.url + PATHS.openai, { ...GOOD.openai, stream: true })
          return { proto: 'openai' as Proto, res, body: await res.json() }
        })(),
      ])
      for (const { proto, res, body } of results) {
        expect(res.status).toBe(504)
        expect(res.headers.get('content-type')).toContain('application/json')
        governanceHeadersOf(res.headers)
        expect(expectErrorShape(proto, body, 504)).toMatch(/150 ms/)
      }
      await until(() => mock.aborted === 4, 'the timed-out upstream requests to be closed')
    } finally {
      await proxy.close()
      await mock.close()
    }
  })

  describe('upstream 4xx/5xx passed through with status and body', () => {
    let mock: MockUpstream
    let proxy: Proxy
    beforeAll(async () => {
      ;({ mock, proxy } = await startCoreMockAndProxy({ config: { plugins: [recorder] } }))
    })
    afterAll(async () => {
      await proxy.close()
      await mock.close()
    })

    const cases: Array<[Proto, number, boolean]> = [
      ['openai', 429, false],
      ['openai', 500, true],
      ['anthropic', 401, false],
      ['anthropic', 529, true],
      ['gemini', 400, false],
      ['gemini', 503, false],
    ]
    it.each(cases)('%s: upstream %i (stream %s)', async (proto, status, stream) => {
      mock.behaviour.status = status
      try {
        const path =
          proto === 'gemini' && stream ? '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse' : PATHS[proto]
        const res = await postJson(proxy.url + path, {
          ...GOOD[proto],
          ...(stream && proto !== 'gemini' ? { stream: true } : {}),
        })
        expect(res.status).toBe(status)
        expect(await res.json()).toEqual({ error: { type: 'mock_error', message: `mock failure ${status}` } })
        const h = governanceHeadersOf(res.headers)
        await until(() => seen.some((s) => s.id === h['x-agentmesh-request-id']), 'afterResponse')
        const s = seen.find((x) => x.id === h['x-agentmesh-request-id'])!
        expect(s.status).toBe(status)
        expect(s.error).toMatchObject({ status, type: 'upstream_error' })
      } finally {
        mock.behaviour.status = undefined
      }
    })

    it('the openai SDK sees the upstream status, not a 200', async () => {
      mock.behaviour.status = 429
      try {
        const err = await openaiClient(proxy)
          .chat.completions.create(GOOD.openai as any)
          .catch((e) => e)
        expect(err).toBeInstanceOf(APIError)
        expect(err.status).toBe(429)
        expect(err.message).toContain('mock failure 429')
      } finally {
        mock.behaviour.status = undefined
      }
    })
  })
})

describe('streams that end early', () => {
  let mock: MockUpstream
  let proxy: Proxy
  beforeAll(async () => {
    ;({ mock, proxy } = await startCoreMockAndProxy({ behaviour: { eventGapMs: 25 }, config: { plugins: [recorder] } }))
  })
  afterAll(async () => {
    await proxy.close()
    await mock.close()
  })

  it.each(['openai', 'anthropic', 'gemini'] as Proto[])(
    '%s: a client disconnect during a stream aborts the upstream call',
    async (proto) => {
      const before = mock.aborted
      const ac = new AbortController()
      const path = proto === 'gemini' ? '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse' : PATHS[proto]
      // a long prompt: the mock echoes it a word per event, so the stream lasts well over a second
      const long = 'a long answer '.repeat(20)
      const body =
        proto === 'gemini'
          ? { contents: [{ role: 'user', parts: [{ text: long }] }] }
          : { ...GOOD[proto], stream: true, messages: [{ role: 'user', content: long }] }
      const res = await fetch(proxy.url + path, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: ac.signal,
      })
      expect(res.status).toBe(200)
      const id = res.headers.get('x-agentmesh-request-id')!
      const reader = res.body!.getReader()
      const first = await reader.read()
      expect(first.done).toBe(false)
      ac.abort()
      await until(() => mock.aborted === before + 1, 'the upstream request to be aborted')
      await until(() => seen.some((s) => s.id === id), 'afterResponse of the aborted stream')
      const s = seen.find((x) => x.id === id)!
      expect(s.aborted).toBe(true)
      // settled on at least the estimated input
      expect(s.usage.inputTokens).toBeGreaterThan(0)
    },
  )

  it.each(['openai', 'anthropic', 'gemini'] as Proto[])(
    '%s: streams pass through event by event, not buffered',
    async (proto) => {
      const path = proto === 'gemini' ? '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse' : PATHS[proto]
      const prompt = 'one two three four five six'
      const body =
        proto === 'gemini'
          ? { contents: [{ role: 'user', parts: [{ text: prompt }] }] }
          : { ...GOOD[proto], stream: true, messages: [{ role: 'user', content: prompt }] }
      const res = await postJson(proxy.url + path, body)
      const reader = res.body!.getReader()
      const arrivals: number[] = []
      let text = ''
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        arrivals.push(performance.now())
        text += new TextDecoder().decode(value)
      }
      // the mock sends an event every 25 ms: a buffering proxy would deliver them in one go
      const events = text.split(/\n\n/).filter((e) => e.trim()).length
      expect(events).toBeGreaterThanOrEqual(6)
      expect(arrivals.length).toBeGreaterThanOrEqual(4)
      expect(arrivals.at(-1)! - arrivals[0]!).toBeGreaterThanOrEqual(25 * 3)
    },
  )

  it('an upstream that cuts the stream midway: the client stream does not end cleanly and afterResponse sees a 502 error', async () => {
    mock.behaviour.cutAfterEvents = 2
    try {
      const res = await postJson(proxy.url + PATHS.openai, { ...GOOD.openai, stream: true })
      expect(res.status).toBe(200)
      const id = res.headers.get('x-agentmesh-request-id')!
      const text = await res.text().catch(() => '')
      expect(text).not.toContain('[DONE]')
      await until(() => seen.some((s) => s.id === id), 'afterResponse of the cut stream')
      const s = seen.find((x) => x.id === id)!
      expect(s.aborted).toBe(true)
      expect(s.error).toMatchObject({ status: 502, type: 'upstream_stream_error' })
    } finally {
      mock.behaviour.cutAfterEvents = undefined
    }
  })

  it.each(['openai', 'anthropic', 'gemini'] as Proto[])(
    '%s: an upstream stream that dies before its first event -> 502 in the protocol shape',
    async (proto) => {
      mock.behaviour.cutAfterEvents = 0
      try {
        const path = proto === 'gemini' ? '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse' : PATHS[proto]
        const res = await postJson(proxy.url + path, {
          ...GOOD[proto],
          ...(proto === 'gemini' ? {} : { stream: true }),
        })
        expect(res.status).toBe(502)
        governanceHeadersOf(res.headers)
        expectErrorShape(proto, await res.json(), 502)
      } finally {
        mock.behaviour.cutAfterEvents = undefined
      }
    },
  )
})
