// Verification: walk the chain once, recompute every hash, check every link and every
// checkpoint signature, compare the log with the signed heads kept elsewhere, and name the
// first thing that is wrong.

import { Slicer } from '../../core/slicer.ts'
import { GENESIS } from './canonical.ts'
import { LARGE_LINE_BYTES, type ParsedLine, parseLine, parseLineSliced, READBACK_SLICE_MS, serialise } from './chain.ts'
import { type BadHead, checkHeadSignature, type FoundHead, readHeads } from './head.ts'
import { type PublicKeyInfo, verifySignature } from './signer.ts'
import { isCanonicalSliced } from './sliced.ts'
import { type LogLine, LogMissingError, type LogSource } from './store.ts'

export type ProblemKind =
  | 'edited'
  | 'deleted'
  | 'inserted'
  | 'reordered'
  | 'bad-signature'
  | 'truncated'
  | 'diverged'
  | 'bad-head'

export interface VerifyProblem {
  kind: ProblemKind
  /** seq of the record the problem is about (for deleted: the first missing seq) */
  seq?: number
  /** where: file (or redis key, or where a signed head was read) and 1-based line (0: the whole file) */
  file: string
  line: number
  message: string
}

export interface VerifyResult {
  ok: boolean
  /** where the log was read from */
  source: string
  /** request entries verified (up to the problem, if any) */
  entries: number
  checkpoints: number
  /** entries after the last valid checkpoint: chained but not signed yet */
  unsignedTail: number
  /** entries a restarted writer sealed for a writer that stopped (their writer never signed them) */
  recovered: number
  /** their seq ranges */
  recoveredRanges: Array<{ from: number; to: number }>
  /** signed heads the log was compared with */
  heads: number
  /** times the store could not be written, as recorded by checkpoints */
  outages: Array<{ since: string; until: string; refused: number; dropped: number }>
  /** the last line was cut short by an interrupted write (SIGKILL, power loss) */
  tornTail: boolean
  lastCheckpoint?: { seq: number; ts: string; keyId: string }
  problem?: VerifyProblem
}

export interface HeadInput {
  /** where it was read: named in messages */
  from: string
  /** JSON text (one head or JSON lines) or a parsed head */
  value: string | object | null | undefined
}

export interface VerifyOptions {
  publicKeys: PublicKeyInfo[]
  /** also JSON-parse every entry and check it is in canonical form (slower) */
  deep?: boolean
  /** signed heads from elsewhere (mesh storage, a witness's copy); the one beside the log is read too */
  heads?: HeadInput[]
}

/** Buffered reader over a source's chunks, with the look-ahead the diagnosis needs. */
class Cursor {
  buf: LogLine[] = []
  pos = 0
  private done = false
  private it: AsyncIterator<LogLine[]>
  constructor(source: LogSource) {
    this.it = source.chunks()[Symbol.asyncIterator]()
  }
  /** true when buf[pos + n] exists */
  async ensure(n: number): Promise<boolean> {
    while (this.pos + n >= this.buf.length && !this.done) {
      const r = await this.it.next()
      if (r.done) {
        this.done = true
        break
      }
      this.buf = this.pos > 0 ? this.buf.slice(this.pos).concat(r.value) : this.buf.concat(r.value)
      this.pos = 0
    }
    return this.pos + n < this.buf.length
  }
  async peek(n: number): Promise<LogLine | undefined> {
    return (await this.ensure(n)) ? this.buf[this.pos + n] : undefined
  }
  /** the first later line holding a valid record with this seq */
  async findSeq(seq: number, parse: LineParser, slicer: Slicer): Promise<LogLine | undefined> {
    for (let n = 1; await this.ensure(n); n++) {
      const l = this.buf[this.pos + n]!
      await slicer.pause()
      const p = await parse(l.data)
      if (p && p.seq === seq && p.computed === p.hash) return l
    }
    return undefined
  }
  async close(): Promise<void> {
    await this.it.return?.()
  }
}

type LineParser = (data: Buffer) => Promise<ParsedLine | undefined>

/** Thrown inside the walk to end it with a problem. */
class Found {
  constructor(readonly problem: VerifyProblem) {}
}

