// Issue 16 item 1: Codex CLI (as it ships on npm, Responses API only) asking for a Claude model is
// served by Anthropic through translation, its tool round trip included; nothing but localhost.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clearVendorEnv, startMockAndProxy, type Proxy } from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'

const CODEX = resolve(import.meta.dirname, '../node_modules/.bin/codex')

function codex(baseURL: string, model: string, prompt: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const home = mkdtempSync(join(tmpdir(), 'codex-home-'))
  writeFileSync(join(home, 'config.toml'), `model = "${model}"
model_provider = "agentmesh"

[model_providers.agentmesh]
name = "AgentMesh"
base_url = "${baseURL}/v1"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
`)
  return new Promise((done) => {
    const child = spawn(CODEX, ['exec', '--skip-git-repo-check', prompt], {
      cwd: home,
      env: { PATH: process.env.PATH, HOME: home, CODEX_HOME: home, OPENAI_API_KEY: 'sk-codex-cli-test-key', RUST_LOG: 'error' },
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
    const run = await codex(proxy.url, 'claude-haiku-4-5', 'Say hello.')
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
    expect(calls.at(-1)!.body.messages.at(-1).content.some((b: any) => b.type === 'tool_result')).toBe(true)
    const responses = proxy.events.filter((e) => e.type === 'response')
    expect(responses.every((e) => (e.data as any).status === 200 && (e.data as any).vendor === 'anthropic')).toBe(true)
  }, 120_000)
})
