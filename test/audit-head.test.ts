// Cutting the audit log is caught: the signed head kept beside the log, in mesh storage and with
// a witness, against truncation, emptying and deletion; a tail left unsigned by a crash is sealed
// as recovered, reported apart, and fails --strict.
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { appendFileSync, existsSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest'
import { createAgentMesh } from '../core/app.ts'
import type { Logger, MeshConfig } from '../core/types.ts'
import { demo } from '../plugins/vendors/demo.ts'
import {
  audit,
  checkHeadSignature,
  formatVerifyResult,
  fsStore,
  listLogFiles,
  loadSigner,
  redisKeys,
  redisLogSource,
  redisStore,
  verifyAuditDir,
  verifyLog,
  type AuditOptions,
  type Signer,
} from '../plugins/audit/index.ts'
import { hashOf, readSingleLog, recordOf, reseal, tempDir, writeEntries, writeLines } from './audit-helpers.ts'

/** the demo preset's other feature plugins: these tests need the audit plugin and a vendor only */

const dirs: string[] = []
function newDir() {
  const d = tempDir()
  dirs.push(d)
  return d
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

/** n entries through the real writer, a checkpoint after every `every`; line k holds seq k. */
async function signedLog(n = 20, every = 5) {
  const dir = newDir()
  const signer = loadSigner(dir)
  await writeEntries(fsStore({ dir }), signer, n, { checkpointEvery: every })
  const { path, lines } = readSingleLog(dir)
  return { dir, signer, path, lines }
}

/** `agentmesh audit verify` as the CLI runs it: a mesh in command mode on the same data dir and storage. */
async function verifyCommand(
  dataDir: string,
  opts: Record<string, unknown> = {},
  config: MeshConfig = {},
  options: AuditOptions = {},
) {
  const m = await createAgentMesh(
    { storage: { driver: 'memory' }, log: { level: 'silent' }, dataDir, ...config, plugins: [audit(options)] },
    { mode: 'command' },
  )
  const out: string[] = []
  try {
    const cmd = m.plugins.find((p) => p.name === 'audit')!.commands![0]!
    const code = await cmd.run({ mesh: m.mesh, args: ['verify'], options: opts, print: (l) => out.push(l) })
    return { code: code ?? 0, out }
  } finally {
    await m.close()
  }
}

/** A proxy on fs storage in dataDir (so its storage outlives it), answering `n` requests. */
async function proxyRun(dataDir: string, n: number, options: AuditOptions = {}) {
  const m = await createAgentMesh({
    storage: { driver: 'fs' },
    log: { level: 'silent' },
    dataDir,
    plugins: [audit({ checkpointEvery: 4, checkpointSeconds: 0, ...options }), demo({ latencyMs: 0 })],
  })
  for (let i = 0; i < n; i++) {
    const res = await m.fetch(
      new Request('http://proxy/v1/chat/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `q${i}` }] }),
      }),
    )
    expect(res.status).toBe(200)
  }
  await m.close()
  const auditDir = join(dataDir, 'audit')
  return { auditDir, ...readSingleLog(auditDir) }
}

describe('verify fails when the log was cut (fs)', () => {
  it('cut at a checkpoint (459 records gone): the rest ends signed, verify still fails', async () => {
    const { dir, path, lines } = await signedLog(1000, 50)
    expect(lines).toHaveLength(1020)
    expect(recordOf(lines[560]!)).toMatchObject({ kind: 'checkpoint', seq: 561 })
    writeLines(path, lines.slice(0, 561))
    const r = await verifyAuditDir(dir)
    expect(r.ok).toBe(false)
    expect(r.problem).toMatchObject({ kind: 'truncated', line: 562, seq: 562 })
    expect(formatVerifyResult(r)[0]).toMatch(
      /^FAIL truncated at audit-000001-\d{8}\.jsonl:562 \(seq 562\): the log ends at seq 561, but the signed head in .*head\.json \(seq 1020, [^)]+\) is past it: records seq 562\.\.1020 \(459\) were cut off the end$/,
    )
  })

  it('emptied: fails, naming the head that shows records were written', async () => {
    const { dir, path } = await signedLog()
    truncateSync(path, 0)
    const r = await verifyAuditDir(dir)
    expect(r.problem).toMatchObject({ kind: 'truncated' })
    expect(r.problem!.message).toMatch(
      /the log is empty, but the signed head in .*head\.json \(seq 24, [^)]+\) shows 24 records were written: the log was emptied or its files deleted/,
    )
  })

  it('the log file deleted: fails the same way', async () => {
    const { dir, path } = await signedLog()
    unlinkSync(path)
    const r = await verifyAuditDir(dir)
    expect(r.problem).toMatchObject({ kind: 'truncated' })
    expect(r.problem!.message).toMatch(/the log is empty/)
  })

  it('the last lines dropped, last checkpoint included: fails without --strict', async () => {
    const dataDir = newDir()
    const { auditDir, path, lines } = await proxyRun(dataDir, 10)
    // 10 entries, checkpoints after 4 and 8 and a final one: seq 5, 10 and 13
    expect(recordOf(lines.at(-1)!)).toMatchObject({ kind: 'checkpoint', seq: 13 })
    writeLines(path, lines.slice(0, 11))
    for (const strict of [false, true]) {
      const r = await verifyCommand(dataDir, strict ? { strict: true } : {})
      expect(r.code).toBe(1)
      expect(r.out[0]).toMatch(
        /^FAIL truncated at audit-000001-\d{8}\.jsonl:12 \(seq 12\): the log ends at seq 11, but the signed head in .*(head\.json|storage key audit:head:[0-9a-f]{16}) \(seq 13/,
      )
    }
    expect((await verifyAuditDir(auditDir)).problem?.kind).toBe('truncated')
  })

  it('the chain does not reach the head: cut and re-chained past it', async () => {
    const { dir, path, lines } = await signedLog()
    const forged = lines.slice(0, 12)
    for (let seq = 13; seq <= 30; seq++)
      forged.push(
        reseal(lines[12]!, (r) => Object.assign(r, { seq, prev: hashOf(forged.at(-1)!), id: `forged-${seq}` })),
      )
    writeLines(path, forged)
    const r = await verifyAuditDir(dir)
    expect(r.problem).toMatchObject({ kind: 'diverged', seq: 24, line: 24 })
    expect(r.problem!.message).toMatch(
      /this record is not the checkpoint the signed head in .*head\.json \(seq 24, [^)]+\) names: the log was cut and rewritten from before seq 24, or replaced/,
    )
  })

  it('a head file edited to match a cut log is refused (its signature covers seq)', async () => {
    const { dir, path, lines } = await signedLog()
    writeLines(path, lines.slice(0, 12))
    const headFile = join(dir, 'head.json')
    const head = JSON.parse(readFileSync(headFile, 'utf8'))
    writeFileSync(headFile, JSON.stringify({ ...head, seq: 12, hash: hashOf(lines[11]!) }))
    const r = await verifyAuditDir(dir)
    expect(r.problem).toMatchObject({ kind: 'bad-head', file: headFile })
    expect(r.problem!.message).toMatch(/signature does not verify/)
  })

  it('cut and head.json removed too: the copy in mesh storage still catches it', async () => {
    const dataDir = newDir()
    const { auditDir, path, lines } = await proxyRun(dataDir, 10)
    writeLines(path, lines.slice(0, 5))
    unlinkSync(join(auditDir, 'head.json'))
    const r = await verifyCommand(dataDir, {}, { storage: { driver: 'fs' } })
    expect(r.code).toBe(1)
    expect(r.out[0]).toMatch(
      /^FAIL truncated at .*: the log ends at seq 5, but the signed head in storage key audit:head:[0-9a-f]{16} \(seq 13, [^)]+\) is past it/,
    )
  })

  it('the whole audit dir deleted: a head in storage makes verify fail (exit 1), not pass or shrug', async () => {
    const dataDir = newDir()
    const { auditDir } = await proxyRun(dataDir, 6)
    const pubkey = join(newDir(), 'public-key.pem')
    writeFileSync(pubkey, readFileSync(join(auditDir, 'public-key.pem')))
    rmSync(auditDir, { recursive: true })
    const r = await verifyCommand(dataDir, {}, { storage: { driver: 'fs' } })
    expect(r.code).toBe(1)
    expect(r.out[0]).toMatch(
      /^FAIL truncated at .*audit: the log is gone \(directory not found\), but the signed head in storage key audit:head:[0-9a-f]{16} \(seq 8, [^)]+\) shows 8 records were written: the log was deleted/,
    )
    // with the public key kept elsewhere, the head's signature is checked as well
    const withKey = await verifyCommand(dataDir, { pubkey }, { storage: { driver: 'fs' } })
    expect(withKey.code).toBe(1)
    expect(withKey.out[0]).toMatch(
      /^FAIL truncated at .*audit \(seq 1\): the log is gone \(directory not found\), but the signed head in storage key/,
    )
  })

  it('a witness copy (--head) catches a cut even when head.json was rolled back to an older genuine head', async () => {
    const dataDir = newDir()
    const witnessFile = join(newDir(), 'heads.jsonl')
    const opts = { witness: { command: `cat >> '${witnessFile}'` } }
    const first = await proxyRun(dataDir, 4, opts)
    const oldHead = readFileSync(join(first.auditDir, 'head.json'), 'utf8')
    const { auditDir, path, lines } = await proxyRun(dataDir, 8, opts)
    expect(readFileSync(witnessFile, 'utf8').trim().split('\n').length).toBeGreaterThanOrEqual(2)
    // cut back to the first run's end and put its head back
    const cutAt = lines.findIndex((l) => hashOf(l) === JSON.parse(oldHead).hash) + 1
    writeLines(path, lines.slice(0, cutAt))
    writeFileSync(join(auditDir, 'head.json'), oldHead)
    expect((await verifyCommand(dataDir)).code).toBe(0)
    const r = await verifyCommand(dataDir, { head: witnessFile })
    expect(r.code).toBe(1)
    expect(r.out[0]).toMatch(
      new RegExp(
        `^FAIL truncated .*the log ends at seq ${cutAt}, but the signed head in ${witnessFile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:\\d+ \\(seq \\d+`,
      ),
    )
  })

  it('a restart on a cut log records the loss in the chain: verify keeps failing after the log grows past the old head', async () => {
    const { dir, signer, path, lines } = await signedLog()
    writeLines(path, lines.slice(0, 12))
    const errors: string[] = []
    await writeEntries(fsStore({ dir }), signer, 30, {
      from: 100,
      checkpointEvery: 5,
      log: { warn: () => {}, error: (m) => errors.push(m) },
    })
    expect(errors.join('\n')).toMatch(
      /audit: the log ends at seq 12, but its signed head of \S+ is at seq 24: records were cut off or replaced while no writer ran/,
    )
    const r = await verifyAuditDir(dir)
    expect(r.problem).toMatchObject({ kind: 'truncated', seq: 13, line: 13 })
    expect(r.problem!.message).toMatch(
      /when a writer opened this log, it no longer reached its signed head \(seq 24, [^)]+\)/,
    )
  })
})

