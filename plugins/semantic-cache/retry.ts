// A retry is not a repeat: the same asker sending the very prompt it was just answered from the
// cache is usually retrying because that answer did not serve it. (The exact cache has its own
// copy of this: plugins do not import each other; they share only the ctx.meta flag below.)
import { createHash } from 'node:crypto'
import type { MeshContext } from '../../core/types.ts'

/** published by a cache that found a retry, so that no later cache serves the request either */
export interface CacheRetry {
  by: string
}

declare module '../../core/types.ts' {
  interface MeshState {
    /** a cache found this request to be a client's retry: it goes upstream */
    cacheRetry?: CacheRetry
  }
}

/** the same team, user and key, the same partition and wording */
export function retryKey(ctx: Pick<MeshContext, 'identity'>, partition: string, text: string): string {
  const i = ctx.identity
  return createHash('sha256')
    .update(`${i.team}\u0000${i.user}\u0000${i.keyId ?? ''}\u0000${partition}\u0000${text}`)
    .digest('base64url')
}

/**
 * When each asker last got each prompt answered from this cache (or by a retry, so that a client
 * retrying three times gets three fresh answers), and by which entry. Per process; bounded,
 * oldest dropped first.
 */
export class RecentAnswers {
  private at = new Map<string, { t: number; entry?: string }>()
  constructor(
    private windowMs: number,
    private max = 10_000,
  ) {}

  /** the entry that answered this key within the window ('' when a retry did), or undefined */
  retryOf(key: string, now = Date.now()): string | undefined {
    if (this.windowMs <= 0) return undefined
    const r = this.at.get(key)
    return r && now - r.t < this.windowMs ? (r.entry ?? '') : undefined
  }

  note(key: string, entry?: string, now = Date.now()): void {
    if (this.windowMs <= 0) return
    this.at.delete(key)
    this.at.set(key, entry === undefined ? { t: now } : { t: now, entry })
    if (this.at.size > this.max) {
      for (const [old, r] of this.at) {
        if (this.at.size <= this.max && now - r.t < this.windowMs) break
        this.at.delete(old)
      }
    }
  }
}

/** `temperature` above 0 (or left to the vendor, whose default samples): the answer varies */
export function isSampled(params: Record<string, unknown> | undefined): boolean {
  const t = params?.temperature
  return t === undefined || t === null || (typeof t === 'number' && t > 0)
}
