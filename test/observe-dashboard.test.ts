// The dashboard in a real browser (Debian's chromium through playwright-core, headless): each view
// loads, requests made with the official OpenAI SDK appear live, an approval is granted from the
// page, the overview's totals equal the usage API's, a reload rebuilds the tables from the event
// replay, and under `events.access: 'authenticated'` a virtual key sees its own team only.
// Screenshots at 1280 and 390 pixels, light and dark, go to test/artifacts/dashboard/.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import OpenAI from 'openai'
import { type Browser, chromium, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { approval } from '../plugins/approval/index.ts'
import { listLogFiles } from '../plugins/audit/index.ts'
import { dashboard } from '../plugins/dashboard/index.ts'
import { virtualKeys } from '../plugins/keys/index.ts'
import { router } from '../plugins/router/index.ts'
import { clearVendorEnv, type Proxy, startMockAndProxy } from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'

const ADMIN = 'dashboard-admin-token-0123456789'
const ARTIFACTS = join(import.meta.dirname, 'artifacts', 'dashboard')
const VIEWS = ['overview', 'teams', 'requests', 'keys', 'audit'] as const

const client = (proxy: Proxy, headers: Record<string, string>, apiKey = 'sk-client') =>
  new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey, maxRetries: 0, defaultHeaders: headers })
const ask = (c: OpenAI, content: string, model = 'gpt-4o-mini') =>
  c.chat.completions.create({ model, max_tokens: 20, messages: [{ role: 'user', content }] })

let browser: Browser
beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true })
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] })
})
afterAll(async () => {
  await browser?.close()
})

async function open(
  proxy: Proxy,
  width: number,
  token?: string,
  colorScheme: 'light' | 'dark' = 'light',
): Promise<Page> {
  const context = await browser.newContext({ viewport: { width, height: 900 }, colorScheme })
  if (token) await context.addInitScript((t) => sessionStorage.setItem('agentmesh.token', t), token)
  const page = await context.newPage()
  const errors: string[] = []
  page.on('pageerror', (err) => errors.push(err.message))
  if (process.env.DEBUG_DASHBOARD) page.on('console', (m) => console.log('[page]', m.text()))
  if (process.env.DEBUG_DASHBOARD)
    page.on('requestfailed', (r) => console.log('[failed]', r.url(), r.failure()?.errorText))
  if (process.env.DEBUG_DASHBOARD) page.on('response', (r) => console.log('[resp]', r.status(), r.url()))
  await page.goto(`${proxy.url}/agentmesh/`)
  ;(page as any).errors = errors
  return page
}

