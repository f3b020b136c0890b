// The CLI as a child process: dev in an empty directory, config (secrets masked), --version,
// --help, a bad config file, and dev's reload on a config change with a stream in flight.
import { spawn, type ChildProcess } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { VERSION } from '../core/app.ts'
import { VENDOR_ENV, postJson, sseEvents, tempDir } from './helpers/core-harness.ts'
import { mockText, startMockUpstream } from './helpers/mock-upstream.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BIN = join(ROOT, 'bin/agentmesh.mjs')

interface Run {
  child: ChildProcess
  out: () => string
  err: () => string
  exited: Promise<number | null>
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>
}

const children: ChildProcess[] = []
const dirs: string[] = []

/** Start the CLI in cwd with no vendor keys in its environment. */
function cli(args: string[], cwd: string): Run {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' }
  for (const k of VENDOR_ENV) delete env[k]
  delete env.NODE_ENV
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let out = ''
  let err = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (err += d))
  // 'close', not 'exit': under load the last stderr line can arrive after the process has exited
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)))
  return {
    child,
    out: () => out,
    err: () => err,
    exited,
    // generous: a loaded 2-core machine can take many seconds to start node + jiti
    waitFor(re, timeoutMs = 45_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          clearInterval(poll)
          reject(new Error(`timed out waiting for ${re}; stdout:\n${out}\nstderr:\n${err}`))
        }, timeoutMs)
        const poll = setInterval(() => {
          const m = re.exec(out)
          if (m) {
            clearInterval(poll)
            clearTimeout(timer)
            resolve(m)
          } else if (child.exitCode !== null) {
            clearInterval(poll)
            clearTimeout(timer)
            reject(new Error(`exited ${child.exitCode} before ${re}; stdout:\n${out}\nstderr:\n${err}`))
          }
        }, 10)
      })
    },
  }
}

async function finished(run: Run): Promise<{ code: number | null; out: string; err: string }> {
  const code = await run.exited
  return { code, out: run.out(), err: run.err() }
}

function project(files: Record<string, string> = {}): string {
  const dir = tempDir('agentmesh-cli-')
  dirs.push(dir)
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
  return dir
}

afterAll(async () => {
  // only the children this suite started, by their own handle; a stopping CLI child flushes and
  // signs its audit log, slowly on a loaded machine: wait for it to exit before removing its dir
  const running = children.filter((c) => c.exitCode === null && c.signalCode === null)
  for (const c of running) c.kill('SIGTERM')
  await Promise.all(
    running.map(
      (c) =>
        new Promise<void>((done) => {
          if (c.exitCode !== null || c.signalCode !== null) return done()
          const timer = setTimeout(() => {
            c.kill('SIGKILL')
            done()
          }, 20_000)
          c.once('exit', () => {
            clearTimeout(timer)
            done()
          })
        }),
    ),
  )
  for (const d of dirs) rmSync(d, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 })
}, 60_000)

