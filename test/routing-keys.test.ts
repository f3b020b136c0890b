// A vendor with several keys (issue 16 items 3 and 4): a key that answers 429 or 5xx, or whose
// connection fails or times out before the first byte, is left for another key of the same vendor
// at once, on the plain path too (no fallbacks, no retries); another 4xx is the request's own and
// passed on; each call is billed once; and with redis storage a key's cooldown, and its recovery,
// are shared by instances. The OpenAI SDK against a running proxy; each key's server is a mock.
import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, afterEach, beforeEach, describe, expect, inject, it } from 'vitest'
import { APIError } from 'openai'
import type { Attempt, MeshConfig, Plugin, Usage } from '../core/types.ts'
import type { CooldownOptions } from '../core/vendor.ts'
import { quota } from '../plugins/quota/index.ts'
import { openaiCompatible } from '../plugins/vendors/openai-compatible.ts'
import { clearVendorEnv, closedPort, openaiClient, startProxy, until, type Proxy } from './helpers/core-harness.ts'
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'

const ADMIN = 'routing-keys-admin-token-0123456789'
process.env.AGENTMESH_ADMIN_TOKEN = ADMIN
clearVendorEnv()

const PRICE = { input: 3, output: 15 }

interface Seen {
  id: string
  usage: Usage
  costUsd: number
  attempts?: Attempt[]
}

interface Rig {
  proxy: Proxy
  seen: Seen[]
  close(): Promise<void>
}

/** a proxy whose only vendor, `pool`, has two keys: key A at mock `a`, key C at mock `c` */
async function startRig(
  a: MockUpstream,
  c: MockUpstream,
  config: MeshConfig = {},
  cooldown?: CooldownOptions,
): Promise<Rig> {
  const seen: Seen[] = []
  const recorder: Plugin = {
    name: 'recorder',
    hooks: {
      afterResponse(ctx) {
        seen.push({
          id: ctx.id,
          usage: { ...ctx.usage },
          costUsd: ctx.cost.usd,
          attempts: ctx.attempts?.map((x) => ({ ...x })),
        })
      },
    },
  }
  const pool = openaiCompatible({
    name: 'pool',
    baseURL: `${a.url}/v1`,
    models: ['pool-model'],
    // the mock answers as `pool-model-2025`: the answering model is what is priced
    pricing: { 'pool-model': PRICE, 'pool-model-2025': PRICE },
    deployments: [
      { baseURL: `${a.url}/v1`, apiKey: 'sk-pool-key-a' },
      { baseURL: `${c.url}/v1`, apiKey: 'sk-pool-key-c' },
    ],
    ...(cooldown ? { cooldown } : {}),
  })
  const proxy = await startProxy(
    {
      preset: 'solo',
      ...config,
      plugins: [pool, recorder, quota({ limits: { global: { usdPerDay: 100, tokensPerDay: 1_000_000 } } })],
    },
    { features: false },
  )
  return { proxy, seen, close: () => proxy.close() }
}

const keyOf = (m: MockUpstream, i: number) => m.received[i]?.headers.authorization
const seenOf = (rig: Rig, res: Response) => rig.seen.find((s) => s.id === res.headers.get('x-agentmesh-request-id'))!

async function admin(proxy: Proxy, path: string): Promise<any> {
  const res = await fetch(`${proxy.url}/agentmesh/admin/${path}`, { headers: { authorization: `Bearer ${ADMIN}` } })
  expect(res.status).toBe(200)
  return res.json()
}

async function deployments(proxy: Proxy): Promise<Array<Record<string, any>>> {
  const { targets } = (await admin(proxy, 'targets')) as { targets: Array<Record<string, any>> }
  return targets.filter((t) => t.kind === 'deployment' && t.vendor === 'pool')
}

const ask = (rig: Rig, content: string) =>
  openaiClient(rig.proxy)
    .chat.completions.create({ model: 'pool-model', messages: [{ role: 'user', content }] })
    .withResponse()

