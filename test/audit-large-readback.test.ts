// The audit log read back with lines of megabytes (issue 11 item 2: no request may block the others
// for more than about 50 ms of event-loop time). With includeContent an entry's line can be 10 MB;
// the admin route POST /agentmesh/admin/audit/verify and the unsigned-tail scan a writer runs at
// open hash such lines in pieces and give the loop back between them, and the masking of a string
// of megabytes that does hold a secret goes a run at a time. The results are the one-go results:
// parseLine's fields, verify's problems, scrubString's text.
import { appendFileSync, cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Slicer } from '../core/slicer.ts'
import * as chain from '../plugins/audit/chain.ts'
import { serialise } from '../plugins/audit/chain.ts'
import { scrubString } from '../plugins/audit/entry.ts'
import {
  type AuditEntry,
  AuditWriter,
  audit,
  fsLogSource,
  fsStore,
  listLogFiles,
  loadPublicKeys,
  loadSigner,
  parseLine,
  sealEntry,
  sha256Hex,
  verifyLog,
} from '../plugins/audit/index.ts'
import { scanUnsignedTail } from '../plugins/audit/recovery.ts'
import * as sliced from '../plugins/audit/sliced.ts'
import { scrubSliced } from '../plugins/audit/sliced.ts'
import { sampleEntry, tempDir, writeEntries } from './audit-helpers.ts'
import { type Proxy, startProxy } from './helpers/core-harness.ts'
import { longestBlock } from './helpers/longest-block.ts'
import { wordText } from './helpers/word-text.ts'

// 1- to 4-byte characters, quotes, escapes and words a key pattern's hint is in (never a whole key)
const WORDS = ['the', 'café', '€uro', '中文字', '😀🚀', '"q"', 'back\\slash', 'line\nbreak', 'task-list', 'Bearer']
const RUN = 64 * 1024
const ADMIN = 'audit-readback-admin-token-0123456789'

