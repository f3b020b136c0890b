// Virtual keys in mesh.storage. Only the SHA-256 of a key is stored (the key is 32 random bytes,
// so a plain hash is as good as a slow KDF); the key itself exists once, in the create response.
import { createHash, randomBytes } from 'node:crypto'
import type { Storage } from 'unstorage'

export interface VirtualKeyRecord {
  id: string
  /** SHA-256 of the key, hex */
  hash: string
  team: string
  user: string
  tool?: string
  name?: string
  /** the first characters, to tell keys apart in a list (`am-Xy3q…`) */
  prefix: string
  created: string
  revoked?: string
}

/** What lists and APIs show: everything but the hash. */
export type PublicKeyRecord = Omit<VirtualKeyRecord, 'hash'>

export const KEY_PREFIX = 'am-'
/** am- followed by 43 base64url characters (32 bytes) */
export const KEY_FORMAT = /^am-[A-Za-z0-9_-]{43}$/
export const NAME = /^[A-Za-z0-9._@:+-]{1,64}$/

export const hashKey = (key: string) => createHash('sha256').update(key).digest('hex')

export function publicRecord(r: VirtualKeyRecord): PublicKeyRecord {
  const { hash: _hash, ...rest } = r
  return rest
}

export interface NewKey {
  team: string
  user: string
  tool?: string
  name?: string
}

/** Checks the fields of a key request; returns the problems, each naming its field. */
export function validateNewKey(input: unknown): { value?: NewKey; errors: string[] } {
  const errors: string[] = []
  if (!input || typeof input !== 'object' || Array.isArray(input))
    return { errors: ['the body must be a JSON object with team, user and optional tool, name'] }
  const o = input as Record<string, unknown>
  for (const k of Object.keys(o))
    if (!['team', 'user', 'tool', 'name'].includes(k))
      errors.push(`unknown field "${k}" (expected team, user, tool, name)`)
  for (const k of ['team', 'user'] as const) {
    if (typeof o[k] !== 'string' || !NAME.test(o[k] as string))
      errors.push(`${k} is required: 1-64 characters of letters, digits and . _ @ : + -`)
  }
  if (o.tool !== undefined && (typeof o.tool !== 'string' || !NAME.test(o.tool)))
    errors.push('tool must be 1-64 characters of letters, digits and . _ @ : + -')
  if (o.name !== undefined && (typeof o.name !== 'string' || o.name.length > 128 || /[\u0000-\u001f]/.test(o.name)))
    errors.push('name must be a string of at most 128 printable characters')
  if (errors.length) return { errors }
  return {
    value: {
      team: o.team as string,
      user: o.user as string,
      ...(o.tool ? { tool: o.tool as string } : {}),
      ...(o.name ? { name: o.name as string } : {}),
    },
    errors,
  }
}

export function createKeyStore(storage: Storage) {
  const idKey = (id: string) => `agentmesh:keys:id:${id}`
  const hashIndex = (hash: string) => `agentmesh:keys:hash:${hash}`

  return {
    async create(input: NewKey): Promise<{ key: string; record: VirtualKeyRecord }> {
      const key = KEY_PREFIX + randomBytes(32).toString('base64url')
      const record: VirtualKeyRecord = {
        id: 'key_' + randomBytes(9).toString('base64url').replace(/[-_]/g, 'x'),
        hash: hashKey(key),
        team: input.team,
        user: input.user,
        ...(input.tool ? { tool: input.tool } : {}),
        ...(input.name ? { name: input.name } : {}),
        prefix: key.slice(0, 7),
        created: new Date().toISOString(),
      }
      // index first: a crash between the writes leaves an index entry without a record, which
      // looks up as an unknown key (401), never as a key without an owner
      await storage.setItem(hashIndex(record.hash), record.id)
      await storage.setItem(idKey(record.id), record)
      return { key, record }
    },

    async get(id: string): Promise<VirtualKeyRecord | null> {
      if (!/^[A-Za-z0-9_]{1,40}$/.test(id)) return null
      return (await storage.getItem<VirtualKeyRecord>(idKey(id))) ?? null
    },

    /** the record for a presented key, or null when unknown (revoked records are returned: the caller decides) */
    async lookup(key: string): Promise<VirtualKeyRecord | null> {
      const hash = hashKey(key)
      const id = await storage.getItem<string>(hashIndex(hash))
      if (typeof id !== 'string') return null
      const record = await storage.getItem<VirtualKeyRecord>(idKey(id))
      return record && record.hash === hash ? record : null
    },

    async list(): Promise<VirtualKeyRecord[]> {
      const keys = await storage.getKeys('agentmesh:keys:id')
      const records = await Promise.all(keys.map((k) => storage.getItem<VirtualKeyRecord>(k)))
      return records
        .filter((r): r is VirtualKeyRecord => !!r && typeof r === 'object' && typeof r.id === 'string')
        .sort((a, b) => a.created.localeCompare(b.created))
    },

    /** marks a key revoked; returns the record (unchanged if it already was), or null if unknown */
    async revoke(id: string): Promise<VirtualKeyRecord | null> {
      const record = await this.get(id)
      if (!record) return null
      if (record.revoked) return record
      const revoked = { ...record, revoked: new Date().toISOString() }
      await storage.setItem(idKey(id), revoked)
      return revoked
    },
  }
}

export type KeyStore = ReturnType<typeof createKeyStore>
