// A real full disk: the proxy (the CLI, in its own process) writes its data dir on a 1 MiB tmpfs
// that a filler file then fills. Mounting needs root; elsewhere this suite is skipped and
// audit-failure.test.ts covers the same path with an injected ENOSPC.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { appendFileSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { listLogFiles, parseLine, verifyAuditDir } from '../plugins/audit/index.ts'
import { freePort } from './helpers/ports.ts'

const ROOT = resolve(import.meta.dirname, '..')
const mnt = mkdtempSync(join(tmpdir(), 'agentmesh-tmpfs-'))
const mounted =
  process.getuid?.() === 0 && spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', mnt]).status === 0
if (!mounted) console.warn('audit-disk-full: skipped: cannot mount a tmpfs here (needs root)')

let child: ChildProcess | undefined
afterAll(() => {
  if (child && child.exitCode === null) child.kill('SIGKILL')
  if (mounted) spawnSync('umount', ['-l', mnt])
  rmSync(mnt, { recursive: true, force: true })
})

/** Fill the file system: big chunks, then smaller, until even one byte does not fit. */
function fill(file: string): void {
  for (let size = 64 * 1024; size >= 1; size = Math.floor(size / 4)) {
    try {
      for (;;) appendFileSync(file, Buffer.alloc(size))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
    }
  }
}

async function start(dataDir: string, config: string) {
  const port = await freePort()
  child = spawn(
    process.execPath,
    [join(ROOT, 'bin', 'agentmesh.mjs'), 'serve', '--port', String(port), '--data-dir', dataDir, '--config', config],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (out += d))
  const exited = new Promise<number | null>((ok) => child!.once('exit', (code) => ok(code)))
  const deadline = Date.now() + 30_000
  while (!/listening on/.test(out) || !/data dir/.test(out)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`proxy did not start:\n${out}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  return { url: `http://127.0.0.1:${port}`, exited, output: () => out }
}

describe.skipIf(!mounted)('a real full disk (tmpfs), the proxy in its own process', () => {
  it('stays up and refuses with 503 while the disk is full, recovers when space returns; every answered request is in a log that verifies', async () => {
    const dataDir = join(mnt, 'data')
    const config = join(mnt, 'agentmesh.config.ts')
    writeFileSync(
      config,
      `import { audit } from ${JSON.stringify(join(ROOT, 'plugins/audit/index.ts'))}\nexport default { preset: 'demo', storage: { driver: 'memory' }, disable: ['semantic-cache', 'exact-cache'], plugins: [audit({ checkpointEvery: 5 })] }\n`,
    )
    const p = await start(dataDir, config)
    const answered: string[] = []
    const ask = async (i: number, protocol: 'openai' | 'anthropic' = 'openai') => {
      const res =
        protocol === 'openai'
          ? await fetch(`${p.url}/v1/chat/completions`, {
              method: 'POST',
              headers: { 'content-type': 'application/json', 'x-agentmesh-team': 'disk' },
              body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `disk ${i}` }] }),
            })
          : await fetch(`${p.url}/v1/messages`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({
                model: 'claude-haiku-4-5',
                max_tokens: 16,
                messages: [{ role: 'user', content: `disk ${i}` }],
              }),
            })
      const body = await res.json()
      if (res.status === 200) answered.push(res.headers.get('x-agentmesh-request-id')!)
      return { status: res.status, body }
    }
    for (let i = 0; i < 5; i++) expect((await ask(i)).status).toBe(200)

    const filler = join(mnt, 'filler')
    fill(filler)
    // entries may still fit in the log file's last page; requests go on until the writer meets the wall
    let refused: { status: number; body: any } | undefined
    for (let i = 5; i < 200 && !refused; i++) {
      const r = await ask(i)
      if (r.status === 503) refused = r
      else expect(r.status).toBe(200)
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(refused?.body).toEqual({
      error: expect.objectContaining({
        type: 'storage_unavailable',
        message: expect.stringMatching(/^audit log cannot be written: ENOSPC/),
      }),
    })
    expect(await ask(1000, 'anthropic')).toEqual({
      status: 503,
      body: { type: 'error', error: expect.objectContaining({ type: 'storage_unavailable' }) },
    })
    const health = await (await fetch(`${p.url}/agentmesh/health`)).json()
    expect(health.checks.audit).toMatchObject({ ok: false, message: expect.stringMatching(/ENOSPC/) })
    expect(child!.exitCode).toBeNull()

    unlinkSync(filler)
    const deadline = Date.now() + 15_000
    while (!(await (await fetch(`${p.url}/agentmesh/health`)).json()).checks.audit.ok) {
      if (Date.now() > deadline) throw new Error(`no recovery:\n${p.output()}`)
      await new Promise((r) => setTimeout(r, 50))
    }
    for (let i = 2000; i < 2005; i++) expect((await ask(i)).status).toBe(200)
    child!.kill('SIGTERM')
    expect(await p.exited).toBe(0)
    expect(p.output().match(/cannot write the audit log/g)).toHaveLength(1)

    const auditDir = join(dataDir, 'audit')
    const r = await verifyAuditDir(auditDir)
    expect(r).toMatchObject({ ok: true, unsignedTail: 0, tornTail: false, heads: 1 })
    const ids = listLogFiles(auditDir)
      .flatMap((f) => readFileSync(f.path, 'utf8').split('\n').filter(Boolean))
      .map((l) => parseLine(l)!.record() as any)
      .filter((e) => e.kind === 'request')
      .map((e) => e.id)
    expect(ids).toEqual(answered)
    expect(r.outages).toHaveLength(1)
  }, 120_000)
})
