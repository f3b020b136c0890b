// Rewriting the answer's text on its way to the client (MeshContext.answerText, set by a plugin
// such as masking): whole answers, bodies relayed as the vendor sent them, and streams event by
// event in the client's own protocol. Only text and tool-call arguments are rewritten; thinking
// blocks stay as the vendor signed them, and everything the core keeps (ctx.answer, what caches
// store, what the audit hashes) stays the vendor's own. Nothing here runs unless answerText is set.
import { cutString, parseBufferSliced, stringifySliced, utf8Sliced } from '../json-sliced.ts'
import { isObject, MAX_JSON_DEPTH, parseJsonSliced, runGenerator, sse } from '../protocols/shared.ts'
import type { Slicer } from '../slicer.ts'
import type { AnswerTextRewriter, CanonicalAnswer, MeshContext, ProtocolName } from '../types.ts'
import { LongLiterals } from './long-literals.ts'
import type { StreamEvent } from './stream.ts'

export type AnswerText = NonNullable<MeshContext['answerText']>

/** One whole text: rewritten and flushed at once. */
export function rewriteWhole(at: AnswerText, text: string): string {
  const r = at.open()
  return r.rewrite(text) + r.flush()
}

// a text longer than this is given to the rewriter in pieces of this many characters, as a stream
// gives it its deltas, a step each (a rewriter's output for a text in pieces is the text's)
const LONG_TEXT = 64 * 1024

/** rewriteWhole, a piece of a long text a step (the same text) */
function* rewriteWholeSteps(
  at: AnswerText,
  text: string,
  long?: LongLiterals,
): Generator<undefined, string, undefined> {
  const id = long ? long.id(text) : -1
  if (id >= 0) {
    const r = at.open()
    return yield* long!.rewriteSteps(id, r)
  }
  if (text.length <= LONG_TEXT) return rewriteWhole(at, text)
  const r = at.open()
  const out: string[] = []
  for (const piece of cutString(text, LONG_TEXT)) {
    out.push(r.rewrite(piece))
    yield
  }
  out.push(r.flush())
  return out.join('')
}

// thinking and reasoning are signed or encrypted by the vendor and sent back on the next turn as
// they came: rewriting them would break the signature
const KEEP_TYPES = new Set(['thinking', 'redacted_thinking', 'reasoning'])
// strings rewritten between two steps of rewriteJsonSteps
const JSON_STEP = 256

/** Every string in a JSON value rewritten whole (copied where something changed), thinking blocks kept. */
export function rewriteJson(at: AnswerText, value: unknown): unknown {
  return runGenerator(rewriteJsonSteps(at, value, { n: 0 }))
}

/** rewriteJson as steps: a pause every JSON_STEP strings and every piece of a long one (`seen` counts the strings) */
function* rewriteJsonSteps(
  at: AnswerText,
  value: unknown,
  seen: { n: number; long?: LongLiterals },
): Generator<undefined, unknown, undefined> {
  if (typeof value === 'string') {
    if (++seen.n % JSON_STEP === 0) yield
    return yield* rewriteWholeSteps(at, value, seen.long)
  }
  if (Array.isArray(value)) {
    let out: unknown[] | undefined
    for (let i = 0; i < value.length; i++) {
      const v = yield* rewriteJsonSteps(at, value[i], seen)
      if (v !== value[i]) (out ??= value.slice())[i] = v
    }
    return out ?? value
  }
  if (!isObject(value) || KEEP_TYPES.has(value.type) || value.thought === true) return value
  let out: Record<string, unknown> | undefined
  for (const k in value) {
    const v = yield* rewriteJsonSteps(at, value[k], seen)
    if (v !== value[k]) (out ??= { ...value })[k] = v
  }
  return out ?? value
}

/** A copy of an answer for the client: text, tool arguments and the vendor's body rewritten. */
export function rewriteAnswer(at: AnswerText, a: CanonicalAnswer): CanonicalAnswer {
  return runGenerator(rewriteAnswerSteps(at, a))
}

/** rewriteAnswer for an answer of megabytes (a cache hit), in slices of the event loop: the same copy */
export async function rewriteAnswerSliced(
  at: AnswerText,
  a: CanonicalAnswer,
  slicer: Slicer,
): Promise<CanonicalAnswer> {
  const steps = rewriteAnswerSteps(at, a)
  let r = steps.next()
  while (!r.done) {
    await slicer.pause()
    r = steps.next()
  }
  return r.value
}

