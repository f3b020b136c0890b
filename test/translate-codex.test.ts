// Issue 16 item 1: Codex CLI (as it ships on npm, Responses API only) asking for a Claude model is
// served by Anthropic through translation, its tool round trip included; nothing but localhost.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clearVendorEnv, startMockAndProxy, type Proxy } from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'
import { runCodex } from './helpers/agents.ts'

describe('codex exec asking for a Claude model', () => {
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

  it('is served by Anthropic, streamed, across its tool round trip', async () => {
    const run = await runCodex(proxy.url, 'Say hello.', { model: 'claude-haiku-4-5' })
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toMatch(/mock answer to|tool said/)
    const calls = mock.received.filter((r) => r.path.startsWith('/v1/messages'))
    expect(calls.length).toBeGreaterThan(1)
    expect(mock.received.filter((r) => r.path.startsWith('/v1/responses'))).toHaveLength(0)
    for (const c of calls) {
      expect(c.body.model).toBe('claude-haiku-4-5')
      expect(c.body.stream).toBe(true)
      expect(c.headers['x-api-key']).toBe('sk-ant-test-configured')
    }
    // Codex replays its reasoning items (encrypted for OpenAI): none reached Anthropic
    expect(JSON.stringify(calls.map((c) => c.body))).not.toContain('encrypted_content')
    // the mock called Codex's first tool; the result came back as a tool_result
    expect(
      calls
        .at(-1)!
        .body.messages.at(-1)
        .content.some((b: any) => b.type === 'tool_result'),
    ).toBe(true)
    const responses = proxy.events.filter((e) => e.type === 'response')
    expect(responses.every((e) => (e.data as any).status === 200 && (e.data as any).vendor === 'anthropic')).toBe(true)
  }, 120_000)
})
