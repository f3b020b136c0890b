// The audit log on the fs store: format, chain, signatures, and each kind of tampering caught at
// the right line.
import {
  appendFileSync,
  existsSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import {
  AuditWriter,
  canonicalJson,
  formatVerifyResult,
  fsStore,
  GENESIS,
  listLogFiles,
  loadPublicKeys,
  loadSigner,
  makeSigner,
  parseLine,
  parsePrivateKey,
  seal,
  sealEntry,
  verifyAuditDir,
  verifyLog,
  fsLogSource,
} from '../plugins/audit/index.ts'
import { generateKeyPairSync } from 'node:crypto'
import { scrub, REDACTED } from '../plugins/audit/entry.ts'
import {
  hashOf,
  readSingleLog,
  recordOf,
  reseal,
  sampleEntry,
  tempDir,
  writeEntries,
  writeLines,
} from './audit-helpers.ts'

const dirs: string[] = []
function newDir() {
  const d = tempDir()
  dirs.push(d)
  return d
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

/**
 * 20 entries, a checkpoint after every 5: line n holds seq n; checkpoints at seq 6, 12, 18, 24.
 */
async function signedLog() {
  const dir = newDir()
  const signer = loadSigner(dir)
  await writeEntries(fsStore({ dir }), signer, 20, { checkpointEvery: 5 })
  const { path, lines } = readSingleLog(dir)
  return { dir, signer, path, lines }
}

describe('format', () => {
  it('scrub masks secrets at any depth, copying only what changed', () => {
    const secret = 'sk-live-0123456789abcdefghij'
    const clean = { a: 'no secrets here at all', b: [{ c: 'nor here, just words' }], n: 1 }
    expect(scrub(clean, [secret])).toBe(clean)
    const dirty = {
      a: 'fine text',
      nested: { list: ['ok', `key=${secret}`], keep: { x: 'untouched text' } },
      [secret]: 1,
    }
    const out = scrub(dirty, [secret]) as any
    expect(out).not.toBe(dirty)
    expect(out.nested.list[1]).toBe(`key=${REDACTED}`)
    expect(out.nested.keep).toBe(dirty.nested.keep) // unchanged branches are shared
    expect(Object.keys(out)).toEqual(['a', 'nested', REDACTED])
    expect(dirty.nested.list[1]).toContain(secret) // the input is not modified
  })
  it('canonical JSON sorts keys at every level and drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: undefined }], c: 'x' }, u: undefined })).toBe(
      '{"a":{"c":"x","d":[3,{"z":1}]},"b":1}',
    )
    expect(canonicalJson({ n: 0.1 + 0.2, s: 'é\n"', t: new Date(0) })).toBe(
      '{"n":0.30000000000000004,"s":"é\\n\\"","t":"1970-01-01T00:00:00.000Z"}',
    )
  })

  it('a line is the header (seq, prev, kind), the other fields sorted, then hash; the hash covers every field', () => {
    const s = seal({ ...sampleEntry(1), seq: 1, prev: GENESIS })
    expect(s.line.startsWith(`{"seq":1,"prev":"${GENESIS}","kind":"request","cache":`)).toBe(true)
    expect(s.line.endsWith(`,"hash":"${s.hash}"}`)).toBe(true)
    const p = parseLine(s.line)!
    expect(p.computed).toBe(s.hash)
    expect((p.record() as any).identity.user).toBe('user1')
    // every field changes the hash, nested ones and the chain link included
    const variants: Array<(e: any) => void> = [
      (e) => (e.identity.team = 'other'),
      (e) => (e.tokens.output += 1),
      (e) => (e.costUsd = 0),
      (e) => (e.ts = '2025-01-01T00:00:00.000Z'),
      (e) => (e.prev = '1'.repeat(64)),
      (e) => (e.seq = 2),
      (e) => (e.cache.status = 'exact'),
      (e) => (e.quota = 'allow'),
    ]
    for (const change of variants) {
      const e: any = { ...structuredClone(sampleEntry(1)), seq: 1, prev: GENESIS }
      change(e)
      expect(seal(e).hash).not.toBe(s.hash)
    }
  })

  it("the writer's sealEntry gives the same bytes as seal, whatever the key order, and leaves the entry as it was", () => {
    const entries: any[] = [
      sampleEntry(1),
      {
        ...sampleEntry(2),
        zeta: { b: [1, { y: 2, x: undefined }], a: 'é"\n' },
        aardvark: undefined,
        '10': 'ten',
        '9': 'nine',
      },
      {
        kind: 'request',
        v: 1,
        prompt: { messages: [{ role: 'user', text: 'hi', kind: 'request' }] },
        when: new Date(0),
      },
    ]
    for (const e of entries) {
      const before = JSON.stringify(e)
      const fast = sealEntry(e, 7, '2'.repeat(64))
      expect(fast).toEqual(seal({ ...e, seq: 7, prev: '2'.repeat(64) }))
      expect(JSON.stringify(e)).toBe(before)
      expect(e.kind).toBe('request')
      expect(parseLine(fast.line)!.computed).toBe(fast.hash)
    }
  })

  it('a trailer with anything after the hash is not a record (it could shadow a hashed field)', () => {
    const s = seal({ ...sampleEntry(1), seq: 1, prev: GENESIS })
    expect(parseLine(s.line.slice(0, -1) + ',"costUsd":0}')).toBeUndefined()
    expect(parseLine(s.line + ' ')).toBeUndefined()
    expect(parseLine(s.line.slice(0, 100))).toBeUndefined()
  })
})

