// Ed25519 keys for checkpoint signatures, with node:crypto (about 25,000 signatures/s here;
// tweetnacl is about 100 times slower).
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign as cryptoSign,
  verify as cryptoVerify,
  type KeyObject,
} from 'node:crypto'
import { chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { SIGNATURE_PREFIX } from './chain.ts'

export const PRIVATE_KEY_FILE = 'private-key.pem'
export const PUBLIC_KEY_FILE = 'public-key.pem'

// DER prefixes that turn a raw 32-byte Ed25519 seed / public key into PKCS8 / SPKI.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

export interface PublicKeyInfo {
  key: KeyObject
  keyId: string
  pem: string
  /** raw 32-byte public key, base64 */
  raw: string
}

export interface Signer extends PublicKeyInfo {
  /** signature over `agentmesh-audit/v1:<hash>` (a checkpoint) */
  sign(hash: string): string
  /** signature over these bytes (a message with its own prefix, e.g. a signed head) */
  signBytes(data: Buffer): string
}

export function publicKeyInfo(key: KeyObject): PublicKeyInfo {
  const der = key.export({ format: 'der', type: 'spki' })
  const raw = der.subarray(der.length - 32)
  return {
    key,
    keyId: createHash('sha256').update(raw).digest('hex').slice(0, 16),
    pem: key.export({ format: 'pem', type: 'spki' }).toString(),
    raw: raw.toString('base64'),
  }
}

/** A private key as PEM (PKCS8) or as base64 of the 32-byte seed. */
export function parsePrivateKey(text: string, field = 'privateKey'): KeyObject {
  const t = text.trim()
  let key: KeyObject
  try {
    if (t.includes('-----BEGIN')) key = createPrivateKey(t)
    else {
      const seed = Buffer.from(t, 'base64')
      if (seed.length !== 32) throw new Error(`expected 32 bytes, got ${seed.length}`)
      key = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' })
    }
  } catch (err) {
    // never echo the key itself
    throw new Error(
      `audit: ${field} must be an Ed25519 private key (PKCS8 PEM or base64 of the 32-byte seed): ${(err as Error).message}`,
    )
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new Error(`audit: ${field} must be an Ed25519 key, got ${key.asymmetricKeyType}`)
  return key
}

/** A public key as PEM (SPKI) or base64 of the raw 32 bytes. */
export function parsePublicKey(text: string): KeyObject {
  const t = text.trim()
  const key = t.includes('-----BEGIN')
    ? createPublicKey(t)
    : createPublicKey({ key: Buffer.concat([SPKI_PREFIX, Buffer.from(t, 'base64')]), format: 'der', type: 'spki' })
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`not an Ed25519 public key (${key.asymmetricKeyType})`)
  return key
}

export function makeSigner(privateKey: KeyObject): Signer {
  const info = publicKeyInfo(createPublicKey(privateKey))
  return {
    ...info,
    sign: (hash) => cryptoSign(null, Buffer.from(SIGNATURE_PREFIX + hash), privateKey).toString('base64'),
    signBytes: (data) => cryptoSign(null, data, privateKey).toString('base64'),
  }
}

/** Checks a checkpoint signature (over the prefixed hash), or one over given bytes. */
export function verifySignature(key: KeyObject, hashOrMessage: string | Buffer, sig: string): boolean {
  try {
    const message = typeof hashOrMessage === 'string' ? Buffer.from(SIGNATURE_PREFIX + hashOrMessage) : hashOrMessage
    return cryptoVerify(null, message, key, Buffer.from(sig, 'base64'))
  } catch {
    return false
  }
}

/**
 * The audit dir holds the private key, the log and its head: owner only (0700). A dir made
 * looser by hand is tightened, with a warning.
 */
export function secureDir(dir: string, log?: { warn: (m: string) => void }): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const mode = statSync(dir).mode & 0o777
  if (mode & 0o077) {
    chmodSync(dir, 0o700)
    log?.warn(`audit: ${dir} was open to others (mode ${mode.toString(8)}); set to 0700`)
  }
}

/**
 * The signing key: given (option or AGENTMESH_AUDIT_PRIVATE_KEY), else `<dir>/private-key.pem`,
 * generated on first start with mode 0600. Writes `<dir>/public-key.pem` (0600); a previous public
 * key that differs is kept as `public-key-<keyId>.pem` so older checkpoints still verify.
 */
export function loadSigner(dir: string, given?: string, log?: { warn: (m: string) => void }): Signer {
  secureDir(dir, log)
  let key: KeyObject
  if (given) key = parsePrivateKey(given)
  else {
    const file = join(dir, PRIVATE_KEY_FILE)
    let pem: string | undefined
    try {
      pem = readFileSync(file, 'utf8')
      const mode = statSync(file).mode & 0o777
      if (mode & 0o077) {
        chmodSync(file, 0o600)
        log?.warn(`audit: ${file} was readable by others (mode ${mode.toString(8)}); set to 0600`)
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    if (pem === undefined) {
      const generated = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
      try {
        writeFileSync(file, generated, { mode: 0o600, flag: 'wx' })
        pem = generated
      } catch (err) {
        // another process created it between our read and write: use theirs
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
        pem = readFileSync(file, 'utf8')
      }
    }
    key = parsePrivateKey(pem, file)
  }
  const signer = makeSigner(key)
  const pubFile = join(dir, PUBLIC_KEY_FILE)
  let existing: string | undefined
  try {
    existing = readFileSync(pubFile, 'utf8')
  } catch {}
  if (existing !== signer.pem) {
    if (existing) {
      try {
        const old = publicKeyInfo(parsePublicKey(existing))
        renameSync(pubFile, join(dir, `public-key-${old.keyId}.pem`))
        log?.warn(
          `audit: signing key changed from ${old.keyId} to ${signer.keyId}; the old public key is kept as public-key-${old.keyId}.pem`,
        )
      } catch {}
    }
    // every file of the audit dir is 0600, the public key too (it is published at /agentmesh/audit/public-key)
    writeFileSync(pubFile, signer.pem, { mode: 0o600 })
  }
  return signer
}

/** Public keys to verify with: the given files, or every public-key*.pem in the audit dir. */
export function loadPublicKeys(files: string[] | undefined, dir: string): PublicKeyInfo[] {
  const paths =
    files && files.length
      ? files
      : (() => {
          try {
            return readdirSync(dir)
              .filter((f) => /^public-key(-[0-9a-f]+)?\.pem$/.test(f))
              .sort()
              .map((f) => join(dir, f))
          } catch {
            return []
          }
        })()
  return paths.map((p) => {
    try {
      return publicKeyInfo(parsePublicKey(readFileSync(p, 'utf8')))
    } catch (err) {
      throw new Error(`cannot read public key ${p}: ${(err as Error).message}`)
    }
  })
}
