// The audit log on the redis store (a real redis-server): the same tampering caught at the same
// entries, and several writers sharing one chain.
import { randomUUID } from 'node:crypto'
import { rmSync } from 'node:fs'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest'
import { createAgentMesh } from '../core/app.ts'
import { demo } from '../plugins/vendors/demo.ts'
import {
  audit,
  AuditWriter,
  formatVerifyResult,
  loadSigner,
  parseLine,
  redisKeys,
  redisLogSource,
  redisStore,
  seal,
  verifyLog,
  type Signer,
} from '../plugins/audit/index.ts'
import { hashOf, recordOf, reseal, sampleEntry, tempDir, writeEntries } from './audit-helpers.ts'

const url = inject('redisUrl')
let redis: Redis
let keyDir: string
let signer: Signer

beforeAll(() => {
  redis = new Redis(url)
  keyDir = tempDir()
  signer = loadSigner(keyDir)
})
afterAll(async () => {
  await redis.quit()
  rmSync(keyDir, { recursive: true, force: true })
})

/** 20 entries, a checkpoint after every 5: list index i holds seq i+1; checkpoints at seq 6, 12, 18, 24. */
async function signedLog(opts: { keepOpen?: boolean; n?: number } = {}) {
  const prefix = `test:${randomUUID()}:`
  await writeEntries(redisStore({ url, prefix }), signer, opts.n ?? 20, { checkpointEvery: 5, keepOpen: opts.keepOpen })
  const key = redisKeys(prefix).log
  const lines = await redis.lrange(key, 0, -1)
  return { prefix, key, lines, verify: () => verifyLog(redisLogSource({ url, prefix }), { publicKeys: [signer] }) }
}

