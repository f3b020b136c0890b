// Alerts: quota warnings and blocks, tripped runs, held approvals and a high error rate, posted to
// webhooks (Slack's incoming-webhook shape or signed JSON) in the background: a request never
// waits for one. The same alert (type and scope, run or approval) is sent once per dedupe window.
// With alerts configured the core builds event objects for every request (one listener): the
// price of watching the error rate.
import { definePlugin } from '../../core/plugin.ts'
import type { MeshEvent, Plugin } from '../../core/types.ts'
import { deliver, type Alert, type DeliveryOptions, type Stats, type Target } from './deliver.ts'

export type AlertKind = 'quota_warn' | 'quota_block' | 'run_tripped' | 'approval_requested' | 'error_rate'
const KINDS: AlertKind[] = ['quota_warn', 'quota_block', 'run_tripped', 'approval_requested', 'error_rate']

export interface AlertRule extends Partial<Target> {
  on: AlertKind[]
  webhook: string
  /** 'slack' (default) or 'json' (signed with `secret`, else env AGENTMESH_ALERT_SECRET) */
  format?: 'slack' | 'json'
}

export interface AlertsOptions {
  rules: AlertRule[]
  /** one alert per type and subject per this many seconds (default 300) */
  dedupeSeconds?: number
  /** error_rate: share of 5xx answers over the window that alerts (default 0.2), with at least minRequests answers (default 20) */
  errorRate?: { threshold?: number; windowSeconds?: number; minRequests?: number }
  /** attempts after the first (default 3), first delay (default 1000 ms, doubling), per-attempt timeout (default 5000 ms) */
  delivery?: Partial<DeliveryOptions>
}

function validate(o: AlertsOptions) {
  if (!o || !Array.isArray(o.rules) || o.rules.length === 0)
    throw new Error('alerts: give rules: [{ on: [...], webhook: URL, format }]')
  o.rules.forEach((r, i) => {
    if (!Array.isArray(r.on) || r.on.some((k) => !KINDS.includes(k)))
      throw new Error(`alerts: rules[${i}].on must list ${KINDS.join(', ')}`)
    if (typeof r.webhook !== 'string' || !/^https?:\/\//.test(r.webhook))
      throw new Error(`alerts: rules[${i}].webhook must be an http(s) URL`)
    if (r.format !== undefined && r.format !== 'slack' && r.format !== 'json')
      throw new Error(`alerts: rules[${i}].format must be 'slack' or 'json'`)
  })
}

/** the alert an event raises, with the subject it is deduplicated by; undefined for other events */
function alertOf(e: MeshEvent): Alert | undefined {
  const d = e.data as any
  switch (e.type) {
    case 'quota_warn':
      return {
        type: e.type,
        key: `${e.type}:${d.scope}:${d.limit}`,
        time: e.time,
        summary: `${d.scope} at ${d.pct}% of ${d.limit} (${d.used} of ${d.max})`,
        data: { scope: d.scope, limit: d.limit, used: d.used, max: d.max, pct: d.pct },
      }
    case 'quota_block':
      return {
        type: e.type,
        key: `${e.type}:${d.scope}:${d.limit}`,
        time: e.time,
        summary: `${d.scope} blocked by ${d.limit} (${d.used} of ${d.max})`,
        data: { scope: d.scope, limit: d.limit, used: d.used, max: d.max },
      }
    case 'run_tripped':
      return {
        type: e.type,
        key: `${e.type}:${d.team}:${d.run}`,
        time: e.time,
        summary: `run ${d.run} of ${d.team} stopped: ${d.type} (${d.limit})`,
        data: { run: d.run, team: d.team, reason: d.type, limit: d.limit },
      }
    case 'approval_requested':
      return {
        type: e.type,
        key: `${e.type}:${d.approval}`,
        time: e.time,
        summary: `${d.identity?.team}/${d.identity?.user} asks for ${d.model} (rule ${d.rule}): agentmesh approve ${d.approval}`,
        data: {
          approval: d.approval,
          team: d.identity?.team,
          user: d.identity?.user,
          model: d.model,
          rule: d.rule,
          estimatedUsd: d.estimatedUsd,
        },
      }
    default:
      return undefined
  }
}

/** 5xx share of the answers in a sliding window, checked as answers arrive */
function errorRateWatch(o: NonNullable<AlertsOptions['errorRate']>) {
  const threshold = o.threshold ?? 0.2
  const windowMs = (o.windowSeconds ?? 60) * 1000
  const min = o.minRequests ?? 20
  const seen: Array<[number, boolean]> = []
  let errors = 0
  return (e: MeshEvent): Alert | undefined => {
    if (e.type !== 'response') return undefined
    const bad = (e.data as { status: number }).status >= 500
    seen.push([e.time, bad])
    if (bad) errors++
    while (seen.length && seen[0]![0] < e.time - windowMs) if (seen.shift()![1]) errors--
    if (seen.length < min || errors / seen.length < threshold) return undefined
    const rate = Math.round((errors / seen.length) * 1000) / 10
    return {
      type: 'error_rate',
      key: 'error_rate',
      time: e.time,
      summary: `${rate}% of ${seen.length} answers in the last ${windowMs / 1000} s failed (5xx)`,
      data: { rate, answers: seen.length, errors, windowSeconds: windowMs / 1000 },
    }
  }
}

export function alerts(options: AlertsOptions): Plugin {
  validate(options)
  const dedupeMs = (options.dedupeSeconds ?? 300) * 1000
  const delivery: DeliveryOptions = { retries: 3, retryDelayMs: 1000, timeoutMs: 5000, ...options.delivery }
  const stats: Stats = { sent: 0, failed: 0, deduplicated: 0 }
  const lastSent = new Map<string, number>()
  const pending = new Set<Promise<void>>()
  return definePlugin({
    name: 'alerts',
    options: {
      ...options,
      rules: options.rules.map((r) => ({
        ...r,
        webhook: `${new URL(r.webhook).origin}/***`,
        ...(r.secret ? { secret: '***' } : {}),
      })),
    },
    setup(mesh) {
      if (mesh.mode !== 'serve') return
      const errorRate = errorRateWatch(options.errorRate ?? {})
      const wantsErrorRate = options.rules.some((r) => r.on.includes('error_rate'))
      const off = mesh.on((e) => {
        const alert = alertOf(e) ?? (wantsErrorRate ? errorRate(e) : undefined)
        if (!alert) return
        const at = lastSent.get(alert.key)
        if (at !== undefined && alert.time - at < dedupeMs) {
          stats.deduplicated++
          return
        }
        lastSent.set(alert.key, alert.time)
        if (lastSent.size > 10_000) lastSent.delete(lastSent.keys().next().value!)
        for (const r of options.rules) {
          if (!r.on.includes(alert.type as AlertKind)) continue
          const target: Target = {
            webhook: r.webhook,
            format: r.format ?? 'slack',
            secret: r.secret ?? process.env.AGENTMESH_ALERT_SECRET,
          }
          // in the background: the emitting request goes on at once
          const p = deliver(alert, target, delivery, mesh.log, stats).finally(() => pending.delete(p))
          pending.add(p)
        }
      })
      mesh.addHealthCheck('alerts', () => ({
        ok: true,
        message: `sent ${stats.sent}, failed ${stats.failed}, deduplicated ${stats.deduplicated}`,
      }))
      return async () => {
        off()
        await Promise.allSettled([...pending])
      }
    },
  })
}
