// Building an entry from the request context, and keeping secrets out of it.
import { canonicalSha256 } from '../../core/canonical.ts'
import { dryRunState } from '../../core/dry-run.ts'
import { FORMAT_VERSION, type AuditEntry } from './chain.ts'
import type { MeshContext } from '../../core/types.ts'

const round2 = (n: number) => Math.round(n * 100) / 100

// What the guards publish in ctx.state (typed where they declare it; plugins never import each
// other): the approval gate's decision, the breaker's run, compression's sizes. Only these fields are copied.

const str = (v: unknown, max = 200) => (typeof v === 'string' ? v.slice(0, max) : undefined)

function approvalOf(ctx: MeshContext): AuditEntry['approval'] {
  const a = ctx.state?.approval
  if (!a || typeof a.id !== 'string') return undefined
  return {
    decidedAt: str(a.decidedAt),
    decidedBy: str(a.decidedBy),
    id: a.id,
    note: str(a.note, 500),
    rule: str(a.rule),
    status: String(a.status),
  }
}

function runOf(ctx: MeshContext): AuditEntry['run'] {
  const r = ctx.state?.breaker
  if (!r || typeof r.id !== 'string') return undefined
  return { calls: num(r.calls), id: r.id, tripped: str(r.tripped) }
}

function dryRunOf(ctx: MeshContext): AuditEntry['dryRun'] {
  const d = ctx.meta && ctx.request?.headers ? dryRunState(ctx) : undefined
  if (!d) return undefined
  return { guards: d.verdicts.map((v) => `${v.guard}:${v.action}`), outcome: d.outcome }
}
function compressionOf(ctx: MeshContext): AuditEntry['compression'] {
  const c = ctx.state?.compression
  if (!c) return undefined
  return { after: num(c.after), before: num(c.before), strategies: c.strategies.join(',') }
}
const num = (n: unknown) => (typeof n === 'number' && Number.isFinite(n) ? n : 0)

/** kind:count pairs in a fixed order (`aws-access-key:1,jwt:2`), what the guards' headers say */
function countsOf(counts: Record<string, number | undefined> | undefined): string | undefined {
  if (!counts || typeof counts !== 'object') return undefined
  const parts = Object.keys(counts)
    .sort()
    .filter((k) => num(counts[k]) > 0)
    .map((k) => `${str(k, 40)}:${num(counts[k])}`)
  return parts.length ? parts.join(',') : undefined
}

function attemptsOf(ctx: MeshContext): AuditEntry['attempts'] {
  const a = ctx.attempts
  // one attempt is what every entry already says (vendor, model, status)
  if (!Array.isArray(a) || a.length < 2) return undefined
  return a.slice(0, 20).map((t) => ({
    outcome: str(t.outcome) ?? '',
    status: num(t.status),
    target: `${str(t.vendor, 80)}/${str(t.model, 128)}`,
  }))
}

/** `hashes`: computed ahead (canonicalSha256Async) for a prompt or an answer of megabytes */
export function buildEntry(
  ctx: MeshContext,
  includeContent: boolean,
  hashes?: { promptHash: string; answerHash: string | undefined },
): AuditEntry {
  const usage = ctx.usage ?? ({} as MeshContext['usage'])
  const id = ctx.identity ?? ({} as MeshContext['identity'])
  const quota = ctx.state?.quota?.decision
  // keys in canonical (sorted) order, so canonicalJson needs no sort per entry
  const entry: AuditEntry = {
    aborted: ctx.aborted || undefined,
    answerHash: hashes
      ? hashes.answerHash
      : ctx.answer
        ? canonicalSha256({ text: ctx.answer.text, toolCalls: ctx.answer.toolCalls }, ctx.answer.text.length)
        : undefined,
    approval: approvalOf(ctx),
    attempts: attemptsOf(ctx),
    cache: {
      savedTokens: ctx.cache?.savedTokens,
      similarity: ctx.cache?.similarity,
      status: ctx.cache?.status ?? 'bypass',
    },
    compression: compressionOf(ctx),
    costEstimated: ctx.cost?.estimated || undefined,
    costUsd: num(ctx.cost?.usd),
    dryRun: dryRunOf(ctx),
    error: ctx.error?.type,
    id: ctx.id,
    identity: { keyId: id.keyId, team: id.team, tool: id.tool, user: id.user },
    kind: 'request',
    latencyMs: round2(performance.now() - ctx.startedAt),
    masked: countsOf(ctx.state?.mask?.counts),
    model: ctx.answer?.model ?? ctx.route?.model ?? '',
    operation: ctx.operation,
    promptHash: hashes?.promptHash ?? canonicalSha256(ctx.prompt ?? null, ctx.request?.rawBody?.length),
    protocol: ctx.protocol,
    quota: typeof quota === 'string' ? quota : undefined,
    redacted: countsOf(ctx.state?.guard?.counts),
    requestedModel: ctx.prompt?.model ?? '',
    route: ctx.route?.reason,
    run: runOf(ctx),
    savedUsd: num(ctx.cost?.savedUsd),
    session: sessionOf(ctx.request?.headers),
    status: ctx.status ?? ctx.error?.status ?? 0,
    stream: !!ctx.prompt?.stream,
    tokens: {
      cacheRead: num(usage.cacheReadTokens),
      cacheWrite: num(usage.cacheWriteTokens),
      estimated: usage.estimated || undefined,
      input: num(usage.inputTokens),
      output: num(usage.outputTokens),
    },
    ts: (ctx.time ?? new Date()).toISOString(),
    v: FORMAT_VERSION,
    vendor: ctx.route?.vendor ?? '',
  }
  if (includeContent) {
    entry.prompt = ctx.prompt
    if (ctx.answer) entry.answer = { text: ctx.answer.text, toolCalls: ctx.answer.toolCalls }
  }
  return entry
}

