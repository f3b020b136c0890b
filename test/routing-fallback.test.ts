// Fallbacks, retries and target health (issue 16 items 3, 4 and 6): the official SDKs against a
// running proxy whose vendors sit behind fault-injecting fronts of the mock upstream (a 500
// storm, 429 with Retry-After, a hang, a reset before and after the first byte). The route's
// fallbacks come from a tiny inline plugin, as a router would set them.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { APIError } from 'openai'
import { resolveConfig } from '../core/config.ts'
import type { Attempt, MeshConfig, MeshContext, Plugin, Usage } from '../core/types.ts'
import { quota } from '../plugins/quota/index.ts'
import { openaiCompatible } from '../plugins/vendors/openai-compatible.ts'
import { anthropicClient, clearVendorEnv, openaiClient, startProxy, until, type Proxy } from './helpers/core-harness.ts'
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'

const ADMIN = 'routing-test-admin-token-0123456789'
process.env.AGENTMESH_ADMIN_TOKEN = ADMIN
clearVendorEnv()

type Fault =
  | { status: number; headers?: Record<string, string> }
  | { hang: true }
  | { delayMs: number }
  /** the socket closed on the request: no status line */
  | { reset: 'before' }
  /** a 200 SSE status line, then the socket closed before any event */
  | { reset: 'after-headers' }
  /** the first SSE event relayed, then the socket closed */
  | { reset: 'after-first-event' }

/** A vendor endpoint: the mock upstream behind a front that injects faults, queued (`next`) or standing (`always`). */
interface Front {
  url: string
  hits: Array<{ path: string; body: any }>
  next: Fault[]
  always: Fault | undefined
  close(): Promise<void>
}

async function startFront(mock: MockUpstream): Promise<Front> {
  const front: Front = { url: '', hits: [], next: [], always: undefined, close: async () => {} }
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', async () => {
      const raw = Buffer.concat(chunks).toString('utf8')
      front.hits.push({ path: req.url ?? '/', body: raw ? JSON.parse(raw) : undefined })
      const fault = front.next.shift() ?? front.always
      if (fault && 'hang' in fault) return
      if (fault && 'status' in fault) {
        const body = JSON.stringify({ error: { type: 'front_error', message: `front failure ${fault.status}` } })
        res.writeHead(fault.status, { 'content-type': 'application/json', ...fault.headers })
        return res.end(body)
      }
      if (fault && 'reset' in fault && fault.reset === 'before') return req.socket.destroy()
      if (fault && 'reset' in fault && fault.reset === 'after-headers') {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.flushHeaders()
        setTimeout(() => req.socket.destroy(), 20)
        return
      }
      if (fault && 'delayMs' in fault) await new Promise((r) => setTimeout(r, fault.delayMs))
      const headers: Record<string, string> = { 'content-type': 'application/json' }
      for (const h of ['anthropic-version', 'x-api-key', 'authorization'])
        if (typeof req.headers[h] === 'string') headers[h] = req.headers[h] as string
      const up = await fetch(mock.url + req.url, { method: req.method, headers, body: raw || undefined })
      res.writeHead(up.status, { 'content-type': up.headers.get('content-type') ?? 'application/json' })
      const reader = up.body!.getReader()
      let text = ''
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        if (fault && 'reset' in fault) {
          // after-first-event: relay exactly one event, then cut
          text += Buffer.from(value).toString('utf8')
          const end = text.indexOf('\n\n')
          if (end < 0) continue
          res.write(text.slice(0, end + 2))
          setTimeout(() => req.socket.destroy(), 20)
          return void reader.cancel()
        }
        res.write(value)
      }
      res.end()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  front.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  front.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections()
      server.close(() => r())
    })
  return front
}

interface Seen {
  id: string
  vendor: string
  model: string
  answerModel?: string
  usage: Usage
  costUsd: number
  attempts?: Attempt[]
  status?: number
  aborted?: boolean
  error?: MeshContext['error']
}

const OPENAI = { vendor: 'openai', model: 'gpt-4o-mini' }
const CLAUDE = { vendor: 'anthropic', model: 'claude-haiku-4-5' }