/** the answer's usage priced once, and the quota saw one request that spent exactly that */
async function expectBilledOnce(rig: Rig, seen: Seen, usage: { prompt_tokens: number; completion_tokens: number }) {
  expect(seen.usage.inputTokens).toBe(usage.prompt_tokens)
  expect(seen.usage.outputTokens).toBe(usage.completion_tokens)
  expect(seen.costUsd).toBeCloseTo(
    (usage.prompt_tokens * PRICE.input + usage.completion_tokens * PRICE.output) / 1e6,
    12,
  )
  const report = (await admin(rig.proxy, 'usage')) as {
    scopes: Array<{ scope: string; day: { requests: number; tokens: number; usd: number } }>
  }
  const global = report.scopes.find((s) => s.scope === 'global')!
  expect(global.day.requests).toBe(1)
  expect(global.day.tokens).toBe(usage.prompt_tokens + usage.completion_tokens)
  expect(global.day.usd).toBeCloseTo(seen.costUsd, 9)
}

/** a key's server that closes every connection as soon as the request arrived: no status line */
async function startResetServer(): Promise<{ mock: MockUpstream; hits: number; close(): Promise<void> }> {
  const out = { hits: 0 } as { mock: MockUpstream; hits: number; close(): Promise<void> }
  const server: Server = createServer((req) => {
    out.hits++
    req.socket.destroy()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  out.mock = { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` } as MockUpstream
  out.close = () => new Promise<void>((r) => server.close(() => r()))
  return out
}

describe('a vendor with two keys, no fallbacks and no retries', () => {
  let a: MockUpstream
  let c: MockUpstream
  let rig: Rig
  beforeEach(async () => {
    a = await startMockUpstream()
    c = await startMockUpstream()
    rig = await startRig(a, c)
  })
  afterEach(async () => {
    await rig.close()
    await Promise.all([a.close(), c.close()])
  })

  it('a key that answers 429 is left for the other key at once: one answer, two calls, billed once', async () => {
    a.behaviour.status = 429
    const t0 = performance.now()
    const { data, response } = await openaiClient(rig.proxy)
      .chat.completions.create({ model: 'pool-model', messages: [{ role: 'user', content: 'two keys' }] })
      .withResponse()
    // not the 30 s key A cools for (a busy machine makes a first request slow: no tighter bound)
    expect(performance.now() - t0).toBeLessThan(10_000)
    expect(data.choices[0]!.message.content).toBe('mock answer to: two keys')
    expect(response.headers.get('x-agentmesh-vendor')).toBe('pool')
    expect(response.headers.get('x-agentmesh-attempts')).toBe('2')
    expect(a.received).toHaveLength(1)
    expect(c.received).toHaveLength(1)
    expect(keyOf(a, 0)).toBe('Bearer sk-pool-key-a')
    expect(keyOf(c, 0)).toBe('Bearer sk-pool-key-c')

    const seen = seenOf(rig, response)
    expect(seen.attempts).toEqual([
      expect.objectContaining({ vendor: 'pool', model: 'pool-model', status: 429, called: true }),
      expect.objectContaining({ vendor: 'pool', model: 'pool-model', status: 200, outcome: 'ok', called: true }),
    ])
    expect(seen.attempts![0]!.outcome).toMatch(/^429 from pool deployment 127\.0\.0\.1:\d+#[0-9a-f]{8}: another key/)
    // the answer's usage, priced once; the 429 carried none
    expect(seen.usage.inputTokens).toBe(data.usage!.prompt_tokens)
    expect(seen.usage.outputTokens).toBe(data.usage!.completion_tokens)
    expect(seen.costUsd).toBeCloseTo(
      (data.usage!.prompt_tokens * PRICE.input + data.usage!.completion_tokens * PRICE.output) / 1e6,
      12,
    )
    const usage = (await admin(rig.proxy, 'usage')) as {
      scopes: Array<{ scope: string; day: { requests: number; tokens: number; usd: number } }>
    }
    const global = usage.scopes.find((s) => s.scope === 'global')!
    expect(global.day.requests).toBe(1)
    expect(global.day.tokens).toBe(data.usage!.prompt_tokens + data.usage!.completion_tokens)
    expect(global.day.usd).toBeCloseTo(seen.costUsd, 9)

    // key A cools, key C serves the next request alone
    expect((await deployments(rig.proxy)).map((d) => d.state).sort()).toEqual(['cooldown', 'healthy'])
    const next = await openaiClient(rig.proxy)
      .chat.completions.create({ model: 'pool-model', messages: [{ role: 'user', content: 'again' }] })
      .withResponse()
    expect(next.response.headers.get('x-agentmesh-attempts')).toBeNull()
    expect(a.received).toHaveLength(1)
    expect(c.received).toHaveLength(2)
    expect(JSON.stringify(await admin(rig.proxy, 'targets'))).not.toContain('sk-pool-key')
  })

  it.each([429, 503])(
    'a stream: a %s from one key is not relayed, the other key streams the whole answer',
    async (status) => {
      a.behaviour.status = status
      const stream = await openaiClient(rig.proxy).chat.completions.create({
        model: 'pool-model',
        stream: true,
        messages: [{ role: 'user', content: `stream past a ${status}` }],
      })
      let text = ''
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ''
      expect(text).toBe(`mock answer to: stream past a ${status}`)
      expect(a.received).toHaveLength(1)
      expect(c.received).toHaveLength(1)
      expect(c.received[0]!.body.stream).toBe(true)
      const seen = rig.seen.at(-1)!
      expect(seen.attempts?.map((x) => x.status)).toEqual([status, 200])
      expect(seen.usage.outputTokens).toBeGreaterThan(0)
    },
  )

  it("every key answers 429: the vendor's own 429 reaches the client, each key called once", async () => {
    a.behaviour.status = 429
    c.behaviour.status = 429
    const err = await openaiClient(rig.proxy)
      .chat.completions.create({ model: 'pool-model', messages: [{ role: 'user', content: 'all limited' }] })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(APIError)
    expect((err as APIError).status).toBe(429)
    expect((err as APIError).headers?.get('x-agentmesh-attempts')).toBe('2')
    expect(a.received).toHaveLength(1)
    expect(c.received).toHaveLength(1)
    // two calls, neither billed: the quota saw one request and spent nothing
    const usage = (await admin(rig.proxy, 'usage')) as {
      scopes: Array<{ scope: string; day: { requests: number; tokens: number; usd: number } }>
    }
    expect(usage.scopes.find((s) => s.scope === 'global')?.day).toMatchObject({ tokens: 0, usd: 0 })
  })

  it('a key that answers 500 is left for the other key at once: one answer, two calls, billed once', async () => {
    a.behaviour.status = 500
    const { data, response } = await ask(rig, 'server error')
    expect(data.choices[0]!.message.content).toBe('mock answer to: server error')
    expect(response.headers.get('x-agentmesh-attempts')).toBe('2')
    expect(a.received).toHaveLength(1)
    expect(c.received).toHaveLength(1)
    const seen = seenOf(rig, response)
    expect(seen.attempts?.map((x) => x.status)).toEqual([500, 200])
    expect(seen.attempts![0]!.outcome).toMatch(/^500 from pool deployment 127\.0\.0\.1:\d+#[0-9a-f]{8}: another key/)
    await expectBilledOnce(rig, seen, data.usage!)
    // one 500 is a failure counted, not a cooldown (3 within the window are)
    expect((await deployments(rig.proxy)).map((d) => d.state)).toEqual(['healthy', 'healthy'])
  })

  it("every key answers 500: the vendor's own 500 reaches the client, each key called once", async () => {
    a.behaviour.status = 500
    c.behaviour.status = 500
    const err = await ask(rig, 'all broken').catch((e: unknown) => e)
    expect((err as APIError).status).toBe(500)
    expect((err as APIError).headers?.get('x-agentmesh-attempts')).toBe('2')
    expect(a.received).toHaveLength(1)
    expect(c.received).toHaveLength(1)
  })

  it("another 4xx is the request's own: passed on as it came, the other key never called", async () => {
    a.behaviour.status = 400
    c.behaviour.status = 400
    const err = await ask(rig, 'bad request').catch((e: unknown) => e)
    expect((err as APIError).status).toBe(400)
    expect(a.received.length + c.received.length).toBe(1)
    expect((err as APIError).headers?.get('x-agentmesh-attempts')).toBeNull()
  })
})

describe('a key that fails before its first byte', () => {
  it('a connection reset: the other key answers at once; both calls listed, billed once', async () => {
    const reset = await startResetServer()
    const c = await startMockUpstream()
    const rig = await startRig(reset.mock, c)
    try {
      const { data, response } = await ask(rig, 'after a reset')
      expect(data.choices[0]!.message.content).toBe('mock answer to: after a reset')
      expect(response.headers.get('x-agentmesh-attempts')).toBe('2')
      expect(reset.hits).toBe(1)
      expect(c.received).toHaveLength(1)
      const seen = seenOf(rig, response)
      expect(seen.attempts?.map((x) => x.status)).toEqual([0, 200])
      expect(seen.attempts![0]!.outcome).toMatch(
        /unreachable.*\(deployment 127\.0\.0\.1:\d+#[0-9a-f]{8}\): another key/,
      )
      await expectBilledOnce(rig, seen, data.usage!)
    } finally {
      await rig.close()
      await Promise.all([reset.close(), c.close()])
    }
  })

  it('a key that hangs past the timeout: the other key answers; the first call was abandoned', async () => {
    const a = await startMockUpstream({ hang: true })
    const c = await startMockUpstream()
    const rig = await startRig(a, c, { limits: { upstreamTimeoutMs: 300 } })
    try {
      const t0 = performance.now()
      const { data, response } = await ask(rig, 'after a hang')
      expect(performance.now() - t0).toBeGreaterThanOrEqual(290)
      expect(data.choices[0]!.message.content).toBe('mock answer to: after a hang')
      expect(response.headers.get('x-agentmesh-attempts')).toBe('2')
      expect(a.received).toHaveLength(1)
      expect(c.received).toHaveLength(1)
      const seen = seenOf(rig, response)
      expect(seen.attempts![0]!.outcome).toMatch(/did not answer within 300 ms .*another key/)
      await expectBilledOnce(rig, seen, data.usage!)
    } finally {
      await rig.close()
      await Promise.all([a.close(), c.close()])
    }
  })
})

describe('a 429, then the other key unreachable', () => {
  it('the client gets the connection error; both calls are listed and counted', async () => {
    const a = await startMockUpstream({ status: 429 })
    // nothing listens there: key C's server is down
    const down = { url: `http://127.0.0.1:${await closedPort()}` } as MockUpstream
    const rig = await startRig(a, down)
    try {
      const err = await openaiClient(rig.proxy)
        .chat.completions.create({ model: 'pool-model', messages: [{ role: 'user', content: 'one down' }] })
        .catch((e: unknown) => e)
      expect((err as APIError).status).toBe(502)
      expect((err as APIError).headers?.get('x-agentmesh-attempts')).toBe('2')
      expect(a.received).toHaveLength(1)
      expect(rig.seen.at(-1)!.attempts?.map((x) => x.status)).toEqual([429, 0])
    } finally {
      await rig.close()
      await a.close()
    }
  })
})

