// The soak's traffic: a paced mix of plain answers, streams, exact-cache hits, quota-blocked
// requests and clients that hang up mid-stream, across the three protocols, from a bounded set of
// teams and users (an unbounded set would measure the identity maps, not a leak).
import { Agent, request } from 'node:http'

export type Kind = 'plain' | 'stream' | 'hit' | 'blocked' | 'aborted'
export const KINDS: Array<{ kind: Kind; weight: number }> = [
  { kind: 'plain', weight: 30 },
  { kind: 'stream', weight: 25 },
  { kind: 'hit', weight: 25 },
  { kind: 'blocked', weight: 10 },
  { kind: 'aborted', weight: 10 },
]

/** a team whose small budget runs out early in the run (see bench/lib/soak-server.ts) */
export const SMALL_TEAM = 'soak-small'
// distinct prompts that go upstream (no-store) and that hit the cache: both pools are bounded
const PLAIN_PROMPTS = 2000
const HIT_PROMPTS = 40

export interface Tally {
  /** kind -> status (or error code) -> count */
  byKind: Record<Kind, Record<string, number>>
  total: number
}

export const newTally = (): Tally => ({
  byKind: { plain: {}, stream: {}, hit: {}, blocked: {}, aborted: {} },
  total: 0,
})

interface Req {
  path: string
  headers: Record<string, string>
  body: string
}

let counter = 0
const PROTOCOLS = ['openai', 'anthropic', 'gemini'] as const

function build(kind: Kind, n: number, distinct: boolean): Req {
  const protocol = PROTOCOLS[n % 3]!
  const stream = kind === 'stream' || kind === 'aborted'
  // every part from k: the pool stays bounded (caches keyed by prompt text fill once, in warm-up)
  const k = distinct ? n : n % PLAIN_PROMPTS
  const prompt =
    kind === 'hit'
      ? `soak cached question ${n % HIT_PROMPTS}`
      : `soak question ${k}: what is ${k % 97} times ${k % 89}?`
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-agentmesh-team': kind === 'blocked' ? SMALL_TEAM : `soak-team-${n % 3}`,
    'x-agentmesh-user': `user-${n % 5}`,
  }
  // plain and streamed answers go upstream every time and are not stored
  if (kind !== 'hit' && kind !== 'blocked') headers['cache-control'] = 'no-store'
  if (protocol === 'openai')
    return {
      path: '/v1/chat/completions',
      headers,
      body: JSON.stringify({ model: 'gpt-4o-mini', stream, messages: [{ role: 'user', content: prompt }] }),
    }
  if (protocol === 'anthropic')
    return {
      path: '/v1/messages',
      headers: { ...headers, 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({
        model: 'claude-haiku-4-5',
        max_tokens: 64,
        stream,
        messages: [{ role: 'user', content: prompt }],
      }),
    }
  const action = stream ? 'streamGenerateContent?alt=sse' : 'generateContent'
  return {
    path: `/v1beta/models/gemini-2.5-flash:${action}`,
    headers,
    body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: prompt }] }] }),
  }
}

/** One request; an aborted client hangs up at its first streamed byte. Resolves to the status or error code. */
function send(agent: Agent, port: number, kind: Kind, distinct: boolean): Promise<string> {
  const r = build(kind, counter++, distinct)
  return new Promise((resolve) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: r.path,
        agent,
        headers: { ...r.headers, 'content-length': Buffer.byteLength(r.body) },
      },
      (res) => {
        const status = String(res.statusCode)
        if (kind === 'aborted') {
          res.once('data', () => {
            req.destroy()
            resolve(`${status} aborted`)
          })
          res.once('end', () => resolve(`${status} finished before abort`))
          return
        }
        res.resume()
        res.once('end', () => resolve(status))
        res.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
      },
    )
    req.once('error', (e: NodeJS.ErrnoException) =>
      resolve(kind === 'aborted' && req.destroyed ? 'aborted' : (e.code ?? 'error')),
    )
    req.end(r.body)
  })
}

function pickKind(n: number): Kind {
  // deterministic interleaving: weights over a cycle of 100
  let r = (n * 37) % 100
  for (const k of KINDS) if ((r -= k.weight) < 0) return k.kind
  return 'plain'
}

/**
 * Drive traffic until `until()` says stop: `concurrency` workers, paced to about `rps` requests a
 * second overall (0 = as fast as they go). `distinct`: every plain and streamed prompt new, which
 * measures the prompt-keyed caches filling up rather than leaks.
 */
export async function drive(
  port: number,
  opts: { concurrency: number; rps: number; until: () => boolean; tally: Tally; distinct?: boolean },
): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: opts.concurrency })
  const gap = opts.rps > 0 ? 1000 / opts.rps : 0
  let next = performance.now()
  let n = 0
  const worker = async () => {
    while (!opts.until()) {
      if (gap) {
        const at = (next = Math.max(next + gap, performance.now() - 1000))
        const wait = at - performance.now()
        if (wait > 0) await new Promise((r) => setTimeout(r, wait))
      }
      const kind = pickKind(n++)
      const outcome = await send(agent, port, kind, !!opts.distinct)
      opts.tally.byKind[kind][outcome] = (opts.tally.byKind[kind][outcome] ?? 0) + 1
      opts.tally.total++
    }
  }
  await Promise.all(Array.from({ length: opts.concurrency }, worker))
  agent.destroy()
}
