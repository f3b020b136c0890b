// Loop signs read off the transcript the agent resends: the same tool call with the same
// arguments again and again, or the same answer in a row. Read from the client's own body in each
// protocol (the canonical view folds tool calls with their ids, which differ on every turn), so
// detection needs no state and holds across instances.
import { hash } from 'node:crypto'
import { canonicalJson, canonicalSha256Async, sha256TextSliced } from '../../core/canonical.ts'
import { withinBudget } from '../../core/json-sliced.ts'
import { MAX_JSON_DEPTH, parseJsonSliced, SLICED_PARSE_CHARS } from '../../core/protocols/shared.ts'
import { Slicer } from '../../core/slicer.ts'
import type { MeshContext } from '../../core/types.ts'

/** One assistant turn: its tool calls as `name(args)` keys, and its text when it called none. */
export interface Turn {
  calls: string[]
  text: string
}

// arguments longer than this are compared by hash, so a key stays small
const ARGS_INLINE = 256

function argsKey(args: unknown): string {
  let text: string
  if (typeof args === 'string') {
    // the same call may be spelled with other whitespace: compare the JSON, not the text
    try {
      text = canonicalJson(JSON.parse(args))
    } catch {
      text = args
    }
  } else text = canonicalJson(args ?? {})
  return text.length > ARGS_INLINE ? `#${hash('sha256', text, 'hex').slice(0, 16)}` : text
}

const callName = (name: unknown) => (typeof name === 'string' ? name.slice(0, 128) : '?')
const callKey = (name: unknown, args: unknown) => `${callName(name)}(${argsKey(args)})`

// arguments past this many values or characters are keyed in slices (assistantTurnsSliced)
const LARGE_ARGS_NODES = 4096
const LARGE_ARGS_CHARS = SLICED_PARSE_CHARS

const isLargeArgs = (args: unknown) =>
  typeof args === 'string'
    ? args.length > LARGE_ARGS_CHARS
    : typeof args === 'object' && args !== null && !withinBudget(args, LARGE_ARGS_NODES, LARGE_ARGS_CHARS)

/**
 * argsKey of arguments of megabytes (an agent that wrote a file of megabytes resends the call on
 * every turn), in slices of the event loop: the same key, as the digest of the same canonical text.
 * In one go the parse, the canonical JSON and the hash of a 5 MB call held the loop 30-70 ms.
 */
async function argsKeySliced(args: unknown, slicer: Slicer): Promise<string> {
  let value: unknown = args ?? {}
  if (typeof args === 'string') {
    let parsed: Awaited<ReturnType<typeof parseJsonSliced>>
    try {
      parsed = await parseJsonSliced(args, MAX_JSON_DEPTH, slicer)
    } catch {
      // not JSON: the text itself, as argsKey keys it
      return `#${(await sha256TextSliced(args, slicer)).slice(0, 16)}`
    }
    // nested past the limit: argsKey's own way (rare, and no longer than the body's own check)
    if (parsed.deep) return argsKey(args)
    value = parsed.value
  }
  // what the text held may be small after all (megabytes of whitespace around it)
  if (withinBudget(value, LARGE_ARGS_NODES, LARGE_ARGS_CHARS)) {
    const text = canonicalJson(value)
    return text.length > ARGS_INLINE ? `#${hash('sha256', text, 'hex').slice(0, 16)}` : text
  }
  return `#${(await canonicalSha256Async(value, Number.MAX_SAFE_INTEGER)).slice(0, 16)}`
}

const textOf = (content: unknown): string =>
  typeof content === 'string'
    ? content
    : Array.isArray(content)
      ? content.map((b: any) => (typeof b?.text === 'string' ? b.text : '')).join('')
      : ''

type Steps<T> = Generator<undefined, T, undefined>
// a pause every STEP calls or turns: 23,718 tool calls in one message took ~30 ms in one go
const STEP = 256
/** counts work across a body's turns and calls; true when a pause is due */
const counter = () => {
  let n = 0
  return () => ++n % STEP === 0
}

