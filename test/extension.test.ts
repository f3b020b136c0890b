// The browser extension (issue 19) in Debian's chromium (playwright-core, headless), loaded
// unpacked from the project's own build, against a live AgentMesh (the demo preset, in-process)
// and local HTTPS stand-ins for chatgpt.com (a textarea), claude.ai (a ProseMirror-style
// contenteditable) and gemini.google.com (a Quill editor). Typing shows the proxy's estimate and
// any guard that would act; a prompt asked before shows `asked before` and its cached answer; the
// popup's figures survive a service-worker stop; the opt-in redirect sends a page's own fetch of
// api.openai.com / api.anthropic.com through the proxy (the audit log names the site); a virtual
// key from the options decides the identity; a silent or stopped proxy shows the offline line
// within 2 s and typing and sending go on. Screenshots go to test/artifacts/extension/.
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MeshEvent } from '../core/types.ts'
import { listLogFiles, parseLine } from '../plugins/audit/index.ts'
import { clearVendorEnv, startProxy, type Proxy } from './helpers/core-harness.ts'
import {
  buildExtension,
  type BuiltExtension,
  type ExtensionBrowser,
  launchWithExtension,
  typecheckExtension,
} from './helpers/extension-browser.ts'
import { type Sites, startSites } from './helpers/extension-sites.ts'

const ARTIFACTS = join(import.meta.dirname, 'artifacts', 'extension')
/** the id the committed public key (manifest `key`) gives; extension/README.md names it */
const EXTENSION_ID = 'maolnfhlbdfjbckphcpmoammcbmcaepe'
const ADMIN = 'extension-test-admin-token-0123456789'
const PROMPT = 'Explain the difference between a mutex and a semaphore, with one example each'

let ext: BuiltExtension
let sites: Sites
let proxy: Proxy
let browser: ExtensionBrowser
let proxyClosed = false
let typecheck: Promise<string>

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true })
  clearVendorEnv()
  // the demo preset's virtual keys get an admin API with it
  process.env.AGENTMESH_ADMIN_TOKEN = ADMIN
  // the type check runs while the rest starts; the first test reads its verdict
  typecheck = typecheckExtension()
  ext = buildExtension()
  sites = await startSites()
  // the browser starts while the proxy loads; whichever fails, the other is still closed in afterAll
  const [b, p] = await Promise.allSettled([
    launchWithExtension(ext, sites.port),
    startProxy({ preset: 'demo' }, { features: true }),
  ])
  if (b.status === 'fulfilled') browser = b.value
  if (p.status === 'fulfilled') proxy = p.value
  if (b.status === 'rejected') throw b.reason
  if (p.status === 'rejected') throw p.reason
  await warm(proxy)
  await configure({ proxyUrl: proxy.url, user: 'ana', team: 'eng', redirect: true })
}, 120_000)

/**
 * A proxy just started is still loading the semantic cache's sentence model, and a preview waits
 * for it (up to its lookup timeout): the overlay would rightly say "no answer". The tests start
 * with a proxy that has been up a while, as a user's would be.
 */
async function warm(p: Proxy): Promise<void> {
  const deadline = Date.now() + 60_000
  for (let i = 0; Date.now() < deadline; i++) {
    const t = Date.now()
    const res = await fetch(`${p.url}/agentmesh/preview`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: `warm-up ${i}` }] }),
    })
    await res.arrayBuffer()
    if (res.ok && Date.now() - t < 300) return
  }
  throw new Error("the proxy's previews stayed slow for 60 s")
}

afterAll(async () => {
  delete process.env.AGENTMESH_ADMIN_TOKEN
  await browser?.close()
  if (!proxyClosed) await proxy?.close()
  await sites?.close()
  ext?.cleanup()
})