describe('dashboard (solo: open events, loopback)', () => {
  let mock: MockUpstream
  let proxy: Proxy
  beforeAll(async () => {
    clearVendorEnv()
    process.env.AGENTMESH_ADMIN_TOKEN = ADMIN
    ;({ mock, proxy } = await startMockAndProxy({
      features: true,
      config: {
        plugins: [
          approval({ mode: 'hold', holdSeconds: 30, rules: [{ name: 'pricey', models: ['*expensive*'] }] }),
          dashboard(),
        ],
      },
    }))
  })
  afterAll(async () => {
    delete process.env.AGENTMESH_ADMIN_TOKEN
    await proxy?.close()
    await mock?.close()
  })

  it('shows requests live, their detail, budgets, approvals and the audit state', { timeout: 60_000 }, async () => {
    const page = await open(proxy, 1280, ADMIN)
    await page.locator('[data-connected="true"]').waitFor()
    await page.click('[data-view="requests"]')
    const eng = client(proxy, { 'X-AgentMesh-Team': 'eng', 'X-AgentMesh-User': 'ana' })
    await ask(eng, 'what is a fox')
    await ask(eng, 'what is a fox') // exact cache hit
    const s = await eng.chat.completions.create({
      model: 'gpt-4o-mini',
      max_tokens: 20,
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'stream please' }],
    })
    for await (const _ of s) {
      /* drain */
    }
    await ask(client(proxy, { 'X-AgentMesh-Team': 'ops', 'X-AgentMesh-User': 'bo' }), 'ops question')
    await page.locator('table.requests tbody tr').nth(3).waitFor()
    expect(await page.locator('table.requests tbody tr').count()).toBe(4)
    // the prompt text is nowhere on the page
    expect(await page.content()).not.toContain('what is a fox')
    // filter by team, then open one request's detail
    await page.fill('input[name="team"]', 'eng')
    await expect.poll(() => page.locator('table.requests tbody tr').count()).toBe(3)
    await page.selectOption('select[name="cache"]', 'exact')
    await expect.poll(() => page.locator('table.requests tbody tr').count()).toBe(1)
    await page.locator('table.requests tbody tr').first().click()
    await expect.poll(() => page.locator('section.detail').textContent()).toContain('exact')

    // overview: today's totals are the usage API's
    await page.click('[data-view="overview"]')
    const usage = await (
      await fetch(`${proxy.url}/agentmesh/admin/usage`, { headers: { authorization: `Bearer ${ADMIN}` } })
    ).json()
    const day = usage.scopes.find((x: any) => x.scope === 'global').day
    await expect
      .poll(() => page.locator('[data-metric="day-requests"] .v').textContent())
      .toBe(day.requests.toLocaleString('en-US'))
    await expect
      .poll(() => page.locator('[data-metric="day-tokens"] .v').textContent())
      .toBe(day.tokens.toLocaleString('en-US'))
    expect(await page.locator('[data-metric="hit-exact"] .v').textContent()).toMatch(/%$/)

    // teams and budgets
    await page.click('[data-view="teams"]')
    await page.locator('tr[data-scope="team:eng"]').waitFor()
    await page.locator('tr[data-scope="team:ops"]').waitFor()

    // an approval: the held request waits until the page approves it
    await page.click('[data-view="keys"]')
    const held = ask(eng, 'costly question', 'gpt-4o-expensive')
    const row = page.locator('table.approvals tr[data-approval]').first()
    await row.waitFor({ timeout: 10_000 })
    await row.locator('button', { hasText: 'approve' }).click()
    const answer = await held
    expect(answer.choices[0]!.message.content).toContain('mock answer')

    await page.click('[data-view="audit"]')
    await expect.poll(() => page.locator('main').textContent()).toContain('writing')
    // verify now: the proxy checks its log; the page shows what the admin API answers
    await page.click('button[data-action="verify"]')
    await page.locator('dl[data-verify="ok"]').waitFor({ timeout: 30_000 })
    const verified = await (
      await fetch(`${proxy.url}/agentmesh/admin/audit/verify`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}` },
      })
    ).json()
    expect(verified.ok).toBe(true)
    expect(verified.entries).toBeGreaterThanOrEqual(5)
    expect(await page.locator('dl[data-verify] [data-field="entries"]').textContent()).toMatch(
      new RegExp(`^${verified.entries.toLocaleString('en-US')}( |$)`),
    )
    expect(await page.locator('dl[data-verify] [data-field="checkpoints"]').textContent()).toMatch(/^\d+$/)
    expect((page as any).errors).toEqual([])

    // a reload rebuilds the request table from the server's replay
    await page.click('[data-view="requests"]')
    await page.reload()
    await page.locator('[data-connected="true"]').waitFor()
    await page.locator('table.requests tbody tr').nth(4).waitFor()
    await page.context().close()
  })

  it('open events: the page works without a token, and the header signs in for the admin views', {
    timeout: 90_000,
  }, async () => {
    for (const width of [390, 1280]) {
      const page = await open(proxy, width)
      await page.locator('[data-connected="true"]').waitFor({ timeout: 30_000 })
      await expect.poll(() => page.locator('main').textContent(), { timeout: 20_000 }).toContain('need the admin token')
      expect(await page.locator('[data-metric="day-requests"]').count()).toBe(0)
      expect(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(0)
      await page.click('button[data-action="sign-in"]')
      await page.fill('form.login input[name="token"]', ADMIN)
      await page.click('form.login button')
      await page.locator('[data-metric="day-requests"]').waitFor({ timeout: 30_000 })
      await page.locator('[data-connected="true"]').waitFor({ timeout: 30_000 })
      expect((page as any).errors).toEqual([])
      await page.context().close()
    }
  })

  it('a burst faster than the page lists: counted exactly, the rest of the rows summed by the server (?fold=20)', {
    timeout: 90_000,
  }, async () => {
    const page = await open(proxy, 1280)
    await page.locator('[data-connected="true"]').waitFor({ timeout: 30_000 })
    const seen = async () =>
      Number((await page.locator('[data-metric="seen-requests"] .v').textContent())!.replace(/,/g, ''))
    // the replay of what earlier tests sent settles first
    let before = -1
    await expect.poll(async () => before === (before = await seen()), { timeout: 20_000, interval: 300 }).toBe(true)
    // four prompts (exact cache hits after the first: fast enough to pass 20 in one flush), in 50
    // runs so that the breaker's repeat limit is not what answers
    const runs = Array.from({ length: 50 }, (_, i) =>
      client(proxy, { 'X-AgentMesh-Team': 'burst', 'X-AgentMesh-User': 'load', 'X-AgentMesh-Run-Id': `burst-${i}` }),
    )
    const N = 400
    await Promise.all(Array.from({ length: N }, (_, i) => ask(runs[i % 50]!, `burst ${i % 4}`)))
    await expect.poll(seen, { timeout: 20_000 }).toBe(before + N)
    const errorsBefore = Number((await page.locator('[data-metric="errors"] .v').textContent())!.replace(/,/g, ''))
    await page.click('[data-view="requests"]')
    const folded = async () =>
      (await page.locator('#folded').count()) === 0
        ? 0
        : Number((await page.locator('#folded').textContent())!.split(' ')[0]!.replace(/,/g, ''))
    // every request is a row or in the sums, once (the table lists the newest 200 rows)
    const burstFolded = await folded()
    await page.fill('input[name="team"]', 'burst')
    await expect.poll(() => page.locator('table.requests tbody tr').count()).toBe(Math.min(200, N - burstFolded))
    // whether a real burst outruns one flush depends on the machine: 100 responses in one turn
    // of the event loop always do (the bus's own events, as the core emits them)
    const mesh = proxy.instance.mesh
    const oneTurn = { team: 'one-turn', user: 'u', tool: 't', source: 'header' } as never
    for (let i = 0; i < 100; i++) {
      // `request` first, as the core sends them (the fold decides there)
      mesh.emit('request', {
        id: `folded-${i}`,
        identity: oneTurn,
        protocol: 'openai',
        model: 'gpt-4o-mini',
        stream: false,
      })
      mesh.emit('response', {
        id: `folded-${i}`,
        status: i < 10 ? 429 : 200,
        cache: 'bypass',
        latencyMs: 1,
        identity: oneTurn,
        protocol: 'openai',
        stream: false,
        requested: 'gpt-4o-mini',
        vendor: 'openai',
        model: 'gpt-4o-mini',
        tokens: 3,
        usage: { inputTokens: 1, outputTokens: 2, cacheReadTokens: 0, cacheWriteTokens: 0 },
        costUsd: 0.001,
        savedUsd: 0,
        vendorCalled: true,
      })
    }
    await expect.poll(folded).toBe(burstFolded + 80)
    await page.fill('input[name="team"]', 'one-turn')
    await expect.poll(() => page.locator('table.requests tbody tr').count()).toBe(20)
    await page.click('[data-view="overview"]')
    await expect.poll(seen).toBe(before + N + 100)
    expect(await page.locator('[data-metric="errors"] .v').textContent()).toBe(String(errorsBefore + 10))
    console.log(`dashboard burst: ${N} requests, ${burstFolded} folded into sums`)
    expect((page as any).errors).toEqual([])
    await page.context().close()
  })

  it('renders every view at 1280 and 390 pixels, light and dark (screenshots)', { timeout: 90_000 }, async () => {
    for (const width of [1280, 390]) {
      for (const scheme of ['light', 'dark'] as const) {
        const page = await open(proxy, width, ADMIN, scheme)
        await page.locator('[data-connected="true"]').waitFor()
        for (const view of VIEWS) {
          await page.click(`[data-view="${view}"]`)
          await page.waitForTimeout(150)
          // nothing wider than the window at 390: the tables scroll inside their sections
          const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
          expect(overflow, `${view} at ${width}`).toBeLessThanOrEqual(0)
          await page.screenshot({ path: join(ARTIFACTS, `${view}-${width}-${scheme}.png`), fullPage: true })
        }
        expect((page as any).errors).toEqual([])
        await page.context().close()
      }
    }
  })
})

describe("dashboard: one request's route, guards and audit entry", () => {
  it('joins the route, guard and approval events to the request by id, with no prompt text', {
    timeout: 120_000,
  }, async () => {
    clearVendorEnv()
    process.env.AGENTMESH_ADMIN_TOKEN = ADMIN
    const { mock, proxy } = await startMockAndProxy({
      features: true,
      config: {
        plugins: [
          router({ rules: [{ name: 'eng-on-mini', match: { team: 'eng' }, model: 'gpt-4o-mini' }] }),
          approval({ mode: 'hold', holdSeconds: 30, rules: [{ name: 'pricey', models: ['*expensive*'] }] }),
        ],
      },
    })
    try {
      const page = await open(proxy, 1280, ADMIN)
      await page.locator('[data-connected="true"]').waitFor({ timeout: 30_000 })
      await page.click('[data-view="requests"]')
      const secret = 'AKIAQ3EGRXJ2LZ7WPN4K'
      const email = 'ana.lopez@example.org'
      const eng = client(proxy, { 'X-AgentMesh-Team': 'eng', 'X-AgentMesh-User': 'ana' })
      await ask(eng, `deploy with ${secret} and mail ${email}`, 'gpt-4o')
      // held for approval, approved through the admin API while the client waits
      const ops = client(proxy, { 'X-AgentMesh-Team': 'ops', 'X-AgentMesh-User': 'bo' })
      const held = ask(ops, 'costly question', 'gpt-4o-expensive')
      const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }
      let pending: any[] = []
      await expect
        .poll(
          async () => {
            pending = (await (await fetch(`${proxy.url}/agentmesh/admin/approvals`, { headers: admin })).json())
              .approvals
            return pending.length
          },
          { timeout: 20_000 },
        )
        .toBe(1)
      expect(
        (
          await fetch(`${proxy.url}/agentmesh/admin/approvals/${pending[0].id}/approve`, {
            method: 'POST',
            headers: admin,
            body: '{}',
          })
        ).status,
      ).toBe(200)
      await held

      await page.locator('table.requests tbody tr').nth(1).waitFor({ timeout: 30_000 })
      const engId = (
        proxy.events.find((e) => e.type === 'request' && (e.data as any).identity.team === 'eng')!.data as any
      ).id as string
      await page.locator(`table.requests tr[data-id="${engId}"]`).click()
      const detail = page.locator('section.detail')
      await expect
        .poll(() => detail.locator('[data-field="route"]').textContent(), { timeout: 20_000 })
        .toContain('gpt-4o → openai/gpt-4o-mini')
      expect(await detail.locator('[data-field="route"]').textContent()).toContain('eng-on-mini')
      const guards = await detail.locator('[data-field="guards"] li').allTextContents()
      expect(
        guards.some((g) => /^secrets redacted: aws\S*×1 in messages\[0\]/.test(g)),
        guards.join(' | '),
      ).toBe(true)
      expect(
        guards.some((g) => g.startsWith('personal data masked: email×1')),
        guards.join(' | '),
      ).toBe(true)
      // the entry's sequence number, as the log file holds it for this request id
      await expect
        .poll(() => detail.locator('[data-field="audit"]').textContent(), { timeout: 20_000 })
        .toMatch(/^entry #\d+ in the audit log/)
      const auditText = (await detail.locator('[data-field="audit"]').textContent())!
      expect(auditText).toContain(engId)
      const logged = readFileSync(listLogFiles(join(proxy.dataDir, 'audit'))[0]!.path, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l))
        .find((r) => r.kind === 'request' && r.id === engId)
      expect(auditText).toContain(`#${logged.seq} `)

      const opsId = (
        proxy.events.find((e) => e.type === 'request' && (e.data as any).identity.team === 'ops')!.data as any
      ).id as string
      await page.locator(`table.requests tr[data-id="${opsId}"]`).click()
      await expect
        .poll(() => detail.locator('[data-field="guards"]').textContent(), { timeout: 20_000 })
        .toContain('approval granted by')
      expect(await detail.locator('[data-field="guards"]').textContent()).toContain(
        `approval ${pending[0].id} asked (rule pricey, hold)`,
      )
      expect(await detail.locator('[data-field="route"]').textContent()).toContain('the requested model')

      // kinds and counts only: neither the secret, the email nor the prompt is on the page
      const content = await page.content()
      for (const text of [secret, email, 'deploy with', 'costly question']) expect(content).not.toContain(text)
      await page.screenshot({ path: join(ARTIFACTS, 'request-detail-1280.png'), fullPage: true })
      await page.setViewportSize({ width: 390, height: 900 })
      await page.waitForTimeout(200)
      expect(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(0)
      await page.screenshot({ path: join(ARTIFACTS, 'request-detail-390.png'), fullPage: true })
      await page.setViewportSize({ width: 1280, height: 900 })

      // verify now after an in-place edit of the log: the page shows the failure and where
      await page.click('[data-view="audit"]')
      await page.click('button[data-action="verify"]')
      await page.locator('dl[data-verify="ok"]').waitFor({ timeout: 30_000 })
      const file = listLogFiles(join(proxy.dataDir, 'audit'))[0]!.path
      const log = readFileSync(file, 'utf8')
      expect(log).toContain('"team":"ops"')
      writeFileSync(file, log.replace('"team":"ops"', '"team":"eng"'))
      await page.click('button[data-action="verify"]')
      await page.locator('dl[data-verify="fail"]').waitFor({ timeout: 30_000 })
      expect(await page.locator('dl[data-verify] dd.s-bad').first().textContent()).toContain('FAIL: edited')
      expect(await page.locator('dl[data-verify] [data-field="problem"]').textContent()).toMatch(/\(seq \d+\)$/)
      await page.screenshot({ path: join(ARTIFACTS, 'audit-verify-fail-1280.png'), fullPage: true })
      expect((page as any).errors).toEqual([])
      await page.context().close()
    } finally {
      delete process.env.AGENTMESH_ADMIN_TOKEN
      await proxy.close()
      await mock.close()
    }
  })
})

