// The append queue: entries are sealed into the chain and written in batches by one drain loop,
// so a request only pays for a push (and waits only when the bounded queue is full).
import { FORMAT_VERSION, seal, sealEntry, type AuditEntry, type ChainHead } from './chain.ts'
import type { Signer } from './signer.ts'
import type { AuditStore } from './store.ts'

export interface WriterOptions {
  /** sign a checkpoint after this many entries (default 1000) */
  checkpointEvery?: number
  /** and at least this often while entries are unsigned, in seconds (default 10; 0: off) */
  checkpointSeconds?: number
  /** queue bound: past it, append() returns a promise that resolves when there is room (default 10,000) */
  queueMax?: number
  /** most records per write (default 1000) */
  batchMax?: number
  /** how long close() keeps retrying a failing store, ms (default 10 s) */
  closeTimeoutMs?: number
  log?: { warn: (msg: string, data?: Record<string, unknown>) => void; error: (msg: string, data?: Record<string, unknown>) => void }
}

type Item = { kind: 'request'; entry: AuditEntry } | { kind: 'checkpoint' }

export interface WriterStats {
  written: number
  checkpoints: number
  queued: number
  head: ChainHead
  failures: number
  conflicts: number
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export class AuditWriter {
  private queue: Item[] = []
  private waiters: Array<() => void> = []
  private draining: Promise<void> | undefined
  private head: ChainHead = { seq: 0, hash: '' }
  /** entries this writer appended since its last checkpoint */
  private unsigned = 0
  private timer: NodeJS.Timeout | undefined
  private closing = false
  private closeDeadline = Infinity
  private opened = false
  readonly stats = { written: 0, checkpoints: 0, failures: 0, conflicts: 0 }
  private readonly every: number
  private readonly queueMax: number
  private readonly batchMax: number

  constructor(readonly store: AuditStore, private signer: Signer, private options: WriterOptions = {}) {
    this.every = options.checkpointEvery ?? 1000
    this.queueMax = options.queueMax ?? 10_000
    this.batchMax = options.batchMax ?? 1000
  }

  async open(): Promise<ChainHead> {
    this.head = await this.store.open()
    this.opened = true
    // a tail left unsigned by a crash gets signed by the first checkpoint
    if (this.head.seq > 0 && this.head.kind !== 'checkpoint') this.unsigned = Math.max(this.unsigned, 1)
    const secs = this.options.checkpointSeconds ?? 10
    if (secs > 0) {
      this.timer = setInterval(() => {
        if (this.unsigned > 0 && !this.queue.some((i) => i.kind === 'checkpoint')) this.push({ kind: 'checkpoint' })
      }, secs * 1000)
      this.timer.unref()
    }
    if (this.unsigned > 0) this.push({ kind: 'checkpoint' })
    return this.head
  }

  get stat(): WriterStats {
    return { ...this.stats, queued: this.queue.length, head: { ...this.head } }
  }

  /** Queue an entry; returns a promise only when the queue is full (backpressure). */
  append(entry: AuditEntry): void | Promise<void> {
    if (!this.opened) {
      this.options.log?.error('audit: entry dropped: the audit writer is not open (appended after shutdown?)', { id: entry.id })
      return
    }
    if (this.queue.length < this.queueMax) {
      this.push({ kind: 'request', entry })
      return
    }
    return new Promise<void>((resolve) => this.waiters.push(resolve)).then(() => this.append(entry))
  }

  /** Ask for a checkpoint now (it is written after what is already queued). */
  checkpoint(): void {
    this.push({ kind: 'checkpoint' })
  }

  /** Resolves when everything queued so far is written. */
  async flush(): Promise<void> {
    while (this.draining || this.queue.length) {
      if (!this.draining) {
        if (!this.opened || (this.closing && Date.now() > this.closeDeadline)) return
        this.kick()
      }
      await this.draining
    }
  }

  /** Flush, sign a final checkpoint, close the store. */
  async close(): Promise<void> {
    if (!this.opened) return
    this.closing = true
    this.closeDeadline = Date.now() + (this.options.closeTimeoutMs ?? 10_000)
    if (this.timer) clearInterval(this.timer)
    await this.flush()
    if (this.unsigned > 0) {
      this.push({ kind: 'checkpoint' })
      await this.flush()
    }
    this.opened = false
    // entries that could not be written before the deadline are lost; say how many
    const lost = this.queue.filter((i) => i.kind === 'request').length + this.waiters.length
    if (lost) this.options.log?.error(`audit: ${lost} entries could not be written before shutdown`, { lost })
    this.queue = []
    for (const w of this.waiters.splice(0)) w()
    await this.store.close()
  }

  private push(item: Item): void {
    this.queue.push(item)
    this.kick()
  }

  private kick(): void {
    if (this.draining || !this.opened) return
    this.draining = this.drain().finally(() => {
      this.draining = undefined
    })
  }

  private async drain(): Promise<void> {
    // let the current tick's appends join this batch
    await new Promise<void>((r) => setImmediate(r))
    while (this.queue.length) {
      const items = this.queue.splice(0, this.batchMax)
      // room freed: let waiting appends in
      for (const w of this.waiters.splice(0, this.queueMax - this.queue.length)) w()
      const ok = await this.write(items)
      if (!ok) return
    }
  }

  private sealBatch(items: Item[], from: ChainHead, unsignedFrom: number) {
    const lines: string[] = []
    let { seq, hash } = from
    let kind = from.kind
    let unsigned = unsignedFrom
    let checkpoints = 0
    let entries = 0
    let checkpoint = false
    const cp = () => {
      seq++
      const s = seal({ v: FORMAT_VERSION, kind: 'checkpoint', ts: new Date().toISOString(), count: seq - 1, keyId: this.signer.keyId, seq, prev: hash }, this.signer.sign)
      lines.push(s.line)
      hash = s.hash
      kind = 'checkpoint'
      unsigned = 0
      checkpoints++
      checkpoint = true
    }
    for (const item of items) {
      if (item.kind === 'checkpoint') {
        if (unsigned > 0 || (seq > 0 && kind !== 'checkpoint')) cp()
        continue
      }
      seq++
      const s = sealEntry(item.entry, seq, hash)
      lines.push(s.line)
      hash = s.hash
      kind = 'request'
      unsigned++
      entries++
      if (unsigned >= this.every) cp()
    }
    return { lines, head: { seq, hash, kind } as ChainHead, unsigned, checkpoints, entries, checkpoint }
  }

  /** Write one batch, re-sealing on a redis conflict and retrying a failing store. */
  private async write(items: Item[]): Promise<boolean> {
    let delay = 100
    for (;;) {
      const b = this.sealBatch(items, this.head, this.unsigned)
      if (b.lines.length === 0) return true
      try {
        const res = await this.store.append(b.lines, this.head, b.head, { checkpoint: b.checkpoint })
        if (res.ok) {
          this.head = b.head
          this.unsigned = b.unsigned
          this.stats.written += b.entries
          this.stats.checkpoints += b.checkpoints
          return true
        }
        // another instance appended first (redis): re-seal on its head
        this.stats.conflicts++
        this.head = res.head
        continue
      } catch (err) {
        this.stats.failures++
        this.options.log?.error(`audit: write failed, retrying: ${(err as Error).message}`)
        if (this.closing && Date.now() > this.closeDeadline) {
          this.queue.unshift(...items)
          return false
        }
        await sleep(delay)
        delay = Math.min(delay * 2, 5000)
        try {
          this.head = await this.store.recover()
        } catch {}
      }
    }
  }
}
