// Virtual keys (am-...): who a request is, and so who pays. A key maps to a team, a user and
// optionally a tool. With `required` (the team preset) every LLM request needs a valid key and the
// X-AgentMesh-Team/User headers are ignored; without it, requests with no key fall back to those
// headers (demo, solo). A presented am- key is removed from the request before any vendor sees it.
import { LRUCache } from 'lru-cache'
import { defaultIdentityResolver, toolFromUserAgent } from '../../core/identity.ts'
import { definePlugin } from '../../core/plugin.ts'
import type { Identity, Mesh, MeshContext, MeshResponse, Plugin } from '../../core/types.ts'
import { adminError, checkAdmin, json, readJson, resolveAdminToken } from '../../core/admin.ts'
import { createKeyStore, hashKey, KEY_FORMAT, KEY_PREFIX, NAME, publicRecord, validateNewKey, type KeyStore, type VirtualKeyRecord } from './store.ts'

export interface VirtualKeysOptions {
  /** every LLM request must carry a valid virtual key (401 otherwise); identity headers are ignored */
  required?: boolean
  /** token for /agentmesh/admin/keys (default: env AGENTMESH_ADMIN_TOKEN); none disables the admin API */
  adminToken?: string
  /** how long a verified key is trusted before storage is read again, ms (default 2000): the bound on how long a revoke takes to reach other instances */
  cacheTtlMs?: number
}

const unauthorized = (message: string): MeshResponse => ({ kind: 'error', status: 401, type: 'authentication_error', message })

/** Where clients put credentials: Authorization: Bearer (OpenAI, recent Anthropic SDKs), x-api-key (Anthropic), x-goog-api-key and ?key= (Gemini). */
function presentedKey(ctx: MeshContext): { key: string; from: 'authorization' | 'x-api-key' | 'x-goog-api-key' | 'query' } | undefined {
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
  for (const k of Object.keys(options)) if (!['required', 'adminToken', 'cacheTtlMs'].includes(k)) throw new Error(`keys: unknown option "${k}" (expected required, adminToken, cacheTtlMs)`)
  if (options.required !== undefined && typeof options.required !== 'boolean') throw new Error(`keys: required must be true or false, got ${JSON.stringify(options.required)}`)
  if (options.adminToken !== undefined && (typeof options.adminToken !== 'string' || options.adminToken.length < 16)) throw new Error('keys: adminToken must be a string of at least 16 characters')
  if (options.cacheTtlMs !== undefined && (typeof options.cacheTtlMs !== 'number' || !(options.cacheTtlMs >= 0))) throw new Error(`keys: cacheTtlMs must be a non-negative number of milliseconds, got ${JSON.stringify(options.cacheTtlMs)}`)
}

const MEMORY_STORAGE_ERROR = [
  'keys: storage is the in-memory driver, so a key made by this command would vanish when it exits.',
  'Configure persistent storage in agentmesh.config.ts, e.g. storage: { driver: \'fs\' } or { driver: \'redis\', url: \'redis://...\' }',
  '(or run with --preset solo / --preset team), or manage keys through the running proxy\'s admin API:',
  '  curl -X POST http://HOST:PORT/agentmesh/admin/keys -H "Authorization: Bearer $AGENTMESH_ADMIN_TOKEN" -d \'{"team":"eng","user":"alice"}\'',
].join('\n')

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd())
}

