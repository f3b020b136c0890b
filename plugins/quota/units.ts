// Counter units and how they are shown. Counters hold integers: tokens, micro-USD, requests.
import { createHash } from 'node:crypto'
import type { LimitKind } from './options.ts'

export const MICRO = 1_000_000
// "no limit" for the counters: large, finite (redis Lua reads it with tonumber)
export const UNLIMITED = Number.MAX_SAFE_INTEGER

export type Unit = 'tokens' | 'usd' | 'requests'
export const UNIT: Record<LimitKind, Unit> = {
  tokensPerDay: 'tokens',
  tokensPerMonth: 'tokens',
  usdPerDay: 'usd',
  usdPerMonth: 'usd',
  requestsPerMinute: 'requests',
}
export const KIND_LABEL: Record<LimitKind, string> = {
  tokensPerDay: 'tokens per day',
  tokensPerMonth: 'tokens per month',
  usdPerDay: 'USD per day',
  usdPerMonth: 'USD per month',
  requestsPerMinute: 'requests per minute',
}

/** counter-key form of a scope name: short and free of surprises */
export const counterScope = (name: string) =>
  name.length <= 140 ? name : 'h:' + createHash('sha256').update(name).digest('hex').slice(0, 32)

export const round1 = (n: number) => Math.round(n * 10) / 10

/** counter units back to the limit's own unit (USD for usd limits) */
export function toUnit(kind: LimitKind, v: number): number {
  return UNIT[kind] === 'usd' ? v / MICRO : v
}

export function fmt(unit: Unit, v: number): string {
  if (unit === 'usd') return `$${(v / MICRO).toFixed(v / MICRO < 10 ? 4 : 2)}`
  return Math.round(v).toLocaleString('en-US')
}

/** 'team:eng' -> 'team "eng"', for messages */
export function scopeLabel(name: string): string {
  if (name === 'global') return 'the global budget'
  const i = name.indexOf(':')
  return `${name.slice(0, i)} "${name.slice(i + 1)}"`
}
