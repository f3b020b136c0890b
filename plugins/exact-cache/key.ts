// The exact-cache key: SHA-256 over everything that can change the answer, and nothing else.
// The system we replace keyed on the last user message only and served one tenant's answer to
// another; here every turn, the system prompt, tools, parameters and the scope are in the key.
import { canonicalSha256, canonicalSha256Async } from '../../core/canonical.ts'
import type { MeshContext } from '../../core/types.ts'

export type CacheScope = 'global' | 'team' | 'user'

export const NAMESPACE_HEADER = 'x-agentmesh-cache-namespace'

// request fields that never change the answer: streaming is a transport detail (a streamed
// answer serves a non-streaming request and the other way round), the rest is bookkeeping
const NOT_ANSWER_PARAMS = new Set(['stream', 'stream_options', 'metadata', 'user', 'store'])

export function scopeOf(ctx: Pick<MeshContext, 'identity'>, scope: CacheScope): string {
  if (scope === 'global') return 'global'
  if (scope === 'team') return `team:${ctx.identity.team}`
  return `team:${ctx.identity.team}\u0000user:${ctx.identity.user}`
}

export function namespaceOf(ctx: Pick<MeshContext, 'request'>): string {
  return ctx.request.headers.get(NAMESPACE_HEADER)?.trim() ?? ''
}

/** The canonical request the key is the hash of (exported for tests and debugging). */
export function canonicalRequest(ctx: MeshContext, scope: CacheScope): Record<string, unknown> {
  const p = ctx.prompt
  const view = ctx.normalised ?? { system: p.system, messages: p.messages }
  const params: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(p.params ?? {})) if (!NOT_ANSWER_PARAMS.has(k)) params[k] = v
  return {
    v: 1,
    protocol: ctx.protocol,
    model: p.model,
    system: view.system ?? '',
    messages: view.messages.map((m) => [m.role, m.text, m.extra ?? null]),
    tools: withoutCacheControl(p.tools) ?? null,
    toolChoice: p.toolChoice ?? null,
    responseFormat: p.responseFormat ?? null,
    params,
    maxTokens: p.maxTokens ?? null,
    scope: scopeOf(ctx, scope),
    namespace: namespaceOf(ctx),
  }
}

/** cache_control is a billing hint for the vendor's prompt cache, not part of the question */
function withoutCacheControl(tools: unknown): unknown {
  if (!Array.isArray(tools)) return tools
  return tools.map((t) => {
    if (!t || typeof t !== 'object' || !('cache_control' in t)) return t
    const { cache_control: _cc, ...rest } = t as Record<string, unknown>
    return rest
  })
}

export function cacheKey(ctx: MeshContext, scope: CacheScope): string {
  return canonicalSha256(canonicalRequest(ctx, scope), ctx.request?.rawBody?.length)
}

/**
 * cacheKey for a request of megabytes: hashed a slice per turn of the event loop, the first after
 * a turn of its own (building the canonical request of 70,000 turns is itself 10-25 ms)
 */
export async function cacheKeyAsync(ctx: MeshContext, scope: CacheScope): Promise<string> {
  const request = canonicalRequest(ctx, scope)
  await new Promise((resolve) => setImmediate(resolve))
  return canonicalSha256Async(request, ctx.request?.rawBody?.length)
}