describe('keys', () => {
  it('generates the key pair on first start with a 0600 private key, and reuses it', () => {
    const dir = newDir()
    const a = loadSigner(join(dir, 'audit'))
    const st = statSync(join(dir, 'audit', 'private-key.pem'))
    expect(st.mode & 0o777).toBe(0o600)
    expect(readFileSync(join(dir, 'audit', 'public-key.pem'), 'utf8')).toBe(a.pem)
    const b = loadSigner(join(dir, 'audit'))
    expect(b.keyId).toBe(a.keyId)
    expect(Buffer.from(a.raw, 'base64')).toHaveLength(32)
  })

  it('takes a given key (base64 seed or PEM) without writing a private key file', () => {
    const dir = newDir()
    const seed = Buffer.alloc(32, 7).toString('base64')
    const s1 = loadSigner(dir, seed)
    expect(existsSync(join(dir, 'private-key.pem'))).toBe(false)
    const pem = parsePrivateKey(seed).export({ format: 'pem', type: 'pkcs8' }).toString()
    expect(loadSigner(newDir(), pem).keyId).toBe(s1.keyId)
  })

  it('rejects a bad key with a message that names the field and never echoes the key', () => {
    const secret = 'not-a-key-but-secret-looking-value'
    expect(() => parsePrivateKey(secret)).toThrow(/audit: privateKey must be an Ed25519 private key/)
    try {
      parsePrivateKey(secret)
    } catch (err) {
      expect((err as Error).message).not.toContain(secret)
    }
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 })
      .privateKey.export({ format: 'pem', type: 'pkcs8' })
      .toString()
    expect(() => parsePrivateKey(rsa)).toThrow(/must be an Ed25519 key, got rsa/)
  })

  it('keeps the old public key when the key changes, so old checkpoints still verify', async () => {
    const dir = newDir()
    await writeEntries(fsStore({ dir }), loadSigner(dir, Buffer.alloc(32, 1).toString('base64')), 3)
    await writeEntries(fsStore({ dir }), loadSigner(dir, Buffer.alloc(32, 2).toString('base64')), 3, { from: 3 })
    expect(readdirSync(dir).filter((f) => f.startsWith('public-key'))).toHaveLength(2)
    const r = await verifyAuditDir(dir)
    expect(formatVerifyResult(r)).toEqual(['OK entries=6 checkpoints=2'])
  })
})