describe('redis storage: a key cooled on one instance is skipped by another', () => {
  const url = inject('redisUrl')
  let a: MockUpstream
  let c: MockUpstream
  let one: Rig
  let two: Rig
  afterAll(async () => {
    await two?.close()
    await one?.close()
    await Promise.all([a?.close(), c?.close()])
  })

  it("key A's 429 on instance one: instance two never calls key A until its cooldown ends", async () => {
    a = await startMockUpstream()
    c = await startMockUpstream()
    const config: MeshConfig = {
      storage: { driver: 'redis', url, prefix: `routing-keys-${randomUUID()}` },
      routing: { cooldown: { syncMs: 100 } },
    }
    one = await startRig(a, c, config)
    two = await startRig(a, c, config)

    a.behaviour.status = 429
    const first = await openaiClient(one.proxy)
      .chat.completions.create({ model: 'pool-model', messages: [{ role: 'user', content: 'on one' }] })
      .withResponse()
    expect(first.response.headers.get('x-agentmesh-attempts')).toBe('2')
    expect(a.received).toHaveLength(1)
    // key A would answer now: a call to it from instance two would show
    a.behaviour.status = undefined
    const cooled = one.proxy.events.find((e) => e.type === 'target_cooldown')!
    expect(cooled.data).toMatchObject({ vendor: 'pool', model: '*', target: expect.stringMatching(/^pool\//) })
    // the cooldown reaches redis in the background
    await new Promise((r) => setTimeout(r, 200))

    for (const content of ['on two', 'on two again']) {
      const { data } = await openaiClient(two.proxy)
        .chat.completions.create({ model: 'pool-model', messages: [{ role: 'user', content }] })
        .withResponse()
      expect(data.choices[0]!.message.content).toBe(`mock answer to: ${content}`)
    }
    expect(a.received).toHaveLength(1)
    expect(c.received).toHaveLength(3)
    const shared = two.proxy.events.find((e) => e.type === 'target_cooldown')
    expect(shared?.data).toMatchObject({
      target: (cooled.data as { target: string }).target,
      shared: true,
      reason: 'shared: rate limited (429)',
    })
    const states = await deployments(two.proxy)
    expect(states.find((d) => d.id === (cooled.data as { target: string }).target)).toMatchObject({
      state: 'cooldown',
    })
    // the key itself is in no event and no listing
    expect(JSON.stringify(two.proxy.events)).not.toContain('sk-pool-key')
    expect(JSON.stringify(states)).not.toContain('sk-pool-key')
  })
})

describe('redis storage: a key that answers again is back for every instance', () => {
  const url = inject('redisUrl')
  let a: MockUpstream
  let c: MockUpstream
  let one: Rig
  let two: Rig
  afterAll(async () => {
    await two?.close()
    await one?.close()
    await Promise.all([a?.close(), c?.close()])
  })

  /** requests to rig until key A (mock a) has been called `n` times in all */
  async function untilKeyA(rig: Rig, n: number, what: string) {
    for (let i = 0; i < 6 && a.received.length < n; i++) await ask(rig, `${what} ${i}`)
    expect(a.received).toHaveLength(n)
  }

  it("key A cools for 30 s on instance two; instance one's probe succeeds after 1 s: instance two uses key A again at once", async () => {
    a = await startMockUpstream()
    c = await startMockUpstream()
    const storage = { driver: 'redis' as const, url, prefix: `routing-keys-rec-${randomUUID()}` }
    // instance one reads redis once (its first request) and then not for a minute: it keeps its
    // own short cooldown; instance two reads every 100 ms and cools a key for 30 s
    one = await startRig(a, c, { storage, routing: { cooldown: { syncMs: 60_000 } } }, { ms: 1000 })
    two = await startRig(a, c, { storage, routing: { cooldown: { syncMs: 100 } } }, { ms: 30_000 })
    await ask(one, 'first read on one')
    const base = a.received.length

    a.behaviour.status = 429
    await untilKeyA(two, base + 1, 'cool on two')
    const keyA = (two.proxy.events.find((e) => e.type === 'target_cooldown')!.data as { target: string }).target
    expect((await deployments(two.proxy)).find((d) => d.id === keyA)).toMatchObject({ state: 'cooldown' })
    await untilKeyA(one, base + 2, 'cool on one')
    expect((await deployments(one.proxy)).find((d) => d.id === keyA)).toMatchObject({ state: 'cooldown' })

    // key A answers again; instance one's cooldown (1 s) ends and its probe succeeds
    a.behaviour.status = undefined
    await new Promise((r) => setTimeout(r, 1100))
    await untilKeyA(one, base + 3, 'probe on one')
    expect(one.proxy.events.some((e) => e.type === 'target_recovered' && (e.data as any).target === keyA)).toBe(true)

    // instance two still had 28 s to go: its next read of redis ends the cooldown there too
    await new Promise((r) => setTimeout(r, 300))
    await ask(two, 'read on two')
    await until(
      () => two.proxy.events.some((e) => e.type === 'target_recovered' && (e.data as any).target === keyA),
      'target_recovered on instance two',
    )
    expect((await deployments(two.proxy)).find((d) => d.id === keyA)).toMatchObject({ state: 'healthy' })
    const before = a.received.length
    for (let i = 0; i < 4; i++) await ask(two, `on two again ${i}`)
    expect(a.received.length).toBeGreaterThan(before)
    // instance one does not read its own old cooldown back either
    await new Promise((r) => setTimeout(r, 150))
    expect((await deployments(one.proxy)).find((d) => d.id === keyA)).toMatchObject({ state: 'healthy' })
  })
})
