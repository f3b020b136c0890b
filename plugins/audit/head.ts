// The signed head: the newest checkpoint's place in the chain (seq, hash, time, key), signed on
// its own and kept where cutting the log does not reach it (a file beside the log, mesh storage,
// a witness). A hash chain alone cannot show that its end was cut off; comparing the log with
// the newest head it was known to reach can.
import { createHash } from 'node:crypto'
import { canonicalJson } from './canonical.ts'
import { FORMAT_VERSION, SIGNATURE_PREFIX } from './chain.ts'
import { verifySignature, type PublicKeyInfo, type Signer } from './signer.ts'

export interface SignedHead {
  v: 1
  /** seq of the checkpoint this head names */
  seq: number
  /** that checkpoint's hash */
  hash: string
  /** that checkpoint's time */
  ts: string
  keyId: string
  /** the checkpoint sealed a tail left unsigned by a writer that stopped */
  recovered?: true
  /** Ed25519 over `agentmesh-audit/v1:head:` + canonical JSON of the fields above */
  sig: string
}

/** The checkpoint a head is made from. */
export interface CheckpointRef {
  seq: number
  hash: string
  ts: string
  recovered?: boolean
}

/** A head as read from somewhere, for verify's messages. */
export interface FoundHead {
  from: string
  head: SignedHead
}

/** A place that held something that is not a signed head (tampered or corrupt). */
export interface BadHead {
  from: string
  error: string
}

const HEX64 = /^[0-9a-f]{64}$/

function headMessage(h: Omit<SignedHead, 'sig'>): Buffer {
  const body = {
    v: h.v,
    seq: h.seq,
    hash: h.hash,
    ts: h.ts,
    keyId: h.keyId,
    recovered: h.recovered === true ? true : undefined,
  }
  return Buffer.from(`${SIGNATURE_PREFIX}head:${canonicalJson(body)}`)
}

export function signHead(signer: Signer, cp: CheckpointRef): SignedHead {
  const head: Omit<SignedHead, 'sig'> = {
    v: FORMAT_VERSION,
    seq: cp.seq,
    hash: cp.hash,
    ts: cp.ts,
    keyId: signer.keyId,
    ...(cp.recovered ? { recovered: true as const } : {}),
  }
  // the signer signs "prefix + hash" strings; a head message has its own prefix, so it is signed directly
  return { ...head, sig: signer.signBytes(headMessage(head)) }
}

/** Why the head does not verify with these keys, or undefined when it does. */
export function checkHeadSignature(head: SignedHead, keys: Map<string, PublicKeyInfo>): string | undefined {
  const key = keys.get(head.keyId)
  if (!key)
    return `it is signed by key ${head.keyId}, which is not among the public keys given (${[...keys.keys()].join(', ') || 'none'})`
  return verifySignature(key.key, headMessage(head), head.sig)
    ? undefined
    : `its signature does not verify with key ${head.keyId}: it was altered`
}

function asHead(v: unknown): SignedHead | string {
  if (!v || typeof v !== 'object') return 'not a JSON object'
  const h = v as Record<string, unknown>
  if (h.v !== 1) return `unknown format version ${JSON.stringify(h.v)}`
  if (!Number.isSafeInteger(h.seq) || (h.seq as number) < 1) return 'seq is not a positive integer'
  if (typeof h.hash !== 'string' || !HEX64.test(h.hash)) return 'hash is not 64 hex digits'
  if (typeof h.ts !== 'string' || typeof h.keyId !== 'string' || typeof h.sig !== 'string')
    return 'ts, keyId or sig missing'
  if (h.recovered !== undefined && h.recovered !== true) return 'recovered must be true when present'
  return {
    v: 1,
    seq: h.seq as number,
    hash: h.hash,
    ts: h.ts,
    keyId: h.keyId,
    ...(h.recovered ? { recovered: true as const } : {}),
    sig: h.sig,
  }
}

/**
 * Heads from a text (one JSON head, or JSON lines as a witness command that appends them
 * writes) or an already parsed value (unstorage parses JSON it reads).
 */
export function readHeads(
  from: string,
  input: string | object | null | undefined,
): { found: FoundHead[]; bad: BadHead[] } {
  const found: FoundHead[] = []
  const bad: BadHead[] = []
  const take = (v: unknown, where: string) => {
    const h = asHead(v)
    if (typeof h === 'string') bad.push({ from: where, error: h })
    else found.push({ from: where, head: h })
  }
  if (input === null || input === undefined) return { found, bad }
  if (typeof input !== 'string') {
    take(input, from)
    return { found, bad }
  }
  const lines = input
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
  lines.forEach((line, i) => {
    const where = lines.length > 1 ? `${from}:${i + 1}` : from
    try {
      take(JSON.parse(line), where)
    } catch {
      bad.push({ from: where, error: 'not JSON' })
    }
  })
  return { found, bad }
}

/** The mesh-storage key of a log's signed head: the same in the proxy and in `audit verify`. */
export function storageHeadKey(logId: string): string {
  return `audit:head:${createHash('sha256').update(logId).digest('hex').slice(0, 16)}`
}
