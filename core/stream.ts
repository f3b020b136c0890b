// Reading an upstream SSE stream on its way to the client: every chunk is forwarded as it
// arrives, while a protocol reader rebuilds the answer and usage from the events on the side.
import type { StreamReader } from './protocols/index.ts'

const BOUNDARY = /\r?\n\r?\n/
// global, so a search starts where the last event ended (lastIndex) without slicing
const BOUNDARY_AT = /\r?\n\r?\n/g

function dataOf(event: string): string | undefined {
  let data: string | undefined
  for (const line of event.split(/\r?\n/)) {
    if (line.startsWith('data:')) {
      const v = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5)
      data = data === undefined ? v : data + '\n' + v
    }
  }
  return data
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
  constructor(
    private readonly reader: StreamReader,
    readonly dropEvents: boolean,
  ) {}

  feed(chunk: Buffer): string {
    const text = this.decoder.decode(chunk, { stream: true })
    if (!BOUNDARY.test(text) && !(this.tail && BOUNDARY.test(this.tail + text.slice(0, 3)))) {
      this.pieces.push(text)
      this.tail = text.length >= 3 ? text.slice(-3) : (this.tail + text).slice(-3)
      return ''
    }
    this.pieces.push(text)
    const all = this.pieces.length === 1 ? text : this.pieces.join('')
    let out = ''
    let from = 0
    for (;;) {
      BOUNDARY_AT.lastIndex = from
      const m = BOUNDARY_AT.exec(all)
      if (!m) break
      const end = m.index + m[0].length
      const raw = all.slice(from, end)
      from = end
      const data = dataOf(raw)
      const keep = data === undefined ? true : this.reader.event(data)
      if (this.dropEvents && keep) out += raw
    }
    const rest = all.slice(from)
    this.pieces = rest ? [rest] : []
    this.tail = rest.slice(-3)
    return out
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
