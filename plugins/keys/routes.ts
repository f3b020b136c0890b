// The admin API for virtual keys: create, list, revoke, behind the admin token.
import { adminError, checkAdmin, json, readJson, resolveAdminToken } from '../../core/admin.ts'
import type { Mesh } from '../../core/types.ts'
import { publicRecord, validateNewKey, type KeyStore } from './store.ts'

/** `forget` drops a revoked key from this process's cache at once */
export function addKeyRoutes(
  mesh: Mesh,
  store: KeyStore,
  adminToken: string | undefined,
  forget: (id: string) => void,
) {
  const token = resolveAdminToken(adminToken, 'keys')
  mesh.addRoute('POST', '/agentmesh/admin/keys', async (request) => {
    const denied = checkAdmin(request, token)
    if (denied) return denied
    const { body, error } = await readJson(request)
    if (error) return error
    const { value, errors } = validateNewKey(body)
    if (!value) return adminError(400, 'invalid_request_error', errors.join('; '))
    const { key, record } = await store.create(value)
    mesh.log.info('virtual key created', { id: record.id, team: record.team, user: record.user })
    return json(201, { ...publicRecord(record), key, note: 'store this key now: it is shown only once' })
  })
  mesh.addRoute('GET', '/agentmesh/admin/keys', async (request) => {
    const denied = checkAdmin(request, token)
    if (denied) return denied
    return json(200, { keys: (await store.list()).map(publicRecord) })
  })
  mesh.addRoute('DELETE', '/agentmesh/admin/keys/:id', async (request, params) => {
    const denied = checkAdmin(request, token)
    if (denied) return denied
    const id = params.id ?? ''
    if (!/^[A-Za-z0-9_]{1,40}$/.test(id))
      return adminError(400, 'invalid_request_error', `malformed key id "${id.slice(0, 60)}"`)
    const record = await store.revoke(id)
    if (!record) return adminError(404, 'not_found_error', `no virtual key with id ${id}`)
    forget(id)
    mesh.log.info('virtual key revoked', { id })
    return json(200, publicRecord(record))
  })
}
