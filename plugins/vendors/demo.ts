// A vendor that needs no key: deterministic answers derived from the prompt, visibly a demo,
// with realistic usage numbers and streams paced like a real model.
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { definePlugin } from '../../core/plugin.ts'
import { protocols } from '../../core/protocols/index.ts'
import type { CanonicalAnswer, MeshContext } from '../../core/types.ts'

export interface DemoOptions {
  /** time before the first byte, ms (default 120) */
  latencyMs?: number
  /** pause between streamed events, ms (default 8) */
  chunkDelayMs?: number
}

const SENTENCES = [
  'In a real deployment this request would go to the vendor configured for the model.',
  'AgentMesh has already normalised, priced and attributed it to your team.',
  'Repeat the same question to see an exact cache hit; rephrase it to try the semantic cache.',
  'Budgets are checked before the call, so an exhausted team gets a 429, not a bill.',
  'Every decision is written to the signed audit log in the data directory.',
  'Watch the live event stream at /agentmesh/events while you send requests.',
  'Set ANTHROPIC_API_KEY, OPENAI_API_KEY or GEMINI_API_KEY and pick the solo preset for real answers.',
  'Headers named X-AgentMesh-* on this response show the cache status, tokens and cost.',
]

function lastUserText(ctx: MeshContext): string {
  for (let i = ctx.prompt.messages.length - 1; i >= 0; i--) {
    const m = ctx.prompt.messages[i]!
    if (m.role === 'user' && m.text.trim()) return m.text
  }
  return ctx.prompt.messages.at(-1)?.text ?? ''
}

export function demoAnswer(ctx: MeshContext): CanonicalAnswer {
  const digest = createHash('sha256').update(ctx.prompt.model).update('\0').update(ctx.prompt.system).update('\0').update(JSON.stringify(ctx.prompt.messages)).digest()
  const asked = lastUserText(ctx).replace(/\s+/g, ' ').trim()
  const quoted = asked.length > 160 ? asked.slice(0, 157) + '...' : asked
  const picks = [digest[0]! % SENTENCES.length, digest[1]! % SENTENCES.length, digest[2]! % SENTENCES.length].filter((v, i, a) => a.indexOf(v) === i)
  const text = `[AgentMesh demo answer ${digest.toString('hex').slice(0, 8)}] You asked: "${quoted}". ` + picks.map((i) => SENTENCES[i]).join(' ')
  const model = ctx.route.model || ctx.prompt.model
  return {
    id: `demo-${digest.toString('hex').slice(0, 24)}`,
    model,
    text,
    toolCalls: [],
    stopReason: 'stop',
    usage: { inputTokens: ctx.mesh.tokens.estimateInput(ctx.prompt, model), outputTokens: ctx.mesh.tokens.count(text, model), cacheReadTokens: 0, cacheWriteTokens: 0 },
  }
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (ms <= 0) return resolve()
    const t = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => { clearTimeout(t); reject(signal.reason ?? new Error('aborted')) }, { once: true })
  })

export function demo(options: DemoOptions = {}) {
  for (const k of ['latencyMs', 'chunkDelayMs'] as const) {
    const v = options[k]
    if (v !== undefined && (typeof v !== 'number' || !(v >= 0))) throw new Error(`demo: ${k} must be a non-negative number of milliseconds, got ${JSON.stringify(v)}`)
  }
  const latency = options.latencyMs ?? 120
  const gap = options.chunkDelayMs ?? 8
  return definePlugin({
    name: 'vendor:demo',
    enforce: 'post',
    options: { ...options },
    setup(mesh) {
      mesh.registerVendor({
        name: 'demo',
        protocol: 'any',
        handles: () => true,
        models: () => ['demo-fast', 'demo-smart', 'gpt-4o-mini', 'claude-haiku-4-5', 'gemini-2.5-flash'],
        async call(ctx) {
          await sleep(latency, ctx.signal)
          const answer = demoAnswer(ctx)
          if (!ctx.prompt.stream) return answer
          // a paced stream through the same tap as a real vendor's
          const events = protocols[ctx.protocol].renderStream(answer).split(/(?<=\n\n)/)
          const body = Readable.from((async function* () {
            for (const e of events) {
              yield Buffer.from(e)
              await sleep(gap, ctx.signal)
            }
          })())
          return { status: 200, headers: { 'content-type': 'text/event-stream' }, body, stream: true }
        },
        async embeddings(ctx) {
          const input = ctx.request.body.input
          const texts: string[] = Array.isArray(input) ? input.map(String) : [String(input)]
          const dims = 64
          const data = texts.map((t, index) => {
            const h = createHash('sha512').update(t).digest()
            const v = Array.from({ length: dims }, (_, i) => (h[i % h.length]! - 127.5) / 127.5)
            const norm = Math.hypot(...v) || 1
            return { object: 'embedding', index, embedding: v.map((x) => x / norm) }
          })
          const tokens = texts.reduce((n, t) => n + mesh.tokens.count(t, ctx.prompt.model), 0)
          const body = Buffer.from(JSON.stringify({ object: 'list', data, model: ctx.prompt.model, usage: { prompt_tokens: tokens, total_tokens: tokens } }))
          return { status: 200, headers: { 'content-type': 'application/json' }, body, stream: false }
        },
      })
    },
  })
}
