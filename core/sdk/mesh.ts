// createMesh: the proxy's pipeline in a Node program, no port. The same config (a file, loaded as
// the CLI loads it, or an object), plugins, storage, caches, budgets and audit log; `mesh.fetch`
// runs one request through it and the vendor, so any client with a `fetch` option is governed.
import { existsSync, readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { createJiti } from 'jiti'
import { createAgentMesh, type AgentMesh } from '../app.ts'
import { loadMeshConfig } from '../config.ts'
import type { Logger, Mesh, MeshConfig, MeshEvent, ResolvedMeshConfig } from '../types.ts'
import { currentScope, scopeHeaders, type CallScope } from './context.ts'
import { BufferedResponse, bodyText, MeshRequest, toClientResponse } from './web.ts'

export interface CreateMeshOptions {
  /** the config inline (as createAgentMesh takes it); presets by name: `{ preset: 'solo' }` */
  config?: MeshConfig
  /** or a config file, loaded as `agentmesh dev` loads it (c12: .env, $development, presets), except that no preset is assumed (the CLI's default is demo) */
  configFile?: string
  /** where configFile and relative paths start; default process.cwd() */
  cwd?: string
  logger?: Logger
}

export type MeshFetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>

/** marks a fetch that goes through a mesh, so an integration can tell a client already governed */
export const MESH_FETCH = Symbol.for('agentmesh.sdk.fetch')
export const isMeshFetch = (f: unknown): boolean => typeof f === 'function' && MESH_FETCH in f

export interface SdkMesh {
  /** fetch-compatible: the request through the pipeline and the vendor; identity from withIdentity */
  fetch: MeshFetch
  /** a fetch whose calls default to this identity/run (a scope inside still wins) */
  fetchFor(defaults: CallScope): MeshFetch
  /** every governance event (request, response, cache_hit, quota_block, ...); returns unsubscribe */
  on(listener: (event: MeshEvent) => void): () => void
  config: ResolvedMeshConfig
  /** the Mesh plugins see (storage, counters, pricing) */
  core: Mesh
  /** the underlying app, for what the SDK does not wrap */
  instance: AgentMesh
  /** flush plugins (audit), release storage */
  close(): Promise<void>
}

export async function createMesh(options: CreateMeshOptions = {}): Promise<SdkMesh> {
  if (options.config && options.configFile) throw new TypeError('createMesh: pass config or configFile, not both')
  const config = options.configFile
    ? (await loadMeshConfig({ cwd: options.cwd, configFile: options.configFile, jiti: configJiti() })).config
    : (options.config ?? {})
  const instance = await createAgentMesh(config, {
    mode: 'serve',
    ...(options.logger ? { logger: options.logger } : {}),
  })
  const fetchFor = (defaults: CallScope | undefined): MeshFetch => {
    const f: MeshFetch = (input, init) => {
      let request: Request | MeshRequest
      try {
        request = toMeshRequest(input, init, defaults)
      } catch (err) {
        // as fetch: a request it cannot build is a rejected promise, never a throw
        return Promise.reject(err)
      }
      // the caller's own signal only: reading request.signal would make one for every call
      const signal = init?.signal ?? (input instanceof Request ? input.signal : undefined)
      const answer = instance.fetch(request as Request).then(toClientResponse)
      return signal ? abortable(answer, signal) : answer
    }
    return Object.assign(f, { [MESH_FETCH]: true })
  }
  return {
    fetch: fetchFor(undefined),
    fetchFor,
    on: (listener) => instance.mesh.on(listener),
    config: instance.mesh.config,
    core: instance.mesh,
    instance,
    close: () => instance.close(),
  }
}

/**
 * fetch's contract for a signal, which the in-process answer does not keep by itself: an abort
 * rejects a call still waiting and errors a body being read (the SDK sees its own abort error),
 * and cancelling the body is what stops the vendor's stream, as a client disconnecting does.
 */
function abortable(pending: Promise<Response>, signal: AbortSignal): Promise<Response> {
  if (signal.aborted) {
    pending.then(
      (r) => r.body?.cancel(),
      () => {},
    )
    return Promise.reject(signal.reason)
  }
  return new Promise((resolve, reject) => {
    let response: Response | undefined
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined
    let controller: ReadableStreamDefaultController<Uint8Array> | undefined
    const onAbort = () => {
      if (!response) return reject(signal.reason)
      controller?.error(signal.reason)
      void (reader ?? response.body)?.cancel(signal.reason).catch(() => {})
    }
    signal.addEventListener('abort', onAbort, { once: true })
    pending.then(
      (res) => {
        response = res
        // a whole answer is already in memory: only a stream needs the abort to reach its reader
        // (res.body would build a stream for a BufferedResponse, so it is asked last)
        if (
          res instanceof BufferedResponse ||
          !res.headers.get('content-type')?.includes('event-stream') ||
          !res.body
        ) {
          signal.removeEventListener('abort', onAbort)
          return resolve(res)
        }
        const body = new ReadableStream<Uint8Array>({
          start: (c) => {
            controller = c
          },
          pull: async (c) => {
            reader ??= res.body!.getReader()
            const { done, value } = await reader.read()
            if (done) {
              signal.removeEventListener('abort', onAbort)
              c.close()
            } else c.enqueue(value)
          },
          cancel: (reason) => {
            signal.removeEventListener('abort', onAbort)
            return (reader ?? res.body!).cancel(reason)
          },
        })
        resolve(new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers }))
      },
      (err) => {
        signal.removeEventListener('abort', onAbort)
        reject(err)
      },
    )
  })
}