function* openaiTurns(body: any, keyOf: KeyOf): Steps<Turn[]> {
  const out: Turn[] = []
  const due = counter()
  for (const m of Array.isArray(body?.messages) ? body.messages : []) {
    if (due()) yield
    if (m?.role !== 'assistant') continue
    const calls: string[] = []
    for (const c of Array.isArray(m.tool_calls) ? m.tool_calls : []) {
      if (due()) yield
      calls.push(keyOf(calls, c?.function?.name, c?.function?.arguments))
    }
    out.push({ calls, text: textOf(m.content) })
  }
  return out
}

function* anthropicTurns(body: any, keyOf: KeyOf): Steps<Turn[]> {
  const out: Turn[] = []
  const due = counter()
  for (const m of Array.isArray(body?.messages) ? body.messages : []) {
    if (due()) yield
    if (m?.role !== 'assistant') continue
    const calls: string[] = []
    for (const b of Array.isArray(m.content) ? m.content : []) {
      if (due()) yield
      if (b?.type === 'tool_use' || b?.type === 'server_tool_use') calls.push(keyOf(calls, b.name, b.input))
    }
    out.push({ calls, text: textOf(m.content) })
  }
  return out
}

function* geminiTurns(body: any, keyOf: KeyOf): Steps<Turn[]> {
  const out: Turn[] = []
  const due = counter()
  for (const c of Array.isArray(body?.contents) ? body.contents : []) {
    if (due()) yield
    if (c?.role !== 'model') continue
    const parts = Array.isArray(c.parts) ? c.parts : []
    const calls: string[] = []
    for (const p of parts) {
      if (due()) yield
      if (p?.functionCall) calls.push(keyOf(calls, p.functionCall.name, p.functionCall.args))
    }
    out.push({ calls, text: parts.map((p: any) => (typeof p?.text === 'string' ? p.text : '')).join('') })
  }
  return out
}

/** Responses input items: a model turn is its function calls and messages up to the next user or tool output */
function* responsesTurns(body: any, keyOf: KeyOf): Steps<Turn[]> {
  const out: Turn[] = []
  const due = counter()
  let turn: Turn | undefined
  for (const item of Array.isArray(body?.input) ? body.input : []) {
    if (due()) yield
    const type = item?.type
    if (type === 'function_call' || type === 'custom_tool_call' || type === 'local_shell_call') {
      const calls = (turn ??= { calls: [], text: '' }).calls
      calls.push(keyOf(calls, item.name ?? type, item.arguments ?? item.input ?? item.action))
    } else if (item?.role === 'assistant') {
      ;(turn ??= { calls: [], text: '' }).text += textOf(item.content)
    } else if (turn) {
      out.push(turn)
      turn = undefined
    }
  }
  if (turn) out.push(turn)
  return out
}

/** a call's key, for the list it goes into (at the end of `calls`) */
type KeyOf = (calls: string[], name: unknown, args: unknown) => string

function turnSteps(ctx: MeshContext, keyOf: KeyOf): Steps<Turn[]> {
  const body = ctx.request.body
  switch (ctx.protocol) {
    case 'openai':
      return openaiTurns(body, keyOf)
    case 'anthropic':
      return anthropicTurns(body, keyOf)
    case 'gemini':
      return geminiTurns(body, keyOf)
    case 'responses':
      return responsesTurns(body, keyOf)
  }
}

export function assistantTurns(ctx: MeshContext): Turn[] {
  const steps = turnSteps(ctx, (_calls, name, args) => callKey(name, args))
  let r = steps.next()
  while (!r.done) r = steps.next()
  return r.value
}

/**
 * assistantTurns in slices of the event loop, for a body of megabytes: the walk pauses every STEP
 * calls; a call whose arguments are megabytes is keyed afterwards, in slices of its own
 */
