// createAgentMesh: config -> the Mesh plugins see -> plugins in order on one hook bus -> routes.
// Small on purpose, one named step each: protocol adapters live in core/protocols, routes in
// core/routes-*.ts, the request lifecycle in core/pipeline.ts and core/respond.ts, features in plugins/.
import type { Server } from 'node:http'
import { resolve } from 'node:path'
import { H3, type H3Event } from 'h3'
import { createHooks } from 'hookable'
import { FastResponse, serve } from 'srvx'
import { resolveConfig } from './config.ts'
import { isStorageUnavailable } from './errors.ts'
import { createEventBus } from './events.ts'
import { createRequestGuard, originAllowed } from './guard.ts'
import { defaultIdentityResolver } from './identity.ts'
import { createLogger } from './log.ts'
import { isThenable, PluginError, runAll, runHooks } from './pipeline.ts'
import { sortPlugins } from './plugin.ts'
import { createPricing } from './pricing.ts'
import { protocolOfPath } from './protocols/index.ts'
import { createReplies, type Replies } from './replies.ts'
import { newRequestId } from './request-id.ts'
import { registerLlmRoutes } from './routes-llm.ts'
import { registerModelRoutes } from './routes-models.ts'
import { registerServiceRoutes, type ServiceRouteDeps } from './routes-service.ts'
import { guardNodeServer } from './server-guard.ts'
import { createMeshStorage } from './storage.ts'
import { createTokenCounter } from './tokens.ts'
import type {
  HealthCheck,
  HookName,
  IdentityResolver,
  Logger,
  Mesh,
  MeshConfig,
  MeshContext,
  MeshEventName,
  Plugin,
  PluginHooks,
  ResolvedMeshConfig,
} from './types.ts'

export const VERSION = '0.1.0'
const HOOKS: HookName[] = ['beforeRequest', 'cacheLookup', 'route', 'afterResponse']