function* rewriteAnswerSteps(at: AnswerText, a: CanonicalAnswer): Generator<undefined, CanonicalAnswer, undefined> {
  const text = yield* rewriteWholeSteps(at, a.text)
  const toolCalls: CanonicalAnswer['toolCalls'] = []
  for (const c of a.toolCalls) toolCalls.push({ ...c, arguments: yield* rewriteWholeSteps(at, c.arguments) })
  if (!a.raw) return { ...a, text, toolCalls }
  const body = (yield* rewriteJsonSteps(at, a.raw.body, { n: 0 })) as Record<string, any>
  return { ...a, text, toolCalls, raw: { protocol: a.raw.protocol, body } }
}

/**
 * A non-streamed vendor body: JSON rewritten string by string (so whatever is put back is
 * escaped by JSON.stringify). A Gemini stream sent as one JSON array is read as the stream it
 * is, its text continuing from one element to the next. A body that is not JSON is left alone.
 */
export function rewriteBody(at: AnswerText, protocol: ProtocolName, body: Buffer): Buffer | string {
  let json: unknown
  try {
    json = JSON.parse(body.toString('utf8'))
  } catch {
    return body
  }
  return JSON.stringify(runGenerator(rewrittenSteps(at, protocol, json)))
}

/**
 * rewriteBody for a body of megabytes, in slices of the event loop: parsed, rewritten and
 * stringified in slices, as UTF-8 pieces (the bytes of rewriteBody).
 */
export async function rewriteBodySliced(
  at: AnswerText,
  protocol: ProtocolName,
  body: Buffer,
  slicer: Slicer,
): Promise<Buffer | Buffer[]> {
  let json: unknown
  try {
    json = await parseBufferSliced(body, slicer)
  } catch {
    return body
  }
  const steps = rewrittenSteps(at, protocol, json)
  let r = steps.next()
  while (!r.done) {
    await slicer.pause()
    r = steps.next()
  }
  return utf8Sliced((await stringifySliced(r.value, slicer)) ?? [], slicer)
}

/** the body's value rewritten, as steps */
function* rewrittenSteps(
  at: AnswerText,
  protocol: ProtocolName,
  json: unknown,
): Generator<undefined, unknown, undefined> {
  if (protocol === 'gemini' && Array.isArray(json)) {
    const g = geminiEvents(at)
    const out: unknown[] = []
    for (let i = 0; i < json.length; i++) {
      if (i % JSON_STEP === JSON_STEP - 1) yield
      out.push(yield* g.chunk(json[i]))
    }
    const tail = g.end()
    if (tail) out.push(tail)
    return out
  }
  return yield* rewriteJsonSteps(at, json, { n: 0 })
}

// ---------------------------------------------------------------- streams

/** Rewrites one protocol's SSE events: `event` takes an event's data and returns the SSE text for the client. */
export interface EventRewriter {
  event(data: string): string
  /**
   * event(data) for an event of megabytes, in slices of the event loop: its JSON parsed, its
   * strings rewritten and the event stringified in slices, the same text as pieces
   */
  eventSliced(data: string, slicer: Slicer): Promise<string[]>
  /** the end of the stream: text still held back, as events */
  end(): string
}

/** what an event becomes: SSE text, or a value written as one SSE event (`sse(json, event)`) */
type Out = string | { json: unknown; event?: string }
type EventSteps = Generator<undefined, Out[], undefined>

/**
 * One protocol's rewriting of an event, as steps (a pause between the pieces of a long text and
 * every JSON_STEP strings): `value` is the event's data parsed, undefined when it is not JSON.
 */
interface StepRewriter {
  steps(data: string, value: unknown): EventSteps
  /** the long literals the next event's value has as markers (its parse left them out) */
  long?(l: LongLiterals | undefined): void
  end(): string
}

/** Open text streams of one answer (a choice's text, a tool call's arguments, a content block), by key. */
class Channels {
  private readonly open = new Map<string, AnswerTextRewriter>()
  long: LongLiterals | undefined
  constructor(private readonly at: AnswerText) {}
  rewrite(key: string, text: string): string {
    let r = this.open.get(key)
    if (!r) this.open.set(key, (r = this.at.open()))
    return r.rewrite(text)
  }
  /** rewrite, a long text given a piece at a time, a step each (the rewriter's output for the pieces is the text's) */
  *rewriteSteps(key: string, text: string): Generator<undefined, string, undefined> {
    // an event's long string (left out of its parse): read a run at a time from the event's text
    const id = this.long ? this.long.id(text) : -1
    if (id >= 0) return yield* this.long!.rewriteSteps(id, { rewrite: (t) => this.rewrite(key, t) })
    if (text.length <= LONG_TEXT) return this.rewrite(key, text)
    const out: string[] = []
    for (const piece of cutString(text, LONG_TEXT)) {
      out.push(this.rewrite(key, piece))
      yield
    }
    return out.join('')
  }
  flush(key: string): string {
    const r = this.open.get(key)
    if (!r) return ''
    this.open.delete(key)
    return r.flush()
  }
  keys(): string[] {
    return [...this.open.keys()]
  }
}

