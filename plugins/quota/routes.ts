// The admin API: usage report and grants (list, create, remove), behind the admin token.
import { adminError, checkAdmin, json, readJson, resolveAdminToken } from '../../core/admin.ts'
import { validateGrant } from './grants.ts'
import type { QuotaRuntime } from './plan.ts'
import { usageReport } from './report.ts'

export function addQuotaRoutes(rt: QuotaRuntime) {
  const { mesh } = rt
  const token = resolveAdminToken(rt.opts.adminToken, 'quota')
  mesh.addRoute(
    'GET',
    '/agentmesh/admin/usage',
    async (request) => checkAdmin(request, token) ?? json(200, await usageReport(rt)),
  )
  mesh.addRoute('GET', '/agentmesh/admin/grants', async (request) => {
    const denied = checkAdmin(request, token)
    if (denied) return denied
    const all = new URL(request.url).searchParams.get('all')
    const now = Date.now()
    const list = await rt.grants.list(now)
    return json(200, { grants: all === '1' || all === 'true' ? list : list.filter((g) => Date.parse(g.expires) > now) })
  })
  mesh.addRoute('POST', '/agentmesh/admin/grants', async (request) => {
    const denied = checkAdmin(request, token)
    if (denied) return denied
    const { body, error } = await readJson(request)
    if (error) return error
    const { value, errors } = validateGrant(body)
    if (!value) return adminError(400, 'invalid_request_error', errors.join('; '))
    const grant = await rt.grants.create(value)
    mesh.log.info('quota grant created', {
      id: grant.id,
      scope: grant.scope,
      tokens: grant.tokens,
      usd: grant.usd,
      expires: grant.expires,
    })
    return json(201, grant)
  })
  mesh.addRoute('DELETE', '/agentmesh/admin/grants/:id', async (request, params) => {
    const denied = checkAdmin(request, token)
    if (denied) return denied
    const id = params.id ?? ''
    if (!/^grant_[0-9a-f]{12}$/.test(id))
      return adminError(400, 'invalid_request_error', `malformed grant id "${id.slice(0, 60)}"`)
    if (!(await rt.grants.remove(id))) return adminError(404, 'not_found_error', `no grant with id ${id}`)
    return json(200, { id, removed: true })
  })
}