describe('masking a string of megabytes that holds secrets: scrubString, a run at a time', () => {
  const secrets = ['mysecretpassword', 'sk-secretvalue123456', 'passwordmysecret']
  const key = `sk-${'k'.repeat(30)}`
  const base = wordText(WORDS, 400_000, 7)
  // a secret or a key across each border of a run, at its very start and end, back to back,
  // overlapping occurrences, a key whose mask makes a new hint, a key pattern cut by a secret
  const cases: Array<[string, string]> = [
    ['secret across a border', `${'x'.repeat(RUN - 7)}mysecretpassword${base}`],
    ['secret at a border', `${'x'.repeat(RUN)}mysecretpassword${base}mysecretpassword`],
    ['secret ending at a border', `${'x'.repeat(RUN - 16)}mysecretpassword${base}`],
    [
      'back to back and overlapping',
      `${base}mysecretpasswordmysecretpassword${'x'.repeat(RUN)}passwordmysecretpassword`,
    ],
    ['key across a border', `${'y'.repeat(RUN - 3)} ${key} ${base}`],
    ['key hint at a border', `${'y'.repeat(RUN - 1)}-AIza${'b'.repeat(40)}${base}`],
    ['bearer token across borders', `${base.slice(0, RUN * 2 - 3)} Bearer ${'t'.repeat(RUN + 5)}== ${base}`],
    [
      'a key run past a border, then a secret in it',
      `${'z'.repeat(RUN - 10)} sk-${'a'.repeat(20)}sk-secretvalue123456${'a'.repeat(30)}${base}`,
    ],
    ['am- keys, a word boundary', `${base}xam-${'a'.repeat(40)} am-${'a'.repeat(40)}\nBEARER ${'q'.repeat(20)}`],
    ['many short secrets', Array.from({ length: 3000 }, (_, i) => `w${i} mysecretpassword `).join('') + base],
  ]

  it('gives what scrubString gives, byte for byte', async () => {
    for (const [name, s] of cases) {
      const oneGo = scrubString(s, secrets)
      expect(oneGo, name).not.toBe(s)
      for (const ms of [0, 10]) {
        const sliced = await scrubSliced(s, secrets, new Slicer(ms))
        expect(sliced === oneGo, name).toBe(true)
      }
      // with no configured secrets: only the key patterns
      expect((await scrubSliced(s, [], new Slicer(0))) === scrubString(s, []), name).toBe(true)
    }
  })

  it('gives what scrubString gives on seeded random texts: things to mask near every border of a run', async () => {
    let seed = 20261206
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff
      return (seed >>> 12) % n
    }
    const finds = [
      ...secrets,
      key,
      `am-${'a'.repeat(32)}`,
      `AIza${'z'.repeat(30)}`,
      'Bearer abcdefghijklmnop',
      'bearer\n\n  tok_tok_tok_tok=',
      // parts of them, and what sits next to them
      'sk-',
      'Bearer',
      'AIz',
      'mysecret',
      'x',
      '-',
      ' ',
    ]
    for (let t = 0; t < 40; t++) {
      const parts: string[] = []
      let len = 0
      while (len < 3 * RUN) {
        // to within a few characters of the next border, then one to three things to find
        const gap = Math.max(0, (Math.floor(len / RUN) + 1) * RUN - len - rand(24))
        const at = rand(base.length - gap)
        parts.push(base.slice(at, at + gap))
        len += gap
        for (let k = 1 + rand(3); k > 0; k--) {
          const f = finds[rand(finds.length)]!
          parts.push(f)
          len += f.length
        }
      }
      const text = parts.join('')
      for (const sec of [secrets, []]) {
        const sliced = await scrubSliced(text, sec, new Slicer(0))
        expect(sliced === scrubString(text, sec), `text ${t}`).toBe(true)
      }
    }
  })

  /**
   * Measured here (2 shared cores, CPU in the longest block): scrubString in one go on this
   * 10M-character string, a secret or a key every 200K characters, 38-58 ms; a run at a time in
   * slices of 10 ms, 12-13 (a collection in the slice: up to 44 once). The least of three tries
   * is checked.
   */
  const SCRUB_BLOCK_MS = 30
  it(`a 10M-character string with secrets is masked with no block over ${SCRUB_BLOCK_MS} ms`, async () => {
    const parts: string[] = []
    const chunk = wordText(WORDS, 200_000, 3)
    for (let i = 0; i < 50; i++) parts.push(chunk, i % 3 ? 'mysecretpassword ' : `${key} `)
    const s = parts.join('')
    const expected = scrubString(s, secrets)
    const blocks: number[] = []
    let out = ''
    for (let i = 0; i < 3 && !(blocks.at(-1)! <= SCRUB_BLOCK_MS); i++) {
      const r = await longestBlock(() => scrubSliced(s, secrets, new Slicer(10)))
      blocks.push(Math.round(r.maxMs))
      out = r.value
    }
    console.log(`masking 10M characters with secrets: ${blocks.join(', ')} ms of CPU in the longest block`)
    expect(out === expected).toBe(true)
    expect(Math.min(...blocks)).toBeLessThanOrEqual(SCRUB_BLOCK_MS)
  }, 120_000)
})

const BIG_CHARS = 10_000_000
const BIG_ENTRIES = 10

/**
 * A log of small entries and eight of a 10M-character prompt each (13 MB lines), signed by
 * checkpoints, then an unsigned tail of a 52 MB entry, a 13 MB one and a small one (a writer that
 * stopped before it signed them): BIG_ENTRIES large lines in one file of 169 MB.
 */
