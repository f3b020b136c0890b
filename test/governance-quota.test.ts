// Quotas end to end: a real proxy, the official SDKs, a mock vendor. Reservation before the call,
// settlement to actual usage after it (also on upstream failure and aborted streams), warn-at,
// hard stop with Retry-After, grants, soft mode, every applicable limit, usage reports.
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { createAgentMesh } from '../core/app.ts'
import { definePlugin } from '../core/plugin.ts'
import type { MeshConfig, MeshContext, MeshEvent, PluginCommand } from '../core/types.ts'
import { quota, type QuotaOptions } from '../plugins/quota/index.ts'
import { resolveQuotaOptions } from '../plugins/quota/options.ts'
import { dayWindow, monthWindow, parseDuration } from '../plugins/quota/windows.ts'
import { clearVendorEnv, postJson, startMockAndProxy, until, type Proxy } from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'

const ADMIN = 'quota-admin-token-0123456789'
const admin = { authorization: `Bearer ${ADMIN}` }

async function usage(proxy: Proxy) {
  const res = await fetch(`${proxy.url}/agentmesh/admin/usage`, { headers: admin })
  expect(res.status).toBe(200)
  return (await res.json()) as {
    scopes: Array<{ scope: string; day: any; month: any; requestsPerMinute?: any; grants: any[] }>
  }
}
const scopeOf = async (proxy: Proxy, scope: string) => (await usage(proxy)).scopes.find((s) => s.scope === scope)

function client(proxy: Proxy, team: string, user = 'u1') {
  return new OpenAI({
    baseURL: `${proxy.url}/v1`,
    apiKey: 'sk-client',
    maxRetries: 0,
    defaultHeaders: { 'X-AgentMesh-Team': team, 'X-AgentMesh-User': user },
  })
}

const chat = (c: OpenAI, text = 'hello there', max_tokens = 50) =>
  c.chat.completions
    .create({ model: 'gpt-4o-mini', max_tokens, messages: [{ role: 'user', content: text }] })
    .withResponse()

/** records ctx.state.quota and the settled usage of every request */
function recorder() {
  const seen: Array<{ quota: any; usage: any; status?: number; cost: number }> = []
  const plugin = definePlugin({
    name: 'test:recorder',
    enforce: 'post',
    hooks: {
      afterResponse: (ctx: MeshContext) => {
        seen.push({ quota: ctx.state.quota, usage: { ...ctx.usage }, status: ctx.status, cost: ctx.cost.usd })
      },
    },
  })
  return { seen, plugin }
}

async function start(options: QuotaOptions, extra: Partial<MeshConfig> = {}) {
  clearVendorEnv()
  const rec = recorder()
  const { mock, proxy } = await startMockAndProxy({
    config: {
      plugins: [quota({ adminToken: ADMIN, ...options }), rec.plugin, ...(extra.plugins ?? [])],
      ...extra,
      ...(extra.plugins ? { plugins: [quota({ adminToken: ADMIN, ...options }), rec.plugin, ...extra.plugins] } : {}),
    },
  })
  return { mock, proxy, seen: rec.seen }
}

