// Request ids (core/request-id.ts): random version-4 UUIDs, as the x-agentmesh-request-id header,
// the audit log and the events name a request.
import { describe, expect, it } from 'vitest'
import { newRequestId } from '../core/request-id.ts'

describe('request ids', () => {
  it('are RFC 9562 version-4 UUIDs, none twice in 100,000 (the random pool refills 390 times)', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 100_000; i++) {
      const id = newRequestId()
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      seen.add(id)
    }
    expect(seen.size).toBe(100_000)
  })

  it('use every hex digit in every random position (not a counter, not a fixed part)', () => {
    const digits = Array.from({ length: 36 }, () => new Set<string>())
    for (let i = 0; i < 5_000; i++) [...newRequestId()].forEach((c, k) => digits[k]!.add(c))
    for (const [k, set] of digits.entries()) {
      if ([8, 13, 18, 23].includes(k)) expect([...set]).toEqual(['-'])
      else if (k === 14) expect([...set]).toEqual(['4'])
      else if (k === 19) expect([...set].sort()).toEqual(['8', '9', 'a', 'b'])
      else expect(set.size).toBe(16)
    }
  })
})
