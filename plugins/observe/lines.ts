// What `agentmesh observe` prints: one line per event (coloured on a terminal), and the header's
// figures kept from the stream. Identities, models, numbers and ids only: no event carries text.
import type { MeshEvent } from '../../core/types.ts'

const COLOURS: Record<string, string> = {
  request: '90',
  response: '32',
  cache_hit: '36',
  cache_miss: '90',
  llm_call: '34',
  quota_warn: '33',
  quota_block: '31',
  error: '31',
  approval_requested: '35',
  run_tripped: '31',
  run_warn: '33',
}

const who = (d: any) => (d.identity ? `${d.identity.team}/${d.identity.user}/${d.identity.tool}` : '')
const usd = (n: unknown) => (typeof n === 'number' ? `$${n.toFixed(6)}` : '')
// a value from the wire, shown on a terminal: no control characters (an escape sequence in a team name)
const clean = (s: string) => s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?')

function body(e: MeshEvent): string {
  const d = e.data as any
  switch (e.type) {
    case 'request':
      return `${d.id} ${who(d)} ${d.protocol} ${d.model}${d.stream ? ' stream' : ''}`
    case 'response':
      return `${d.id} ${who(d)} ${d.vendor} ${d.model} ${d.status} cache=${d.cache} tokens=${d.tokens} ${usd(d.costUsd)} ${Math.round(d.latencyMs)}ms`
    case 'llm_call':
      return `${d.id} ${d.vendor} ${d.model} ${d.status} in=${d.usage?.inputTokens} out=${d.usage?.outputTokens} ${usd(d.costUsd)} ${Math.round(d.latencyMs)}ms`
    case 'cache_hit':
      return `${d.id} ${d.kind}${d.similarity !== undefined ? ` similarity=${d.similarity.toFixed(3)}` : ''} saved=${d.savedTokens} tokens ${usd(d.savedUsd)}`
    case 'quota_warn':
      return `${d.id} ${d.scope} ${d.limit} ${d.pct}% (${d.used} of ${d.max})`
    case 'quota_block':
      return `${d.id} ${d.scope} ${d.limit} (${d.used} of ${d.max})`
    case 'error':
      return `${d.id} ${d.status} ${d.type}${d.plugin ? ` (${d.plugin})` : ''}`
    default:
      return JSON.stringify(d).slice(0, 300)
  }
}

export function eventLine(e: MeshEvent, colour: boolean): string {
  const time = new Date(e.time).toISOString().slice(11, 19)
  const type = e.type.padEnd(18)
  const line = clean(`${time} ${type} ${body(e)}`)
  return colour ? `\x1b[${COLOURS[e.type] ?? '0'}m${line}\x1b[0m` : line
}

/** the header's figures: requests per second (last 10 s), cache hit rate, spend and saved */
export class Figures {
  #times: number[] = []
  responses = 0
  hits = 0
  spent = 0
  saved = 0
  add(e: MeshEvent) {
    const d = e.data as any
    if (e.type === 'response') {
      this.responses++
      if (d.cache === 'exact' || d.cache === 'semantic') this.hits++
      this.#times.push(e.time)
      if (this.#times.length > 10_000) this.#times.shift()
    } else if (e.type === 'llm_call') this.spent += d.costUsd ?? 0
    else if (e.type === 'cache_hit') this.saved += d.savedUsd ?? 0
  }
  rps(now = Date.now()): number {
    while (this.#times.length && this.#times[0]! < now - 10_000) this.#times.shift()
    return this.#times.length / 10
  }
  header(today?: { usd: number; savedUsd: number; requests: number }): string {
    const rate = this.responses ? `${((this.hits / this.responses) * 100).toFixed(1)}%` : '-'
    const money = today
      ? `today: ${today.requests} requests, spent $${today.usd.toFixed(4)}, saved $${today.savedUsd.toFixed(4)}`
      : `since start: spent $${this.spent.toFixed(4)}, saved $${this.saved.toFixed(4)}`
    return `AgentMesh  ${this.rps().toFixed(1)} req/s  cache hits ${rate}  ${money}`
  }
}
