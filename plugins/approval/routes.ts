// The admin API, behind the admin token: GET /agentmesh/admin/approvals (?all=1 includes decided
// and expired ones), POST /agentmesh/admin/approvals/:id/approve and /deny with an optional JSON
// body { "note": "...", "by": "alice" }.
import { adminError, checkAdmin, json, readJson, resolveAdminToken } from '../../core/admin.ts'
import type { Mesh } from '../../core/types.ts'
import { announce, type ApprovalRuntime } from './gate.ts'
import { APPROVAL_ID, cleanNote, deciderName, type ApprovalRecord } from './store.ts'

export const isOpen = (r: ApprovalRecord, now: number) => r.status === 'pending' && Date.parse(r.expiresAt) > now

export function addApprovalRoutes(mesh: Mesh, rt: ApprovalRuntime) {
  const token = resolveAdminToken(rt.opts.adminToken, 'approval')
  mesh.addRoute('GET', '/agentmesh/admin/approvals', async (request) => {
    const denied = checkAdmin(request, token)
    if (denied) return denied
    const all = /^(1|true)$/.test(new URL(request.url).searchParams.get('all') ?? '')
    const now = Date.now()
    return json(200, { approvals: (await rt.store.list()).filter((r) => all || isOpen(r, now)) })
  })
  for (const action of ['approve', 'deny'] as const) {
    mesh.addRoute('POST', `/agentmesh/admin/approvals/:id/${action}`, async (request, params) => {
      const denied = checkAdmin(request, token)
      if (denied) return denied
      const id = params.id ?? ''
      if (!APPROVAL_ID.test(id))
        return adminError(400, 'invalid_request_error', 'malformed approval id: apr_ and 16 hex digits')
      let body: any = {}
      if (request.headers.get('content-length') !== '0' && request.headers.has('content-type')) {
        const read = await readJson(request)
        if (read.error) return read.error
        body = read.body ?? {}
      }
      const note = cleanNote(body?.note)
      if (note instanceof Error) return adminError(400, 'invalid_request_error', note.message)
      const r = await rt.store.decide(
        id,
        action === 'approve' ? 'approved' : 'denied',
        deciderName(body?.by, 'admin-api'),
        note,
        rt.opts.grantSeconds,
      )
      if (typeof r === 'string')
        return adminError(
          r.startsWith('no approval') ? 404 : 409,
          r.startsWith('no approval') ? 'not_found_error' : 'conflict',
          r,
        )
      mesh.log.info(`approval ${id} ${r.status} by ${r.decidedBy}`)
      announce({ mesh }, rt, r)
      rt.waiters.get(id)?.()
      return json(200, r)
    })
  }
}
