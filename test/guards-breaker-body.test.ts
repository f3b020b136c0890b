// The breaker's "same body again" check and its run ids, through the OpenAI SDK: a body sent
// bodyRepeats times trips the run (counted with the call itself, on memory and on a redis shared by
// two proxies); a call refused by another check leaves no count behind; a run named by its opening
// keeps the id it always had (the hash of team, user, first system and user messages).
import { createHash } from 'node:crypto'
import OpenAI from 'openai'
import { beforeAll, describe, expect, inject, it } from 'vitest'
import type { MeshConfig } from '../core/types.ts'
import { breaker, type BreakerOptions } from '../plugins/breaker/index.ts'
import { bodyFingerprint } from '../plugins/breaker/loops.ts'
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

function proxyFor(up: LoopUpstream, opts: BreakerOptions, storage: MeshConfig['storage'] = { driver: 'memory' }) {
  return startProxy({
    storage,
    plugins: [breaker({ adminToken: ADMIN, ...opts }), openai({ baseURL: up.url, apiKey: 'sk-test-openai' })],
  })
}

const client = (p: Proxy, headers: Record<string, string> = {}) =>
  new OpenAI({ baseURL: `${p.url}/v1`, apiKey: 'sk-client', maxRetries: 0, defaultHeaders: headers })

const ask = (p: Proxy, content: string, headers: Record<string, string> = {}) =>
  client(p, headers)
    .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] })
    .withResponse()
    .then(
      ({ response }) => `200 ${response.headers.get('x-agentmesh-run-calls')}`,
      (e) => `${e.status} ${e.error?.type} ${/limit: (\w+)/.exec(e.message)?.[1]}`,
    )

