// The audit log on a sick store: a full disk (ENOSPC injected through the fs layer, partial
// writes included) and redis going away. The proxy stays up, refuses new requests with a 503
// storage_unavailable in the client's protocol (or serves them, if configured), says so in
// health, recovers by itself, and loses no entry of a request it answered.
import { randomUUID } from 'node:crypto'
import { chmodSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest'
import { createAgentMesh } from '../core/app.ts'
import type { Logger } from '../core/types.ts'
import { demo } from '../plugins/vendors/demo.ts'
import {
  audit,
  fsIo,
  fsLogSource,
  listLogFiles,
  loadPublicKeys,
  parseLine,
  redisLogSource,
  verifyAuditDir,
  verifyLog,
  type AuditOptions,
  type FsIo,
} from '../plugins/audit/index.ts'
import { closedPort, until } from './helpers/core-harness.ts'
import { tempDir } from './audit-helpers.ts'

const cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn()
})

// nothing may reach the process's last-resort handlers, whatever the store does
const uncaught: unknown[] = []
const onUncaught = (err: unknown) => void uncaught.push(err)
beforeEach(() => {
  uncaught.length = 0
  process.on('uncaughtException', onUncaught)
  process.on('unhandledRejection', onUncaught)
  cleanup.push(() => {
    process.off('uncaughtException', onUncaught)
    process.off('unhandledRejection', onUncaught)
    expect(uncaught).toEqual([])
  })
})

/** A disk with `free` bytes left: an append writes what fits, then fails with ENOSPC (as a real full disk does). */
function fullDisk() {
  const real: FsIo = { ...fsIo }
  const disk = { free: Infinity, refusals: 0 }
  fsIo.append = async (fh, data) => {
    const bytes = Buffer.byteLength(data)
    if (bytes <= disk.free) {
      disk.free -= bytes
      return real.append(fh, data)
    }
    const fits = Buffer.from(data).subarray(0, Math.max(0, disk.free))
    disk.free = 0
    disk.refusals++
    if (fits.length) await real.append(fh, fits.toString('latin1'))
    throw Object.assign(new Error('ENOSPC: no space left on device, write'), {
      code: 'ENOSPC',
      errno: -28,
      syscall: 'write',
    })
  }
  cleanup.push(() => void Object.assign(fsIo, real))
  return disk
}

function capturingLogger() {
  const lines: Array<{ level: string; msg: string }> = []
  const at = (level: string) => (msg: string) => void lines.push({ level, msg })
  const logger: Logger = { info: at('info'), warn: at('warn'), error: at('error'), debug: () => {} }
  return { logger, lines, text: () => lines.map((l) => `${l.level}: ${l.msg}`).join('\n') }
}

/** A proxy on a real port; checkpoints by count only unless asked (a test counts records). */
async function proxy(options: AuditOptions) {
  const dataDir = tempDir()
  const log = capturingLogger()
  const instance = await createAgentMesh(
    {
      storage: { driver: 'memory' },
      dataDir,
      plugins: [audit({ checkpointSeconds: 0, ...options }), demo({ latencyMs: 0, chunkDelayMs: 0 })],
    },
    { logger: log.logger },
  )
  const server = await instance.listen({ port: 0, host: '127.0.0.1' })
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    await server.close()
    await instance.close()
  }
  cleanup.push(async () => {
    await close()
    rmSync(dataDir, { recursive: true, force: true })
  })
  return { url: server.url, instance, dataDir, auditDir: join(dataDir, 'audit'), log, close }
}

const openai = (url: string, i: number) =>
  fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `q${i}` }] }),
  })
