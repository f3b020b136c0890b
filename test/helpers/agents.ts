// The real agent CLIs from npm (`claude -p`, `codex exec`) run against a proxy, each in a
// throwaway home so that nothing but the proxy on localhost is reached.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

export interface CliRun {
  code: number | null
  stdout: string
  stderr: string
}

const BIN = resolve(import.meta.dirname, '../../node_modules/.bin')

function run(
  bin: string,
  args: string[],
  home: string,
  env: Record<string, string>,
  keepHome: boolean,
): Promise<CliRun> {
  return new Promise((done) => {
    const child = spawn(join(BIN, bin), args, {
      cwd: home,
      env: { PATH: process.env.PATH, HOME: home, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      if (!keepHome) rmSync(home, { recursive: true, force: true })
      done({ code, stdout, stderr })
    })
  })
}

/**
 * `claude -p prompt` with ANTHROPIC_BASE_URL at the proxy. `home` (kept afterwards) lets two runs
 * share a folder, and so a system prompt; `model` is passed as --model.
 */
export function runClaude(
  baseURL: string,
  prompt: string,
  opts: { model?: string; env?: Record<string, string>; home?: string } = {},
): Promise<CliRun> {
  const home = opts.home ?? mkdtempSync(join(tmpdir(), 'claude-home-'))
  const args = ['-p', ...(opts.model ? ['--model', opts.model] : []), prompt]
  const env = {
    ANTHROPIC_BASE_URL: baseURL,
    ANTHROPIC_API_KEY: 'sk-ant-cli-test-key',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_TELEMETRY: '1',
    DISABLE_AUTOUPDATER: '1',
    ...opts.env,
  }
  return run('claude', args, home, env, opts.home !== undefined)
}

/** `codex exec prompt` with a CODEX_HOME whose config.toml points a Responses provider at the proxy. */
export function runCodex(baseURL: string, prompt: string, opts: { model?: string } = {}): Promise<CliRun> {
  const home = mkdtempSync(join(tmpdir(), 'codex-home-'))
  writeFileSync(
    join(home, 'config.toml'),
    `model = "${opts.model ?? 'gpt-5-codex'}"
model_provider = "agentmesh"

[model_providers.agentmesh]
name = "AgentMesh"
base_url = "${baseURL}/v1"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
`,
  )
  return run(
    'codex',
    ['exec', '--skip-git-repo-check', prompt],
    home,
    { CODEX_HOME: home, OPENAI_API_KEY: 'sk-codex-cli-test-key', RUST_LOG: 'error' },
    false,
  )
}