describe('verify: intact logs', () => {
  it('OK with entry and checkpoint counts', async () => {
    const { dir } = await signedLog()
    const r = await verifyAuditDir(dir)
    expect(r).toMatchObject({ ok: true, entries: 20, checkpoints: 4, unsignedTail: 0, tornTail: false })
    expect(formatVerifyResult(r)).toEqual(['OK entries=20 checkpoints=4'])
  })

  it('an empty or new log is OK', async () => {
    const dir = newDir()
    expect(formatVerifyResult(await verifyAuditDir(dir, []))).toEqual(['OK entries=0 checkpoints=0'])
  })

  it('entries after the last checkpoint are an unsigned tail, not tampering', async () => {
    const dir = newDir()
    const w = await writeEntries(fsStore({ dir }), loadSigner(dir), 7, { checkpointEvery: 5, keepOpen: true })
    const r = await verifyAuditDir(dir)
    expect(r).toMatchObject({ ok: true, entries: 7, checkpoints: 1, unsignedTail: 2 })
    expect(formatVerifyResult(r)[1]).toMatch(/^unsigned tail: 2 entries/)
    await w.close()
    expect(await verifyAuditDir(dir)).toMatchObject({ ok: true, entries: 7, checkpoints: 2, unsignedTail: 0 })
  })

  it('a torn last line (interrupted write) is an incomplete tail, not a break', async () => {
    const { dir, path, lines } = await signedLog()
    appendFileSync(path, lines[3]!.slice(0, 120))
    const r = await verifyAuditDir(dir)
    expect(r).toMatchObject({ ok: true, entries: 20, checkpoints: 4, tornTail: true })
    expect(formatVerifyResult(r).join('\n')).toMatch(/incomplete last line/)
  })

  it('a cut line in the middle is a break, even though a cut last line is not', async () => {
    const { dir, path, lines } = await signedLog()
    lines[8] = lines[8]!.slice(0, 200)
    writeLines(path, lines)
    const r = await verifyAuditDir(dir)
    expect(r.problem).toMatchObject({ kind: 'edited', line: 9 })
  })
})