const where = (h: FoundHead) => `the signed head in ${h.from} (seq ${h.head.seq}, ${h.head.ts})`

/** One pass over the log; each method checks one thing about the current record. */
class Walk {
  readonly result: VerifyResult
  private keys: Map<string, PublicKeyInfo>
  private lastSeq = 0
  private lastHash = GENESIS
  private lastPrev = ''
  private lastLine: LogLine | undefined
  private lastIsCheckpoint = false
  private prevCheckpointSeq = 0
  /** heads by ascending seq, and the next one the walk has to meet */
  private heads: FoundHead[]
  private nextHead = 0
  // the loop is given back between slices: a file's lines come as one chunk, and walked with no
  // pause (104 MB of lines of 13-39 MB; 100,000 small entries) they held the proxy's loop 61-65
  // and 215-306 ms in the verify route
  private slicer = new Slicer(READBACK_SLICE_MS)
  private parse: LineParser = (data) => parseLineSliced(data, this.slicer)
  private unchecked = 0

  constructor(
    private cur: Cursor,
    source: string,
    private options: VerifyOptions,
    heads: FoundHead[],
  ) {
    this.keys = new Map(options.publicKeys.map((k) => [k.keyId, k]))
    this.heads = heads.slice().sort((a, b) => a.head.seq - b.head.seq)
    this.result = {
      ok: true,
      source,
      entries: 0,
      checkpoints: 0,
      unsignedTail: 0,
      recovered: 0,
      recoveredRanges: [],
      heads: 0,
      outages: [],
      tornTail: false,
    }
  }

  fail(kind: ProblemKind, at: { file: string; line: number }, seq: number | undefined, message: string): never {
    throw new Found({ kind, seq, file: at.file, line: at.line, message })
  }

  async run(): Promise<void> {
    const cur = this.cur
    while (await cur.ensure(0)) {
      const L = cur.buf[cur.pos]!
      // a small line (almost every one) without a promise of its own
      const p = L.data.length < LARGE_LINE_BYTES ? parseLine(L.data) : await this.parse(L.data)
      if (!p || p.computed !== p.hash) {
        if (L.final && !L.terminated) {
          this.result.tornTail = true
          break
        }
        await this.badLine(L, p)
      }
      const r = p!
      if (r.seq !== this.lastSeq + 1 || r.prev !== this.lastHash) await this.badLink(L, r)
      if (r.kind === 'checkpoint') this.checkpoint(L, r)
      else if (this.options.deep) await this.deepEntry(L, r)
      else this.entry(L, r)
      if (this.nextHead < this.heads.length && this.heads[this.nextHead]!.head.seq === r.seq) this.headsAt(L, r)
      this.lastSeq = r.seq
      this.lastPrev = r.prev
      this.lastHash = r.hash
      this.lastLine = L
      cur.pos++
      // the clock read once per 64K of lines: read at every small line it made the walk some 8% slower
      if ((this.unchecked += L.data.length) >= 65_536) {
        this.unchecked = 0
        if (this.slicer.due()) await this.slicer.yield()
      }
    }
  }

  /** does the line after the current one continue the chain from the last good record? */
  private async nextContinues(): Promise<boolean> {
    const n = await this.cur.peek(1)
    const p = n && (await this.parse(n.data))
    return !!p && p.computed === p.hash && p.seq === this.lastSeq + 1 && p.prev === this.lastHash
  }

  /** a line whose bytes are not a record or do not match its hash */
  private async badLine(L: LogLine, p: ParsedLine | undefined): Promise<never> {
    if (await this.nextContinues()) {
      this.fail(
        'inserted',
        L,
        undefined,
        `this line is not part of the chain (${p ? 'its hash does not match its content' : 'not a valid audit record'}); the chain continues after it from seq ${this.lastSeq}`,
      )
    }
    this.fail(
      'edited',
      L,
      p?.seq,
      p
        ? `content does not match its hash (stored ${p.hash.slice(0, 12)}…, computed ${p.computed.slice(0, 12)}…)`
        : 'not a valid audit record (malformed JSON or hash trailer)',
    )
  }