describe('options', () => {
  it('negative or non-numeric limits fail naming the field', () => {
    expect(() => quota({ limits: { teams: { eng: { tokensPerDay: -5 } } } })).toThrow(
      'quota: limits.teams.eng.tokensPerDay must be a non-negative number, got -5',
    )
    expect(() => quota({ limits: { teams: { eng: { tokensPerDay: 'abc' as any } } } })).toThrow(
      'quota: limits.teams.eng.tokensPerDay must be a non-negative number, got "abc"',
    )
    expect(() => quota({ limits: { global: { usdPerMonth: Number.NaN } } })).toThrow(
      /limits\.global\.usdPerMonth must be a non-negative number, got NaN/,
    )
    expect(() => quota({ limits: { users: { bob: { tokensPerWeek: 5 } as any } } })).toThrow(
      /limits\.users\.bob\.tokensPerWeek must be one of tokensPerDay/,
    )
    expect(() => quota({ timezone: 'Mars/Olympus' })).toThrow(/timezone must be an IANA time zone/)
    expect(() => quota({ warnAt: 0 })).toThrow(/warnAt must be a percentage/)
    expect(() => quota({ mode: 'lenient' as any })).toThrow(/mode must be "hard" or "soft"/)
    expect(() => quota({ limit: {} } as any)).toThrow(/quota: limit must be a known option/)
  })

  it('the CLI short form is merged over the options', () => {
    const o = resolveQuotaOptions(
      { limits: { teams: { engineering: { usdPerDay: 5, tokensPerDay: 1 } } }, warnAt: 70 },
      { teamDailyTokens: { engineering: 2_000_000, sales: 500_000 }, warnAt: 80, hardStopAt: 100 },
    )
    expect(o.limits.teams.engineering).toEqual({ usdPerDay: 5, tokensPerDay: 2_000_000 })
    expect(o.limits.teams.sales).toEqual({ tokensPerDay: 500_000 })
    expect(o.warnAt).toBe(80)
    expect(() => resolveQuotaOptions({}, { teamDailyTokens: { eng: -1 } })).toThrow(/teamDailyTokens\.eng/)
  })

  it('a bad --team-limit fails at start, naming the field', async () => {
    await expect(
      createAgentMesh({
        log: { level: 'silent' },
        plugins: [quota()],
        quota: { teamDailyTokens: { eng: Number.NaN } },
      }),
    ).rejects.toThrow(/teamDailyTokens\.eng/)
  })
})

describe('calendar windows', () => {
  it('a day ends at local midnight in the configured zone, 23 hours on a DST day', () => {
    const t = Date.parse('2026-03-08T12:00:00Z') // US DST starts 2026-03-08 at 02:00 local
    const ny = dayWindow(t, 'America/New_York')
    expect(ny.id).toBe('d2026-03-08')
    expect(new Date(ny.resetAt).toISOString()).toBe('2026-03-09T04:00:00.000Z')
    const start = dayWindow(Date.parse('2026-03-08T04:59:00Z'), 'America/New_York')
    expect(start.id).toBe('d2026-03-07')
    expect(new Date(start.resetAt).toISOString()).toBe('2026-03-08T05:00:00.000Z')
    expect(dayWindow(t, 'UTC').resetAt).toBe(Date.parse('2026-03-09T00:00:00Z'))
    expect(dayWindow(Date.parse('2026-11-27T23:30:00Z'), 'Asia/Tokyo').id).toBe('d2026-11-28')
  })

  it('a month ends on the 1st, December rolling into January', () => {
    const m = monthWindow(Date.parse('2026-12-31T23:00:00Z'), 'UTC')
    expect(m.id).toBe('m2026-12')
    expect(new Date(m.resetAt).toISOString()).toBe('2027-01-01T00:00:00.000Z')
    expect(monthWindow(Date.parse('2026-12-31T23:00:00Z'), 'Europe/Berlin').id).toBe('m2027-01')
  })

  it('durations parse for grants', () => {
    expect(parseDuration('24h')).toBe(86_400_000)
    expect(parseDuration('1h30m')).toBe(5_400_000)
    expect(parseDuration(90)).toBe(90_000)
    expect(parseDuration('soon')).toBeUndefined()
    expect(parseDuration('-5h')).toBeUndefined()
  })
})

