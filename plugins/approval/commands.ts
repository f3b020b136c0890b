// CLI: `agentmesh approvals` (pending; --all), `agentmesh approve ID [--note]`, `agentmesh deny
// ID [--note]`. They write the storage the proxies read (a held request sees the decision within
// pollMs), so they refuse the in-memory driver.
import { userInfo } from 'node:os'
import type { Mesh, PluginCommand } from '../../core/types.ts'
import type { ResolvedApprovalOptions } from './options.ts'
import { isOpen } from './routes.ts'
import { APPROVAL_ID, ApprovalStore, cleanNote, deciderName, type ApprovalRecord } from './store.ts'

function sharedStorage(m: Mesh, print: (l: string) => void): boolean {
  if (m.config.storage.driver !== 'memory') return true
  print(
    "approvals: storage is the in-memory driver, so this command cannot reach the running proxy's approvals. Configure storage fs or redis, or use the admin API:",
  )
  print('  curl http://HOST:PORT/agentmesh/admin/approvals -H "Authorization: Bearer $AGENTMESH_ADMIN_TOKEN"')
  return false
}

const line = (r: ApprovalRecord, now: number) =>
  `${r.id}  ${isOpen(r, now) ? 'PENDING' : r.status}  team ${r.identity.team} user ${r.identity.user}  ${r.model}  up to $${r.estimatedUsd.toFixed(4)}  rule ${r.rule} (${r.reason})  asked ${r.createdAt}${r.decidedBy ? `  ${r.status} by ${r.decidedBy} at ${r.decidedAt}` : ''}${r.note ? `  "${r.note}"` : ''}`

function decideCommand(action: 'approve' | 'deny', opts: () => ResolvedApprovalOptions): PluginCommand {
  return {
    name: `${action} <id>`,
    description:
      action === 'approve'
        ? 'Approve a held request: approve ID [--note TEXT]'
        : 'Deny a held request: deny ID [--note TEXT]',
    options: [{ flags: '--note <text>', description: 'why (kept with the decision and in the audit log)' }],
    async run({ mesh, args, options: o, print }) {
      if (!sharedStorage(mesh, print)) return 1
      const id = args[0] ?? ''
      if (!APPROVAL_ID.test(id)) {
        print(`${action}: give the approval id (apr_ and 16 hex digits), as \`agentmesh approvals\` lists it`)
        return 1
      }
      const note = cleanNote(o.note === undefined ? undefined : String(o.note))
      if (note instanceof Error) {
        print(`${action}: ${note.message}`)
        return 1
      }
      const by = `cli:${deciderName(safeUser(), 'unknown')}`
      const r = await new ApprovalStore(mesh).decide(
        id,
        action === 'approve' ? 'approved' : 'denied',
        by,
        note,
        opts().grantSeconds,
      )
      if (typeof r === 'string') {
        print(`${action}: ${r}`)
        return 1
      }
      print(
        action === 'approve'
          ? `approved ${id} (usable once until ${r.grantExpiresAt}); a held request goes on within a second, else re-send it with X-AgentMesh-Approval: ${id}`
          : `denied ${id}`,
      )
      return 0
    },
  }
}

function safeUser(): string {
  try {
    return userInfo().username
  } catch {
    return 'unknown'
  }
}

export function approvalCommands(opts: () => ResolvedApprovalOptions): PluginCommand[] {
  return [
    {
      name: 'approvals',
      description: "Requests waiting for a person's approval (--all: decided and expired ones too)",
      options: [
        { flags: '--all', description: 'include decided and expired approvals' },
        { flags: '--json', description: 'print JSON' },
      ],
      async run({ mesh, options: o, print }) {
        if (!sharedStorage(mesh, print)) return 1
        const now = Date.now()
        const list = (await new ApprovalStore(mesh).list()).filter((r) => o.all || isOpen(r, now))
        if (o.json) print(JSON.stringify(list, null, 2))
        else if (!list.length) print(o.all ? 'no approvals' : 'no pending approvals')
        else for (const r of list) print(line(r, now))
        return 0
      },
    },
    decideCommand('approve', opts),
    decideCommand('deny', opts),
  ]
}