  /** a valid record in the wrong place: classify why */
  private async badLink(L: LogLine, r: ParsedLine): Promise<never> {
    const { lastSeq, lastHash, lastPrev, lastLine } = this
    if (r.seq === lastSeq + 1) {
      if (await this.nextContinues())
        this.fail(
          'inserted',
          L,
          r.seq,
          `a second record with seq ${r.seq} that does not link to the chain; the chain continues after it`,
        )
      if (lastSeq === 0 || this.lastIsCheckpoint || !lastLine) {
        this.fail(
          'edited',
          L,
          r.seq,
          `record links to ${r.prev.slice(0, 12)}…, not to the previous record's hash ${lastHash.slice(0, 12)}…: it was altered and re-hashed`,
        )
      }
      this.fail(
        'edited',
        lastLine,
        lastSeq,
        `record seq ${lastSeq} was altered and re-hashed: the next record (seq ${r.seq}, ${L.file}:${L.line}) links to a different hash (or was itself forged)`,
      )
    }
    if (r.seq > lastSeq + 1) {
      const found = await this.cur.findSeq(lastSeq + 1, this.parse, this.slicer)
      if (found)
        this.fail(
          'reordered',
          L,
          r.seq,
          `record seq ${r.seq} appears where seq ${lastSeq + 1} belongs (seq ${lastSeq + 1} is at ${found.file}:${found.line})`,
        )
      const n = r.seq - lastSeq - 1
      this.fail(
        'deleted',
        L,
        lastSeq + 1,
        `${n === 1 ? `record seq ${lastSeq + 1} is` : `records seq ${lastSeq + 1}..${r.seq - 1} (${n}) are`} missing before this line`,
      )
    }
    if (r.seq === lastSeq && r.prev === lastPrev && lastLine) {
      // two records claim the same place in the chain: the one the next record links to is real
      const n = await this.cur.peek(1)
      const np = n && (await this.parse(n.data))
      if (np && np.computed === np.hash && np.seq === r.seq + 1 && np.prev === r.hash) {
        this.fail(
          'inserted',
          lastLine,
          lastSeq,
          `record seq ${lastSeq} was inserted: another record with seq ${lastSeq} follows it (${L.file}:${L.line}), and the chain continues from that one`,
        )
      }
      this.fail('inserted', L, r.seq, `a second record with seq ${r.seq} that the chain does not continue from`)
    }
    if (await this.nextContinues())
      this.fail(
        'inserted',
        L,
        r.seq,
        `record seq ${r.seq} appears again after seq ${lastSeq} (a duplicated or replayed record); the chain continues after it`,
      )
    this.fail('reordered', L, r.seq, `record seq ${r.seq} appears after seq ${lastSeq}`)
  }

  private checkpoint(L: LogLine, r: ParsedLine): void {
    let c: any
    try {
      c = r.record()
    } catch {}
    // the header was read without JSON.parse; the parsed body must agree with it
    if (!c || c.seq !== r.seq || c.prev !== r.prev || c.kind !== 'checkpoint' || typeof c.keyId !== 'string') {
      this.fail('edited', L, r.seq, 'checkpoint is not a well-formed record')
    }
    if (!r.sig) this.fail('bad-signature', L, r.seq, 'checkpoint has no signature')
    const key = this.keys.get(c.keyId)
    if (!key) {
      this.fail(
        'bad-signature',
        L,
        r.seq,
        `checkpoint is signed by key ${c.keyId}, which is not among the public keys given (${[...this.keys.keys()].join(', ') || 'none'})`,
      )
    }
    if (!verifySignature(key.key, r.hash, r.sig)) {
      this.fail(
        'bad-signature',
        L,
        r.seq,
        `signature does not verify with key ${c.keyId}: the checkpoint, or the records it covers since the previous checkpoint (seq ${this.prevCheckpointSeq + 1}..${r.seq - 1}), were altered`,
      )
    }
    if (c.count !== r.seq - 1)
      this.fail(
        'edited',
        L,
        r.seq,
        `checkpoint count ${c.count} does not match its position (${r.seq - 1} records before it)`,
      )
    if (c.lostHead) {
      const h = c.lostHead
      this.fail(
        'truncated',
        L,
        r.seq,
        `when a writer opened this log, it no longer reached its signed head (seq ${h.seq}, ${h.ts}): records were cut off or replaced while no writer ran (the log went on from seq ${r.seq - 1}; this checkpoint records the loss)`,
      )
    }
    const res = this.result
    if (c.recovered === true && res.unsignedTail > 0) {
      res.recovered += res.unsignedTail
      res.recoveredRanges.push({ from: this.prevCheckpointSeq + 1, to: r.seq - 1 })
    }
    if (c.outage && typeof c.outage === 'object') res.outages.push(c.outage)
    res.checkpoints++
    res.unsignedTail = 0
    res.lastCheckpoint = { seq: r.seq, ts: c.ts, keyId: c.keyId }
    this.prevCheckpointSeq = r.seq
    this.lastIsCheckpoint = true
  }