/** What the pipeline needs from the app; not part of the public API. */
export interface MeshInternals {
  mesh: Mesh
  runPhase(name: HookName, ctx: MeshContext): Promise<void> | undefined
  resolveIdentity: IdentityResolver
  corsHeaders(origin: string | null): Record<string, string>
  /**
   * false when no listener takes events of this type (of the request `id`, when given): skip
   * building their payloads on the hot path
   */
  hasListeners(type: MeshEventName, id?: string): boolean
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

export async function createAgentMesh(
  input: MeshConfig | ResolvedMeshConfig = {},
  options: CreateOptions = {},
): Promise<AgentMesh> {
  const config = 'sources' in input ? (input as ResolvedMeshConfig) : await resolveConfig(input)
  const log = options.logger ?? createLogger(config.log.level)
  const dataDir = resolve(config.dataDir)
  // creates the data dir 0700 for fs storage; logs each storage outage once
  const store = createMeshStorage(config.storage, dataDir, log)
  const bus = createEventBus((err) => log.warn(`event listener failed: ${(err as Error)?.message}`))
  const app = new H3({ onError: (error, event) => unhandledError(replies, log, error, event) })
  const closers: Array<() => void | Promise<void>> = []
  const pending = new Set<Promise<unknown>>()
  const healthChecks = new Map<string, () => HealthCheck>()
  let identityResolver: IdentityResolver = defaultIdentityResolver

  const mesh = buildMesh({
    config,
    options,
    log,
    store,
    bus,
    dataDir,
    app,
    closers,
    healthChecks,
    replies: () => replies,
    setIdentityResolver: (r) => (identityResolver = r),
  })
  const plugins = sortPlugins(config.plugins)
  const runPhase = wrapHooks(plugins, config, log)
  for (const plugin of plugins) {
    const dispose = await plugin.setup?.(mesh)
    if (typeof dispose === 'function') closers.push(dispose)
  }

  const internals: MeshInternals = {
    mesh,
    runPhase,
    resolveIdentity: (ctx) => identityResolver(ctx),
    corsHeaders: corsFor(config.cors.origins),
    hasListeners: (type, id) => bus.wants(type, id),
    track(p) {
      pending.add(p)
      const done = () => pending.delete(p)
      p.then(done, done)
    },
  }
  const replies = createReplies(internals.corsHeaders)
  registerRoutes(app, {
    config,
    internals,
    replies,
    bus,
    healthChecks,
    describe: () => ({ version: VERSION, plugins: plugins.map((p) => p.name), storageLocation: store.describe }),
  })

  let closed: Promise<void> | undefined
  return {
    mesh,
    app,
    plugins,
    fetch: (request) => Promise.resolve(app.fetch(request)),
    async listen(opts = {}) {
      const server = serve({
        fetch: (req: Request) => app.fetch(req),
        port: opts.port ?? config.port,
        hostname: opts.host ?? config.host,
        silent: true,
        gracefulShutdown: false,
      })
      await server.ready()
      guardNodeServer(server.node?.server as Server | undefined)
      const port = Number(new URL(server.url!).port)
      return {
        url: `http://${formatHost(opts.host ?? config.host)}:${port}`,
        port,
        close: () => server.close(true) as Promise<void>,
      }
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
}

interface MeshParts {
  config: ResolvedMeshConfig
  options: CreateOptions
  log: Logger
  store: ReturnType<typeof createMeshStorage>
  bus: ReturnType<typeof createEventBus>
  dataDir: string
  app: H3
  closers: Array<() => void | Promise<void>>
  healthChecks: Map<string, () => HealthCheck>
  /** read when a plugin route answers, after the app is built */
  replies: () => Replies
  setIdentityResolver(resolver: IdentityResolver): void
}

/** The Mesh plugins get in setup(): config, storage, counters, events and the registries. */
function buildMesh(p: MeshParts): Mesh {
  const mesh: Mesh = {
    mode: p.options.mode ?? 'serve',
    config: p.config,
    tokens: createTokenCounter(),
    pricing: createPricing(p.config.pricing, p.log),
    storage: p.store.storage,
    counters: p.store.counters,
    ...(p.store.changes ? { changes: p.store.changes } : {}),
    log: p.log,
    vendors: new Map(),
    dataDir: p.dataDir,
    registerVendor(vendor) {
      mesh.vendors.set(vendor.name, vendor)
    },
    setIdentityResolver: p.setIdentityResolver,
    emit: p.bus.emit,
    on: p.bus.on,
    // plugin routes that answer through the pipeline (the dry-run preview)
    fetch: (request) => Promise.resolve(p.app.fetch(request)),
    addRoute(method, path, handler) {
      p.app.on(method.toUpperCase() as 'GET', path, (event) => pluginRoute(p.replies(), event, handler))
    },
    onClose(fn) {
      p.closers.push(fn)
    },
    addHealthCheck(name, check) {
      p.healthChecks.set(name, check)
    },
  }
  mesh.addHealthCheck('storage', p.store.health)
  return mesh
}

/** A plugin's route: storage outages are a 503, and the answer carries a request id like every other. */
async function pluginRoute(
  replies: Replies,
  event: H3Event,
  handler: Parameters<Mesh['addRoute']>[2],
): Promise<Response> {
  let res: Response
  try {
    res = await handler(event.req as Request, (event.context.params ?? {}) as Record<string, string>)
  } catch (err) {
    if (!isStorageUnavailable(err)) throw err
    return replies.jsonError(503, 'storage_unavailable', (err as Error).message, event.req.headers.get('origin'))
  }
  if (!res.headers.has('x-agentmesh-request-id')) {
    try {
      res.headers.set('x-agentmesh-request-id', newRequestId())
    } catch {
      // immutable headers (a fetched Response): answered as it is
    }
  }
  return res
}

/**
 * The plugins' hooks (and the config's own) on one hookable bus; runPhase runs a phase's hooks in
 * order. A phase nobody hooks costs nothing, and sync hooks stay sync (no promise per plugin).
 */
function wrapHooks(plugins: Plugin[], config: ResolvedMeshConfig, log: Logger): MeshInternals['runPhase'] {
  const hooks = createHooks<any>()
  const hookCount: Record<string, number> = {}
  const configHooks: Plugin = { name: 'config.hooks', enforce: 'post', hooks: config.hooks }
  for (const plugin of [...plugins, configHooks]) {
    for (const name of HOOKS) {
      const fn = plugin.hooks?.[name as keyof PluginHooks]
      if (!fn) continue
      hookCount[name] = (hookCount[name] ?? 0) + 1
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
  return (name, ctx) =>
    !hookCount[name]
      ? undefined
      : (hooks.callHookWith(
          (fns: Array<(ctx: MeshContext) => unknown>, args: any[]) =>
            // every afterResponse plugin runs even if one fails (audit must not lose an entry to quota)
            name === 'afterResponse' ? runAll(fns, args[0], log) : runHooks(fns, args[0]),
          name,
          [ctx],
        ) as Promise<void> | undefined)
}

/** CORS response headers for a browser origin: the configured list, or '*' */
function corsFor(origins: ResolvedMeshConfig['cors']['origins']): (origin: string | null) => Record<string, string> {
  return (origin): Record<string, string> => {
    if (!origin) return {}
    if (origins === '*') return { 'access-control-allow-origin': '*', 'access-control-expose-headers': '*' }
    return originAllowed(origins, origin)
      ? { 'access-control-allow-origin': origin, vary: 'origin', 'access-control-expose-headers': '*' }
      : {}
  }
}

/** Every route: the Host/Origin guard first, preflights, the LLM protocols, models, AgentMesh's own. */
function registerRoutes(app: H3, deps: ServiceRouteDeps): void {
  const { replies } = deps
  // Host and browser Origin first, for every route (plugins' admin routes too)
  const guard = createRequestGuard(deps.config)
  app.use((event) => {
    const refused = guard(event.req.headers)
    if (!refused) return
    const res = replies.protocolError(
      event,
      protocolOfPath(event.url.pathname),
      refused.status,
      refused.type,
      refused.message,
    )
    if (refused.close) res.headers.set('connection', 'close')
    return res
  })
  app.options(
    '/**',
    (event) =>
      new FastResponse(null, {
        status: 204,
        headers: {
          ...replies.bareHeaders(event.req.headers.get('origin')),
          'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS',
          'access-control-allow-headers': event.req.headers.get('access-control-request-headers') ?? '*',
          'access-control-max-age': '600',
        },
      }) as unknown as Response,
  )
  registerLlmRoutes(app, deps)
  registerModelRoutes(app, { mesh: deps.internals.mesh, json: replies.json, error: replies.protocolError })
  registerServiceRoutes(app, deps)
}

/**
 * What reaches h3 unhandled (a malformed URL such as `GET /%`, a throw in a route): an error in
 * the client's protocol instead of h3's own shape.
 */
function unhandledError(
  replies: Replies,
  log: Logger,
  error: { status: number; message: string },
  event: H3Event,
): Response {
  const status = error.status >= 400 && error.status < 500 ? error.status : 500
  if (status === 500) log.error(`unhandled error on ${event.req.method} ${event.url.pathname}: ${error.message}`)
  const message =
    status === 400
      ? 'malformed request URL'
      : status === 500
        ? 'internal error in AgentMesh; see the proxy log'
        : error.message
  return replies.protocolError(
    event,
    protocolOfPath(event.url.pathname),
    status,
    status === 500 ? 'internal_error' : 'invalid_request_error',
    message,
  )
}

function formatHost(host: string): string {
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1'
  return host.includes(':') ? `[${host}]` : host
}