const parse = (data: string): any => {
  try {
    return JSON.parse(data)
  } catch {
    return undefined
  }
}

const render = (outs: Out[]): string => {
  let s = ''
  for (const o of outs) s += typeof o === 'string' ? o : sse(o.json, o.event)
  return s
}

/** the event rewriter over a protocol's steps: at once, or in slices for an event of megabytes */
function rewriterOf(r: StepRewriter): EventRewriter {
  const event = (data: string) => render(runGenerator(r.steps(data, parse(data))))
  return {
    event,
    async eventSliced(data, slicer) {
      const viaLong = r.long ? await longEventSliced(r, data, slicer) : undefined
      if (viaLong) return viaLong
      let value: unknown
      try {
        // a parse of its own: the steps change what they rewrite, and the readers' parse is shared
        const parsed = await parseJsonSliced(data, MAX_JSON_DEPTH, slicer)
        // nested deeper than a request may be: in one go, as event() does
        if (parsed.deep) return [event(data)]
        value = parsed.value
      } catch {
        value = undefined
      }
      const out: string[] = []
      for (const o of await runSteps(r.steps(data, value), slicer)) {
        if (typeof o === 'string') out.push(o)
        else {
          out.push(`${o.event ? `event: ${o.event}\n` : ''}data: `)
          for (const piece of (await stringifySliced(o.json, slicer)) ?? []) out.push(piece)
          out.push('\n\n')
        }
        await slicer.pause()
      }
      return out
    },
    end: () => r.end(),
  }
}

/** an event's steps run to their end, with a pause of the slicer between two */
async function runSteps(steps: EventSteps, slicer: Slicer): Promise<Out[]> {
  let s = steps.next()
  while (!s.done) {
    await slicer.pause()
    s = steps.next()
  }
  return s.value
}

/**
 * eventSliced for an event whose long strings (LongLiterals) are read from its own text: the rest
 * parsed (small), the steps run over it, their output stringified around the long strings' text
 * (the vendor's own where nothing changed). Undefined when the event has none, or is not JSON (or
 * nests too deep): then the parse in slices, as before.
 */
async function longEventSliced(r: StepRewriter, data: string, slicer: Slicer): Promise<string[] | undefined> {
  const long = await LongLiterals.find(data, slicer)
  if (!long) return undefined
  let value: unknown
  try {
    const parsed = await parseJsonSliced(long.skeleton(), MAX_JSON_DEPTH, slicer)
    if (parsed.deep) return undefined
    value = parsed.value
  } catch {
    return undefined
  }
  r.long!(long)
  try {
    const out: string[] = []
    for (const o of await runSteps(r.steps(data, value), slicer)) {
      for (const piece of long.render(typeof o === 'string' ? o : sse(o.json, o.event))) out.push(piece)
      await slicer.pause()
    }
    return out
  } finally {
    r.long!(undefined)
  }
}