  private entry(L: LogLine, r: ParsedLine): void {
    // a signature on an entry is outside the hashed bytes: refuse it rather than ignore it
    if (r.sig) this.fail('edited', L, r.seq, 'an entry carries a signature field (only checkpoints are signed)')
    this.result.entries++
    this.result.unsignedTail++
    this.lastIsCheckpoint = false
  }

  /**
   * entry() with --deep: the hash already pins the bytes; this checks they are the canonical JSON
   * a third-party verifier would recompute from the parsed record. (entry() itself stays
   * synchronous: no promise per small line.)
   */
  private async deepEntry(L: LogLine, r: ParsedLine): Promise<void> {
    if (!r.sig && !(await this.canonical(L, r)))
      this.fail('edited', L, r.seq, 'entry is not canonical JSON (hash matches: written so by whoever computed it)')
    this.entry(L, r)
  }

  /** serialise(JSON.parse(body)) === body; a line of megabytes decoded, parsed and printed in slices */
  private async canonical(L: LogLine, r: ParsedLine): Promise<boolean> {
    try {
      if (L.data.length >= LARGE_LINE_BYTES) return await isCanonicalSliced(L.data, this.slicer)
      const body = r.body()
      return serialise(JSON.parse(body)) === body
    } catch {
      return false
    }
  }

  /** the record at a signed head's seq must be the checkpoint the head names */
  private headsAt(L: LogLine, r: ParsedLine): void {
    for (; this.nextHead < this.heads.length && this.heads[this.nextHead]!.head.seq === r.seq; this.nextHead++) {
      const h = this.heads[this.nextHead]!
      this.checkHead(h)
      if (h.head.hash !== r.hash || r.kind !== 'checkpoint') {
        this.fail(
          'diverged',
          L,
          r.seq,
          `this record is not the checkpoint ${where(h)} names: the log was cut and rewritten from before seq ${r.seq}, or replaced`,
        )
      }
      this.result.heads++
    }
  }

  private checkHead(h: FoundHead): void {
    const why = checkHeadSignature(h.head, this.keys)
    if (why) this.fail('bad-head', { file: h.from, line: 0 }, h.head.seq, `signed head: ${why}`)
  }

  /** after the last record: heads past the end mean the end was cut off */
  end(bad: BadHead[]): void {
    const past = this.heads.slice(this.nextHead)
    for (const h of past) this.checkHead(h)
    const newest = past.at(-1)
    if (newest) {
      const at = this.lastLine
        ? { file: this.lastLine.file, line: this.lastLine.line + 1 }
        : { file: this.result.source, line: 0 }
      const n = newest.head.seq - this.lastSeq
      this.fail(
        'truncated',
        at,
        this.lastSeq + 1,
        this.lastSeq === 0
          ? `the log is empty, but ${where(newest)} shows ${newest.head.seq} records were written: the log was emptied or its files deleted`
          : `the log ends at seq ${this.lastSeq}, but ${where(newest)} is past it: ${n === 1 ? `record seq ${newest.head.seq} was` : `records seq ${this.lastSeq + 1}..${newest.head.seq} (${n}) were`} cut off the end`,
      )
    }
    const b = bad[0]
    if (b)
      this.fail(
        'bad-head',
        { file: b.from, line: 0 },
        undefined,
        `not a signed head (${b.error}): it was altered or corrupted`,
      )
  }

