// A vendor with several keys (issue 16 item 4): a key that answers 429 before anything reached
// the client is left for another key of the same vendor at once, on the plain path too (no
// fallbacks, no retries); each call is billed once; and with redis storage a key's cooldown is
// shared by instances. The OpenAI SDK against a running proxy; each key's server is a mock.
import { randomUUID } from 'node:crypto'
import { afterAll, afterEach, beforeEach, describe, expect, inject, it } from 'vitest'
import { APIError } from 'openai'
import type { Attempt, MeshConfig, Plugin, Usage } from '../core/types.ts'
import { quota } from '../plugins/quota/index.ts'
import { openaiCompatible } from '../plugins/vendors/openai-compatible.ts'
import { clearVendorEnv, closedPort, openaiClient, startProxy, type Proxy } from './helpers/core-harness.ts'
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
async function startRig(a: MockUpstream, c: MockUpstream, config: MeshConfig = {}): Promise<Rig> {
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

  it('a stream: the 429 is not relayed, the other key streams the whole answer', async () => {
    a.behaviour.status = 429
    const stream = await openaiClient(rig.proxy).chat.completions.create({
      model: 'pool-model',
      stream: true,
      messages: [{ role: 'user', content: 'stream two keys' }],
    })
    let text = ''
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ''
    expect(text).toBe('mock answer to: stream two keys')
    expect(a.received).toHaveLength(1)
    expect(c.received).toHaveLength(1)
    expect(c.received[0]!.body.stream).toBe(true)
    const seen = rig.seen.at(-1)!
    expect(seen.attempts?.map((x) => x.status)).toEqual([429, 200])
    expect(seen.usage.outputTokens).toBeGreaterThan(0)
  })

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

  it('a 500 from one key is not a rate limit: passed on as it came (retries are the routing config)', async () => {
    a.behaviour.status = 500
    const err = await openaiClient(rig.proxy)
      .chat.completions.create({ model: 'pool-model', messages: [{ role: 'user', content: 'server error' }] })
      .catch((e: unknown) => e)
    expect((err as APIError).status).toBe(500)
    expect(a.received.length + c.received.length).toBe(1)
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
