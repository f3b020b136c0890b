// The dashboard at /agentmesh/: overview, teams and budgets, requests, keys, approvals, runs and
// the audit log's state, live from /agentmesh/events. The page and its scripts hold no data; every
// number comes from the event stream (the core's access rules: under `team` the admin token or a
// virtual key, which sees its own team) and the admin APIs (the admin token). With open events
// (demo, solo) the page is served to loopback clients only.
import { definePlugin } from '../../core/plugin.ts'
import type { Plugin } from '../../core/types.ts'
import { createAssets } from './assets.ts'

export interface DashboardOptions {
  /** serve the page to any client, not only loopback ones, while the events are open (default false) */
  public?: boolean
}

/**
 * The events the page reads (ui/app.js has the same URL): all but the per-request ones it does not
 * show, and past 20 requests in one flush of the stream (200 a second) the others' sums only
 * (core/events-fold.ts). Exported for bench:proxy, whose dashboard line reads what a dashboard reads.
 */
export const DASHBOARD_EVENTS = '/agentmesh/events?exclude=request,llm_call,cache_miss,x-*&fold=20'

const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/

/** the client's address where the server knows it (srvx requests carry `ip`); none in-process */
const clientIp = (request: Request) => (request as Request & { ip?: string }).ip

export function dashboard(options: DashboardOptions = {}): Plugin {
  if (!options || typeof options !== 'object') throw new Error('dashboard: options must be an object')
  for (const k of Object.keys(options))
    if (k !== 'public') throw new Error(`dashboard: unknown option "${k}" (expected public)`)
  const asset = createAssets()
  return definePlugin({
    name: 'dashboard',
    options: { ...options },
    setup(mesh) {
      const loopbackOnly = mesh.config.events.access === 'open' && !options.public
      const serve = (request: Request, name: string): Response => {
        const ip = clientIp(request)
        if (loopbackOnly && ip && !LOOPBACK.test(ip)) {
          return new Response(
            'the dashboard is served to this machine only (events.access is open); use the team preset, or dashboard({ public: true })\n',
            { status: 403, headers: { 'content-type': 'text/plain; charset=utf-8' } },
          )
        }
        const a = asset(name)
        if (!a) return new Response('not found\n', { status: 404, headers: { 'content-type': 'text/plain' } })
        const headers: Record<string, string> = {
          'content-type': a.type,
          'cache-control': 'no-cache',
          'x-content-type-options': 'nosniff',
        }
        // the page loads only its own scripts and talks only to this proxy
        if (name === 'index.html')
          headers['content-security-policy'] =
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
        return new Response(new Uint8Array(a.body), { status: 200, headers })
      }
      // the router matches /agentmesh and /agentmesh/ alike; the page's URLs are absolute
      mesh.addRoute('GET', '/agentmesh/', (request) => serve(request, 'index.html'))
      mesh.addRoute('GET', '/agentmesh/ui/**:path', (request, params) => serve(request, params.path ?? ''))
    },
  })
}
