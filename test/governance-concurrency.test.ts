// Budgets under load: 200 concurrent requests (official OpenAI SDK) against a team budget that fits
// exactly 50 reservations, with one proxy, one proxy on redis, and two proxies sharing one
// redis-server. The mock vendor answers slowly (so every reservation is attempted before any
// settles) and reports the worst case usage: the exact prompt tokens and all of max_tokens.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { computeChatCompletionTokenCount, type ChatCompletionRequest } from 'gpt-tokenizer/functionCalling'
import { countTokens as o200k } from 'gpt-tokenizer/encoding/o200k_base'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import type { MeshConfig } from '../core/types.ts'
import { quota } from '../plugins/quota/index.ts'
import { openai } from '../plugins/vendors/openai.ts'
import { clearVendorEnv, startProxy, type Proxy } from './helpers/core-harness.ts'

// gpt-tokenizer's own rendering of OpenAI's chat-format rule (3 per message + role, 3 to prime)
const countChatCompletionTokens = (r: ChatCompletionRequest) => computeChatCompletionTokenCount(r, (t) => o200k(t))
const ADMIN = 'concurrency-admin-token-0123'
const PROMPT = 'Summarise the quarterly budget report in three bullet points.'
const MAX_TOKENS = 100
const N = 200
const FITS = 50

interface Mock {
  url: string
  server: Server
  extraPromptTokens: number
  calls: number
}

/** OpenAI-compatible upstream: answers after delayMs with prompt_tokens = the exact chat count (+ extra) and completion_tokens = max_tokens. */
async function startVendor(delayMs: number): Promise<Mock> {
  const mock: Mock = { url: '', server: undefined as unknown as Server, extraPromptTokens: 0, calls: 0 }
  mock.server = createServer((req, res) => {
    let raw = ''
    req.on('data', (c) => (raw += c))
    req.on('end', () => {
      mock.calls++
      const body = JSON.parse(raw)
      const prompt = countChatCompletionTokens({ messages: body.messages }) + mock.extraPromptTokens
      setTimeout(() => {
        const out = JSON.stringify({
          id: 'chatcmpl-x',
          object: 'chat.completion',
          created: 1,
          model: body.model,
          choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'length' }],
          usage: { prompt_tokens: prompt, completion_tokens: body.max_tokens, total_tokens: prompt + body.max_tokens },
        })
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) })
        res.end(out)
      }, delayMs)
    })
  })
  mock.server.keepAliveTimeout = 30_000
  await new Promise<void>((r) => mock.server.listen(0, '127.0.0.1', r))
  mock.url = `http://127.0.0.1:${(mock.server.address() as AddressInfo).port}`
  return mock
}

// the reservation of one request: exact input + max_tokens (what the proxy must compute too)
const RESERVATION = countChatCompletionTokens({ messages: [{ role: 'user', content: PROMPT }] }) + MAX_TOKENS
const LIMIT = FITS * RESERVATION

async function proxyFor(mock: Mock, storage: MeshConfig['storage']): Promise<Proxy> {
  return startProxy({
    preset: 'solo',
    storage,
    plugins: [
      openai({ baseURL: mock.url, apiKey: 'sk-test' }),
      quota({ adminToken: ADMIN, limits: { teams: { eng: { tokensPerDay: LIMIT } } } }),
    ],
  })
}

async function burst(proxies: Proxy[]): Promise<{ ok: number; blocked: number; other: string[] }> {
  const clients = proxies.map(
    (p) =>
      new OpenAI({
        baseURL: `${p.url}/v1`,
        apiKey: 'sk-client',
        maxRetries: 0,
        timeout: 30_000,
        defaultHeaders: { 'X-AgentMesh-Team': 'eng', 'X-AgentMesh-User': 'load' },
      }),
  )
  const results = await Promise.all(
    Array.from({ length: N }, (_, i) =>
      clients[i % clients.length]!.chat.completions.create({
        model: 'gpt-4o-mini',
        max_tokens: MAX_TOKENS,
        messages: [{ role: 'user', content: PROMPT }],
      }).then(
        () => 'ok',
        (e) =>
          e?.status === 429 && e?.error?.type === 'quota_exceeded' ? 'blocked' : `other: ${e?.status} ${e?.message}`,
      ),
    ),
  )
  return {
    ok: results.filter((r) => r === 'ok').length,
    blocked: results.filter((r) => r === 'blocked').length,
    other: results.filter((r) => r.startsWith('other')),
  }
}

