// The totals are exact: after a mixed run (plain, streamed, exact-cache hits, quota-blocked,
// upstream-failed and client-aborted streams), /agentmesh/admin/usage's tokens and USD for the day
// equal the sums over the audit log's entries, to the token and to the micro-dollar, team by team.
// The dashboard shows the usage API's numbers (test/observe-dashboard.test.ts checks that), so this
// is the dashboard's exactness too.
import { readFileSync, rmSync } from 'node:fs'
import OpenAI from 'openai'
import { describe, expect, it } from 'vitest'
import { listLogFiles } from '../plugins/audit/store-fs.ts'
import { quota } from '../plugins/quota/index.ts'
import { clearVendorEnv, startMockAndProxy, tempDir, until } from './helpers/core-harness.ts'

const ADMIN = 'totals-admin-token-0123456789'
const MICRO = 1_000_000

describe('totals: usage API = audit log', () => {
  it('agrees to the token and the micro-dollar after a mixed run', { timeout: 60_000 }, async () => {
    clearVendorEnv()
    // our own data dir: the harness removes its own at close, and the log is read after close
    const dataDir = tempDir()
    const { mock, proxy } = await startMockAndProxy({
      features: true,
      config: { dataDir, plugins: [quota({ adminToken: ADMIN, limits: { teams: { tiny: { tokensPerDay: 1 } } } })] },
    })
    try {
      const c = (team: string) =>
        new OpenAI({
          baseURL: `${proxy.url}/v1`,
          apiKey: 'sk-client',
          maxRetries: 0,
          defaultHeaders: { 'X-AgentMesh-Team': team, 'X-AgentMesh-User': `${team}-u` },
        })
      const ask = (team: string, content: string, max_tokens = 30) =>
        c(team).chat.completions.create({ model: 'gpt-4o-mini', max_tokens, messages: [{ role: 'user', content }] })
      for (let i = 0; i < 3; i++) await ask('eng', `plain question ${i}`)
      await ask('eng', 'plain question 0') // exact hit
      await ask('ops', 'plain question 0') // another team: its own miss
      await ask('ops', 'plain question 0') // and its hit
      const s = await c('eng').chat.completions.create({
        model: 'gpt-4o-mini',
        max_tokens: 30,
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: 'user', content: 'a streamed one' }],
      })
      for await (const _ of s) {
        /* drain */
      }
      await expect(ask('tiny', 'blocked')).rejects.toMatchObject({ status: 429 })
      mock.behaviour.status = 500
      await expect(ask('eng', 'fails upstream')).rejects.toBeTruthy()
      mock.behaviour.status = undefined
      // a stream the client drops after its first bytes
      // long gaps: on a loaded machine the abort must still land before the stream could end
      mock.behaviour.eventGapMs = 300
      const ac = new AbortController()
      const res = await fetch(`${proxy.url}/v1/chat/completions`, {
        method: 'POST',
        signal: ac.signal,
        headers: { 'content-type': 'application/json', 'x-agentmesh-team': 'eng', 'x-agentmesh-user': 'eng-u' },
        body: JSON.stringify({
          model: 'gpt-4o-mini',
          max_tokens: 30,
          stream: true,
          messages: [{ role: 'user', content: 'dropped midway please' }],
        }),
      })
      const reader = res.body!.getReader()
      await reader.read()
      ac.abort()
      mock.behaviour.eventGapMs = undefined
      await until(() => proxy.events.filter((e) => e.type === 'response').length >= 10, 'every response', 10_000)
      await new Promise((r) => setTimeout(r, 300)) // the aborted stream's afterResponse
      const usage = await (
        await fetch(`${proxy.url}/agentmesh/admin/usage`, { headers: { authorization: `Bearer ${ADMIN}` } })
      ).json()
      await proxy.close() // flushes the audit log

      const entries = listLogFiles(`${dataDir}/audit`)
        .flatMap((f) =>
          readFileSync(f.path, 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l)),
        )
        .filter((e) => e.kind === 'request')
      expect(entries.length).toBe(10)
      expect(entries.some((e) => e.aborted)).toBe(true)
      // what the vendor billed per entry: nothing for a cache hit, nothing when the usage is only
      // the estimate made before a call that never answered, the estimate when a stream was cut
      const billed = (e: any) =>
        e.cache.status !== 'exact' && e.cache.status !== 'semantic' && (!e.tokens.estimated || e.aborted)
      const sums = (team?: string) => {
        let tokens = 0
        let micro = 0
        for (const e of entries)
          if ((!team || e.identity.team === team) && billed(e)) {
            tokens += e.tokens.input + e.tokens.output
            micro += Math.round(e.costUsd * MICRO)
          }
        return { tokens, micro }
      }
      const scope = (name: string) => usage.scopes.find((x: any) => x.scope === name)
      for (const [name, team] of [
        ['global', undefined],
        ['team:eng', 'eng'],
        ['team:ops', 'ops'],
        ['team:tiny', 'tiny'],
      ] as const) {
        const day = scope(name)?.day ?? { tokens: 0, usd: 0 }
        const want = sums(team)
        expect({ scope: name, tokens: day.tokens, micro: Math.round(day.usd * MICRO) }).toEqual({
          scope: name,
          tokens: want.tokens,
          micro: want.micro,
        })
      }
      expect(sums().tokens).toBeGreaterThan(0)
      expect(sums().micro).toBeGreaterThan(0)
      expect(scope('global').day.cacheHits).toBe(entries.filter((e) => e.cache.status === 'exact').length)
    } finally {
      await proxy.close().catch(() => {})
      await mock.close()
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})