interface Rig {
  mock: MockUpstream
  a: Front
  b: Front
  proxy: Proxy
  seen: Seen[]
  /** the targets a request may go to; the route plugin sets every one but the route's own as fallbacks */
  targets: Array<{ vendor: string; model: string }>
  strategy?: 'lowest-latency'
  close(): Promise<void>
}

/** A proxy with openai at front `a` and anthropic at front `b`, both in front of one mock. */
async function startRig(config: MeshConfig = {}, shared?: { mock: MockUpstream; a: Front; b: Front }): Promise<Rig> {
  const mock = shared?.mock ?? (await startMockUpstream())
  const a = shared?.a ?? (await startFront(mock))
  const b = shared?.b ?? (await startFront(mock))
  const seen: Seen[] = []
  const rig = { mock, a, b, seen, targets: [OPENAI, CLAUDE] } as Rig
  const fallbacks: Plugin = {
    name: 't',
    hooks: {
      route(ctx) {
        ctx.route.fallbacks = rig.targets.filter((t) => t.vendor !== ctx.route.vendor || t.model !== ctx.route.model)
        if (rig.strategy) ctx.route.strategy = rig.strategy
      },
    },
  }
  const recorder: Plugin = {
    name: 'recorder',
    hooks: {
      afterResponse(ctx) {
        seen.push({
          id: ctx.id,
          vendor: ctx.route.vendor,
          model: ctx.route.model,
          answerModel: ctx.answer?.model,
          usage: { ...ctx.usage },
          costUsd: ctx.cost.usd,
          attempts: ctx.attempts?.map((x) => ({ ...x })),
          status: ctx.status,
          aborted: ctx.aborted,
          error: ctx.error,
        })
      },
    },
  }
  rig.proxy = await startProxy(
    {
      preset: 'solo',
      vendors: {
        openai: { baseURL: a.url, apiKey: 'sk-test-openai' },
        anthropic: { baseURL: b.url, apiKey: 'sk-ant-test' },
      },
      ...config,
      plugins: [fallbacks, recorder, ...(config.plugins ?? [])],
    },
    { features: false },
  )
  rig.close = async () => {
    await rig.proxy.close()
    if (!shared) await Promise.all([a.close(), b.close(), mock.close()])
  }
  return rig
}

const ask = (rig: Rig, content: string, model = 'gpt-4o-mini') =>
  openaiClient(rig.proxy)
    .chat.completions.create({ model, messages: [{ role: 'user', content }] })
    .withResponse()
const seenOf = (rig: Rig, res: Response) => rig.seen.find((s) => s.id === res.headers.get('x-agentmesh-request-id'))!
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function adminTargets(proxy: Proxy): Promise<Array<Record<string, any>>> {
  const res = await fetch(`${proxy.url}/agentmesh/admin/targets`, { headers: { authorization: `Bearer ${ADMIN}` } })
  expect(res.status).toBe(200)
  return ((await res.json()) as { targets: Array<Record<string, any>> }).targets
}

