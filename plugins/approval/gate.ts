// The route hook: after the caches (a hit costs nothing, so it is never held) and the router (the
// model that would answer is the one judged), a request a rule fires on waits for a person (hold)
// or is refused at once with an approval id (ask); an approved id re-sent in X-AgentMesh-Approval
// lets exactly that request through, once.
import type { LRUCache } from 'lru-cache'
import { canonicalSha256 } from '../../core/canonical.ts'
import { isDryRun, refuseOrRecord } from '../../core/dry-run.ts'
import type { Identity, MeshContext, MeshResponse } from '../../core/types.ts'
import { firstRule, type ApprovalRequest, type ResolvedApprovalOptions, type ResolvedRule } from './options.ts'
import { APPROVAL_ID, type ApprovalRecord, type ApprovalStore } from './store.ts'

export const APPROVAL_HEADER = 'x-agentmesh-approval'

/** published as ctx.state.approval, which the audit entry records */
export interface ApprovalMeta {
  id: string
  status: 'granted' | 'denied' | 'required' | 'timeout' | 'refused'
  rule?: string
  decidedBy?: string
  decidedAt?: string
  note?: string
}

declare module '../../core/types.ts' {
  interface MeshState {
    approval?: ApprovalMeta
  }
  interface MeshEvents {
    /** the approval gate held a request for a person's decision */
    approval_requested: {
      id: string
      approval: string
      identity: Identity
      rule: string
      reason: string
      model: string
      estimatedUsd: number
      mode: 'hold' | 'ask'
    }
    approval_granted: { approval: string; by: string; at: string; note?: string }
    approval_denied: { approval: string; by: string; at: string; note?: string }
  }
}

export interface ApprovalRuntime {
  opts: ResolvedApprovalOptions
  store: ApprovalStore
  /** held requests of this process, woken when a decision is made here */
  waiters: Map<string, () => void>
  /** decisions this process has announced (approval_granted / _denied), so a waiter does not again */
  announced: LRUCache<string, true>
  /** the mesh is closing: held requests stop waiting */
  closing?: boolean
}

const refusal = (
  status: number,
  type: string,
  message: string,
  id?: string,
): Extract<MeshResponse, { kind: 'error' }> => ({
  kind: 'error',
  status,
  type,
  message,
  headers: { 'x-should-retry': 'false', ...(id ? { 'x-agentmesh-approval-id': id } : {}) },
})

/** who asked and what, without the transport: a client may re-send with or without streaming */
const requestHash = (ctx: MeshContext) =>
  canonicalSha256(
    {
      team: ctx.identity.team,
      user: ctx.identity.user,
      protocol: ctx.protocol,
      prompt: { ...ctx.prompt, stream: undefined },
    },
    ctx.request.rawBody.length,
  )

function howToApprove(id: string): string {
  return `A person approves it with \`agentmesh approve ${id}\` (or POST /agentmesh/admin/approvals/${id}/approve with the admin token); then send the same request again with the header X-AgentMesh-Approval: ${id}.`
}

export function announce(ctx: { mesh: MeshContext['mesh'] }, rt: ApprovalRuntime, r: ApprovalRecord) {
  if (rt.announced.has(r.id) || (r.status !== 'approved' && r.status !== 'denied' && r.status !== 'used')) return
  rt.announced.set(r.id, true)
  const data = {
    approval: r.id,
    by: r.decidedBy ?? 'unknown',
    at: r.decidedAt ?? '',
    ...(r.note ? { note: r.note } : {}),
  }
  ctx.mesh.emit(r.status === 'denied' ? 'approval_denied' : 'approval_granted', data)
}

/**
 * what a rule is judged on: who, which model, and the cost if the answer runs to max_tokens (NaN
 * here: firstRule prices it when a rule needs it)
 */