async function writeLargeLog(dir: string): Promise<{ entries: number; bigLines: number[] }> {
  const big = wordText(WORDS, BIG_CHARS, 11)
  const signer = loadSigner(dir)
  const w = new AuditWriter(fsStore({ dir, rotateBytes: 0, fsync: 'never' }), signer, {
    checkpointSeconds: 0,
    checkpointEvery: 4,
  })
  await w.open()
  let n = 0
  const bigAt = new Set([1, 2, 4, 7, 9, 10, 12, 13])
  for (let i = 0; i < 15; i++) {
    const entry = bigAt.has(i)
      ? sampleEntry(n, { prompt: { messages: [{ role: 'user', content: `${n} ${big}` }] } })
      : sampleEntry(n)
    n++
    const wait = w.append(entry)
    if (wait) await wait
    await w.flush()
  }
  await w.close()
  // the unsigned tail, sealed as the writer would have
  const file = listLogFiles(dir).at(-1)!.path
  const lines = readFileSync(file).toString('latin1').split('\n')
  let last = parseLine(Buffer.from(lines.at(-2)!, 'latin1'))!
  for (let i = 0; i < 3; i++) {
    const entry: AuditEntry =
      // the first one four times as long: 52 MB
      i < 2
        ? sampleEntry(n, { prompt: { messages: [{ role: 'user', content: `${n} ${i ? big : big.repeat(4)}` }] } })
        : sampleEntry(n)
    n++
    const sealed = sealEntry(entry, last.seq + 1, last.hash)
    appendFileSync(file, `${sealed.line}\n`)
    last = parseLine(sealed.line)!
  }
  const all = readFileSync(file).toString('latin1').split('\n').slice(0, -1)
  const bigLines = all.flatMap((l, i) => (l.length > 1_000_000 ? [i + 1] : []))
  return { entries: n, bigLines }
}

/** the file's lines as bytes, without newlines */
function linesOf(file: string): Buffer[] {
  const buf = readFileSync(file)
  const out: Buffer[] = []
  for (let at = 0; at < buf.length; ) {
    const nl = buf.indexOf(10, at)
    out.push(buf.subarray(at, nl))
    at = nl + 1
  }
  return out
}

/** flip one byte of line `line` (1-based) at `offset` to `to` */
function editLine(file: string, line: number, offset: number, to: string): void {
  const buf = readFileSync(file)
  let at = 0
  for (let i = 1; i < line; i++) at = buf.indexOf(10, at) + 1
  buf[at + offset] = to.charCodeAt(0)
  writeFileSync(file, buf)
}

