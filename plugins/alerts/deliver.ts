// Delivering one alert to a webhook in the background: a timeout per attempt, a few retries with
// exponential backoff, then it is logged and counted as failed (never retried forever). `json`
// bodies are signed: X-AgentMesh-Signature is sha256=HMAC(secret, timestamp + "." + body).
import { createHmac } from 'node:crypto'
import type { Logger } from '../../core/types.ts'

export interface Alert {
  type: string
  key: string
  time: number
  summary: string
  data: Record<string, unknown>
}
export interface Target {
  webhook: string
  format: 'slack' | 'json'
  secret?: string
}
export interface DeliveryOptions {
  retries: number
  retryDelayMs: number
  timeoutMs: number
}
export interface Stats {
  sent: number
  failed: number
  deduplicated: number
}

export function render(alert: Alert, format: 'slack' | 'json'): string {
  if (format === 'slack') return JSON.stringify({ text: `:rotating_light: AgentMesh ${alert.type}: ${alert.summary}` })
  return JSON.stringify({
    type: alert.type,
    time: new Date(alert.time).toISOString(),
    summary: alert.summary,
    data: alert.data,
  })
}

export function signature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`
}

export async function deliver(alert: Alert, t: Target, o: DeliveryOptions, log: Logger, stats: Stats): Promise<void> {
  const body = render(alert, t.format)
  const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'agentmesh-alerts' }
  if (t.format === 'json' && t.secret) {
    const ts = String(Math.floor(alert.time / 1000))
    headers['x-agentmesh-timestamp'] = ts
    headers['x-agentmesh-signature'] = signature(t.secret, ts, body)
  }
  let last = ''
  for (let attempt = 0; attempt <= o.retries; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, o.retryDelayMs * 2 ** (attempt - 1)).unref?.())
    try {
      const res = await fetch(t.webhook, { method: 'POST', headers, body, signal: AbortSignal.timeout(o.timeoutMs) })
      await res.arrayBuffer().catch(() => {})
      if (res.ok) {
        stats.sent++
        return
      }
      last = `status ${res.status}`
      // a 4xx other than 408/429 will not get better by retrying
      if (res.status < 500 && res.status !== 408 && res.status !== 429) break
    } catch (err) {
      last = (err as Error).message
    }
  }
  stats.failed++
  // the webhook's URL can carry a token (Slack's do): only its origin is logged
  log.warn('alerts: webhook delivery failed', { alert: alert.type, webhook: new URL(t.webhook).origin, error: last })
}