describe('hard limits over HTTP', () => {
  let mock: MockUpstream
  let proxy: Proxy
  let seen: Awaited<ReturnType<typeof start>>['seen']
  beforeAll(async () => {
    ;({ mock, proxy, seen } = await start({
      limits: {
        teams: {
          frozen: { tokensPerDay: 0 },
          small: { tokensPerDay: 2000 },
          wide: { tokensPerDay: 1_000_000 },
          pennies: { usdPerDay: 0.00001 },
          chatty: { requestsPerMinute: 3 },
          minutely: { requestsPerMinute: 1 },
        },
        users: { tight: { tokensPerMonth: 300 } },
      },
    }))
  })
  afterAll(async () => {
    await proxy.close()
    await mock.close()
  })

  it('a limit of 0 blocks every request with a 429 quota_exceeded in the client protocol, with Retry-After', async () => {
    const before = mock.received.length
    const err = await chat(client(proxy, 'frozen')).catch((e) => e)
    expect(err).toBeInstanceOf(OpenAI.RateLimitError)
    expect(err.error.type).toBe('quota_exceeded')
    expect(err.message).toMatch(/team "frozen" tokens per day: 0 of 0 used/)
    const retry = Number(err.headers.get('retry-after'))
    const midnight = dayWindow(Date.now(), 'UTC').resetAt
    expect(retry).toBeGreaterThan(0)
    expect(Math.abs(retry - (midnight - Date.now()) / 1000)).toBeLessThan(5)
    expect(err.headers.get('x-agentmesh-quota-pct')).toBe('100.0')
    expect(err.headers.get('x-agentmesh-quota-remaining')).toBe('0')
    const anthropic = new Anthropic({
      baseURL: proxy.url,
      apiKey: 'k',
      maxRetries: 0,
      defaultHeaders: { 'X-AgentMesh-Team': 'frozen' },
    })
    const aerr = await anthropic.messages
      .create({ model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] })
      .catch((e) => e)
    expect(aerr.status).toBe(429)
    expect(aerr.error.error.type).toBe('quota_exceeded')
    expect(mock.received.length).toBe(before)
    expect(seen.at(-1)!.quota).toMatchObject({ decision: 'block', limit: 'team:frozen tokensPerDay' })
    const events = proxy.events.filter((e) => e.type === 'quota_block')
    expect(events.at(-1)!.data).toMatchObject({ scope: 'team:frozen', limit: 'tokensPerDay', max: 0 })
  })

  it('a budget that resets in hours says x-should-retry: false, so an SDK with its default retries gives up at once; a per-minute limit lets it retry', async () => {
    const before = mock.received.length
    const sdk = new OpenAI({
      baseURL: `${proxy.url}/v1`,
      apiKey: 'sk-client',
      defaultHeaders: { 'X-AgentMesh-Team': 'frozen' },
    })
    const started = Date.now()
    const err = await sdk.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e) => e)
    expect(err.status).toBe(429)
    expect(err.headers.get('x-should-retry')).toBe('false')
    // without the header the SDK would sleep until midnight (it honours any Retry-After)
    expect(Date.now() - started).toBeLessThan(5000)
    expect(mock.received.length).toBe(before)
    const c = client(proxy, 'minutely')
    let blocked: any
    for (let i = 0; i < 3 && !blocked; i++)
      blocked = await chat(c).then(
        () => undefined,
        (e) => e,
      )
    expect(blocked.status).toBe(429)
    expect(Number(blocked.headers.get('retry-after'))).toBeLessThanOrEqual(60)
    expect(blocked.headers.get('x-should-retry')).toBeNull()
  })

  it('settles the reservation to the usage the vendor reported, with quota headers on the response', async () => {
    const c = client(proxy, 'wide')
    const { data, response } = await chat(c, 'settle me please', 500)
    const actual = data.usage!.prompt_tokens + data.usage!.completion_tokens
    expect(response.headers.get('x-agentmesh-quota-pct')).toMatch(/^\d+\.\d$/)
    expect(Number(response.headers.get('x-agentmesh-quota-remaining'))).toBeGreaterThan(990_000)
    expect(response.headers.get('x-agentmesh-quota-limit')).toBe('team:wide tokensPerDay')
    await until(() => seen.length > 0 && seen.at(-1)!.status === 200, 'afterResponse')
    const team = await scopeOf(proxy, 'team:wide')
    // not the reservation (estimate + max_tokens 500): what was used
    expect(team!.day.tokens).toBe(actual)
    expect(team!.month.tokens).toBe(actual)
    expect(team!.day.requests).toBe(1)
    expect(team!.day.usd).toBeCloseTo(Number(response.headers.get('x-agentmesh-cost-usd')), 6)
    expect(team!.day.limits.tokensPerDay).toMatchObject({ limit: 1_000_000, used: actual })
    expect(seen.at(-1)!.quota.decision).toBe('allow')
  })

  it('releases the reservation when the upstream fails', async () => {
    mock.behaviour.status = 500
    try {
      const err = await chat(client(proxy, 'small'), 'this will fail', 1500).catch((e) => e)
      expect(err.status).toBe(500)
    } finally {
      delete mock.behaviour.status
    }
    await until(() => seen.at(-1)?.status === 500, 'afterResponse of the failed call')
    const team = await scopeOf(proxy, 'team:small')
    expect(team!.day.tokens).toBe(0)
    expect(team!.day.requests).toBe(1)
  })

  it('an aborted stream is charged what it consumed and gives back the rest of the reservation', async () => {
    mock.behaviour.eventGapMs = 40
    try {
      const c = client(proxy, 'wide', 'streamer')
      const controller = new AbortController()
      const stream = await c.chat.completions.create(
        {
          model: 'gpt-4o-mini',
          max_tokens: 900,
          stream: true,
          messages: [{ role: 'user', content: 'a long answer please with many many words in it' }],
        },
        { signal: controller.signal },
      )
      let chunks = 0
      try {
        for await (const _ of stream) {
          if (++chunks === 2) {
            controller.abort()
            break
          }
        }
      } catch {
        // an abort may surface as an error or as the end of the stream
      }
      expect(chunks).toBe(2)
    } finally {
      delete mock.behaviour.eventGapMs
    }
    let user = await scopeOf(proxy, 'user:streamer')
    for (let i = 0; i < 100 && user!.day.tokens >= 900; i++) {
      await new Promise((r) => setTimeout(r, 50))
      user = await scopeOf(proxy, 'user:streamer')
    }
    // the estimated input stays charged; the 900 reserved output tokens went back
    expect(user!.day.tokens).toBeGreaterThan(0)
    expect(user!.day.tokens).toBeLessThan(100)
  })

  it('blocks once the budget is spent and stays blocked; a grant lifts it until it expires', async () => {
    const c = client(proxy, 'small', 'grantee')
    let ok = 0
    let blocked: any
    const spend = 'spend '.repeat(150)
    for (let i = 0; i < 40 && !blocked; i++) {
      try {
        await chat(c, spend, 200)
        ok++
      } catch (e) {
        blocked = e
      }
    }
    expect(ok).toBeGreaterThanOrEqual(3)
    expect(blocked.status).toBe(429)
    expect(blocked.message).toMatch(/team "small" tokens per day: [\d,]+ of 2,000 used/)
    // later requests stay blocked: nothing is granted automatically
    for (let i = 0; i < 3; i++) expect((await chat(c, spend, 200).catch((e) => e)).status).toBe(429)

    const bad = await postJson(`${proxy.url}/agentmesh/admin/grants`, { team: 'small', tokens: -5 }, admin)
    expect(bad.status).toBe(400)
    expect(
      (await postJson(`${proxy.url}/agentmesh/admin/grants`, { team: 'small', user: 'x', tokens: 5 }, admin)).status,
    ).toBe(400)
    expect((await postJson(`${proxy.url}/agentmesh/admin/grants`, '{oops', admin)).status).toBe(400)
    expect((await (await fetch(`${proxy.url}/agentmesh/admin/grants`, { headers: admin })).json()).grants).toEqual([])

    const res = await postJson(
      `${proxy.url}/agentmesh/admin/grants`,
      { team: 'small', tokens: 1000, for: 2, reason: 'release day' },
      admin,
    )
    expect(res.status).toBe(201)
    const grant = await res.json()
    expect(grant).toMatchObject({ scope: 'team:small', tokens: 1000, reason: 'release day' })
    const listed = (await (await fetch(`${proxy.url}/agentmesh/admin/grants`, { headers: admin })).json()).grants
    expect(listed.map((g: any) => g.id)).toEqual([grant.id])
    const { response } = await chat(c, spend, 200)
    expect(response.status).toBe(200)
    // the grant expires on time: blocked again
    await new Promise((r) => setTimeout(r, 2100))
    expect((await chat(c, spend, 200).catch((e) => e)).status).toBe(429)
    expect((await (await fetch(`${proxy.url}/agentmesh/admin/grants`, { headers: admin })).json()).grants).toEqual([])
    expect(
      (await (await fetch(`${proxy.url}/agentmesh/admin/grants?all=1`, { headers: admin })).json()).grants,
    ).toHaveLength(1)
  })

  it('every applicable limit is checked and the most restrictive decides', async () => {
    // team "wide" has room; user "tight" has 300 tokens a month
    const c = client(proxy, 'wide', 'tight')
    const err = await chat(c, 'hello', 400).catch((e) => e)
    expect(err.status).toBe(429)
    expect(err.message).toMatch(/user "tight" tokens per month/)
    const ok = await chat(c, 'hello', 50)
    expect(ok.response.headers.get('x-agentmesh-quota-limit')).toBe('user:tight tokensPerMonth')
  })

  it('a USD limit blocks by price', async () => {
    const err = await chat(client(proxy, 'pennies'), 'hello', 1000).catch((e) => e)
    expect(err.status).toBe(429)
    expect(err.message).toMatch(
      /team "pennies" USD per day: \$0\.0000 of \$0\.0000 used \(this request reserves up to \$0\.0006\)/,
    )
  })

  it('requests per minute', async () => {
    const c = client(proxy, 'chatty')
    for (let i = 0; i < 3; i++) await chat(c, 'hi', 5)
    const err = await chat(c, 'hi', 5).catch((e) => e)
    expect(err.status).toBe(429)
    expect(err.message).toMatch(/requests per minute: 3 of 3 used/)
    expect(Number(err.headers.get('retry-after'))).toBeLessThanOrEqual(60)
  })

  it('the usage report covers teams, users and tools, and the usage command prints it', async () => {
    const report = await usage(proxy)
    const names = report.scopes.map((s) => s.scope)
    expect(names).toEqual(
      expect.arrayContaining(['global', 'team:wide', 'team:small', 'user:grantee', 'tool:openai-sdk']),
    )
    const global = report.scopes.find((s) => s.scope === 'global')!
    const teams = report.scopes.filter((s) => s.scope.startsWith('team:'))
    expect(global.day.tokens).toBe(teams.reduce((a, s) => a + s.day.tokens, 0))
    expect(global.day.blocked).toBeGreaterThan(0)
    const cmd = proxy.instance.plugins
      .find((p) => p.name === 'quota')!
      .commands!.find((c) => c.name === 'usage') as PluginCommand
    const lines: string[] = []
    expect(await cmd.run({ mesh: proxy.instance.mesh, args: [], options: {}, print: (l) => lines.push(l) })).toBe(1)
    expect(lines.join('\n')).toMatch(/in-memory driver/)
  })

  it('the admin API wants the token', async () => {
    expect((await fetch(`${proxy.url}/agentmesh/admin/usage`)).status).toBe(401)
    expect(
      (
        await fetch(`${proxy.url}/agentmesh/admin/usage`, {
          headers: { authorization: 'Bearer wrong-token-xxxxxxxxxx' },
        })
      ).status,
    ).toBe(401)
  })
})

