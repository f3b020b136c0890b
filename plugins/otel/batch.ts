// Finished spans waiting for export, sent in batches as the SDK's BatchSpanProcessor did (its
// defaults: up to 512 a batch, sent when full or after the delay, at most 2048 waiting). Past that
// bound the oldest batch goes: the newest spans say most about now.
//
// Each span's JSON text is written at once into the request body of its batch (a Buffer that
// already holds the OTLP envelope's head): the span's string dies young and the body is never a
// string. Keeping the texts and joining them per batch cost three times as much as writing them
// (V8 builds the joined string of many small ropes slowly: about 4 µs per span, measured). A sealed
// batch is handed to the official export delegate (export.ts) as it is.
import type { Logger } from '../../core/types.ts'
import type { EncodedBatch, TraceExport } from './export.ts'

export interface BatchOptions {
  delayMs: number
  maxBatch: number
  maxQueue: number
}

/** the text around the spans of a batch: the resource and scope envelope */
export interface Envelope {
  head: string
  tail: string
}

type Batch = EncodedBatch

// a batch's body: 512 spans of ~800 bytes fit; a batch whose spans are larger is sent early
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
  readonly #head: Buffer
  readonly #tail: Buffer
  constructor(
    private readonly http: TraceExport,
    envelope: Envelope,
    private readonly o: BatchOptions,
    private readonly log: () => Logger | undefined,
  ) {
    this.#head = Buffer.from(envelope.head)
    this.#tail = Buffer.from(envelope.tail)
  }

  /** push, bound: what emitSpans writes to */
  readonly out = (spans: string, count: number): void => this.push(spans, count)

  /** `count` spans' JSON texts, comma-separated (a request's spans in one write) */
  push(span: string, count = 1): void {
    let b = this.#open
    // a UTF-8 byte is at most 3 per UTF-16 unit; the comma and the envelope's tail must fit too;
    // a batch holds maxBatch spans at most
    if (
      b !== undefined &&
      (b.size + span.length * 3 + 1 + this.#tail.length > BODY_BYTES || b.spans + count > this.o.maxBatch)
    ) {
      this.#seal()
      b = undefined
    }
    if (b === undefined) {
      b = { body: this.#spare.pop() ?? Buffer.allocUnsafeSlow(BODY_BYTES), size: this.#head.length, spans: 0 }
      this.#head.copy(b.body)
      this.#open = b
      this.#timer ??= setTimeout(() => this.#tick(), this.o.delayMs).unref()
    } else b.body[b.size++] = 0x2c // ','
    b.size += b.body.write(span, b.size)
    b.spans += count
    if (b.spans >= this.o.maxBatch) this.#seal()
  }

  /** the open batch is complete: in line for sending, the oldest dropped past the bound */
  #seal() {
    const b = this.#open
    if (!b) return
    this.#open = undefined
    b.size += this.#tail.copy(b.body, b.size)
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
