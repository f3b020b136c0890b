// The append queue: entries are sealed into the chain and written in batches by one drain loop,
// so a request only pays for a push (and waits only when the bounded queue is full).
//
// A store that cannot be written (full disk, I/O error, redis down) does not lose entries or
// throw: the batch stays in memory and is retried with backoff, the outage is logged once, and
// `failure` says so (the plugin reports it in health and refuses new requests under 'refuse').
// A partial write is detected on retry and finished rather than duplicated, so the chain stays
// valid. After each checkpoint the signed head is published (publish.ts).
import { FORMAT_VERSION, seal, sealEntry, type AuditEntry, type ChainHead } from './chain.ts'
import type { CheckpointRef, SignedHead } from './head.ts'
import { HeadPublisher, type HeadTarget } from './publish.ts'
import { headNotReached, scanUnsignedTail, type UnsignedTail } from './recovery.ts'
import type { PublicKeyInfo, Signer } from './signer.ts'
import { sealPrepared, type PreparedEntry } from './sliced.ts'
import { Slicer } from '../../core/slicer.ts'
import type { AuditStore, SealedLine } from './store.ts'

export type OnFailure = 'refuse' | 'serve'

export interface WriterOptions {
  /** sign a checkpoint after this many entries (default 1000) */
  checkpointEvery?: number
  /** and at most this many seconds after an entry was written unsigned (default 1; 0: off) */
  checkpointSeconds?: number
  /** queue bound: past it, append() returns a promise that resolves when there is room (default 10,000) */
  queueMax?: number
  /** most records per write (default 1000) */
  batchMax?: number
  /** how long close() keeps retrying a failing store, ms (default 10 s) */
  closeTimeoutMs?: number
  /**
   * While the store fails, appends do not wait for room. 'refuse' (default): an entry marked
   * `keep` (an answered request) is queued past queueMax, since the plugin refuses new requests
   * meanwhile; 'serve': past queueMax entries are dropped and counted.
   */
  onFailure?: OnFailure
  /** more places for the signed head (mesh storage, witnesses); the store's own slot always gets it */
  headTargets?: HeadTarget[]
  /** keys a signed head found at open may be signed with (default: the signer's) */
  publicKeys?: PublicKeyInfo[]
  /** longest pause between two attempts on a failing store, ms (default 1000) */
  retryMaxMs?: number
  /** least time between two writes of the signed head beside the log and in storage, ms (default 250; witnesses: 1 s) */
  headIntervalMs?: number
  log?: {
    warn: (msg: string, data?: Record<string, unknown>) => void
    error: (msg: string, data?: Record<string, unknown>) => void
  }
}

/** What a checkpoint records besides its place in the chain. */
interface CheckpointNote {
  /** it seals entries a writer that stopped left unsigned */
  recovered?: true
  /** at open the log did not reach this signed head: records were cut off or replaced */
  lostHead?: SignedHead
  /** the store could not be written for a while */
  outage?: { since: string; until: string; refused: number; dropped: number }
}

/** told each entry's place in the chain once its batch is in the store (the plugin's `audit_entry` event) */
export type OnWritten = (type: 'audit_entry', data: { id: string; seq: number }) => void

type Item =
  // seq: set when the batch is sealed (again if it is re-sealed after another writer moved the head)
  // prepared: an entry of megabytes, printed ahead and sealed in slices of the event loop
  | { kind: 'request'; entry: AuditEntry; written?: OnWritten; seq?: number; prepared?: PreparedEntry }
  | { kind: 'checkpoint'; note?: CheckpointNote }

export interface WriterStats {
  written: number
  checkpoints: number
  queued: number
  head: ChainHead
  failures: number
  conflicts: number
}

/** The store cannot be written right now. */
export interface WriterFailure {
  /** epoch ms */
  since: number
  /** the last error, without secrets */
  reason: string
  /** entries waiting in memory */
  held: number
  /** requests the plugin refused meanwhile */
  refused: number
  /** entries dropped meanwhile (onFailure 'serve' past queueMax, or not-answered requests past it) */
  dropped: number
}

/** A batch sealed from a chain head, and how much of it the store already holds. */
interface Job {
  items: Item[]
  from: ChainHead
  lines: SealedLine[]
  /** hash of each line, to recognise how far a failed write got */
  hashes: string[]
  /** indexes of the checkpoint lines */
  checkpointLines: number[]
  head: ChainHead
  unsigned: number
  entries: number
  /** the last checkpoint of the batch, for the signed head */
  lastCheckpoint?: CheckpointRef
  /** lines already in the store (a partial write, or an attempt whose answer was lost) */
  done: number
}