describe('a log with lines of 13 MB read back', () => {
  let dir: string
  let log: { entries: number; bigLines: number[] }
  beforeAll(async () => {
    dir = join(tempDir(), 'audit')
    log = await writeLargeLog(dir)
    expect(log.bigLines.length).toBe(BIG_ENTRIES)
  }, 120_000)
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('a large line reads as parseLine reads it, edited or not', async () => {
    const parseLineSliced = (chain as Record<string, any>).parseLineSliced
    expect(typeof parseLineSliced).toBe('function')
    const file = listLogFiles(dir)[0]!.path
    const lines = linesOf(file)
    const big = lines[log.bigLines[0]! - 1]!
    const edited = Buffer.from(big)
    edited[5_000_000] = edited[5_000_000] === 0x61 ? 0x62 : 0x61
    const cases = [...lines.slice(0, 6), big, edited, big.subarray(0, big.length - 3), big.subarray(1)]
    for (const b of cases) {
      const before = Buffer.from(b)
      const one = parseLine(b)
      const sliced = await parseLineSliced(b, new Slicer(0))
      expect(b.equals(before)).toBe(true)
      if (!one) {
        expect(sliced).toBeUndefined()
        continue
      }
      const fields = (p: NonNullable<typeof one>) => [p.seq, p.prev, p.kind, p.hash, p.computed, p.sig]
      expect(fields(sliced)).toEqual(fields(one))
      expect(sliced.body() === one.body()).toBe(true)
    }
  }, 60_000)

  it('verify --deep on a large line: what the one-go check says, a line re-sealed off canonical form caught', async () => {
    const isCanonicalSliced = (sliced as Record<string, any>).isCanonicalSliced
    expect(typeof isCanonicalSliced).toBe('function')
    const file = listLogFiles(dir)[0]!.path
    const lines = linesOf(file)
    const big = lines[log.bigLines[0]! - 1]!
    const body = parseLine(big)!.body()
    const oneGo = (b: Buffer) => {
      try {
        const text = parseLine(b)!.body()
        return serialise(JSON.parse(text)) === text
      } catch {
        return false
      }
    }
    // the text re-sealed: its hash matches, its form does not
    const resealed = (text: string) => Buffer.from(`${text.slice(0, -1)},"hash":"${sha256Hex(text)}"}`)
    const cases: Array<[string, Buffer, boolean]> = [
      ['as written', big, true],
      ['a space', resealed(body.replace('"kind":"request",', '"kind":"request", ')), false],
      ['a number written otherwise', resealed(body.replace('"v":1', '"v":1.0')), false],
      ['a key twice', resealed(body.replace('"vendor":"demo"', '"vendor":"x","vendor":"demo"')), false],
      ['keys out of order', resealed(body.replace('"v":1,"vendor":"demo"', '"vendor":"demo","v":1')), false],
      ['an escape written otherwise', resealed(body.replace('\\n', '\\u000a')), false],
      ['malformed', resealed(body.replace('"vendor":"demo"', '"vendor":demo')), false],
    ]
    for (const [name, line, canonical] of cases) {
      expect(line.length, name).toBeGreaterThan(1_000_000)
      expect(oneGo(line), name).toBe(canonical)
      // malformed: it throws as JSON.parse does (verify counts a throw as not canonical)
      expect(await isCanonicalSliced(line, new Slicer(0)).catch(() => false), name).toBe(canonical)
    }
    // appended to a copy of the log as its next record: verify passes it, verify --deep names it
    const copy = join(tempDir(), 'audit')
    try {
      cpSync(dir, copy, { recursive: true })
      const copied = listLogFiles(copy)[0]!.path
      const last = parseLine(linesOf(copied).at(-1)!)!
      const record = JSON.parse(body)
      const text = serialise({ ...record, seq: last.seq + 1, prev: last.hash }).replace('"v":1', '"v":1.0')
      appendFileSync(copied, resealed(text))
      appendFileSync(copied, '\n')
      const keys = loadPublicKeys(undefined, copy)
      expect(await verifyLog(fsLogSource(copy), { publicKeys: keys })).toMatchObject({ ok: true, unsignedTail: 4 })
      const deep = await verifyLog(fsLogSource(copy), { publicKeys: keys, deep: true })
      expect(deep.problem).toMatchObject({ kind: 'edited', seq: last.seq + 1, line: lines.length + 1 })
      expect(deep.problem!.message).toMatch(/^entry is not canonical JSON/)
    } finally {
      rmSync(copy, { recursive: true, force: true })
    }
  }, 120_000)

  it('verify: the one-go results, a large line edited caught', async () => {
    const keys = loadPublicKeys(undefined, dir)
    const r = await verifyLog(fsLogSource(dir), { publicKeys: keys })
    expect(r.problem).toBeUndefined()
    expect(r).toMatchObject({ ok: true, entries: log.entries, unsignedTail: 3, tornTail: false, heads: 1 })
    expect(r.checkpoints).toBeGreaterThanOrEqual(3)
    const deep = await verifyLog(fsLogSource(dir), { publicKeys: keys, deep: true })
    expect(deep).toEqual({ ...r })

    const copy = join(tempDir(), 'audit')
    try {
      cpSync(dir, copy, { recursive: true })
      const file = listLogFiles(copy)[0]!.path
      const line = log.bigLines[2]!
      const seq = parseLine(linesOf(file)[line - 1]!)!.seq
      // a letter in the middle of the prompt: its hash no longer matches
      const at = linesOf(file)[line - 1]!.indexOf('the ', 6_000_000)
      editLine(file, line, at, 'T')
      const edited = await verifyLog(fsLogSource(copy), { publicKeys: keys })
      expect(edited.ok).toBe(false)
      expect(edited.problem).toMatchObject({ kind: 'edited', seq, line })
      expect(edited.problem!.message).toMatch(/^content does not match its hash/)
      // the log's last large line cut short (a write interrupted): a torn tail, not a problem
      const lines = linesOf(file)
      const lastBig = log.bigLines.at(-1)!
      writeFileSync(
        file,
        Buffer.concat([
          ...lines.slice(0, lastBig - 1).flatMap((l) => [l, Buffer.from('\n')]),
          lines[lastBig - 1]!.subarray(0, 7_000_000),
        ]),
      )
      const torn = await verifyLog(fsLogSource(copy), { publicKeys: keys })
      expect(torn).toMatchObject({ ok: false, tornTail: false, problem: { kind: 'edited', seq, line } })
      editLine(file, line, at, 't')
      const restored = await verifyLog(fsLogSource(copy), { publicKeys: keys })
      expect(restored).toMatchObject({ ok: true, tornTail: true, entries: log.entries - 2, unsignedTail: 1 })
    } finally {
      rmSync(copy, { recursive: true, force: true })
    }
  }, 120_000)

  it('the unsigned-tail scan: the one-go result, an edited large line named', async () => {
    const tail = await scanUnsignedTail(fsStore({ dir }).linesBackward())
    expect(tail).toMatchObject({ newestSeq: linesOf(listLogFiles(dir)[0]!.path).length, entries: 3 })
    expect(tail.problem).toBeUndefined()
    const copy = join(tempDir(), 'audit')
    try {
      cpSync(dir, copy, { recursive: true })
      const file = listLogFiles(copy)[0]!.path
      const lines = linesOf(file)
      const line = lines.length - 1
      const seq = parseLine(lines[line - 1]!)!.seq
      editLine(file, line, lines[line - 1]!.indexOf('the ', 3_000_000), 'T')
      const edited = await scanUnsignedTail(fsStore({ dir: copy }).linesBackward())
      expect(edited.problem).toBe(`seq ${seq}: content does not match its hash`)
    } finally {
      rmSync(copy, { recursive: true, force: true })
    }
  }, 60_000)

  /**
   * Measured here, a writer's open (head, unsigned-tail scan) over a tail of a 52 MB and a 13 MB
   * line: 57-112 ms of CPU in the longest block before (each line hashed in one go, the 52 MB one
   * copied again at each 256K chunk read; with a 39 MB line 41-77 ms, 2.7 s in all); 8-31 ms after
   * (0.2 s in all; slices of 5 ms, and collections of the megabytes read, 5-16 ms each, in one of
   * them). The least of three tries is checked.
   */
  const TAIL_BLOCK_MS = 45
  it(`the unsigned-tail scan at open: no block over ${TAIL_BLOCK_MS} ms`, async () => {
    const blocks: number[] = []
    for (let i = 0; i < 3 && !(blocks.at(-1)! <= TAIL_BLOCK_MS); i++) {
      const store = fsStore({ dir, fsync: 'never' })
      const r = await longestBlock(async () => {
        await store.open()
        return scanUnsignedTail(store.linesBackward())
      })
      await store.close()
      expect(r.value.entries).toBe(3)
      blocks.push(Math.round(r.maxMs))
    }
    console.log(`unsigned-tail scan over a 52 MB and a 13 MB line: ${blocks.join(', ')} ms of CPU in the longest block`)
    expect(Math.min(...blocks)).toBeLessThanOrEqual(TAIL_BLOCK_MS)
  }, 120_000)

  /**
   * Measured here, POST /agentmesh/admin/audit/verify on this log (a file of 169 MB: nine lines of
   * 13 MB and one of 52 MB) while small requests are served: 100-103 ms of CPU in the longest
   * block before (the file's lines hashed back to back in one go; the slowest small request
   * 100-107 ms), 10-44 after (slices of 5 ms; what is left is the collections the megabytes read
   * bring, 5-16 ms each, two back to back at times, more under load; the slowest small request
   * 18-69 ms). The least of three tries is checked.
   */
  const VERIFY_BLOCK_MS = 60
  it(`the verify route while small requests are served: no block over ${VERIFY_BLOCK_MS} ms`, async () => {
    // the writer seals the tail it finds at open (a recovered checkpoint): nothing unsigned
    const { blocks, slowest } = await verifyRouteBlocks(join(dir, '..'), VERIFY_BLOCK_MS, {
      ok: true,
      entries: log.entries,
      unsignedTail: 0,
      problem: null,
    })
    console.log(
      `verify route, 169 MB of lines of 13-52 MB: ${blocks.join(', ')} ms of CPU in the longest block; slowest small request ${slowest.join(', ')} ms`,
    )
    expect(Math.min(...blocks)).toBeLessThanOrEqual(VERIFY_BLOCK_MS)
  }, 180_000)
})