function openaiEvents(at: AnswerText): StepRewriter {
  const ch = new Channels(at)
  let base: Record<string, unknown> = {}
  const chunk = (index: number, delta: Record<string, unknown>) =>
    sse({ ...base, choices: [{ index, delta, finish_reason: null }] })
  // what a key still holds, as a delta ("3" a choice's text, "3:1" its second tool call's arguments)
  const held = (key: string): Record<string, unknown> | undefined => {
    const rest = ch.flush(key)
    if (!rest) return undefined
    const [, tool] = key.split(':')
    return tool === undefined
      ? { content: rest }
      : { tool_calls: [{ index: Number(tool), function: { arguments: rest } }] }
  }
  const flushChoice = (i: number) => {
    let out = ''
    for (const key of ch.keys()) {
      if (key.split(':')[0] !== String(i)) continue
      const d = held(key)
      if (d) out += chunk(i, d)
    }
    return out
  }
  const end = () => {
    let out = ''
    for (const key of ch.keys()) {
      const d = held(key)
      if (d) out += chunk(Number(key.split(':')[0]), d)
    }
    return out
  }
  return {
    long: (l) => void (ch.long = l),
    *steps(data, c) {
      if (data === '[DONE]') return [end() + sse('[DONE]')]
      if (!isObject(c) || !Array.isArray(c.choices)) return [sse(data)]
      // kept for later events: a long id as its own text, not this event's marker
      const plain = (v: unknown) => (ch.long ? ch.long.plain(v) : v)
      base = { id: plain(c.id), object: plain(c.object), created: c.created, model: plain(c.model) }
      let before = ''
      for (const choice of c.choices) {
        const i = Number.isSafeInteger(choice?.index) ? choice.index : 0
        const d = choice?.delta
        if (isObject(d)) {
          if (typeof d.content === 'string') d.content = yield* ch.rewriteSteps(String(i), d.content)
          for (const tc of Array.isArray(d.tool_calls) ? d.tool_calls : []) {
            if (typeof tc?.function?.arguments === 'string')
              tc.function.arguments = yield* ch.rewriteSteps(`${i}:${tc.index ?? 0}`, tc.function.arguments)
          }
        }
        // the choice ends here: what it still holds goes out just before
        if (choice?.finish_reason) before += flushChoice(i)
      }
      return [before, { json: c }]
    },
    end,
  }
}

function anthropicEvents(at: AnswerText): StepRewriter {
  const ch = new Channels(at)
  const deltaType = new Map<string, 'text_delta' | 'input_json_delta'>()
  const ev = (e: Record<string, any>): Out => ({ json: e, event: String(e.type) })
  const held = (key: string) => {
    const rest = ch.flush(key)
    if (!rest) return ''
    const type = deltaType.get(key) ?? 'text_delta'
    return render([
      ev({
        type: 'content_block_delta',
        index: Number(key),
        delta: type === 'text_delta' ? { type, text: rest } : { type, partial_json: rest },
      }),
    ])
  }
  const end = () => {
    let out = ''
    for (const key of ch.keys()) out += held(key)
    return out
  }
  return {
    long: (l) => void (ch.long = l),
    *steps(data, e) {
      if (!isObject(e)) return [sse(data)]
      const key = String(e.index)
      if (
        e.type === 'content_block_start' &&
        e.content_block?.type === 'text' &&
        typeof e.content_block.text === 'string'
      ) {
        deltaType.set(key, 'text_delta')
        e.content_block.text = yield* ch.rewriteSteps(key, e.content_block.text)
      } else if (
        e.type === 'content_block_delta' &&
        e.delta?.type === 'text_delta' &&
        typeof e.delta.text === 'string'
      ) {
        deltaType.set(key, 'text_delta')
        e.delta.text = yield* ch.rewriteSteps(key, e.delta.text)
      } else if (
        e.type === 'content_block_delta' &&
        e.delta?.type === 'input_json_delta' &&
        typeof e.delta.partial_json === 'string'
      ) {
        deltaType.set(key, 'input_json_delta')
        e.delta.partial_json = yield* ch.rewriteSteps(key, e.delta.partial_json)
      } else if (e.type === 'content_block_stop') {
        return [held(key), ev(e)]
      } else if (e.type === 'message_delta' || e.type === 'message_stop') {
        return [end(), ev(e)]
      }
      return [ev(e)]
    },
    end,
  }
}

/** Gemini chunks (SSE events or the elements of one JSON array): each candidate's text continues across chunks. */
function geminiEvents(at: AnswerText): { chunk(c: unknown): Generator<undefined, unknown, undefined>; end(): unknown } {
  const ch = new Channels(at)
  const textPart = (p: any) => isObject(p) && typeof p.text === 'string' && p.thought !== true
  return {
    *chunk(c) {
      if (!isObject(c) || !Array.isArray(c.candidates)) return c
      for (const cand of c.candidates) {
        const key = String(Number.isSafeInteger(cand?.index) ? cand.index : 0)
        const parts: any[] | undefined = Array.isArray(cand?.content?.parts) ? cand.content.parts : undefined
        for (const p of parts ?? []) {
          if (textPart(p)) p.text = yield* ch.rewriteSteps(key, p.text)
          // a function call comes whole
          if (isObject(p?.functionCall)) p.functionCall = yield* rewriteJsonSteps(at, p.functionCall, { n: 0 })
        }
        if (!cand?.finishReason) continue
        const rest = ch.flush(key)
        if (!rest) continue
        const last = parts?.findLast(textPart)
        if (last) last.text += rest
        else if (parts) parts.push({ text: rest })
        else cand.content = { role: 'model', ...cand.content, parts: [{ text: rest }] }
      }
      return c
    },
    end() {
      const candidates = ch
        .keys()
        .map((key) => ({ index: Number(key), content: { role: 'model', parts: [{ text: ch.flush(key) }] } }))
      return candidates.length ? { candidates } : undefined
    },
  }
}