/** a slice of the event loop an entry of megabytes is sealed in */
const SEAL_SLICE_MS = 10

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** how long an opening writer waits for a writer that looks alive to sign the tail (redis: announcements last 5 s) */
const OTHERS_WAIT_MS = 6000

/** Errors that are the deployment's configuration, not a sick disk or network: they fail the start. */
function isConfigError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code
  return code === 'ELOCKED' || code === 'EACCES' || code === 'EPERM' || code === 'ENOTDIR' || code === 'EISDIR'
}

/**
 * An error in one line without URL credentials. `forClients`: also without file paths, since
 * it goes into 503 answers and the health check (the operator's log line keeps them).
 */
function describeError(err: unknown, forClients = false): string {
  const e = err as NodeJS.ErrnoException
  const text = (e?.message || String(err)).split('\n')[0]!.slice(0, 300)
  const withCode = e?.code && !text.includes(e.code) ? `${e.code}: ${text}` : text
  const safe = withCode.replace(/(\/\/)[^/@\s]*@/g, '$1***@')
  return forClients ? safe.replace(/ '[^']*'/g, '') : safe
}

export class AuditWriter {
  private queue: Item[] = []
  private waiters: Array<() => void> = []
  private draining: Promise<void> | undefined
  private head: ChainHead = { seq: 0, hash: '' }
  /** entries this writer appended since its last checkpoint */
  private unsigned = 0
  private checkpointTimer: NodeJS.Timeout | undefined
  private closing = false
  private closeDeadline = Infinity
  /** accepting appends (between open and close) */
  private opened = false
  /** the store is open (a store that failed to open at start is retried by the drain loop) */
  private connected = false
  /** entries of the batch being written */
  private inFlight = 0
  private failing: Omit<WriterFailure, 'held'> | undefined
  /** an outage note waiting for the next checkpoint */
  private pendingNote: CheckpointNote | undefined
  readonly stats = { written: 0, checkpoints: 0, failures: 0, conflicts: 0 }
  readonly heads: HeadPublisher
  private readonly every: number
  private readonly queueMax: number
  private readonly batchMax: number
  private readonly checkpointMs: number

  constructor(
    readonly store: AuditStore,
    private signer: Signer,
    private options: WriterOptions = {},
  ) {
    this.every = options.checkpointEvery ?? 1000
    this.queueMax = options.queueMax ?? 10_000
    this.batchMax = options.batchMax ?? 1000
    this.checkpointMs = (options.checkpointSeconds ?? 1) * 1000
    const own: HeadTarget = {
      name: store.name === 'fs' ? 'head.json beside the log' : 'the signed-head key beside the log',
      write: (h) => store.writeHead(h),
      read: () => store.readHead(),
    }
    this.heads = new HeadPublisher(
      [own, ...(options.headTargets ?? [])],
      signer,
      () => store.sync(),
      options.log,
      options.headIntervalMs,
    )
  }

  /**
   * Open the store, seal what a stopped writer left unsigned, check the log still reaches its
   * signed head. A store that cannot be opened for a reason other than configuration (a full
   * disk, redis down) does not fail the start: the writer reports the failure and keeps trying.
   */
  async open(): Promise<ChainHead> {
    try {
      await this.connect()
    } catch (err) {
      if (isConfigError(err)) throw err
      this.failed(err)
    }
    this.opened = true
    if (!this.connected || this.queue.length) this.kick()
    return this.head
  }

  get stat(): WriterStats {
    return { ...this.stats, queued: this.queue.length, head: { ...this.head } }
  }

  /** Why the store cannot be written, while it cannot (cheap: read on every request under 'refuse'). */
  get failureReason(): string | undefined {
    return this.failing?.reason
  }

  /** Set while the store cannot be written. */
  get failure(): WriterFailure | undefined {
    return (
      this.failing && { ...this.failing, held: this.queue.filter((i) => i.kind === 'request').length + this.inFlight }
    )
  }

  /**
   * Queue an entry; returns a promise only when the queue is full (backpressure). `keep`: the
   * entry of a request that was answered, which a failing store must not make us drop.
   * `prepared`: the entry's text made ahead in slices (prepareEntry), for an entry of megabytes.
   */
  append(entry: AuditEntry, keep = true, written?: OnWritten, prepared?: PreparedEntry): void | Promise<void> {
    if (!this.opened) {
      this.options.log?.error('audit: entry dropped: the audit writer is not open (appended after shutdown?)', {
        id: entry.id,
      })
      return
    }
    if (this.queue.length < this.queueMax) {
      this.push({ kind: 'request', entry, written, prepared })
      return
    }
    if (this.failing) {
      // waiting for room could last the whole outage, holding the response
      if (keep && (this.options.onFailure ?? 'refuse') === 'refuse')
        this.push({ kind: 'request', entry, written, prepared })
      else this.failing.dropped++
      return
    }
    return new Promise<void>((resolve) => this.waiters.push(resolve)).then(() =>
      this.append(entry, keep, written, prepared),
    )
  }

