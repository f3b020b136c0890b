// What a new user meets first, through the real CLI (issue 12, items 1, 2, 3 and 8): a config in
// a folder of one's own that imports 'agentmesh' with no node_modules, `agentmesh init`, the
// banner's next steps and --open, a busy port, an unknown command, a reader that closes the pipe,
// and `npm test` without redis-server.
import { execFile, spawn, type ChildProcess, type StdioOptions } from 'node:child_process'
import { existsSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { createAgentMesh } from '../core/app.ts'
import { VENDOR_ENV, postJson, tempDir, until } from './helpers/core-harness.ts'

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
const servers: Server[] = []

/** A command in cwd with no vendor keys in its environment; stdout may be left unread ('ignore'd). */
function spawnIn(
  cwd: string,
  command: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; stdio?: StdioOptions } = {},
): Run {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', ...opts.env }
  for (const k of VENDOR_ENV) delete env[k]
  delete env.NODE_ENV
  const child = spawn(command, args, { cwd, env, stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let out = ''
  let err = ''
  child.stdout?.on('data', (d) => (out += d))
  child.stderr?.on('data', (d) => (err += d))
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

const cli = (args: string[], cwd: string, opts: Parameters<typeof spawnIn>[3] = {}) =>
  spawnIn(cwd, process.execPath, [BIN, ...args], opts)

async function finished(run: Run): Promise<{ code: number | null; out: string; err: string }> {
  const code = await run.exited
  return { code, out: run.out(), err: run.err() }
}

function project(files: Record<string, string> = {}): string {
  const dir = tempDir('agentmesh-own-')
  dirs.push(dir)
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
  return dir
}

/** A free port, held by this process until the suite ends, so that it is busy. */
function holdPort(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      servers.push(srv)
      resolve((srv.address() as { port: number }).port)
    })
  })
}

