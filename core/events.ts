// The typed event bus, and its server-sent-events view at GET /agentmesh/events.
import { PassThrough } from 'node:stream'
import { FastResponse } from 'srvx'
import { EventFolder } from './events-fold.ts'
import type { MeshEvent, MeshEventName, MeshEvents } from './types.ts'

/** whether a listener takes an event of this type */
type TypeTest = (type: string) => boolean
/** whether a listener takes this event of one request (by the request's id) */
type RequestTest = (type: string, id: string) => boolean
type Listener = [(e: MeshEvent) => void, TypeTest | undefined, RequestTest | undefined]

/** A class, not an object literal: a literal with a getter is a dictionary-mode object, slow on every request. */
export class EventBus {
  /** each listener, with the event types it takes (undefined: all) and the requests' (undefined: all) */
  #listeners = new Map<(e: MeshEvent) => void, Listener>()
  /** the same, as an array for emit (a Map's entries iterator made an entry per listener per event) */
  #list: Listener[] = []
  /** some listener takes the events of some requests only */
  #perRequest = false
  /** per event type, whether any listener takes it (types come from code: few) */
  #wanted = new Map<string, boolean>()
  #seq = 0
  constructor(private readonly onListenerError: (err: unknown) => void) {}
  // arrow properties: mesh.emit and mesh.on are handed out detached from the bus
  emit = <K extends MeshEventName>(type: K, data: MeshEvents[K]): void => {
    if (!this.wants(type)) return
    const id = this.#perRequest ? (data as { id?: unknown }).id : undefined
    // made at the first listener that takes it: one that no listener takes is never built
    let event: MeshEvent | undefined
    for (const [l, types, requests] of this.#list) {
      if (types !== undefined && !types(type)) continue
      if (requests !== undefined && typeof id === 'string' && !requests(type, id)) continue
      event ??= { id: ++this.#seq, type, time: Date.now(), data } as MeshEvent
      try {
        l(event)
      } catch (err) {
        this.onListenerError(err)
      }
    }
  }
  /**
   * `types`: the event types the listener takes, asked again after `interestChanged()`;
   * `requests`: of the events that carry a request's `id`, which it takes (a live view that shows
   * some requests whole: the others' events are then not built for it)
   */
  on = (listener: (e: MeshEvent) => void, types?: TypeTest, requests?: RequestTest): (() => void) => {
    this.#listeners.set(listener, [listener, types, requests])
    this.#changed()
    return () => {
      this.#listeners.delete(listener)
      this.#changed()
    }
  }
  /**
   * Whether an event of this type (of the request `id`, when given) reaches anyone: the core builds
   * an event's payload only then (five dashboards read one event per request; the others' payloads
   * cost a busy proxy for nothing).
   */
  wants(type: string, id?: string): boolean {
    if (this.#listeners.size === 0) return false
    let yes = this.#wanted.get(type)
    if (yes === undefined) {
      yes = false
      for (const [, types] of this.#list) if ((yes = types === undefined || types(type))) break
      if (this.#wanted.size > 1000) this.#wanted.clear()
      this.#wanted.set(type, yes)
    }
    return yes && (id === undefined || !this.#perRequest || this.#someTakes(type, id))
  }
  #someTakes(type: string, id: string): boolean {
    for (const [, types, requests] of this.#list)
      if ((types === undefined || types(type)) && (requests === undefined || requests(type, id))) return true
    return false
  }
  #changed(): void {
    this.#list = [...this.#listeners.values()]
    this.#perRequest = this.#list.some(([, , requests]) => requests !== undefined)
    this.#wanted.clear()
  }
  /** a listener's `types` takes other types from now on */
  interestChanged(): void {
    this.#wanted.clear()
  }
}

export function createEventBus(onListenerError: (err: unknown) => void): EventBus {
  return new EventBus(onListenerError)
}

/** an event's SSE frame: its JSON holds no raw newline, so a blank line ends it and `\nid: ` starts the next */
function frameOf(e: MeshEvent): string {
  return `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`
}

/** the event back from its frame (a filtered client's replay: rare, so not worth keeping objects for) */
function parseFrame(frame: string): MeshEvent {
  return JSON.parse(frame.slice(frame.indexOf('\ndata: ') + 7)) as MeshEvent
}

/** events kept for replay by Last-Event-ID */
export const EVENT_RING_SIZE = 2000
/**
 * Events wait at most this long and go out together: one write per client per interval however
 * busy the proxy is (one per event-loop turn cost the proxy a third more CPU per request with five
 * dashboards open), serialised then, off the requests' path. A live view lags by this much at most.
 */
export const SSE_FLUSH_MS = 40
/**
 * The same while the stream folds (every reader of `response` is a live view, `?fold=N`): a flush
 * costs a loaded proxy ~0.1 ms whatever it holds (one write per reader), and a page needs no more
 * than ten a second. Timed in place: 0.13-0.22 ms a flush, ~1.3 us a request at 4,000 rps at 40 ms.
 */
export const FOLD_FLUSH_MS = 100
/** a client with this much unsent is too slow and is dropped; its EventSource comes back with Last-Event-ID */
export const SSE_MAX_BACKLOG = 4 * 1024 * 1024
const HEARTBEAT_MS = 15_000

/**
 * The newest events as SSE text, for clients that come back with Last-Event-ID: each flush's
 * frames, as the bytes sent (outside the JS heap) or, when short, as a string (a short Buffer
 * would pin a shared 8 KiB slab), not an object per event: kept objects are what the GC copies and
 * promotes (retained events cost a busy proxy ~7% more CPU per request). Holds the newest `size`
 * events, and up to one flush more.
 */
export class EventRing {
  #batches: Array<{ first: number; last: number; count: number; frames: string | Buffer }> = []
  #count = 0
  constructor(readonly size: number) {}

  /** the frames of the consecutive events `first`..`last`, in order */
  add(first: number, last: number, count: number, frames: string | Buffer): void {
    this.#batches.push({ first, last, count, frames })
    this.#count += count
    while (this.#count - this.#batches[0]!.count >= this.size) this.#count -= this.#batches.shift()!.count
  }

  /** the frames of the retained events newer than `lastId` that `accepts` takes, oldest first */
  since(lastId: number, accepts?: (e: MeshEvent) => boolean): string {
    const newest = this.#batches.at(-1)?.last ?? 0
    const from = Math.max(lastId + 1, newest - this.size + 1)
    let out = ''
    for (const b of this.#batches) {
      if (b.last < from) continue
      const text = typeof b.frames === 'string' ? b.frames : b.frames.toString()
      if (accepts !== undefined) {
        for (const frame of text.split('\n\n'))
          if (frame !== '') {
            const e = parseFrame(frame)
            if (e.id! >= from && accepts(e)) out += `${frame}\n\n`
          }
      } else if (b.first >= from) out += text
      else out += text.slice(text.indexOf(`\nid: ${from}\n`) + 1)
    }
    return out
  }
}

/** a team filter's team, so that the clients of one team share one filter and one buffer */
const TEAM = Symbol('team')
type Visible = ((e: MeshEvent) => boolean) & { [TEAM]?: string }

/**
 * Events of one team only: `request` and `response` name the identity; the other events of a
 * request carry its id, so the ids of the team's requests are remembered (the newest 5,000-10,000).
 */
export function teamFilter(team: string): (e: MeshEvent) => boolean {
  // two generations of 5,000, the older dropped whole: deleting the oldest of one Set, one by one,
  // walks the holes every delete before it left
  let ids = new Set<string>()
  let older = new Set<string>()
  const visible: Visible = (e) => {
    const data = e.data as { id?: unknown; identity?: { team?: string } }
    if (e.type === 'request' && data.identity?.team === team && typeof data.id === 'string') {
      if (ids.size >= 5_000) {
        older = ids
        ids = new Set()
      }
      ids.add(data.id)
      return true
    }
    if (data.identity) return data.identity.team === team
    return typeof data.id === 'string' && (ids.has(data.id) || older.has(data.id))
  }
  visible[TEAM] = team
  return visible
}

/** the clients that see the same events (same team, same `?types=`): filtered once, written from one buffer */
interface Group {
  accepts: ((e: MeshEvent) => boolean) | undefined
  clients: Set<PassThrough>
}

/** write, or drop a client that does not keep up (what it has not read stays in memory otherwise) */
function deliver(out: PassThrough, chunk: Buffer | string): void {
  if (out.destroyed) return
  if (out.writableLength + out.readableLength > SSE_MAX_BACKLOG) out.destroy()
  else out.write(chunk)
}

/**
 * The SSE view of one bus: one bus listener, one timer, one heartbeat for all clients. It listens
 * from its first client on, for good: the ring keeps recording while nobody is connected (a
 * dropped connection or a reload then loses nothing), so events are built for every request.
 *
 * It records only the types some client has asked for since the start (every type once a client
 * without `?types=` or `?exclude=` came): a client resumes the types it was reading, all of which
 * were recorded since it first connected. The others are never made into frames: five dashboards,
 * which read one event per request, cost a busy proxy ~1-3% of CPU this way and ~10% when the four
 * events of every request were serialised and sent (bench:proxy's dashboard line).
 */
class SseHub {
  readonly ring = new EventRing(EVENT_RING_SIZE)
  #pending: MeshEvent[] = []
  #groups = new Map<string, Group>()
  #timer: ReturnType<typeof setTimeout> | undefined
  #beat: ReturnType<typeof setInterval> | undefined
  /** the type filters clients have used, by their text; `undefined` once one took every type */
  #filters: Map<string, TypeFilter> | undefined = new Map()
  /** per event type, whether any of them takes it (types come from code: few) */
  #recorded = new Map<string, boolean>()
  /**
   * Folding (events-fold.ts) while every client that reads `response` asked for it (`?fold=N`, the
   * smallest N); `null` for good once one that reads them all came: it resumes from the ring, which
   * holds what was sent, folded or not.
   */
  #folder: EventFolder | undefined | null
  constructor(private readonly bus: EventBus) {
    // a folder decides at `request` whom it shows (asked for every request, whether a client reads
    // `request` or not), and takes no other event of the requests it folds but their `response`
    bus.on(
      this.#onEvent,
      (type) => this.#records(type) || (type === 'request' && !!this.#folder),
      (type, id) => !this.#folder || this.#folder.takes(type, id),
    )
  }

  /** from now on, record what `types` takes too (all of it when it is undefined) */
  #want(key: string, types: TypeFilter | undefined, fold: number | undefined): void {
    const folder = this.#folder
    if (folder !== null && (types === undefined || types('response'))) {
      if (fold === undefined) this.#folder = null
      else if (folder === undefined || fold < folder.perFlush) this.#folder = new EventFolder(fold)
    }
    if (this.#filters !== undefined && !this.#filters.has(key)) {
      if (types === undefined) this.#filters = undefined
      else this.#filters.set(key, types)
      this.#recorded.clear()
    }
    if (this.#folder) this.#folder.passRequests = this.#records('request')
    this.bus.interestChanged()
  }

  #records(type: string): boolean {
    if (this.#filters === undefined) return true
    let yes = this.#recorded.get(type)
    if (yes === undefined) {
      yes = false
      for (const f of this.#filters.values()) if ((yes = f(type))) break
      if (this.#recorded.size > 1000) this.#recorded.clear()
      this.#recorded.set(type, yes)
    }
    return yes
  }

  /**
   * On the requests' path: only kept, until the flush. Made into frames there, in one run: the
   * same JSON.stringify cost ~1.6x as much per event done on each request's path (interleaved with
   * the request's own work), measured by --cpu-prof in a loaded proxy. Also measured and no cheaper
   * in the proxy, though faster in microbenchmarks: hand-written JSON for the hot event types, one
   * JSON.stringify of the whole batch cut at event boundaries, frames written at once to bytes
   * outside the heap (kept events are not what costs: a proxy with five dashboards open spent no
   * more time in scavenges than one without).
   */
  #onEvent = (e: MeshEvent): void => {
    const before = this.#pending.length
    if (this.#folder) this.#addFolded(e)
    else this.#pending.push(e)
    if (before === 0 && this.#pending.length > 0) {
      this.#timer = setTimeout(this.#flush, this.#folder ? FOLD_FLUSH_MS : SSE_FLUSH_MS)
      this.#timer.unref()
    }
  }

  #flush = (): void => {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#folder?.flushed()
    const events = this.#pending
    if (events.length === 0) return
    this.#pending = []
    const frames = events.map(frameOf)
    const text = frames.join('')
    const all = Buffer.from(text)
    this.ring.add(events[0]!.id!, events.at(-1)!.id!, events.length, all.length >= 4096 ? all : text)
    for (const g of this.#groups.values()) {
      let chunk: Buffer | undefined = all
      if (g.accepts !== undefined) {
        // in order: the team filter learns the team's request ids from `request`. `mine` is made
        // at the first event the group does not take: a group that takes all that was recorded
        // (the dashboards', when they are the only readers) is written the shared bytes.
        let mine: string | undefined
        for (let i = 0; i < events.length; i++)
          if (g.accepts(events[i]!)) {
            if (mine !== undefined) mine += frames[i]
          } else mine ??= frames.slice(0, i).join('')
        if (mine !== undefined) chunk = mine === '' ? undefined : Buffer.from(mine)
      }
      // one copy to bytes for the whole group, not one per client
      if (chunk !== undefined) for (const out of g.clients) deliver(out, chunk)
    }
  }

  /** folded, or as it is if folding fails: a bus listener that throws loses the event for every client */
  #addFolded(e: MeshEvent): void {
    try {
      this.#folder!.add(e, this.#pending)
    } catch {
      this.#pending.push(e)
    }
  }

  /** what it missed after `lastId` first (by Last-Event-ID), then every event from now on */
  join(out: PassThrough, g0: GroupOf, lastId: number | undefined): void {
    const { key, accepts } = g0
    this.#want(g0.typesKey, g0.types, g0.fold)
    // what is pending goes to the ring and the other clients: for this one it is replay or the past
    this.#flush()
    if (lastId !== undefined) {
      const missed = this.ring.since(lastId, accepts)
      if (missed !== '') out.write(missed)
    }
    let g = this.#groups.get(key)
    if (g === undefined) {
      g = { accepts, clients: new Set() }
      this.#groups.set(key, g)
    }
    g.clients.add(out)
    if (this.#beat === undefined) {
      this.#beat = setInterval(() => {
        for (const g of this.#groups.values()) for (const o of g.clients) deliver(o, ': ping\n\n')
      }, HEARTBEAT_MS)
      this.#beat.unref()
    }
    const group = g
    out.once('close', () => this.#leave(key, group, out))
  }

  #leave(key: string, g: Group, out: PassThrough): void {
    g.clients.delete(out)
    if (g.clients.size > 0 || this.#groups.get(key) !== g) return
    this.#groups.delete(key)
    if (this.#groups.size > 0) return
    clearInterval(this.#beat)
    this.#beat = undefined
  }
}

const hubs = new WeakMap<EventBus, SseHub>()
let ownGroups = 0

/** the bus's SSE view, made by its first client */
function sseHub(bus: EventBus): SseHub {
  let hub = hubs.get(bus)
  if (hub === undefined) hubs.set(bus, (hub = new SseHub(bus)))
  return hub
}

/** the last event id a client saw: the Last-Event-ID header, or `?lastEventId=` after a page reload */
function lastEventId(request: Request, url: URL): number | undefined {
  const raw = request.headers.get('last-event-id') ?? url.searchParams.get('lastEventId')
  if (raw === null || !/^\d{1,15}$/.test(raw)) return undefined
  return Number(raw)
}

/** whether a client reads events of a type */
type TypeFilter = (type: string) => boolean

/** a list of `?types=` / `?exclude=` entries: names, or prefixes ending in `*` (`x-*`) */
function typeMatcher(list: string[]): TypeFilter {
  const names = new Set(list.filter((t) => !t.endsWith('*')))
  const prefixes = list.filter((t) => t.endsWith('*')).map((t) => t.slice(0, -1))
  return (type) => names.has(type) || prefixes.some((p) => type.startsWith(p))
}

const listParam = (url: URL, name: string) =>
  url.searchParams
    .get(name)
    ?.split(',')
    .filter((t) => t !== '' && t.length <= 64)
    .slice(0, 64)

/** the types a URL asks for (`?types=` only these, `?exclude=` all but these), and that as text */
function typesOf(url: URL): { types: TypeFilter | undefined; typesKey: string } {
  const only = listParam(url, 'types')
  const not = listParam(url, 'exclude')
  if (!only?.length && !not?.length) return { types: undefined, typesKey: '*' }
  const yes = only?.length ? typeMatcher(only) : undefined
  const no = not?.length ? typeMatcher(not) : undefined
  const types: TypeFilter = (t) => (yes === undefined || yes(t)) && (no === undefined || !no(t))
  const text = (l: string[] | undefined) => [...new Set(l)].sort().join(',')
  return { types, typesKey: `${text(only)}\n-${text(not)}` }
}

interface GroupOf {
  key: string
  accepts: Group['accepts']
  /** what the hub must record for it, and that as text */
  types: TypeFilter | undefined
  typesKey: string
  /** `?fold=N`: at most N requests a flush sent whole (events-fold.ts) */
  fold: number | undefined
}

/** `?fold=N`, 1 to 10,000 */
function foldOf(url: URL): number | undefined {
  const raw = url.searchParams.get('fold')
  return raw !== null && /^\d{1,5}$/.test(raw) && Number(raw) >= 1 ? Math.min(Number(raw), 10_000) : undefined
}

/** the group a client joins: its team (or a group of its own for another filter) and its types */
function groupOf(url: URL, visible: Visible | undefined): GroupOf {
  const fold = foldOf(url)
  const { types: asked, typesKey } = typesOf(url)
  // a folding client reads the sums of what it was not sent, whatever its `?types=`
  const types = asked && fold !== undefined ? (t: string) => t === 'responses_folded' || asked(t) : asked
  const who = visible === undefined ? '*' : visible[TEAM] !== undefined ? `team:${visible[TEAM]}` : `own:${++ownGroups}`
  const key = `${who}\n${typesKey}${fold === undefined ? '' : '\nfold'}`
  if (!visible && !types) return { key, accepts: undefined, types, typesKey, fold }
  // the team filter sees every event (it learns the team's request ids from `request`)
  const accepts = (e: MeshEvent) => (visible === undefined || visible(e)) && (types === undefined || types(e.type))
  if (visible === undefined || types === undefined) return { key, accepts, types, typesKey, fold }
  // so `request` is recorded for it even when it does not read it
  return { key, accepts, types: (t) => t === 'request' || types(t), typesKey: `+request\n${typesKey}`, fold }
}

/**
 * `out` gets the events as SSE text: what it missed after `lastId` first, then every event that
 * `visible` and the URL's `?types=` let through, until it closes.
 */
export function streamEvents(
  bus: EventBus,
  out: PassThrough,
  url: URL,
  visible?: (e: MeshEvent) => boolean,
  lastId?: number,
): void {
  sseHub(bus).join(out, groupOf(url, visible), lastId)
}

/**
 * SSE response streaming every event; `?types=a,b` (only those) and `?exclude=c,x-*` (all but
 * those; `*` ends a prefix) filter, and `visible` (a caller's team) too.
 * Each event has an `id:`; a client that comes back with Last-Event-ID gets what it missed first,
 * from a bounded ring buffer. Heartbeats keep proxies from closing it.
 */
export function eventStreamResponse(
  bus: EventBus,
  request: Request,
  headers: Record<string, string>,
  visible?: (e: MeshEvent) => boolean,
): Response {
  const url = new URL(request.url)
  const out = new PassThrough()
  out.write(': agentmesh events\n\n')
  streamEvents(bus, out, url, visible, lastEventId(request, url))
  request.signal?.addEventListener('abort', () => out.destroy(), { once: true })
  return new FastResponse(out as any, {
    status: 200,
    headers: {
      ...headers,
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    },
  }) as unknown as Response
}
