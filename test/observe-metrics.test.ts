// Prometheus metrics (plugins/metrics): a real proxy with quota and the exact cache in front of the
// mock vendor; plain, streamed, cache-hit, quota-blocked and failed requests; the scrape's counters
// match what was sent, labels are bounded, secrets and prompt text never appear, and under
// `events.access: 'authenticated'` the scrape needs the admin token.
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { exactCache } from '../plugins/exact-cache/index.ts'
import { metrics } from '../plugins/metrics/index.ts'
import { quota } from '../plugins/quota/index.ts'
import { clearVendorEnv, postJson, startMockAndProxy, type Proxy } from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'

const ADMIN = 'metrics-admin-token-0123456789'

/** value of one series in the text exposition, 0 when absent */
function sample(text: string, name: string, labels: Record<string, string>): number {
  let total = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && line !== name && !line.startsWith(name + ' ')) continue
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      total += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return total
}

const client = (proxy: Proxy, team: string, user = 'ana') =>
  new OpenAI({
    baseURL: `${proxy.url}/v1`,
    apiKey: 'sk-client-secret-do-not-leak',
    maxRetries: 0,
    defaultHeaders: { 'X-AgentMesh-Team': team, 'X-AgentMesh-User': user },
  })

describe('metrics: /metrics in Prometheus text format', () => {
  let mock: MockUpstream
  let proxy: Proxy
  beforeAll(async () => {
    clearVendorEnv()
    ;({ mock, proxy } = await startMockAndProxy({
      config: {
        plugins: [
          quota({ limits: { teams: { tiny: { tokensPerDay: 1 } } } }),
          exactCache(),
          metrics({ labelLimits: { user: 3 } }),
        ],
      },
    }))
  })
  afterAll(async () => {
    await proxy?.close()
    await mock?.close()
  })

  it('counts requests, tokens, cost, cache lookups, quota blocks and latency', async () => {
    const c = client(proxy, 'eng')
    const a = await c.chat.completions.create({
      model: 'gpt-4o-mini',
      max_tokens: 20,
      messages: [{ role: 'user', content: 'secret prompt text about foxes' }],
    })
    await c.chat.completions.create({
      model: 'gpt-4o-mini',
      max_tokens: 20,
      messages: [{ role: 'user', content: 'secret prompt text about foxes' }],
    })
    const s = await c.chat.completions.create({
      model: 'gpt-4o-mini',
      max_tokens: 20,
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'stream me' }],
    })
    for await (const _ of s) {
      /* drain */
    }
    await expect(
      client(proxy, 'tiny').chat.completions.create({
        model: 'gpt-4o-mini',
        max_tokens: 20,
        messages: [{ role: 'user', content: 'blocked' }],
      }),
    ).rejects.toMatchObject({ status: 429 })
    mock.behaviour.status = 500
    await expect(
      c.chat.completions.create({
        model: 'gpt-4o-mini',
        max_tokens: 20,
        messages: [{ role: 'user', content: 'fails upstream' }],
      }),
    ).rejects.toBeTruthy()
    mock.behaviour.status = undefined

    const res = await fetch(`${proxy.url}/metrics`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/)
    const text = await res.text()
    expect(sample(text, 'agentmesh_requests_total', { team: 'eng', status: '200' })).toBe(3)
    expect(sample(text, 'agentmesh_requests_total', { team: 'tiny', status: '429', vendor: 'none' })).toBe(1)
    expect(
      sample(text, 'agentmesh_requests_total', { team: 'eng', status: '500' }) +
        sample(text, 'agentmesh_requests_total', { team: 'eng', status: '502' }),
    ).toBe(1)
    expect(sample(text, 'agentmesh_cache_lookups_total', { layer: 'exact', outcome: 'hit' })).toBe(1)
    expect(sample(text, 'agentmesh_cache_lookups_total', { layer: 'exact', outcome: 'miss' })).toBeGreaterThanOrEqual(2)
    expect(sample(text, 'agentmesh_quota_block_total', { team: 'tiny' })).toBe(1)
    expect(sample(text, 'agentmesh_tokens_total', { team: 'eng', type: 'input' })).toBeGreaterThanOrEqual(
      a.usage!.prompt_tokens,
    )
    expect(sample(text, 'agentmesh_tokens_total', { team: 'eng', type: 'output' })).toBeGreaterThan(0)
    expect(sample(text, 'agentmesh_cost_usd_total', { team: 'eng' })).toBeGreaterThan(0)
    expect(sample(text, 'agentmesh_cost_saved_usd_total', { team: 'eng' })).toBeGreaterThan(0)
    expect(sample(text, 'agentmesh_upstream_latency_seconds_count', { vendor: 'openai' })).toBeGreaterThanOrEqual(3)
    expect(sample(text, 'agentmesh_time_to_first_token_seconds_count', { vendor: 'openai' })).toBe(1)
    expect(sample(text, 'agentmesh_proxy_overhead_seconds_count', {})).toBeGreaterThanOrEqual(3)
    // histograms render as Prometheus expects: cumulative buckets ending in +Inf = _count, and a _sum
    const count = sample(text, 'agentmesh_upstream_latency_seconds_count', { vendor: 'openai' })
    expect(sample(text, 'agentmesh_upstream_latency_seconds_bucket', { vendor: 'openai', le: '+Inf' })).toBe(count)
    expect(
      sample(text, 'agentmesh_upstream_latency_seconds_bucket', { vendor: 'openai', le: '120' }),
    ).toBeLessThanOrEqual(count)
    expect(sample(text, 'agentmesh_upstream_latency_seconds_sum', { vendor: 'openai' })).toBeGreaterThan(0)
    // prompt text and client keys never reach the scrape
    expect(text).not.toContain('foxes')
    expect(text).not.toContain('sk-client-secret')
  })

  it('folds label values past the limit into `other`', async () => {
    for (const user of ['u2', 'u3', 'u4', 'u5']) {
      await postJson(
        `${proxy.url}/v1/chat/completions`,
        { model: 'gpt-4o-mini', max_tokens: 5, messages: [{ role: 'user', content: `hi ${user}` }] },
        { 'x-agentmesh-team': 'eng', 'x-agentmesh-user': user, authorization: 'Bearer sk-x' },
      )
    }
    const text = await (await fetch(`${proxy.url}/metrics`)).text()
    // user limit 3: ana, (the tiny team's) ana again, then u2, u3; u4 and u5 are `other`
    expect(sample(text, 'agentmesh_requests_total', { user: 'other' })).toBe(2)
    expect(text).not.toContain('user="u4"')
  })
})