/**
 * Measured here, the verify route on a full file of small entries (100,000 of them, 66 MB: what
 * the default rotation at 64 MiB leaves): 215-306 ms of CPU in the longest block before (a file's
 * lines were walked with no pause), 7-22 after. The least of three tries is checked.
 */
const SMALL_LINES_BLOCK_MS = 75
describe('a log file of 100,000 small entries read back', () => {
  let root: string
  beforeAll(async () => {
    root = tempDir()
    const dir = join(root, 'audit')
    await writeEntries(fsStore({ dir, fsync: 'never' }), loadSigner(dir), 100_000, { checkpointEvery: 1000 })
  }, 120_000)
  afterAll(() => rmSync(root, { recursive: true, force: true }))

  it(`the verify route: no block over ${SMALL_LINES_BLOCK_MS} ms`, async () => {
    const { blocks, slowest } = await verifyRouteBlocks(root, SMALL_LINES_BLOCK_MS, {
      ok: true,
      entries: 100_000,
      unsignedTail: 0,
      problem: null,
    })
    console.log(
      `verify route, 100,000 small entries: ${blocks.join(', ')} ms of CPU in the longest block; slowest small request ${slowest.join(', ')} ms`,
    )
    expect(Math.min(...blocks)).toBeLessThanOrEqual(SMALL_LINES_BLOCK_MS)
  }, 180_000)
})

