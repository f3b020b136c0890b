// The Vercel AI SDK: `wrapLanguageModel({ model: openai('gpt-4o'), middleware: agentMeshMiddleware(mesh) })`.
// A middleware sees the call only as the SDK's call options, not the vendor's request, so it runs
// the model's own request through mesh.fetch: the official providers (built on
// @ai-sdk/provider-utils) read `config.fetch` at call time, and the middleware calls a copy of the
// model whose config has the mesh's fetch (the model itself is not changed). A provider created
// with `fetch: mesh.fetch` is used as it is. Types are structural: this file imports nothing from
// `ai`, so the optional peer is never loaded by AgentMesh itself.
import { withScope, type CallScope, type SdkIdentity } from './context.ts'
import { isMeshFetch, type SdkMesh } from './mesh.ts'
import { governanceOf, type Governance } from './wrappers.ts'

export interface MiddlewareOptions {
  identity?: SdkIdentity
  runId?: string
  headers?: Record<string, string>
}

/** What the middleware needs of a model and a call (LanguageModelV2-V4 all fit). */
interface Model {
  doGenerate(params: unknown): PromiseLike<GenerateResult>
  doStream(params: unknown): PromiseLike<StreamResult>
  config?: { fetch?: unknown }
}
interface CallParams {
  providerOptions?: Record<string, Record<string, unknown> | undefined>
}
interface GenerateResult {
  response?: { headers?: Record<string, string> }
  providerMetadata?: Record<string, Record<string, unknown>>
}
interface StreamResult {
  response?: { headers?: Record<string, string> }
}

/** `providerOptions: { agentmesh: { team, user, tool, runId } }` names one call's identity and run. */
function callScope(options: MiddlewareOptions, params: CallParams): CallScope {
  const per: Record<string, unknown> = params.providerOptions?.agentmesh ?? {}
  const identity = { ...options.identity, ...pick(per, ['team', 'user', 'tool']) }
  const runId = typeof per.runId === 'string' ? per.runId : options.runId
  return { identity, ...(runId ? { runId } : {}), ...(options.headers ? { headers: options.headers } : {}) }
}

function pick(o: Record<string, unknown>, keys: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const k of keys) if (typeof o[k] === 'string') out[k] = o[k] as string
  return out
}

/** the model as it is when its provider already fetches through a mesh, else a copy that does */
function governed(model: Model, mesh: SdkMesh): Model {
  const config = model.config
  if (config && isMeshFetch(config.fetch)) return model
  if (!config || typeof config !== 'object') {
    throw new TypeError(
      'agentMeshMiddleware: this model has no provider config to route through the mesh; create its provider with `fetch: mesh.fetch` instead',
    )
  }
  return Object.create(model, { config: { value: { ...config, fetch: mesh.fetch } } }) as Model
}

export const governanceOfHeaders = (headers: Record<string, string> | undefined): Governance =>
  governanceOf(new Headers(headers ?? {}))

/**
 * The shape wrapLanguageModel takes. Its arguments and results are the AI SDK's own types, typed
 * `any` here so that this file compiles and loads without the optional `ai` package.
 */
export interface AgentMeshMiddleware {
  readonly specificationVersion: 'v4'
  readonly middlewareVersion: 'v2'
  wrapGenerate(options: any): Promise<any>
  wrapStream(options: any): Promise<any>
}

/** Middleware for wrapLanguageModel: generate and stream go through the mesh; results carry providerMetadata.agentmesh. */
export function agentMeshMiddleware(mesh: SdkMesh, options: MiddlewareOptions = {}): AgentMeshMiddleware {
  if (!mesh || typeof mesh.fetch !== 'function')
    throw new TypeError('agentMeshMiddleware: pass the result of createMesh()')
  return {
    specificationVersion: 'v4' as const,
    middlewareVersion: 'v2' as const,
    async wrapGenerate({ params, model }: { params: CallParams; model: Model }) {
      const result = await withScope(callScope(options, params), () => governed(model, mesh).doGenerate(params))
      const agentmesh = governanceOfHeaders(result.response?.headers) as Record<string, unknown>
      return { ...result, providerMetadata: { ...result.providerMetadata, agentmesh } }
    },
    async wrapStream({ params, model }: { params: CallParams; model: Model }) {
      // the headers (and so the governance) arrive before the first chunk: result.response.headers
      return withScope(callScope(options, params), () => governed(model, mesh).doStream(params))
    },
  }
}
