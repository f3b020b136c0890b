// Opening the socket for `agentmesh dev` (listhen) and `agentmesh serve` (srvx), with one clear
// line when the port cannot be had.
import { createServer } from 'node:net'
import { guardNodeServer } from './server-guard.ts'
import { serve } from 'srvx'
import { ConfigError } from './config.ts'

export interface Listening {
  /** the URL to give clients: a loopback address when bound to every interface */
  url: string
  port: number
  /** this machine's other addresses, when bound to every interface */
  networkURLs: string[]
  /** why the port differs from the one asked for */
  note?: string
  close(): Promise<void>
}

export interface ListenOptions {
  port: number
  host: string
  /** the port was given with --port: never move to another one */
  fixedPort: boolean
  /** open the event stream in the browser (dev only) */
  open?: boolean
}

type FetchHandler = (req: Request) => Response | Promise<Response>

const ANY_HOST = new Set(['0.0.0.0', '::', ''])

function localURL(host: string, port: number): string {
  const shown = ANY_HOST.has(host) ? '127.0.0.1' : host
  return `http://${shown.includes(':') ? `[${shown}]` : shown}:${port}`
}

/** Why a port cannot be bound right now (EADDRINUSE, EACCES ...), or undefined when it can. */
export function probePort(port: number, host: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const srv = createServer()
    srv.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(undefined)))
  })
}

async function nextFreePort(port: number, host: string): Promise<number | undefined> {
  for (let p = port + 1; p <= Math.min(port + 50, 65535); p++) if ((await probePort(p, host)) === undefined) return p
  return undefined
}

/** The one line a user sees when the socket cannot be opened; a busy port suggests a free one. */
export async function listenError(port: number, host: string, err: NodeJS.ErrnoException): Promise<ConfigError> {
  // listhen reports every refusal as "no available port": ask the socket what it really was
  const code = err.code ?? (await probePort(port, host)) ?? ''
  if (code === 'EADDRINUSE') {
    const free = await nextFreePort(port, host)
    return new ConfigError(`port ${port} is in use; try --port ${free ?? 0}`)
  }
  if (code === 'EACCES')
    return new ConfigError(`port ${port} needs more privileges on ${host}; try --port ${port < 1024 ? 8080 : port + 1}`)
  if (code === 'EADDRNOTAVAIL')
    return new ConfigError(`cannot listen on ${host}: no such address on this machine (--host)`)
  return new ConfigError(`cannot listen on ${host}:${port}: ${err.message}`)
}

/** `agentmesh serve`: srvx, the port as given. */
export async function listenServe(fetch: FetchHandler, opts: ListenOptions): Promise<Listening> {
  const server = serve({ fetch, port: opts.port, hostname: opts.host, silent: true, gracefulShutdown: false })
  try {
    await server.ready()
  } catch (err) {
    throw await listenError(opts.port, opts.host, err as NodeJS.ErrnoException)
  }
  guardNodeServer(server.node?.server as import('node:http').Server | undefined)
  const port = Number(new URL(server.url!).port)
  return { url: localURL(opts.host, port), port, networkURLs: [], close: () => server.close(false) }
}

/**
 * `agentmesh dev`: listhen opens the socket (the next free port when the default one is busy,
 * the machine's network URLs, --open); srvx's Node handler serves the h3 app on it, so requests
 * are handled exactly as under `serve`.
 */
export async function listenDev(fetch: FetchHandler, opts: ListenOptions): Promise<Listening> {
  const { listen } = await import('listhen')
  const handler = serve({ fetch, manual: true, silent: true, gracefulShutdown: false }).node!.handler
  // a chosen port is that port or an error (port 0: any free one); otherwise the next free one
  // of the 20 above it, then any. listhen would look in 3000-3100 instead.
  const range = (from: number, to: number): [number, number] => [from, Math.min(to, 65535)]
  const port = opts.fixedPort
    ? {
        port: opts.port,
        verbose: false,
        ...(opts.port ? { random: false, alternativePortRange: range(opts.port, opts.port) } : {}),
      }
    : { port: opts.port, verbose: false, alternativePortRange: range(opts.port + 1, opts.port + 20) }
  let listener: Awaited<ReturnType<typeof listen>>
  try {
    listener = await listen(handler as any, {
      port,
      hostname: opts.host,
      // our banner prints the URLs, our signal handlers close the server
      showURL: false,
      autoClose: false,
      // honour --open under NODE_ENV=test/production too
      isTest: false,
      isProd: false,
      open: !!opts.open,
      // what --open shows: the live event stream (the proxy has no page at /)
      baseURL: '/agentmesh/events',
    })
  } catch (err) {
    throw await listenError(opts.port, opts.host, err as NodeJS.ErrnoException)
  }
  guardNodeServer(listener.server as import('node:http').Server)
  const actual = listener.address.port
  if (opts.fixedPort && opts.port && actual !== opts.port) {
    // get-port-please skips ports that browsers block (6000, 6665-6669 ...) and takes another
    await listener.close()
    throw new ConfigError(
      `port ${opts.port} is one browsers refuse to connect to, and agentmesh dev does not use it; try --port ${(await nextFreePort(opts.port, opts.host)) ?? 0}`,
    )
  }
  const networkURLs = ANY_HOST.has(opts.host)
    ? (await listener.getURLs({ baseURL: '/' }))
        .filter((u) => u.type === 'network')
        .map((u) => u.url.replace(/\/$/, ''))
    : []
  return {
    url: localURL(opts.host, actual),
    port: actual,
    networkURLs,
    ...(actual !== opts.port && opts.port
      ? { note: `port ${opts.port} is in use, so dev took ${actual} (--port insists on one)` }
      : {}),
    close: async () => {
      // an open event stream (the page --open shows) never ends by itself: cut what is left
      // after a short grace period instead of waiting for the browser tab to close
      const cut = setTimeout(() => (listener.server as import('node:http').Server).closeAllConnections(), 2000)
      await listener.close()
      clearTimeout(cut)
    },
  }
}