export function virtualKeys(options: VirtualKeysOptions = {}): Plugin {
  validateOptions(options)
  const ttl = options.cacheTtlMs ?? 2000
  let store: KeyStore | undefined
  // hash -> record, for ttl ms; only verified keys are cached, so a new key works at once everywhere.
  // ttl 0 caches nothing (lru-cache reads a ttl of 0 as "never expires"); lru-cache takes whole ms
  // and no Infinity, which here means "never expires"
  const verified = ttl > 0 ? new LRUCache<string, VirtualKeyRecord>({ max: 10_000, ...(Number.isFinite(ttl) ? { ttl: Math.ceil(ttl) } : {}) }) : undefined

  // synchronous when the request carries no virtual key (the common case without `required`)
  function resolve(ctx: MeshContext): Identity | MeshResponse | Promise<Identity | MeshResponse> {
    const found = presentedKey(ctx)
    if (!found) {
      if (options.required) {
        return unauthorized('this AgentMesh requires a virtual key: send it as Authorization: Bearer am-... or x-api-key: am-... (an admin creates one with `agentmesh keys create --team TEAM --user USER`)')
      }
      return defaultIdentityResolver(ctx)
    }
    return resolveKey(ctx, found)
  }

  async function resolveKey(ctx: MeshContext, found: NonNullable<ReturnType<typeof presentedKey>>): Promise<Identity | MeshResponse> {
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

  function addAdminRoutes(mesh: Mesh) {
    const token = resolveAdminToken(options.adminToken, 'keys')
    mesh.addRoute('POST', '/agentmesh/admin/keys', async (request) => {
      const denied = checkAdmin(request, token)
      if (denied) return denied
      const { body, error } = await readJson(request)
      if (error) return error
      const { value, errors } = validateNewKey(body)
      if (!value) return adminError(400, 'invalid_request_error', errors.join('; '))
      const { key, record } = await store!.create(value)
      mesh.log.info('virtual key created', { id: record.id, team: record.team, user: record.user })
      return json(201, { ...publicRecord(record), key, note: 'store this key now: it is shown only once' })
    })
    mesh.addRoute('GET', '/agentmesh/admin/keys', async (request) => {
      const denied = checkAdmin(request, token)
      if (denied) return denied
      return json(200, { keys: (await store!.list()).map(publicRecord) })
    })
    mesh.addRoute('DELETE', '/agentmesh/admin/keys/:id', async (request, params) => {
      const denied = checkAdmin(request, token)
      if (denied) return denied
      const id = params.id ?? ''
      if (!/^[A-Za-z0-9_]{1,40}$/.test(id)) return adminError(400, 'invalid_request_error', `malformed key id "${id.slice(0, 60)}"`)
      const record = await store!.revoke(id)
      if (!record) return adminError(404, 'not_found_error', `no virtual key with id ${id}`)
      forget(id)
      mesh.log.info('virtual key revoked', { id })
      return json(200, publicRecord(record))
    })
  }

  return definePlugin({
    name: 'keys',
    enforce: 'pre',
    options: { ...options, ...(options.adminToken ? { adminToken: '(set)' } : {}) },
    setup(mesh) {
      store = createKeyStore(mesh.storage)
      mesh.setIdentityResolver(resolve)
      addAdminRoutes(mesh)
    },
    commands: [
      {
        // one command with an action word: cac matches a command by its first word only
        name: 'keys <action> [id]',
        description: 'Virtual keys: keys create --team T --user U [--tool X] [--name N] | keys list | keys revoke ID',
        options: [
          { flags: '--team <team>', description: 'keys create: team that pays for requests made with the key' },
          { flags: '--user <user>', description: 'keys create: user the key belongs to' },
          { flags: '--tool <tool>', description: 'keys create: tool the key is for (optional)' },
          { flags: '--name <name>', description: 'keys create: a label (optional)' },
          { flags: '--json', description: 'print JSON' },
        ],
        async run({ mesh, args, options: o, print }) {
          const [action, id] = args
          if (mesh.config.storage.driver === 'memory') {
            print(MEMORY_STORAGE_ERROR)
            return 1
          }
          const keys = createKeyStore(mesh.storage)
          if (action === 'create') {
            const { value, errors } = validateNewKey({ team: o.team === undefined ? undefined : String(o.team), user: o.user === undefined ? undefined : String(o.user), ...(o.tool !== undefined ? { tool: String(o.tool) } : {}), ...(o.name !== undefined ? { name: String(o.name) } : {}) })
            if (!value) {
              print(`keys create: ${errors.join('; ').replace(/\bteam\b/, '--team').replace(/\buser\b/, '--user')}`)
              return 1
            }
            const { key, record } = await keys.create(value)
            if (o.json) print(JSON.stringify({ ...publicRecord(record), key }, null, 2))
            else {
              print(`created ${record.id} for team ${record.team}, user ${record.user}${record.tool ? `, tool ${record.tool}` : ''}`)
              print('')
              print(`  ${key}`)
              print('')
              print('This key is shown once: store it now. Clients send it as Authorization: Bearer <key> (or x-api-key).')
            }
            return 0
          }
          if (action === 'list') {
            const list = await keys.list()
            if (o.json) print(JSON.stringify(list.map(publicRecord), null, 2))
            else if (!list.length) print('no virtual keys yet: agentmesh keys create --team TEAM --user USER')
            else for (const line of table([['ID', 'KEY', 'TEAM', 'USER', 'TOOL', 'CREATED', 'STATUS'], ...list.map((r) => [r.id, r.prefix + '…', r.team, r.user, r.tool ?? '-', r.created.slice(0, 19) + 'Z', r.revoked ? `revoked ${r.revoked.slice(0, 10)}` : 'active'])])) print(line)
            return 0
          }
          if (action === 'revoke') {
            if (!id) {
              print('keys revoke: give the key id, e.g. agentmesh keys revoke key_AbC123 (see agentmesh keys list)')
              return 1
            }
            const record = await keys.revoke(id)
            if (!record) {
              print(`keys revoke: no virtual key with id ${id}`)
              return 1
            }
            print(`revoked ${record.id} (team ${record.team}, user ${record.user}); running proxies refuse it within ${ttl / 1000} s`)
            return 0
          }
          print(`keys: unknown action "${action ?? ''}"; use keys create --team T --user U, keys list, or keys revoke ID`)
          return 1
        },
      },
    ],
  })
}

export default virtualKeys