function describe(ctx: MeshContext): ApprovalRequest {
  const model = ctx.route.model || ctx.prompt.model
  const promptTokens = Math.max(0, Math.round(ctx.usage.inputTokens || 0))
  return {
    identity: ctx.identity,
    protocol: ctx.protocol,
    model,
    vendor: ctx.route.vendor,
    estimatedUsd: Number.NaN,
    promptTokens,
  }
}

/** X-AgentMesh-Approval: a granted id for this very request lets it through, once */
async function useApproval(rt: ApprovalRuntime, ctx: MeshContext, id: string): Promise<void> {
  const refuse = (type: string, message: string) => {
    ctx.state.approval = { id: APPROVAL_ID.test(id) ? id : 'malformed', status: 'refused' } satisfies ApprovalMeta
    refuseOrRecord(ctx, 'approval', refusal(403, type, message, APPROVAL_ID.test(id) ? id : undefined))
  }
  if (!APPROVAL_ID.test(id)) {
    ctx.response = refusal(
      400,
      'invalid_request_error',
      `${APPROVAL_HEADER} must be an approval id (apr_ and 16 hex digits)`,
    )
    return
  }
  const r = await rt.store.get(id)
  if (!r) return refuse('approval_invalid', `no approval ${id}`)
  if (r.requestHash !== requestHash(ctx))
    return refuse(
      'approval_mismatch',
      `approval ${id} was granted for another request (another body, model or identity); it is bound to the request it was asked for`,
    )
  if (r.status === 'pending')
    return refuse('approval_pending', `approval ${id} is not decided yet. ${howToApprove(id)}`)
  if (r.status === 'denied')
    return refuse(
      'approval_denied',
      `approval ${id} was denied by ${r.decidedBy} at ${r.decidedAt}${r.note ? `: ${r.note}` : ''}`,
    )
  if (r.status === 'used')
    return refuse(
      'approval_used',
      `approval ${id} was already used (at ${r.usedAt}); each approval lets one request through`,
    )
  if (Date.parse(r.grantExpiresAt ?? '') <= Date.now())
    return refuse('approval_expired', `approval ${id} expired at ${r.grantExpiresAt}; ask again`)
  // a dry run checks the approval without spending it
  if (!isDryRun(ctx) && !(await rt.store.take(r, ctx.id, rt.opts.grantSeconds + 3600)))
    return refuse('approval_used', `approval ${id} was already used; each approval lets one request through`)
  announce(ctx, rt, r)
  ctx.state.approval = {
    id,
    status: 'granted',
    rule: r.rule,
    decidedBy: r.decidedBy,
    decidedAt: r.decidedAt,
    note: r.note,
  } satisfies ApprovalMeta
}

/** hold: wait for a decision here or anywhere the storage is shared, the client's patience, or holdSeconds */
async function hold(rt: ApprovalRuntime, ctx: MeshContext, r: ApprovalRecord): Promise<ApprovalRecord | undefined> {
  const end = Date.now() + rt.opts.holdSeconds * 1000
  let wake: () => void = () => {}
  const gone = new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
  try {
    while (Date.now() < end && !ctx.signal.aborted && !rt.closing) {
      await Promise.race([
        new Promise<void>((resolve) => {
          wake = resolve
          rt.waiters.set(r.id, resolve)
          setTimeout(resolve, Math.min(rt.opts.pollMs, Math.max(0, end - Date.now()))).unref()
        }),
        gone,
      ])
      const now = await rt.store.get(r.id)
      if (now && now.status !== 'pending') return now
    }
    return undefined
  } finally {
    wake()
    rt.waiters.delete(r.id)
  }
}

