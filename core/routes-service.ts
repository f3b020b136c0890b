// AgentMesh's own routes: health and readiness for load balancers, the live event stream, the
// targets' health.
import type { H3 } from 'h3'
import { adminError, checkAdmin, json, resolveAdminToken } from './admin.ts'
import type { MeshInternals } from './app.ts'
import { isStorageUnavailable } from './errors.ts'
import { eventStreamResponse, teamFilter, type EventBus } from './events.ts'
import { resolveCallerIdentity } from './pipeline.ts'
import type { Replies } from './replies.ts'
import { targetsReport } from './targets.ts'
import type { HealthCheck, IdentityResolver, MeshEvent, ResolvedMeshConfig } from './types.ts'

export interface ServiceRouteDeps {
  config: ResolvedMeshConfig
  internals: MeshInternals
  replies: Replies
  bus: EventBus
  healthChecks: Map<string, () => HealthCheck>
  /** what /health reports beyond the checks */
  describe(): { version: string; plugins: string[]; storageLocation: string }
}

export function registerServiceRoutes(app: H3, deps: ServiceRouteDeps): void {
  const { config, replies, internals } = deps
  const health = () => {
    const { ok, checks } = checkAll(deps.healthChecks)
    const about = deps.describe()
    const storage = {
      driver: config.storage.driver,
      location: about.storageLocation,
      reachable: checks.storage?.ok ?? true,
    }
    const mesh = internals.mesh
    return {
      ok,
      status: ok ? 'ok' : 'degraded',
      version: about.version,
      preset: config.preset,
      demo: mesh.vendors.has('demo'),
      plugins: about.plugins,
      storage,
      vendors: [...mesh.vendors.keys()],
      checks,
    }
  }
  const noStore = { 'cache-control': 'no-store' }
  // health: the process answers (200 while it runs) and what is degraded
  app.get('/agentmesh/health', (event) => replies.json(event, health(), noStore))
  // load balancers and the earlier Python AgentMesh's clients probe /health
  app.get('/health', (event) => replies.json(event, health(), noStore))
  // ready: 503 while any part the requests depend on is down, so a load balancer sends traffic elsewhere
  app.get('/agentmesh/ready', (event) => {
    const { ok, checks } = checkAll(deps.healthChecks)
    return replies.json(event, { ready: ok, checks }, noStore, ok ? 200 : 503)
  })
  app.get('/agentmesh/events', async (event) => {
    const request = event.req as Request
    let visible: ((e: MeshEvent) => boolean) | undefined
    if (config.events.access === 'authenticated') {
      const access = await eventsAccess(deps, request)
      if (access instanceof Response) return access
      visible = access
    }
    return eventStreamResponse(deps.bus, request, replies.bareHeaders(request.headers.get('origin')), visible)
  })
  // each target's health and the vendors' deployments (core/targets.ts), under the admin token
  // as the plugins' admin routes are
  internals.mesh.addRoute('GET', '/agentmesh/admin/targets', (request) => {
    let token: string | undefined
    try {
      token = resolveAdminToken(undefined, 'admin API')
    } catch (err) {
      return adminError(403, 'admin_disabled', (err as Error).message)
    }
    return checkAdmin(request, token) ?? json(200, targetsReport(internals.mesh))
  })
}

function checkAll(healthChecks: Map<string, () => HealthCheck>): { ok: boolean; checks: Record<string, HealthCheck> } {
  const checks: Record<string, HealthCheck> = {}
  let ok = true
  for (const [name, check] of healthChecks) {
    let c: HealthCheck
    try {
      c = check()
    } catch (err) {
      c = { ok: false, message: `health check failed: ${(err as Error).message}` }
    }
    checks[name] = c
    ok &&= c.ok
  }
  return { ok, checks }
}

/**
 * The event stream under `events.access: 'authenticated'`: the admin token sees everything, a
 * virtual key its own team's events, anything else a 401.
 */
async function eventsAccess(
  deps: ServiceRouteDeps,
  request: Request,
): Promise<Response | ((e: MeshEvent) => boolean) | undefined> {
  const origin = request.headers.get('origin')
  const adminToken = process.env.AGENTMESH_ADMIN_TOKEN
  if (adminToken && !checkAdmin(request, adminToken)) return undefined
  let who: Awaited<ReturnType<IdentityResolver>>
  try {
    who = await resolveCallerIdentity(deps.internals, request)
  } catch (err) {
    if (isStorageUnavailable(err))
      return deps.replies.jsonError(503, 'storage_unavailable', (err as Error).message, origin)
    throw err
  }
  if (!('kind' in who) && who.source === 'key') return teamFilter(who.team)
  return deps.replies.jsonError(
    401,
    'authentication_error',
    "the event stream needs the admin token (Authorization: Bearer $AGENTMESH_ADMIN_TOKEN) or a virtual key, which sees its own team's events",
    origin,
  )
}
