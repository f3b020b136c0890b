// Calendar windows in a time zone: a day runs from local midnight to local midnight (23 or 25
// hours on DST days), a month from the 1st to the 1st. Minutes are plain UTC minutes.

export interface Window {
  /** stable id used in counter keys: d2026-11-27, m2026-11, n29412345 */
  id: string
  /** when the window ends, ms since the epoch */
  resetAt: number
}

const formatters = new Map<string, Intl.DateTimeFormat>()

/** Throws a RangeError for a zone the runtime does not know. */
export function zoneFormatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone)
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    })
    formatters.set(timeZone, f)
  }
  return f
}

interface Parts {
  y: number
  mo: number
  d: number
  h: number
  mi: number
  s: number
}

function parts(t: number, timeZone: string): Parts {
  const p: Record<string, number> = {}
  for (const { type, value } of zoneFormatter(timeZone).formatToParts(new Date(t)))
    if (type !== 'literal') p[type] = Number(value)
  return { y: p.year!, mo: p.month!, d: p.day!, h: p.hour! % 24, mi: p.minute!, s: p.second! }
}

/** UTC ms of local wall-clock time y-mo-d 00:00 in the zone (the first instant of that local day). */
function localMidnight(y: number, mo: number, d: number, timeZone: string): number {
  const wall = Date.UTC(y, mo - 1, d)
  let guess = wall
  // two rounds settle the zone offset, also across a DST change
  for (let i = 0; i < 3; i++) {
    const p = parts(guess, timeZone)
    const offset = Date.UTC(p.y, p.mo - 1, p.d, p.h, p.mi, p.s) - guess
    const next = wall - offset
    if (next === guess) break
    guess = next
  }
  return guess
}

const pad = (n: number) => String(n).padStart(2, '0')

export function dayWindow(t: number, timeZone: string): Window {
  const p = parts(t, timeZone)
  const tomorrow = new Date(Date.UTC(p.y, p.mo - 1, p.d + 1))
  return {
    id: `d${p.y}-${pad(p.mo)}-${pad(p.d)}`,
    resetAt: localMidnight(tomorrow.getUTCFullYear(), tomorrow.getUTCMonth() + 1, tomorrow.getUTCDate(), timeZone),
  }
}

export function monthWindow(t: number, timeZone: string): Window {
  const p = parts(t, timeZone)
  const next = p.mo === 12 ? { y: p.y + 1, mo: 1 } : { y: p.y, mo: p.mo + 1 }
  return { id: `m${p.y}-${pad(p.mo)}`, resetAt: localMidnight(next.y, next.mo, 1, timeZone) }
}

export function minuteWindow(t: number): Window {
  const n = Math.floor(t / 60_000)
  return { id: `n${n}`, resetAt: (n + 1) * 60_000 }
}

/** "5h 12m", "42s": for messages */
export function humanDuration(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000))
  if (s < 60) return `${s}s`
  const m = Math.ceil(s / 60)
  if (m < 60) return `${m}m`
  const h = Math.floor(m / 60)
  if (h < 48) return `${h}h ${m % 60}m`
  return `${Math.floor(h / 24)}d ${h % 24}h`
}

/** "24h", "30m", "7d", "90s", "1h30m" or a number of seconds; undefined when malformed. */
export function parseDuration(input: unknown): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) && input > 0 ? input * 1000 : undefined
  if (typeof input !== 'string') return undefined
  const s = input.trim().toLowerCase()
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000
  if (!/^(\d+(\.\d+)?(w|d|h|m|s))+$/.test(s)) return undefined
  const unit: Record<string, number> = { w: 604_800_000, d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000 }
  let ms = 0
  for (const [, n, , u] of s.matchAll(/(\d+(\.\d+)?)(w|d|h|m|s)/g)) ms += Number(n) * unit[u!]!
  return ms > 0 ? ms : undefined
}
