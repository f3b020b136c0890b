// Finished spans waiting for export, sent in batches as the SDK's BatchSpanProcessor did (its
// defaults: up to 512 a batch, sent when full or after the delay, at most 2048 waiting). Past that
// bound the oldest batch goes: the newest spans say most about now.
//
// A request's spans, encoded (proto.ts: bytes; json.ts: a JSON text), are written at once into the
// request body of their batch, a Buffer reused from batch to batch: the body is never a string,
// and a span's text dies young. Keeping JSON texts and joining them per batch cost three times as
// much as writing them (V8 builds the joined string of many small ropes slowly: about 4 µs per
// span, measured). The envelope around the spans (resource, scope) is the encoding's `Framing`,
// written when the batch is sealed. A sealed batch is handed to the official export delegate
// (export.ts) as it is.
import type { Logger } from '../../core/types.ts'
import type { EncodedBatch, TraceExport } from './export.ts'

export interface BatchOptions {
  delayMs: number
  maxBatch: number
  maxQueue: number
}

/** what an encoding writes around a batch's spans: the resource and scope envelope */
export interface Framing {
  /** bytes kept free before the spans for what seal() writes there */
  reserve: number
  /** bytes seal() writes after them */
  trailer?: number
  /** the byte between two requests' spans (JSON's comma) */
  separator: number | undefined
  /** writes the envelope around the spans at body[spansStart, spansEnd): where the request body is */
  seal(body: Buffer, spansStart: number, spansEnd: number): { start: number; end: number }
}

type Batch = EncodedBatch

// a batch's body: 512 spans of ~800 bytes (JSON) fit; a batch whose spans are larger is sent early
const BODY_BYTES = 1 << 20
// bodies kept for reuse: as many as can be in flight and waiting at once
const SPARE = 8

export class SpanBatcher {
  /** spans dropped: the queue was full, or their export failed */
  dropped = 0
  exported = 0
  #open: Batch | undefined
  /** full batches waiting for a free connection, oldest first */
  #full: Batch[] = []
  #timer: NodeJS.Timeout | undefined
  #overflowing = false
  /** bodies whose export is done, to write the next batches in: a fresh 1 MB each time made V8
   *  collect its whole heap every few hundred batches for the external memory (~8 µs a request) */
  #spare: Buffer[] = []
  readonly #room: number
  constructor(
    private readonly http: TraceExport,
    private readonly framing: Framing,
    private readonly o: BatchOptions,
    private readonly log: () => Logger | undefined,
  ) {
    // what must stay free after a request's spans: a separator and the envelope's end
    this.#room = BODY_BYTES - 1 - (framing.trailer ?? 0)
  }

  /** push, bound: what the encodings' emit functions write to */
  readonly out = (spans: string | Uint8Array, count: number): void => this.push(spans, count)

  /** a request's `count` spans, encoded: bytes, or a JSON text (comma-separated spans) */
  push(spans: string | Uint8Array, count = 1): void {
    let b = this.#open
    // a UTF-8 byte is at most 3 per UTF-16 unit; a batch holds maxBatch spans at most
    const bytes = typeof spans === 'string' ? spans.length * 3 : spans.length
    if (b !== undefined && (b.size + bytes > this.#room || b.spans + count > this.o.maxBatch)) {
      this.#seal()
      b = undefined
    }
    if (b === undefined) {
      const start = this.framing.reserve
      b = { body: this.#spare.pop() ?? Buffer.allocUnsafeSlow(BODY_BYTES), start, size: start, spans: 0 }
      this.#open = b
      this.#timer ??= setTimeout(() => this.#tick(), this.o.delayMs).unref()
    } else if (this.framing.separator !== undefined) b.body[b.size++] = this.framing.separator
    if (typeof spans === 'string') b.size += b.body.write(spans, b.size)
    else {
      b.body.set(spans, b.size)
      b.size += spans.length
    }
    b.spans += count
    if (b.spans >= this.o.maxBatch) this.#seal()
  }

  /** the open batch is complete: in line for sending, the oldest dropped past the bound */
  #seal() {
    const b = this.#open
    if (!b) return
    this.#open = undefined
    const { start, end } = this.framing.seal(b.body, this.framing.reserve, b.size)
    b.start = start
    b.size = end
    this.#full.push(b)
    let waiting = this.#full.reduce((n, x) => n + x.spans, 0)
    while (waiting > this.o.maxQueue && this.#full.length > 1) {
      const old = this.#full.shift()!
      waiting -= old.spans
      this.dropped += old.spans
      this.#spare.push(old.body)
      if (!this.#overflowing)
        this.log()?.warn('otel: spans arrive faster than the collector takes them; the oldest are dropped', {
          queue: this.o.maxQueue,
        })
      this.#overflowing = true
    }
    this.#send()
  }

  #tick() {
    this.#timer = undefined
    this.#seal()
    this.#send()
  }

  /** full batches while a connection is free */
  #send() {
    while (!this.http.busy && this.#full.length > 0) {
      const b = this.#full.shift()!
      void this.http.send(b).then((ok) => {
        if (ok) this.exported += b.spans
        else this.dropped += b.spans
        // the request has been written and answered (retries included): its body can be written over
        if (this.#spare.length < SPARE) this.#spare.push(b.body)
        // what waited for a free connection goes now
        this.#send()
      })
    }
    if (this.#full.length === 0) this.#overflowing = false
  }

  /** sends everything written (shutdown) as connections free up, until `deadline` (Date.now()) */
  async flush(deadline: number): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#seal()
    while (this.#full.length > 0 && Date.now() < deadline) {
      this.#send()
      if (this.#full.length > 0) await new Promise((r) => setTimeout(r, 5))
    }
    for (const b of this.#full) this.dropped += b.spans
    this.#full = []
  }
}
