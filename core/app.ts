// createAgentMesh: config -> plugins in order -> hook bus -> h3 app. Small on purpose: protocol
// adapters live in core/protocols, the request lifecycle in core/pipeline.ts, features in plugins/.
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, Server } from 'node:http'
import { resolve } from 'node:path'
import { H3, type H3Event } from 'h3'
import { createHooks } from 'hookable'
import { FastResponse, serve } from 'srvx'
import { resolveConfig } from './config.ts'
import { checkAdmin } from './admin.ts'
import { isStorageUnavailable } from './errors.ts'
import { createEventBus, eventStreamResponse, teamFilter } from './events.ts'
import { createRequestGuard, isJsonContentType, originAllowed } from './guard.ts'
import { headerSafe } from './headers.ts'
import { guardNodeServer } from './server-guard.ts'
import { defaultIdentityResolver } from './identity.ts'
import { createLogger } from './log.ts'
import { PluginError, defaultRoute, forwardResponsesState, handleLlmRequest, parseBody, resolveCallerIdentity, vendorTokenCount, isThenable, runAll, runHooks } from './pipeline.ts'
import { sortPlugins } from './plugin.ts'
import { createPricing } from './pricing.ts'
import { protocolOfPath, protocols } from './protocols/index.ts'
import { registerModelRoutes } from './routes-models.ts'
import { createMeshStorage } from './storage.ts'
import { createTokenCounter } from './tokens.ts'
import type { HealthCheck, HookName, IdentityResolver, Logger, Mesh, MeshConfig, MeshEvent, MeshContext, Operation, Plugin, PluginHooks, ProtocolName, ResolvedMeshConfig } from './types.ts'

export const VERSION = '0.1.0'
const HOOKS: HookName[] = ['beforeRequest', 'cacheLookup', 'route', 'afterResponse']

/** What the pipeline needs from the app; not part of the public API. */
export interface MeshInternals {
  mesh: Mesh
  runPhase(name: HookName, ctx: MeshContext): Promise<void> | undefined
  resolveIdentity: IdentityResolver
  corsHeaders(origin: string | null): Record<string, string>
  /** false when nobody listens to events: skip building their payloads on the hot path */
  hasListeners(): boolean
  /** keep shutdown waiting for background work (afterResponse of streams) */
  track(p: Promise<unknown>): void
}

export interface AgentMesh {
  mesh: Mesh
  app: H3
  plugins: Plugin[]
  /** run one request through the proxy without a socket */
  fetch(request: Request): Promise<Response>
  listen(opts?: { port?: number; host?: string }): Promise<{ url: string; port: number; close(): Promise<void> }>
  /** flush plugins (audit, queues) and release storage; in-flight streams are awaited */
  close(): Promise<void>
}

export interface CreateOptions {
  mode?: 'serve' | 'command'
  logger?: Logger
}