describe('a 500 storm on the first target', () => {
  let rig: Rig
  beforeAll(async () => {
    rig = await startRig({ routing: { cooldown: { failures: 2, windowMs: 10_000, cooldownMs: 800 } } })
  })
  afterAll(() => rig.close())

  it('falls back, cools the target down, skips it, then probes it and recovers', async () => {
    rig.a.always = { status: 500 }
    const first = await ask(rig, 'storm one')
    expect(first.data.choices[0]!.message.content).toBe('mock answer to: storm one')
    expect(first.response.headers.get('x-agentmesh-attempts')).toBe('2')
    expect(first.response.headers.get('x-agentmesh-fallback-from')).toBe('openai/gpt-4o-mini')
    expect(first.response.headers.get('x-agentmesh-vendor')).toBe('anthropic')
    expect(first.response.headers.get('x-agentmesh-model')).toMatch(/^claude-haiku-4-5/)
    // each attempt starts from the client's body: openai got it as sent, anthropic its translation
    expect(rig.a.hits[0]!.body).toMatchObject({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'storm one' }],
    })
    expect(rig.b.hits[0]!.body).toMatchObject({
      model: 'claude-haiku-4-5',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'storm one' }] }],
    })
    expect(rig.b.hits[0]!.body.stream_options).toBeUndefined()
    const s = seenOf(rig, first.response)
    expect(s.attempts).toMatchObject([
      { vendor: 'openai', model: 'gpt-4o-mini', status: 500, outcome: '500 from openai', called: true },
      { vendor: 'anthropic', status: 200, outcome: 'ok' },
    ])

    // the second failure in the window cools it down
    await ask(rig, 'storm two')
    expect(rig.a.hits).toHaveLength(2)
    const cooled = rig.proxy.events.find((e) => e.type === 'target_cooldown')
    expect(cooled?.data).toMatchObject({ target: 'openai/gpt-4o-mini', failures: 2 })
    const listed = (await adminTargets(rig.proxy)).find((t) => t.id === 'openai/gpt-4o-mini')!
    expect(listed).toMatchObject({ kind: 'model', state: 'cooldown', failures: 2, inFlight: 0 })
    expect(listed.cooldownUntil).toBeGreaterThan(Date.now())

    // skipped while it cools: one call, to the fallback
    const third = await ask(rig, 'storm three')
    expect(rig.a.hits).toHaveLength(2)
    expect(third.response.headers.get('x-agentmesh-attempts')).toBe('1')
    expect(third.response.headers.get('x-agentmesh-fallback-from')).toBe('openai/gpt-4o-mini')
    expect(seenOf(rig, third.response).attempts![0]).toMatchObject({
      vendor: 'openai',
      called: false,
      outcome: expect.stringMatching(/^skipped: cooling down/),
    })

    // the storm is over; after the cooldown one probe goes to it, and it serves again
    rig.a.always = undefined
    await sleep(900)
    const probe = await ask(rig, 'after the storm')
    expect(rig.a.hits).toHaveLength(3)
    expect(probe.response.headers.get('x-agentmesh-vendor')).toBe('openai')
    expect(probe.response.headers.get('x-agentmesh-fallback-from')).toBeNull()
    expect(rig.proxy.events.find((e) => e.type === 'target_recovered')?.data).toMatchObject({
      target: 'openai/gpt-4o-mini',
    })
    expect((await adminTargets(rig.proxy)).find((t) => t.id === 'openai/gpt-4o-mini')).toMatchObject({
      state: 'healthy',
      failures: 0,
    })
  })

  it('a fallback is billed once, at the price of the model that answered', async () => {
    rig.a.next = [{ status: 503 }]
    const { response } = await ask(rig, 'bill me once')
    const s = seenOf(rig, response)
    expect(s).toMatchObject({ vendor: 'anthropic', model: 'claude-haiku-4-5' })
    const pricing = rig.proxy.instance.mesh.pricing
    expect(s.usage.estimated).toBeFalsy()
    expect(s.costUsd).toBeCloseTo(pricing.cost(s.answerModel!, s.usage), 12)
    // claude-haiku-4-5 ($1/$5), not gpt-4o-mini ($0.15/$0.60) the route first named
    expect(s.costUsd).toBeGreaterThan(pricing.cost('gpt-4o-mini', s.usage) * 5)
    expect(Number(response.headers.get('x-agentmesh-cost-usd'))).toBeCloseTo(s.costUsd, 6)
    expect(Number(response.headers.get('x-agentmesh-tokens'))).toBe(s.usage.inputTokens + s.usage.outputTokens)
  })

  it("another 4xx is the request's own: not retried, not fallen back", async () => {
    const before = rig.b.hits.length
    rig.a.next = [{ status: 400 }]
    const err = await ask(rig, 'bad request').catch((e) => e)
    expect(err).toBeInstanceOf(APIError)
    expect(err.status).toBe(400)
    expect(err.message).toContain('front failure 400')
    expect(rig.b.hits.length).toBe(before)
  })

  it('the admin view needs the admin token', async () => {
    expect((await fetch(`${rig.proxy.url}/agentmesh/admin/targets`)).status).toBe(401)
    const targets = await adminTargets(rig.proxy)
    const claude = targets.find((t) => t.id === 'anthropic/claude-haiku-4-5')!
    expect(claude).toMatchObject({
      kind: 'model',
      vendor: 'anthropic',
      model: 'claude-haiku-4-5',
      state: 'healthy',
      inFlight: 0,
    })
    expect(claude.latencyEwmaMs).toBeGreaterThan(0)
    expect(claude.calls).toBeGreaterThanOrEqual(4)
  })
})

