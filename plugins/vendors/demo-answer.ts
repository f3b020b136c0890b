// The demo vendor's answer to a request: deterministic for the request, visibly a demo, quoting
// the question it answers (or the tool result it was given), a tool call when the prompt asks for
// what an offered tool does, cut at the client's output token limit like a real model.
import { createHash } from 'node:crypto'
import { Slicer } from '../../core/slicer.ts'
import type { CanonicalAnswer, MeshContext, ToolCall } from '../../core/types.ts'
import { readDemoRequest, type DemoRequest } from './demo-request.ts'
import { argumentsFor, pickTool } from './demo-tools.ts'

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

const TOOL_ID_PREFIX = { openai: 'call_', anthropic: 'toolu_', gemini: 'call_', responses: 'call_' } as const

function quote(text: string, max: number): string {
  // only the start can be shown: flattening a prompt of megabytes whole held the event loop for
  // seconds (its garbage), where this window is enough to fill `max` characters
  const flat = (text.length > max * 8 ? text.slice(0, max * 8) : text).replace(/\s+/g, ' ').trim()
  return flat.length > max ? flat.slice(0, max - 3) + '...' : flat
}

export function demoAnswer(ctx: MeshContext): CanonicalAnswer {
  const model = ctx.route.model || ctx.prompt.model
  return answerFor(ctx, runThrough(digestSteps(ctx)), ctx.mesh.tokens.estimateInput(ctx.prompt, model))
}

/**
 * demoAnswer's answer, its digest and input estimate made in slices of the event loop: a prompt
 * of 3 million non-ASCII characters held the loop ~60 ms in one go (npm run fuzz, seed 17107786
 * case 5386)
 */
export async function demoAnswerAsync(ctx: MeshContext): Promise<CanonicalAnswer> {
  const model = ctx.route.model || ctx.prompt.model
  const slicer = new Slicer(8)
  const steps = digestSteps(ctx)
  let r = steps.next()
  while (!r.done) {
    await slicer.pause()
    r = steps.next()
  }
  return answerFor(ctx, r.value, await ctx.mesh.tokens.estimateInputAsync(ctx.prompt, model))
}

type Steps<T> = Generator<undefined, T, undefined>
const runThrough = <T>(steps: Steps<T>): T => {
  let r = steps.next()
  while (!r.done) r = steps.next()
  return r.value
}

// a text over this is hashed in pieces, a pause between them
const HASH_PIECE = 256 * 1024

/**
 * sha256(model \0 system \0 JSON.stringify(messages)), the messages' JSON fed a message at a
 * time and a long one in pieces cut between UTF-16 code points (the same bytes as in one go)
 */
function* digestSteps(ctx: MeshContext): Steps<Buffer> {
  const h = createHash('sha256').update(ctx.prompt.model).update('\0').update(ctx.prompt.system).update('\0')
  const list = ctx.prompt.messages
  h.update('[')
  for (let i = 0; i < list.length; i++) {
    if (i) h.update(',')
    if (i % 256 === 255) yield
    const json = JSON.stringify(list[i]) ?? 'null'
    for (let a = 0; a < json.length; ) {
      let b = Math.min(json.length, a + HASH_PIECE)
      // not between the halves of a surrogate pair: each half alone would be encoded as U+FFFD
      if (b < json.length && /[\ud800-\udbff]/.test(json[b - 1]!)) b--
      h.update(json.slice(a, b))
      a = b
      if (a < json.length) yield
    }
  }
  h.update(']')
  return h.digest()
}