  /** the log's directory is gone: a failure when a signed head says there was a log */
  gone(err: LogMissingError): void {
    const newest = this.heads.at(-1)
    if (!newest) throw err
    this.checkHead(newest)
    this.fail(
      'truncated',
      { file: err.where, line: 0 },
      1,
      `the log is gone (directory not found), but ${where(newest)} shows ${newest.head.seq} records were written: the log was deleted`,
    )
  }
}

/** The signed heads to compare with: the one beside the log and any given. */
async function gatherHeads(
  source: LogSource,
  given: HeadInput[] = [],
): Promise<{ found: FoundHead[]; bad: BadHead[] }> {
  const own = await source.readHead?.()
  const inputs: HeadInput[] = own ? [{ from: own.from, value: own.text }, ...given] : given
  const found: FoundHead[] = []
  const bad: BadHead[] = []
  for (const input of inputs) {
    const r = readHeads(input.from, input.value)
    found.push(...r.found)
    bad.push(...r.bad)
  }
  return { found, bad }
}

export async function verifyLog(source: LogSource, options: VerifyOptions): Promise<VerifyResult> {
  // heads first: one published while we read cannot be ahead of the log we read after it
  const { found, bad } = await gatherHeads(source, options.heads)
  const cur = new Cursor(source)
  const walk = new Walk(cur, source.describe, options, found)
  try {
    try {
      await walk.run()
    } catch (err) {
      if (!(err instanceof LogMissingError)) throw err
      walk.gone(err)
    }
    walk.end(bad)
  } catch (err) {
    if (!(err instanceof Found)) throw err
    walk.result.ok = false
    walk.result.problem = err.problem
  } finally {
    await cur.close()
  }
  return walk.result
}

/** What `--strict` fails on besides a problem: entries no writer signed, a torn line, no head to compare with. */
export function strictIssues(r: VerifyResult): string[] {
  const out: string[] = []
  if (r.unsignedTail > 0) out.push('unsigned tail')
  if (r.recovered > 0) out.push('recovered entries')
  if (r.tornTail) out.push('incomplete last line')
  if (r.heads === 0 && r.checkpoints > 0) out.push('no signed head')
  return out
}

function ranges(rs: Array<{ from: number; to: number }>): string {
  const shown = rs.slice(0, 5).map((x) => (x.from === x.to ? `${x.from}` : `${x.from}..${x.to}`))
  return shown.join(', ') + (rs.length > 5 ? `, and ${rs.length - 5} more` : '')
}

/** Human-readable lines for the CLI. */
export function formatVerifyResult(r: VerifyResult): string[] {
  if (!r.ok && r.problem) {
    const p = r.problem
    return [
      `FAIL ${p.kind} at ${p.file}${p.line ? `:${p.line}` : ''}${p.seq !== undefined ? ` (seq ${p.seq})` : ''}: ${p.message}`,
      `verified before it: entries=${r.entries} checkpoints=${r.checkpoints}`,
    ]
  }
  const out = [`OK entries=${r.entries} checkpoints=${r.checkpoints}`]
  if (r.unsignedTail > 0) {
    out.push(
      `unsigned tail: ${r.unsignedTail} entries (after ${r.lastCheckpoint ? `the last checkpoint, seq ${r.lastCheckpoint.seq}` : 'the start: no checkpoint yet'}; chained but not signed yet)`,
    )
  }
  if (r.recovered > 0) {
    out.push(
      `recovered: ${r.recovered} entries (seq ${ranges(r.recoveredRanges)}) were left unsigned by a writer that stopped and sealed at restart: chained, but not signed by the writer that wrote them`,
    )
  }
  if (r.tornTail) out.push('incomplete last line: an interrupted write (crash or SIGKILL), not part of the chain')
  if (r.heads === 0 && r.checkpoints > 0)
    out.push('no signed head found to compare with: records cut off the end would go unnoticed')
  for (const o of r.outages)
    out.push(
      `outage: the log could not be written from ${o.since} to ${o.until} (${o.refused} requests refused, ${o.dropped} entries dropped)`,
    )
  return out
}
