// Approvals in mesh.storage, so a pending one survives a restart (fs, redis) and every instance on
// one redis sees it; `approval:<id>`. Using a granted approval is taken once through an atomic
// counter, so two instances cannot both spend it.
import { randomBytes } from 'node:crypto'
import type { Identity, Mesh } from '../../core/types.ts'
import type { ApprovalMode } from './options.ts'

export const APPROVAL_ID = /^apr_[0-9a-f]{16}$/

export interface ApprovalRecord {
  v: 1
  id: string
  status: 'pending' | 'approved' | 'denied' | 'used'
  mode: ApprovalMode
  rule: string
  reason: string
  /** hash of who asked and the canonical request: a granted id is good for this request only */
  requestHash: string
  identity: Pick<Identity, 'team' | 'user' | 'tool' | 'keyId'>
  protocol: string
  model: string
  vendor: string
  estimatedUsd: number
  promptTokens: number
  /** the request that asked */
  requestId: string
  createdAt: string
  /** a pending approval can be decided until then */
  expiresAt: string
  decidedBy?: string
  decidedAt?: string
  note?: string
  /** an approved id can be used until then */
  grantExpiresAt?: string
  usedAt?: string
  usedBy?: string
}

const key = (id: string) => `approval:${id}`

export class ApprovalStore {
  constructor(private mesh: Mesh) {}

  newId(): string {
    return `apr_${randomBytes(8).toString('hex')}`
  }

  async get(id: string): Promise<ApprovalRecord | null> {
    if (!APPROVAL_ID.test(id)) return null
    const r = (await this.mesh.storage.getItem(key(id))) as ApprovalRecord | null
    return r && r.v === 1 && r.id === id ? r : null
  }

  async put(r: ApprovalRecord): Promise<void> {
    await this.mesh.storage.setItem(key(r.id), r)
  }

  async list(): Promise<ApprovalRecord[]> {
    const keys = await this.mesh.storage.getKeys('approval')
    const out: ApprovalRecord[] = []
    for (const k of keys) {
      const id = k.split(':').pop() ?? ''
      const r = await this.get(id)
      if (r) out.push(r)
    }
    return out.sort((a, b) => b.createdAt.localeCompare(a.createdAt))
  }

  /** approve or deny a pending approval; the record as decided, or why not */
  async decide(
    id: string,
    decision: 'approved' | 'denied',
    by: string,
    note: string | undefined,
    grantSeconds: number,
    now = Date.now(),
  ): Promise<ApprovalRecord | string> {
    const r = await this.get(id)
    if (!r) return `no approval ${id.slice(0, 40)}`
    if (r.status !== 'pending')
      return `approval ${id} is already ${r.status}${r.decidedBy ? ` (by ${r.decidedBy} at ${r.decidedAt})` : ''}`
    if (Date.parse(r.expiresAt) <= now) return `approval ${id} expired at ${r.expiresAt} without a decision`
    const decided: ApprovalRecord = {
      ...r,
      status: decision,
      decidedBy: by,
      decidedAt: new Date(now).toISOString(),
      ...(note ? { note } : {}),
    }
    if (decision === 'approved') decided.grantExpiresAt = new Date(now + grantSeconds * 1000).toISOString()
    await this.put(decided)
    return decided
  }

  /** take a granted approval for one request: true for exactly one caller across instances */
  async take(r: ApprovalRecord, requestId: string, ttlSeconds: number): Promise<boolean> {
    const taken = await this.mesh.counters.reserve([`approval:used:${r.id}`], 1, [1], [ttlSeconds])
    if (!taken.ok) return false
    await this.put({ ...r, status: 'used', usedAt: new Date().toISOString(), usedBy: requestId })
    return true
  }
}

/** who decided, as the CLI and the admin API name them: plain text, no line breaks, bounded */
export function deciderName(v: unknown, fallback: string): string {
  return typeof v === 'string' && /^[\w.@:-]{1,64}$/.test(v) ? v : fallback
}

/** a decision's note: at most 500 characters, no control characters (it reaches logs and the audit) */
export function cleanNote(v: unknown): string | undefined | Error {
  if (v === undefined || v === null || v === '') return undefined
  if (typeof v !== 'string' || v.length > 500 || /[\u0000-\u001f\u007f\u2028\u2029]/.test(v))
    return new Error('note must be text of at most 500 characters on one line')
  return v
}
