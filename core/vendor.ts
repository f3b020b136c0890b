// Shared shape of the HTTP vendors: where the key comes from, what is forwarded, how the body
// goes up unchanged unless a plugin changed it.
import { UpstreamError, callUpstream } from './upstream.ts'
import type { Mesh, MeshContext, Plugin, ProtocolName, UpstreamResponse, VendorConfig } from './types.ts'

export interface HttpVendorOptions extends VendorConfig {
  /** extra model ids for /v1/models and routing */
  models?: string[]
}

export interface HttpVendorSpec {
  name: 'openai' | 'anthropic' | 'google'
  protocol: ProtocolName
  defaultBaseURL: string
  keyEnv: string
  handles: (model: string) => boolean
  models: string[]
  /** URL path and vendor-specific headers for one call */
  request: (ctx: MeshContext, key: string | undefined) => { path: string; headers: Record<string, string> }
  embeddingsPath?: string
}

/** The client's own key, if it sent one that is not an AgentMesh virtual key (those never go upstream). */
export function clientKey(ctx: MeshContext): string | undefined {
  const h = ctx.request.headers
  const auth = h.get('authorization')
  const key = (auth?.toLowerCase().startsWith('bearer ') ? auth.slice(7).trim() : undefined) ?? h.get('x-api-key') ?? h.get('x-goog-api-key') ?? (ctx.request.search ? ctx.request.url.searchParams.get('key') : null) ?? undefined
  return key && !key.startsWith('am-') ? key : undefined
}

export function upstreamBody(ctx: MeshContext): string {
  if (ctx.route.model !== ctx.prompt.model && ctx.protocol !== 'gemini' && ctx.request.body?.model !== ctx.route.model) {
    ctx.request.body.model = ctx.route.model
    ctx.request.dirty = true
  }
  return ctx.request.dirty ? JSON.stringify(ctx.request.body) : ctx.request.rawBody
}

export function defineHttpVendor(spec: HttpVendorSpec, options: HttpVendorOptions = {}): Plugin {
  if (options.baseURL !== undefined && !/^https?:\/\//.test(options.baseURL)) throw new Error(`${spec.name}: baseURL must be an http(s) URL, got "${options.baseURL}"`)
  return {
    name: `vendor:${spec.name}`,
    enforce: 'post',
    options: { baseURL: options.baseURL, apiKey: options.apiKey, models: options.models },
    setup(mesh: Mesh) {
      const conf = mesh.config.vendors[spec.name] ?? {}
      const base = (options.baseURL ?? conf.baseURL ?? process.env[`AGENTMESH_${spec.name.toUpperCase()}_BASE_URL`] ?? spec.defaultBaseURL).replace(/\/+$/, '').replace(/\/v1(beta)?$/, '')
      const configured = options.apiKey ?? conf.apiKey ?? process.env[spec.keyEnv]
      const models = [...spec.models, ...(options.models ?? [])]
      const forward = mesh.config.forwardClientKeys
      const keyFor = (ctx: MeshContext): string | undefined => {
        if (configured) return configured
        if (forward) return clientKey(ctx)
        // a shared deployment never spends a client's own key, and never calls without one
        throw new UpstreamError(`no API key is configured for ${spec.name}: set ${spec.keyEnv} or vendors.${spec.name}.apiKey (this deployment does not forward clients' keys)`, 503, 'vendor_key_missing')
      }
      const call = (ctx: MeshContext, path: string, headers: Record<string, string>): Promise<UpstreamResponse> => {
        // spec.request builds a fresh object per call: add to it rather than copy it
        headers['content-type'] ??= 'application/json'
        return callUpstream(ctx, { url: base + path, headers, body: upstreamBody(ctx) })
      }
      mesh.registerVendor({
        name: spec.name,
        protocol: spec.protocol,
        handles: (m) => spec.handles(m) || models.includes(m),
        models: () => models,
        call: (ctx) => {
          const r = spec.request(ctx, keyFor(ctx))
          return call(ctx, r.path, r.headers)
        },
        embeddings: spec.embeddingsPath
          ? (ctx) => {
              const r = spec.request(ctx, keyFor(ctx))
              return call(ctx, spec.embeddingsPath!, r.headers)
            }
          : undefined,
      })
    },
  }
}

/** Copy the named request headers that the vendor needs (versions, betas, org). */
export function passHeaders(ctx: MeshContext, names: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const n of names) {
    const v = ctx.request.headers.get(n)
    if (v !== null) out[n] = v
  }
  return out
}