  /** The plugin refused a request because the store fails: counted for the outage note. */
  noteRefused(): void {
    if (this.failing) this.failing.refused++
  }

  /** Ask for a checkpoint now (it is written after what is already queued). */
  checkpoint(): void {
    this.push({ kind: 'checkpoint' })
  }

  /** Resolves when everything queued so far is written and its signed head published. */
  async flush(): Promise<void> {
    while (this.draining || this.queue.length) {
      if (!this.draining) {
        if (!this.opened || (this.closing && Date.now() > this.closeDeadline)) return
        this.kick()
      }
      await this.draining
    }
    await this.heads.settle()
  }

  /** Flush, sign a final checkpoint, publish its head, close the store. */
  async close(): Promise<void> {
    if (!this.opened) return
    this.closing = true
    this.closeDeadline = Date.now() + (this.options.closeTimeoutMs ?? 10_000)
    if (this.checkpointTimer) clearTimeout(this.checkpointTimer)
    await this.flush()
    if (this.unsigned > 0 && this.connected) {
      this.push({ kind: 'checkpoint' })
      await this.flush()
    }
    this.opened = false
    await this.heads.settle(Math.max(1000, this.closeDeadline - Date.now()))
    this.heads.stop()
    // entries that could not be written before the deadline are lost; say how many
    const lost = this.queue.filter((i) => i.kind === 'request').length + this.waiters.length
    if (lost) this.options.log?.error(`audit: ${lost} entries could not be written before shutdown`, { lost })
    this.queue = []
    for (const w of this.waiters.splice(0)) w()
    await this.store.close()
  }

  /** Open the store and queue the checkpoint that seals what the last writer left unsigned. */
  private async connect(): Promise<void> {
    const head = await this.store.open()
    // the signed head before the log's tail: a head is published only after its checkpoint is
    // written, so the tail read next reaches it unless the log was cut
    const keys = new Map([...(this.options.publicKeys ?? []), this.signer].map((k) => [k.keyId, k]))
    const signed = await this.heads.newest(keys)
    const { tail, orphaned } = await this.unsignedTail()
    this.head = head
    this.unsigned = tail.entries
    const note: CheckpointNote = {}
    const notReached = signed && headNotReached(signed, tail)
    if (notReached) {
      note.lostHead = signed
      this.options.log?.error(
        `audit: ${notReached}: records were cut off or replaced while no writer ran; the next checkpoint records the lost head, and audit verify reports it`,
      )
    }
    if (orphaned) {
      note.recovered = true
      const where = `after ${tail.checkpoint.seq ? `the last checkpoint (seq ${tail.checkpoint.seq})` : 'the start'}`
      if (tail.problem)
        this.options.log?.error(
          `audit: the ${tail.entries} unsigned entries ${where} do not verify as a chain (${tail.problem}); sealed as recovered, and audit verify names the break`,
        )
      else
        this.options.log?.warn(
          `audit: ${tail.entries} entries ${where} were left unsigned by a writer that stopped; sealed now, marked recovered`,
        )
    }
    this.connected = true
    const marked = note.lostHead || note.recovered
    if (marked || this.unsigned > 0) this.queue.unshift({ kind: 'checkpoint', note: marked ? note : undefined })
  }

  /**
   * The entries after the last checkpoint, and whether their writer is gone. On redis another
   * writer may be alive to sign them; a crashed one still looks alive for a few seconds, so wait
   * (bounded) until the tail gets signed or the other writers' announcements expire.
   */
  private async unsignedTail(): Promise<{ tail: UnsignedTail; orphaned: boolean }> {
    let tail = await scanUnsignedTail(this.store.linesBackward())
    // asked even for an empty tail: on redis the question also announces this writer to the others
    let others = (await this.store.othersAlive?.()) ?? false
    if (tail.entries === 0) return { tail, orphaned: false }
    const candidates = tail.newestSeq
    const until = Date.now() + OTHERS_WAIT_MS
    while (others) {
      if (Date.now() > until) return { tail, orphaned: false }
      await sleep(250)
      tail = await scanUnsignedTail(this.store.linesBackward())
      // a live writer signed them: nothing is orphaned (what follows is that writer's own tail)
      if (tail.checkpoint.seq > candidates) return { tail, orphaned: false }
      others = await this.store.othersAlive!()
    }
    return { tail, orphaned: tail.entries > 0 }
  }

