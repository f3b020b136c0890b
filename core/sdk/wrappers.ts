// wrapOpenAI / wrapAnthropic: the client the program already has, governed through its own
// `fetch` option (withOptions: a copy of the same type, no methods patched). Errors stay the SDK's:
// the mesh answers in the vendor's error shape and status, so a quota block is the SDK's
// RateLimitError (429) and a guard its PermissionDeniedError (403).
import type { CallScope, SdkIdentity } from './context.ts'
import type { MeshFetch, SdkMesh } from './mesh.ts'

export interface WrapOptions {
  mesh: SdkMesh
  /** who the calls are for, unless withIdentity() around a call says otherwise */
  identity?: SdkIdentity
  /** X-AgentMesh-Run-Id for every call (an agent run's budget, the breaker) */
  runId?: string
  /** extra request headers for every call */
  headers?: Record<string, string>
}

/** Any client with the SDKs' withOptions({ fetch }) (openai 5+, @anthropic-ai/sdk 0.50+). */
interface FetchOptionClient {
  withOptions(options: { fetch?: MeshFetch; maxRetries?: number }): unknown
}

function govern<C extends FetchOptionClient>(client: C, options: WrapOptions, name: string): C {
  if (!options?.mesh || typeof options.mesh.fetchFor !== 'function')
    throw new TypeError(`${name}: options.mesh must be the result of createMesh()`)
  if (typeof client?.withOptions !== 'function')
    throw new TypeError(`${name}: the client has no withOptions(); upgrade the SDK`)
  const defaults: CallScope = {
    ...(options.identity ? { identity: options.identity } : {}),
    ...(options.runId ? { runId: options.runId } : {}),
    ...(options.headers ? { headers: options.headers } : {}),
  }
  return client.withOptions({ fetch: options.mesh.fetchFor(defaults) }) as C
}

/** `wrapOpenAI(new OpenAI(), { mesh })`: the same OpenAI client type, every call through the mesh. */
export function wrapOpenAI<C extends FetchOptionClient>(client: C, options: WrapOptions): C {
  return govern(client, options, 'wrapOpenAI')
}

/** `wrapAnthropic(new Anthropic(), { mesh })`: the same Anthropic client type, every call through the mesh. */
export function wrapAnthropic<C extends FetchOptionClient>(client: C, options: WrapOptions): C {
  return govern(client, options, 'wrapAnthropic')
}

export interface Governance {
  requestId?: string
  cache?: string
  similarity?: number
  tokens?: number
  costUsd?: number
  quotaPct?: number
  quotaWarn?: string
  vendor?: string
  model?: string
  runId?: string
}

/**
 * The X-AgentMesh-* headers of one answer as numbers and names: pass the `response` of the SDKs'
 * raw-response APIs (`.withResponse()`, `.asResponse()`).
 */
export function governanceOf(response: { headers: Headers } | Headers): Governance {
  const h = response instanceof Headers ? response : response.headers
  const num = (name: string) => {
    const v = h.get(name)
    return v === null ? undefined : Number(v)
  }
  const str = (name: string) => h.get(name) ?? undefined
  const out: Governance = {
    requestId: str('x-agentmesh-request-id'),
    cache: str('x-agentmesh-cache'),
    similarity: num('x-agentmesh-similarity'),
    tokens: num('x-agentmesh-tokens'),
    costUsd: num('x-agentmesh-cost-usd'),
    quotaPct: num('x-agentmesh-quota-pct'),
    quotaWarn: str('x-agentmesh-quota-warn'),
    vendor: str('x-agentmesh-vendor'),
    model: str('x-agentmesh-model'),
    runId: str('x-agentmesh-run-id'),
  }
  for (const k of Object.keys(out) as Array<keyof Governance>) if (out[k] === undefined) delete out[k]
  return out
}
