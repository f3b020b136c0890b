// Claude Code as it ships on npm (`claude -p`), through the proxy: its first request carries a
// mid-conversation `system` message, betas, `?beta=true` and 20k tokens of tools and system
// prompt. Issue 12: it got a 400 from the Anthropic parser.
import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { definePlugin } from '../core/plugin.ts'
import { clearVendorEnv, startMockAndProxy, startProxy, type Proxy } from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'

const CLAUDE = resolve(import.meta.dirname, '../node_modules/.bin/claude')

/** `claude -p prompt` against the proxy, with a throwaway home and no traffic but the model calls. */
function claude(baseURL: string, prompt: string, env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const home = mkdtempSync(join(tmpdir(), 'claude-home-'))
  return new Promise((done) => {
    const child = spawn(CLAUDE, ['-p', prompt], {
      cwd: home,
      env: { PATH: process.env.PATH, HOME: home, ANTHROPIC_BASE_URL: baseURL, ANTHROPIC_API_KEY: 'sk-ant-cli-test-key', CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', DISABLE_TELEMETRY: '1', DISABLE_AUTOUPDATER: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      done({ code, stdout, stderr })
    })
  })
}

beforeAll(() => clearVendorEnv())

describe('claude -p through AgentMesh', () => {
  it('demo preset: answers, billed to tool claude-code', async () => {
    const proxy = await startProxy({ preset: 'demo' }, { features: true })
    try {
      const run = await claude(proxy.url, 'What is the capital of France?')
      expect(run.stderr).toBe('')
      expect(run.code).toBe(0)
      expect(run.stdout).toContain('AgentMesh demo answer')
      const requests = proxy.events.filter((e) => e.type === 'request')
      expect(requests.length).toBeGreaterThan(0)
      for (const r of requests) expect((r.data as any).identity.tool).toBe('claude-code')
      const responses = proxy.events.filter((e) => e.type === 'response')
      expect(responses.every((r) => (r.data as any).status === 200)).toBe(true)
    } finally {
      await proxy.close()
    }
  })

  describe('solo against a mock Anthropic', () => {
    let mock: MockUpstream
    let proxy: Proxy
    const got: Array<{ raw: string; search: string }> = []
    beforeAll(async () => {
      // what the proxy received, to compare with what the vendor received
      const capture = definePlugin({ name: 'capture', hooks: { beforeRequest: (ctx) => { got.push({ raw: ctx.request.rawBody, search: ctx.request.search }) } } })
      ;({ mock, proxy } = await startMockAndProxy({ keys: false, config: { plugins: [capture] } }))
    })
    afterAll(async () => {
      await proxy.close()
      await mock.close()
    })

    it("the vendor gets Claude Code's body byte for byte, its query, betas and session header, and its own key", async () => {
      const run = await claude(proxy.url, 'Say hello.')
      expect(run.code).toBe(0)
      // the mock calls the first tool offered; Claude Code runs it and the mock answers the result
      expect(run.stdout).toMatch(/mock answer to|tool said/)
      expect(proxy.events.filter((e) => e.type === 'response').every((e) => (e.data as any).status === 200)).toBe(true)
      const calls = mock.received.filter((r) => r.path.startsWith('/v1/messages'))
      expect(calls.length).toBeGreaterThan(0)
      expect(calls.length).toBe(got.length)
      // a request with a mid-conversation system message was among them (the 400 of issue 12)
      expect(calls.some((c) => c.body.messages.some((m: any) => m.role === 'system'))).toBe(true)
      for (const [i, c] of calls.entries()) {
        expect(c.raw).toBe(got[i]!.raw)
        expect(c.path).toBe('/v1/messages' + got[i]!.search)
        expect(c.headers['anthropic-beta']).toBeTruthy()
        expect(c.headers['user-agent']).toMatch(/claude-cli/)
        expect(c.headers['x-claude-code-session-id']).toBeTruthy()
        expect(c.headers['x-api-key'] ?? c.headers.authorization).toContain('sk-ant-cli-test-key')
      }
      expect(calls.some((c) => c.path.includes('beta=true'))).toBe(true)
    })
  })
})