function answerFor(ctx: MeshContext, digest: Buffer, inputTokens: number): CanonicalAnswer {
  const hex = digest.toString('hex')
  const req = readDemoRequest(ctx)
  const model = ctx.route.model || ctx.prompt.model
  const count = (text: string) => ctx.mesh.tokens.count(text, model)
  const tag = `[AgentMesh demo answer ${hex.slice(0, 8)}]`
  const asked = `You asked: "${quote(req.question, 160)}".`
  const picks = [digest[0]! % SENTENCES.length, digest[1]! % SENTENCES.length, digest[2]! % SENTENCES.length].filter(
    (v, i, a) => a.indexOf(v) === i,
  )

  // a tool result is answered, unless tool_choice forces another call (a real model obeys that too)
  const tool =
    req.toolResults.length && req.toolChoice.mode !== 'required'
      ? undefined
      : pickTool(req.tools, req.toolChoice, req.question)
  let text: string
  let toolCalls: ToolCall[] = []
  if (tool) {
    const args = JSON.stringify(argumentsFor(tool, req.question))
    toolCalls = [{ id: TOOL_ID_PREFIX[ctx.protocol] + hex.slice(8, 32), name: tool.name, arguments: args }]
    text = `${tag} Calling ${tool.name} for you. ${asked}`
  } else if (req.toolResults.length) {
    text = `${tag} ${toolResultsText(req)} ${asked} ${SENTENCES[picks[0]!]}`
  } else {
    text = `${tag} ${asked} ` + picks.map((i) => SENTENCES[i]).join(' ')
  }
  const toolTokens = toolCalls.reduce((n, t) => n + count(t.name) + count(t.arguments), 0)
  let outputTokens = count(text) + toolTokens
  let stopReason: CanonicalAnswer['stopReason'] = toolCalls.length ? 'tool_calls' : 'stop'
  if (req.maxTokens !== undefined && outputTokens > req.maxTokens) {
    // a call that does not fit is not sent half-made: the text is cut instead, as for any answer
    toolCalls = []
    text = cutToTokens(text, req.maxTokens, count)
    outputTokens = count(text)
    stopReason = 'length'
  }
  return {
    // a Responses client keeps the id to continue from: it has the vendor's form
    id: ctx.protocol === 'responses' ? `resp_demo${hex.slice(0, 24)}` : `demo-${hex.slice(0, 24)}`,
    model,
    text,
    toolCalls,
    stopReason,
    usage: {
      inputTokens,
      outputTokens,
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
    },
  }
}

// the name is the client's too (a call's function name): quoted within bounds like the text, as
// a name of 137,855 characters made an answer of 34,000 streamed events (525 ms of one block)
/**
 * At most this many tool results are quoted: the answer is streamed a word pair per event, and
 * 122,594 results (npm run fuzz, seed 1601837677 case 2869) made an answer that held the loop 1.4 s.
 */
const QUOTED_RESULTS = 8

function toolResultsText(req: DemoRequest): string {
  const quoted = req.toolResults
    .slice(0, QUOTED_RESULTS)
    .map((r) => `${quote(r.name, 80)} ${r.isError ? 'failed with' : 'returned'}: "${quote(r.text, 300)}".`)
    .join(' ')
  const more = req.toolResults.length - QUOTED_RESULTS
  return more > 0 ? `${quoted} And ${more} more tool results.` : quoted
}

/**
 * The longest start of `text` within `max` tokens, ended at a word boundary when one is in reach.
 * A binary search over lengths: token counts grow with the prefix, so a few counts find it.
 */
export function cutToTokens(text: string, max: number, count: (text: string) => number): string {
  let lo = 0
  let hi = text.length
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2)
    if (count(text.slice(0, mid)) <= max) lo = mid
    else hi = mid - 1
  }
  let cut = text.slice(0, lo)
  if (lo < text.length && !/\s/.test(text[lo]!)) {
    const lastSpace = cut.search(/\s\S*$/)
    if (lastSpace > 0) cut = cut.slice(0, lastSpace)
  }
  cut = cut.trimEnd()
  // counts are not strictly monotonic under BPE merges, and a cut may split a surrogate pair
  while (cut && (count(cut) > max || /[\ud800-\udbff]$/.test(cut))) cut = cut.slice(0, -1)
  return cut
}