describe('verify: tampering is caught at the right entry (fs)', () => {
  it('edited: a field changed, hash left as is', async () => {
    const { dir, path, lines } = await signedLog()
    lines[7] = lines[7]!.replace(/"costUsd":[0-9.e-]+/, '"costUsd":0')
    writeLines(path, lines)
    const r = await verifyAuditDir(dir)
    expect(r.ok).toBe(false)
    expect(r.problem).toMatchObject({ kind: 'edited', line: 8, seq: 8 })
    expect(r.entries).toBe(6)
    expect(formatVerifyResult(r)[0]).toMatch(
      /^FAIL edited at audit-000001-\d{8}\.jsonl:8 \(seq 8\): content does not match its hash/,
    )
  })

  it('edited: one added space is an edit', async () => {
    const { dir, path, lines } = await signedLog()
    lines[2] = lines[2]!.replace('"vendor":', '"vendor": ')
    writeLines(path, lines)
    expect((await verifyAuditDir(dir)).problem).toMatchObject({ kind: 'edited', line: 3, seq: 3 })
  })

  it('edited: a field changed and the entry re-hashed', async () => {
    const { dir, path, lines } = await signedLog()
    lines[7] = reseal(lines[7]!, (r) => (r.identity.team = 'someone-else'))
    writeLines(path, lines)
    const r = await verifyAuditDir(dir)
    expect(r.problem).toMatchObject({ kind: 'edited', line: 8, seq: 8 })
    expect(r.problem!.message).toMatch(/re-hashed/)
  })

  it('edited: the rest of the chain re-hashed up to the next checkpoint breaks its signature', async () => {
    const { dir, path, lines } = await signedLog()
    // rewrite seq 8 and re-link 9..11 and the checkpoint at 12 (whose signature cannot be redone)
    lines[7] = reseal(lines[7]!, (r) => (r.tokens.output = 1))
    for (let i = 8; i <= 11; i++) lines[i] = reseal(lines[i]!, (r) => (r.prev = hashOf(lines[i - 1]!)))
    writeLines(path, lines)
    const r = await verifyAuditDir(dir)
    expect(r.problem).toMatchObject({ kind: 'bad-signature', line: 12, seq: 12 })
    expect(r.problem!.message).toMatch(/seq 7\.\.11/)
  })

  it('deleted: one entry', async () => {
    const { dir, path, lines } = await signedLog()
    lines.splice(8, 1)
    writeLines(path, lines)
    const r = await verifyAuditDir(dir)
    expect(r.problem).toMatchObject({ kind: 'deleted', line: 9, seq: 9 })
    expect(r.problem!.message).toMatch(/record seq 9 is missing/)
  })

  it('deleted: several entries, and the first one', async () => {
    const { dir, path, lines } = await signedLog()
    writeLines(path, [...lines.slice(0, 8), ...lines.slice(10)])
    let r = await verifyAuditDir(dir)
    expect(r.problem).toMatchObject({ kind: 'deleted', line: 9, seq: 9 })
    expect(r.problem!.message).toMatch(/seq 9\.\.10 \(2\)/)
    writeLines(path, lines.slice(1))
    r = await verifyAuditDir(dir)
    expect(r.problem).toMatchObject({ kind: 'deleted', line: 1, seq: 1 })
  })

  it('deleted: a checkpoint', async () => {
    const { dir, path, lines } = await signedLog()
    expect(recordOf(lines[11]!).kind).toBe('checkpoint')
    lines.splice(11, 1)
    writeLines(path, lines)
    expect((await verifyAuditDir(dir)).problem).toMatchObject({ kind: 'deleted', line: 12, seq: 12 })
  })

  it('inserted: a forged entry that links to its predecessor', async () => {
    const { dir, path, lines } = await signedLog()
    const forged = seal({ ...sampleEntry(99), seq: 10, prev: hashOf(lines[8]!) }).line
    lines.splice(9, 0, forged)
    writeLines(path, lines)
    const r = await verifyAuditDir(dir)
    expect(r.problem).toMatchObject({ kind: 'inserted', line: 10, seq: 10 })
  })

  it('inserted: a replayed copy of an earlier entry', async () => {
    const { dir, path, lines } = await signedLog()
    lines.splice(9, 0, lines[2]!)
    writeLines(path, lines)
    const r = await verifyAuditDir(dir)
    expect(r.problem).toMatchObject({ kind: 'inserted', line: 10, seq: 3 })
  })

  it('inserted: a line that is not a record', async () => {
    const { dir, path, lines } = await signedLog()
    lines.splice(4, 0, '{"note":"nothing to see"}')
    writeLines(path, lines)
    expect((await verifyAuditDir(dir)).problem).toMatchObject({ kind: 'inserted', line: 5 })
  })

  it('reordered: two entries swapped', async () => {
    const { dir, path, lines } = await signedLog()
    ;[lines[8], lines[9]] = [lines[9]!, lines[8]!]
    writeLines(path, lines)
    const r = await verifyAuditDir(dir)
    expect(r.problem).toMatchObject({ kind: 'reordered', line: 9, seq: 10 })
    expect(r.problem!.message).toMatch(/seq 9 is at audit-000001-\d{8}\.jsonl:10/)
  })

  it('reordered: an entry moved later', async () => {
    const { dir, path, lines } = await signedLog()
    const [moved] = lines.splice(2, 1)
    lines.splice(15, 0, moved!)
    writeLines(path, lines)
    expect((await verifyAuditDir(dir)).problem).toMatchObject({ kind: 'reordered', line: 3, seq: 4 })
  })

  it('bad signature: a checkpoint signature replaced', async () => {
    const { dir, path, lines } = await signedLog()
    const other = parseLine(lines[5]!)!.sig!
    lines[11] = lines[11]!.replace(/"sig":"[^"]+"/, `"sig":"${other}"`)
    writeLines(path, lines)
    const r = await verifyAuditDir(dir)
    expect(r.problem).toMatchObject({ kind: 'bad-signature', line: 12, seq: 12 })
    expect(r.checkpoints).toBe(1)
  })

  it('bad signature: checkpoints re-signed with another key', async () => {
    const { dir, path, lines } = await signedLog()
    const mallory = makeSigner(generateKeyPairSync('ed25519').privateKey)
    lines[5] = seal(recordOf(lines[5]!), mallory.sign).line
    writeLines(path, lines)
    // the stored record still names the real key id: its signature fails
    expect((await verifyAuditDir(dir)).problem).toMatchObject({ kind: 'bad-signature', line: 6, seq: 6 })
    // naming Mallory's key id: a key the verifier was not given
    lines[5] = seal({ ...recordOf(lines[5]!), keyId: mallory.keyId }, mallory.sign).line
    writeLines(path, lines)
    const r = await verifyAuditDir(dir)
    expect(r.problem).toMatchObject({ kind: 'bad-signature', line: 6, seq: 6 })
    expect(r.problem!.message).toMatch(
      new RegExp(`signed by key ${mallory.keyId}, which is not among the public keys given`),
    )
  })

  it('bad signature: verified with a public key that did not sign', async () => {
    const { dir } = await signedLog()
    const other = newDir()
    loadSigner(other)
    const r = await verifyLog(fsLogSource(dir), { publicKeys: loadPublicKeys(undefined, other) })
    expect(r.problem).toMatchObject({ kind: 'bad-signature', line: 6, seq: 6 })
    expect(r.problem!.message).toMatch(/not among the public keys given/)
  })

  it('a signature attached to an entry is refused', async () => {
    const { dir, path, lines } = await signedLog()
    lines[2] = lines[2]!.slice(0, -1) + `,"sig":"${parseLine(lines[5]!)!.sig}"}`
    writeLines(path, lines)
    expect((await verifyAuditDir(dir)).problem).toMatchObject({ kind: 'edited', line: 3, seq: 3 })
  })

  it('deep mode also checks each entry is canonical JSON', async () => {
    const { dir, signer } = await signedLog()
    const r = await verifyLog(fsLogSource(dir), { publicKeys: [signer], deep: true })
    expect(r).toMatchObject({ ok: true, entries: 20 })
  })
})