export async function createAgentMesh(input: MeshConfig | ResolvedMeshConfig = {}, options: CreateOptions = {}): Promise<AgentMesh> {
  const config = 'sources' in input ? (input as ResolvedMeshConfig) : await resolveConfig(input)
  const log = options.logger ?? createLogger(config.log.level)
  const dataDir = resolve(config.dataDir)
  // creates the data dir 0700 for fs storage; logs each storage outage once
  const store = createMeshStorage(config.storage, dataDir, log)
  const bus = createEventBus((err) => log.warn(`event listener failed: ${(err as Error)?.message}`))
  const hooks = createHooks<any>()
  // h3 answers what reaches it unhandled (a malformed URL such as `GET /%`, a throw in a route)
  // in its own shape; clients get every error in their protocol instead
  const app = new H3({
    onError: (error, event) => {
      const status = error.status >= 400 && error.status < 500 ? error.status : 500
      if (status === 500) log.error(`unhandled error on ${event.req.method} ${event.url.pathname}: ${error.message}`)
      const message = status === 400 ? 'malformed request URL' : status === 500 ? 'internal error in AgentMesh; see the proxy log' : error.message
      return protocolError(event, protocolOfPath(event.url.pathname), status, status === 500 ? 'internal_error' : 'invalid_request_error', message)
    },
  })
  const closers: Array<() => void | Promise<void>> = []
  const pending = new Set<Promise<unknown>>()
  let identityResolver: IdentityResolver = defaultIdentityResolver
  const healthChecks = new Map<string, () => HealthCheck>()

  const mesh: Mesh = {
    mode: options.mode ?? 'serve',
    config,
    tokens: createTokenCounter(),
    pricing: createPricing(config.pricing, log),
    storage: store.storage,
    counters: store.counters,
    ...(store.changes ? { changes: store.changes } : {}),
    log,
    vendors: new Map(),
    dataDir,
    registerVendor(vendor) {
      mesh.vendors.set(vendor.name, vendor)
    },
    setIdentityResolver(resolver) {
      identityResolver = resolver
    },
    emit: bus.emit,
    on: bus.on,
    addRoute(method, path, handler) {
      app.on(method.toUpperCase() as 'GET', path, async (event) => {
        let res: Response
        try {
          res = await handler(event.req as Request, (event.context.params ?? {}) as Record<string, string>)
        } catch (err) {
          if (!isStorageUnavailable(err)) throw err
          return jsonError(503, 'storage_unavailable', (err as Error).message, event.req.headers.get('origin'))
        }
        // plugins' routes answer with the request id too, like every other response
        if (!res.headers.has('x-agentmesh-request-id')) {
          try {
            res.headers.set('x-agentmesh-request-id', randomUUID())
          } catch {
            // immutable headers (a fetched Response): answered as it is
          }
        }
        return res
      })
    },
    onClose(fn) {
      closers.push(fn)
    },
    addHealthCheck(name, check) {
      healthChecks.set(name, check)
    },
  }
  mesh.addHealthCheck('storage', store.health)

  const plugins = sortPlugins(config.plugins)
  const hookCount: Record<string, number> = {}
  const configHooks: Plugin = { name: 'config.hooks', enforce: 'post', hooks: config.hooks }
  for (const plugin of [...plugins, configHooks]) {
    for (const name of HOOKS) {
      const fn = plugin.hooks?.[name as keyof PluginHooks]
      if (!fn) continue
      hookCount[name] = (hookCount[name] ?? 0) + 1
      // sync hooks stay sync: no promise per plugin per phase unless the plugin awaits
      const fail = (err: unknown) => {
        throw new PluginError(plugin.name, name, err)
      }
      hooks.hook(name, (ctx: MeshContext) => {
        let result: unknown
        try {
          result = fn(ctx)
        } catch (err) {
          fail(err)
        }
        return isThenable(result) ? Promise.resolve(result).catch(fail) : result
      })
    }
  }
  for (const plugin of plugins) {
    const dispose = await plugin.setup?.(mesh)
    if (typeof dispose === 'function') closers.push(dispose)
  }

  const origins = config.cors.origins
  const internals: MeshInternals = {
    mesh,
    // a phase nobody hooks costs nothing (no promise chain per request)
    runPhase: (name, ctx) =>
      !hookCount[name]
        ? undefined
        : (hooks.callHookWith(
            (fns: Array<(ctx: MeshContext) => unknown>, args: any[]) =>
              // every afterResponse plugin runs even if one fails (audit must not lose an entry to quota)
              name === 'afterResponse' ? runAll(fns, args[0], log) : runHooks(fns, args[0]),
            name,
            [ctx],
          ) as Promise<void> | undefined),
    resolveIdentity: (ctx) => identityResolver(ctx),
    corsHeaders(origin): Record<string, string> {
      if (!origin) return {}
      if (origins === '*') return { 'access-control-allow-origin': '*', 'access-control-expose-headers': '*' }
      return originAllowed(origins, origin) ? { 'access-control-allow-origin': origin, vary: 'origin', 'access-control-expose-headers': '*' } : {}
    },
    hasListeners: () => bus.size > 0,
    track(p) {
      pending.add(p)
      const done = () => pending.delete(p)
      p.then(done, done)
    },
  }

  // governance headers for answers given before a request context exists (404, 413): every
  // response carries them, and nothing was spent
  const bareHeaders = (origin: string | null): Record<string, string> => ({
    'x-agentmesh-request-id': randomUUID(),
    'x-agentmesh-vendor': 'none',
    'x-agentmesh-model': '',
    'x-agentmesh-tokens': '0',
    'x-agentmesh-cost-usd': '0.000000',
    'x-agentmesh-cache': 'bypass',
    'x-agentmesh-latency-ms': '0.0',
    ...internals.corsHeaders(origin),
  })

  const jsonError = (status: number, type: string, message: string, origin: string | null) =>
    new FastResponse(JSON.stringify({ error: { type, message } }), { status, headers: { 'content-type': 'application/json', ...bareHeaders(origin) } }) as unknown as Response

  const llm = (protocol: ProtocolName, operation: Operation) => async (event: H3Event) => {
    let pathModel: string | undefined
    let pathStream: boolean | undefined
    // per call: a Gemini path names its operation (the closure's value is shared by all calls)
    let op = operation
    if (protocol === 'gemini') {
      let tail: string
      try {
        tail = decodeURIComponent(event.context.params?.modelAction ?? '')
      } catch {
        return protocolError(event, 'gemini', 400, 'invalid_request_error', 'the model in the path is not valid percent-encoding')
      }
      const i = tail.lastIndexOf(':')
      const action = i < 0 ? '' : tail.slice(i + 1)
      pathModel = i < 0 ? tail : tail.slice(0, i)
      if (action === 'countTokens') return countTokens(event, 'gemini', pathModel)
      if (action === 'embedContent' || action === 'batchEmbedContents') op = 'embeddings'
      else if (action !== 'generateContent' && action !== 'streamGenerateContent') {
        return protocolError(event, 'gemini', 404, 'not_found_error', `unknown Gemini method "${action || tail}"; use :generateContent, :streamGenerateContent, :countTokens, :embedContent or :batchEmbedContents`)
      }
      pathStream = action === 'streamGenerateContent'
    }
    if (!isJsonContentType(event.req.headers.get('content-type'))) return protocolError(event, protocol, 415, 'invalid_request_error', NOT_JSON)
    const body = await readBody(event, config.limits.bodyBytes)
    if (typeof body !== 'string') return protocolError(event, protocol, body.status, body.type, body.message)
    const handled = handleLlmRequest(internals, { protocol, operation: op, request: event.req as Request, rawBody: body, pathModel, pathStream, path: event.url.pathname, search: event.url.search, nodeResponse: (event.runtime as any)?.node?.res })
    internals.track(handled)
    return handled
  }

  const responsesState = (method: string, tail: string) => async (event: H3Event) => {
    let id: string
    try {
      id = decodeURIComponent(event.context.params?.id ?? '')
    } catch {
      return protocolError(event, 'responses', 400, 'invalid_request_error', 'the response id in the path is not valid percent-encoding')
    }
    const body = method === 'POST' ? await readBody(event, config.limits.bodyBytes) : ''
    if (typeof body !== 'string') return protocolError(event, 'responses', body.status, body.type, body.message)
    const handled = forwardResponsesState(internals, { protocol: 'responses', operation: 'chat', request: event.req as Request, rawBody: body, path: event.url.pathname, search: event.url.search, nodeResponse: (event.runtime as any)?.node?.res }, { method, id, tail })
    internals.track(handled)
    return handled
  }

  const unknownRoute = (event: H3Event) => protocolError(event, protocolOfPath(event.url.pathname), 404, 'not_found_error', `no route for ${event.req.method} ${event.url.pathname.slice(0, 200)}`)

  const protocolError = (event: H3Event, protocol: ProtocolName, status: number, type: string, message: string) =>
    new FastResponse(JSON.stringify(protocols[protocol].errorBody(status, type, message)), {
      status,
      headers: { 'content-type': 'application/json', ...bareHeaders(event.req.headers.get('origin')) },
    }) as unknown as Response

  const countTokens = async (event: H3Event, protocol: ProtocolName, pathModel?: string) => {
    if (!isJsonContentType(event.req.headers.get('content-type'))) return protocolError(event, protocol, 415, 'invalid_request_error', NOT_JSON)
    const body = await readBody(event, config.limits.bodyBytes)
    if (typeof body !== 'string') return protocolError(event, protocol, body.status, body.type, body.message)
    try {
      const parsed = parseBody(body) as any
      // Gemini's countTokens takes `contents` or a whole `generateContentRequest`
      const counted = protocol === 'anthropic' ? { max_tokens: 1, ...parsed } : protocol === 'gemini' && parsed?.generateContentRequest && !parsed.contents ? parsed.generateContentRequest : parsed
      const prompt = protocols[protocol].parse(counted, { pathModel })
      // the vendor's exact count when it has one and a key for it; the local estimate otherwise
      const exact = protocol !== 'openai' ? await vendorTokenCount(internals, { protocol, operation: 'count_tokens', request: event.req as Request, rawBody: body, pathModel, path: event.url.pathname, search: event.url.search }, parsed, prompt.model) : undefined
      if (exact) return new FastResponse(exact.body as any, { status: 200, headers: { 'content-type': 'application/json', ...bareHeaders(event.req.headers.get('origin')), 'x-agentmesh-vendor': headerSafe(defaultRoute(internals, protocol, prompt.model).vendor), 'x-agentmesh-model': headerSafe(prompt.model) } })
      const n = mesh.tokens.estimateInput(prompt, prompt.model)
      const out = protocol === 'gemini' ? { totalTokens: n } : protocol === 'responses' ? { object: 'response.input_tokens', input_tokens: n } : { input_tokens: n }
      return new FastResponse(JSON.stringify(out), { headers: { 'content-type': 'application/json', 'x-agentmesh-usage': 'estimated', ...bareHeaders(event.req.headers.get('origin')), 'x-agentmesh-model': headerSafe(prompt.model) } })
    } catch (err) {
      return protocolError(event, protocol, 400, 'invalid_request_error', (err as Error).message)
    }
  }

  // Host and browser Origin first, for every route (plugins' admin routes too)
  const guard = createRequestGuard(config)
  app.use((event) => {
    const refused = guard(event.req.headers)
    if (refused) return protocolError(event, protocolOfPath(event.url.pathname), refused.status, refused.type, refused.message)
  })
  app.options('/**', (event) => {
    const origin = event.req.headers.get('origin')
    return new FastResponse(null, {
      status: 204,
      headers: {
        ...bareHeaders(origin),
        'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS',
        'access-control-allow-headers': event.req.headers.get('access-control-request-headers') ?? '*',
        'access-control-max-age': '600',
      },
    })
  })
  app.post('/v1/chat/completions', llm('openai', 'chat'))
  app.post('/v1/embeddings', llm('openai', 'embeddings'))
  app.post('/v1/messages', llm('anthropic', 'chat'))
  app.post('/v1/messages/count_tokens', (event) => countTokens(event, 'anthropic'))
  // the Responses API; its stored state (retrieve, delete, cancel, input items) lives at the vendor
  app.post('/v1/responses', llm('responses', 'chat'))
  app.post('/v1/responses/input_tokens', (event) => countTokens(event, 'responses'))
  app.get('/v1/responses/:id', responsesState('GET', ''))
  app.delete('/v1/responses/:id', responsesState('DELETE', ''))
  app.post('/v1/responses/:id/cancel', responsesState('POST', '/cancel'))
  app.get('/v1/responses/:id/input_items', responsesState('GET', '/input_items'))
  app.post('/v1beta/models/:modelAction', llm('gemini', 'chat'))
  // Gemini's v1 paths (`@google/genai` with apiVersion 'v1'): the same methods; GETs in routes-models.ts.
  // Without a `:method` the path is not Gemini's: the unknown route's 404, in the path's protocol
  const geminiV1 = llm('gemini', 'chat')
  app.post('/v1/models/:modelAction', (event) => (protocolOfPath(event.url.pathname) === 'gemini' ? geminiV1(event) : unknownRoute(event)))
  registerModelRoutes(app, {
    mesh,
    json: (event, body, extra) => new FastResponse(JSON.stringify(body), { headers: { 'content-type': 'application/json', ...bareHeaders(event.req.headers.get('origin')), ...extra } }) as unknown as Response,
    error: protocolError,
  })
  app.get('/agentmesh/events', async (event) => {
    const request = event.req as Request
    let visible: ((e: MeshEvent) => boolean) | undefined
    if (config.events.access === 'authenticated') {
      const access = await eventsAccess(request)
      if (access instanceof Response) return access
      visible = access
    }
    return eventStreamResponse(bus, request, bareHeaders(event.req.headers.get('origin')), visible)
  })
  // unknown routes: a JSON 404 in the error shape of the protocol the path belongs to
  app.all('/**', unknownRoute)
  // health: the process answers (200 while it runs) and what is degraded; ready: 503 while any
  // part the requests depend on is down, so a load balancer sends traffic elsewhere
  const checkAll = () => {
    const checks: Record<string, HealthCheck> = {}
    let ok = true
    for (const [name, check] of healthChecks) {
      let c: HealthCheck
      try {
        c = check()
      } catch (err) {
        c = { ok: false, message: `health check failed: ${(err as Error).message}` }
      }
      checks[name] = c
      ok &&= c.ok
    }
    return { ok, checks }
  }
  const health = () => {
    const { ok, checks } = checkAll()
    const storage = { driver: config.storage.driver, location: store.describe, reachable: checks.storage?.ok ?? true }
    return { ok, status: ok ? 'ok' : 'degraded', version: VERSION, preset: config.preset, demo: mesh.vendors.has('demo'), plugins: plugins.map((p) => p.name), storage, vendors: [...mesh.vendors.keys()], checks }
  }
  const healthResponse = (event: H3Event) =>
    new FastResponse(JSON.stringify(health()), { headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...bareHeaders(event.req.headers.get('origin')) } }) as unknown as Response
  app.get('/agentmesh/health', healthResponse)
  // load balancers and the earlier Python AgentMesh's clients probe /health
  app.get('/health', healthResponse)
  app.get('/agentmesh/ready', (event) => {
    const { ok, checks } = checkAll()
    return new FastResponse(JSON.stringify({ ready: ok, checks }), { status: ok ? 200 : 503, headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...bareHeaders(event.req.headers.get('origin')) } })
  })

  /**
   * events under `events.access: 'authenticated'`: the admin token sees everything, a virtual key
   * its own team's events, anything else a 401
   */
  const eventsAccess = async (request: Request): Promise<Response | ((e: MeshEvent) => boolean) | undefined> => {
    const adminToken = process.env.AGENTMESH_ADMIN_TOKEN
    if (adminToken && !checkAdmin(request, adminToken)) return undefined
    let who: Awaited<ReturnType<IdentityResolver>>
    try {
      who = await resolveCallerIdentity(internals, request)
    } catch (err) {
      if (isStorageUnavailable(err)) return jsonError(503, 'storage_unavailable', (err as Error).message, request.headers.get('origin'))
      throw err
    }
    if (!('kind' in who) && who.source === 'key') return teamFilter(who.team)
    return jsonError(401, 'authentication_error', 'the event stream needs the admin token (Authorization: Bearer $AGENTMESH_ADMIN_TOKEN) or a virtual key, which sees its own team\'s events', request.headers.get('origin'))
  }

  let closed: Promise<void> | undefined
  const instance: AgentMesh = {
    mesh,
    app,
    plugins,
    fetch: (request) => Promise.resolve(app.fetch(request)),
    async listen(opts = {}) {
      const server = serve({ fetch: (req: Request) => app.fetch(req), port: opts.port ?? config.port, hostname: opts.host ?? config.host, silent: true, gracefulShutdown: false })
      await server.ready()
      guardNodeServer(server.node?.server as Server | undefined)
      const port = Number(new URL(server.url!).port)
      return { url: `http://${formatHost(opts.host ?? config.host)}:${port}`, port, close: () => server.close(true) as Promise<void> }
    },
    close() {
      closed ??= (async () => {
        await Promise.allSettled([...pending])
        for (const fn of closers.reverse()) {
          try {
            await fn()
          } catch (err) {
            log.error(`shutdown: ${(err as Error).message}`)
          }
        }
        await store.close()
      })()
      return closed
    },
  }
  return instance
}

