// Canonical JSON (RFC 8785 style: keys sorted by UTF-16 code units at every level, no whitespace,
// numbers as ECMAScript prints them, undefined left out as JSON.stringify does). One form for
// everything hashed over structures: cache keys, semantic partitions and the audit chain, whose
// verifiers recompute it from the parsed record.

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