describe('fs store', () => {
  it('rotates by size; the chain continues across files; a deleted middle file is caught', async () => {
    const dir = newDir()
    await writeEntries(fsStore({ dir, rotateBytes: 4000 }), loadSigner(dir), 40, { checkpointEvery: 7, batchMax: 3 })
    const files = listLogFiles(dir)
    expect(files.length).toBeGreaterThan(3)
    for (const f of files) expect(statSync(f.path).size).toBeLessThanOrEqual(4000)
    expect(await verifyAuditDir(dir)).toMatchObject({ ok: true, entries: 40 })
    // the first record of file 2 links to the last record of file 1
    const last1 = readFileSync(files[0]!.path, 'utf8').trim().split('\n').at(-1)!
    const first2 = readFileSync(files[1]!.path, 'utf8').split('\n')[0]!
    expect(recordOf(first2).prev).toBe(hashOf(last1))
    unlinkSync(files[1]!.path)
    const r = await verifyAuditDir(dir)
    expect(r.problem).toMatchObject({ kind: 'deleted', file: files[2]!.name, line: 1 })
  })

  it('rotates by UTC day', async () => {
    const dir = newDir()
    let now = new Date('2025-03-01T23:59:59Z')
    const signer = loadSigner(dir)
    const w = new AuditWriter(fsStore({ dir, now: () => now }), signer, { checkpointSeconds: 0 })
    await w.open()
    w.append(sampleEntry(1))
    await w.flush()
    now = new Date('2025-03-02T00:00:01Z')
    w.append(sampleEntry(2))
    await w.close()
    expect(listLogFiles(dir).map((f) => f.name)).toEqual(['audit-000001-20250301.jsonl', 'audit-000002-20250302.jsonl'])
    expect(await verifyAuditDir(dir)).toMatchObject({ ok: true, entries: 2, checkpoints: 1 })
  })

  it('after a crash: drops the torn line, continues the chain, signs the recovered tail', async () => {
    const dir = newDir()
    const signer = loadSigner(dir)
    const dead = fsStore({ dir })
    await writeEntries(dead, signer, 7, { checkpointEvery: 5, keepOpen: true })
    // the first writer "dies": its lock stays, a half-written line is at the end
    const { path, lines } = readSingleLog(dir)
    appendFileSync(path, lines[1]!.slice(0, 150))
    writeFileSync(join(dir, 'writer.lock'), `999999999 ${(await import('node:os')).hostname()}`)
    expect((await verifyAuditDir(dir)).tornTail).toBe(true)
    const warnings: string[] = []
    await writeEntries(fsStore({ dir, log: { warn: (m) => warnings.push(m) } }), signer, 3, { from: 7 })
    expect(warnings.join()).toMatch(/dropped an incomplete last line \(150 bytes\)/)
    const r = await verifyAuditDir(dir)
    expect(r).toMatchObject({ ok: true, entries: 10, unsignedTail: 0, tornTail: false })
    // the recovered tail (seq 7, 8) was signed by a checkpoint the second writer wrote first
    expect(recordOf(readSingleLog(dir).lines[8]!)).toMatchObject({ kind: 'checkpoint', seq: 9, count: 8 })
    // the "dead" writer's file handle, closed only now so the process does not leak it to GC
    await dead.close()
  })

  it('a complete last record that only lost its newline is kept', async () => {
    const dir = newDir()
    const signer = loadSigner(dir)
    await writeEntries(fsStore({ dir }), signer, 3)
    const { path } = readSingleLog(dir)
    truncateSync(path, statSync(path).size - 1)
    await writeEntries(fsStore({ dir }), signer, 2, { from: 3 })
    expect(await verifyAuditDir(dir)).toMatchObject({ ok: true, entries: 5, unsignedTail: 0 })
  })

  it('refuses a directory another live process writes to', async () => {
    const dir = newDir()
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' })
    try {
      writeFileSync(join(dir, 'writer.lock'), `${child.pid} ${(await import('node:os')).hostname()}`)
      await expect(fsStore({ dir }).open()).rejects.toThrow(new RegExp(`being written by process ${child.pid}`))
    } finally {
      child.kill('SIGKILL')
    }
  })

  it('writes log files with mode 0600 and releases its lock on close', async () => {
    const dir = newDir()
    await writeEntries(fsStore({ dir, fsync: 'checkpoint' }), loadSigner(dir), 2)
    expect(statSync(listLogFiles(dir)[0]!.path).mode & 0o777).toBe(0o600)
    expect(existsSync(join(dir, 'writer.lock'))).toBe(false)
  })
})