const NOT_JSON = 'send the request body as JSON with content-type: application/json'


function formatHost(host: string): string {
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1'
  return host.includes(':') ? `[${host}]` : host
}

type BodyError = { status: number; type: string; message: string }

/** Read the request body as text within the byte limit; 413 beyond it, without reading the rest. */
async function readBody(event: H3Event, limit: number): Promise<string | BodyError> {
  const declared = Number(event.req.headers.get('content-length') ?? NaN)
  const tooLarge = { status: 413, type: 'request_too_large', message: `request body exceeds the ${limit} byte limit` }
  if (declared > limit) return tooLarge
  const nodeReq = (event.runtime as any)?.node?.req as IncomingMessage | undefined
  if (!nodeReq) {
    const text = await event.req.text()
    return Buffer.byteLength(text) > limit ? tooLarge : text
  }
  // straight from the socket: cheaper than a web stream on the hot path
  return new Promise((done) => {
    const chunks: Buffer[] = []
    let size = 0
    nodeReq.on('data', (c: Buffer) => {
      size += c.length
      if (size > limit) {
        nodeReq.removeAllListeners('data')
        nodeReq.pause()
        done(tooLarge)
        return
      }
      chunks.push(c)
    })
    nodeReq.once('end', () => done(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8')))
    nodeReq.once('error', () => done({ status: 400, type: 'invalid_request_error', message: 'request body could not be read' }))
  })
}
