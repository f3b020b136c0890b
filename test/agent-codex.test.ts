// Codex CLI as it ships on npm (`codex exec`) and the OpenAI Agents SDK, through the proxy over
// the Responses API (Codex no longer speaks Chat Completions). Codex gets a throwaway CODEX_HOME
// whose config.toml points a provider at the proxy; nothing but localhost is reached.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Agent, run, setDefaultOpenAIClient, setOpenAIAPI, setTracingDisabled, tool } from '@openai/agents'
import OpenAI from 'openai'
import { z } from 'zod'
import { definePlugin } from '../core/plugin.ts'
import { clearVendorEnv, startMockAndProxy, startProxy, type Proxy } from './helpers/core-harness.ts'
import { MOCK_ENCRYPTED } from './helpers/mock-responses.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'
import { runCodex } from './helpers/agents.ts'

beforeAll(() => clearVendorEnv())

describe('codex exec through AgentMesh', () => {
  it('demo preset: answers with no key, billed to tool codex', async () => {
    const proxy = await startProxy({ preset: 'demo' }, { features: true })
    try {
      const run = await runCodex(proxy.url, 'What is the capital of France?')
      expect(run.code, run.stderr).toBe(0)
      expect(run.stdout).toContain('AgentMesh demo answer')
      const requests = proxy.events.filter((e) => e.type === 'request')
      expect(requests.length).toBeGreaterThan(0)
      for (const r of requests) expect(r.data).toMatchObject({ protocol: 'responses', identity: { tool: 'codex' } })
      expect(proxy.events.filter((e) => e.type === 'response').every((r) => (r.data as any).status === 200)).toBe(true)
    } finally {
      await proxy.close()
    }
  })

  describe('solo against a mock OpenAI', () => {
    let mock: MockUpstream
    let proxy: Proxy
    const got: string[] = []
    beforeAll(async () => {
      const capture = definePlugin({
        name: 'capture',
        hooks: {
          beforeRequest: (ctx) => {
            got.push(ctx.request.rawBody)
          },
        },
      })
      ;({ mock, proxy } = await startMockAndProxy({ keys: false, config: { plugins: [capture] } }))
    })
    afterAll(async () => {
      await proxy.close()
      await mock.close()
    })

    it("the vendor gets Codex's body byte for byte, its headers and its own key; the answer reaches Codex", async () => {
      const run = await runCodex(proxy.url, 'Say hello.')
      expect(run.code, run.stderr).toBe(0)
      // the mock calls Codex's first function tool; Codex runs it and the mock answers the result
      expect(run.stdout).toMatch(/mock answer to|tool said/)
      const calls = mock.received.filter((r) => r.path === '/v1/responses')
      expect(calls.length).toBeGreaterThan(0)
      expect(calls.length).toBe(got.length)
      for (const [i, c] of calls.entries()) {
        expect(c.raw).toBe(got[i])
        expect(c.headers['user-agent']).toMatch(/^codex_exec\//)
        expect(c.headers.authorization).toBe('Bearer sk-codex-cli-test-key')
        expect(c.headers['session-id']).toBeTruthy()
        expect(c.body.stream).toBe(true)
      }
      // the tool's result went back in a second turn, with the mock's encrypted reasoning unchanged
      expect(calls.length).toBeGreaterThan(1)
      expect(calls.at(-1)!.body.input.some((i: any) => i.type === 'function_call_output')).toBe(true)
      expect(calls.at(-1)!.raw).toContain(JSON.stringify(MOCK_ENCRYPTED))
      const responses = proxy.events.filter((e) => e.type === 'response')
      expect(responses.every((e) => (e.data as any).status === 200)).toBe(true)
      expect(responses.every((e) => (e.data as any).identity.tool === 'codex')).toBe(true)
    })
  })
})

describe('the OpenAI Agents SDK through AgentMesh', () => {
  it('runs an agent with one tool over the Responses API', async () => {
    const { mock, proxy } = await startMockAndProxy()
    try {
      setTracingDisabled(true)
      setOpenAIAPI('responses')
      // @openai/agents bundles its own copy of openai: the classes differ by their private fields only
      setDefaultOpenAIClient(
        new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'sk-agents-test', maxRetries: 0 }) as unknown as Parameters<
          typeof setDefaultOpenAIClient
        >[0],
      )
      const calls: string[] = []
      const getWeather = tool({
        name: 'get_weather',
        description: 'Weather for a city',
        parameters: z.object({ city: z.string() }),
        execute: async ({ city }) => {
          calls.push(city)
          return `sunny in ${city}`
        },
      })
      const agent = new Agent({
        name: 'weather',
        instructions: 'Answer with the weather.',
        model: 'gpt-5-mini',
        tools: [getWeather],
      })
      const result = await run(agent, 'What is the weather in Paris?')
      expect(calls).toEqual(['Paris'])
      expect(result.finalOutput).toBe('tool said: sunny in Paris')
      const sent = mock.received.filter((r) => r.path === '/v1/responses')
      expect(sent.length).toBe(2)
      expect(
        sent[1]!.body.input.some((i: any) => i.type === 'function_call_output' && i.output === 'sunny in Paris'),
      ).toBe(true)
      expect(proxy.events.filter((e) => e.type === 'response').map((e) => (e.data as any).status)).toEqual([200, 200])
    } finally {
      await proxy.close()
      await mock.close()
    }
  })
})
