// A vendor that needs no key: deterministic answers derived from the request, visibly a demo,
// with realistic usage numbers and streams paced like a real model. It behaves like a real vendor
// where clients depend on it: the output token limit, tool calls and results, base64 embeddings.
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { onClientGone } from '../../core/client.ts'
import { definePlugin } from '../../core/plugin.ts'
import { protocols } from '../../core/protocols/index.ts'
import { UpstreamError } from '../../core/upstream.ts'
import type { MeshContext, ProtocolName } from '../../core/types.ts'
import { demoAnswerAsync } from './demo-answer.ts'
import { geminiEmbeddings, openaiEmbeddings, overLimit } from './demo-embeddings.ts'

export { demoAnswer, demoAnswerAsync } from './demo-answer.ts'

export interface DemoOptions {
  /** time before the first byte, ms (default 120) */
  latencyMs?: number
  /** pause between streamed events, ms (default 8) */
  chunkDelayMs?: number
}

const DEMO_HEADER = 'x-agentmesh-demo'
const EMBEDDING_DIMENSIONS = 64

/**
 * The pauses of one response under a single client-gone listener, removed by end(): a listener
 * per pause piled up on the request's AbortSignal (MaxListenersExceededWarning past 10 events).
 */
function pacer(ctx: MeshContext) {
  let timer: NodeJS.Timeout | undefined
  let wake: (() => void) | undefined
  let gone = false
  const unsubscribe = onClientGone(ctx, () => {
    gone = true
    clearTimeout(timer)
    wake?.()
  })
  return {
    /** false when the client left before the pause ended */
    /**
     * No pause (latencyMs, chunkDelayMs: 0) is still a turn of the event loop, as a real vendor's
     * bytes arrive in one: else the answer and every event ran in the request's turn (the answer to
     * 5,401 turns held the loop 129 ms together with the proxy's own work). `timers`: a whole turn,
     * timers and I/O included (setImmediate from an I/O callback runs before either).
     */
    async pause(ms: number, timers = false): Promise<boolean> {
      if ((ms > 0 || timers) && !gone)
        await new Promise<void>((resolve) => {
          wake = resolve
          timer = setTimeout(resolve, ms)
        })
      else await new Promise(setImmediate)
      return !gone
    },
    end() {
      clearTimeout(timer)
      unsubscribe()
    },
  }
}

/** Words in twos, whitespace kept, so the pieces join back to the text exactly. */
function wordPairs(text: string): string[] {
  const words = text.match(/\S+\s*|\s+/g) ?? []
  const out: string[] = []
  for (let i = 0; i < words.length; i += 2) out.push(words[i]! + (words[i + 1] ?? ''))
  return out
}

/** Where an event of the protocol carries answer text, and how to put other text there. */
function textSlot(protocol: ProtocolName, d: any): { text: string; set: (text: string) => void } | undefined {
  if (protocol === 'openai') {
    const delta = d.choices?.[0]?.delta
    return typeof delta?.content === 'string' && delta.content && !delta.role
      ? { text: delta.content, set: (t) => (delta.content = t) }
      : undefined
  }
  if (protocol === 'responses') {
    return d.type === 'response.output_text.delta' && typeof d.delta === 'string'
      ? { text: d.delta, set: (t) => (d.delta = t) }
      : undefined
  }
  if (protocol === 'anthropic') {
    return d.type === 'content_block_delta' && d.delta?.type === 'text_delta'
      ? { text: d.delta.text, set: (t) => (d.delta.text = t) }
      : undefined
  }
  const c = d.candidates?.[0]
  const parts = c?.content?.parts
  return !c?.finishReason && parts?.length === 1 && typeof parts[0].text === 'string'
    ? { text: parts[0].text, set: (t) => (parts[0].text = t) }
    : undefined
}

/**
 * A rendered stream as the events a model sends: the renderers cut text into 64-character
 * deltas (right for replaying a cached answer fast); a model sends a few tokens per event.
 */