  private push(item: Item): void {
    this.queue.push(item)
    this.kick()
  }

  private kick(): void {
    if (this.draining || !this.opened) return
    this.draining = this.drain()
      .catch((err) => this.options.log?.error(`audit: writer stopped on an unexpected error: ${describeError(err)}`))
      .finally(() => {
        this.draining = undefined
      })
  }

  private async drain(): Promise<void> {
    // let the current tick's appends join this batch
    await new Promise<void>((r) => setImmediate(r))
    for (let attempt = 0; !this.connected; ) {
      // shutting down with nothing to write: no reason to wait for the store
      if (this.closing && !this.queue.some((i) => i.kind === 'request')) return
      try {
        await this.connect()
        if (!this.queue.length) this.recovered()
      } catch (err) {
        this.failed(err)
        if (!(await this.backoff(attempt++))) return
      }
    }
    while (this.queue.length) {
      const items = this.queue.splice(0, this.batchMax)
      // room freed: let waiting appends in
      for (const w of this.waiters.splice(0, this.queueMax - this.queue.length)) w()
      const ok = await this.write(items)
      if (!ok) return
    }
  }

  // async only for an entry of megabytes: its line is filled and hashed in slices of the event loop
  private async seal(items: Item[], from: ChainHead, unsignedFrom: number): Promise<Job> {
    const job: Job = {
      items,
      from,
      lines: [],
      hashes: [],
      checkpointLines: [],
      head: from,
      unsigned: unsignedFrom,
      entries: 0,
      done: 0,
    }
    let { seq, hash } = from
    let kind = from.kind
    let unsigned = unsignedFrom
    let outage = this.pendingNote?.outage
    let slicer: Slicer | undefined
    const cp = (note?: CheckpointNote) => {
      seq++
      const ts = new Date().toISOString()
      const extra = outage ? { ...note, outage } : note
      outage = undefined
      const s = seal(
        {
          v: FORMAT_VERSION,
          kind: 'checkpoint',
          ts,
          count: seq - 1,
          keyId: this.signer.keyId,
          ...extra,
          seq,
          prev: hash,
        },
        this.signer.sign,
      )
      job.checkpointLines.push(job.lines.length)
      job.lines.push(s.line)
      job.hashes.push(s.hash)
      job.lastCheckpoint = { seq, hash: s.hash, ts, recovered: !!extra?.recovered }
      hash = s.hash
      kind = 'checkpoint'
      unsigned = 0
    }
    for (const item of items) {
      if (item.kind === 'checkpoint') {
        if (item.note || unsigned > 0 || (seq > 0 && kind !== 'checkpoint')) cp(item.note)
        continue
      }
      seq++
      item.seq = seq
      const s = item.prepared
        ? await sealPrepared(item.prepared, seq, hash, (slicer ??= new Slicer(SEAL_SLICE_MS)))
        : sealEntry(item.entry, seq, hash)
      job.lines.push(s.line)
      job.hashes.push(s.hash)
      hash = s.hash
      kind = 'request'
      unsigned++
      job.entries++
      if (unsigned >= this.every) cp()
    }
    job.head = { seq, hash, kind } as ChainHead
    job.unsigned = unsigned
    return job
  }

  /** The chain head after the first n lines of a job. */
  private headAfter(job: Job, n: number): ChainHead {
    if (n === 0) return job.from
    return {
      seq: job.from.seq + n,
      hash: job.hashes[n - 1]!,
      kind: job.checkpointLines.includes(n - 1) ? 'checkpoint' : 'request',
    }
  }

  /** Write one batch: finish a partial write, re-seal when another instance moved the head, retry a failing store. */
  private async write(items: Item[]): Promise<boolean> {
    const job = await this.seal(items, this.head, this.unsigned)
    if (job.lines.length === 0) return true
    this.inFlight = job.entries
    let attempt = 0
    // after a failed attempt the store may hold part of the batch: read its head back first
    let unsure = false
    try {
      for (;;) {
        try {
          if (unsure) {
            await this.place(job, await this.store.recover())
            unsure = false
          }
          if (job.done === job.lines.length) return this.commit(job)
          const lines = job.done ? job.lines.slice(job.done) : job.lines
          const res = await this.store.append(lines, this.headAfter(job, job.done), job.head, {
            checkpoint: job.checkpointLines.some((i) => i >= job.done),
          })
          if (res.ok) return this.commit(job)
          await this.place(job, res.head)
        } catch (err) {
          this.failed(err)
          unsure = true
          if (!(await this.backoff(attempt++))) {
            this.queue.unshift(...job.items)
            return false
          }
        }
      }
    } finally {
      this.inFlight = 0
    }
  }

