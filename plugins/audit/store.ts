// The storage interface the writer and the verifier see; one file per backend (fs, redis),
// unstorage style.
import type { ChainHead } from './chain.ts'
import type { SignedHead } from './head.ts'

/** a sealed line: its text, or (an entry of megabytes, sealed in slices) its UTF-8 bytes */
export type SealedLine = string | Buffer

export type AppendResult = { ok: true } | { ok: false; head: ChainHead }

export interface AuditStore {
  readonly name: string
  /** identifies the log, so two plugin instances in one process share a writer */
  readonly id: string
  /**
   * names the log for its signed head in mesh storage: the writer and `audit verify` derive the
   * same storage key from it (fs: host and directory; redis: server and prefix; never a password)
   */
  readonly logId: string
  /** open for appending (fs: take the writer lock, repair a torn tail) and return the chain head */
  open(): Promise<ChainHead>
  /**
   * Append sealed lines computed from `expected`. Redis answers `ok: false` with the current head
   * when another instance appended first; the writer then re-seals from that head.
   */
  append(
    lines: SealedLine[],
    expected: ChainHead,
    next: ChainHead,
    info: { checkpoint: boolean },
  ): Promise<AppendResult>
  /** re-read the head after a failed append (fs: drops a partial write) */
  recover(): Promise<ChainHead>
  /** stored lines from the newest back: the writer re-verifies the unsigned tail with them at open */
  linesBackward(): AsyncIterable<Buffer>
  /** make what was appended so far durable, before a signed head that names it is published */
  sync(): Promise<void>
  /** the signed head kept beside the log (fs: head.json; redis: a key of its own) */
  readHead(): Promise<string | undefined>
  writeHead(head: SignedHead): Promise<void>
  /** redis: whether another writer is alive on this log (its unsigned tail is then not orphaned) */
  othersAlive?(): Promise<boolean>
  close(): Promise<void>
}

/** One stored line, with where it came from for error messages. */
export interface LogLine {
  /** the line's bytes, without the newline */
  data: Buffer
  /** file name or redis key */
  file: string
  /** 1-based line number in that file (index + 1 in redis) */
  line: number
  /** last line of the whole log */
  final: boolean
  /** ended with a newline (always true in redis) */
  terminated: boolean
}

/** The stored log in order, as chunks of lines, for verify and export. */
export interface LogSource {
  describe: string
  /** see AuditStore.logId */
  logId?: string
  chunks(): AsyncIterable<LogLine[]>
  /** the signed head kept beside the log, with where it was read */
  readHead?(): Promise<{ from: string; text: string } | undefined>
  /** false when the log itself is gone (fs: no directory) */
  exists?(): Promise<boolean>
}

/** fs: the log's directory does not exist. verify turns it into a failure when a signed head says there was a log. */
export class LogMissingError extends Error {
  constructor(readonly where: string) {
    super(`no audit log at ${where} (directory not found)`)
    this.name = 'LogMissingError'
  }
}

export function formatHead(head: ChainHead): string {
  return head.seq === 0 ? '' : `${head.seq} ${head.hash} ${head.kind ?? 'request'}`
}

export function parseHead(text: string | null | undefined): ChainHead | undefined {
  if (!text) return undefined
  const [seq, hash, kind] = text.split(' ')
  const n = Number(seq)
  if (!Number.isSafeInteger(n) || !hash || hash.length !== 64) return undefined
  return { seq: n, hash, kind: kind === 'checkpoint' ? 'checkpoint' : 'request' }
}