/**
 * A proxy with the audit on `dataDir`'s log: POST /agentmesh/admin/audit/verify while GET /health
 * is asked for again and again, up to three times until the longest block is within `bound`; each
 * answer must match `expected`.
 */
async function verifyRouteBlocks(dataDir: string, bound: number, expected: Record<string, unknown>) {
  process.env.AGENTMESH_ADMIN_TOKEN = ADMIN
  let proxy: Proxy | undefined
  const blocks: number[] = []
  const slowest: number[] = []
  try {
    proxy = await startProxy({
      dataDir,
      plugins: [audit({ includeContent: true, checkpointSeconds: 0, fsync: 'never' })],
    })
    const url = proxy.url
    for (let i = 0; i < 3 && !(blocks.at(-1)! <= bound); i++) {
      let done = false
      let slow = 0
      const small = async () => {
        while (!done) {
          const t = performance.now()
          expect((await fetch(`${url}/health`)).status).toBe(200)
          slow = Math.max(slow, performance.now() - t)
        }
      }
      const r = await longestBlock(async () => {
        const served = small()
        const res = await fetch(`${url}/agentmesh/admin/audit/verify`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN}` },
        })
        done = true
        await served
        return res.json()
      })
      expect(r.value).toMatchObject(expected)
      blocks.push(Math.round(r.maxMs))
      slowest.push(Math.round(slow))
    }
  } finally {
    await proxy?.close()
    delete process.env.AGENTMESH_ADMIN_TOKEN
  }
  return { blocks, slowest }
}