describe('streams', () => {
  let rig: Rig
  beforeAll(async () => {
    rig = await startRig({ routing: { retries: 1, backoffMs: 10 } })
  })
  afterAll(() => rig.close())

  it('a translated fallback stream: the client gets no usage chunk it did not ask for', async () => {
    rig.a.next = [{ status: 500 }]
    const { data: stream, response } = await openaiClient(rig.proxy)
      .chat.completions.create({
        model: 'gpt-4o-mini',
        stream: true,
        messages: [{ role: 'user', content: 'stream it' }],
      })
      .withResponse()
    let text = ''
    for await (const chunk of stream) {
      expect(chunk.usage ?? undefined).toBeUndefined()
      text += chunk.choices[0]?.delta?.content ?? ''
    }
    expect(text).toBe('mock answer to: stream it')
    expect(response.headers.get('x-agentmesh-vendor')).toBe('anthropic')
    expect(rig.b.hits.at(-1)!.body).toMatchObject({ model: 'claude-haiku-4-5', stream: true })
    expect(rig.b.hits.at(-1)!.body.stream_options).toBeUndefined()
  })

  it("from a translated target back to the client's own protocol: the original body goes up", async () => {
    // the OpenAI SDK asks for a Claude model: translated for anthropic, which fails; openai gets the body as sent
    rig.b.next = [{ status: 529 }]
    const { data, response } = await ask(rig, 'claude first', 'claude-haiku-4-5')
    expect(data.choices[0]!.message.content).toBe('mock answer to: claude first')
    expect(response.headers.get('x-agentmesh-fallback-from')).toBe('anthropic/claude-haiku-4-5')
    expect(response.headers.get('x-agentmesh-translated')).toBeNull()
    expect(rig.a.hits.at(-1)!.body).toEqual({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'claude first' }],
    })
  })

  it('a reset before the first byte is retried (no status line, and a status line with no event)', async () => {
    for (const reset of ['before', 'after-headers'] as const) {
      rig.a.next = [{ reset }]
      rig.targets = [OPENAI]
      const hits = rig.a.hits.length
      try {
        const { data: stream, response } = await openaiClient(rig.proxy)
          .chat.completions.create({
            model: 'gpt-4o-mini',
            stream: true,
            messages: [{ role: 'user', content: `reset ${reset}` }],
          })
          .withResponse()
        let text = ''
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ''
        expect(text).toBe(`mock answer to: reset ${reset}`)
        expect(response.headers.get('x-agentmesh-attempts')).toBe('2')
        expect(rig.a.hits.length).toBe(hits + 2)
        expect(seenOf(rig, response).attempts![0]!.outcome).toMatch(
          reset === 'before' ? /unreachable/ : /stream failed before its first byte/,
        )
      } finally {
        rig.targets = [OPENAI, CLAUDE]
      }
    }
  })

  it('a reset after the first byte is not retried: the client gets an error event, billed for what was streamed', async () => {
    rig.a.next = [{ reset: 'after-first-event' }]
    const hitsA = rig.a.hits.length
    const hitsB = rig.b.hits.length
    const { data: stream, response } = await openaiClient(rig.proxy)
      .chat.completions.create({
        model: 'gpt-4o-mini',
        stream: true,
        messages: [{ role: 'user', content: 'cut me off' }],
      })
      .withResponse()
    expect(response.status).toBe(200)
    const err = await (async () => {
      for await (const _ of stream) {
        /* read until the error */
      }
    })().catch((e) => e)
    expect(err).toBeInstanceOf(APIError)
    expect(String(err.message)).toMatch(/stream (failed|ended)/)
    expect(rig.a.hits.length).toBe(hitsA + 1)
    expect(rig.b.hits.length).toBe(hitsB)
    await until(() => !!seenOf(rig, response), 'afterResponse of the cut stream')
    const s = seenOf(rig, response)
    expect(s).toMatchObject({ aborted: true, vendor: 'openai', error: { status: 502, type: 'upstream_stream_error' } })
    expect(s.usage.inputTokens).toBeGreaterThan(0)
    expect(s.costUsd).toBeGreaterThan(0)
  })
})

