// Record format and the hash chain.
//
// A stored line is the record's serialisation with its hash (and, for checkpoints, the
// signature) appended as the last keys:
//   {"seq":12,"prev":"<64 hex>","kind":"request","cache":{...},"costUsd":0.0001,...,"hash":"<64 hex>"}
//   {"seq":13,"prev":"<64 hex>","kind":"checkpoint","count":12,"keyId":"...","ts":"...","v":1,"hash":"<64 hex>","sig":"<base64>"}
// The serialisation is canonical: the chain fields seq, prev, kind first, in that order, then every
// other field as canonical JSON (keys sorted, no whitespace; see canonical.ts).
// hash = SHA-256 of that serialisation (the line up to `,"hash"` plus the closing brace), so it
// covers every field and the previous record's hash. The fixed header lets a verifier read the
// chain fields without parsing the whole JSON, and any changed byte changes the hash.
import { createHash } from 'node:crypto'
import type { Slicer } from '../../core/slicer.ts'
import type { CacheStatus, ToolCall } from '../../core/types.ts'
import { canonicalJson, sha256Hex as sha256 } from './canonical.ts'

export const FORMAT_VERSION = 1
/** domain separation for checkpoint signatures */
export const SIGNATURE_PREFIX = 'agentmesh-audit/v1:'

/** One request decision, as written by the afterResponse hook (before seq/prev are assigned). */
export interface AuditEntry {
  v: 1
  kind: 'request'
  /** request arrival time, ISO 8601 */
  ts: string
  /** request id (X-AgentMesh-Request-Id) */
  id: string
  identity: { team: string; user: string; tool: string; keyId?: string }
  /** the agent session the call belongs to, when the client names one (Claude Code, Codex) */
  session?: string
  protocol: string
  operation: string
  stream: boolean
  vendor: string
  /** model the client asked for */
  requestedModel: string
  /** model that answered (or would have, when the request ended before the call) */
  model: string
  cache: { status: CacheStatus; similarity?: number; savedTokens?: number }
  /** the prompt made smaller (plugins/compression): estimated input tokens before and after, strategies applied */
  compression?: { before: number; after: number; strategies: string }
  tokens: { input: number; output: number; cacheRead: number; cacheWrite: number; estimated?: boolean }
  costUsd: number
  savedUsd: number
  costEstimated?: boolean
  /** decision of the quota plugin: allow | warn | block | soft; absent without a quota plugin */
  quota?: string
  /** why the route was chosen (router plugin) */
  route?: string
  /** the agent run the call belongs to, its call count and, when the breaker stopped it, why (plugins/breaker) */
  run?: { id: string; calls: number; tripped?: string }
  /** the approval gate's decision on this request: who decided and when (plugins/approval) */
  approval?: { id: string; status: string; rule?: string; decidedBy?: string; decidedAt?: string; note?: string }
  /** a dry run (plugins/dry-run): what it would have come to and which guards would have acted */
  dryRun?: { outcome?: string; guards: string[] }
  /** secrets replaced by [REDACTED:kind] before the call, kind:count (plugins/guard); never a value */
  redacted?: string
  /** personal data replaced by placeholders before the call, kind:count (plugins/mask); never a value */
  masked?: string
  /** every target tried when there was more than one attempt (core/targets.ts): vendor/model, status, outcome */
  attempts?: Array<{ target: string; status: number; outcome: string }>
  latencyMs: number
  status: number
  /** error type (never the message: upstream messages can echo key fragments) */
  error?: string
  aborted?: boolean
  /** SHA-256 of the canonical JSON of the canonical prompt view */
  promptHash: string
  /** SHA-256 of the canonical JSON of {text, toolCalls} of the answer, when there was one */
  answerHash?: string
  /** full content, only with includeContent */
  prompt?: unknown
  answer?: { text: string; toolCalls: ToolCall[] }
  /** room for fields a redact hook adds */
  [extra: string]: unknown
}

export interface CheckpointBody {
  v: 1
  kind: 'checkpoint'
  ts: string
  /** records this checkpoint covers (all records before it) = seq - 1 */
  count: number
  /** id of the signing key: first 16 hex of SHA-256 of the raw public key */
  keyId: string
}

export type ChainRecord = (AuditEntry | CheckpointBody) & { seq: number; prev: string }