describe('metrics: the status label', () => {
  it('is bounded as the others: past the limit a new status counts as `other`, the admitted ones stay', async () => {
    clearVendorEnv()
    const { mock, proxy } = await startMockAndProxy({ config: { plugins: [metrics({ labelLimits: { status: 2 } })] } })
    try {
      const send = () =>
        postJson(
          `${proxy.url}/v1/chat/completions`,
          { model: 'gpt-4o-mini', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] },
          { authorization: 'Bearer sk-x' },
        )
      const statuses: number[] = []
      // 200, then the vendor's 500s (the proxy answers 502) and 429s: two distinct statuses fit
      for (const vendorStatus of [0, 0, 500, 429, 429, 0]) {
        mock.behaviour = vendorStatus ? { status: vendorStatus } : {}
        statuses.push((await send()).status)
      }
      expect(new Set(statuses).size).toBe(3)
      const text = await (await fetch(`${proxy.url}/metrics`)).text()
      const [first, second, third] = [...new Set(statuses)]
      const count = (s: number) => statuses.filter((x) => x === s).length
      expect(sample(text, 'agentmesh_requests_total', { status: String(first) })).toBe(count(first!))
      expect(sample(text, 'agentmesh_requests_total', { status: String(second) })).toBe(count(second!))
      expect(sample(text, 'agentmesh_requests_total', { status: 'other' })).toBe(count(third!))
      expect(text).not.toContain(`status="${third}"`)
    } finally {
      await proxy.close()
      await mock.close()
    }
  })
})

describe('metrics: access', () => {
  it('needs the admin token when the events need authentication', async () => {
    clearVendorEnv()
    const { mock, proxy } = await startMockAndProxy({
      config: { events: { access: 'authenticated' }, plugins: [metrics({ adminToken: ADMIN })] },
    })
    try {
      expect((await fetch(`${proxy.url}/metrics`)).status).toBe(401)
      const ok = await fetch(`${proxy.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })
      expect(ok.status).toBe(200)
      expect(await ok.text()).toContain('# TYPE agentmesh_requests_total counter')
    } finally {
      await proxy.close()
      await mock.close()
    }
  })

  it('refuses unknown options by name', () => {
    expect(() => metrics({ labelLimits: { colour: 3 } as any })).toThrow(/labelLimits.colour/)
    expect(() => metrics({ acess: 'open' } as any)).toThrow(/unknown option "acess"/)
  })
})
