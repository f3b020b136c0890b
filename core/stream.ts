// Reading an upstream SSE stream on its way to the client: every chunk is forwarded as it
// arrives, while a protocol reader rebuilds the answer and usage from the events on the side.
import type { StreamReader } from './protocols/index.ts'

const BOUNDARY = /\r?\n\r?\n/

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
  private pending = ''
  private readonly decoder = new TextDecoder()
  constructor(private readonly reader: StreamReader, readonly dropEvents: boolean) {}

  feed(chunk: Buffer): string {
    this.pending += this.decoder.decode(chunk, { stream: true })
    let out = ''
    for (;;) {
      const m = BOUNDARY.exec(this.pending)
      if (!m) break
      const raw = this.pending.slice(0, m.index + m[0].length)
      this.pending = this.pending.slice(m.index + m[0].length)
      const data = dataOf(raw)
      const keep = data === undefined ? true : this.reader.event(data)
      if (this.dropEvents && keep) out += raw
    }
    return out
  }

  /** the end of the stream: a last event without its blank line */
  flush(): string {
    const rest = this.pending + this.decoder.decode()
    this.pending = ''
    if (!rest.trim()) return ''
    const data = dataOf(rest)
    const keep = data === undefined ? true : this.reader.event(data)
    return this.dropEvents && keep ? rest : ''
  }
}
