// Prometheus metrics at GET /metrics (prom-client): requests, tokens by type, cost and cost saved,
// cache lookups by layer, quota warnings and blocks, upstream latency, time to first token and the
// proxy's own overhead, labelled by team, user, tool, vendor, model and status, each label bounded.
// Reads only what a finished request left on its context: never prompt text, never a key.
import { Registry } from 'prom-client'
import { checkAdmin, resolveAdminToken } from '../../core/admin.ts'
import { definePlugin } from '../../core/plugin.ts'
import type { Plugin } from '../../core/types.ts'
import { DEFAULT_LIMITS, LabelSets, type LabelName } from './labels.ts'
import * as record from './record.ts'
import type { Layers } from './record.ts'

// taken once: under the TypeScript loader (jiti) every use of an imported binding is a property
// read through its module wrapper, and afterResponse runs on every request. `performance` is the global.
const { createMetrics, recordRequest } = record

export interface MetricsOptions {
  /** where Prometheus scrapes (default /metrics) */
  path?: string
  /**
   * who may scrape: 'open', or 'token' (the admin token as a Bearer token). Default: 'token' when
   * the config's events need authentication (the team preset), else 'open': the labels name teams,
   * users and their spend
   */
  access?: 'open' | 'token'
  /** distinct values kept per label before new ones fold into `other` */
  labelLimits?: Partial<Record<LabelName, number>>
  /** admin token (default: env AGENTMESH_ADMIN_TOKEN) */
  adminToken?: string
}

function validate(o: MetricsOptions) {
  if (!o || typeof o !== 'object') throw new Error('metrics: options must be an object')
  for (const k of Object.keys(o))
    if (!['path', 'access', 'labelLimits', 'adminToken'].includes(k))
      throw new Error(`metrics: unknown option "${k}" (expected path, access, labelLimits, adminToken)`)
  if (o.path !== undefined && (typeof o.path !== 'string' || !o.path.startsWith('/')))
    throw new Error('metrics: path must start with /')
  if (o.access !== undefined && o.access !== 'open' && o.access !== 'token')
    throw new Error(`metrics: access must be 'open' or 'token', got ${JSON.stringify(o.access)}`)
  for (const [k, v] of Object.entries(o.labelLimits ?? {})) {
    if (!(k in DEFAULT_LIMITS))
      throw new Error(`metrics: labelLimits.${k} is not a label (expected ${Object.keys(DEFAULT_LIMITS).join(', ')})`)
    if (!Number.isInteger(v) || (v as number) < 1)
      throw new Error(`metrics: labelLimits.${k} must be a positive integer`)
  }
}

export function metrics(options: MetricsOptions = {}): Plugin {
  validate(options)
  const registry = new Registry()
  const m = createMetrics(registry)
  const labels = new LabelSets({ ...DEFAULT_LIMITS, ...options.labelLimits })
  const layers: Layers = { exact: false, semantic: false }
  return definePlugin({
    name: 'metrics',
    // after the plugins that settle usage and cost
    enforce: 'post',
    options: { ...options, ...(options.adminToken ? { adminToken: '***' } : {}) },
    setup(mesh) {
      const names = new Set(mesh.config.plugins.map((p) => p?.name))
      layers.exact = names.has('exact-cache')
      layers.semantic = names.has('semantic-cache')
      const access = options.access ?? (mesh.config.events.access === 'authenticated' ? 'token' : 'open')
      const token = access === 'token' ? resolveAdminToken(options.adminToken, 'metrics') : undefined
      mesh.addRoute('GET', options.path ?? '/metrics', async (request) => {
        if (access === 'token') {
          const denied = checkAdmin(request, token)
          if (denied) return denied
        }
        return new Response(await registry.metrics(), {
          status: 200,
          headers: { 'content-type': registry.contentType, 'cache-control': 'no-store' },
        })
      })
    },
    hooks: {
      afterResponse(ctx) {
        recordRequest(m, labels, layers, ctx, performance.now())
      },
    },
  })
}
