// Whether one part of storage (redis, the fs storage directory, the counters file) works right
// now: what /agentmesh/health and /agentmesh/ready report, one log line when an outage starts and
// one when it ends (not one per request or per reconnect attempt), and the error requests get.
import { StorageUnavailableError } from './errors.ts'
import type { HealthCheck, Logger } from './types.ts'

const OK: HealthCheck = Object.freeze({ ok: true })

export class Availability {
  private downSince = 0
  private reason = ''

  /**
   * @param part what is down, as operators know it ("redis redis://host:6379", "counters file /x")
   * @param meanwhile what happens until it is back, for the log line
   */
  constructor(
    readonly part: string,
    private readonly log: Logger | undefined,
    private readonly meanwhile: string,
  ) {}

  get ok(): boolean {
    return this.downSince === 0
  }

  /** the part failed; the reason shown is the latest, the log line only the first of an outage */
  markDown(reason: string): void {
    this.reason = reason
    if (this.downSince) return
    this.downSince = Date.now()
    this.log?.warn(`storage: ${this.part} unavailable (${reason}); ${this.meanwhile}`)
  }

  /** the part works again */
  markUp(): void {
    if (!this.downSince) return
    const seconds = ((Date.now() - this.downSince) / 1000).toFixed(1)
    this.downSince = 0
    this.log?.warn(`storage: ${this.part} available again after ${seconds} s`)
  }

  health(): HealthCheck {
    return this.downSince
      ? { ok: false, message: `${this.part} unavailable: ${this.reason}`, since: this.downSince }
      : OK
  }

  /** what a request that needs the part gets while it is down: a 503 in the client's protocol */
  error(cause?: unknown): StorageUnavailableError {
    return new StorageUnavailableError(
      `storage unavailable: ${this.part}: ${this.reason || 'not connected'}`,
      cause === undefined ? undefined : { cause },
    )
  }
}

/** an error's message without the syscall and path Node appends (", open '/data/x'"): health is public */
export const reasonOf = (err: unknown): string =>
  ((err as Error)?.message ?? String(err)).replace(/, \w+(?: '.*')?$/, '')

/** one check for several parts: ok while all are, else every failing part's message, since the earliest */
export function mergeHealth(parts: Availability[]): HealthCheck {
  let merged: HealthCheck = OK
  for (const part of parts) {
    const h = part.health()
    if (h.ok) continue
    merged = merged.ok
      ? h
      : { ok: false, message: `${merged.message}; ${h.message}`, since: Math.min(merged.since!, h.since!) }
  }
  return merged
}