describe('a tail left unsigned by a crash', () => {
  it('one entry rewritten and re-chained after a crash: sealed as recovered, listed apart, --strict fails', async () => {
    const dataDir = newDir()
    const dir = join(dataDir, 'audit')
    const signer = loadSigner(dir)
    const dead = fsStore({ dir })
    await writeEntries(dead, signer, 7, { checkpointEvery: 5, keepOpen: true })
    // the writer dies (its lock stays); seq 7 and 8 were only hash-chained
    writeFileSync(join(dir, 'writer.lock'), `999999999 ${hostname()}`)
    const { path, lines } = readSingleLog(dir)
    lines[6] = reseal(lines[6]!, (r) => (r.identity.team = 'rewritten'))
    lines[7] = reseal(lines[7]!, (r) => (r.prev = hashOf(lines[6]!)))
    writeLines(path, lines)
    const warnings: string[] = []
    await writeEntries(fsStore({ dir }), signer, 3, {
      from: 7,
      log: { warn: (m) => warnings.push(m), error: (m) => warnings.push(m) },
    })
    expect(warnings.join('\n')).toMatch(
      /2 entries after the last checkpoint \(seq 6\) were left unsigned by a writer that stopped; sealed now, marked recovered/,
    )
    expect(recordOf(readSingleLog(dir).lines[8]!)).toMatchObject({ kind: 'checkpoint', seq: 9, recovered: true })
    const r = await verifyAuditDir(dir)
    expect(r).toMatchObject({
      ok: true,
      entries: 10,
      recovered: 2,
      recoveredRanges: [{ from: 7, to: 8 }],
      unsignedTail: 0,
    })
    expect(formatVerifyResult(r)).toContain(
      'recovered: 2 entries (seq 7..8) were left unsigned by a writer that stopped and sealed at restart: chained, but not signed by the writer that wrote them',
    )
    expect((await verifyCommand(dataDir)).code).toBe(0)
    const strict = await verifyCommand(dataDir, { strict: true })
    expect(strict.code).toBe(1)
    expect(strict.out).toContain(formatVerifyResult(r)[1])
    await dead.close()
  })

  it('a tail that does not verify as a chain is still sealed as recovered, and verify names the break', async () => {
    const dir = newDir()
    const signer = loadSigner(dir)
    const dead = fsStore({ dir })
    await writeEntries(dead, signer, 7, { checkpointEvery: 5, keepOpen: true })
    writeFileSync(join(dir, 'writer.lock'), `999999999 ${hostname()}`)
    const { path, lines } = readSingleLog(dir)
    lines[6] = lines[6]!.replace('"team":"', '"team":"x')
    writeLines(path, lines)
    const errors: string[] = []
    await writeEntries(fsStore({ dir }), signer, 1, { from: 7, log: { warn: () => {}, error: (m) => errors.push(m) } })
    expect(errors.join('\n')).toMatch(
      /the 2 unsigned entries after the last checkpoint \(seq 6\) do not verify as a chain \(seq 7: content does not match its hash\)/,
    )
    expect((await verifyAuditDir(dir)).problem).toMatchObject({ kind: 'edited', seq: 7 })
    await dead.close()
  })

  it('checkpoints come every second by default: a crash leaves at most about a second unsigned', async () => {
    const dir = newDir()
    const started = Date.now()
    const w = await writeEntries(fsStore({ dir }), loadSigner(dir), 3, { keepOpen: true, checkpointSeconds: undefined })
    // not signed at once (on a machine busy enough to take a second to get here, that is moot)
    const first = await verifyAuditDir(dir)
    if (Date.now() - started < 900) expect(first).toMatchObject({ ok: true, unsignedTail: 3 })
    // then signed by the timer alone: polled, so a busy machine that runs the timer late passes
    let report = first
    while (report.unsignedTail !== 0 && Date.now() - started < 15_000) {
      await new Promise((r) => setTimeout(r, 100))
      report = await verifyAuditDir(dir)
    }
    expect(report).toMatchObject({ ok: true, entries: 3, checkpoints: 1, unsignedTail: 0, heads: 1 })
    // after about a second, not at once
    expect(Date.now() - started).toBeGreaterThanOrEqual(900)
    await w.close()
  })
})