/** the options page, as a user fills it in (one page, kept open, as a user would keep the tab) */
let optionsPage: Page | undefined
async function configure(values: {
  proxyUrl?: string
  user?: string
  team?: string
  key?: string
  redirect?: boolean
  geminiModel?: string
}): Promise<void> {
  if (!optionsPage || optionsPage.isClosed()) optionsPage = await browser.open('options.html')
  const page = optionsPage
  // the form shows what is stored once the page has read it
  await page.locator('form[data-loaded="true"]').waitFor({ timeout: 5000 })
  if (values.proxyUrl !== undefined) await page.fill('input[name="proxyUrl"]', values.proxyUrl)
  if (values.geminiModel !== undefined) await page.fill('input[name="model-gemini"]', values.geminiModel)
  if (values.user !== undefined) await page.fill('input[name="user"]', values.user)
  if (values.team !== undefined) await page.fill('input[name="team"]', values.team)
  if (values.key !== undefined) await page.fill('input[name="key"]', values.key)
  if (values.redirect !== undefined) await page.setChecked('input[name="redirect"]', values.redirect)
  await page.locator('#saved').evaluate((o) => {
    o.textContent = ''
  })
  await page.click('button[type="submit"]')
  await page.locator('#saved', { hasText: 'Saved.' }).waitFor({ timeout: 5000 })
}

/** most of it at once, the last keys one by one: the overlay waits for the typing to pause */
async function typeInto(page: Page, selector: string, text: string): Promise<void> {
  await page.click(selector)
  await page.keyboard.insertText(text.slice(0, -4))
  await page.keyboard.type(text.slice(-4))
}

const field = (page: Page, name: string) => page.locator(`agentmesh-overlay [data-field="${name}"]`)

async function site(host: string): Promise<Page> {
  const page = await browser.context.newPage()
  await page.goto(`https://${host}/`)
  return page
}

function auditRecords(): any[] {
  const dir = join(proxy.dataDir, 'audit')
  if (!existsSync(dir)) return []
  return listLogFiles(dir)
    .flatMap((f) => readFileSync(f.path, 'utf8').split('\n').filter(Boolean))
    .map((l) => parseLine(l)!.record())
}