function geminiSse(at: AnswerText): StepRewriter {
  const g = geminiEvents(at)
  return {
    *steps(data, c) {
      return c === undefined ? [sse(data)] : [{ json: yield* g.chunk(c) }]
    },
    end: () => {
      const tail = g.end()
      return tail ? sse(tail) : ''
    },
  }
}

function responsesEvents(at: AnswerText): StepRewriter {
  const ch = new Channels(at)
  // a held-back tail sent as its own delta takes a sequence number: every later event shifts by one
  let shift = 0
  const ev = (e: Record<string, any>): Out => {
    if (shift && typeof e.sequence_number === 'number') e.sequence_number += shift
    return { json: e, event: String(e.type) }
  }
  const held = (e: Record<string, any>, key: string, type: string) => {
    const rest = ch.flush(key)
    if (!rest) return ''
    const delta: Record<string, unknown> = {
      type,
      item_id: e.item_id,
      output_index: e.output_index,
      ...(e.content_index === undefined ? {} : { content_index: e.content_index }),
      delta: rest,
    }
    if (typeof e.sequence_number === 'number') delta.sequence_number = e.sequence_number + shift++
    return sse(delta, type)
  }
  return {
    long: (l) => void (ch.long = l),
    *steps(data, e) {
      if (!isObject(e)) return [sse(data)]
      const textKey = `t:${e.item_id}:${e.content_index}`
      const argsKey = `a:${e.item_id}`
      switch (e.type) {
        case 'response.output_text.delta':
          if (typeof e.delta === 'string') e.delta = yield* ch.rewriteSteps(textKey, e.delta)
          return [ev(e)]
        case 'response.function_call_arguments.delta':
          if (typeof e.delta === 'string') e.delta = yield* ch.rewriteSteps(argsKey, e.delta)
          return [ev(e)]
        case 'response.output_text.done': {
          const before = held(e, textKey, 'response.output_text.delta')
          if (typeof e.text === 'string') e.text = yield* rewriteWholeSteps(at, e.text, ch.long)
          return [before, ev(e)]
        }
        case 'response.function_call_arguments.done': {
          const before = held(e, argsKey, 'response.function_call_arguments.delta')
          if (typeof e.arguments === 'string') e.arguments = yield* rewriteWholeSteps(at, e.arguments, ch.long)
          return [before, ev(e)]
        }
      }
      // whole parts, items and the final response: every string in them
      if (typeof e.type === 'string' && /\.(done|completed|incomplete|failed)$/.test(e.type))
        return [ev((yield* rewriteJsonSteps(at, e, { n: 0, long: ch.long })) as Record<string, any>)]
      return [ev(e)]
    },
    end: () => '',
  }
}

/** The event rewriter for a client of `protocol`, whose events come in that protocol. */
export function eventRewriter(protocol: ProtocolName, at: AnswerText): EventRewriter {
  switch (protocol) {
    case 'openai':
      return rewriterOf(openaiEvents(at))
    case 'anthropic':
      return rewriterOf(anthropicEvents(at))
    case 'gemini':
      return rewriterOf(geminiSse(at))
    case 'responses':
      return rewriterOf(responsesEvents(at))
  }
}

/**
 * Neutral stream events (a translated stream) rewritten before the client's encoder sees them:
 * text and each tool call's arguments as their own text streams, what they hold flushed before
 * the event that ends them.
 */
export function neutralRewriter(at: AnswerText): (e: StreamEvent) => StreamEvent[] {
  const ch = new Channels(at)
  const flushText = (): StreamEvent[] => {
    const rest = ch.flush('text')
    return rest ? [{ t: 'text', text: rest }] : []
  }
  return (e) => {
    switch (e.t) {
      case 'text':
        return [{ t: 'text', text: ch.rewrite('text', e.text) }]
      case 'args':
        return [{ t: 'args', index: e.index, json: ch.rewrite(`args:${e.index}`, e.json) }]
      case 'tool':
        return [...flushText(), e]
      case 'finish': {
        const out = flushText()
        for (const key of ch.keys()) {
          const rest = ch.flush(key)
          if (rest) out.push({ t: 'args', index: Number(key.slice(5)), json: rest })
        }
        out.push(e)
        return out
      }
      default:
        return [e]
    }
  }
}