export interface ChainHead {
  /** seq of the last record (0 for an empty chain) */
  seq: number
  /** hash of the last record (GENESIS for an empty chain) */
  hash: string
  /** kind of the last record, so a writer knows whether the tail is signed */
  kind?: 'request' | 'checkpoint'
}

export interface Sealed {
  line: string
  hash: string
}

/** The canonical serialisation that is hashed: seq, prev, kind, then the rest as canonical JSON. */
export function serialise(record: { seq: number; prev: string; kind: string } & Record<string, unknown>): string {
  const { seq, prev, kind, ...rest } = record
  return frame(seq, prev, kind, canonicalJson(rest))
}

/** the fixed chain header, then the other fields' canonical JSON (`tail`, an object) */
function frame(seq: number, prev: string, kind: string, tail: string): string {
  return `${frameHead(seq, prev, kind)}${tail === '{}' ? '}' : ',' + tail.slice(1)}`
}

/** what frame() writes before the other fields */
export function frameHead(seq: number, prev: string, kind: string): string {
  return `{"seq":${seq},"prev":${JSON.stringify(prev)},"kind":${JSON.stringify(kind)}`
}

/**
 * seal() for a request entry (kind 'request', no seq or prev of its own), without copying it:
 * the same bytes as seal({ ...entry, seq, prev }), at about half the cost on the hot path.
 */
export function sealEntry(entry: AuditEntry, seq: number, prev: string): Sealed {
  const kind = entry.kind
  // undefined fields are left out of canonical JSON; assigning keeps the object's shape (delete would not)
  ;(entry as { kind?: string }).kind = undefined
  let tail: string
  try {
    tail = canonicalJson(entry)
  } finally {
    entry.kind = kind
  }
  const body = frame(seq, prev, kind, tail)
  const hash = sha256(body)
  return { line: body.slice(0, -1) + ',"hash":"' + hash + '"}', hash }
}

/** Seal a record: the caller supplies seq and prev; returns the line (without newline) and hash. */
export function seal(
  record: { seq: number; prev: string; kind: string } & Record<string, unknown>,
  sign?: (hash: string) => string,
): Sealed {
  const body = serialise(record)
  const hash = sha256(body)
  let line = body.slice(0, -1) + ',"hash":"' + hash + '"'
  if (sign) line += ',"sig":"' + sign(hash) + '"'
  return { line: line + '}', hash }
}

export interface ParsedLine {
  seq: number
  prev: string
  kind: 'request' | 'checkpoint'
  /** hash stored in the line */
  hash: string
  /** hash recomputed from the bytes */
  computed: string
  sig?: string
  /** the whole record, parsed from the hashed bytes (JSON.parse on demand) */
  record(): ChainRecord
  /** the hashed bytes (the serialisation) */
  body(): string
}

const HEAD = Buffer.from('{"seq":')
const PREV = Buffer.from(',"prev":"')
const KIND = Buffer.from('","kind":"')
const HASH = Buffer.from(',"hash":"')
const SIG = Buffer.from('","sig":"')
const REQUEST = Buffer.from('request"')
const CHECKPOINT = Buffer.from('checkpoint"')
const B64 = /^[A-Za-z0-9+/]+={0,2}$/

function at(b: Buffer, what: Buffer, i: number): boolean {
  // a byte loop: cheaper than Buffer#compare for needles this short
  if (b.length < i + what.length) return false
  for (let k = 0; k < what.length; k++) if (b[i + k] !== what[k]) return false
  return true
}

/** where parseLine found the fields of a well-formed line; `h` is where `,"hash"` starts */
export interface LineFrame {
  seq: number
  prev: string
  kind: ParsedLine['kind']
  hash: string
  sig?: string
  h: number
}

/**
 * The header and the trailer of a stored line (which must be exactly `,"hash":"…"}` or
 * `,"hash":"…","sig":"…"}`, so nothing after the hash can shadow a hashed field), without its hash
 * recomputed. Undefined if the line is not a well-formed record (torn, garbage, bad header or trailer).
 */