describe('the signed head file', () => {
  it('holds the newest checkpoint, mode 0600; a torn write never leaves half of it', async () => {
    const { dir, lines } = await signedLog()
    const head = JSON.parse(readFileSync(join(dir, 'head.json'), 'utf8'))
    expect(head).toMatchObject({
      v: 1,
      seq: 24,
      hash: hashOf(lines[23]!),
      keyId: expect.stringMatching(/^[0-9a-f]{16}$/),
      sig: expect.any(String),
    })
    expect(existsSync(join(dir, 'head.json.tmp'))).toBe(false)
    appendFileSync(join(dir, 'head.json'), '{"v":1')
    expect((await verifyAuditDir(dir)).problem).toMatchObject({ kind: 'bad-head' })
  })

  it('a short-lived process that writes a log and closes it exits normally, its head written', async () => {
    const dir = newDir()
    const script = join(newDir(), 'write.ts')
    const root = join(import.meta.dirname, '..')
    writeFileSync(
      script,
      [
        `import { AuditWriter, fsStore, loadSigner } from ${JSON.stringify(join(root, 'plugins/audit/index.ts'))}`,
        `import { sampleEntry } from ${JSON.stringify(join(root, 'test/audit-helpers.ts'))}`,
        `const w = new AuditWriter(fsStore({ dir: ${JSON.stringify(dir)} }), loadSigner(${JSON.stringify(dir)}), { checkpointEvery: 2 })`,
        'await w.open()',
        // two heads in quick succession: the second waits out the interval between head writes
        'for (let i = 0; i < 2; i++) w.append(sampleEntry(i))',
        'await w.flush()',
        'for (let i = 2; i < 5; i++) w.append(sampleEntry(i))',
        'await w.close()',
        "console.log('closed')",
      ].join('\n'),
    )
    // a head write waiting on a timer that does not hold the process would end it mid-await (exit 13)
    const run = spawnSync(process.execPath, [join(root, 'bin', 'run-ts.mjs'), script], {
      encoding: 'utf8',
      timeout: 30_000,
    })
    expect({ status: run.status, stdout: run.stdout.trim() }).toEqual({ status: 0, stdout: 'closed' })
    expect(await verifyAuditDir(dir)).toMatchObject({ ok: true, entries: 5, checkpoints: 3, heads: 1 })
    expect(JSON.parse(readFileSync(join(dir, 'head.json'), 'utf8')).seq).toBe(8)
  })

  it('new entries after a restart advance it', async () => {
    const { dir, signer } = await signedLog()
    await writeEntries(fsStore({ dir }), signer, 3, { from: 20 })
    const head = JSON.parse(readFileSync(join(dir, 'head.json'), 'utf8'))
    expect(head.seq).toBe(28)
    expect(await verifyAuditDir(dir)).toMatchObject({ ok: true, entries: 23, heads: 1 })
    expect(listLogFiles(dir)).toHaveLength(1)
  })
})