function modelPacedEvents(protocol: ProtocolName, stream: string): string[] {
  // Responses events are numbered: split deltas take numbers of their own
  let sequence = 0
  const renumber = (data: any) => {
    if (protocol === 'responses' && typeof data.sequence_number === 'number') data.sequence_number = sequence++
    return data
  }
  return stream.split(/(?<=\n\n)/).flatMap((event) => {
    const m = /^(event: [^\n]*\n)?data: (\{.*\})\n\n$/s.exec(event)
    if (!m) return [event]
    const data = JSON.parse(m[2]!)
    const slot = textSlot(protocol, data)
    const pieces = slot ? wordPairs(slot.text) : []
    if (pieces.length < 2)
      return protocol === 'responses' ? [`${m[1] ?? ''}data: ${JSON.stringify(renumber(data))}\n\n`] : [event]
    return pieces.map((piece) => {
      slot!.set(piece)
      return `${m[1] ?? ''}data: ${JSON.stringify(renumber(data))}\n\n`
    })
  })
}

async function* paced(events: string[], pace: ReturnType<typeof pacer>, gapMs: number) {
  try {
    for (const [i, event] of events.entries()) {
      if (i > 0 && !(await pace.pause(gapMs))) return
      yield Buffer.from(event)
    }
  } finally {
    pace.end()
  }
}

function embed(text: string): number[] {
  const h = createHash('sha512').update(text).digest()
  const v = Array.from({ length: EMBEDDING_DIMENSIONS }, (_, i) => (h[i % h.length]! - 127.5) / 127.5)
  const norm = Math.hypot(...v) || 1
  return v.map((x) => x / norm)
}

export function demo(options: DemoOptions = {}) {
  for (const k of ['latencyMs', 'chunkDelayMs'] as const) {
    const v = options[k]
    if (v !== undefined && (typeof v !== 'number' || !(v >= 0)))
      throw new Error(`demo: ${k} must be a non-negative number of milliseconds, got ${JSON.stringify(v)}`)
  }
  const latency = options.latencyMs ?? 120
  const gap = options.chunkDelayMs ?? 8
  return definePlugin({
    name: 'vendor:demo',
    enforce: 'post',
    options: { ...options },
    hooks: {
      // a cache hit replays a demo answer without a vendor call: it is marked all the same
      afterResponse(ctx) {
        if (ctx.route.vendor === 'demo' && ctx.status === 200 && ctx.answer) ctx.headers[DEMO_HEADER] = 'true'
      },
    },
    setup(mesh) {
      mesh.registerVendor({
        name: 'demo',
        protocol: 'any',
        handles: () => true,
        models: () => ['demo-fast', 'demo-smart', 'gpt-4o-mini', 'claude-haiku-4-5', 'gemini-2.5-flash'],
        async call(ctx) {
          ctx.headers[DEMO_HEADER] = 'true'
          const pace = pacer(ctx)
          let streaming = false
          try {
            if (!(await pace.pause(latency, true)))
              throw new UpstreamError('client closed the request', 499, 'client_closed_request')
            const answer = await demoAnswerAsync(ctx)
            // Gemini without alt=sse streams one JSON array, as Google does: the core renders it
            const adapter = protocols[ctx.protocol]
            if (!ctx.prompt.stream || adapter.renderArrayStream?.(answer, ctx.request.search)) return answer
            // a paced stream through the same tap as a real vendor's
            const events = modelPacedEvents(ctx.protocol, protocols[ctx.protocol].renderStream(answer))
            const body = Readable.from(paced(events, pace, gap))
            // a stream destroyed before its first read never runs the generator's finally
            body.once('close', pace.end)
            streaming = true
            return { status: 200, headers: { 'content-type': 'text/event-stream' }, body, stream: true }
          } finally {
            if (!streaming) pace.end()
          }
        },
        async embeddings(ctx) {
          ctx.headers[DEMO_HEADER] = 'true'
          // computed in a turn of its own, as a vendor's answer arrives
          await new Promise((resolve) => setTimeout(resolve, 0))
          const body = ctx.request.body
          const refused = overLimit(ctx.protocol, body)
          if (refused) return refused
          if (ctx.protocol === 'gemini') return geminiEmbeddings(body, embed)
          return openaiEmbeddings(body, ctx.prompt.model, embed, (t) => mesh.tokens.count(t, ctx.prompt.model))
        },
      })
    },
  })
}
