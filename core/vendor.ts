// Shared shape of the HTTP vendors: where the key comes from, what is forwarded, how the body
// goes up unchanged unless a plugin changed it.
import { nodeResponseOf } from './client.ts'
import { UpstreamError, callUpstream } from './upstream.ts'
import type { Mesh, MeshContext, Plugin, ProtocolName, UpstreamResponse, VendorConfig } from './types.ts'

export interface HttpVendorOptions extends VendorConfig {
  /** extra model ids for /v1/models and routing */
  models?: string[]
}

export interface HttpVendorSpec {
  name: 'openai' | 'anthropic' | 'google'
  protocol: ProtocolName
  /** further protocols the vendor serves (OpenAI: the Responses API) */
  protocols?: ProtocolName[]
  /** forward requests the proxy does not govern (Responses retrieve, delete, cancel, input items) */
  forwardState?: boolean
  defaultBaseURL: string
  keyEnv: string
  handles: (model: string) => boolean
  models: string[]
  /** URL path and vendor-specific headers for one call */
  request: (ctx: MeshContext, key: string | undefined) => { path: string; headers: Record<string, string> }
  /** the embeddings endpoint; a function when it depends on the request (Gemini's model and method) */
  embeddingsPath?: string | ((ctx: MeshContext) => string)
  /** the vendor's token counting endpoint, used when a key is configured (the exact count) */
  countTokensPath?: string | ((ctx: MeshContext) => string)
}

/**
 * The client's own credential in the header it came in (an OAuth `Authorization: Bearer` token,
 * how Claude subscriptions sign in, must stay a Bearer token), or from Gemini's `?key=`.
 */
export function clientCredential(ctx: MeshContext): { header: string; value: string } | undefined {
  const h = ctx.request.headers
  const auth = h.get('authorization')
  if (auth && /^Bearer\s+/i.test(auth) && !isVirtualKey(auth.replace(/^Bearer\s+/i, ''))) return { header: 'authorization', value: auth }
  for (const header of ['x-api-key', 'x-goog-api-key']) {
    const v = h.get(header)
    if (v && !isVirtualKey(v)) return { header, value: v }
  }
  const q = ctx.request.search ? ctx.request.url.searchParams.get('key') : null
  return q && !isVirtualKey(q) ? { header: 'x-goog-api-key', value: q } : undefined
}

const isVirtualKey = (k: string) => k.trim().startsWith('am-')

// not forwarded: hop-by-hop and framing (the proxy's own connection to the vendor sets them),
// credentials (chosen below), browser context, and AgentMesh's own headers
const NOT_FORWARDED = new Set(['host', 'connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length', 'accept-encoding', 'expect', 'authorization', 'x-api-key', 'x-goog-api-key', 'cookie', 'origin', 'referer', 'forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-real-ip'])

/**
 * The client's request headers that go to the vendor unchanged: user-agent, x-stainless-*, betas,
 * versions, session ids and whatever a vendor adds next month. Read off Node's raw header list
 * when there is one (a flat array: no Headers iteration on the hot path).
 */
export function forwardedHeaders(ctx: MeshContext): Record<string, string> {
  const out: Record<string, string> = {}
  const raw = nodeResponseOf(ctx)?.req?.rawHeaders
  const add = (name: string, value: string) => {
    if (NOT_FORWARDED.has(name) || name.startsWith('x-agentmesh-') || name.startsWith('sec-')) return
    out[name] = out[name] === undefined ? value : `${out[name]}, ${value}`
  }
  if (raw) for (let i = 0; i + 1 < raw.length; i += 2) add(raw[i]!.toLowerCase(), raw[i + 1]!)
  else ctx.request.headers.forEach((value, name) => add(name, value))
  return out
}

/** The client's query string for the vendor, without a `key` the vendor must not see. */
export function forwardedQuery(ctx: MeshContext): string {
  const search = ctx.request.search
  if (!search || !/[?&]key=/.test(search)) return search
  const params = new URLSearchParams(search)
  params.delete('key')
  const rest = params.toString()
  return rest ? `?${rest}` : ''
}

export function upstreamBody(ctx: MeshContext): string {
  if (ctx.route.model !== ctx.prompt.model && ctx.protocol !== 'gemini' && ctx.request.body?.model !== ctx.route.model) {
    ctx.request.body.model = ctx.route.model
    ctx.request.dirty = true
  }
  return ctx.request.dirty ? JSON.stringify(ctx.request.body) : ctx.request.rawBody
}

const pathFor = (path: string | ((ctx: MeshContext) => string), ctx: MeshContext) => (typeof path === 'string' ? path : path(ctx))

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
      /** the client's headers, then the vendor's own (version, key) over them */
      const headersFor = (ctx: MeshContext): { key: string | undefined; headers: Record<string, string> } => {
        const headers = forwardedHeaders(ctx)
        if (configured) return { key: configured, headers }
        if (!forward) {
          // a shared deployment never spends a client's own key, and never calls without one
          throw new UpstreamError(`no API key is configured for ${spec.name}: set ${spec.keyEnv} or vendors.${spec.name}.apiKey (this deployment does not forward clients' keys)`, 503, 'vendor_key_missing')
        }
        const own = clientCredential(ctx)
        // a Bearer token (an OAuth one for a Claude subscription or Google) stays a Bearer
        // token; a plain key goes in the vendor's own key header
        if (own?.header === 'authorization') {
          headers.authorization = own.value
          return { key: undefined, headers }
        }
        return { key: own?.value, headers }
      }
      const call = (ctx: MeshContext, path: string, headers: Record<string, string>): Promise<UpstreamResponse> => {
        headers['content-type'] ??= 'application/json'
        return callUpstream(ctx, { url: base + path, headers, body: upstreamBody(ctx) })
      }
      const callWith = (ctx: MeshContext, path?: string) => {
        const { key, headers } = headersFor(ctx)
        const r = spec.request(ctx, key)
        Object.assign(headers, r.headers)
        return call(ctx, path ?? r.path, headers)
      }
      const forwardAs = (ctx: MeshContext, { method, path }: { method: string; path: string }) => {
        const { key, headers } = headersFor(ctx)
        Object.assign(headers, spec.request(ctx, key).headers)
        // a GET or DELETE has no body; a cancel's (usually none) goes as it came
        const body = ctx.request.rawBody || undefined
        if (body) headers['content-type'] ??= 'application/json'
        return callUpstream(ctx, { url: base + path, method, headers, body })
      }
      mesh.registerVendor({
        name: spec.name,
        protocol: spec.protocol,
        protocols: spec.protocols,
        handles: (m) => spec.handles(m) || models.includes(m),
        models: () => models,
        call: (ctx) => callWith(ctx),
        embeddings: spec.embeddingsPath ? (ctx) => callWith(ctx, pathFor(spec.embeddingsPath!, ctx) + forwardedQuery(ctx)) : undefined,
        countTokens: spec.countTokensPath && configured ? (ctx) => callWith(ctx, pathFor(spec.countTokensPath!, ctx) + forwardedQuery(ctx)) : undefined,
        forward: spec.forwardState ? (ctx, call) => forwardAs(ctx, call) : undefined,
      })
    },
  }
}


