// Canonical JSON per RFC 8785 (JCS): keys sorted by UTF-16 code units at every level, no
// whitespace, strings escaped and numbers printed as ECMAScript's JSON.stringify does (-0 as 0,
// 1e21 as 1e+21). One form for everything hashed over structures: cache keys, semantic partitions
// and the audit chain, whose verifiers recompute it from the parsed record; any JCS implementation
// gives the same bytes for JSON data. test/core-canonical-rfc8785.test.ts checks the RFC's examples.
// Where JCS says "must fail" we print what JSON.stringify prints instead, so hashing never throws
// on a request path: NaN and ±Infinity print as null, a lone surrogate as its \uXXXX escape. Values
// outside JSON follow JSON.stringify too (undefined, functions, symbols dropped, null in arrays;
// toJSON used), and a bigint prints as a decimal string. None of these occur in parsed JSON except
// lone surrogates (JSON.parse accepts "\ud800"); the audit README says so for outside verifiers.

import crypto, { createHash } from 'node:crypto'

export function canonicalJson(value: unknown): string {
  // with every object's keys already in order, JSON.stringify prints exactly the canonical form
  // (same string escapes, number printing and dropped undefined) and is several times faster
  const out = inOrder(value, 0) ? JSON.stringify(value) : canon(value)
  return out === undefined ? 'null' : out
}

/** true when JSON.stringify(value) is canonical: keys sorted everywhere, no toJSON or bigint */
function inOrder(value: unknown, depth: number): boolean {
  if (typeof value === 'bigint') return false
  if (value === null || typeof value !== 'object') return true
  if (depth > 64) return false
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!inOrder(value[i], depth + 1)) return false
    return true
  }
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return false
  let prev: string | undefined
  for (const k in value) {
    if (!Object.prototype.hasOwnProperty.call(value, k)) continue
    if (prev !== undefined && prev > k) return false
    prev = k
    if (!inOrder((value as Record<string, unknown>)[k], depth + 1)) return false
  }
  return true
}

// entries repeat the same few dozen keys: quote each once
const quotedKeys = new Map<string, string>()
function quoteKey(k: string): string {
  let q = quotedKeys.get(k)
  if (q === undefined) {
    q = JSON.stringify(k)
    if (quotedKeys.size < 10_000) quotedKeys.set(k, q)
  }
  return q
}

function canon(value: unknown): string | undefined {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value)
    case 'number':
      // Number#toString is what JSON.stringify prints for finite numbers (-0 as 0)
      return Number.isFinite(value) ? '' + value : 'null'
    case 'boolean':
      return value ? 'true' : 'false'
    case 'bigint':
      return JSON.stringify(value.toString())
    case 'object': {
      if (value === null) return 'null'
      if (Array.isArray(value)) {
        let s = '['
        for (let i = 0; i < value.length; i++) {
          if (i) s += ','
          s += canon(value[i]) ?? 'null'
        }
        return s + ']'
      }
      const maybe = value as { toJSON?: () => unknown }
      if (typeof maybe.toJSON === 'function') return canon(maybe.toJSON())
      const obj = value as Record<string, unknown>
      const keys = Object.keys(obj).sort()
      let s = '{'
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i]!
        const v = canon(obj[k])
        if (v === undefined) continue
        if (s.length > 1) s += ','
        s += quoteKey(k) + ':' + v
      }
      return s + '}'
    }
    default:
      // undefined, functions and symbols are dropped, as JSON.stringify does
      return undefined
  }
}

// Hashing a multi-megabyte prompt's canonical JSON as one string costs twice: the concatenation
// of its pieces, then flattening that rope when the hash reads it (~10 ms per MB here). This walk
// prints the same bytes as canon() but feeds them to the hash in pieces: small ones batched, a
// large string on its own.
const HASH_BATCH = 64 * 1024

// crypto.hash (Node >= 20.12): a one-shot digest without a Hash object
const oneShot = (crypto as { hash?: (alg: string, data: string, enc: 'hex') => string }).hash

