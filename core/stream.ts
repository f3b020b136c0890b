// Reading an upstream SSE stream on its way to the client: every chunk is forwarded as it
// arrives, while a protocol reader rebuilds the answer and usage from the events on the side.
import { primeEventJson } from './protocols/event-json.ts'
import type { StreamReader } from './protocols/index.ts'
import { MAX_JSON_DEPTH, SLICED_PARSE_CHARS, parseJsonSliced } from './protocols/shared.ts'
import type { Slicer } from './slicer.ts'

/** an event's data over this is parsed in slices (and the chunks that may complete one are fed in slices) */
export const SLICED_EVENT_CHARS = SLICED_PARSE_CHARS
/**
 * a chunk over this many bytes holds hundreds of small events (a vendor's burst, or a socket read
 * of a relay that fell behind: undici hands over what it holds, hundreds of KB): read in slices,
 * not in one go (a 5 MB answer in 20-character deltas, ~1,000 events a turn: blocks of 50-100 ms
 * of CPU with the scavenges they bring). A stream's usual chunk is one event or a few.
 */
const MANY_EVENTS_BYTES = 16 * 1024

/** JSON.parse(data) in slices; undefined when it is not JSON or nests too deep (the reader then parses it itself) */
async function parsedOrUndefined(data: string, slicer: Slicer): Promise<unknown> {
  try {
    const r = await parseJsonSliced(data, MAX_JSON_DEPTH, slicer)
    return r.deep ? undefined : r.value
  } catch {
    return undefined
  }
}

// global, so a search starts where the last event ended (lastIndex) without slicing
const BOUNDARY_AT = /\r?\n\r?\n/g

function dataOf(event: string): string | undefined {
  if (event.length > LARGE_EVENT_CHARS) return dataOfLarge(event)
  let data: string | undefined
  for (const line of event.split(/\r?\n/)) {
    if (line.startsWith('data:')) {
      const v = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5)
      data = data === undefined ? v : data + '\n' + v
    }
  }
  return data
}

/** an event over this many characters has its lines found by indexOf, not split by a regex */
const LARGE_EVENT_CHARS = 64 * 1024

/**
 * dataOf for an event of megabytes: the same lines (ended by \n or \r\n), found by indexOf and
 * sliced out, not a regex split of the whole text (~35 ms for 5.7 MB); its one `data:` line is
 * the usual case, a slice of the event
 */
function dataOfLarge(event: string): string | undefined {
  let data: string | undefined
  let at = 0
  while (at <= event.length) {
    let nl = event.indexOf('\n', at)
    if (nl < 0) nl = event.length
    if (event.startsWith('data:', at)) {
      const end = nl > at && event.charCodeAt(nl - 1) === 13 && nl < event.length ? nl - 1 : nl
      const v = event.slice(event.charCodeAt(at + 5) === 32 ? at + 6 : at + 5, end)
      data = data === undefined ? v : data + '\n' + v
    }
    at = nl + 1
  }
  return data
}

/**
 * a kept event over this many characters is handed on in pieces of it, a turn each: the socket is
 * corked for a turn and all a turn wrote is encoded when it uncorks (5.7 MB at once: 20-40 ms)
 */
const RAW_PIECE_CHARS = 1024 * 1024

/** `raw` to `out` in pieces of RAW_PIECE_CHARS (never between the halves of a surrogate pair), a turn each */
async function handOn(raw: string, slicer: Slicer, out: (kept: string) => void): Promise<void> {
  for (let at = 0; at < raw.length; ) {
    let end = Math.min(at + RAW_PIECE_CHARS, raw.length)
    if (end < raw.length && (raw.charCodeAt(end - 1) & 0xfc00) === 0xd800) end--
    await slicer.yield()
    out(raw.slice(at, end))
    at = end
  }
}

/**
 * Splits chunks into events and hands their data to the reader. With `dropEvents` false the
 * caller forwards chunks untouched (no added latency) and `feed` returns ''. With `dropEvents`
 * true only whole events the reader kept are returned for forwarding, so the reader can drop
 * one (the usage chunk AgentMesh asked for on the client's behalf).
 */
export class SseParser {
  // text after the last complete event, kept as pieces: an event of megabytes arrives in many
  // chunks, and appending to one string and searching it from the start at every chunk would
  // cost time quadratic in the event's size (a 9 MB event: seconds of CPU)
  private pieces: string[] = []
  // the last characters of the pending text, enough to find a boundary split between chunks
  private tail = ''
  private readonly decoder = new TextDecoder()
  // bytes given since the last event ended (about the characters waiting): heavy() reads it
  private pending = 0
  constructor(
    private readonly reader: StreamReader,
    readonly dropEvents: boolean,
  ) {}