async function ask(
  rt: ApprovalRuntime,
  ctx: MeshContext,
  req: ApprovalRequest,
  rule: ResolvedRule,
  reason: string,
): Promise<void> {
  const now = Date.now()
  const r: ApprovalRecord = {
    v: 1,
    id: rt.store.newId(),
    status: 'pending',
    mode: rule.mode,
    rule: rule.name,
    reason,
    requestHash: requestHash(ctx),
    identity: {
      team: ctx.identity.team,
      user: ctx.identity.user,
      tool: ctx.identity.tool,
      ...(ctx.identity.keyId ? { keyId: ctx.identity.keyId } : {}),
    },
    protocol: ctx.protocol,
    model: req.model,
    vendor: req.vendor,
    estimatedUsd: req.estimatedUsd,
    promptTokens: req.promptTokens,
    requestId: ctx.id,
    createdAt: new Date(now).toISOString(),
    expiresAt: new Date(now + rt.opts.pendingSeconds * 1000).toISOString(),
  }
  await rt.store.put(r)
  ctx.headers['X-AgentMesh-Approval-Id'] = r.id
  ctx.mesh.emit('approval_requested', {
    id: ctx.id,
    approval: r.id,
    identity: ctx.identity,
    rule: rule.name,
    reason,
    model: req.model,
    estimatedUsd: req.estimatedUsd,
    mode: rule.mode,
  })
  const what = `this request (${req.model}, estimated up to $${req.estimatedUsd.toFixed(4)}) needs a person's approval under rule "${rule.name}" (${reason}). Approval id ${r.id}, open until ${r.expiresAt}.`
  if (rule.mode === 'ask') {
    ctx.state.approval = { id: r.id, status: 'required', rule: rule.name } satisfies ApprovalMeta
    ctx.response = refusal(403, 'approval_required', `approval required: ${what} ${howToApprove(r.id)}`, r.id)
    return
  }
  const decided = await hold(rt, ctx, r)
  if (!decided) {
    ctx.state.approval = { id: r.id, status: 'timeout', rule: rule.name } satisfies ApprovalMeta
    ctx.response = refusal(
      403,
      'approval_timeout',
      `approval required: ${what} Nobody decided within ${rt.opts.holdSeconds} s. ${howToApprove(r.id)}`,
      r.id,
    )
    return
  }
  announce(ctx, rt, decided)
  const meta = {
    id: r.id,
    rule: rule.name,
    decidedBy: decided.decidedBy,
    decidedAt: decided.decidedAt,
    note: decided.note,
  }
  if (decided.status === 'approved' && (await rt.store.take(decided, ctx.id, rt.opts.grantSeconds + 3600))) {
    ctx.state.approval = { ...meta, status: 'granted' } satisfies ApprovalMeta
    return
  }
  ctx.state.approval = { ...meta, status: 'denied' } satisfies ApprovalMeta
  ctx.response = refusal(
    403,
    'approval_denied',
    `approval ${r.id} was ${decided.status === 'denied' ? 'denied' : 'already used'} by ${decided.decidedBy} at ${decided.decidedAt}${decided.note ? `: ${decided.note}` : ''}`,
    r.id,
  )
}

/** the route hook over one runtime (the steps above are module functions: nothing is built per request) */
export function createGate(rt: ApprovalRuntime) {
  // not async: a request no rule fires on (nearly all) costs no promise
  return function route(ctx: MeshContext): Promise<void> | undefined {
    if (ctx.operation !== 'chat' || ctx.response) return
    // only reached by a dry run that would be a hit: a hit is never held
    if (ctx.cache.status === 'exact' || ctx.cache.status === 'semantic') return
    const header = ctx.request.headers.get(APPROVAL_HEADER)
    if (header !== null) return useApproval(rt, ctx, header.trim())
    if (!rt.opts.rules.length) return
    const req = describe(ctx)
    const fired = firstRule(rt.opts.rules, req, ctx.mesh.pricing, ctx.prompt.maxTokens ?? rt.opts.defaultMaxTokens)
    if (!fired) return
    if (isDryRun(ctx)) {
      const message = `rule "${fired.rule.name}" (${fired.reason}) would ${fired.rule.mode === 'hold' ? `hold it up to ${rt.opts.holdSeconds} s for` : 'refuse it until'} a person's approval`
      refuseOrRecord(ctx, 'approval', refusal(403, 'approval_required', message), 'hold')
      return undefined
    }
    return ask(rt, ctx, req, fired.rule, fired.reason)
  }
}
