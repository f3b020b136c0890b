// Building an entry from the request context, and keeping secrets out of it.
import { canonicalJson, sha256Hex } from './canonical.ts'
import { FORMAT_VERSION, type AuditEntry } from './chain.ts'
import type { MeshContext } from '../../core/types.ts'

const round2 = (n: number) => Math.round(n * 100) / 100
const num = (n: unknown) => (typeof n === 'number' && Number.isFinite(n) ? n : 0)

export function buildEntry(ctx: MeshContext, includeContent: boolean): AuditEntry {
  const usage = ctx.usage ?? ({} as MeshContext['usage'])
  const id = ctx.identity ?? ({} as MeshContext['identity'])
  const quota = ctx.meta?.quota?.decision
  const entry: AuditEntry = {
    v: FORMAT_VERSION,
    kind: 'request',
    ts: (ctx.time ?? new Date()).toISOString(),
    id: ctx.id,
    identity: { team: id.team, user: id.user, tool: id.tool, keyId: id.keyId },
    protocol: ctx.protocol,
    operation: ctx.operation,
    stream: !!ctx.prompt?.stream,
    vendor: ctx.route?.vendor ?? '',
    requestedModel: ctx.prompt?.model ?? '',
    model: ctx.answer?.model ?? ctx.route?.model ?? '',
    cache: { status: ctx.cache?.status ?? 'bypass', similarity: ctx.cache?.similarity, savedTokens: ctx.cache?.savedTokens },
    tokens: {
      input: num(usage.inputTokens),
      output: num(usage.outputTokens),
      cacheRead: num(usage.cacheReadTokens),
      cacheWrite: num(usage.cacheWriteTokens),
      estimated: usage.estimated || undefined,
    },
    costUsd: num(ctx.cost?.usd),
    savedUsd: num(ctx.cost?.savedUsd),
    costEstimated: ctx.cost?.estimated || undefined,
    quota: typeof quota === 'string' ? quota : undefined,
    route: ctx.route?.reason,
    latencyMs: round2(performance.now() - ctx.startedAt),
    status: ctx.status ?? ctx.error?.status ?? 0,
    error: ctx.error?.type,
    aborted: ctx.aborted || undefined,
    promptHash: sha256Hex(canonicalJson(ctx.prompt ?? null)),
    answerHash: ctx.answer ? sha256Hex(canonicalJson({ text: ctx.answer.text, toolCalls: ctx.answer.toolCalls })) : undefined,
  }
  if (includeContent) {
    entry.prompt = ctx.prompt
    if (ctx.answer) entry.answer = { text: ctx.answer.text, toolCalls: ctx.answer.toolCalls }
  }
  return entry
}

// Key shapes of the vendors (OpenAI sk-/sk-proj-, Anthropic sk-ant-, Google AIza), AgentMesh
// virtual keys (am-) and bearer tokens; exact values the request presented are removed as well,
// whatever their shape.
const KEY_PATTERNS = [
  /\bsk-[A-Za-z0-9_-]{16,}/g,
  /\bam-[A-Za-z0-9_-]{32,}/g,
  /\bAIza[0-9A-Za-z_-]{30,}/g,
  /\bBearer\s+[A-Za-z0-9._~+/-]{12,}=*/gi,
]
const SECRET_HEADERS = ['authorization', 'x-api-key', 'x-goog-api-key', 'api-key', 'proxy-authorization', 'x-agentmesh-key', 'x-agentmesh-admin-token']
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
    for (const name of ['ANTHROPIC_API_KEY', 'OPENAI_API_KEY', 'GEMINI_API_KEY', 'GOOGLE_API_KEY', 'AGENTMESH_ADMIN_TOKEN']) {
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
const KEY_HINT = /sk-|am-|AIza|bearer/i

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

/** Copy of value with secrets masked in every string (keys included). */
export function scrub<T>(value: T, secrets: string[]): T {
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return scrubString(v, secrets)
    if (Array.isArray(v)) return v.map(walk)
    if (v && typeof v === 'object' && !(v instanceof Date)) {
      const o: Record<string, unknown> = {}
      for (const [k, x] of Object.entries(v)) o[scrubString(k, secrets)] = walk(x)
      return o
    }
    return v
  }
  return walk(value) as T
}