describe('429 with Retry-After: 2', () => {
  let rig: Rig
  beforeAll(async () => {
    rig = await startRig({ routing: { retries: 1, backoffMs: 10, retryAfterCapMs: 5000 } })
  })
  afterAll(() => rig.close())

  it('with nowhere else to go: waits for it, then retries', async () => {
    rig.targets = [OPENAI]
    try {
      rig.a.next = [{ status: 429, headers: { 'retry-after': '2' } }]
      const t0 = performance.now()
      const { data, response } = await ask(rig, 'wait for me')
      const elapsed = performance.now() - t0
      expect(data.choices[0]!.message.content).toBe('mock answer to: wait for me')
      expect(elapsed).toBeGreaterThanOrEqual(1950)
      expect(elapsed).toBeLessThan(4000)
      expect(response.headers.get('x-agentmesh-attempts')).toBe('2')
    } finally {
      rig.targets = [OPENAI, CLAUDE]
    }
  })

  it('with a free target: moves on at once, and the limited one is skipped until its Retry-After', async () => {
    rig.a.next = [{ status: 429, headers: { 'retry-after': '2' } }]
    const t0 = performance.now()
    const { response } = await ask(rig, 'move on')
    expect(performance.now() - t0).toBeLessThan(1000)
    expect(response.headers.get('x-agentmesh-vendor')).toBe('anthropic')
    const hits = rig.a.hits.length
    const { response: again } = await ask(rig, 'still limited')
    expect(rig.a.hits.length).toBe(hits)
    expect(again.headers.get('x-agentmesh-vendor')).toBe('anthropic')
    await sleep(2100)
    const { response: back } = await ask(rig, 'back again')
    expect(back.headers.get('x-agentmesh-vendor')).toBe('openai')
  })

  it('a Retry-After beyond the cap is not waited for', async () => {
    rig.targets = [OPENAI]
    try {
      rig.a.next = [{ status: 429, headers: { 'retry-after': '60' } }]
      const t0 = performance.now()
      const err = await ask(rig, 'too long to wait').catch((e) => e)
      expect(performance.now() - t0).toBeLessThan(1500)
      // one call and nothing else tried: the vendor's own answer
      expect(err.status).toBe(429)
      expect(err.headers.get('x-agentmesh-attempts')).toBe('1')
    } finally {
      rig.targets = [OPENAI, CLAUDE]
    }
  })
})

describe('timeouts and every target down', () => {
  let rig: Rig
  beforeAll(async () => {
    rig = await startRig({ limits: { upstreamTimeoutMs: 400 }, routing: { cooldown: { failures: 50 } } })
  })
  afterAll(() => rig.close())

  it('a target that hangs past the timeout: the next one answers', async () => {
    rig.a.next = [{ hang: true }]
    const t0 = performance.now()
    const { data, response } = await ask(rig, 'do not hang')
    expect(data.choices[0]!.message.content).toBe('mock answer to: do not hang')
    expect(performance.now() - t0).toBeLessThan(3000)
    expect(seenOf(rig, response).attempts![0]).toMatchObject({
      vendor: 'openai',
      status: 0,
      outcome: expect.stringMatching(/did not answer within 400 ms/),
    })
  })

  it("every target down: one 502 naming each attempt and why, in each SDK's error shape", async () => {
    rig.a.always = { status: 500 }
    rig.b.always = { reset: 'before' }
    try {
      const err = await ask(rig, 'nobody home').catch((e) => e)
      expect(err).toBeInstanceOf(APIError)
      expect(err.status).toBe(502)
      expect(err.message).toMatch(
        /no target answered \(2 calls\): 1\) openai\/gpt-4o-mini: 500 from openai \(\d+ ms\); 2\) anthropic\/claude-haiku-4-5: upstream 127\.0\.0\.1:\d+ unreachable/,
      )
      expect(err.headers.get('x-agentmesh-attempts')).toBe('2')
      const aerr = await anthropicClient(rig.proxy)
        .messages.create({
          model: 'claude-haiku-4-5',
          max_tokens: 50,
          messages: [{ role: 'user', content: 'nobody home' }],
        })
        .catch((e) => e)
      expect(aerr.status).toBe(502)
      expect(aerr.error).toMatchObject({
        type: 'error',
        error: {
          type: 'all_targets_failed',
          message: expect.stringContaining('1) anthropic/claude-haiku-4-5: upstream'),
        },
      })
      expect(aerr.error.error.message).toContain('2) openai/gpt-4o-mini: 500 from openai')
    } finally {
      rig.a.always = undefined
      rig.b.always = undefined
    }
  })

  it('every target rate-limited: 503 with Retry-After; every target timed out: 504', async () => {
    rig.a.next = [{ status: 429, headers: { 'retry-after': '3' } }]
    rig.b.next = [{ status: 429, headers: { 'retry-after': '3' } }]
    const limited = await ask(rig, 'all limited').catch((e) => e)
    expect(limited.status).toBe(503)
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(2)
    expect(Number(limited.headers.get('retry-after'))).toBeLessThanOrEqual(3)
    await sleep(3100)
    rig.a.next = [{ hang: true }]
    rig.b.next = [{ hang: true }]
    const slow = await ask(rig, 'all hang', 'gpt-4o-mini').catch((e) => e)
    expect(slow.status).toBe(504)
    expect(slow.message).toMatch(
      /1\) openai\/gpt-4o-mini: upstream .* did not answer within 400 ms .*; 2\) anthropic\/claude-haiku-4-5: upstream .* did not answer within 400 ms/,
    )
  })
})

