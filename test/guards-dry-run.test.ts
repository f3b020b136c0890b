// Dry runs with the official SDKs: a preview in the client's protocol (streamed too) with the
// governance headers the real call would carry, zero upstream calls, and nothing counted, cached,
// reserved or audited but the preview's own entry. POST /agentmesh/preview for any protocol's body.
import { readFileSync } from 'node:fs'
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { audit, listLogFiles, parseLine } from '../plugins/audit/index.ts'
import { breaker } from '../plugins/breaker/index.ts'
import { dryRun } from '../plugins/dry-run/index.ts'
import { exactCache } from '../plugins/exact-cache/index.ts'
import { normalise } from '../plugins/normalise/index.ts'
import { quota } from '../plugins/quota/index.ts'
import { anthropic } from '../plugins/vendors/anthropic.ts'
import { google } from '../plugins/vendors/google.ts'
import { openai } from '../plugins/vendors/openai.ts'
import { clearVendorEnv, postJson, startProxy, tempDir, until, type Proxy } from './helpers/core-harness.ts'
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'

const ADMIN = 'dry-run-admin-token-0123456'
const auth = { authorization: `Bearer ${ADMIN}` }
const DRY = { 'X-AgentMesh-Dry-Run': 'true', 'X-AgentMesh-Team': 'eng' }
const MESSAGES: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Name three prime numbers.' }]

let mock: MockUpstream
let proxy: Proxy
let auditDir: string

function requestEntries(): any[] {
  const out: any[] = []
  for (const f of listLogFiles(auditDir)) {
    for (const line of readFileSync(f.path, 'utf8').split('\n')) {
      const rec = line ? parseLine(line)?.record() : undefined
      if (rec?.kind === 'request') out.push(rec)
    }
  }
  return out
}

const state = async () => ({
  usage: {
    ...(await (await fetch(`${proxy.url}/agentmesh/admin/usage`, { headers: auth })).json()),
    generatedAt: undefined,
  },
  runs: await (await fetch(`${proxy.url}/agentmesh/admin/runs`, { headers: auth })).json(),
})

const oa = (headers: Record<string, string> = {}) =>
  new OpenAI({
    baseURL: `${proxy.url}/v1`,
    apiKey: 'sk-client',
    maxRetries: 0,
    defaultHeaders: { 'X-AgentMesh-Team': 'eng', ...headers },
  })