describe('writer', () => {
  it('signs a checkpoint on its timer while entries are unsigned', async () => {
    const dir = newDir()
    const w = new AuditWriter(fsStore({ dir }), loadSigner(dir), { checkpointSeconds: 0.1 })
    await w.open()
    w.append(sampleEntry(1))
    await w.flush()
    expect((await verifyAuditDir(dir)).unsignedTail).toBe(1)
    await new Promise((r) => setTimeout(r, 400))
    await w.flush()
    expect(await verifyAuditDir(dir)).toMatchObject({ ok: true, entries: 1, checkpoints: 1, unsignedTail: 0 })
    // no new entries: no new checkpoints
    await new Promise((r) => setTimeout(r, 300))
    await w.close()
    expect((await verifyAuditDir(dir)).checkpoints).toBe(1)
  })

  it('bounded queue: appends past the bound wait for room, and none is lost', async () => {
    const dir = newDir()
    const w = new AuditWriter(fsStore({ dir }), loadSigner(dir), { queueMax: 10, batchMax: 4, checkpointSeconds: 0 })
    await w.open()
    let waited = 0
    const pending: Promise<void>[] = []
    for (let i = 0; i < 200; i++) {
      const p = w.append(sampleEntry(i))
      if (p) {
        waited++
        pending.push(p)
      }
    }
    expect(waited).toBe(190)
    expect(w.stat.queued).toBeLessThanOrEqual(10)
    await Promise.all(pending)
    await w.close()
    const r = await verifyAuditDir(dir)
    expect(r).toMatchObject({ ok: true, entries: 200 })
    // entries keep their order
    const ids = readSingleLog(dir)
      .lines.map(recordOf)
      .filter((x) => x.kind === 'request')
      .map((x) => x.id)
    expect(ids).toEqual(Array.from({ length: 200 }, (_, i) => `req-${i}`))
  })
})