export async function assistantTurnsSliced(ctx: MeshContext): Promise<Turn[]> {
  const slicer = new Slicer()
  const later: Array<{ calls: string[]; at: number; name: unknown; args: unknown }> = []
  const steps = turnSteps(ctx, (calls, name, args) => {
    if (!isLargeArgs(args)) return callKey(name, args)
    later.push({ calls, at: calls.length, name, args })
    return ''
  })
  let r = steps.next()
  while (!r.done) {
    await slicer.pause()
    r = steps.next()
  }
  for (const c of later) {
    await slicer.yield()
    c.calls[c.at] = `${callName(c.name)}(${await argsKeySliced(c.args, slicer)})`
  }
  return r.value
}

export interface LoopSign {
  limit: 'toolCallRepeats' | 'answerRepeats'
  count: number
  /** what repeated, for the client's message: a tool call key, or the answer's start */
  what: string
}

/**
 * The first loop sign in turns[from..] (turns before `from` were forgiven by a reset), or
 * undefined. Tool calls: the most repeated call; answers: the run of identical texts at the end.
 */
export function findLoop(
  turns: Turn[],
  from: number,
  toolCallRepeats: number,
  answerRepeats: number,
): LoopSign | undefined {
  if (turns.length - from < 2) return undefined
  if (toolCallRepeats !== Infinity) {
    const seen = new Map<string, number>()
    for (let i = from; i < turns.length; i++) {
      for (const c of turns[i]!.calls) {
        const n = (seen.get(c) ?? 0) + 1
        if (n >= toolCallRepeats) return { limit: 'toolCallRepeats', count: n, what: c }
        seen.set(c, n)
      }
    }
  }
  if (answerRepeats !== Infinity) {
    const last = turns[turns.length - 1]!
    if (last.calls.length || !last.text) return undefined
    let n = 1
    for (let i = turns.length - 2; i >= from && n < answerRepeats; i--) {
      const t = turns[i]!
      if (t.calls.length || t.text !== last.text) break
      n++
    }
    if (n >= answerRepeats) return { limit: 'answerRepeats', count: n, what: last.text }
  }
  return undefined
}

// up to this many characters a body is digested in JS: a call into crypto has a fixed cost (a few
// µs on a busy proxy, more than the whole digest of a short body); longer ones go to sha256,
// about 3x faster per character
const SHORT_BODY = 1024

/**
 * 64 bits of a short text (two 32-bit FNV-1a style lanes with different primes, then mixed):
 * enough to tell a run's bodies apart. Not a defence against crafted collisions, and it needs none:
 * a collision can only count two of one run's own bodies as one, so at worst trip that run sooner.
 */
function shortDigest(text: string): string {
  let a = 0x811c9dc5
  let b = 0x9747b28c
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    a = Math.imul(a ^ c, 0x01000193)
    b = Math.imul(b ^ c, 0x5bd1e995)
  }
  a = Math.imul(a ^ (a >>> 16), 0x85ebca6b) ^ Math.imul(b ^ (b >>> 13), 0xc2b2ae35)
  b = Math.imul(b ^ (b >>> 16), 0x85ebca6b) ^ Math.imul(a ^ (a >>> 13), 0xc2b2ae35)
  return (a >>> 0).toString(16) + (b >>> 0).toString(16).padStart(8, '0')
}

/** the body's fingerprint for "the same body again": its length and ends, so a 10 MB body costs what a 128 KB one does */
export function bodyFingerprint(raw: string): string {
  // the length in the fingerprint: bodies of two lengths never share one
  if (raw.length <= SHORT_BODY) return `${raw.length}.${shortDigest(raw)}`
  // one-shot digest of length and content (the same bytes the former Hash updates took)
  const text = raw.length <= 128 * 1024 ? raw : raw.slice(0, 64 * 1024) + raw.slice(-64 * 1024)
  return hash('sha256', String(raw.length) + text, 'hex').slice(0, 24)
}
