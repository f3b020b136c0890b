// Summaries of dropped turns, written by a cheap model through this proxy itself (mesh.fetch, in
// process): the call carries the original request's credentials and identity headers, so it is
// governed and billed like any call of that identity (quota, audit, the exact cache). Summaries are
// also kept here, by model, team and transcript, so the next turn of the same conversation (which
// drops the same old turns) does not ask again.
import { createHash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { MeshContext } from '../../core/types.ts'
import type { SummaryOptions } from './options.ts'

const PROMPT =
  'You summarise the earlier part of a conversation between a user and an AI coding agent, for the agent to continue from. ' +
  'Keep every file path, identifier, number, command, error message and decision that later turns may need; say what was done and what was found. ' +
  'Plain text, no preamble.'
// identity and credentials: what the identity resolvers read (core/identity.ts, plugins/keys)
const PASSED = [
  'authorization',
  'x-api-key',
  'x-goog-api-key',
  'x-agentmesh-team',
  'x-agentmesh-user',
  'x-agentmesh-tool',
  'user-agent',
]

export function createSummariser(o: SummaryOptions) {
  const cache = new LRUCache<string, string>({ max: o.cacheSize ?? 500 })
  // request ids of the summary calls in flight (a client cannot make its request one of them)
  const own = new Set<string>()
  let seq = 0
  return {
    /** a summary call of this plugin's own: not compressed again */
    isOwn: (ctx: MeshContext) => own.size > 0 && own.has(ctx.id),

    async summarise(ctx: MeshContext, transcript: string): Promise<string | undefined> {
      const key = createHash('sha256').update(`${o.model}\0${ctx.identity.team}\0${transcript}`).digest('hex')
      const hit = cache.get(key)
      if (hit !== undefined) return hit
      if (!ctx.mesh.fetch) return undefined
      const id = `${ctx.id.slice(0, 40)}.summary-${++seq}`
      const headers = new Headers({ 'content-type': 'application/json', 'x-agentmesh-request-id': id })
      for (const h of PASSED) {
        const v = ctx.request.headers.get(h)
        if (v !== null) headers.set(h, v)
      }
      // Gemini clients may send their key in the query
      const qkey = ctx.request.search.includes('key=') ? ctx.request.url.searchParams.get('key') : null
      if (qkey && !headers.has('x-goog-api-key')) headers.set('x-goog-api-key', qkey)
      const body = {
        model: o.model,
        max_tokens: o.maxTokens ?? 400,
        temperature: 0,
        messages: [
          { role: 'system', content: PROMPT },
          { role: 'user', content: transcript },
        ],
      }
      own.add(id)
      try {
        const res = await ctx.mesh.fetch(
          new Request(new URL('/v1/chat/completions', ctx.request.url), {
            method: 'POST',
            headers,
            body: JSON.stringify(body),
            signal: ctx.signal,
          }),
        )
        const json: any = await res.json().catch(() => undefined)
        const text = json?.choices?.[0]?.message?.content
        if (!res.ok || typeof text !== 'string' || !text.trim()) {
          ctx.mesh.log.warn(
            `compression: the summary call answered ${res.status}; old turns dropped without a summary`,
            { id: ctx.id },
          )
          return undefined
        }
        cache.set(key, text.trim())
        return text.trim()
      } catch (err) {
        ctx.mesh.log.warn(
          `compression: the summary call failed (${(err as Error).message}); old turns dropped without a summary`,
          { id: ctx.id },
        )
        return undefined
      } finally {
        own.delete(id)
      }
    },
  }
}
