// Temporary grants: extra headroom for one scope that ends at a fixed time. Made only by an admin
// (CLI or admin API), never automatically. One storage item per grant, so two instances granting at
// once cannot overwrite each other.
import { randomBytes } from 'node:crypto'
import type { Storage } from 'unstorage'
import { parseDuration } from './windows.ts'

export interface Grant {
  id: string
  /** global | team:NAME | user:NAME | tool:NAME */
  scope: string
  /** extra tokens on every token limit of the scope (per day and per month) */
  tokens?: number
  /** extra USD on every USD limit of the scope */
  usd?: number
  created: string
  expires: string
  reason?: string
}

const NAME = /^[A-Za-z0-9._@:+-]{1,64}$/
const MAX_MS = 366 * 86_400_000
const PREFIX = 'agentmesh:quota:grants'

/** Checks a grant request ({team|user|tool|global, tokens?, usd?, for, reason?}); errors name the field. */
export function validateGrant(
  input: unknown,
  now = Date.now(),
): { value?: Omit<Grant, 'id' | 'created'>; errors: string[] } {
  const errors: string[] = []
  if (!input || typeof input !== 'object' || Array.isArray(input))
    return { errors: ['the body must be a JSON object such as {"team":"eng","tokens":500000,"for":"24h"}'] }
  const o = input as Record<string, unknown>
  for (const k of Object.keys(o))
    if (!['team', 'user', 'tool', 'global', 'tokens', 'usd', 'for', 'reason'].includes(k))
      errors.push(`unknown field "${k}" (expected team, user, tool, global, tokens, usd, for, reason)`)
  const scopes = (['team', 'user', 'tool'] as const).filter((k) => o[k] !== undefined)
  const global = o.global === true
  if (o.global !== undefined && typeof o.global !== 'boolean') errors.push('global must be true or false')
  if (scopes.length + (global ? 1 : 0) !== 1) errors.push('name exactly one scope: team, user, tool, or global: true')
  for (const k of scopes)
    if (typeof o[k] !== 'string' || !NAME.test(o[k] as string))
      errors.push(`${k} must be 1-64 characters of letters, digits and . _ @ : + -`)
  for (const k of ['tokens', 'usd'] as const) {
    if (o[k] !== undefined && (typeof o[k] !== 'number' || !Number.isFinite(o[k]) || (o[k] as number) <= 0))
      errors.push(`${k} must be a positive number`)
  }
  if (o.tokens === undefined && o.usd === undefined) errors.push('give tokens and/or usd to grant')
  if (o.tokens !== undefined && typeof o.tokens === 'number' && !Number.isInteger(o.tokens))
    errors.push('tokens must be a whole number')
  const ms = parseDuration(o.for ?? '24h')
  if (ms === undefined || ms > MAX_MS)
    errors.push('for must be a duration such as "24h", "30m", "7d" (at most 366d) or a number of seconds')
  if (o.reason !== undefined && (typeof o.reason !== 'string' || o.reason.length > 200))
    errors.push('reason must be a string of at most 200 characters')
  if (errors.length) return { errors }
  const scope = global ? 'global' : `${scopes[0]}:${o[scopes[0]!]}`
  return {
    value: {
      scope,
      ...(o.tokens !== undefined ? { tokens: o.tokens as number } : {}),
      ...(o.usd !== undefined ? { usd: o.usd as number } : {}),
      expires: new Date(now + ms!).toISOString(),
      ...(o.reason ? { reason: o.reason as string } : {}),
    },
    errors,
  }
}

export function createGrantStore(storage: Storage, cacheMs: number) {
  let cache: { at: number; grants: Grant[] } | undefined
  // one storage read at a time, however many requests find the cache stale together
  let loading: Promise<Grant[]> | undefined

  async function readAll(): Promise<Grant[]> {
    const keys = await storage.getKeys(PREFIX)
    const items = await Promise.all(keys.map((k) => storage.getItem<Grant>(k)))
    return items.filter(
      (g): g is Grant => !!g && typeof g === 'object' && typeof g.id === 'string' && typeof g.scope === 'string',
    )
  }

  return {
    async create(g: Omit<Grant, 'id' | 'created'>): Promise<Grant> {
      const grant: Grant = { id: 'grant_' + randomBytes(6).toString('hex'), created: new Date().toISOString(), ...g }
      await storage.setItem(`${PREFIX}:${grant.id}`, grant)
      cache = undefined
      return grant
    },
    async remove(id: string): Promise<boolean> {
      if (!/^grant_[0-9a-f]{12}$/.test(id)) return false
      const key = `${PREFIX}:${id}`
      if (!(await storage.hasItem(key))) return false
      await storage.removeItem(key)
      cache = undefined
      return true
    },
    /** all grants, newest first; expired ones older than a week are deleted on the way */
    async list(now = Date.now()): Promise<Grant[]> {
      const all = await readAll()
      for (const g of all)
        if (Date.parse(g.expires) < now - 7 * 86_400_000) void storage.removeItem(`${PREFIX}:${g.id}`).catch(() => {})
      return all.sort((a, b) => b.created.localeCompare(a.created))
    },
    /** grants in force now, from a short-lived cache so the request path rarely reads storage */
    async active(now = Date.now()): Promise<Grant[]> {
      if (!cache || now - cache.at >= cacheMs) {
        loading ??= readAll().finally(() => {
          loading = undefined
        })
        cache = { at: now, grants: await loading }
      }
      return cache.grants.filter((g) => Date.parse(g.expires) > now && Date.parse(g.created) <= now + 1000)
    },
    /** active() when the cache is fresh, without a promise; undefined when storage must be read */
    activeSync(now = Date.now()): Grant[] | undefined {
      if (!cache || now - cache.at >= cacheMs) return undefined
      return cache.grants.filter((g) => Date.parse(g.expires) > now && Date.parse(g.created) <= now + 1000)
    },
    invalidate() {
      cache = undefined
    },
  }
}

export type GrantStore = ReturnType<typeof createGrantStore>
