// approval: rules (estimated cost, model, team/user/tool, prompt size, a predicate) hold a
// request for a person's decision, in the route phase (gate.ts). Decisions come from the CLI
// (`agentmesh approvals`, `approve ID`, `deny ID`) or the admin API, through storage, so pending
// approvals survive a restart and every instance on one redis sees them. Events
// approval_requested / _granted / _denied; ctx.state.approval tells the audit who decided and when.
import { LRUCache } from 'lru-cache'
import { definePlugin } from '../../core/plugin.ts'
import type { Plugin } from '../../core/types.ts'
import { approvalCommands } from './commands.ts'
import { createGate, type ApprovalRuntime } from './gate.ts'
import { resolveApprovalOptions, type ApprovalOptions } from './options.ts'
import { addApprovalRoutes } from './routes.ts'
import { ApprovalStore } from './store.ts'

export type { ApprovalMode, ApprovalOptions, ApprovalRequest, ApprovalRule } from './options.ts'
export type { ApprovalMeta } from './gate.ts'
export type { ApprovalRecord } from './store.ts'

/** `--approve-over USD` on dev and serve: config.approval.approveOverUsd, read without widening the core's config type here */
const cliApproveOver = (config: object): number | undefined =>
  (config as { approval?: { approveOverUsd?: number } }).approval?.approveOverUsd

export function approval(options: ApprovalOptions = {}): Plugin {
  // validated now, so a bad config fails at load naming the field; again in setup with the CLI flag
  // store is set in setup, before any hook or command runs
  const rt = {
    opts: resolveApprovalOptions(options),
    waiters: new Map(),
    announced: new LRUCache<string, true>({ max: 10_000 }),
  } as unknown as ApprovalRuntime
  const route = createGate(rt)
  return definePlugin({
    name: 'approval',
    options: { ...options, ...(options.adminToken ? { adminToken: '(set)' } : {}) } as Record<string, unknown>,
    setup(mesh) {
      rt.opts = resolveApprovalOptions(options, cliApproveOver(mesh.config))
      rt.store = new ApprovalStore(mesh)
      if (mesh.mode === 'serve') addApprovalRoutes(mesh, rt)
      return () => {
        // held requests end now (403 approval_timeout), not at holdSeconds
        rt.closing = true
        for (const wake of rt.waiters.values()) wake()
      }
    },
    hooks: { route },
    commands: approvalCommands(() => rt.opts),
  })
}

export default approval
