// Verification: walk the chain once, recompute every hash, check every link and every
// checkpoint signature, and name the first thing that is wrong.
import { GENESIS } from './canonical.ts'
import { parseLine, serialise, type ParsedLine } from './chain.ts'
import { verifySignature, type PublicKeyInfo } from './signer.ts'
import type { LogLine, LogSource } from './store.ts'

export type ProblemKind = 'edited' | 'deleted' | 'inserted' | 'reordered' | 'bad-signature'

export interface VerifyProblem {
  kind: ProblemKind
  /** seq of the record the problem is about (for deleted: the first missing seq) */
  seq?: number
  /** where: file (or redis key) and 1-based line */
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
  /** the last line was cut short by an interrupted write (SIGKILL, power loss) */
  tornTail: boolean
  lastCheckpoint?: { seq: number; ts: string; keyId: string }
  problem?: VerifyProblem
}

export interface VerifyOptions {
  publicKeys: PublicKeyInfo[]
  /** also JSON-parse every entry and check it is in canonical form (slower) */
  deep?: boolean
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
  async findSeq(seq: number): Promise<LogLine | undefined> {
    for (let n = 1; await this.ensure(n); n++) {
      const l = this.buf[this.pos + n]!
      const p = parseLine(l.data)
      if (p && p.seq === seq && p.computed === p.hash) return l
    }
    return undefined
  }
  async close(): Promise<void> {
    await this.it.return?.()
  }
}

