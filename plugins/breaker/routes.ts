// The admin API: GET /agentmesh/admin/runs (every run with its state), POST
// /agentmesh/admin/runs/:id/reset?team=T (a fresh budget, the tripping loop forgiven), admin token.
import { adminError, checkAdmin, json, resolveAdminToken } from '../../core/admin.ts'
import type { Mesh } from '../../core/types.ts'
import { RUN_ID } from './run-id.ts'
import type { RunStore } from './state.ts'
import { resetRuns, runView } from './commands.ts'

export function addBreakerRoutes(mesh: Mesh, store: RunStore, option: string | undefined) {
  const token = resolveAdminToken(option, 'breaker')
  mesh.addRoute(
    'GET',
    '/agentmesh/admin/runs',
    async (request) => checkAdmin(request, token) ?? json(200, { runs: (await store.list()).map(runView) }),
  )
  mesh.addRoute('POST', '/agentmesh/admin/runs/:id/reset', async (request, params) => {
    const denied = checkAdmin(request, token)
    if (denied) return denied
    const id = params.id ?? ''
    if (!RUN_ID.test(id))
      return adminError(
        400,
        'invalid_request_error',
        'malformed run id: 1 to 128 letters, digits or . _ : - characters',
      )
    const team = new URL(request.url).searchParams.get('team') ?? undefined
    if (team !== undefined && (team.length > 128 || /[\u0000-\u001f\u007f]/.test(team)))
      return adminError(400, 'invalid_request_error', 'malformed team')
    const reset = await resetRuns(store, id, team)
    if (!reset.length) return adminError(404, 'not_found_error', `no run ${id}${team ? ` of team ${team}` : ''}`)
    mesh.log.info('breaker: run reset', { run: id, teams: reset.join(',') })
    return json(200, { run: id, teams: reset, reset: true })
  })
}