describe('lowest-latency', () => {
  let rig: Rig
  beforeAll(async () => {
    rig = await startRig()
    rig.strategy = 'lowest-latency'
  })
  afterAll(() => rig.close())

  it('a slow target loses its traffic to a fast one', async () => {
    rig.a.always = { delayMs: 250 }
    for (let i = 0; i < 12; i++) await ask(rig, `race ${i}`)
    // each is measured once (the slow one is the route's own first choice); then the fast one wins
    expect(rig.a.hits.length).toBe(1)
    expect(rig.b.hits.length).toBe(11)
    const targets = await adminTargets(rig.proxy)
    const slow = targets.find((t) => t.id === 'openai/gpt-4o-mini')!
    const fast = targets.find((t) => t.id === 'anthropic/claude-haiku-4-5')!
    expect(slow.latencyEwmaMs).toBeGreaterThan(200)
    expect(fast.latencyEwmaMs).toBeLessThan(slow.latencyEwmaMs)
  })
})

describe('redis storage: cooldowns shared by instances', () => {
  const url = inject('redisUrl')
  let one: Rig
  let two: Rig
  beforeAll(async () => {
    const storage = { driver: 'redis' as const, url, prefix: `routing-${randomUUID()}` }
    const routing = { cooldown: { failures: 1, cooldownMs: 10_000, syncMs: 200 } }
    one = await startRig({ storage, routing })
    two = await startRig({ storage, routing }, { mock: one.mock, a: one.a, b: one.b })
  })
  afterAll(async () => {
    await two.close()
    await one.close()
  })

  it('a target cooled on one instance is skipped by the other', async () => {
    one.a.always = { status: 500 }
    try {
      const { response } = await ask(one, 'fail on one')
      expect(response.headers.get('x-agentmesh-vendor')).toBe('anthropic')
      expect(one.proxy.events.some((e) => e.type === 'target_cooldown')).toBe(true)
      // the cooldown reaches redis in the background
      await sleep(150)
      const hits = one.a.hits.length
      const { response: other } = await ask(two, 'skip on two')
      expect(one.a.hits.length).toBe(hits)
      expect(other.headers.get('x-agentmesh-vendor')).toBe('anthropic')
      expect(seenOf(two, other).attempts![0]).toMatchObject({
        vendor: 'openai',
        called: false,
        outcome: expect.stringContaining('shared: 1 failure within 60000 ms, the last: 500 from openai'),
      })
      expect(two.proxy.events.find((e) => e.type === 'target_cooldown')?.data).toMatchObject({
        target: 'openai/gpt-4o-mini',
        shared: true,
      })
      expect((await adminTargets(two.proxy)).find((t) => t.id === 'openai/gpt-4o-mini')).toMatchObject({
        state: 'cooldown',
      })
    } finally {
      one.a.always = undefined
    }
  })

  it('a call that succeeds on the cooled target ends its cooldown on every instance, long before it would end', async () => {
    // a plain call (no fallbacks) on instance one goes to the cooled target anyway, and it answers
    one.targets = [OPENAI]
    const solo = await ask(one, 'plain call on one')
    expect(solo.response.headers.get('x-agentmesh-vendor')).toBe('openai')
    expect(one.proxy.events.some((e) => e.type === 'target_recovered')).toBe(true)
    one.targets = [OPENAI, CLAUDE]

    // instance two had 10 s of cooldown left: its next read of redis (every 200 ms) ends it
    await sleep(250)
    await ask(two, 'read on two')
    await until(
      () =>
        two.proxy.events.some((e) => e.type === 'target_recovered' && (e.data as any).target === 'openai/gpt-4o-mini'),
      'target_recovered on instance two',
    )
    const { response } = await ask(two, 'served on two')
    expect(response.headers.get('x-agentmesh-vendor')).toBe('openai')
    expect((await adminTargets(two.proxy)).find((t) => t.id === 'openai/gpt-4o-mini')).toMatchObject({
      state: 'healthy',
    })
    // instance one does not read its own old cooldown back
    await sleep(250)
    for (const content of ['again on one', 'and again on one']) {
      const again = await ask(one, content)
      expect(again.response.headers.get('x-agentmesh-vendor')).toBe('openai')
    }
    expect(one.proxy.events.filter((e) => e.type === 'target_cooldown')).toHaveLength(1)
  })
})