export async function verifyLog(source: LogSource, options: VerifyOptions): Promise<VerifyResult> {
  const keys = new Map(options.publicKeys.map((k) => [k.keyId, k]))
  const result: VerifyResult = { ok: true, source: source.describe, entries: 0, checkpoints: 0, unsignedTail: 0, tornTail: false }
  const cur = new Cursor(source)
  let lastSeq = 0
  let lastHash = GENESIS
  let lastPrev = ''
  let lastLine: LogLine | undefined
  let lastIsCheckpoint = false
  let prevCheckpointSeq = 0

  const fail = (kind: ProblemKind, at: LogLine, seq: number | undefined, message: string): VerifyResult => {
    result.ok = false
    result.problem = { kind, seq, file: at.file, line: at.line, message }
    return result
  }
  /** does the line after the current one continue the chain from the last good record? */
  const nextContinues = async (): Promise<boolean> => {
    const n = await cur.peek(1)
    const p = n && parseLine(n.data)
    return !!p && p.computed === p.hash && p.seq === lastSeq + 1 && p.prev === lastHash
  }

  try {
    while (await cur.ensure(0)) {
      const L = cur.buf[cur.pos]!
      const p: ParsedLine | undefined = parseLine(L.data)
      if (!p || p.computed !== p.hash) {
        if (L.final && !L.terminated) {
          result.tornTail = true
          break
        }
        if (await nextContinues()) {
          return fail('inserted', L, undefined, `this line is not part of the chain (${p ? 'its hash does not match its content' : 'not a valid audit record'}); the chain continues after it from seq ${lastSeq}`)
        }
        return fail('edited', L, p?.seq, p ? `content does not match its hash (stored ${p.hash.slice(0, 12)}…, computed ${p.computed.slice(0, 12)}…)` : 'not a valid audit record (malformed JSON or hash trailer)')
      }
      const r = p
      if (r.seq !== lastSeq + 1 || r.prev !== lastHash) {
        if (r.seq === lastSeq + 1) {
          if (await nextContinues()) return fail('inserted', L, r.seq, `a second record with seq ${r.seq} that does not link to the chain; the chain continues after it`)
          if (lastSeq === 0 || lastIsCheckpoint || !lastLine) {
            return fail('edited', L, r.seq, `record links to ${r.prev.slice(0, 12)}…, not to the previous record's hash ${lastHash.slice(0, 12)}…: it was altered and re-hashed`)
          }
          return fail('edited', lastLine, lastSeq, `record seq ${lastSeq} was altered and re-hashed: the next record (seq ${r.seq}, ${L.file}:${L.line}) links to a different hash (or was itself forged)`)
        }
        if (r.seq > lastSeq + 1) {
          const found = await cur.findSeq(lastSeq + 1)
          if (found) return fail('reordered', L, r.seq, `record seq ${r.seq} appears where seq ${lastSeq + 1} belongs (seq ${lastSeq + 1} is at ${found.file}:${found.line})`)
          const n = r.seq - lastSeq - 1
          return fail('deleted', L, lastSeq + 1, `${n === 1 ? `record seq ${lastSeq + 1} is` : `records seq ${lastSeq + 1}..${r.seq - 1} (${n}) are`} missing before this line`)
        }
        if (r.seq === lastSeq && r.prev === lastPrev && lastLine) {
          // two records claim the same place in the chain: the one the next record links to is real
          const n = await cur.peek(1)
          const np = n && parseLine(n.data)
          if (np && np.computed === np.hash && np.seq === r.seq + 1 && np.prev === r.hash) {
            return fail('inserted', lastLine, lastSeq, `record seq ${lastSeq} was inserted: another record with seq ${lastSeq} follows it (${L.file}:${L.line}), and the chain continues from that one`)
          }
          return fail('inserted', L, r.seq, `a second record with seq ${r.seq} that the chain does not continue from`)
        }
        if (await nextContinues()) return fail('inserted', L, r.seq, `record seq ${r.seq} appears again after seq ${lastSeq} (a duplicated or replayed record); the chain continues after it`)
        return fail('reordered', L, r.seq, `record seq ${r.seq} appears after seq ${lastSeq}`)
      }
      if (r.kind === 'checkpoint') {
        let c: any
        try {
          c = p.record()
        } catch {}
        // the header was read without JSON.parse; the parsed body must agree with it
        if (!c || c.seq !== r.seq || c.prev !== r.prev || c.kind !== 'checkpoint' || typeof c.keyId !== 'string') {
          return fail('edited', L, r.seq, 'checkpoint is not a well-formed record')
        }
        if (!p.sig) return fail('bad-signature', L, r.seq, 'checkpoint has no signature')
        const key = keys.get(c.keyId)
        if (!key) {
          return fail('bad-signature', L, r.seq, `checkpoint is signed by key ${c.keyId}, which is not among the public keys given (${[...keys.keys()].join(', ') || 'none'})`)
        }
        if (!verifySignature(key.key, p.hash, p.sig)) {
          return fail('bad-signature', L, r.seq, `signature does not verify with key ${c.keyId}: the checkpoint, or the records it covers since the previous checkpoint (seq ${prevCheckpointSeq + 1}..${r.seq - 1}), were altered`)
        }
        if (c.count !== r.seq - 1) return fail('edited', L, r.seq, `checkpoint count ${c.count} does not match its position (${r.seq - 1} records before it)`)
        result.checkpoints++
        result.unsignedTail = 0
        result.lastCheckpoint = { seq: r.seq, ts: c.ts, keyId: c.keyId }
        prevCheckpointSeq = r.seq
        lastIsCheckpoint = true
      } else {
        // a signature on an entry is outside the hashed bytes: refuse it rather than ignore it
        if (p.sig) return fail('edited', L, r.seq, 'an entry carries a signature field (only checkpoints are signed)')
        if (options.deep) {
          // the hash already pins the bytes; this checks they are the canonical JSON a third-party
          // verifier would recompute from the parsed record
          let ok = false
          try {
            const body = p.body()
            ok = serialise(JSON.parse(body)) === body
          } catch {}
          if (!ok) return fail('edited', L, r.seq, 'entry is not canonical JSON (hash matches: written so by whoever computed it)')
        }
        result.entries++
        result.unsignedTail++
        lastIsCheckpoint = false
      }
      lastSeq = r.seq
      lastPrev = r.prev
      lastHash = p.hash
      lastLine = L
      cur.pos++
    }
    return result
  } finally {
    await cur.close()
  }
}

/** Human-readable lines for the CLI. */
export function formatVerifyResult(r: VerifyResult): string[] {
  if (!r.ok && r.problem) {
    const p = r.problem
    return [
      `FAIL ${p.kind} at ${p.file}:${p.line}${p.seq !== undefined ? ` (seq ${p.seq})` : ''}: ${p.message}`,
      `verified before it: entries=${r.entries} checkpoints=${r.checkpoints}`,
    ]
  }
  const out = [`OK entries=${r.entries} checkpoints=${r.checkpoints}`]
  if (r.unsignedTail > 0) {
    out.push(`unsigned tail: ${r.unsignedTail} entries (after ${r.lastCheckpoint ? `the last checkpoint, seq ${r.lastCheckpoint.seq}` : 'the start: no checkpoint yet'}; chained but not signed yet)`)
  }
  if (r.tornTail) out.push('incomplete last line: an interrupted write (crash or SIGKILL), not part of the chain')
  return out
}