// Agent CLIs name their session in a header, so one session's calls can be found together:
// Claude Code's x-claude-code-session-id, Codex's session_id. Client values: only a plain id is kept.
const SESSION_HEADERS = ['x-claude-code-session-id', 'session_id', 'x-session-id']
const SESSION_ID = /^[A-Za-z0-9._:-]{1,128}$/

function sessionOf(headers: Headers | undefined): string | undefined {
  for (const name of SESSION_HEADERS) {
    const v = headers?.get(name)
    if (v && SESSION_ID.test(v)) return v
  }
  return undefined
}

// Key shapes of the vendors (OpenAI sk-/sk-proj-, Anthropic sk-ant-, Google AIza), AgentMesh
// virtual keys (am-) and bearer tokens; exact values the request presented are removed as well,
// whatever their shape.
export const KEY_PATTERNS = [
  /\bsk-[A-Za-z0-9_-]{16,}/g,
  /\bam-[A-Za-z0-9_-]{32,}/g,
  /\bAIza[0-9A-Za-z_-]{30,}/g,
  /\bBearer\s+[A-Za-z0-9._~+/-]{12,}=*/gi,
]
const SECRET_HEADERS = [
  'authorization',
  'x-api-key',
  'x-goog-api-key',
  'api-key',
  'proxy-authorization',
  'x-agentmesh-key',
  'x-agentmesh-admin-token',
]
export const REDACTED = '[redacted]'

// configured vendor keys and key env vars, read once per mesh (process.env reads are slow)
const staticSecrets = new WeakMap<object, string[]>()

function secretValue(v: unknown): string | undefined {
  if (typeof v !== 'string') return
  const t = v.replace(/^(Bearer|Basic)\s+/i, '').trim()
  return t.length >= 8 ? t : undefined
}

/** Secret values this request carried, plus the configured vendor keys. */
export function secretsOf(ctx: MeshContext): string[] {
  const mesh = ctx.mesh as object | undefined
  let fixed = mesh ? staticSecrets.get(mesh) : undefined
  if (!fixed) {
    const set = new Set<string>()
    for (const v of Object.values(ctx.mesh?.config?.vendors ?? {})) {
      const t = secretValue(v?.apiKey)
      if (t) set.add(t)
    }
    for (const name of [
      'ANTHROPIC_API_KEY',
      'OPENAI_API_KEY',
      'GEMINI_API_KEY',
      'GOOGLE_API_KEY',
      'AGENTMESH_ADMIN_TOKEN',
    ]) {
      const t = secretValue(process.env[name])
      if (t) set.add(t)
    }
    fixed = [...set]
    if (mesh) staticSecrets.set(mesh, fixed)
  }
  let out: string[] | undefined
  const add = (v: unknown) => {
    const t = secretValue(v)
    if (t && !fixed!.includes(t) && !out?.includes(t)) (out ??= []).push(t)
  }
  const h = ctx.request?.headers
  if (h && typeof h.get === 'function') for (const name of SECRET_HEADERS) add(h.get(name))
  // the query string only matters when there is one (Gemini's ?key=)
  if (ctx.request?.search !== '') {
    const key = ctx.request?.url?.searchParams?.get('key')
    if (key) add(key)
  }
  return out ? [...fixed, ...out] : fixed
}

// one cheap test before the four patterns: most strings hold none of these prefixes
export const KEY_HINT = /sk-|am-|AIza|bearer/i

export function scrubString(s: string, secrets: string[]): string {
  let out = s
  for (const sec of secrets) if (out.includes(sec)) out = out.split(sec).join(REDACTED)
  if (!KEY_HINT.test(out)) return out
  for (const re of KEY_PATTERNS) {
    re.lastIndex = 0
    if (re.test(out)) {
      re.lastIndex = 0
      out = out.replace(re, REDACTED)
    }
  }
  return out
}

/**
 * value with secrets masked in every string (keys included). Objects and arrays are copied only
 * where something was masked: an entry without secrets comes back as the same object, which
 * keeps it a fast-property object in key order for sealing (and allocates nothing).
 */
export function scrub<T>(value: T, secrets: string[]): T {
  // nothing shorter than 8 characters can hold a secret (>= 8) or a key pattern (>= 16)
  const str = (s: string) => (s.length < 8 ? s : scrubString(s, secrets))
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return str(v)
    if (Array.isArray(v)) {
      let out: unknown[] | undefined
      for (let i = 0; i < v.length; i++) {
        const w = walk(v[i])
        if (w !== v[i]) (out ??= v.slice())[i] = w
      }
      return out ?? v
    }
    if (v && typeof v === 'object' && !(v instanceof Date)) {
      const src = v as Record<string, unknown>
      let changed = false
      const keys: string[] = []
      const vals: unknown[] = []
      for (const k in src) {
        if (!Object.prototype.hasOwnProperty.call(src, k)) continue
        const k2 = str(k)
        const w = walk(src[k])
        if (k2 !== k || w !== src[k]) changed = true
        keys.push(k2)
        vals.push(w)
      }
      if (!changed) return v
      // a copy in the same key order
      const o: Record<string, unknown> = {}
      for (let i = 0; i < keys.length; i++) o[keys[i]!] = vals[i]
      return o
    }
    return v
  }
  return walk(value) as T
}