describe('breaker: the same body again', () => {
  beforeAll(() => clearVendorEnv())

  it('trips a run at its 3rd identical body; other bodies of the run are not that body', async () => {
    const up = await startLoopUpstream()
    const p = await proxyFor(up, { loops: { bodyRepeats: 3 } })
    try {
      const run = { 'X-AgentMesh-Run-Id': 'body-run' }
      expect(await ask(p, 'the same question', run)).toBe('200 1')
      expect(await ask(p, 'another question', run)).toBe('200 2')
      expect(await ask(p, 'the same question', run)).toBe('200 3')
      // the 3rd time within the window: refused before the vendor
      expect(await ask(p, 'the same question', run)).toBe('429 agent_loop_detected bodyRepeats')
      expect(up.calls).toBe(3)
      const tripped = p.events.filter((e) => e.type === 'run_tripped')
      expect(tripped.map((e) => (e.data as any).limit)).toEqual(['bodyRepeats'])
      // the same body in another run is another run's first
      expect(await ask(p, 'the same question', { 'X-AgentMesh-Run-Id': 'other-run' })).toBe('200 1')
      expect(up.calls).toBe(4)
    } finally {
      await p.close()
      await up.close()
    }
  })

  it('counts long bodies (digested by sha256) as it counts short ones: one character apart is another body', async () => {
    const up = await startLoopUpstream()
    const p = await proxyFor(up, { loops: { bodyRepeats: 3 } })
    try {
      const run = { 'X-AgentMesh-Run-Id': 'long-body-run' }
      const long = `${'a long question '.repeat(200)}?`
      const other = `${long.slice(0, 1500)}!${long.slice(1501)}`
      expect(other.length).toBe(long.length)
      expect(await ask(p, long, run)).toBe('200 1')
      expect(await ask(p, other, run)).toBe('200 2')
      expect(await ask(p, long, run)).toBe('200 3')
      expect(await ask(p, other, run)).toBe('200 4')
      expect(await ask(p, long, run)).toBe('429 agent_loop_detected bodyRepeats')
      expect(up.calls).toBe(4)
    } finally {
      await p.close()
      await up.close()
    }
  })

  it("a body's fingerprint: the same for the same text, another for any one character changed, added or removed", () => {
    const seen = new Map<string, string>()
    const add = (text: string) => {
      const f = bodyFingerprint(text)
      expect(bodyFingerprint(text)).toBe(f)
      const had = seen.get(f)
      if (had !== undefined) expect(had).toBe(text)
      seen.set(f, text)
    }
    for (const base of [
      '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}',
      'x'.repeat(1024),
      'y'.repeat(1500),
    ]) {
      add(base)
      for (let i = 0; i < base.length; i += base.length > 200 ? 7 : 1) {
        for (const c of ['\u0000', ' ', 'z', '\u00e9', '\ud83d']) add(base.slice(0, i) + c + base.slice(i + 1))
        add(base.slice(0, i) + base.slice(i + 1))
        add(base.slice(0, i) + 'q' + base.slice(i))
      }
    }
    expect(seen.size).toBeGreaterThan(2500)
  })

  it('a call refused by the loop check is not counted as a body sent: after a reset it goes through', async () => {
    const up = await startLoopUpstream()
    const p = await proxyFor(up, { loops: { toolCallRepeats: 3, bodyRepeats: 2 } })
    try {
      const c = client(p)
      const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Fix the failing test.' }]
      let error: any
      for (let i = 0; i < 6 && !error; i++) {
        try {
          const r = await c.chat.completions.create({ model: 'gpt-4o-mini', messages, tools: TOOLS })
          const msg = r.choices[0]!.message
          messages.push({ role: 'assistant', content: msg.content, tool_calls: msg.tool_calls })
          for (const t of msg.tool_calls ?? []) messages.push({ role: 'tool', tool_call_id: t.id, content: 'x' })
        } catch (err) {
          error = err
        }
      }
      // the 4th call carries the 3rd repetition
      expect(error?.status).toBe(429)
      expect(error?.message).toMatch(/limit: toolCallRepeats = 3/)
      expect(up.calls).toBe(3)
      const runId = error.headers.get('x-agentmesh-run-id') as string
      const reset = await fetch(`${p.url}/agentmesh/admin/runs/${runId}/reset`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}` },
      })
      expect(reset.status).toBe(200)
      // the refused body, sent again: its first time through (bodyRepeats 2 would stop a second)
      const again = await c.chat.completions.create({ model: 'gpt-4o-mini', messages, tools: TOOLS }).withResponse()
      expect(again.response.headers.get('x-agentmesh-run-calls')).toBe('1')
      expect(up.calls).toBe(4)
      const third = await c.chat.completions.create({ model: 'gpt-4o-mini', messages, tools: TOOLS }).catch((e) => e)
      expect(third.status).toBe(429)
      expect(third.message).toMatch(/same request body 2 times/)
      expect(up.calls).toBe(4)
    } finally {
      await p.close()
      await up.close()
    }
  })

  it('two proxies on one redis-server count one body together', async () => {
    const up = await startLoopUpstream()
    const storage = {
      driver: 'redis' as const,
      url: inject('redisUrl'),
      prefix: `breaker-body-${process.pid}-${Date.now()}`,
    }
    const a = await proxyFor(up, { loops: { bodyRepeats: 4 } }, storage)
    const b = await proxyFor(up, { loops: { bodyRepeats: 4 } }, storage)
    try {
      const run = { 'X-AgentMesh-Run-Id': 'shared-body-run' }
      const seen: string[] = []
      for (const p of [a, b, a, b, a]) seen.push(await ask(p, 'poll the build status', run))
      expect(seen).toEqual([
        '200 1',
        '200 2',
        '200 3',
        '429 agent_loop_detected bodyRepeats',
        '429 agent_loop_detected bodyRepeats',
      ])
      expect(up.calls).toBe(3)
    } finally {
      await a.close()
      await b.close()
      await up.close()
    }
  })

  it('names a run by its opening as it always has: sha256 of team, user, system and first user message', async () => {
    const up = await startLoopUpstream()
    const p = await proxyFor(up, {})
    try {
      const system = 'You are a careful agent. ü'
      const user = `Refactor the parser ${'x'.repeat(20_000)}`
      const who = { 'X-AgentMesh-Team': 'platform', 'X-AgentMesh-User': 'ana' }
      const { response } = await client(p, who)
        .chat.completions.create({
          model: 'gpt-4o-mini',
          messages: [
            { role: 'system', content: system },
            { role: 'user', content: user },
          ],
        })
        .withResponse()
      // the digest as the breaker took it, part by part (ids of runs already recorded stay valid)
      const h = createHash('sha256')
      h.update('platform\u0000ana\u0000')
      h.update(system)
      h.update('\u0000')
      h.update(user.slice(0, 16 * 1024))
      expect(response.headers.get('x-agentmesh-run-id')).toBe(`run-${h.digest('hex').slice(0, 24)}`)
    } finally {
      await p.close()
      await up.close()
    }
  })
})