/**
 * SHA-256 (hex) of canonicalJson(value). `sizeHint` (the request body's length, say) below 1 MB
 * takes the one-string path, which is faster for small values; otherwise the string is never built.
 */
export function canonicalSha256(value: unknown, sizeHint?: number): string {
  if (sizeHint !== undefined && sizeHint < 1_000_000 && oneShot) return oneShot('sha256', canonicalJson(value), 'hex')
  const h = createHash('sha256')
  let batch = ''
  const put = (s: string) => {
    if (s.length >= HASH_BATCH) {
      if (batch) h.update(batch)
      batch = ''
      h.update(s)
      return
    }
    batch += s
    if (batch.length >= HASH_BATCH) {
      h.update(batch)
      batch = ''
    }
  }
  if (!feed(value, put)) put('null')
  if (batch) h.update(batch)
  return h.digest('hex')
}

// what one turn of the event loop hashes at most: about 5 ms here
const ASYNC_SLICE = 1024 * 1024
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

/**
 * canonicalSha256 for a value of megabytes, hashed a slice per turn of the event loop so other
 * requests run in between (the one-go hash of a 10 MB prompt held the loop for ~100 ms). The
 * same digest as canonicalSha256; below `ASYNC_SLICE` of `sizeHint` it is that function.
 */
export async function canonicalSha256Async(value: unknown, sizeHint?: number): Promise<string> {
  if (sizeHint === undefined || sizeHint < ASYNC_SLICE) return canonicalSha256(value, sizeHint)
  // the pieces first (references to the strings, small ones batched), then the hashing by slices
  const pieces: string[] = []
  let batch = ''
  const put = (s: string) => {
    if (s.length >= HASH_BATCH) {
      if (batch) pieces.push(batch)
      batch = ''
      pieces.push(s)
    } else if ((batch += s).length >= HASH_BATCH) {
      pieces.push(batch)
      batch = ''
    }
  }
  if (!feed(value, put)) put('null')
  if (batch) pieces.push(batch)
  const h = createHash('sha256')
  let sinceTurn = 0
  for (const piece of pieces) {
    for (let at = 0; at < piece.length; ) {
      let end = Math.min(piece.length, at + ASYNC_SLICE)
      // never between the two halves of a surrogate pair: each half alone would hash as U+FFFD
      const last = piece.charCodeAt(end - 1)
      if (end < piece.length && last >= 0xd800 && last <= 0xdbff) end++
      h.update(at === 0 && end === piece.length ? piece : piece.slice(at, end))
      sinceTurn += end - at
      at = end
      if (sinceTurn >= ASYNC_SLICE) {
        sinceTurn = 0
        await nextTurn()
      }
    }
  }
  return h.digest('hex')
}

/** canon(value) piece by piece; false where canon gives undefined (the value is dropped) */
function feed(value: unknown, put: (s: string) => void): boolean {
  if (value === null || typeof value !== 'object') {
    const s = canon(value)
    if (s === undefined) return false
    put(s)
    return true
  }
  if (Array.isArray(value)) {
    put('[')
    for (let i = 0; i < value.length; i++) {
      if (i) put(',')
      if (!feed(value[i], put)) put('null')
    }
    put(']')
    return true
  }
  const maybe = value as { toJSON?: () => unknown }
  if (typeof maybe.toJSON === 'function') return feed(maybe.toJSON(), put)
  const obj = value as Record<string, unknown>
  const keys = Object.keys(obj).sort()
  put('{')
  let first = true
  for (const k of keys) {
    let v = obj[k]
    while (v !== null && typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON === 'function')
      v = (v as { toJSON: () => unknown }).toJSON()
    // what canon drops: undefined, functions, symbols
    if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue
    put(first ? quoteKey(k) + ':' : ',' + quoteKey(k) + ':')
    first = false
    feed(v, put)
  }
  put('}')
  return true
}
