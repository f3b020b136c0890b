// dry-run: `X-AgentMesh-Dry-Run: true` takes a request through identity, normalisation, the
// caches, quota, routing and every guard, and answers a preview instead of calling a vendor (200,
// in the client's protocol, streamed if asked). The plugins with side effects skip them on a dry
// run and the guards record what they would do (core/dry-run.ts) in ctx.state.dryRun, where this
// plugin adds the outcome and the audit log reads both; `enforce: 'post'` makes the preview the
// last route hook, after any router and the approval gate.
// POST /agentmesh/preview answers the same as JSON for a body of any protocol (route.ts).
import { DRY_RUN_HEADER, dryRunState, enableDryRun } from '../../core/dry-run.ts'
import { definePlugin } from '../../core/plugin.ts'
import type { Identity, MeshContext, Plugin } from '../../core/types.ts'
import { buildPreview, previewAnswer, type Preview } from './preview.ts'
import { addPreviewRoute } from './route.ts'

export type { Preview } from './preview.ts'

declare module '../../core/types.ts' {
  interface MeshEvents {
    /** a dry run answered with a preview: what would have happened, nothing spent */
    dry_run: {
      id: string
      identity: Identity
      outcome: 'vendor' | 'cache' | 'blocked' | 'held'
      vendor: string
      model: string
      estimatedTokens: number
      estimatedUsd: number
      guards: string[]
    }
  }
}

export interface DryRunOptions {
  /** serve POST /agentmesh/preview (default true) */
  previewRoute?: boolean
}

const HEADER_VALUE = /^(true|1|false|0)$/i

export function dryRun(options: DryRunOptions = {}): Plugin {
  if (options === null || typeof options !== 'object') throw new Error('dry-run: options must be an object')
  for (const k of Object.keys(options))
    if (k !== 'previewRoute') throw new Error(`dry-run: unknown option "${k}" (expected previewRoute)`)
  if (options.previewRoute !== undefined && typeof options.previewRoute !== 'boolean')
    throw new Error('dry-run: previewRoute must be true or false')
  // previews the JSON route asked for, by request id; taken by the route as soon as it has its answer
  const wanted = new Map<string, Preview | null>()

  function beforeRequest(ctx: MeshContext) {
    const v = ctx.request.headers.get(DRY_RUN_HEADER)
    if (v === null || HEADER_VALUE.test(v.trim())) return
    // the other plugins already treated it as a dry run (nothing spent); the client learns why not
    ctx.response = {
      kind: 'error',
      status: 400,
      type: 'invalid_request_error',
      message: `${DRY_RUN_HEADER} must be true or false, got "${v.slice(0, 40).replace(/[^\x20-\x7e]/g, '?')}"`,
    }
  }

  function route(ctx: MeshContext) {
    const state = dryRunState(ctx)
    if (!state) return
    if (ctx.operation !== 'chat') {
      ctx.response = {
        kind: 'error',
        status: 400,
        type: 'invalid_request_error',
        message: `${DRY_RUN_HEADER} previews chat requests; ${ctx.operation} requests are not previewed`,
      }
      return
    }
    const preview = buildPreview(ctx, state)
    state.outcome = preview.outcome
    if (wanted.has(ctx.id)) wanted.set(ctx.id, preview)
    ctx.headers['X-AgentMesh-Dry-Run'] = 'true'
    // the same two headers a real call carries (vendor/model, and the router's reason when it has one)
    ctx.headers['X-AgentMesh-Route'] = `${preview.route.vendor}/${preview.route.model}`
    if (preview.route.reason) ctx.headers['X-AgentMesh-Route-Reason'] = preview.route.reason
    ctx.headers['X-AgentMesh-Would'] = preview.outcome
    const block = state.verdicts.find((g) => g.action === 'block')
    const hold = state.verdicts.find((g) => g.action === 'hold')
    if (block) ctx.headers['X-AgentMesh-Would-Block'] = `${block.guard} ${block.status} ${block.type}`
    if (hold) ctx.headers['X-AgentMesh-Would-Hold'] = `${hold.guard} ${hold.type}`
    if (preview.estimate.maxUsd !== undefined)
      ctx.headers['X-AgentMesh-Estimated-Max-Cost-USD'] = preview.estimate.maxUsd.toFixed(6)
    ctx.mesh.emit('dry_run', {
      id: ctx.id,
      identity: ctx.identity,
      outcome: preview.outcome,
      vendor: preview.route.vendor,
      model: preview.route.model,
      estimatedTokens: preview.estimate.inputTokens,
      estimatedUsd: preview.estimate.inputUsd,
      guards: state.verdicts.map((g) => `${g.guard}:${g.action}`),
    })
    ctx.response = { kind: 'answer', answer: previewAnswer(ctx, preview) }
  }

  return definePlugin({
    name: 'dry-run',
    enforce: 'post',
    options: { ...options },
    setup(mesh) {
      enableDryRun(mesh)
      if (mesh.mode === 'serve' && options.previewRoute !== false) addPreviewRoute(mesh, wanted)
    },
    hooks: { beforeRequest, route },
  })
}

export default dryRun
