// Issue 16 item 1: Claude Code (as it ships on npm) asking for an OpenAI model is served by
// OpenAI through translation; nothing but localhost is reached.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clearVendorEnv, startMockAndProxy, type Proxy } from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'
import { runClaude } from './helpers/agents.ts'

describe('claude -p asking for an OpenAI model', () => {
  let mock: MockUpstream
  let proxy: Proxy
  beforeAll(async () => {
    clearVendorEnv()
    ;({ mock, proxy } = await startMockAndProxy())
  })
  afterAll(async () => {
    await proxy.close()
    await mock.close()
  })

  it('is served by OpenAI, its answer reaching Claude Code', async () => {
    const run = await runClaude(proxy.url, 'Say hello.', { model: 'gpt-4o-mini' })
    const statuses = proxy.events
      .filter((e) => e.type === 'response')
      .map((e) => `${(e.data as any).status} ${(e.data as any).vendor}`)
    const errors = proxy.events.filter((e) => e.type === 'error').map((e) => (e.data as any).message)
    expect(run.code, `${run.stderr}\n${statuses.join(', ')}\n${errors.join('\n')}`).toBe(0)
    expect(run.stdout).toMatch(/mock answer to|tool said/)
    const calls = mock.received.filter((r) => r.path.startsWith('/v1/chat/completions'))
    expect(calls.length).toBeGreaterThan(0)
    expect(
      mock.received.filter((r) => r.path.startsWith('/v1/messages') && r.body.model === 'gpt-4o-mini'),
    ).toHaveLength(0)
    for (const c of calls) {
      expect(c.headers.authorization).toBe('Bearer sk-test-openai-configured')
      expect(c.body.model).toBe('gpt-4o-mini')
      // Claude Code's own request fields (thinking, effort, context management) are not sent to OpenAI
      expect(
        Object.keys(c.body).filter((k) =>
          ['thinking', 'output_config', 'context_management', 'metadata', 'system'].includes(k),
        ),
      ).toEqual([])
    }
  }, 120_000)
})