async function used(proxy: Proxy): Promise<number> {
  const res = await fetch(`${proxy.url}/agentmesh/admin/usage`, { headers: { authorization: `Bearer ${ADMIN}` } })
  const report = await res.json()
  return report.scopes.find((s: any) => s.scope === 'team:eng')?.day.tokens ?? 0
}

/** afterResponse runs after the body is sent: wait until every request has settled */
async function settled(proxy: Proxy, expected: number) {
  const end = Date.now() + 5000
  let v = await used(proxy)
  while (v !== expected && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 25))
    v = await used(proxy)
  }
  return v
}

function report(name: string, r: { ok: number; blocked: number }, total: number) {
  // measured numbers for the issue note
  console.log(
    `[governance] ${name}: ${r.ok}/${N} succeeded, ${r.blocked} got 429; limit ${LIMIT} tokens (${FITS} x ${RESERVATION}), used ${total}, overspend ${total - LIMIT} tokens (${((total - LIMIT) / RESERVATION).toFixed(2)} reservations)`,
  )
}

describe('200 concurrent requests against a budget that fits 50', () => {
  let mock: Mock
  const redisUrl = inject('redisUrl')
  beforeAll(async () => {
    clearVendorEnv()
    mock = await startVendor(400)
  })
  afterAll(async () => {
    mock.server.closeAllConnections()
    await new Promise((r) => mock.server.close(r))
  })

  it('one proxy, in-process counters: exactly 50 succeed, no overspend', async () => {
    const proxy = await proxyFor(mock, { driver: 'memory' })
    try {
      const r = await burst([proxy])
      expect(r.other).toEqual([])
      expect(r.ok).toBe(FITS)
      expect(r.blocked).toBe(N - FITS)
      const total = await settled(proxy, FITS * RESERVATION)
      report('one proxy (memory)', r, total)
      expect(total).toBe(FITS * RESERVATION)
      expect(total - LIMIT).toBeLessThanOrEqual(RESERVATION)
    } finally {
      await proxy.close()
    }
  })

  it('one proxy on redis: exactly 50 succeed, no overspend', async () => {
    const proxy = await proxyFor(mock, { driver: 'redis', url: redisUrl, prefix: `conc1-${process.pid}-${Date.now()}` })
    try {
      const r = await burst([proxy])
      expect(r.other).toEqual([])
      expect(r.ok).toBe(FITS)
      const total = await settled(proxy, FITS * RESERVATION)
      report('one proxy (redis)', r, total)
      expect(total - LIMIT).toBeLessThanOrEqual(RESERVATION)
      expect(total).toBe(FITS * RESERVATION)
    } finally {
      await proxy.close()
    }
  })

  it('two proxies on one redis-server share the budget: exactly 50 succeed in total', async () => {
    const storage = { driver: 'redis' as const, url: redisUrl, prefix: `conc2-${process.pid}-${Date.now()}` }
    const a = await proxyFor(mock, storage)
    const b = await proxyFor(mock, storage)
    try {
      const calls = mock.calls
      const r = await burst([a, b])
      expect(r.other).toEqual([])
      expect(r.ok).toBe(FITS)
      expect(mock.calls - calls).toBe(FITS)
      const total = await settled(a, FITS * RESERVATION)
      expect(await used(b)).toBe(total)
      report('two proxies (one redis)', r, total)
      expect(total).toBe(FITS * RESERVATION)
      expect(total - LIMIT).toBeLessThanOrEqual(RESERVATION)
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('when the vendor bills more input than estimated, the overspend is exactly that error per admitted request', async () => {
    // the proxy's OpenAI count is exact; this simulates an estimate that is 5 tokens short
    mock.extraPromptTokens = 5
    const proxy = await proxyFor(mock, { driver: 'memory' })
    try {
      const r = await burst([proxy])
      expect(r.ok).toBe(FITS)
      const total = await settled(proxy, FITS * (RESERVATION + 5))
      report('one proxy, estimate 5 tokens short', r, total)
      expect(total - LIMIT).toBe(FITS * 5)
      // and nothing more gets through once the budget is overspent
      const after = await burst([proxy])
      expect(after.ok).toBe(0)
    } finally {
      mock.extraPromptTokens = 0
      await proxy.close()
    }
  })
})
