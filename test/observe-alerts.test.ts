// Alerts to webhooks: a quota block becomes one Slack message and one signed JSON post (deduped
// across repeats), a high 5xx rate alerts, a failing webhook is retried with backoff and then
// counted as failed, and no request waits for a webhook.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { alerts } from '../plugins/alerts/index.ts'
import { signature } from '../plugins/alerts/deliver.ts'
import { quota } from '../plugins/quota/index.ts'
import { clearVendorEnv, postJson, startMockAndProxy, until, type Proxy } from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'

interface Hook {
  path: string
  headers: Record<string, any>
  body: string
}

function webhook(): Promise<{
  url: string
  got: Hook[]
  server: Server
  status: Record<string, number>
  delayMs: number
}> {
  const state = { got: [] as Hook[], status: {} as Record<string, number>, delayMs: 0 }
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (d) => {
      body += d
    })
    req.on('end', () => {
      state.got.push({ path: req.url ?? '', headers: req.headers, body })
      setTimeout(() => res.writeHead(state.status[req.url ?? ''] ?? 200).end('ok'), state.delayMs)
    })
  })
  return new Promise((r) =>
    server.listen(0, '127.0.0.1', () =>
      r(Object.assign(state, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server })),
    ),
  )
}

const SECRET = 'alert-signing-secret'
const ask = (proxy: Proxy, team: string) =>
  postJson(
    `${proxy.url}/v1/chat/completions`,
    { model: 'gpt-4o-mini', max_tokens: 10, messages: [{ role: 'user', content: 'hello' }] },
    { 'x-agentmesh-team': team, authorization: 'Bearer sk-x' },
  )

describe('alerts', () => {
  let mock: MockUpstream
  let proxy: Proxy
  let hook: Awaited<ReturnType<typeof webhook>>
  beforeAll(async () => {
    clearVendorEnv()
    hook = await webhook()
    hook.status['/broken'] = 500
    ;({ mock, proxy } = await startMockAndProxy({
      config: {
        plugins: [
          quota({ limits: { teams: { tiny: { tokensPerDay: 1 } } } }),
          alerts({
            rules: [
              { on: ['quota_block'], webhook: `${hook.url}/slack`, format: 'slack' },
              { on: ['quota_block', 'error_rate'], webhook: `${hook.url}/json`, format: 'json', secret: SECRET },
              { on: ['quota_block'], webhook: `${hook.url}/broken`, format: 'json' },
            ],
            errorRate: { threshold: 0.5, minRequests: 4, windowSeconds: 60 },
            delivery: { retries: 2, retryDelayMs: 50, timeoutMs: 3000 },
          }),
        ],
      },
    }))
  })
  afterAll(async () => {
    await proxy?.close()
    await mock?.close()
    hook?.server.close()
  })

  it('posts a quota block once per window: Slack text and signed JSON; a broken webhook is retried, then given up', {
    timeout: 30_000,
  }, async () => {
    hook.delayMs = 1500 // a slow webhook must not slow the request
    const t0 = performance.now()
    expect((await ask(proxy, 'tiny')).status).toBe(429)
    expect(performance.now() - t0).toBeLessThan(1000)
    expect((await ask(proxy, 'tiny')).status).toBe(429) // deduplicated
    await until(
      () => hook.got.filter((h) => h.path === '/broken').length === 3,
      'three attempts at the broken webhook',
      10_000,
    )
    await until(() => hook.got.some((h) => h.path === '/json'), 'the json alert', 5000)
    hook.delayMs = 0
    const slack = hook.got.filter((h) => h.path === '/slack')
    expect(slack).toHaveLength(1)
    expect(JSON.parse(slack[0]!.body).text).toMatch(/quota_block: team:tiny blocked by tokensPerDay/)
    const json = hook.got.filter((h) => h.path === '/json')
    expect(json).toHaveLength(1)
    const h = json[0]!
    expect(h.headers['x-agentmesh-signature']).toBe(signature(SECRET, h.headers['x-agentmesh-timestamp'], h.body))
    expect(JSON.parse(h.body)).toMatchObject({
      type: 'quota_block',
      data: { scope: 'team:tiny', limit: 'tokensPerDay' },
    })
    // the last attempt's answer comes after the webhook's delay: then it counts as failed
    let message = ''
    const health = async () => {
      message = (await (await fetch(`${proxy.url}/agentmesh/health`)).json()).checks.alerts.message
    }
    const end = Date.now() + 5000
    while (!/failed 1/.test(message) && Date.now() < end) {
      await health()
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(message).toMatch(/sent 2, failed 1, deduplicated 1/)
    await new Promise((r) => setTimeout(r, 300))
    expect(hook.got.filter((x) => x.path === '/broken')).toHaveLength(3) // 1 + 2 retries, no more
  })

  it('alerts when the 5xx share passes the threshold', async () => {
    mock.behaviour.status = 500
    for (let i = 0; i < 4; i++) await ask(proxy, 'eng')
    mock.behaviour.status = undefined
    await until(
      () => hook.got.some((h) => h.path === '/json' && JSON.parse(h.body).type === 'error_rate'),
      'the error_rate alert',
      5000,
    )
    const alert = JSON.parse(hook.got.find((h) => h.path === '/json' && JSON.parse(h.body).type === 'error_rate')!.body)
    expect(alert.data.errors).toBeGreaterThanOrEqual(2)
  })

  it('refuses a rule without a webhook or with an unknown kind', () => {
    expect(() => alerts({ rules: [{ on: ['quota_block'], webhook: 'not a url' }] })).toThrow(/webhook/)
    expect(() => alerts({ rules: [{ on: ['nope' as any], webhook: 'http://x' }] })).toThrow(/on must list/)
  })
})