describe('warnings, soft mode, cache hits', () => {
  let mock: MockUpstream
  let proxy: Proxy
  let seen: Awaited<ReturnType<typeof start>>['seen']
  // answers prompts containing "cached" from a pretend cache, as a cache plugin would
  const fakeCache = definePlugin({
    name: 'test:cache',
    hooks: {
      cacheLookup(ctx) {
        if (!ctx.prompt.messages.some((m) => m.text.includes('cached'))) return
        ctx.cache.status = 'exact'
        ctx.cache.savedTokens = 321
        ctx.cost.savedUsd = 0.0042
        ctx.response = {
          kind: 'answer',
          answer: {
            id: 'hit',
            model: ctx.route.model,
            text: 'from cache',
            toolCalls: [],
            stopReason: 'stop',
            usage: { inputTokens: 300, outputTokens: 21, cacheReadTokens: 0, cacheWriteTokens: 0 },
          },
        }
      },
    },
  })
  beforeAll(async () => {
    ;({ mock, proxy, seen } = await start(
      { limits: { teams: { warned: { tokensPerDay: 1000 } } }, warnAt: 50 },
      { plugins: [fakeCache] },
    ))
  })
  afterAll(async () => {
    await proxy.close()
    await mock.close()
  })

  it('warns from warnAt% with a header and one quota_warn event', async () => {
    const c = client(proxy, 'warned')
    const warnings: string[] = []
    for (let i = 0; i < 12; i++) {
      const r = await chat(c, 'word '.repeat(60), 20).catch((e) => e)
      if (r.status === 429) break
      const h = r.response.headers.get('x-agentmesh-quota-warn')
      if (h) warnings.push(h)
    }
    expect(warnings.length).toBeGreaterThan(0)
    expect(warnings[0]).toMatch(/^team:warned tokensPerDay at \d+\.\d% \([\d,]+ of 1,000\)$/)
    expect(
      proxy.events.filter((e: MeshEvent) => e.type === 'quota_warn' && (e.data as any).scope === 'team:warned'),
    ).toHaveLength(1)
    expect(seen.some((s) => s.quota?.decision === 'warn')).toBe(true)
  })

  it('a cache hit costs no tokens but counts the request and what it saved', async () => {
    const c = client(proxy, 'cachers')
    await chat(c, 'fresh question', 20)
    await until(() => seen.at(-1)?.status === 200, 'first request settled')
    const before = (await scopeOf(proxy, 'team:cachers'))!.day
    const { data } = await chat(c, 'a cached question', 400)
    expect(data.choices[0]!.message.content).toBe('from cache')
    await until(() => seen.length > 0 && seen.at(-1)!.usage.inputTokens === 0, 'hit settled')
    const after = (await scopeOf(proxy, 'team:cachers'))!.day
    expect(after.tokens).toBe(before.tokens)
    expect(after.requests).toBe(before.requests + 1)
    expect(after.cacheHits).toBe(1)
    expect(after.savedTokens).toBe(321)
    expect(after.savedUsd).toBeCloseTo(0.0042, 6)
  })
})