describe('dashboard (team: authenticated events)', () => {
  it('asks for a token; a virtual key sees its own team only', async () => {
    clearVendorEnv()
    process.env.AGENTMESH_ADMIN_TOKEN = ADMIN
    const { mock, proxy } = await startMockAndProxy({
      config: {
        events: { access: 'authenticated' },
        trustIdentityHeaders: false,
        plugins: [virtualKeys({ required: true }), dashboard()],
      },
    })
    try {
      const mk = async (team: string) =>
        (
          await (
            await fetch(`${proxy.url}/agentmesh/admin/keys`, {
              method: 'POST',
              headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
              body: JSON.stringify({ team, user: `${team}-user` }),
            })
          ).json()
        ).key as string
      const engKey = await mk('eng')
      const opsKey = await mk('ops')
      const page = await open(proxy, 1280)
      await page.locator('form.login').waitFor()
      await page.fill('input[name="token"]', engKey)
      await page.click('form.login button')
      await page.locator('[data-connected="true"]').waitFor()
      await page.click('[data-view="requests"]')
      await ask(client(proxy, {}, engKey), 'eng asks')
      await ask(client(proxy, {}, opsKey), 'ops asks')
      await ask(client(proxy, {}, engKey), 'eng asks again')
      await page.locator('table.requests tbody tr').nth(1).waitFor()
      await page.waitForTimeout(300)
      const teams = await page.locator('table.requests tbody tr td:nth-child(2)').allTextContents()
      expect(teams).toEqual(['eng', 'eng'])
      expect(await page.content()).not.toContain(engKey)
      await page.screenshot({ path: join(ARTIFACTS, 'team-key-requests-1280.png') })
      await page.context().close()
    } finally {
      delete process.env.AGENTMESH_ADMIN_TOKEN
      await proxy.close()
      await mock.close()
    }
  })
})