describe('browser extension', () => {
  it('type-checks, and is built with a fixed id from the manifest key, generated icons and a store zip', async () => {
    expect(await typecheck).toBe('')
    expect(browser.id).toBe(EXTENSION_ID)
    for (const size of [16, 32, 48, 128]) {
      const png = readFileSync(join(ext.dir, 'icons', `${size}.png`))
      expect(png.subarray(1, 4).toString()).toBe('PNG')
      expect(png.readUInt32BE(16)).toBe(size)
    }
    const zip = readFileSync(ext.zip)
    expect(zip.subarray(0, 2).toString()).toBe('PK')
    for (const f of ['manifest.json', 'background.js', 'content.js', 'popup.html', 'options.html', 'icons/128.png'])
      expect(zip.includes(Buffer.from(f))).toBe(true)
  })

  it('typing into a textarea (chatgpt.com) shows the estimate, the cache status and the team quota', {
    timeout: 30_000,
  }, async () => {
    const page = await site('chatgpt.com')
    await typeInto(page, '#prompt-textarea', PROMPT)
    await expect
      .poll(() => field(page, 'estimate').textContent(), { timeout: 5000 })
      .toMatch(/^≈ \d+ tokens · \$[\d.]+ input · gpt-4o$/)
    expect(await field(page, 'cache').textContent()).toBe('asked before: new')
    expect(await field(page, 'quota').textContent()).toMatch(/^team eng · user ana · quota [\d.]+% used after this$/)
    // the panel sits above the input box, outside the page's layout
    const box = (await page.locator('#prompt-textarea').boundingBox())!
    const panel = (await page.locator('agentmesh-overlay').boundingBox())!
    expect(panel.y + panel.height).toBeLessThanOrEqual(box.y)
    // the preview came from the worker with the identity headers
    const dry = proxy.events.filter((e) => e.type === 'dry_run').at(-1) as MeshEvent<'dry_run'>
    expect(dry.data.identity).toMatchObject({ tool: 'browser-chatgpt', team: 'eng', user: 'ana' })
    expect(dry.data.outcome).toBe('vendor')
    await page.screenshot({ path: join(ARTIFACTS, 'overlay-textarea.png') })
    await page.close()
  })

  it('works in a contenteditable editor (claude.ai) and finds the new one after an in-page navigation', {
    timeout: 30_000,
  }, async () => {
    const page = await site('claude.ai')
    await typeInto(page, '.ProseMirror', 'Write a haiku about rate limits')
    await expect
      .poll(() => field(page, 'estimate').textContent(), { timeout: 5000 })
      .toMatch(/tokens · .* · claude-sonnet-4-5$/)
    const first = await field(page, 'estimate').textContent()
    // the single-page app replaces its editor: the overlay follows the new one
    await page.click('#new-chat')
    await expect.poll(() => page.locator('agentmesh-overlay').getAttribute('data-visible')).toBe('false')
    await typeInto(
      page,
      '.ProseMirror',
      'Write a much longer poem, in twelve stanzas, about the history of rate limiting on public APIs',
    )
    await expect.poll(() => field(page, 'estimate').textContent(), { timeout: 5000 }).not.toBe(first)
    expect(page.url()).toMatch(/\/c\/\d+$/)
    const dry = proxy.events.filter((e) => e.type === 'dry_run').at(-1) as MeshEvent<'dry_run'>
    expect(dry.data.identity.tool).toBe('browser-claude')
    await page.screenshot({ path: join(ARTIFACTS, 'overlay-contenteditable.png') })
    await page.close()
  })

  it("works in Gemini's Quill editor, and names the guard that would hold the prompt", {
    timeout: 30_000,
  }, async () => {
    const page = await site('gemini.google.com')
    await typeInto(page, '.ql-editor', 'Plan a three-day trip to Lisbon')
    await expect
      .poll(() => field(page, 'estimate').textContent(), { timeout: 5000 })
      .toMatch(/tokens · .* · gemini-2\.5-flash$/)
    expect(await field(page, 'guard').count()).toBe(0)
    await page.close()

    // the demo preset holds any model named "*expensive*" for a person's approval
    await configure({ geminiModel: 'gemini-2.5-expensive' })
    const again = await site('gemini.google.com')
    await typeInto(again, '.ql-editor', 'Plan a three-day trip to Lisbon')
    await expect
      .poll(() => field(again, 'guard').textContent(), { timeout: 5000 })
      .toMatch(/^would be held by approval: .+/)
    const dry = proxy.events.filter((e) => e.type === 'dry_run').at(-1) as MeshEvent<'dry_run'>
    expect(dry.data).toMatchObject({ outcome: 'held', identity: { tool: 'browser-gemini' } })
    await again.screenshot({ path: join(ARTIFACTS, 'overlay-held.png') })
    await again.close()
    await configure({ geminiModel: 'gemini-2.5-flash' })
  })

  it("the opt-in redirect sends a page's fetch of api.openai.com (and api.anthropic.com) through the proxy, with the identity headers", {
    timeout: 30_000,
  }, async () => {
    // a public site calling a loopback proxy: Chrome asks the user once to allow local network
    // access for the site (headless, nobody answers, so the test answers as the user would)
    await browser.context.grantPermissions(['local-network-access'], { origin: 'https://chatgpt.com' })
    const page = await site('chatgpt.com')
    const res = await page.evaluate(
      ([p]) => (window as any).callOpenAI(p, 'sk-page-own-key').catch((e: Error) => ({ status: 0, error: e.message })),
      [PROMPT],
    )
    expect(sites.apiHits).toEqual([])
    expect(res.status).toBe(200)
    expect(JSON.parse(res.body).choices[0].message.content).toBeTruthy()
    expect(res.headers['x-agentmesh-cache']).toBe('miss')
    // what the browser sent first: a preflight with Origin: null, granted
    const asked =
      'content-type, authorization, x-api-key, anthropic-version, x-agentmesh-tool, x-agentmesh-user, x-agentmesh-team'
    const pre = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { origin: 'null', 'access-control-request-method': 'POST', 'access-control-request-headers': asked },
    })
    expect(pre.status).toBe(204)
    expect(pre.headers.get('access-control-allow-origin')).toBe('null')
    expect(pre.headers.get('access-control-allow-headers')).toBe(asked)
    // the page can read the governance headers (the proxy exposes them to the `null` origin)
    const id = res.headers['x-agentmesh-request-id']
    expect(id).toBeTruthy()
    await expect
      .poll(() => auditRecords().some((r) => r.kind === 'request' && r.id === id), { timeout: 5000 })
      .toBe(true)
    const entry = auditRecords().find((r) => r.kind === 'request' && r.id === id)
    expect(entry.identity).toMatchObject({ tool: 'browser-chatgpt', team: 'eng', user: 'ana' })

    // and api.anthropic.com, from claude.ai
    await browser.context.grantPermissions(['local-network-access'], { origin: 'https://claude.ai' })
    const claude = await site('claude.ai')
    const msg = await claude.evaluate(() =>
      (window as any)
        .callAnthropic('Name three prime numbers', 'sk-ant-page-own-key')
        .catch((e: Error) => ({ status: 0, error: e.message })),
    )
    expect(sites.apiHits).toEqual([])
    expect(msg.status).toBe(200)
    expect(JSON.parse(msg.body).type).toBe('message')
    const anthropicId = msg.headers['x-agentmesh-request-id']
    await expect
      .poll(() => auditRecords().some((r) => r.kind === 'request' && r.id === anthropicId), { timeout: 5000 })
      .toBe(true)
    expect(auditRecords().find((r) => r.kind === 'request' && r.id === anthropicId).identity).toMatchObject({
      tool: 'browser-claude',
      team: 'eng',
      user: 'ana',
    })
    await claude.close()
    await page.close()
  })

  it('a prompt asked before shows `asked before: exact` and its cached answer, without a vendor call', {
    timeout: 30_000,
  }, async () => {
    const page = await site('chatgpt.com')
    await typeInto(page, '#prompt-textarea', PROMPT)
    await expect
      .poll(() => field(page, 'cache').textContent(), { timeout: 5000 })
      .toMatch(/^asked before: exact · would save \d+ tokens \(\$[\d.]+\)$/)
    const before = proxy.events.filter((e) => e.type === 'response').length
    await page.click('agentmesh-overlay [data-action="show-cached"]')
    await expect.poll(() => field(page, 'answer').getAttribute('data-cache'), { timeout: 5000 }).toBe('exact')
    expect((await field(page, 'answer').textContent())!.length).toBeGreaterThan(0)
    await page.screenshot({ path: join(ARTIFACTS, 'overlay-asked-before.png') })
    // the cached answer was a real request through the proxy, named for the site, answered by the cache
    await expect.poll(() => proxy.events.filter((e) => e.type === 'response').length).toBeGreaterThan(before)
    const res = proxy.events.filter((e) => e.type === 'response').at(-1) as MeshEvent<'response'>
    expect(res.data).toMatchObject({
      cache: 'exact',
      status: 200,
      identity: { tool: 'browser-chatgpt', team: 'eng', user: 'ana' },
    })
    // sending still works as the page does it; the extension counts it
    await page.keyboard.press('Enter')
    await expect.poll(() => page.evaluate(() => (window as any).sent)).toEqual([PROMPT])
    // the page emptied its box: the panel goes away until the next prompt
    await expect.poll(() => page.locator('agentmesh-overlay').getAttribute('data-visible')).toBe('false')
    await page.close()
  })

  it("the popup shows today's figures, and they survive a service-worker stop", { timeout: 30_000 }, async () => {
    const read = async (popup: Page) =>
      Object.fromEntries(
        await Promise.all(
          ['prompts', 'asked-before', 'cache-hits', 'saved-tokens', 'saved-usd', 'budget-left'].map(async (m) => [
            m,
            await popup.locator(`[data-metric="${m}"] dd`).textContent(),
          ]),
        ),
      )
    let popup = await browser.open('popup.html')
    await expect.poll(() => popup.locator('#state').getAttribute('data-connected')).toBe('true')
    const figures = await read(popup)
    expect(figures).toMatchObject({ prompts: '1', 'asked-before': '1', 'cache-hits': '1' })
    expect(Number(figures['saved-tokens'].replace(/,/g, ''))).toBeGreaterThan(0)
    expect(figures['saved-usd']).toMatch(/^\$\d/)
    expect(figures['budget-left']).toMatch(/^[\d.]+%$/)
    expect(await popup.locator('#dashboard').getAttribute('href')).toBe(`${proxy.url}/agentmesh/`)
    await popup.locator('body').screenshot({ path: join(ARTIFACTS, 'popup.png') })
    await popup.close()

    await browser.stopWorkers()
    popup = await browser.open('popup.html')
    // the popup's message wakes the worker; the figures come from chrome.storage.local
    await expect.poll(() => popup.locator('#state').getAttribute('data-connected'), { timeout: 10_000 }).toBe('true')
    expect(await read(popup)).toEqual(figures)
    await popup.close()
  })

  it("with a virtual key in the options the key decides team and user; a wrong key shows the proxy's refusal", {
    timeout: 30_000,
  }, async () => {
    const created = await fetch(`${proxy.url}/agentmesh/admin/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ team: 'keyteam', user: 'kim' }),
    })
    expect(created.status).toBe(201)
    const { key } = (await created.json()) as { key: string }
    try {
      await configure({ key })
      let page = await site('chatgpt.com')
      await typeInto(page, '#prompt-textarea', 'who am I to the proxy')
      await expect
        .poll(() => field(page, 'quota').textContent(), { timeout: 5000 })
        .toMatch(/^team keyteam · user kim · /)
      const dry = proxy.events.filter((e) => e.type === 'dry_run').at(-1) as MeshEvent<'dry_run'>
      expect(dry.data.identity).toMatchObject({ team: 'keyteam', user: 'kim', tool: 'browser-chatgpt' })
      await page.close()

      await configure({ key: 'am-this-key-was-never-issued' })
      page = await site('chatgpt.com')
      await typeInto(page, '#prompt-textarea', 'and now?')
      await expect
        .poll(() => field(page, 'error').textContent(), { timeout: 5000 })
        .toMatch(/^AgentMesh refused the preview \(401\): .*virtual key/)
      await page.close()
    } finally {
      await configure({ key: '' })
    }
  })

  it('a proxy without the dry-run plugin: the overlay says what to add', { timeout: 30_000 }, async () => {
    const bare = await startProxy({})
    try {
      await configure({ proxyUrl: bare.url })
      const page = await site('chatgpt.com')
      await typeInto(page, '#prompt-textarea', 'hello')
      await expect
        .poll(() => field(page, 'error').textContent(), { timeout: 5000 })
        .toBe(`AgentMesh at ${bare.url} has no preview: add the dry-run plugin (dryRun()) to its config`)
      await page.close()
    } finally {
      await configure({ proxyUrl: proxy.url })
      await bare.close()
    }
  })

  it('a silent proxy, then a stopped one, show the offline line within 2 s; typing and sending go on', {
    timeout: 30_000,
  }, async () => {
    // a proxy that accepts the connection and never answers
    const sockets: Socket[] = []
    const silent: Server = createServer((s) => {
      sockets.push(s)
    })
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()))
    const silentUrl = `http://127.0.0.1:${(silent.address() as { port: number }).port}`
    try {
      await configure({ proxyUrl: silentUrl })
      const page = await site('chatgpt.com')
      await typeInto(page, '#prompt-textarea', 'is anyone there')
      const typed = Date.now()
      await field(page, 'offline').waitFor({ timeout: 5000 })
      // the debounce (300 ms) plus at most 2 s
      expect(Date.now() - typed).toBeLessThan(2300)
      expect(await field(page, 'offline').textContent()).toBe(`AgentMesh offline: no answer from ${silentUrl}`)
      await page.screenshot({ path: join(ARTIFACTS, 'overlay-offline.png') })
      await page.close()
    } finally {
      for (const s of sockets) s.destroy()
      silent.close()
    }

    await configure({ proxyUrl: proxy.url })
    await proxy.close()
    proxyClosed = true
    const page = await site('chatgpt.com')
    await typeInto(page, '#prompt-textarea', 'and now?')
    const typed = Date.now()
    await field(page, 'offline').waitFor({ timeout: 5000 })
    expect(Date.now() - typed).toBeLessThan(2300)
    expect(await field(page, 'offline').textContent()).toBe(`AgentMesh offline: cannot reach ${proxy.url}`)
    expect(await page.inputValue('#prompt-textarea')).toBe('and now?')
    const prompts = async () => {
      const popup = await browser.open('popup.html')
      await expect.poll(() => popup.locator('#state').getAttribute('data-connected'), { timeout: 5000 }).toBe('false')
      const n = Number(await popup.locator('[data-metric="prompts"] dd').textContent())
      return { popup, n }
    }
    const before = await prompts()
    await before.popup.close()
    await page.keyboard.press('Enter')
    await expect.poll(() => page.evaluate(() => (window as any).sent)).toEqual(['and now?'])
    await page.close()
    // the popup says the proxy is offline, and the send above still counted
    const after = await prompts()
    expect(await after.popup.locator('#state').textContent()).toBe('offline')
    expect(await after.popup.locator('#proxy').textContent()).toBe(`AgentMesh offline: cannot reach ${proxy.url}`)
    expect(after.n).toBe(before.n + 1)
    await after.popup.locator('body').screenshot({ path: join(ARTIFACTS, 'popup-offline.png') })
    await after.popup.close()
  })
})