describe('soft mode', () => {
  it('warns instead of blocking', async () => {
    const { mock, proxy, seen } = await start({ mode: 'soft', limits: { teams: { eng: { tokensPerDay: 0 } } } })
    try {
      const { response } = await chat(client(proxy, 'eng'), 'hi', 10)
      expect(response.status).toBe(200)
      expect(response.headers.get('x-agentmesh-quota-warn')).toMatch(/soft mode does not block/)
      await until(() => seen.length > 0, 'afterResponse')
      expect(seen.at(-1)!.quota.decision).toBe('soft')
    } finally {
      await proxy.close()
      await mock.close()
    }
  })
})

describe('counters without batch operations (the plain Counters interface)', () => {
  it('reserve group by group and give back what was taken when a later group refuses', async () => {
    // hides reserveMany/incrMany, as a third-party Counters implementation would
    const plain = definePlugin({
      name: 'test:plain-counters',
      enforce: 'pre',
      setup(mesh) {
        const c = mesh.counters
        mesh.counters = { incr: c.incr.bind(c), get: c.get.bind(c), reserve: c.reserve.bind(c), del: c.del.bind(c) }
      },
    })
    const { mock, proxy } = await start(
      { limits: { teams: { both: { tokensPerDay: 100_000, usdPerDay: 0.00001 }, fine: { tokensPerDay: 100_000 } } } },
      { plugins: [plain] },
    )
    try {
      expect('reserveMany' in proxy.instance.mesh.counters).toBe(false)
      const err = await chat(client(proxy, 'both', 'plain'), 'hello', 1000).catch((e) => e)
      expect(err.status).toBe(429)
      expect(err.message).toMatch(/USD per day/)
      // the token reservation taken before the USD refusal was given back
      expect((await scopeOf(proxy, 'team:both'))!.day.tokens).toBe(0)
      const { data } = await chat(client(proxy, 'fine', 'plain'), 'hello', 1000)
      let team = await scopeOf(proxy, 'team:fine')
      for (let i = 0; i < 50 && team!.day.tokens !== data.usage!.total_tokens; i++) {
        await new Promise((r) => setTimeout(r, 20))
        team = await scopeOf(proxy, 'team:fine')
      }
      expect(team!.day.tokens).toBe(data.usage!.total_tokens)
    } finally {
      await proxy.close()
      await mock.close()
    }
  })
})

