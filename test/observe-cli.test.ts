// `agentmesh observe` against a live proxy, in a child process: --json gives one event per line,
// piped output is plain (no colour codes), --team and --type filter, --limit stops it.
import { spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postJson, startCoreProxy, tempDir, type Proxy } from './helpers/core-harness.ts'

const BIN = join(import.meta.dirname, '..', 'bin', 'agentmesh.mjs')

/** run `agentmesh observe ...args` while `traffic` makes requests, until it exits */
async function observe(
  proxy: Proxy,
  args: string[],
  traffic: () => Promise<unknown>,
): Promise<{ code: number | null; out: string; err: string }> {
  const cwd = tempDir('agentmesh-observe-')
  const child = spawn(process.execPath, [BIN, 'observe', '--url', proxy.url, ...args], {
    cwd,
    env: { ...process.env, NO_COLOR: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => {
    out += d
  })
  child.stderr.on('data', (d) => {
    err += d
  })
  const exited = new Promise<number | null>((r) => child.once('exit', r))
  let done = false
  void exited.then(() => {
    done = true
  })
  const deadline = Date.now() + 40_000
  // keep making requests until the command has seen enough (it starts cold: jiti, the config)
  while (!done && Date.now() < deadline) {
    await traffic()
    await new Promise((r) => setTimeout(r, 300))
  }
  if (!done) child.kill()
  const code = await exited
  rmSync(cwd, { recursive: true, force: true })
  return { code, out, err }
}

const ask = (proxy: Proxy, team: string) =>
  postJson(
    `${proxy.url}/v1/chat/completions`,
    { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `secret words from ${team}` }] },
    { 'x-agentmesh-team': team },
  ).then((r) => r.text())

describe('agentmesh observe', () => {
  let proxy: Proxy
  beforeAll(async () => {
    proxy = await startCoreProxy({ preset: 'demo', trustIdentityHeaders: true })
  })
  afterAll(async () => {
    await proxy?.close()
  })

  it('--json: one event per line, filtered by --type, stopped by --limit', { timeout: 60_000 }, async () => {
    const r = await observe(proxy, ['--json', '--type', 'response', '--limit', '3'], () => ask(proxy, 'eng'))
    expect(r.code, r.err).toBe(0)
    const events = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(events).toHaveLength(3)
    for (const e of events)
      expect(e).toMatchObject({ type: 'response', data: { status: 200, identity: { team: 'eng' } } })
  })

  it('piped: plain lines, no colour; --team shows one team', { timeout: 60_000 }, async () => {
    const r = await observe(proxy, ['--team', 'ops', '--type', 'request,response', '--limit', '4'], async () => {
      await ask(proxy, 'eng')
      await ask(proxy, 'ops')
    })
    expect(r.code, r.err).toBe(0)
    const lines = r.out.trim().split('\n')
    expect(lines).toHaveLength(4)
    expect(r.out).not.toContain('\x1b[')
    for (const l of lines) expect(l).toMatch(/^\d\d:\d\d:\d\d (request|response)\s+\S+ ops\//)
    expect(r.out).not.toContain('secret words')
  })
})