describe('redis store', () => {
  it('OK with entry and checkpoint counts; the head key tracks the last record', async () => {
    const { prefix, lines, verify } = await signedLog()
    expect(lines).toHaveLength(24)
    const r = await verify()
    expect(formatVerifyResult(r)).toEqual(['OK entries=20 checkpoints=4'])
    expect(await redis.get(redisKeys(prefix).head)).toBe(`24 ${hashOf(lines[23]!)} checkpoint`)
  })

  it('an unsigned tail is reported as such', async () => {
    const { verify } = await signedLog({ n: 8, keepOpen: true })
    expect(await verify()).toMatchObject({ ok: true, entries: 8, checkpoints: 1, unsignedTail: 3 })
  })

  it('edited (LSET): caught at that entry', async () => {
    const { key, lines, verify } = await signedLog()
    await redis.lset(key, 7, lines[7]!.replace(/"user":"user\d+"/, '"user":"nobody"'))
    const r = await verify()
    expect(r.problem).toMatchObject({ kind: 'edited', line: 8, seq: 8, file: key })
  })

  it('edited and re-hashed: caught at that entry', async () => {
    const { key, lines, verify } = await signedLog()
    await redis.lset(
      key,
      7,
      reseal(lines[7]!, (r) => (r.costUsd = 0)),
    )
    expect((await verify()).problem).toMatchObject({ kind: 'edited', line: 8, seq: 8 })
  })

  it('deleted (LREM): caught where the gap is', async () => {
    const { key, lines, verify } = await signedLog()
    await redis.lrem(key, 1, lines[8]!)
    const r = await verify()
    expect(r.problem).toMatchObject({ kind: 'deleted', line: 9, seq: 9 })
  })

  it('inserted (LINSERT): a forged entry and a replayed one', async () => {
    const { key, lines, verify } = await signedLog()
    const forged = seal({ ...sampleEntry(77), seq: 10, prev: hashOf(lines[8]!) }).line
    await redis.linsert(key, 'BEFORE', lines[9]!, forged)
    expect((await verify()).problem).toMatchObject({ kind: 'inserted', line: 10, seq: 10 })
    await redis.lrem(key, 1, forged)
    expect((await verify()).ok).toBe(true)
    await redis.linsert(key, 'AFTER', lines[14]!, lines[1]!)
    expect((await verify()).problem).toMatchObject({ kind: 'inserted', line: 16, seq: 2 })
  })

  it('reordered: two entries swapped', async () => {
    const { key, lines, verify } = await signedLog()
    await redis.lset(key, 13, lines[14]!)
    await redis.lset(key, 14, lines[13]!)
    expect((await verify()).problem).toMatchObject({ kind: 'reordered', line: 14, seq: 15 })
  })

  it('bad signature: a checkpoint signature swapped, and a re-linked chain under a checkpoint', async () => {
    const { key, lines, verify } = await signedLog()
    const sig6 = parseLine(lines[5]!)!.sig!
    await redis.lset(key, 17, lines[17]!.replace(/"sig":"[^"]+"/, `"sig":"${sig6}"`))
    expect((await verify()).problem).toMatchObject({ kind: 'bad-signature', line: 18, seq: 18 })
    await redis.lset(key, 17, lines[17]!)
    // rewrite seq 14 and re-link everything up to the checkpoint at 18
    const next = [...lines]
    next[13] = reseal(lines[13]!, (r) => (r.identity.team = 'hidden'))
    for (let i = 14; i <= 17; i++) next[i] = reseal(next[i]!, (r) => (r.prev = hashOf(next[i - 1]!)))
    for (let i = 13; i <= 17; i++) await redis.lset(key, i, next[i]!)
    expect((await verify()).problem).toMatchObject({ kind: 'bad-signature', line: 18, seq: 18 })
    expect(recordOf(next[17]!).kind).toBe('checkpoint')
  })

  it('several writers on one redis share one chain without a break', async () => {
    const prefix = `test:${randomUUID()}:`
    const writers = [0, 1, 2].map(
      () =>
        new AuditWriter(redisStore({ url, prefix }), signer, { checkpointEvery: 7, batchMax: 3, checkpointSeconds: 0 }),
    )
    for (const w of writers) await w.open()
    // interleave: each writer appends while the others do
    await Promise.all(
      writers.map(async (w, k) => {
        for (let i = 0; i < 40; i++) {
          w.append(sampleEntry(k * 100 + i))
          if (i % 5 === 4) await w.flush()
        }
        await w.flush()
      }),
    )
    for (const w of writers) await w.close()
    // the writers did collide, and re-sealed on each other's head
    expect(writers.reduce((n, w) => n + w.stat.conflicts, 0)).toBeGreaterThan(0)
    const r = await verifyLog(redisLogSource({ url, prefix }), { publicKeys: [signer] })
    expect(r).toMatchObject({ ok: true, entries: 120, unsignedTail: 0 })
    const ids = (await redis.lrange(redisKeys(prefix).log, 0, -1))
      .map(recordOf)
      .filter((x) => x.kind === 'request')
      .map((x) => x.id)
    expect(new Set(ids).size).toBe(120)
  })

  it('the plugin on the redis store: a proxy writes, the verify command reads the same list', async () => {
    const prefix = `test:${randomUUID()}:`
    const dataDir = tempDir()
    // checkpoints by count only (the 1 s timer would add one on a slow machine): the test counts them
    const options = { store: 'redis' as const, redis: { url, prefix }, checkpointEvery: 4, checkpointSeconds: 0 }
    const mesh = await createAgentMesh({
      log: { level: 'silent' },
      dataDir,
      plugins: [audit(options), demo({ latencyMs: 0 })],
    })
    for (let i = 0; i < 6; i++) {
      const res = await mesh.fetch(
        new Request('http://proxy/v1/chat/completions', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `r${i}` }] }),
        }),
      )
      expect(res.status).toBe(200)
    }
    await mesh.close()
    expect(await redis.llen(redisKeys(prefix).log)).toBe(8)
    const cmdMesh = await createAgentMesh(
      { log: { level: 'silent' }, dataDir, plugins: [audit(options)] },
      { mode: 'command' },
    )
    const out: string[] = []
    const command = cmdMesh.plugins.find((p) => p.name === 'audit')!.commands![0]!
    const code = await command.run({ mesh: cmdMesh.mesh, args: ['verify'], options: {}, print: (l) => out.push(l) })
    await cmdMesh.close()
    rmSync(dataDir, { recursive: true, force: true })
    expect({ code, out }).toEqual({ code: 0, out: ['OK entries=6 checkpoints=2'] })
  })
})