const anthropic = (url: string, i: number, stream = false) =>
  fetch(`${url}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'claude-haiku-4-5',
      max_tokens: 20,
      stream,
      messages: [{ role: 'user', content: `a${i}` }],
    }),
  })

async function health(url: string) {
  const h = await (await fetch(`${url}/agentmesh/health`)).json()
  return h.checks.audit as { ok: boolean; message?: string; since?: number }
}

/** Poll until the audit health check says `ok` (the writer learns of a failure on its next write). */
async function untilHealth(url: string, ok: boolean, timeoutMs = 10_000) {
  const end = Date.now() + timeoutMs
  for (;;) {
    const h = await health(url)
    if (h.ok === ok) return h
    if (Date.now() > end) throw new Error(`audit health stayed ${JSON.stringify(h)}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

function entryIds(lines: string[]): string[] {
  return lines
    .map((l) => parseLine(l)!.record() as any)
    .filter((r) => r.kind === 'request')
    .map((r) => r.id)
}

function fsLines(auditDir: string): string[] {
  return listLogFiles(auditDir).flatMap((f) => readFileSync(f.path, 'utf8').split('\n').filter(Boolean))
}

describe('a full disk (ENOSPC)', () => {
  it('stays up, answers 503 storage_unavailable in each protocol, says so in health, recovers by itself; no answered entry is lost', async () => {
    const disk = fullDisk()
    const p = await proxy({ checkpointEvery: 2 })
    const answered: string[] = []
    const ok = async (res: Response) => {
      expect(res.status).toBe(200)
      await res.text()
      answered.push(res.headers.get('x-agentmesh-request-id')!)
    }
    await ok(await openai(p.url, 1))
    await ok(await openai(p.url, 2))
    await until(() => fsLines(p.auditDir).length === 3, 'the first entries on disk')

    // room for part of the next batch: the entry line lands, its checkpoint is cut mid-line
    disk.free = fsLines(p.auditDir)[0]!.length + 100
    await ok(await openai(p.url, 3))
    await ok(await anthropic(p.url, 4, true))
    const h = await untilHealth(p.url, false)
    expect(h.message).toMatch(
      /^audit log cannot be written: ENOSPC: no space left on device, write; \d+ entries held in memory; new requests are refused/,
    )
    expect(h.since).toBeGreaterThan(Date.now() - 60_000)
    expect((await fetch(`${p.url}/agentmesh/ready`)).status).toBe(503)

    const refusedOpenai = await openai(p.url, 5)
    expect(refusedOpenai.status).toBe(503)
    expect(await refusedOpenai.json()).toEqual({
      error: expect.objectContaining({
        type: 'storage_unavailable',
        message: expect.stringMatching(/^audit log cannot be written: ENOSPC/),
      }),
    })
    const refusedAnthropic = await anthropic(p.url, 6)
    expect(refusedAnthropic.status).toBe(503)
    expect(await refusedAnthropic.json()).toEqual({
      type: 'error',
      error: expect.objectContaining({
        type: 'storage_unavailable',
        message: expect.stringMatching(/^audit log cannot be written: ENOSPC/),
      }),
    })
    // a failing write is retried, not logged per retry
    await new Promise((r) => setTimeout(r, 1500))
    expect(disk.refusals).toBeGreaterThan(1)
    expect(p.log.lines.filter((l) => /cannot write the audit log/.test(l.msg))).toHaveLength(1)

    disk.free = Infinity
    await untilHealth(p.url, true)
    await ok(await openai(p.url, 7))
    await p.close()

    const lines = fsLines(p.auditDir)
    expect(entryIds(lines)).toEqual(answered)
    const r = await verifyAuditDir(p.auditDir)
    expect(r).toMatchObject({ ok: true, entries: answered.length, unsignedTail: 0, heads: 1 })
    expect(r.outages).toEqual([expect.objectContaining({ refused: 2, dropped: 0 })])
    expect(p.log.text()).toMatch(
      /warn: audit: the audit log is writable again after [\d.]+ s; writing the \d+ entries held meanwhile; 2 requests were refused/,
    )
  })

  it("onFailure 'serve' answers while the log cannot be written; entries past queueMax are dropped and counted", async () => {
    const disk = fullDisk()
    const p = await proxy({ onFailure: 'serve', queueMax: 3, checkpointEvery: 100 })
    disk.free = 0
    const ids: string[] = []
    for (let i = 0; i < 12; i++) {
      const res = await openai(p.url, i)
      expect(res.status).toBe(200)
      ids.push(res.headers.get('x-agentmesh-request-id')!)
      if (i === 0) await untilHealth(p.url, false)
    }
    expect((await health(p.url)).message).toMatch(
      /entries held in memory, \d+ dropped; requests are answered unaudited \(onFailure serve\)/,
    )
    disk.free = Infinity
    await untilHealth(p.url, true)
    await p.close()
    const written = entryIds(fsLines(p.auditDir))
    const r = await verifyAuditDir(p.auditDir)
    expect(r.ok).toBe(true)
    expect(r.outages).toHaveLength(1)
    expect(written.length + r.outages[0]!.dropped).toBe(12)
    expect(r.outages[0]!.dropped).toBeGreaterThan(0)
    // what was kept is the oldest, in order
    expect(written).toEqual(ids.slice(0, written.length))
  })

  it('a full disk at shutdown: close gives up after its deadline and says how many entries it could not write', async () => {
    const disk = fullDisk()
    const p = await proxy({ checkpointEvery: 100 })
    disk.free = 0
    expect((await openai(p.url, 1)).status).toBe(200)
    await untilHealth(p.url, false)
    const started = Date.now()
    await p.instance.close()
    expect(Date.now() - started).toBeLessThan(15_000)
    expect(p.log.text()).toMatch(/error: audit: 1 entries could not be written before shutdown/)
  }, 30_000)

  it('audit files are 0600 and the audit dir 0700, also when they were created looser', async () => {
    const dataDir = tempDir()
    cleanup.push(() => rmSync(dataDir, { recursive: true, force: true }))
    const auditDir = join(dataDir, 'audit')
    mkdirSync(auditDir, { mode: 0o755 })
    chmodSync(auditDir, 0o755)
    writeFileSync(join(auditDir, 'audit-000001-20250101.jsonl'), '', { mode: 0o644 })
    const m = await createAgentMesh({
      storage: { driver: 'memory' },
      log: { level: 'silent' },
      dataDir,
      plugins: [audit(), demo({ latencyMs: 0 })],
    })
    await (
      await m.fetch(
        new Request('http://proxy/v1/chat/completions', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
        }),
      )
    ).text()
    expect(readdirSync(auditDir)).toContain('writer.lock')
    expect(statSync(join(auditDir, 'writer.lock')).mode & 0o777).toBe(0o600)
    await m.close()
    expect(readdirSync(auditDir).sort()).toEqual([
      'audit-000001-20250101.jsonl',
      expect.stringMatching(/^audit-000002-\d{8}\.jsonl$/),
      'head.json',
      'private-key.pem',
      'public-key.pem',
    ])
    expect(statSync(auditDir).mode & 0o777).toBe(0o700)
    for (const f of readdirSync(auditDir)) expect([f, statSync(join(auditDir, f)).mode & 0o777]).toEqual([f, 0o600])
  })

  it('validates onFailure and witness with messages that name the field', () => {
    expect(() => audit({ onFailure: 'ignore' as any })).toThrow(
      'audit: onFailure must be "refuse" or "serve", got "ignore"',
    )
    expect(() => audit({ witness: {} })).toThrow('audit: witness needs a url or a command')
    expect(() => audit({ witness: { url: 'ftp://x' } })).toThrow(
      'audit: witness.url must be an http:// or https:// URL, got "ftp://x"',
    )
    expect(() => audit({ witness: { command: ' ' } })).toThrow(
      'audit: witness.command must be a non-empty shell command',
    )
    expect(() => audit({ witness: { url: 'https://x.test/h', cmd: 'x' } as any })).toThrow(
      'audit: unknown option "witness.cmd"',
    )
    expect(
      audit({ witness: { url: 'https://witness.test/hook?token=s3cret', command: 'curl -H "auth: s3cret"' } }).options,
    ).toMatchObject({ witness: { url: 'https://witness.test/***', command: '***' } })
  })
})