describe('budgets with the quota plugin', () => {
  let rig: Rig
  beforeAll(async () => {
    rig = await startRig({
      plugins: [quota({ limits: { global: { usdPerDay: 100, tokensPerDay: 1_000_000 } } })],
      routing: { retries: 1, backoffMs: 10 },
    })
  })
  afterAll(() => rig.close())

  it('a retried call and a fallback are each settled once, on the model that answered', async () => {
    // a 500 then the same target again; a 503 then the fallback
    rig.targets = [OPENAI]
    rig.a.next = [{ status: 500 }]
    const retried = await ask(rig, 'retry and bill once')
    expect(retried.response.headers.get('x-agentmesh-attempts')).toBe('2')
    rig.targets = [OPENAI, CLAUDE]
    rig.a.next = [{ status: 503 }]
    const fell = await ask(rig, 'fall back and bill once')
    expect(fell.response.headers.get('x-agentmesh-vendor')).toBe('anthropic')
    const bills = [seenOf(rig, retried.response), seenOf(rig, fell.response)]
    const pricing = rig.proxy.instance.mesh.pricing
    expect(bills[0]!.costUsd).toBeCloseTo(pricing.cost('gpt-4o-mini', bills[0]!.usage), 12)
    expect(bills[1]!.costUsd).toBeCloseTo(pricing.cost('claude-haiku-4-5', bills[1]!.usage), 12)
    const res = await fetch(`${rig.proxy.url}/agentmesh/admin/usage`, { headers: { authorization: `Bearer ${ADMIN}` } })
    const report = (await res.json()) as {
      scopes: Array<{ scope: string; day: { requests: number; tokens: number; usd: number } }>
    }
    const global = report.scopes.find((s) => s.scope === 'global')!
    expect(global.day.requests).toBe(2)
    expect(global.day.tokens).toBe(bills.reduce((n, b) => n + b.usage.inputTokens + b.usage.outputTokens, 0))
    expect(global.day.usd).toBeCloseTo(bills[0]!.costUsd + bills[1]!.costUsd, 6)
  })
})