function sh(line: string): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile('/bin/sh', ['-c', line], { timeout: 20_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${line}\n${stderr}`)) : resolve(stdout),
    ),
  )
}

afterAll(() => {
  // only what this suite started, by its own handle
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM')
  for (const s of servers) s.close()
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

const ownConfig = (tag: string, port: number) => `import { defineConfig, definePlugin } from 'agentmesh'
import type { MeshContext } from 'agentmesh'
import { normalise } from 'agentmesh/plugins/normalise'

const tagAnswers = definePlugin({
  name: 'tag-answers',
  hooks: { afterResponse(ctx: MeshContext) { ctx.headers['x-own-project'] = '${tag}' } },
})

export default defineConfig({
  extends: ['agentmesh/presets/demo'],
  port: ${port},
  disable: ['semantic-cache'],
  plugins: [tagAnswers, normalise()],
})
`

describe.concurrent('agentmesh CLI, first run', { timeout: 120_000 }, () => {
  it('dev in a folder of its own (no node_modules): imports from agentmesh, next steps that work as printed, the next free port when the configured one is busy, --open, reload', async () => {
    // the config's port is busy (held here: 8080 itself may come and go on a shared machine), so
    // dev takes the next free one, as it does for the default 8080
    const busy = await holdPort(0)
    const cwd = project({ 'agentmesh.config.ts': ownConfig('v1', busy) })
    // outside the repo, and nothing on the way up could resolve 'agentmesh' the ordinary way
    expect(cwd.startsWith(ROOT)).toBe(false)
    for (let d = cwd; d !== dirname(d); d = dirname(d))
      expect(existsSync(join(d, 'node_modules', 'agentmesh')), d).toBe(false)
    expect(existsSync(join(cwd, 'node_modules'))).toBe(false)

    const opened = join(cwd, 'opened.txt')
    writeFileSync(join(cwd, 'browser.sh'), `#!/bin/sh\necho "$1" >> ${JSON.stringify(opened)}\n`, { mode: 0o755 })
    // listhen opens URLs through xdg-open on Linux, which falls back to $BROWSER with no desktop session
    const linux = process.platform === 'linux'
    const env = {
      BROWSER: join(cwd, 'browser.sh'),
      DISPLAY: '',
      WAYLAND_DISPLAY: '',
      XDG_CURRENT_DESKTOP: '',
      DESKTOP_SESSION: '',
    }
    const run = cli(['dev', '--data-dir', join(cwd, 'data'), ...(linux ? ['--open'] : [])], cwd, { env })
    const [, url] = await run.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/)
    await run.waitFor(/agentmesh\/events/)
    const banner = run.out()
    expect(new URL(url!).port).not.toBe(String(busy))
    expect(banner).toContain(`port ${busy} is in use, so dev took ${new URL(url!).port}`)
    expect(banner).toMatch(/plugins\s+.*tag-answers.* -> vendor:demo\n/)
    expect(banner).toContain(`config    agentmesh.config.ts`)

    // the next steps, after "listening on", each as a line to copy
    const after = banner.slice(banner.indexOf('listening on'))
    expect(after).toContain(`ANTHROPIC_BASE_URL=${url} claude`)
    expect(after).toContain(`OPENAI_BASE_URL=${url}/v1`)
    const curlLine = /^\s*(curl \S+\/v1\/chat\/completions .*)$/m.exec(after)![1]!
    expect(curlLine).toContain(`-H 'content-type: application/json'`)
    const answer = JSON.parse(await sh(curlLine))
    expect(answer.choices[0].message.content).toContain('Hello from AgentMesh')
    const eventsLine = /^\s*curl -N (\S+)/m.exec(after)!
    expect(eventsLine[1]).toBe(`${url}/agentmesh/events`)
    const events = new AbortController()
    const stream = await fetch(eventsLine[1]!, { signal: events.signal })
    expect(stream.status).toBe(200)
    expect(stream.headers.get('content-type')).toContain('text/event-stream')
    events.abort()

    // the config's own plugin runs, and the rest of the pipeline with it
    const res = await postJson(url + '/v1/chat/completions', {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'from my own project' }],
    })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-own-project')).toBe('v1')
    if (linux) {
      await until(() => existsSync(opened), 'the browser to be opened', 20_000)
      expect(readFileSync(opened, 'utf8').trim()).toBe(`${url}/agentmesh/events`)
    }

    // a reload loads the edited config with the same imports
    writeFileSync(join(cwd, 'agentmesh.config.ts'), ownConfig('v2', busy))
    await run.waitFor(/config reloaded: plugins .*tag-answers/)
    const again = await postJson(url + '/v1/chat/completions', {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'after the reload' }],
    })
    expect(again.headers.get('x-own-project')).toBe('v2')
    expect(run.err()).toBe('')
    run.child.kill('SIGTERM')
    expect(await run.exited).toBe(0)
  })

  it('init writes a config that loads outside the repo, adds the data dir to .gitignore once, and refuses to overwrite', async () => {
    const cwd = project({ '.gitignore': 'node_modules' })
    const first = await finished(cli(['init', '--preset', 'team'], cwd))
    expect(first.code, first.out + first.err).toBe(0)
    const written = readFileSync(join(cwd, 'agentmesh.config.ts'), 'utf8')
    expect(written).toContain(`import { defineConfig } from 'agentmesh'`)
    expect(written).toContain(`preset: 'team'`)
    expect(readFileSync(join(cwd, '.gitignore'), 'utf8')).toBe(
      'node_modules\n# AgentMesh data: keys, audit log, cache\n/.agentmesh/\n',
    )

    const [second, config] = await Promise.all([
      finished(cli(['init', '--preset', 'solo'], cwd)),
      finished(cli(['config'], cwd)),
    ])
    expect(second.code).toBe(1)
    expect(second.err).toMatch(/agentmesh\.config\.ts already exists; not overwriting it/)
    expect(readFileSync(join(cwd, 'agentmesh.config.ts'), 'utf8')).toBe(written)
    expect(readFileSync(join(cwd, '.gitignore'), 'utf8').match(/\.agentmesh/g)).toHaveLength(1)
    expect(config.code, config.err).toBe(0)
    expect(JSON.parse(config.out)).toMatchObject({ preset: 'team', sources: ['agentmesh.config.ts'] })
  })

  it.skipIf(!existsSync('/usr/bin/script'))('init on a terminal asks for the preset', async () => {
    const cwd = project()
    // script(1) gives the CLI a terminal; the answers go through it as typed
    const run = spawnIn(
      cwd,
      '/usr/bin/script',
      ['-qec', `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} init`, '/dev/null'],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    )
    await run.waitFor(/preset \(demo, solo, team\) \[demo\]:/)
    run.child.stdin!.write('nope\r')
    await run.waitFor(/"nope" is not a preset/)
    run.child.stdin!.write('solo\r')
    await run.waitFor(/wrote agentmesh\.config\.ts \(preset solo\)/)
    expect(await run.exited).toBe(0)
    run.child.stdin!.end()
    expect(readFileSync(join(cwd, 'agentmesh.config.ts'), 'utf8')).toContain(`preset: 'solo'`)
  })

  it('a busy port is one line and exit 1, in dev and serve', async () => {
    const port = await holdPort(0)
    const cwd = project()
    const [dev, serve] = await Promise.all([
      finished(cli(['dev', '--port', String(port)], cwd)),
      finished(cli(['serve', '--port', String(port), '--data-dir', join(cwd, 'serve')], cwd)),
    ])
    for (const r of [dev, serve]) {
      expect(r.code, r.out + r.err).toBe(1)
      const m = /^agentmesh: port (\d+) is in use; try --port (\d+)\n$/.exec(r.err)
      expect(m, r.err).not.toBeNull()
      expect(Number(m![1])).toBe(port)
      expect(Number(m![2])).toBeGreaterThan(port)
    }
  })

  it('an unknown command names itself and lists the commands, exit 2', async () => {
    const { code, out, err } = await finished(cli(['frobnicate'], project()))
    expect(code, out + err).toBe(2)
    expect(out).toBe('')
    expect(err).toMatch(/^agentmesh: unknown command "frobnicate"\n/)
    for (const c of ['dev', 'serve', 'config', 'init', 'keys <action> [id]', 'usage', 'audit <action>'])
      expect(err).toMatch(new RegExp(`^  ${c.replace(/[[\]]/g, '\\$&')}\\s+\\S`, 'm'))
  })

  it('commands that print exit quietly when the reader closes the pipe', async () => {
    const cwd = project()
    const dataDir = join(cwd, 'data')
    const config = {
      preset: 'demo' as const,
      storage: { driver: 'fs' as const },
      dataDir,
      disable: ['semantic-cache'],
      log: { level: 'silent' as const },
    }
    writeFileSync(join(cwd, 'agentmesh.config.ts'), `export default ${JSON.stringify(config)}\n`)
    // something to export and count: three answered requests in the audit log and the counters
    const mesh = await createAgentMesh(config)
    for (const q of ['one', 'two', 'three']) {
      const res = await mesh.app.fetch(
        new Request('http://127.0.0.1/v1/chat/completions', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: q }] }),
        }),
      )
      expect(res.status).toBe(200)
      await res.text()
    }
    await mesh.close()

    const commands = [['audit', 'export'], ['usage'], ['keys', 'list'], ['config']]
    const runs = commands.map((args) => {
      const run = cli(args, cwd)
      // the reader is gone before the first line is written (`| head -0`)
      run.child.stdout!.destroy()
      return finished(run)
    })
    for (const [i, r] of (await Promise.all(runs)).entries()) {
      expect({ command: commands[i]!.join(' '), code: r.code, err: r.err }).toEqual({
        command: commands[i]!.join(' '),
        code: 0,
        err: '',
      })
    }
  })

  it('npm test without redis-server on PATH says to install it, as its first line', async () => {
    // a PATH with node and sh (npm runs scripts with it) only; the filters select this file with
    // none of its tests, so nothing else could run if the check let it through (vitest needs a
    // file to run before it starts its global setup)
    const bin = project()
    symlinkSync(process.execPath, join(bin, 'node'))
    symlinkSync('/bin/sh', join(bin, 'sh'))
    const npm = join(dirname(process.execPath), '../lib/node_modules/npm/bin/npm-cli.js')
    const run = spawnIn(
      ROOT,
      '/bin/sh',
      [
        '-c',
        'exec "$@" 2>&1',
        'sh',
        process.execPath,
        npm,
        'test',
        '--',
        'test/core-cli-first-run.test.ts',
        '-t',
        'no test has this name',
      ],
      { env: { PATH: bin, FORCE_COLOR: '0', npm_config_update_notifier: 'false' } },
    )
    const { code, out } = await finished(run)
    expect(code).not.toBe(0)
    // npm's own "> agentmesh@0.1.0 test" header comes before the script's output
    const lines = out.split('\n').filter((l) => l.trim() && !l.startsWith('> '))
    expect(lines[0], out).toMatch(/redis-server.*install/i)
    expect(out).not.toMatch(/\bRUN\b|No test files|Error:/)
  })
})