  /** Where the store's head is: inside this batch (that much landed), or another writer's (re-seal on it). */
  private async place(job: Job, head: ChainHead): Promise<void> {
    const n = head.seq - job.from.seq
    if (n >= 0 && n <= job.lines.length && (n === 0 ? head.hash === job.from.hash : job.hashes[n - 1] === head.hash)) {
      job.done = n
      return
    }
    this.stats.conflicts++
    if (head.seq < job.from.seq) job.items = this.logWentBack(head, job.items)
    this.head = head
    Object.assign(job, await this.seal(job.items, head, this.unsigned))
  }

  /** The shared log is shorter than what this writer wrote (emptied, or a redis restarted without persistence). */
  private logWentBack(head: ChainHead, items: Item[]): Item[] {
    const lost = this.heads.latest
    this.heads.restart()
    const first = items[0]
    if (!lost || lost.seq <= head.seq || (first?.kind === 'checkpoint' && first.note?.lostHead)) return items
    this.options.log?.error(
      `audit: the log went back from seq ${lost.seq} to seq ${head.seq} (emptied or cut, e.g. a redis restarted without persistence); the next checkpoint records the lost head, and audit verify reports it`,
    )
    return [{ kind: 'checkpoint', note: { lostHead: lost } }, ...items]
  }

  private commit(job: Job): true {
    this.head = job.head
    this.unsigned = job.unsigned
    this.stats.written += job.entries
    this.stats.checkpoints += job.checkpointLines.length
    if (job.checkpointLines.length && this.pendingNote) this.pendingNote = undefined
    if (job.lastCheckpoint) this.heads.publish(job.lastCheckpoint)
    for (const item of job.items)
      if (item.kind === 'request' && item.written) item.written('audit_entry', { id: item.entry.id, seq: item.seq! })
    this.recovered()
    this.armCheckpointTimer()
    return true
  }

  /** a crash leaves at most checkpointSeconds of entries unsigned */
  private armCheckpointTimer(): void {
    if (this.unsigned === 0 && this.checkpointTimer) {
      clearTimeout(this.checkpointTimer)
      this.checkpointTimer = undefined
    }
    if (this.checkpointMs <= 0 || this.unsigned === 0 || this.checkpointTimer || this.closing) return
    this.checkpointTimer = setTimeout(() => {
      this.checkpointTimer = undefined
      if (this.unsigned > 0) this.push({ kind: 'checkpoint' })
    }, this.checkpointMs)
    this.checkpointTimer.unref()
  }

  private async backoff(attempt: number): Promise<boolean> {
    if (this.closing && Date.now() > this.closeDeadline) return false
    await sleep(Math.min(100 * 2 ** attempt, this.options.retryMaxMs ?? 1000))
    return true
  }

  /** A write or open failed: logged once per outage, the rest only updates the reason. */
  private failed(err: unknown): void {
    this.stats.failures++
    const reason = describeError(err, true)
    if (this.failing) {
      this.failing.reason = reason
      return
    }
    this.failing = { since: Date.now(), reason, refused: 0, dropped: 0 }
    const policy =
      (this.options.onFailure ?? 'refuse') === 'refuse'
        ? 'new requests are refused until it can'
        : 'requests are served meanwhile (onFailure serve)'
    this.options.log?.error(
      `audit: cannot write the audit log: ${describeError(err)}; entries are held in memory and retried; ${policy} (logged once until it recovers)`,
    )
    // appends waiting for room would wait the whole outage: let them in (or drop them) now
    for (const w of this.waiters.splice(0)) w()
  }

  private recovered(): void {
    const f = this.failing
    if (!f) return
    this.failing = undefined
    const secs = ((Date.now() - f.since) / 1000).toFixed(1)
    const counts = [f.refused && `${f.refused} requests were refused`, f.dropped && `${f.dropped} entries were dropped`]
      .filter(Boolean)
      .join(', ')
    this.options.log?.warn(
      `audit: the audit log is writable again after ${secs} s; writing the ${this.queue.filter((i) => i.kind === 'request').length + this.inFlight} entries held meanwhile${counts ? `; ${counts}` : ''}`,
    )
    // the outage goes into the chain itself, on a checkpoint of its own if need be
    this.pendingNote = {
      outage: {
        since: new Date(f.since).toISOString(),
        until: new Date().toISOString(),
        refused: f.refused,
        dropped: f.dropped,
      },
    }
    this.push({ kind: 'checkpoint', note: {} })
  }
}
