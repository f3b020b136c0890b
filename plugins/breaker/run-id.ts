// Which agent run a request belongs to: X-AgentMesh-Run-Id when the client names one; else the
// session id the agent sends anyway (Claude Code's x-claude-code-session-id, Codex's session_id,
// an SDK's metadata); else a hash of the conversation's first system and user messages, which an
// agent resends with every turn of its growing transcript.
import { hash } from 'node:crypto'
import type { MeshContext } from '../../core/types.ts'

export const RUN_HEADER = 'x-agentmesh-run-id'
export const RUN_ID = /^[A-Za-z0-9._:-]{1,128}$/
const SESSION_HEADERS = ['x-claude-code-session-id', 'session_id', 'x-session-id']
// an SDK metadata value is hashed when it is not a plain id (Claude Code's user_id is long)
const METADATA_KEYS = ['run_id', 'session_id', 'conversation_id', 'user_id']
// enough of the opening to tell conversations apart; hashing more would cost per call
const OPENING_CHARS = 16 * 1024
// an agent resends its opening with every turn: the ids of short openings are kept, not rehashed
// (at most MAX_OPENINGS of them, about 2 MB; emptied when full)
const openings = new Map<string, string>()
const REMEMBERED_CHARS = 2048
const MAX_OPENINGS = 1000

export interface RunRef {
  id: string
  /** where the id came from, for `agentmesh runs` */
  source: 'header' | 'session' | 'metadata' | 'opening'
}

// crypto.hash (Node >= 20.12): a one-shot digest, no Hash object per request
const short = (s: string) => hash('sha256', s, 'hex').slice(0, 24)

/** a client value as a run id: kept when it is a plain id, else hashed (it still names one run) */
const asId = (v: string, prefix: string) => (RUN_ID.test(v) ? v : `${prefix}-${short(v)}`)

function metadataId(body: any): string | undefined {
  const md = body?.metadata
  if (!md || typeof md !== 'object') return undefined
  for (const k of METADATA_KEYS) {
    const v = md[k]
    if (typeof v === 'string' && v) return asId(v.slice(0, 1024), 'md')
  }
  return undefined
}

/** The run of a request, or an error message when X-AgentMesh-Run-Id is malformed. */
export function runOf(ctx: MeshContext): RunRef | { error: string } {
  const h = ctx.request.headers
  const named = h.get(RUN_HEADER)
  if (named !== null) {
    if (!RUN_ID.test(named)) return { error: `${RUN_HEADER} must be 1 to 128 letters, digits or . _ : - characters` }
    return { id: named, source: 'header' }
  }
  for (const name of SESSION_HEADERS) {
    const v = h.get(name)
    if (v) return { id: asId(v.slice(0, 1024), 'session'), source: 'session' }
  }
  const md = metadataId(ctx.request.body)
  if (md) return { id: md, source: 'metadata' }
  return { id: openingId(ctx), source: 'opening' }
}

/** the first system and user messages, with who asked: two users' identical openings are two runs */
function openingId(ctx: MeshContext): string {
  const p = ctx.prompt
  // a loop, not find(): no closure per call
  let text = ''
  for (const m of p.messages)
    if (m.role === 'user') {
      text = m.text ?? ''
      break
    }
  // one string, one digest: the same bytes (and id) as hashing the parts one after the other
  const opening = `${ctx.identity.team}\u0000${ctx.identity.user}\u0000${p.system.length > OPENING_CHARS ? p.system.slice(0, OPENING_CHARS) : p.system}\u0000${text.length > OPENING_CHARS ? text.slice(0, OPENING_CHARS) : text}`
  if (opening.length > REMEMBERED_CHARS) return `run-${short(opening)}`
  let id = openings.get(opening)
  if (id === undefined) {
    id = `run-${short(opening)}`
    if (openings.size >= MAX_OPENINGS) openings.clear()
    openings.set(opening, id)
  }
  return id
}
