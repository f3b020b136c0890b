// Publishing the signed head after each checkpoint: beside the log, in mesh storage, to
// witnesses. Off the request path: a target gets the newest head when its previous write is done
// (heads written meanwhile are skipped, the newest one covers them), a failing target is logged
// once per outage and retried, and no target waits for another.
import { checkHeadSignature, readHeads, signHead, type CheckpointRef, type SignedHead } from './head.ts'
import type { PublicKeyInfo, Signer } from './signer.ts'

export interface HeadTarget {
  /** for log lines and verify messages (no secrets: a webhook is named by its origin) */
  name: string
  write(head: SignedHead): Promise<void>
  /** targets that can be read back: the writer checks the log against them at open */
  read?(): Promise<string | object | null | undefined>
  /** least time between two writes (default: the publisher's; witnesses: 1 s) */
  minIntervalMs?: number
  /** a write or read taking longer fails (default 5 s) */
  timeoutMs?: number
}

type Log = { warn: (msg: string) => void; error: (msg: string) => void }

interface TargetState {
  target: HeadTarget
  writtenSeq: number
  lastAt: number
  running?: Promise<void>
  failingSince?: number
  attempt: number
}

/** a pause something waits for (settle, close): it keeps the process alive until it ends */
const pause = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
/** a failing target's backoff: nobody waits for it, and it must not hold a finished process open */
const backoff = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref())

/**
 * The promise, or a rejection after ms; the late result is ignored, not left unhandled. The
 * timer keeps the process alive (someone awaits it) and is cleared as soon as either settles.
 */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
  })
  p.catch(() => {})
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

export class HeadPublisher {
  /** the newest head signed so far */
  latest: SignedHead | undefined
  private states: TargetState[]
  private stopped = false
  private durableSeq = 0
  private syncing: Promise<void> | undefined

  constructor(
    targets: HeadTarget[],
    private signer: Signer,
    /** makes the log durable up to what was appended (a head must never be ahead of the log on disk) */
    private sync: () => Promise<void>,
    private log?: Log,
    /**
     * least time between two writes to a target that sets none: under load checkpoints come
     * faster than a head needs to move (each write costs two fsyncs), the newest one wins
     */
    private minIntervalMs = 250,
  ) {
    this.states = targets.map((target) => ({ target, writtenSeq: 0, lastAt: 0, attempt: 0 }))
  }

  publish(cp: CheckpointRef): void {
    if (this.stopped || (this.latest && cp.seq <= this.latest.seq)) return
    this.latest = signHead(this.signer, cp)
    for (const s of this.states) this.pump(s)
  }

  /** The newest head the readable targets hold that verifies with these keys; others are reported. */
  async newest(keys: Map<string, PublicKeyInfo>): Promise<SignedHead | undefined> {
    let best: SignedHead | undefined
    for (const s of this.states) {
      if (!s.target.read) continue
      let value: Awaited<ReturnType<typeof s.target.read>>
      try {
        value = await withTimeout(s.target.read(), s.target.timeoutMs ?? 5000, s.target.name)
      } catch (err) {
        this.log?.warn(`audit: cannot read the signed head from ${s.target.name}: ${(err as Error).message}`)
        continue
      }
      const { found, bad } = readHeads(s.target.name, value)
      for (const b of bad) this.log?.warn(`audit: ignoring ${b.from}: not a signed head (${b.error})`)
      for (const f of found) {
        const why = checkHeadSignature(f.head, keys)
        if (why) this.log?.warn(`audit: ignoring the signed head in ${f.from}: ${why}`)
        else if (!best || f.head.seq > best.seq) best = f.head
      }
    }
    return best
  }

  /**
   * Resolves when every working target has the newest head (or after timeoutMs). A failing target
   * keeps retrying on its own: shutdown and flush do not wait for a witness that is down.
   */
  async settle(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const running = this.states
        .filter((s) => !s.failingSince)
        .map((s) => s.running)
        .filter(Boolean)
      if (!running.length) return
      const left = deadline - Date.now()
      if (left <= 0) return
      await withTimeout(Promise.all(running), left, 'settle').catch(() => {})
    }
  }

  /** The log went back (emptied, a redis restarted without persistence): heads start over from it. */
  restart(): void {
    this.latest = undefined
    this.durableSeq = 0
    for (const s of this.states) s.writtenSeq = 0
  }

  /** No more writes after the ones running now. */
  stop(): void {
    this.stopped = true
  }

  private pump(s: TargetState): void {
    if (s.running || this.stopped || !this.latest || s.writtenSeq === this.latest.seq) return
    s.running = this.writeOne(s).finally(() => {
      s.running = undefined
      this.pump(s)
    })
  }

  private async writeOne(s: TargetState): Promise<void> {
    const wait = s.lastAt + (s.target.minIntervalMs ?? this.minIntervalMs) - Date.now()
    if (wait > 0) await pause(wait)
    if (s.failingSince) await backoff(Math.min(500 * 2 ** s.attempt, 30_000))
    if (this.stopped) return
    const head = this.latest!
    s.lastAt = Date.now()
    try {
      await this.durable(head.seq)
      await withTimeout(s.target.write(head), s.target.timeoutMs ?? 5000, s.target.name)
      s.writtenSeq = head.seq
      if (s.failingSince)
        this.log?.warn(
          `audit: the signed head reaches ${s.target.name} again (after ${Math.round((Date.now() - s.failingSince) / 1000)} s)`,
        )
      s.failingSince = undefined
      s.attempt = 0
    } catch (err) {
      // once per outage: a witness that is down would otherwise log every second
      if (!s.failingSince)
        this.log?.error(
          `audit: cannot write the signed head to ${s.target.name}: ${(err as Error).message}; retrying (logged once until it works)`,
        )
      s.failingSince ??= Date.now()
      s.attempt++
    }
  }

  /** one sync shared by the targets; a sync started after a head was published covers it */
  private async durable(seq: number): Promise<void> {
    while (this.durableSeq < seq) {
      if (!this.syncing) {
        const covers = this.latest?.seq ?? seq
        this.syncing = this.sync()
          .then(() => {
            this.durableSeq = Math.max(this.durableSeq, covers)
          })
          .finally(() => {
            this.syncing = undefined
          })
      }
      await this.syncing
    }
  }
}