describe('CLI commands against a proxy on redis', () => {
  it('grant and usage act on the running proxy through shared storage', async () => {
    clearVendorEnv()
    const storage = {
      driver: 'redis' as const,
      url: inject('redisUrl'),
      prefix: `quota-cli-${process.pid}-${Date.now()}`,
    }
    const limits = { teams: { eng: { tokensPerDay: 0 } } }
    const { mock, proxy } = await startMockAndProxy({
      config: { storage, plugins: [quota({ limits, grantsCacheMs: 0 })] },
    })
    const cli = async (name: string, options: Record<string, unknown>) => {
      const lines: string[] = []
      const m = await createAgentMesh(
        { log: { level: 'silent' }, storage, plugins: [quota({ limits })] },
        { mode: 'command' },
      )
      try {
        const cmd = m.plugins.find((p) => p.name === 'quota')!.commands!.find((c) => c.name === name)!
        const code = await cmd.run({ mesh: m.mesh, args: [], options, print: (l) => lines.push(l) })
        return { code, out: lines.join('\n') }
      } finally {
        await m.close()
      }
    }
    try {
      const c = client(proxy, 'eng', 'cli-user')
      expect((await chat(c).catch((e) => e)).status).toBe(429)
      const bad = await cli('grant', { team: 'eng', tokens: 'lots' })
      expect(bad.code).toBe(1)
      expect(bad.out).toMatch(/tokens must be a positive number/)
      const granted = await cli('grant', { team: 'eng', tokens: '100000', for: '1h', reason: 'launch' })
      expect(granted.code).toBe(0)
      expect(granted.out).toMatch(/granted 100,000 tokens to team:eng until/)
      const { data } = await chat(c)
      const used = data.usage!.prompt_tokens + data.usage!.completion_tokens
      let out = ''
      for (let i = 0; i < 50; i++) {
        out = (await cli('usage', {})).out
        if (new RegExp(`team:eng\\s+1\\s+${used}\\s`).test(out)) break
        await new Promise((r) => setTimeout(r, 20))
      }
      expect(out).toMatch(/Today \(\d{4}-\d{2}-\d{2}, UTC/)
      expect(out).toMatch(new RegExp(`team:eng\\s+1\\s+${used}\\s`))
      expect(out).toMatch(/user:cli-user/)
      const json = JSON.parse((await cli('usage', { json: true })).out)
      expect(json.scopes.find((s: any) => s.scope === 'team:eng').day.limits.tokensPerDay.limit).toBe(100_000)
      const grants = await cli('grants', {})
      expect(grants.out).toMatch(/team:eng\s+\+100000 tokens/)
    } finally {
      await proxy.close()
      await mock.close()
    }
  })
})

describe('CLI short form', () => {
  it('--team-limit eng=N blocks the team after N tokens a day', async () => {
    clearVendorEnv()
    const { mock, proxy } = await startMockAndProxy({
      config: {
        plugins: [quota()],
        quota: { teamDailyTokens: { engineering: 0, sales: 500_000 }, warnAt: 80, hardStopAt: 100 },
      },
    })
    try {
      expect((await chat(client(proxy, 'engineering'), 'hi').catch((e) => e)).status).toBe(429)
      const { response } = await chat(client(proxy, 'sales'), 'hi')
      expect(response.headers.get('x-agentmesh-quota-limit')).toBe('team:sales tokensPerDay')
    } finally {
      await proxy.close()
      await mock.close()
    }
  })
})