/** A TCP hop in front of the test redis that can be cut and restored on the same port: "redis down". */
async function cuttableRedis(target: string) {
  const t = new URL(target)
  const port = await closedPort()
  const sockets = new Set<Socket>()
  let server: Server | undefined
  const hop = {
    url: `redis://127.0.0.1:${port}`,
    async up() {
      server = createServer((client) => {
        const upstream = connect(Number(t.port), t.hostname)
        for (const s of [client, upstream]) {
          sockets.add(s)
          s.on('error', () => {})
          s.on('close', () => {
            client.destroy()
            upstream.destroy()
            sockets.delete(s)
          })
        }
        client.pipe(upstream).pipe(client)
      })
      await new Promise<void>((r) => server!.listen(port, '127.0.0.1', r))
    },
    async down() {
      const s = server
      server = undefined
      for (const sock of sockets) sock.destroy()
      if (s) await new Promise((r) => s.close(r))
    },
  }
  cleanup.push(() => hop.down())
  return hop
}

describe('redis down (redis store)', () => {
  const redisUrl = inject('redisUrl')

  it('refuses with 503 while redis is unreachable, recovers when it is back, and writes every answered entry', async () => {
    const hop = await cuttableRedis(redisUrl)
    await hop.up()
    const prefix = `test:${randomUUID()}:`
    const p = await proxy({ store: 'redis', redis: { url: hop.url, prefix }, checkpointEvery: 3 })
    const answered: string[] = []
    for (let i = 0; i < 2; i++) {
      const res = await openai(p.url, i)
      expect(res.status).toBe(200)
      answered.push(res.headers.get('x-agentmesh-request-id')!)
    }
    await hop.down()
    const inFlight = await openai(p.url, 2)
    expect(inFlight.status).toBe(200)
    answered.push(inFlight.headers.get('x-agentmesh-request-id')!)
    expect((await untilHealth(p.url, false, 20_000)).message).toMatch(/^audit log cannot be written: /)
    const refused = await anthropic(p.url, 3)
    expect(refused.status).toBe(503)
    expect((await refused.json()).error.type).toBe('storage_unavailable')
    await hop.up()
    await untilHealth(p.url, true, 20_000)
    const after = await openai(p.url, 4)
    expect(after.status).toBe(200)
    answered.push(after.headers.get('x-agentmesh-request-id')!)
    await p.close()
    const source = redisLogSource({ url: redisUrl, prefix })
    const r = await verifyLog(source, { publicKeys: loadPublicKeys(undefined, p.auditDir) })
    expect(r).toMatchObject({ ok: true, entries: 4, unsignedTail: 0, heads: 1 })
    const lines: string[] = []
    for await (const chunk of source.chunks()) for (const l of chunk) lines.push(l.data.toString())
    expect(entryIds(lines)).toEqual(answered)
    expect(p.log.lines.filter((l) => /cannot write the audit log/.test(l.msg))).toHaveLength(1)
  }, 60_000)

  it('redis unreachable at start: the proxy starts anyway, refuses, and recovers when redis comes up', async () => {
    const hop = await cuttableRedis(redisUrl)
    const prefix = `test:${randomUUID()}:`
    const p = await proxy({ store: 'redis', redis: { url: hop.url, prefix } })
    expect((await health(p.url)).ok).toBe(false)
    expect((await openai(p.url, 1)).status).toBe(503)
    await hop.up()
    await untilHealth(p.url, true, 20_000)
    expect((await openai(p.url, 2)).status).toBe(200)
    await p.close()
    const r = await verifyLog(redisLogSource({ url: redisUrl, prefix }), {
      publicKeys: loadPublicKeys(undefined, p.auditDir),
    })
    expect(r).toMatchObject({ ok: true, entries: 1 })
    expect(r.outages).toEqual([expect.objectContaining({ refused: 1 })])
  }, 60_000)
})

describe('verify after a failure on fs', () => {
  it('the partial write left by ENOSPC is finished, not duplicated: one chain, each entry once', async () => {
    const disk = fullDisk()
    const p = await proxy({ checkpointEvery: 1000 })
    for (let round = 0; round < 3; round++) {
      disk.free = 700
      const res = await openai(p.url, round)
      expect(res.status).toBe(200)
      await untilHealth(p.url, false)
      disk.free = Infinity
      await untilHealth(p.url, true)
    }
    await p.close()
    const r = await verifyLog(fsLogSource(p.auditDir), { publicKeys: loadPublicKeys(undefined, p.auditDir) })
    expect(r).toMatchObject({ ok: true, entries: 3 })
    expect(new Set(entryIds(fsLines(p.auditDir))).size).toBe(3)
  }, 60_000)
})
