// The circuit breaker against real SDK clients: a scripted agent stuck on one tool call is stopped
// at the configured count with no further vendor call; a run under its limits is never touched;
// two proxies on one redis-server stop a run at the shared limit; an admin reset lets it go on.
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { beforeAll, describe, expect, inject, it } from 'vitest'
import type { MeshConfig } from '../core/types.ts'
import { breaker, type BreakerOptions } from '../plugins/breaker/index.ts'
import { anthropic } from '../plugins/vendors/anthropic.ts'
import { openai } from '../plugins/vendors/openai.ts'
import { clearVendorEnv, startProxy, type Proxy } from './helpers/core-harness.ts'
import { startLoopUpstream, type LoopUpstream } from './helpers/loop-upstream.ts'

const ADMIN = 'breaker-admin-token-0123456'
const TOOLS: OpenAI.ChatCompletionTool[] = [
  {
    type: 'function',
    function: { name: 'read_file', parameters: { type: 'object', properties: { path: { type: 'string' } } } },
  },
]

function proxyFor(
  up: LoopUpstream,
  opts: BreakerOptions = {},
  storage: MeshConfig['storage'] = { driver: 'memory' },
): Promise<Proxy> {
  return startProxy({
    storage,
    plugins: [
      breaker({ adminToken: ADMIN, ...opts }),
      openai({ baseURL: up.url, apiKey: 'sk-test-openai' }),
      anthropic({ baseURL: up.url, apiKey: 'sk-ant-test' }),
    ],
  })
}

const client = (p: Proxy, headers: Record<string, string> = {}) =>
  new OpenAI({ baseURL: `${p.url}/v1`, apiKey: 'sk-client', maxRetries: 0, defaultHeaders: headers })

/** An agent that runs each tool call it is given and sends the transcript back, until refused. */
async function openaiAgent(p: Proxy, turns: number, headers: Record<string, string> = {}) {
  const c = client(p, headers)
  const messages: OpenAI.ChatCompletionMessageParam[] = [
    { role: 'system', content: 'You are a coding agent.' },
    { role: 'user', content: 'Fix the failing test.' },
  ]
  const seen: Array<{ runId: string | null; calls: string | null; cost: string | null }> = []
  for (let i = 0; i < turns; i++) {
    try {
      const { data, response } = await c.chat.completions
        .create({ model: 'gpt-4o-mini', messages, tools: TOOLS })
        .withResponse()
      seen.push({
        runId: response.headers.get('x-agentmesh-run-id'),
        calls: response.headers.get('x-agentmesh-run-calls'),
        cost: response.headers.get('x-agentmesh-run-cost-usd'),
      })
      const msg = data.choices[0]!.message
      messages.push({ role: 'assistant', content: msg.content, tool_calls: msg.tool_calls })
      for (const t of msg.tool_calls ?? [])
        messages.push({ role: 'tool', tool_call_id: t.id, content: 'file contents' })
    } catch (err) {
      return { seen, error: err as InstanceType<typeof OpenAI.APIError>, messages }
    }
  }
  return { seen, error: undefined, messages }
}

