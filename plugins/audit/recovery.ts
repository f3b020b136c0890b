// What a writer finds when it opens a log: the records after the last checkpoint (left unsigned
// by a writer that stopped), checked as a chain, and whether the log still reaches the newest
// signed head, or was cut or replaced while no writer was running.

import { Slicer } from '../../core/slicer.ts'
import { GENESIS } from './canonical.ts'
import { parseLineSliced, READBACK_SLICE_MS } from './chain.ts'
import type { SignedHead } from './head.ts'

export interface UnsignedTail {
  /** seq of the newest record (0: empty log) */
  newestSeq: number
  /** the last checkpoint (seq 0 and GENESIS when there is none) */
  checkpoint: { seq: number; hash: string }
  /** request entries after it */
  entries: number
  /** the first reason the tail is not an intact chain, if it is not */
  problem?: string
}

/**
 * Walk back from the newest record to the last checkpoint, checking each record's hash and that
 * each links to the one before it. Memory stays constant however long the tail is. A writer opens
 * while the proxy serves (at a restart after an outage too): a line of megabytes is hashed in
 * pieces, and the loop is given back between slices of `slicer`.
 */
export async function scanUnsignedTail(
  newestFirst: AsyncIterable<Buffer>,
  slicer = new Slicer(READBACK_SLICE_MS),
): Promise<UnsignedTail> {
  let newestSeq = 0
  let entries = 0
  let problem: string | undefined
  // what the record read just before (one seq later) says about this one
  let laterPrev: string | undefined
  let expectSeq: number | undefined
  for await (const data of newestFirst) {
    await slicer.pause()
    const p = await parseLineSliced(data, slicer)
    if (!p) {
      problem ??= 'a line that is not an audit record'
      continue
    }
    newestSeq ||= p.seq
    if (p.computed !== p.hash) problem ??= `seq ${p.seq}: content does not match its hash`
    if (expectSeq !== undefined && p.seq !== expectSeq) problem ??= `seq ${p.seq} where seq ${expectSeq} belongs`
    else if (laterPrev !== undefined && laterPrev !== p.hash)
      problem ??= `seq ${p.seq + 1} does not link to seq ${p.seq}`
    if (p.kind === 'checkpoint') return { newestSeq, checkpoint: { seq: p.seq, hash: p.hash }, entries, problem }
    entries++
    laterPrev = p.prev
    expectSeq = p.seq - 1
  }
  if (laterPrev !== undefined && laterPrev !== GENESIS) problem ??= 'the oldest record does not start a chain'
  return { newestSeq, checkpoint: { seq: 0, hash: GENESIS }, entries, problem }
}

/**
 * Why the log no longer reaches this signed head, or undefined when it does (or when the head
 * is older than the last checkpoint: verify checks those in full).
 */
export function headNotReached(head: SignedHead, tail: UnsignedTail): string | undefined {
  if (head.seq > tail.newestSeq) {
    return tail.newestSeq === 0
      ? `the log is empty, but its signed head of ${head.ts} is at seq ${head.seq}`
      : `the log ends at seq ${tail.newestSeq}, but its signed head of ${head.ts} is at seq ${head.seq}`
  }
  if (head.seq === tail.checkpoint.seq) {
    return head.hash === tail.checkpoint.hash
      ? undefined
      : `the checkpoint at seq ${head.seq} is not the one its signed head of ${head.ts} names`
  }
  if (head.seq > tail.checkpoint.seq) return `seq ${head.seq} is not the checkpoint its signed head of ${head.ts} names`
  return undefined
}