// concurrent: each test mostly waits for a node process to start
describe.concurrent('agentmesh CLI', { timeout: 90_000 }, () => {
  it('dev in an empty directory: banner (listening on, preset demo, plugins, storage) and a demo answer without keys', async () => {
    const cwd = project()
    const dataDir = join(cwd, 'data')
    const run = cli(['dev', '--port', '0', '--data-dir', dataDir], cwd)
    const [, url] = await run.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/)
    await run.waitFor(/data dir/)
    const banner = run.out()
    expect(banner).toContain(`AgentMesh ${VERSION} (dev)`)
    expect(banner).toMatch(/preset\s+demo/)
    // the demo preset's feature plugins come first; the vendor last
    expect(banner).toMatch(/plugins\s+(\S+ -> )*vendor:demo\n/)
    expect(banner).toMatch(/storage\s+memory/)
    expect(banner).toContain(dataDir)
    const res = await postJson(url + '/v1/chat/completions', {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hello from the CLI test' }],
    })
    expect(res.status).toBe(200)
    expect((await res.json()).choices[0].message.content).toContain('"hello from the CLI test"')
    expect(res.headers.get('x-agentmesh-vendor')).toBe('demo')
    run.child.kill('SIGTERM')
    expect(await run.exited).toBe(0)
    expect(run.out()).toContain('SIGTERM: shutting down')
  })

  it('config prints the resolved config with secrets masked', async () => {
    const cwd = project({
      'agentmesh.config.ts': `export default { preset: 'solo', port: 9123, vendors: { openai: { apiKey: 'sk-live-do-not-print-0123456789' }, anthropic: { apiKey: 'sk-ant-do-not-print-abcdef' } } }\n`,
    })
    const { code, out, err } = await finished(cli(['config'], cwd))
    expect(err).toBe('')
    expect(code).toBe(0)
    const printed = JSON.parse(out)
    expect(printed).toMatchObject({ preset: 'solo', port: 9123, storage: { driver: 'fs' } })
    expect(printed.plugins.map((p: any) => p.name).filter((n: string) => n.startsWith('vendor:'))).toEqual([
      'vendor:anthropic',
      'vendor:openai',
      'vendor:google',
    ])
    expect(out).not.toContain('do-not-print')
    expect(printed.vendors.openai.apiKey).toMatch(/masked/)
  })

  it('--version and --help', async () => {
    const cwd = project()
    const [version, help, devHelp] = await Promise.all([
      finished(cli(['--version'], cwd)),
      finished(cli(['--help'], cwd)),
      finished(cli(['dev', '--help'], cwd)),
    ])
    expect(version.code).toBe(0)
    expect(version.out.trim()).toContain(VERSION)
    expect(help.code).toBe(0)
    for (const word of ['dev', 'serve', 'config', '--config', '--preset', '--data-dir', '--version'])
      expect(help.out).toContain(word)
    expect(devHelp.code).toBe(0)
    for (const word of ['--port', '--host', '--config', '--preset', '--data-dir']) expect(devHelp.out).toContain(word)
  })

  it('a bad config file exits non-zero with a message naming the field', async () => {
    const cwd = project({ 'agentmesh.config.ts': `export default { preset: 'demo', limits: { bodyBytes: -1 } }\n` })
    const [bad, unknown] = await Promise.all([
      finished(cli(['dev', '--port', '0'], cwd)),
      finished(
        cli(
          ['config', '--config', 'agentmesh.config.ts'],
          project({ 'agentmesh.config.ts': `export default { prot: 1 }\n` }),
        ),
      ),
    ])
    expect(bad.code).not.toBe(0)
    expect(bad.err).toContain('limits.bodyBytes')
    expect(unknown.code).not.toBe(0)
    expect(unknown.err).toContain('unknown field `prot`')
  })

  it('an unknown command exits non-zero', async () => {
    const { code, out, err } = await finished(cli(['deploy'], project()))
    expect(code, out + err).not.toBe(0)
    expect(err, out + err).toContain('deploy')
  })

  it('dev reloads when the config file changes, while a slow stream in flight completes', async () => {
    // the vendor is the mock upstream in this process, so the test holds the stream open until
    // the reload is seen (an event every 2 s), then lets it run out
    const mock = await startMockUpstream({ eventGapMs: 2000 })
    try {
      const blockPath = JSON.stringify(join(ROOT, 'playground/plugins/block-words.ts'))
      const base = `preset: 'solo', storage: { driver: 'memory' }, vendors: { openai: { baseURL: ${JSON.stringify(mock.url)}, apiKey: 'sk-test-cli' } }`
      const v1 = `export default { ${base} }\n`
      const v2 = `import { blockWords } from ${blockPath}\nexport default { ${base}, plugins: [blockWords({ words: ['forbidden'] })] }\n`
      const cwd = project({ 'agentmesh.config.ts': v1 })
      const run = cli(['dev', '--port', '0', '--data-dir', join(cwd, 'data')], cwd)
      const [, url] = await run.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/)
      await run.waitFor(/plugins\s+.*vendor:anthropic -> vendor:openai -> vendor:google/)

      const slow = await postJson(url + '/v1/chat/completions', {
        model: 'gpt-4o-mini',
        stream: true,
        messages: [{ role: 'user', content: 'a forbidden slow stream' }],
      })
      expect(slow.status).toBe(200)
      let streamDone = false
      const body = slow.text().finally(() => (streamDone = true))

      writeFileSync(join(cwd, 'agentmesh.config.ts'), v2)
      await run.waitFor(/config reloaded: plugins block-words -> .*vendor:anthropic/)
      // the reload really happened while the stream was in flight
      expect(streamDone).toBe(false)

      const blocked = await postJson(url + '/v1/chat/completions', {
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'this is forbidden' }],
      })
      expect(blocked.status).toBe(403)
      mock.behaviour.eventGapMs = 0
      const allowed = await postJson(url + '/v1/chat/completions', {
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'this is fine' }],
      })
      expect(allowed.status).toBe(200)
      expect(mock.received.map((r) => r.body.messages[0].content)).toEqual(['a forbidden slow stream', 'this is fine'])

      // the stream that began under the old config finished whole
      const events = sseEvents(await body)
      expect(events.at(-1)!.data).toBe('[DONE]')
      const text = events
        .slice(0, -1)
        .map((e) => JSON.parse(e.data))
        .map((c) => c.choices[0]?.delta?.content ?? '')
        .join('')
      expect(text).toBe(mockText('a forbidden slow stream'))
      expect(run.err()).not.toContain('reload failed')
      run.child.kill('SIGTERM')
    } finally {
      await mock.close()
    }
  })

  it('dev keeps serving the previous config when the new one is invalid', async () => {
    const cwd = project({ 'agentmesh.config.ts': `export default { preset: 'demo' }\n` })
    const run = cli(['dev', '--port', '0', '--data-dir', join(cwd, 'data')], cwd)
    const [, url] = await run.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/)
    writeFileSync(join(cwd, 'agentmesh.config.ts'), `export default { preset: 'demo', limits: { bodyBytes: -1 } }\n`)
    const end = Date.now() + 30_000
    while (!run.err().includes('reload failed') && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
    expect(run.err(), run.out() + run.err()).toMatch(
      /config reload failed, still serving the previous config: .*limits\.bodyBytes/,
    )
    const res = await postJson(url + '/v1/chat/completions', {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'still there?' }],
    })
    expect(res.status).toBe(200)
    run.child.kill('SIGTERM')
  })
})