  feed(chunk: Buffer): string {
    const events = this.split(chunk)
    if (!events) return ''
    let out = ''
    for (const raw of events) {
      const data = dataOf(raw)
      const keep = data === undefined ? true : this.reader.event(data)
      if (this.dropEvents && keep) out += raw
    }
    return out
  }

  /**
   * whether a chunk would make the text waiting for its event's end larger than SLICED_EVENT_CHARS,
   * or is itself over MANY_EVENTS_BYTES (hundreds of small events at once): then feedSliced
   */
  heavy(chunk: Buffer): boolean {
    return (
      (this.pending += chunk.length) > SLICED_EVENT_CHARS ||
      chunk.length > MANY_EVENTS_BYTES ||
      this.reader.heavy?.() === true
    )
  }

  /**
   * feed in slices of the event loop, for an event of megabytes (tens of thousands of parts in
   * one Gemini chunk) or many events: its JSON parsed by parseJsonSliced, read by the reader's
   * eventSliced when it has one, the loop given back between events. Kept events go to `out` in
   * order, joined, before every turn given back and at the end (`out('')` when none were kept,
   * so a translator's own events are handed on as often).
   */
  async feedSliced(chunk: Buffer, slicer: Slicer, out: (kept: string) => void): Promise<void> {
    // queued chunks are fed back to back: each one's decode within the slice; a chunk that may end
    // an event of megabytes in a turn of its own (the join of its pieces is a flat copy of it)
    if (slicer.due() || this.pending > SLICED_EVENT_CHARS) await slicer.yield()
    const events = this.split(chunk)
    if (!events) return
    let kept = ''
    for (const raw of events) {
      if (slicer.due()) {
        out(kept)
        kept = ''
        await slicer.yield()
      }
      const data = dataOf(raw)
      let keep = true
      if (data !== undefined && data.length > SLICED_EVENT_CHARS) {
        out(kept)
        kept = ''
        await slicer.yield()
        if (this.reader.readsValue?.(data) !== false) {
          const value = await parsedOrUndefined(data, slicer)
          if (value !== undefined) primeEventJson(data, value)
          // the reader's own look at megabytes (a scan, a copy) in a turn of its own
          await slicer.yield()
        }
        keep = this.reader.eventSliced
          ? await this.reader.eventSliced(data, slicer, () => out(''))
          : this.reader.event(data)
      } else if (data !== undefined && this.reader.eventSliced && this.reader.heavy?.() === true) {
        // a small event that may turn what the reader holds into megabytes of output (a translator's end)
        out(kept)
        kept = ''
        keep = await this.reader.eventSliced(data, slicer, () => out(''))
      } else if (data !== undefined) keep = this.reader.event(data)
      if (!this.dropEvents || !keep) continue
      if (raw.length <= RAW_PIECE_CHARS) kept += raw
      else {
        out(kept)
        kept = ''
        await handOn(raw, slicer, out)
      }
    }
    out(kept)
  }

  /**
   * the chunk's text added; the events it completes, or undefined when none. Only the new text is
   * searched, with the last characters before it (a boundary split between chunks): the pending
   * text holds no boundary, so the first one ends in the new text
   */
  private split(chunk: Buffer): string[] | undefined {
    const text = this.decoder.decode(chunk, { stream: true })
    const head = this.tail
    // a boundary that starts in the last characters before the chunk ends in its first three
    BOUNDARY_AT.lastIndex = 0
    let m = head ? BOUNDARY_AT.exec(head + text.slice(0, 3)) : null
    if (m && m.index >= head.length) m = null
    // where the match's text starts in the chunk's
    let shift = head.length
    if (!m) {
      shift = 0
      BOUNDARY_AT.lastIndex = 0
      m = BOUNDARY_AT.exec(text)
    }
    if (!m) {
      this.pieces.push(text)
      this.tail = text.length >= 3 ? text.slice(-3) : (head + text).slice(-3)
      return undefined
    }
    let from = m.index + m[0].length - shift
    const last = text.slice(0, from)
    let first = last
    if (this.pieces.length) {
      this.pieces.push(last)
      first = this.pieces.join('')
    }
    const events = [first]
    for (;;) {
      BOUNDARY_AT.lastIndex = from
      const n = BOUNDARY_AT.exec(text)
      if (!n) break
      const end = n.index + n[0].length
      events.push(text.slice(from, end))
      from = end
    }
    const rest = text.slice(from)
    this.pieces = rest ? [rest] : []
    this.tail = rest.slice(-3)
    this.pending = rest.length
    return events
  }

  /** the end of the stream: a last event without its blank line */
  flush(): string {
    const rest = this.pieces.join('') + this.decoder.decode()
    this.pieces = []
    this.tail = ''
    if (!rest.trim()) return ''
    const data = dataOf(rest)
    const keep = data === undefined ? true : this.reader.event(data)
    return this.dropEvents && keep ? rest : ''
  }
}
