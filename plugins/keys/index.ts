// Virtual keys (am-...): who a request is, and so who pays. A key maps to a team, a user and
// optionally a tool. With `required` (the team preset) every LLM request needs a valid key and the
// X-AgentMesh-Team/User headers are ignored; without it, requests with no key fall back to those
// headers (demo, solo). A presented am- key is removed from the request before any vendor sees it.
import { LRUCache } from 'lru-cache'
import { defaultIdentityResolver, toolFromUserAgent } from '../../core/identity.ts'
import { definePlugin } from '../../core/plugin.ts'
import type { Identity, MeshContext, MeshResponse, Plugin } from '../../core/types.ts'
import { keysCommand } from './commands.ts'
import { addKeyRoutes } from './routes.ts'
import { createKeyStore, hashKey, KEY_FORMAT, KEY_PREFIX, NAME, type KeyStore, type VirtualKeyRecord } from './store.ts'

export interface VirtualKeysOptions {
  /** every LLM request must carry a valid virtual key (401 otherwise); identity headers are ignored */
  required?: boolean
  /** token for /agentmesh/admin/keys (default: env AGENTMESH_ADMIN_TOKEN); none disables the admin API */
  adminToken?: string
  /** how long a verified key is trusted before storage is read again, ms (default 2000): the bound on how long a revoke takes to reach other instances */
  cacheTtlMs?: number
}

const unauthorized = (message: string): MeshResponse => ({
  kind: 'error',
  status: 401,
  type: 'authentication_error',
  message,
})

/** Where clients put credentials: Authorization: Bearer (OpenAI, recent Anthropic SDKs), x-api-key (Anthropic), x-goog-api-key and ?key= (Gemini). */
function presentedKey(
  ctx: MeshContext,
): { key: string; from: 'authorization' | 'x-api-key' | 'x-goog-api-key' | 'query' } | undefined {
  const h = ctx.request.headers
  const auth = h.get('authorization')
  if (auth && /^Bearer\s+am-/i.test(auth)) return { key: auth.replace(/^Bearer\s+/i, '').trim(), from: 'authorization' }
  for (const name of ['x-api-key', 'x-goog-api-key'] as const) {
    const v = h.get(name)?.trim()
    if (v?.startsWith(KEY_PREFIX)) return { key: v, from: name }
  }
  if (!ctx.request.search) return undefined // no query string: no URL to parse
  const q = ctx.request.url.searchParams.get('key')
  if (q?.startsWith(KEY_PREFIX)) return { key: q, from: 'query' }
  return undefined
}

/** Never forward a virtual key: vendor keys come from config or env. */
function stripKey(ctx: MeshContext, from: string) {
  try {
    if (from === 'query') ctx.request.url.searchParams.delete('key')
    else ctx.request.headers.delete(from)
  } catch {
    // immutable headers: the vendor plugins build upstream headers from config anyway
  }
}

function validateOptions(options: VirtualKeysOptions) {
  if (!options || typeof options !== 'object') throw new Error('keys: options must be an object')
  for (const k of Object.keys(options))
    if (!['required', 'adminToken', 'cacheTtlMs'].includes(k))
      throw new Error(`keys: unknown option "${k}" (expected required, adminToken, cacheTtlMs)`)
  if (options.required !== undefined && typeof options.required !== 'boolean')
    throw new Error(`keys: required must be true or false, got ${JSON.stringify(options.required)}`)
  if (options.adminToken !== undefined && (typeof options.adminToken !== 'string' || options.adminToken.length < 16))
    throw new Error('keys: adminToken must be a string of at least 16 characters')
  if (options.cacheTtlMs !== undefined && (typeof options.cacheTtlMs !== 'number' || !(options.cacheTtlMs >= 0)))
    throw new Error(
      `keys: cacheTtlMs must be a non-negative number of milliseconds, got ${JSON.stringify(options.cacheTtlMs)}`,
    )
}

export function virtualKeys(options: VirtualKeysOptions = {}): Plugin {
  validateOptions(options)
  const ttl = options.cacheTtlMs ?? 2000
  let store: KeyStore | undefined
  // hash -> record, for ttl ms; only verified keys are cached, so a new key works at once everywhere.
  // ttl 0 caches nothing (lru-cache reads a ttl of 0 as "never expires"); lru-cache takes whole ms
  // and no Infinity, which here means "never expires"
  const verified =
    ttl > 0
      ? new LRUCache<string, VirtualKeyRecord>({
          max: 10_000,
          ...(Number.isFinite(ttl) ? { ttl: Math.ceil(ttl) } : {}),
        })
      : undefined

  // synchronous when the request carries no virtual key (the common case without `required`)
  function resolve(ctx: MeshContext): Identity | MeshResponse | Promise<Identity | MeshResponse> {
    const found = presentedKey(ctx)
    if (!found) {
      if (options.required) {
        return unauthorized(
          'this AgentMesh requires a virtual key: send it as Authorization: Bearer am-... or x-api-key: am-... (an admin creates one with `agentmesh keys create --team TEAM --user USER`)',
        )
      }
      return defaultIdentityResolver(ctx)
    }
    return resolveKey(ctx, found)
  }

  async function resolveKey(
    ctx: MeshContext,
    found: NonNullable<ReturnType<typeof presentedKey>>,
  ): Promise<Identity | MeshResponse> {
    stripKey(ctx, found.from)
    if (!KEY_FORMAT.test(found.key)) return unauthorized('invalid virtual key')
    let record: VirtualKeyRecord | null | undefined
    // cached by hash: the process keeps no raw keys beyond the request
    const hash = hashKey(found.key)
    record = verified?.get(hash)
    if (!record) {
      record = await store!.lookup(found.key)
      if (record && !record.revoked) verified?.set(hash, record)
      else verified?.delete(hash)
    }
    if (!record) return unauthorized('unknown virtual key')
    if (record.revoked) return unauthorized('this virtual key was revoked')
    // team and user come from the key alone; a tool header counts only when the key names no tool
    let tool = record.tool
    if (!tool) {
      const header = ctx.request.headers.get('x-agentmesh-tool')
      tool = header && NAME.test(header) ? header : toolFromUserAgent(ctx.request.headers.get('user-agent'))
    }
    return { team: record.team, user: record.user, tool, keyId: record.id, source: 'key' }
  }

  function forget(id: string) {
    if (!verified) return
    const gone: string[] = []
    for (const [hash, record] of verified.entries()) if (record.id === id) gone.push(hash)
    for (const hash of gone) verified.delete(hash)
  }

  return definePlugin({
    name: 'keys',
    enforce: 'pre',
    options: { ...options, ...(options.adminToken ? { adminToken: '(set)' } : {}) },
    setup(mesh) {
      store = createKeyStore(mesh.storage)
      mesh.setIdentityResolver(resolve)
      addKeyRoutes(mesh, store, options.adminToken, forget)
    },
    commands: [keysCommand(ttl)],
  })
}

export default virtualKeys
