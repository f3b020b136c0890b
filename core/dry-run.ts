// The dry-run contract (X-AgentMesh-Dry-Run: true) that every plugin with side effects honours:
// a dry run goes through every hook but spends, stores, reserves and counts nothing, and a guard
// that would end it records a verdict instead of answering. Shared here, as cache-control.ts is,
// because plugins never import each other; plugins/dry-run switches it on and renders the preview.
import type { Mesh, MeshContext, MeshResponse } from './types.ts'

export const DRY_RUN_HEADER = 'x-agentmesh-dry-run'

/** What a guard would have done to the request, had it been real. */
export interface GuardVerdict {
  /** plugin name: quota, breaker, approval ... */
  guard: string
  /** block: refused outright; hold: waits for (or asks for) a person's decision */
  action: 'block' | 'hold'
  status: number
  type: string
  message: string
}

/** ctx.state.dryRun: the verdicts of the guards, in the order they ran */
export interface DryRunState {
  verdicts: GuardVerdict[]
  /** what the real request would have come to, once the preview is made (plugins/dry-run) */
  outcome?: 'vendor' | 'cache' | 'blocked' | 'held'
}

// Declared here, not in plugins/dry-run: the guards write it through refuseOrRecord() below and
// the core imports no plugin, so the state's type lives with the contract that fills it.
declare module './types.ts' {
  interface MeshState {
    /** a dry run's state (the audit records it); null: looked, not a dry run */
    dryRun?: DryRunState | null
  }
}

// meshes whose config has the dry-run plugin: without it the header means nothing, and a plugin
// that skipped its side effects would let a real vendor call go unbilled
const enabled = new WeakSet<object>()

/** plugins/dry-run calls this in setup */
export function enableDryRun(mesh: Mesh): void {
  enabled.add(mesh)
}

/**
 * Whether ctx is a dry run. Any value but `false`/`0` counts (a malformed value is refused with a
 * 400 by the dry-run plugin; until then no plugin must spend on it).
 */
export function isDryRun(ctx: MeshContext): boolean {
  // null: looked, not a dry run (several plugins ask on every request)
  const state = ctx.state.dryRun
  if (state !== undefined) return state !== null
  const v = enabled.has(ctx.mesh) ? ctx.request.headers.get(DRY_RUN_HEADER) : null
  const t = v?.trim().toLowerCase()
  const dry = t !== undefined && t !== 'false' && t !== '0' && t !== ''
  ctx.state.dryRun = dry ? { verdicts: [] } : null
  return dry
}

export function dryRunState(ctx: MeshContext): DryRunState | undefined {
  return isDryRun(ctx) ? (ctx.state.dryRun ?? undefined) : undefined
}

/**
 * A guard's refusal: the response on a real request; on a dry run a verdict, and the request goes
 * on so the preview can tell everything that would happen.
 */
export function refuseOrRecord(
  ctx: MeshContext,
  guard: string,
  response: Extract<MeshResponse, { kind: 'error' }>,
  action: GuardVerdict['action'] = 'block',
): void {
  const state = dryRunState(ctx)
  if (!state) {
    ctx.response = response
    return
  }
  state.verdicts.push({ guard, action, status: response.status, type: response.type, message: response.message })
  // the refusal's own headers (Retry-After, an approval id) are part of what the preview shows
  if (response.headers) for (const k in response.headers) ctx.headers[k] = response.headers[k]!
}
