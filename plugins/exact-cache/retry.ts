// A retry is not a repeat. A client that sends the very request it was just answered from the
// cache is usually retrying because that answer did not serve it (Gemini CLI asked for JSON, could
// not parse what it got, and retried three times: three exact hits, the same bad answer). Such a
// request goes upstream and its answer replaces the entry.
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

/** who asked, for retry purposes: the same team, user and key */
export function askerOf(ctx: Pick<MeshContext, 'identity'>): string {
  const i = ctx.identity
  return `${i.team}\u0000${i.user}\u0000${i.keyId ?? ''}`
}

/**
 * When each asker last got each request answered from the cache (or by a retry, so that a client
 * retrying three times gets three fresh answers). Per process; bounded, oldest dropped first.
 */
export class RecentAnswers {
  private at = new Map<string, number>()
  constructor(
    private windowMs: number,
    private max = 10_000,
  ) {}

  /** was this asker answered this request from the cache within the window */
  isRetry(asker: string, key: string, now = Date.now()): boolean {
    if (this.windowMs <= 0) return false
    const t = this.at.get(asker + '\u0000' + key)
    return t !== undefined && now - t < this.windowMs
  }

  /** the asker was answered this request from the cache (or is retrying it) now */
  note(asker: string, key: string, now = Date.now()): void {
    if (this.windowMs <= 0) return
    const k = asker + '\u0000' + key
    // re-inserted so the map's order stays oldest first
    this.at.delete(k)
    this.at.set(k, now)
    if (this.at.size > this.max) {
      for (const [old, t] of this.at) {
        if (this.at.size <= this.max && now - t < this.windowMs) break
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