describe('verify fails when the log was cut (redis)', () => {
  const url = inject('redisUrl')
  let redis: Redis
  let signer: Signer
  let keyDir: string
  beforeAll(() => {
    redis = new Redis(url)
    keyDir = tempDir()
    signer = loadSigner(keyDir)
  })
  afterAll(async () => {
    await redis.quit()
    rmSync(keyDir, { recursive: true, force: true })
  })

  async function redisLog() {
    const prefix = `test:${randomUUID()}:`
    await writeEntries(redisStore({ url, prefix }), signer, 20, { checkpointEvery: 5 })
    return {
      prefix,
      keys: redisKeys(prefix),
      verify: () => verifyLog(redisLogSource({ url, prefix }), { publicKeys: [signer] }),
    }
  }

  it('LTRIM at a checkpoint: fails, naming the signed-head key', async () => {
    const { keys, verify } = await redisLog()
    expect(JSON.parse((await redis.get(keys.signedHead))!)).toMatchObject({ seq: 24 })
    await redis.ltrim(keys.log, 0, 11)
    const r = await verify()
    expect(r.problem).toMatchObject({ kind: 'truncated', file: keys.log, line: 13, seq: 13 })
    expect(r.problem!.message).toMatch(
      new RegExp(
        `the log ends at seq 12, but the signed head in redis ${keys.signedHead} \\(seq 24, [^)]+\\) is past it`,
      ),
    )
  })

  it('the list deleted: fails as an emptied log', async () => {
    const { keys, verify } = await redisLog()
    await redis.del(keys.log)
    expect((await verify()).problem).toMatchObject({
      kind: 'truncated',
      message: expect.stringMatching(/^the log is empty/),
    })
  })

  it('a writer that crashed moments ago still looks alive: the next one waits for its announcement to expire, then seals its tail as recovered', async () => {
    const prefix = `test:${randomUUID()}:`
    const keys = redisKeys(prefix)
    const first = redisStore({ url, prefix })
    await writeEntries(first, signer, 7, { checkpointEvery: 5, keepOpen: true })
    // the first writer "dies": its connection goes, and a writer that never says goodbye is announced for 2 s more
    await first.close()
    const [sec, usec] = await redis.time()
    await redis.zadd(keys.writers, Number(sec) * 1000 + Math.floor(Number(usec) / 1000) + 2000, 'crashed-writer')
    const started = Date.now()
    await writeEntries(redisStore({ url, prefix }), signer, 1, { from: 7 })
    expect(Date.now() - started).toBeGreaterThan(1000)
    const r = await verifyLog(redisLogSource({ url, prefix }), { publicKeys: [signer] })
    expect(r).toMatchObject({ ok: true, entries: 8, recovered: 2, recoveredRanges: [{ from: 7, to: 8 }] })
  })

  it('a live writer signs its own tail: a second writer opening meanwhile does not mark it recovered', async () => {
    const prefix = `test:${randomUUID()}:`
    const live = await writeEntries(redisStore({ url, prefix }), signer, 7, {
      checkpointEvery: 5,
      keepOpen: true,
      checkpointSeconds: 0.5,
    })
    await writeEntries(redisStore({ url, prefix }), signer, 1, { from: 7 })
    await live.close()
    const r = await verifyLog(redisLogSource({ url, prefix }), { publicKeys: [signer] })
    expect(r).toMatchObject({ ok: true, entries: 8, recovered: 0, unsignedTail: 0 })
  })

  it('the list and its append head deleted under a running proxy: the next checkpoint records the lost head', async () => {
    const prefix = `test:${randomUUID()}:`
    const keys = redisKeys(prefix)
    const dataDir = newDir()
    const log = quietLogger()
    const m = await createAgentMesh(
      {
        storage: { driver: 'memory' },
        dataDir,
        plugins: [
          audit({ store: 'redis', redis: { url, prefix }, checkpointEvery: 2, checkpointSeconds: 0 }),
          demo({ latencyMs: 0 }),
        ],
      },
      { logger: log.logger },
    )
    const ask = (i: number) =>
      m.fetch(
        new Request('http://proxy/v1/chat/completions', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `r${i}` }] }),
        }),
      )
    for (let i = 0; i < 4; i++) expect((await ask(i)).status).toBe(200)
    await new Promise((r) => setTimeout(r, 100))
    await redis.del(keys.log, keys.head)
    for (let i = 4; i < 7; i++) expect((await ask(i)).status).toBe(200)
    await m.close()
    expect(log.errors.join('\n')).toMatch(
      /audit: the log went back from seq 6 to seq 0 \(emptied or cut, e\.g\. a redis restarted without persistence\)/,
    )
    const r = await verifyLog(redisLogSource({ url, prefix }), { publicKeys: [loadSigner(join(dataDir, 'audit'))] })
    expect(r.problem).toMatchObject({ kind: 'truncated', seq: 1, line: 1 })
    expect(r.problem!.message).toMatch(/no longer reached its signed head \(seq 6, /)
  })
})