describe('breaker', () => {
  beforeAll(() => clearVendorEnv())

  it('stops an agent repeating the same tool call at the 5th repetition, with no further vendor call', async () => {
    const up = await startLoopUpstream()
    const p = await proxyFor(up)
    try {
      const { seen, error, messages } = await openaiAgent(p, 12)
      // calls 1..5 carry 0..4 repetitions; the 6th carries the 5th and is refused before the vendor
      expect(up.calls).toBe(5)
      expect(seen).toHaveLength(5)
      expect(error?.status).toBe(429)
      expect((error?.error as any)?.type).toBe('agent_loop_detected')
      expect(error?.message).toMatch(/read_file\(\{"path":"src\/index.ts"\}\) 5 times/)
      expect(error?.message).toMatch(/toolCallRepeats = 5/)
      expect(error?.message).toMatch(/agentmesh runs reset run-[0-9a-f]{24}/)
      // the run is the conversation's opening, the same on every turn; its calls and spend before each call
      expect(new Set(seen.map((s) => s.runId)).size).toBe(1)
      expect(seen.map((s) => s.calls)).toEqual(['1', '2', '3', '4', '5'])
      expect(seen[0]!.cost).toBe('0.000000')
      expect(Number(seen[4]!.cost)).toBeGreaterThan(0)
      expect(error?.headers?.get('x-agentmesh-run-id')).toBe(seen[0]!.runId)
      // tripped: even a request without the loop in it gets the same answer, and the vendor nothing
      const again = await client(p)
        .chat.completions.create({ model: 'gpt-4o-mini', messages: messages.slice(0, 2) })
        .catch((e) => e)
      expect(again.status).toBe(429)
      expect(up.calls).toBe(5)
      const tripped = p.events.filter((e) => e.type === 'run_tripped')
      expect(tripped).toHaveLength(1)
      expect(tripped[0]!.data).toMatchObject({
        run: seen[0]!.runId,
        type: 'agent_loop_detected',
        limit: 'toolCallRepeats',
      })

      // the admin API lists it and resets it: a fresh budget, the loop so far forgiven
      const list = await (
        await fetch(`${p.url}/agentmesh/admin/runs`, { headers: { authorization: `Bearer ${ADMIN}` } })
      ).json()
      expect(list.runs[0]).toMatchObject({
        run: seen[0]!.runId,
        tripped: { type: 'agent_loop_detected', limit: 'toolCallRepeats' },
      })
      const reset = await fetch(`${p.url}/agentmesh/admin/runs/${seen[0]!.runId}/reset`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}` },
      })
      expect(reset.status).toBe(200)
      const after = await client(p)
        .chat.completions.create({ model: 'gpt-4o-mini', messages, tools: TOOLS })
        .withResponse()
      expect(after.response.headers.get('x-agentmesh-run-calls')).toBe('1')
      expect(up.calls).toBe(6)
    } finally {
      await p.close()
      await up.close()
    }
  })

  it('stops an Anthropic SDK agent at the configured count (3) under its own run id', async () => {
    const up = await startLoopUpstream()
    const p = await proxyFor(up, { loops: { toolCallRepeats: 3 } })
    try {
      const c = new Anthropic({
        baseURL: p.url,
        apiKey: 'sk-ant-client',
        maxRetries: 0,
        defaultHeaders: { 'X-AgentMesh-Run-Id': 'job-42' },
      })
      const messages: Anthropic.MessageParam[] = [{ role: 'user', content: 'Refactor utils.' }]
      let error: any
      for (let i = 0; i < 8 && !error; i++) {
        try {
          const msg = await c.messages.create({
            model: 'claude-haiku-4-5',
            max_tokens: 256,
            messages,
            tools: [{ name: 'read_file', input_schema: { type: 'object' } }],
          })
          messages.push({ role: 'assistant', content: msg.content })
          messages.push({
            role: 'user',
            content: msg.content
              .filter((b) => b.type === 'tool_use')
              .map((b) => ({
                type: 'tool_result' as const,
                tool_use_id: (b as Anthropic.ToolUseBlock).id,
                content: 'ok',
              })),
          })
        } catch (err) {
          error = err
        }
      }
      expect(up.calls).toBe(3)
      expect(error.status).toBe(429)
      expect(error.error).toMatchObject({ type: 'error', error: { type: 'agent_loop_detected' } })
      expect(error.message).toMatch(/run job-42 \(team default\)/)
      expect(error.headers.get('x-should-retry')).toBe('false')
    } finally {
      await p.close()
      await up.close()
    }
  })

  it('never touches a run under its limits: different tool arguments, no trip, no warning', async () => {
    const up = await startLoopUpstream({ args: (n) => ({ path: `src/file${n}.ts` }) })
    const p = await proxyFor(up)
    try {
      const { seen, error } = await openaiAgent(p, 12)
      expect(error).toBeUndefined()
      expect(up.calls).toBe(12)
      expect(seen.map((s) => s.calls)).toEqual(Array.from({ length: 12 }, (_, i) => String(i + 1)))
      expect(p.events.filter((e) => e.type === 'run_tripped' || e.type === 'run_warn')).toEqual([])
    } finally {
      await p.close()
      await up.close()
    }
  })

  for (const driver of ['memory', 'redis'] as const)
    it(`a tokens budget (${driver}): warned at 80%, the call after it is spent refused; without one the tokens are still counted`, async () => {
      const up = await startLoopUpstream({ args: (n) => ({ path: `t${n}` }) })
      const storage: MeshConfig['storage'] =
        driver === 'redis'
          ? { driver, url: inject('redisUrl'), prefix: `breaker-tok-${process.pid}-${Date.now()}` }
          : { driver }
      const p = await proxyFor(up, { limits: { tokens: 300 } }, storage)
      try {
        // each answer bills 120 tokens (100 in, 20 out); a call is taken while fewer than 300 were used
        const step = (run: string, i: number) =>
          client(p, { 'X-AgentMesh-Run-Id': run })
            .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `step ${i}` }] })
            .withResponse()
            .then(
              ({ response }) => `ok ${response.headers.get('x-agentmesh-run-warn') ?? '-'}`,
              (e) => `${e.status} ${e.error?.type} ${e.message}`,
            )
        const seen: string[] = []
        for (let i = 0; i < 4; i++) seen.push(await step('tok-run', i))
        expect(seen.slice(0, 3)).toEqual(['ok -', 'ok -', 'ok tokens at 80.0% (240 of 300)'])
        expect(seen[3]).toMatch(/^429 run_budget_exceeded .*has used 360 of its 300 tokens \(limit: tokens\)/)
        expect(up.calls).toBe(3)
        const warned = p.events.filter((e) => e.type === 'run_warn').map((e) => e.data)
        expect(warned).toEqual([expect.objectContaining({ run: 'tok-run', limit: 'tokens', used: 240, max: 300 })])
        const runs = async () =>
          (
            await (
              await fetch(`${p.url}/agentmesh/admin/runs`, { headers: { authorization: `Bearer ${ADMIN}` } })
            ).json()
          ).runs
        expect((await runs()).find((r: any) => r.run === 'tok-run')).toMatchObject({ calls: 3, tokens: 360 })
      } finally {
        await p.close()
      }
      // no tokens limit: never refused on tokens, and the run's tokens still counted for the reports
      const q = await proxyFor(up, {}, storage)
      try {
        for (let i = 0; i < 4; i++)
          await client(q, { 'X-AgentMesh-Run-Id': 'free-run' }).chat.completions.create({
            model: 'gpt-4o-mini',
            messages: [{ role: 'user', content: `free ${i}` }],
          })
        const list = await (
          await fetch(`${q.url}/agentmesh/admin/runs`, { headers: { authorization: `Bearer ${ADMIN}` } })
        ).json()
        expect(list.runs.find((r: any) => r.run === 'free-run')).toMatchObject({ calls: 4, tokens: 480 })
      } finally {
        await q.close()
        await up.close()
      }
    })

  it('refuses a malformed X-AgentMesh-Run-Id in the client protocol', async () => {
    const up = await startLoopUpstream()
    const p = await proxyFor(up)
    try {
      const err = await client(p, { 'X-AgentMesh-Run-Id': 'a b/../c' })
        .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
        .catch((e) => e)
      expect(err.status).toBe(400)
      expect(err.error.type).toBe('invalid_request_error')
      expect(up.calls).toBe(0)
    } finally {
      await p.close()
      await up.close()
    }
  })

  it('two proxies on one redis-server stop one run at the shared limit of 10 calls', async () => {
    const up = await startLoopUpstream({ args: (n) => ({ path: `f${n}` }), delayMs: 50 })
    const storage = {
      driver: 'redis' as const,
      url: inject('redisUrl'),
      prefix: `breaker-${process.pid}-${Date.now()}`,
    }
    const a = await proxyFor(up, { limits: { calls: 10 } }, storage)
    const b = await proxyFor(up, { limits: { calls: 10 } }, storage)
    try {
      const clients = [
        client(a, { 'X-AgentMesh-Run-Id': 'shared-run' }),
        client(b, { 'X-AgentMesh-Run-Id': 'shared-run' }),
      ]
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          clients[i % 2]!.chat.completions.create({
            model: 'gpt-4o-mini',
            messages: [{ role: 'user', content: `step ${i}` }],
          }).then(
            () => 'ok',
            (e) => `${e.status} ${e.error?.type}`,
          ),
        ),
      )
      expect(results.filter((r) => r === 'ok')).toHaveLength(10)
      expect(results.filter((r) => r === '429 run_budget_exceeded')).toHaveLength(20)
      expect(up.calls).toBe(10)
      // both instances see the run tripped, with the limit named
      for (const p of [a, b]) {
        const err = await client(p, { 'X-AgentMesh-Run-Id': 'shared-run' })
          .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'more' }] })
          .catch((e) => e)
        expect(err.status).toBe(429)
        expect(err.message).toMatch(/run shared-run .*10 of its 10 calls \(limit: calls\)/)
      }
      expect(up.calls).toBe(10)
    } finally {
      await a.close()
      await b.close()
      await up.close()
    }
  })
})
