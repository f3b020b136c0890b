// Issue 16 item 1: Claude Code (as it ships on npm) asking for an OpenAI model is served by
// OpenAI through translation; nothing but localhost is reached.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clearVendorEnv, startMockAndProxy, type Proxy } from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'

const CLAUDE = resolve(import.meta.dirname, '../node_modules/.bin/claude')

function claude(baseURL: string, model: string, prompt: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const home = mkdtempSync(join(tmpdir(), 'claude-home-'))
  return new Promise((done) => {
    const child = spawn(CLAUDE, ['-p', '--model', model, prompt], {
      cwd: home,
      env: { PATH: process.env.PATH, HOME: home, ANTHROPIC_BASE_URL: baseURL, ANTHROPIC_API_KEY: 'sk-ant-cli-test-key', CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', DISABLE_TELEMETRY: '1', DISABLE_AUTOUPDATER: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      rmSync(home, { recursive: true, force: true })
      done({ code, stdout, stderr })
    })
  })
}

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
    const run = await claude(proxy.url, 'gpt-4o-mini', 'Say hello.')
    const statuses = proxy.events.filter((e) => e.type === 'response').map((e) => `${(e.data as any).status} ${(e.data as any).vendor}`)
    const errors = proxy.events.filter((e) => e.type === 'error').map((e) => (e.data as any).message)
    expect(run.code, `${run.stderr}\n${statuses.join(', ')}\n${errors.join('\n')}`).toBe(0)
    expect(run.stdout).toMatch(/mock answer to|tool said/)
    const calls = mock.received.filter((r) => r.path.startsWith('/v1/chat/completions'))
    expect(calls.length).toBeGreaterThan(0)
    expect(mock.received.filter((r) => r.path.startsWith('/v1/messages') && r.body.model === 'gpt-4o-mini')).toHaveLength(0)
    for (const c of calls) {
      expect(c.headers.authorization).toBe('Bearer sk-test-openai-configured')
      expect(c.body.model).toBe('gpt-4o-mini')
      // Claude Code's own request fields (thinking, effort, context management) are not sent to OpenAI
      expect(Object.keys(c.body).filter((k) => ['thinking', 'output_config', 'context_management', 'metadata', 'system'].includes(k))).toEqual([])
    }
  }, 120_000)
})