function quietLogger() {
  const errors: string[] = []
  const logger: Logger = { info: () => {}, warn: () => {}, debug: () => {}, error: (m) => void errors.push(m) }
  return { logger, errors }
}

describe('witness', () => {
  it('a webhook gets each new signed head (at most once a second, the newest); one that fails is logged once and never holds a request', async () => {
    const bodies: any[] = []
    let status = 200
    const server = createServer((req, res) => {
      let body = ''
      req.on('data', (d) => (body += d))
      req.on('end', () => {
        bodies.push(JSON.parse(body))
        res.writeHead(status).end()
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const hook = `http://127.0.0.1:${(server.address() as { port: number }).port}/heads?token=t0ken`
    const dataDir = newDir()
    const log = quietLogger()
    const m = await createAgentMesh(
      {
        storage: { driver: 'memory' },
        dataDir,
        plugins: [audit({ checkpointEvery: 2, checkpointSeconds: 0, witness: { url: hook } }), demo({ latencyMs: 0 })],
      },
      { logger: log.logger },
    )
    const ask = (i: number) =>
      m.fetch(
        new Request('http://proxy/v1/chat/completions', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `w${i}` }] }),
        }),
      )
    try {
      for (let i = 0; i < 6; i++) expect((await ask(i)).status).toBe(200)
      const deadline = Date.now() + 5000
      while (bodies.at(-1)?.seq !== 9 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      // checkpoints at seq 3, 6 and 9; the witness got the first and then the newest
      expect(bodies.at(-1)).toMatchObject({ v: 1, seq: 9, keyId: expect.any(String), sig: expect.any(String) })
      expect(bodies.length).toBeLessThanOrEqual(3)
      const keys = new Map([[bodies[0].keyId, loadSigner(join(dataDir, 'audit'))]])
      for (const b of bodies) expect(checkHeadSignature(b, keys)).toBeUndefined()
      expect(Object.keys(bodies[0]).sort()).toEqual(['hash', 'keyId', 'seq', 'sig', 'ts', 'v'])

      status = 500
      const started = Date.now()
      for (let i = 6; i < 20; i++) expect((await ask(i)).status).toBe(200)
      expect(Date.now() - started).toBeLessThan(2000)
      await new Promise((r) => setTimeout(r, 2500))
      const failures = log.errors.filter((e) => e.includes('witness'))
      expect(failures).toEqual([
        expect.stringMatching(
          /^audit: cannot write the signed head to witness http:\/\/127\.0\.0\.1:\d+: HTTP 500; retrying \(logged once until it works\)$/,
        ),
      ])
      expect(failures[0]).not.toContain('t0ken')
    } finally {
      await m.close()
      server.close()
    }
  })

  it('a command gets the head as one JSON line on stdin; audit verify --head reads what it kept', async () => {
    const dataDir = newDir()
    const kept = join(newDir(), 'heads.jsonl')
    const { auditDir } = await proxyRun(dataDir, 6, { witness: { command: `cat >> '${kept}'` } })
    const heads = readFileSync(kept, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(heads.at(-1)).toMatchObject({ seq: 8 })
    expect(heads.at(-1)).toEqual(JSON.parse(readFileSync(join(auditDir, 'head.json'), 'utf8')))
    const r = await verifyCommand(dataDir, { head: kept, strict: true })
    expect(r).toEqual({ code: 0, out: ['OK entries=6 checkpoints=2'] })
  })
})
