// The storage interface the writer and the verifier see; one file per backend (fs, redis),
// unstorage style.
import type { ChainHead } from './chain.ts'

export type AppendResult = { ok: true } | { ok: false; head: ChainHead }

export interface AuditStore {
  readonly name: string
  /** identifies the log, so two plugin instances in one process share a writer */
  readonly id: string
  /** open for appending (fs: take the writer lock, repair a torn tail) and return the chain head */
  open(): Promise<ChainHead>
  /**
   * Append sealed lines computed from `expected`. Redis answers `ok: false` with the current head
   * when another instance appended first; the writer then re-seals from that head.
   */
  append(lines: string[], expected: ChainHead, next: ChainHead, info: { checkpoint: boolean }): Promise<AppendResult>
  /** re-read the head after a failed append (fs: drops a partial write) */
  recover(): Promise<ChainHead>
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
  chunks(): AsyncIterable<LogLine[]>
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