// the guard accepts loopback names only by default; the vendor's host means nothing in-process
const ORIGIN = 'http://localhost'

/**
 * The client's request re-addressed to the mesh: its path (/v1/chat/completions, /v1/messages,
 * /v1beta/models/...) picks the protocol as it does behind HTTP; the scope adds identity headers.
 * A string body (what the SDKs send) makes a MeshRequest: no body stream, no signal of its own,
 * headers copied once. Any other body, or a Request without init, makes a real Request.
 */
export function toMeshRequest(
  input: string | URL | Request,
  init: RequestInit | undefined,
  defaults: CallScope | undefined,
): Request | MeshRequest {
  const isRequest = input instanceof Request
  const href = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url
  const url = ORIGIN + pathOf(href)
  const extra = scopeHeaders(currentScope(), defaults)
  if (isRequest && !init) {
    const req = new Request(url, input)
    for (const [k, v] of extra) req.headers.set(k, v)
    return req
  }
  const headers = new Headers(init?.headers ?? (isRequest ? input.headers : undefined))
  for (const [k, v] of extra) headers.set(k, v)
  const method = normalMethod(init?.method ?? (isRequest ? input.method : 'GET'))
  const body = init?.body ?? (isRequest ? input.body : undefined)
  const signal = init?.signal ?? (isRequest ? input.signal : undefined) ?? undefined
  if (typeof body === 'string' && method !== 'GET' && method !== 'HEAD') {
    if (!headers.has('content-type')) headers.set('content-type', 'text/plain;charset=UTF-8')
    return new MeshRequest(url, method, headers, bodyText(body), signal)
  }
  if (body == null && !isRequest) return new MeshRequest(url, method, headers, null, signal)
  // a streamed body (rare from SDKs) needs duplex: 'half' in Node's Request
  const stream = body instanceof ReadableStream
  return new Request(url, {
    method,
    headers,
    body,
    signal,
    ...(stream ? { duplex: 'half' } : {}),
  } as RequestInit)
}

// fetch upper-cases these methods whatever their case, and leaves any other as it is
const METHODS = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT'])
function normalMethod(m: string): string {
  const up = m.toUpperCase()
  return METHODS.has(up) ? up : m
}

/** path and query of an absolute URL, without parsing it twice on the hot path */
function pathOf(href: string): string {
  const i = href.indexOf('://')
  if (i < 0) return href.startsWith('/') ? href : '/' + href
  const slash = href.indexOf('/', i + 3)
  return slash < 0 ? '/' : href.slice(slash)
}

/**
 * The jiti a config file is loaded with: its `import ... from 'agentmesh'` (and
 * 'agentmesh/plugins/...') must be the copy running here, built or not, or the config's plugins
 * would bring a second core with its own module state.
 */
function configJiti() {
  const root = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '')
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js'
  const modules = `${root}/node_modules`
  return createJiti(import.meta.url, {
    alias: {
      // built: a config's 'agentmesh/plugins/quota/index.ts' is the .js beside it in dist/
      ...(ext === 'js' ? builtAliases(root) : {}),
      'agentmesh/plugins': `${root}/plugins`,
      'agentmesh/presets': `${root}/presets`,
      'agentmesh/sdk': `${root}/core/sdk/index.${ext}`,
      agentmesh: `${root}/core/index.${ext}`,
    },
    moduleCache: true,
    fsCache: existsSync(modules) ? `${modules}/.cache/jiti` : true,
    interopDefault: true,
  })
}

/** 'agentmesh/plugins/x/y.ts' -> dist/plugins/x/y.js for every built plugin and preset module */
function builtAliases(root: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const dir of ['plugins', 'presets']) {
    if (!existsSync(`${root}/${dir}`)) continue
    for (const file of readdirSync(`${root}/${dir}`, { recursive: true }) as string[]) {
      if (file.endsWith('.js')) out[`agentmesh/${dir}/${file.slice(0, -3)}.ts`] = `${root}/${dir}/${file}`
    }
  }
  return out
}
