// Taps an upstream SSE stream on its way to the client: every chunk is forwarded as it arrives,
// while a protocol reader rebuilds the answer and usage from the events.
import { Transform, type TransformCallback } from 'node:stream'
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
 * With `dropEvents` false, chunks pass through untouched (no added latency) and are parsed on the side.
 * With `dropEvents` true, only whole events are forwarded, so the reader can drop one (the usage chunk
 * AgentMesh asked for on the client's behalf).
 */
export class SseTap extends Transform {
  private pending = ''
  private readonly decoder = new TextDecoder()
  constructor(private readonly reader: StreamReader, private readonly dropEvents: boolean) {
    super()
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (!this.dropEvents) this.push(chunk)
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
    if (this.dropEvents && out) this.push(out)
    cb()
  }

  override _flush(cb: TransformCallback): void {
    const rest = this.pending + this.decoder.decode()
    if (rest.trim()) {
      const data = dataOf(rest)
      const keep = data === undefined ? true : this.reader.event(data)
      if (this.dropEvents && keep) this.push(rest)
    }
    this.pending = ''
    cb()
  }
}
