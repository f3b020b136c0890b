// What the audit chain hashes: the core's canonical JSON (a verifier recomputes it from the
// parsed record) and SHA-256.
import crypto, { createHash } from 'node:crypto'

export { canonicalJson } from '../../core/canonical.ts'

/** prev of the first record of a chain */
export const GENESIS = '0'.repeat(64)

// crypto.hash (Node >= 20.12) is a one-shot digest without a Hash object per call
const oneShot = (crypto as { hash?: (alg: string, data: Buffer | string, enc: 'hex') => string }).hash

export function sha256Hex(data: string | Buffer): string {
  return oneShot ? oneShot('sha256', data, 'hex') : createHash('sha256').update(data).digest('hex')
}
