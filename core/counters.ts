// BOOTSTRAP (lead): replaced by the governance helper's atomic counters.
import type { Counters } from './types.ts'
export function createMemoryCounters(): Counters {
  const m = new Map<string, number>()
  return {
    async incr(k, d) { const v = (m.get(k) ?? 0) + d; m.set(k, v); return v },
    async get(k) { return m.get(k) ?? 0 },
    async reserve(keys, d, limits) { const vals = keys.map((k) => m.get(k) ?? 0); if (vals.some((v, i) => v + d > limits[i]!)) return { ok: false, values: vals }; keys.forEach((k, i) => m.set(k, vals[i]! + d)); return { ok: true, values: vals.map((v) => v + d) } },
    async del(k) { m.delete(k) },
  }
}
export function createRedisCounters(_redis: unknown, _prefix: string): Counters { return createMemoryCounters() }
