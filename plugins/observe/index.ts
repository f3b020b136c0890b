// `agentmesh observe`: a live terminal view of a local or remote proxy's event stream. On a
// terminal: a fixed header (requests per second, cache hit rate, spend and saved today) over a
// scrolling, coloured line per event. Piped: plain lines; `--json`: one event per line.
// Reconnects with Last-Event-ID, so a dropped connection loses no event the proxy retained.
import { teamFilter } from '../../core/events.ts'
import { definePlugin } from '../../core/plugin.ts'
import type { MeshEvent, Plugin, PluginCommand } from '../../core/types.ts'
import { eventLine, Figures } from './lines.ts'

interface ObserveOptions {
  url: string
  token?: string
  team?: string
  type?: string
  json?: boolean
  limit?: number
}

/** read one SSE connection, handing each event on; resolves when the server closes it */
async function readStream(res: Response, onEvent: (e: MeshEvent) => boolean): Promise<'closed' | 'done'> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader()
  let buf = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return 'closed'
    buf += value
    let at: number
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const data = buf
        .slice(0, at)
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trim())
        .join('\n')
      buf = buf.slice(at + 2)
      if (data && !onEvent(JSON.parse(data) as MeshEvent)) {
        await reader.cancel().catch(() => {})
        return 'done'
      }
    }
  }
}

/** the header's "today" from the usage API, when the token opens it */
async function today(o: ObserveOptions): Promise<{ usd: number; savedUsd: number; requests: number } | undefined> {
  try {
    const res = await fetch(`${o.url}/agentmesh/admin/usage`, {
      headers: o.token ? { authorization: `Bearer ${o.token}` } : {},
      signal: AbortSignal.timeout(2000),
    })
    if (!res.ok) return undefined
    const r = (await res.json()) as {
      scopes: Array<{ scope: string; day: { usd: number; savedUsd: number; requests: number } }>
    }
    return r.scopes.find((s) => s.scope === (o.team ? `team:${o.team}` : 'global'))?.day
  } catch {
    return undefined
  }
}

/** the terminal layout: header on rows 1-2, events scrolling below (a scroll region) */
function terminal(out: NodeJS.WriteStream) {
  const rows = out.rows || 24
  out.write(`\x1b[2J\x1b[3;${rows}r\x1b[3;1H`)
  return {
    header: (text: string) =>
      out.write(
        `\x1b7\x1b[1;1H\x1b[2K\x1b[1m${text.slice(0, (out.columns || 120) - 1)}\x1b[0m\x1b[2;1H\x1b[2K${'─'.repeat(Math.min(out.columns || 80, 120))}\x1b8`,
      ),
    restore: () => out.write(`\x1b[r\x1b[${rows};1H\n`),
  }
}

async function observe(o: ObserveOptions, print: (l: string) => void): Promise<number> {
  const tty = !o.json && process.stdout.isTTY === true
  const figures = new Figures()
  const visible = o.team ? teamFilter(o.team) : undefined
  const term = tty ? terminal(process.stdout) : undefined
  let money: Awaited<ReturnType<typeof today>>
  const refresh = async () => {
    money = await today(o)
    term?.header(figures.header(money))
  }
  const timer = term ? setInterval(refresh, 2000) : undefined
  if (term) void refresh()
  let lastId = 0
  let shown = 0
  let delay = 500
  let connected = false
  const stop = new AbortController()
  process.once('SIGINT', () => stop.abort())
  try {
    while (!stop.signal.aborted) {
      try {
        // live from the start; after a drop, resume where it stopped
        const headers: Record<string, string> = { accept: 'text/event-stream' }
        if (lastId > 0) headers['last-event-id'] = String(lastId)
        if (o.token) headers.authorization = `Bearer ${o.token}`
        const res = await fetch(`${o.url}/agentmesh/events${o.type ? `?types=${encodeURIComponent(o.type)}` : ''}`, {
          headers,
          signal: stop.signal,
        })
        if (res.status === 401 || res.status === 403) {
          print(
            `observe: ${o.url} refused the event stream (${res.status}): pass --token with the admin token or a virtual key`,
          )
          return 1
        }
        if (!res.ok) throw new Error(`status ${res.status}`)
        connected = true
        delay = 500
        const ended = await readStream(res, (e) => {
          if (e.id) lastId = e.id
          // one per request, bookkeeping for the dashboard: shown only when asked for by --type
          if (!o.type && e.type === 'audit_entry') return true
          if (visible && !visible(e)) return true
          figures.add(e)
          print(o.json ? JSON.stringify(e) : eventLine(e, tty))
          return !(o.limit && ++shown >= o.limit)
        })
        if (ended === 'done') return 0
      } catch (err) {
        if (stop.signal.aborted) break
        // never reached: a wrong --url, said at once rather than retried forever
        if (!connected) {
          print(
            `observe: cannot reach ${o.url}/agentmesh/events (${(err as Error).message}); is the proxy running? (--url)`,
          )
          return 1
        }
        if (!o.json) print(`observe: connection to ${o.url} lost (${(err as Error).message}); retrying`)
      }
      await new Promise((r) => setTimeout(r, delay))
      delay = Math.min(delay * 2, 10_000)
    }
    return 0
  } finally {
    if (timer) clearInterval(timer)
    term?.restore()
  }
}

const command: PluginCommand = {
  name: 'observe',
  description: "live view of a proxy's events: a header with req/s, hit rate, spend and saved today, a line per event",
  options: [
    { flags: '--url <url>', description: 'the proxy (default http://127.0.0.1:<port of the config>)' },
    { flags: '--token <token>', description: 'admin token or virtual key (default $AGENTMESH_ADMIN_TOKEN)' },
    { flags: '--team <team>', description: "only this team's events" },
    {
      flags: '--type <types>',
      description: 'only these event types, comma-separated (request,response,quota_warn,...)',
    },
    { flags: '--json', description: 'one JSON event per line, for scripts' },
    { flags: '--limit <n>', description: 'stop after this many events' },
  ],
  run: ({ mesh, options, print }) => {
    const limit = options.limit === undefined ? undefined : Number(options.limit)
    if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) {
      print('observe: --limit must be a positive whole number')
      return 2
    }
    const url = String(options.url ?? `http://127.0.0.1:${mesh.config.port}`).replace(/\/+$/, '')
    return observe(
      {
        url,
        token: options.token ?? process.env.AGENTMESH_ADMIN_TOKEN,
        team: options.team,
        type: options.type,
        json: !!options.json,
        limit,
      },
      print,
    )
  },
}

export function observeCommand(): Plugin {
  return definePlugin({ name: 'observe', commands: [command] })
}