describe('dry-run', () => {
  beforeAll(async () => {
    clearVendorEnv()
    mock = await startMockUpstream()
    auditDir = tempDir('agentmesh-dry-audit-')
    proxy = await startProxy({
      plugins: [
        dryRun(),
        breaker({ adminToken: ADMIN }),
        quota({ adminToken: ADMIN, limits: { teams: { eng: { tokensPerDay: 20_000 }, tiny: { tokensPerDay: 10 } } } }),
        normalise(),
        exactCache(),
        audit({ dir: auditDir, checkpointSeconds: 0 }),
        openai({ baseURL: mock.url, apiKey: 'sk-test-openai' }),
        anthropic({ baseURL: mock.url, apiKey: 'sk-ant-test' }),
        google({ baseURL: mock.url, apiKey: 'AIza-test' }),
      ],
    })
  })
  afterAll(async () => {
    await proxy.close()
    await mock.close()
  })

  it('previews a call without reaching the vendor, counting, reserving or caching anything; one audit entry of its own', async () => {
    const before = await state()
    const entries = requestEntries().length
    const { data, response } = await oa(DRY)
      .chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 50, messages: MESSAGES })
      .withResponse()
    expect(response.status).toBe(200)
    expect(data.choices[0]!.message.content).toMatch(/^Preview: this request would go to openai as gpt-4o-mini\./)
    expect(data.choices[0]!.message.content).toMatch(/up to 50 output tokens/)
    const h = response.headers
    expect(h.get('x-agentmesh-dry-run')).toBe('true')
    expect(h.get('x-agentmesh-would')).toBe('vendor')
    expect(h.get('x-agentmesh-cache')).toBe('miss')
    expect(h.get('x-agentmesh-vendor')).toBe('openai')
    expect(h.get('x-agentmesh-route')).toBe('openai/gpt-4o-mini')
    expect(h.get('x-agentmesh-usage')).toBe('estimated')
    expect(Number(h.get('x-agentmesh-tokens'))).toBeGreaterThan(0)
    expect(Number(h.get('x-agentmesh-cost-usd'))).toBeGreaterThan(0)
    // the quota percentage after the call, and the run it would be the first call of
    expect(Number(h.get('x-agentmesh-quota-pct'))).toBeGreaterThan(0)
    expect(h.get('x-agentmesh-run-calls')).toBe('1')
    expect(mock.received).toHaveLength(0)
    expect(await state()).toEqual(before)
    await until(() => requestEntries().length === entries + 1, 'the preview audit entry')
    expect(requestEntries().at(-1)).toMatchObject({ dryRun: { outcome: 'vendor', guards: [] }, status: 200 })
    expect(proxy.events.filter((e) => e.type === 'dry_run')).toHaveLength(1)
    // no vendor was called, so no llm_call (the dashboard and metrics count calls from it)
    expect(proxy.events.filter((e) => e.type === 'llm_call')).toHaveLength(0)

    // the real call then goes upstream once, as if no preview had been made (not a cache hit)
    const real = await oa()
      .chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 50, messages: MESSAGES })
      .withResponse()
    expect(real.response.headers.get('x-agentmesh-cache')).toBe('miss')
    expect(mock.received).toHaveLength(1)
  })

  it('says a would-be cache hit as the hit would, and leaves the entry and counters alone', async () => {
    await until(() => requestEntries().length >= 2, 'the real call audited')
    const before = await state()
    const entries = requestEntries().length
    const { data, response } = await oa(DRY)
      .chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 50, messages: MESSAGES })
      .withResponse()
    expect(response.headers.get('x-agentmesh-cache')).toBe('exact')
    expect(Number(response.headers.get('x-agentmesh-tokens-saved'))).toBeGreaterThan(0)
    expect(response.headers.get('x-agentmesh-tokens')).toBe('0')
    expect(response.headers.get('x-agentmesh-would')).toBe('cache')
    expect(data.choices[0]!.message.content).toMatch(
      /^Preview: this request would be answered from the exact cache, saving \d+ tokens/,
    )
    expect(mock.received).toHaveLength(1)
    expect(await state()).toEqual(before)
    await until(() => requestEntries().length === entries + 1, 'the preview audit entry')
    // the cached answer is still the vendor's
    const hit = await oa().chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 50, messages: MESSAGES })
    expect(hit.choices[0]!.message.content).toMatch(/^mock answer to: Name three prime numbers\./)
    expect(mock.received).toHaveLength(1)
  })

  it('streams the preview to an Anthropic SDK client that asked to stream', async () => {
    const c = new Anthropic({ baseURL: proxy.url, apiKey: 'sk-ant-client', maxRetries: 0, defaultHeaders: DRY })
    const stream = c.messages.stream({
      model: 'claude-haiku-4-5',
      max_tokens: 64,
      messages: [{ role: 'user', content: 'Stream me something.' }],
    })
    let text = ''
    stream.on('text', (t) => (text += t))
    const final = await stream.finalMessage()
    expect(text).toMatch(/^Preview: this request would go to anthropic as claude-haiku-4-5\./)
    expect(final.content[0]).toMatchObject({ type: 'text' })
    expect(mock.received).toHaveLength(1)
  })

  it('names the guard that would refuse it, still answering 200 and still spending nothing', async () => {
    const before = await state()
    const { data, response } = await oa({ ...DRY, 'X-AgentMesh-Team': 'tiny' })
      .chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES })
      .withResponse()
    expect(response.status).toBe(200)
    expect(response.headers.get('x-agentmesh-would-block')).toBe('quota 429 quota_exceeded')
    expect(response.headers.get('retry-after')).toMatch(/^\d+$/)
    expect(data.choices[0]!.message.content).toMatch(
      /^Preview: this request would be refused by quota \(429 quota_exceeded\): quota exceeded: team "tiny"/,
    )
    expect(mock.received).toHaveLength(1)
    expect(await state()).toEqual(before)
    expect(proxy.events.filter((e) => e.type === 'quota_block')).toEqual([])
  })

  it("POST /agentmesh/preview: any protocol's body, answered as JSON", async () => {
    const a = await postJson(
      `${proxy.url}/agentmesh/preview`,
      {
        model: 'claude-haiku-4-5',
        max_tokens: 100,
        system: 'Be brief.',
        messages: [{ role: 'user', content: 'Hello' }],
      },
      { 'x-agentmesh-team': 'eng' },
    )
    expect(a.status).toBe(200)
    const pa = await a.json()
    expect(pa).toMatchObject({
      dryRun: true,
      protocol: 'anthropic',
      outcome: 'vendor',
      route: { vendor: 'anthropic', model: 'claude-haiku-4-5' },
      cache: { status: 'miss' },
      estimate: { maxOutputTokens: 100 },
      guards: [],
    })
    expect(pa.text).toMatch(/^Preview: /)
    expect(pa.headers['x-agentmesh-dry-run']).toBe('true')
    expect(pa.headers['x-agentmesh-quota-pct']).toMatch(/^\d+\.\d$/)
    expect(a.headers.get('x-agentmesh-cache')).toBe('miss')

    const g = await postJson(`${proxy.url}/agentmesh/preview?model=gemini-2.5-flash`, {
      contents: [{ role: 'user', parts: [{ text: 'Hi' }] }],
    })
    expect(g.status).toBe(200)
    expect(await g.json()).toMatchObject({ protocol: 'gemini', route: { vendor: 'google', model: 'gemini-2.5-flash' } })

    // another user of the team (for the one who just got the hit, the same request again is a retry)
    const o = await postJson(
      `${proxy.url}/agentmesh/preview`,
      { model: 'gpt-4o-mini', max_tokens: 50, messages: MESSAGES, stream: true },
      { 'x-agentmesh-team': 'eng', 'x-agentmesh-user': 'bob' },
    )
    expect(await o.json()).toMatchObject({ protocol: 'openai', outcome: 'cache', cache: { status: 'exact' } })

    const bad = await postJson(`${proxy.url}/agentmesh/preview`, { hello: 1 })
    expect(bad.status).toBe(400)
    expect((await bad.json()).error.message).toMatch(/protocol/)
    const gemNoModel = await postJson(`${proxy.url}/agentmesh/preview`, { contents: [] })
    expect(gemNoModel.status).toBe(400)
    expect(mock.received).toHaveLength(1)
  })

  it("refuses a malformed X-AgentMesh-Dry-Run value in the client's protocol, without calling the vendor", async () => {
    const err = await oa({ 'X-AgentMesh-Dry-Run': 'maybe' })
      .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'other' }] })
      .catch((e) => e)
    expect(err.status).toBe(400)
    expect(err.error.message).toMatch(/x-agentmesh-dry-run must be true or false/)
    expect(mock.received).toHaveLength(1)
  })
})