export function readFrame(b: Buffer): LineFrame | undefined {
  const n = b.length
  if (n < 160 || !at(b, HEAD, 0)) return undefined
  let i = HEAD.length
  const d0 = i
  let seq = 0
  while (i < n && b[i]! >= 48 && b[i]! <= 57 && i - d0 < 16) seq = seq * 10 + (b[i++]! - 48)
  if (i === d0 || (b[d0] === 48 && i - d0 > 1) || seq < 1 || !Number.isSafeInteger(seq)) return undefined
  if (!at(b, PREV, i)) return undefined
  i += PREV.length
  // prev and hash are not checked to be hex here: a record is accepted only when its hash equals
  // the SHA-256 we compute and its prev equals the previous hash, both hex (a regex per line
  // cost as much as the hash)
  const prev = b.toString('latin1', i, i + 64)
  i += 64
  if (!at(b, KIND, i)) return undefined
  i += KIND.length
  let kind: ParsedLine['kind']
  if (at(b, REQUEST, i)) kind = 'request'
  else if (at(b, CHECKPOINT, i)) kind = 'checkpoint'
  else return undefined
  if (b[n - 1] !== 0x7d || b[n - 2] !== 0x22) return undefined
  const h = b.lastIndexOf(HASH, n - 75)
  if (h < i) return undefined
  const hash = b.toString('latin1', h + HASH.length, h + HASH.length + 64)
  const afterHash = h + HASH.length + 64
  let sig: string | undefined
  if (afterHash + 2 !== n) {
    if (!at(b, SIG, afterHash)) return undefined
    sig = b.toString('latin1', afterHash + SIG.length, n - 2)
    if (!B64.test(sig)) return undefined
  }
  return { seq, prev, kind, hash, sig, h }
}

function parsed(b: Buffer, f: LineFrame, computed: string): ParsedLine {
  const body = () => b.toString('utf8', 0, f.h) + '}'
  const { seq, prev, kind, hash, sig } = f
  return { seq, prev, kind, hash, computed, sig, body, record: () => JSON.parse(body()) }
}

/**
 * Read a stored line (bytes or text) without parsing its JSON: the frame (see readFrame) and the
 * recomputed hash. Undefined if the line is not a well-formed record.
 */
export function parseLine(input: Buffer | string): ParsedLine | undefined {
  const b = typeof input === 'string' ? Buffer.from(input) : input
  const f = readFrame(b)
  if (!f) return undefined
  // the hashed bytes are the line up to `,"hash"` plus "}": put the brace in place of the comma
  // for the one-shot hash (about twice as fast as createHash per line), then restore it
  b[f.h] = 0x7d
  let computed: string
  try {
    computed = sha256(b.subarray(0, f.h + 1))
  } finally {
    b[f.h] = 0x2c
  }
  return parsed(b, f, computed)
}

/**
 * the slices the log is read back in (verify, the unsigned-tail scan): background work, so it
 * gives the loop back twice as often as a request's own sliced work (10 ms); collections of the
 * megabytes read land in a slice: a 39 MB tail read in 10 ms slices showed blocks of up to 31 ms,
 * in 5 ms slices 10-18
 */
export const READBACK_SLICE_MS = 5

/** a line at least this long is hashed in pieces by parseLineSliced; a shorter one in one go */
export const LARGE_LINE_BYTES = 1024 * 1024
// one piece: about 0.6 ms of SHA-256 here (2-3 ms without the CPU's SHA instructions)
const HASH_PIECE_BYTES = 1024 * 1024

/**
 * parseLine(b) for a line that may be megabytes long (includeContent): the same result, its hash
 * fed a piece at a time with a pause between pieces. The line's bytes are never changed, not even
 * for a moment (others may read them across the pauses). In one go the hash of a 39 MB line held
 * the loop about 25 ms here, and verify hashed a file's lines back to back.
 */
export async function parseLineSliced(b: Buffer, slicer: Slicer): Promise<ParsedLine | undefined> {
  if (b.length < LARGE_LINE_BYTES) return parseLine(b)
  const f = readFrame(b)
  if (!f) return undefined
  const sha = createHash('sha256')
  for (let from = 0; from < f.h; from += HASH_PIECE_BYTES) {
    sha.update(b.subarray(from, Math.min(from + HASH_PIECE_BYTES, f.h)))
    await slicer.pause()
  }
  return parsed(b, f, sha.update('}').digest('hex'))
}