describe('a vendor with several deployments', () => {
  let rig: Rig
  let c: Front
  const POOL = { vendor: 'pool', model: 'pool-model' }
  beforeAll(async () => {
    const mock = await startMockUpstream()
    const a = await startFront(mock)
    const b = await startFront(mock)
    c = await startFront(mock)
    const pool = openaiCompatible({
      name: 'pool',
      baseURL: `${a.url}/v1`,
      models: ['pool-model'],
      deployments: [
        { baseURL: `${a.url}/v1`, apiKey: 'sk-pool-a' },
        { baseURL: `${c.url}/v1`, apiKey: 'sk-pool-c' },
      ],
    })
    rig = await startRig({ plugins: [pool] }, { mock, a, b })
    rig.targets = [POOL, CLAUDE]
  })
  afterAll(async () => {
    await rig.close()
    await Promise.all([rig.a.close(), rig.b.close(), c.close(), rig.mock.close()])
  })

  it("one key's 429 is retried at once on another key of the same target, which stays healthy; the admin view lists the deployments", async () => {
    rig.a.next = [{ status: 429, headers: { 'retry-after': '30' } }]
    const t0 = performance.now()
    const { data, response } = await ask(rig, 'pooled', 'pool-model')
    // not the 30 s of that key's Retry-After
    expect(performance.now() - t0).toBeLessThan(10_000)
    expect(data.choices[0]!.message.content).toBe('mock answer to: pooled')
    expect(response.headers.get('x-agentmesh-vendor')).toBe('pool')
    expect(response.headers.get('x-agentmesh-attempts')).toBe('2')
    expect(response.headers.get('x-agentmesh-fallback-from')).toBeNull()
    expect(rig.a.hits).toHaveLength(1)
    expect(c.hits).toHaveLength(1)
    expect(rig.b.hits).toHaveLength(0)
    const targets = await adminTargets(rig.proxy)
    // the vendor moved to its other key itself: the model target saw one call, and it answered
    expect(targets.find((t) => t.id === 'pool/pool-model')).toMatchObject({
      kind: 'model',
      state: 'healthy',
      failures: 0,
    })
    const deployments = targets.filter((t) => t.kind === 'deployment' && t.vendor === 'pool')
    expect(deployments).toHaveLength(2)
    expect(deployments.map((d) => d.state).sort()).toEqual(['cooldown', 'healthy'])
    expect(JSON.stringify(targets)).not.toContain('sk-pool')
  })

  it('every deployment cooling: the target is skipped for the fallback', async () => {
    rig.a.next = [{ status: 429, headers: { 'retry-after': '5' } }]
    c.next = [{ status: 429, headers: { 'retry-after': '5' } }]
    // a cools from the first test; c meets its 429 now; then every deployment of pool cools
    const first = await ask(rig, 'pool busy', 'pool-model')
    expect(first.response.headers.get('x-agentmesh-vendor')).toBe('anthropic')
    const { response } = await ask(rig, 'pool cooling', 'pool-model')
    expect(response.headers.get('x-agentmesh-vendor')).toBe('anthropic')
    expect(seenOf(rig, response).attempts![0]).toMatchObject({
      vendor: 'pool',
      called: false,
      outcome: expect.stringContaining('every deployment of pool is cooling down'),
    })
  })
})

describe('routing config', () => {
  it('defaults, and a bad value fails with the field named', async () => {
    expect((await resolveConfig({})).routing).toEqual({
      retries: 0,
      backoffMs: 250,
      maxBackoffMs: 5000,
      retryAfterCapMs: 10_000,
      cooldown: { failures: 3, windowMs: 60_000, cooldownMs: 30_000, syncMs: 1000 },
    })
    expect((await resolveConfig({ routing: { retries: 2, cooldown: { cooldownMs: 5000 } } })).routing).toMatchObject({
      retries: 2,
      cooldown: { failures: 3, cooldownMs: 5000 },
    })
    await expect(resolveConfig({ routing: { retries: -1 } })).rejects.toThrow(
      /`routing\.retries` must be an integer from 0 to 10, got -1/,
    )
    await expect(resolveConfig({ routing: { retries: 11 } })).rejects.toThrow(/routing\.retries/)
    await expect(resolveConfig({ routing: { backoffMs: '1s' } as any })).rejects.toThrow(
      /`routing\.backoffMs` must be a whole number of ms/,
    )
    await expect(resolveConfig({ routing: { cooldown: { failures: 0 } } })).rejects.toThrow(
      /`routing\.cooldown\.failures` must be an integer >= 1, got 0/,
    )
    await expect(resolveConfig({ routing: { retry: 2 } as any })).rejects.toThrow(
      /`routing\.retry` must be one of retries, backoffMs/,
    )
    await expect(resolveConfig({ routing: { cooldown: { ms: 5 } } as any })).rejects.toThrow(/routing\.cooldown\.ms/)
  })
})
