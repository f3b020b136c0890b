// One neutral view over the four protocols' request bodies, so that each strategy is written once.
// A view holds references into the body itself: a part's `set` rewrites the body in place and
// `keep` writes the kept messages back. Anything the view does not understand is an 'other' part
// or a 'system' message, which no strategy touches or drops.
import { joiner } from '../../core/canonical.ts'
import { withinBudget } from '../../core/json-sliced.ts'
import type { ProtocolName } from '../../core/types.ts'
import { FLAT_CHARS, JsonOf, NOW, runThrough, STEP, stepPaced, type Pace, type Steps } from './pace.ts'

export type PartKind = 'text' | 'call' | 'result' | 'image' | 'other'

export interface Part {
  kind: PartKind
  /** text parts: the text; results: the output's text (text blocks joined); calls: the arguments as JSON text */
  text: string
  /** rewrite the text in place (text and result parts; images inside a result are kept) */
  set?(text: string): void
  /** parts with `set`: what set() would change, kept; the function returned puts it back */
  save?(): Undo
  /** call and result parts: the call id that pairs them (Gemini may have none) */
  id?: string
  /** call parts: the tool's name */
  name?: string
  /** call parts whose arguments are a value in the body (Anthropic, Gemini): that value, read without parsing `text` */
  args?: unknown
}

export type Role = 'user' | 'assistant' | 'tool' | 'system'

export interface Msg {
  role: Role
  parts: Part[]
  /** the body's own element (a message, an input item, a Gemini content) */
  item: any
}

export interface BodyView {
  msgs: Msg[]
  /** roles must alternate user/assistant (Anthropic, Gemini) */
  strictRoles: boolean
  /** write these messages (a subset of msgs, in order) back into the body */
  keep(msgs: Msg[]): void
  /** add a text part to a message, at its start or end; false when the message cannot take one safely */
  addText(msg: Msg, text: string, where: 'start' | 'end'): boolean
  /** what addText would change in a message, kept; the function returned puts it back */
  saveText(msg: Msg): Undo
}

const isObj = (v: unknown): v is Record<string, any> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** puts back what a rewrite changed */
export type Undo = () => void

/** the value of owner[key] as it is now, to put back (deleted if it was not there) */
function saved(owner: any, key: string | number): Undo {
  const had = Object.hasOwn(owner, key)
  const old = owner[key]
  return () => {
    if (had) owner[key] = old
    else delete owner[key]
  }
}

/**
 * A part whose rewrite is one assignment, owner[key] = text, and its save: the rollback journal
 * keeps the one value a rewrite replaces instead of a copy of the message (a copy of a message of
 * 100,000 blocks held the loop ~100 ms). One object a part, no closures: a view of 100,000 parts
 * is garbage that the scavenges copy while it lives.
 */
class FieldPart implements Part {
  constructor(
    readonly kind: PartKind,
    public text: string,
    protected readonly owner: any,
    protected readonly key: string | number,
    readonly id?: string,
    readonly name?: string,
  ) {}
  set(s: string): void {
    this.owner[this.key] = s
  }
  save(): Undo {
    return saved(this.owner, this.key)
  }
}

/** A result whose output is a content array: its text blocks joined; set replaces them with one text block where the first was. */
class BlocksPart extends FieldPart {
  constructor(
    kind: PartKind,
    owner: any,
    key: string,
    id: string | undefined,
    private readonly arr: any[],
    private readonly texts: any[],
    private readonly textType: string,
    text: string,
  ) {
    super(kind, text, owner, key, id)
  }
  override set(s: string): void {
    // a new array each time: `arr` itself is never changed (nor its blocks: `texts` are the
    // blocks isTextBlock picks). texts.includes made a result of 20,000 text blocks quadratic
    const { textType } = this
    const first = this.arr.findIndex((b) => isTextBlock(b, textType))
    const kept = this.arr.filter((b) => !isTextBlock(b, textType))
    if (first < 0) kept.push({ type: this.textType, text: s })
    else kept.splice(first, 0, { ...this.texts[0], text: s })
    this.owner[this.key] = kept
  }
}

/**
 * What a view's addText changes in a message (`keys` of its item, and the array one of them
 * holds, changed in place), kept; the function returned puts it back.
 */
export function saveFields(item: any, keys: readonly string[]): Undo {
  if (!isObj(item)) return () => {}
  const undo = keys.map((k) => {
    const put = saved(item, k)
    const arr = item[k]
    const elems = Array.isArray(arr) ? arr.slice() : undefined
    return () => {
      put()
      if (elems) {
        arr.length = elems.length
        for (let i = 0; i < elems.length; i++) arr[i] = elems[i]
      }
    }
  })
  return () => {
    for (const u of undo) u()
  }
}

const isTextBlock = (b: unknown, textType: string) =>
  isObj(b) && typeof b.text === 'string' && (b.type === textType || b.type === 'text')

/** blocks of a result's content array looked at between two pauses (one result may hold 100,000) */
const BLOCKS = 1024

/** A result's output: a string (or none), or a content array (BlocksPart), read a pause every BLOCKS blocks. */
function* blockArrayPart(
  kind: PartKind,
  owner: Record<string, any>,
  key: string,
  textType: string,
  id?: string,
): Steps<Part> {
  const v = owner[key]
  if (typeof v === 'string' || v == null) {
    return new FieldPart(kind, typeof v === 'string' ? v : '', owner, key, id)
  }
  const arr: any[] = Array.isArray(v) ? v : []
  const texts: any[] = []
  // the texts joined a pause at a time (one join of 100,000 blocks' texts: 30-60 ms)
  const text = joiner('\n')
  let chars = 0
  for (let i = 0; i < arr.length; i++) {
    if (i % BLOCKS === BLOCKS - 1) {
      text.cut()
      yield
    }
    if (isTextBlock(arr[i], textType)) {
      texts.push(arr[i])
      text.add(arr[i].text)
      chars += arr[i].text.length
    }
  }
  // the one flat join of megabytes in a slice of its own
  if (chars >= FLAT_CHARS) yield NOW
  const joined = text.end('', '')
  if (chars >= FLAT_CHARS) yield NOW
  return new BlocksPart(kind, owner, key, id, arr, texts, textType, joined)
}

/** values and characters of a call's arguments above which their JSON text is made in slices */
const ARGS_NODES = 1024
const ARGS_CHARS = 64 * 1024
/** whether a value is over ARGS_NODES values or ARGS_CHARS characters (stops as soon as it is) */
function argsLarge(v: unknown): boolean {
  return !withinBudget(v, ARGS_NODES, ARGS_CHARS)
}

/** JSON.stringify(v): a large value's asked of the driver, which makes it in slices (JsonOf) */
function* jsonText(v: unknown): Steps<string> {
  return (argsLarge(v) ? yield new JsonOf(v) : JSON.stringify(v)) ?? ''
}

// --- Anthropic Messages -------------------------------------------------------------------------

function* anthropicPart(b: any): Steps<Part> {
  if (!isObj(b)) return { kind: 'other', text: '' }
  if (b.type === 'text' && typeof b.text === 'string') return new FieldPart('text', b.text, b, 'text')
  if (b.type === 'tool_use') {
    const args = b.input ?? {}
    return { kind: 'call', id: String(b.id), name: String(b.name), text: yield* jsonText(args), args }
  }
  if (b.type === 'image' || b.type === 'document') return { kind: 'image', text: '' }
  return { kind: 'other', text: '' }
}

function* anthropicParts(m: any): Steps<Part[]> {
  if (typeof m.content === 'string') return [new FieldPart('text', m.content, m, 'content')]
  if (!Array.isArray(m.content)) return [{ kind: 'other', text: '' }]
  const parts: Part[] = []
  for (let i = 0; i < m.content.length; i++) {
    if (i % STEP === STEP - 1) yield
    const b = m.content[i]
    parts.push(
      isObj(b) && b.type === 'tool_result'
        ? yield* blockArrayPart('result', b, 'content', 'text', String(b.tool_use_id))
        : yield* anthropicPart(b),
    )
  }
  return parts
}

function* anthropicMsg(m: any): Steps<Msg> {
  const known = m?.role === 'user' || m?.role === 'assistant'
  return { role: known ? m.role : 'system', parts: known ? yield* anthropicParts(m) : [], item: m }
}

function anthropicView(body: any, msgs: Msg[]): BodyView {
  return {
    msgs,
    strictRoles: true,
    saveText: (msg) => saveFields(msg.item, ['content']),
    keep: (kept) => {
      body.messages = kept.map((m) => m.item)
    },
    addText(msg, text, where) {
      const m = msg.item
      if (typeof m.content === 'string') m.content = [{ type: 'text', text: m.content }]
      if (!Array.isArray(m.content)) return false
      // thinking blocks must open an assistant turn; tool results must open a user turn
      const first = m.content[0]?.type
      if (where === 'start' && (first === 'thinking' || first === 'redacted_thinking' || first === 'tool_result'))
        return false
      if (where === 'start') m.content.unshift({ type: 'text', text })
      else m.content.push({ type: 'text', text })
      return true
    },
  }
}

// --- OpenAI Chat Completions --------------------------------------------------------------------

function* openaiMsg(m: any): Steps<Msg> {
  const role = m?.role
  if (role === 'tool' || role === 'function')
    return {
      role: 'tool',
      item: m,
      parts: [yield* blockArrayPart('result', m, 'content', 'text', m.tool_call_id ?? m.name)],
    }
  if (role !== 'user' && role !== 'assistant') return { role: 'system', item: m, parts: [] }
  const parts: Part[] = []
  if (Array.isArray(m.content)) {
    for (let i = 0; i < m.content.length; i++) {
      if (i % STEP === STEP - 1) yield
      const p = m.content[i]
      if (isObj(p) && p.type === 'text' && typeof p.text === 'string')
        parts.push(new FieldPart('text', p.text, p, 'text'))
      else
        parts.push({
          kind:
            isObj(p) && (p.type === 'image_url' || p.type === 'input_audio' || p.type === 'file') ? 'image' : 'other',
          text: '',
        })
    }
  } else if (typeof m.content === 'string') parts.push(new FieldPart('text', m.content, m, 'content'))
  const calls: any[] = Array.isArray(m.tool_calls) ? m.tool_calls : []
  for (let i = 0; i < calls.length; i++) {
    if (i % STEP === STEP - 1) yield
    const c = calls[i]
    const fn = c?.function ?? {}
    parts.push(
      new FieldPart(
        'call',
        typeof fn.arguments === 'string' ? fn.arguments : '',
        fn,
        'arguments',
        String(c?.id),
        String(fn.name),
      ),
    )
  }
  if (isObj(m.function_call))
    parts.push({
      kind: 'call',
      id: m.function_call.name,
      name: m.function_call.name,
      text: String(m.function_call.arguments ?? ''),
    })
  return { role, item: m, parts }
}

function openaiView(body: any, msgs: Msg[]): BodyView {
  return {
    msgs,
    strictRoles: false,
    saveText: (msg) => saveFields(msg.item, ['content']),
    keep: (kept) => {
      body.messages = kept.map((m) => m.item)
    },
    addText(msg, text, where) {
      const m = msg.item
      if (m.content == null || m.content === '') m.content = text
      else if (typeof m.content === 'string')
        m.content = where === 'start' ? `${text}\n\n${m.content}` : `${m.content}\n\n${text}`
      else if (Array.isArray(m.content))
        where === 'start' ? m.content.unshift({ type: 'text', text }) : m.content.push({ type: 'text', text })
      else return false
      return true
    },
  }
}

// --- OpenAI Responses ---------------------------------------------------------------------------

function* responsesItem(it: any): Steps<Msg> {
  const type = it?.type
  if (type === 'function_call' || type === 'custom_tool_call') {
    const key = type === 'function_call' ? 'arguments' : 'input'
    return {
      role: 'assistant',
      item: it,
      parts: [new FieldPart('call', String(it[key] ?? ''), it, key, String(it.call_id), String(it.name))],
    }
  }
  if (type === 'function_call_output' || type === 'custom_tool_call_output')
    return {
      role: 'tool',
      item: it,
      parts: [yield* blockArrayPart('result', it, 'output', 'input_text', String(it.call_id))],
    }
  if (type === 'reasoning') return { role: 'assistant', item: it, parts: [{ kind: 'other', text: '' }] }
  if ((type === 'message' || type === undefined) && (it?.role === 'user' || it?.role === 'assistant')) {
    const textType = it.role === 'user' ? 'input_text' : 'output_text'
    const parts: Part[] = []
    if (typeof it.content === 'string') parts.push(new FieldPart('text', it.content, it, 'content'))
    else {
      const content: any[] = Array.isArray(it.content) ? it.content : []
      for (let i = 0; i < content.length; i++) {
        if (i % STEP === STEP - 1) yield
        const p = content[i]
        if (isObj(p) && (p.type === textType || p.type === 'text') && typeof p.text === 'string')
          parts.push(new FieldPart('text', p.text, p, 'text'))
        else
          parts.push({
            kind: isObj(p) && (p.type === 'input_image' || p.type === 'input_file') ? 'image' : 'other',
            text: '',
          })
      }
    }
    return { role: it.role, item: it, parts }
  }
  // system/developer messages, item references, shell calls and types from next month: untouched
  return { role: 'system', item: it, parts: [] }
}

function responsesView(body: any, msgs: Msg[]): BodyView {
  return {
    msgs,
    strictRoles: false,
    saveText: (msg) => saveFields(msg.item, ['content']),
    keep: (kept) => {
      body.input = kept.map((m) => m.item)
    },
    addText(msg, text, where) {
      const it = msg.item
      if (msg.role !== 'user' && msg.role !== 'assistant') return false
      const type = msg.role === 'user' ? 'input_text' : 'output_text'
      if (typeof it.content === 'string') it.content = [{ type, text: it.content }]
      if (!Array.isArray(it.content)) return false
      if (where === 'start') it.content.unshift({ type, text })
      else it.content.push({ type, text })
      return true
    },
  }
}

// --- Gemini -------------------------------------------------------------------------------------

type Leaf = { owner: any; key: string | number; len: number }

/** the longest string inside a functionResponse's response: what a truncation or minification rewrites */
function longestLeaf(v: any, depth = 0): Leaf | undefined {
  if (depth > 8 || v === null || typeof v !== 'object') return undefined
  let best: Leaf | undefined
  for (const k of Object.keys(v)) {
    const x = v[k]
    const cand = typeof x === 'string' ? { owner: v, key: k, len: x.length } : longestLeaf(x, depth + 1)
    if (cand && (!best || cand.len > best.len)) best = cand
  }
  return best
}

function* geminiParts(c: any, counter: { n: number }): Steps<Part[]> {
  const all: any[] = Array.isArray(c.parts) ? c.parts : []
  const parts: Part[] = []
  for (let i = 0; i < all.length; i++) {
    if (i % STEP === STEP - 1) yield
    parts.push(yield* geminiPart(all[i], counter))
  }
  return parts
}

function* geminiPart(p: any, counter: { n: number }): Steps<Part> {
  if (!isObj(p)) return { kind: 'other', text: '' }
  if (typeof p.text === 'string' && !p.thought) return new FieldPart('text', p.text, p, 'text')
  if (isObj(p.functionCall)) {
    const id = p.functionCall.id ?? `${p.functionCall.name}#${counter.n++}`
    const args = p.functionCall.args ?? {}
    return { kind: 'call', id, name: String(p.functionCall.name), text: yield* jsonText(args), args }
  }
  if (isObj(p.functionResponse)) {
    // one go: a response of 100,000 keys took ~50 ms, mostly Object.keys (a walk in steps was no quicker)
    const leaf = longestLeaf(p.functionResponse.response)
    if (!leaf)
      return { kind: 'result', id: p.functionResponse.id, text: yield* jsonText(p.functionResponse.response ?? {}) }
    return new FieldPart('result', leaf.owner[leaf.key], leaf.owner, leaf.key, p.functionResponse.id)
  }
  if (p.inlineData || p.fileData) return { kind: 'image', text: '' }
  return { kind: 'other', text: '' }
}

/** a Gemini content's message; `counter` numbers the calls without an id across the body */
function* geminiMsg(c: any, counter: { n: number }): Steps<Msg> {
  const role: Role = c?.role === 'model' ? 'assistant' : c?.role === 'function' ? 'tool' : 'user'
  return { role, item: c, parts: yield* geminiParts(c, counter) }
}

function geminiView(body: any, msgs: Msg[]): BodyView {
  return {
    msgs,
    strictRoles: true,
    saveText: (msg) => saveFields(msg.item, ['parts']),
    keep: (kept) => {
      body.contents = kept.map((m) => m.item)
    },
    addText(msg, text, where) {
      const c = msg.item
      if (!Array.isArray(c.parts)) return false
      // Gemini 3 wants a thought signature on the turn's first part: text goes after it
      if (where === 'start' && (c.parts[0]?.thoughtSignature || c.parts[0]?.thought)) return false
      if (where === 'start') c.parts.unshift({ text })
      else c.parts.push({ text })
      return true
    },
  }
}

/** A protocol's items in the body, the message each makes (pausing every STEP parts), and the view over those messages. */
interface ViewMaker {
  items: any[]
  msg(item: any): Steps<Msg>
  view(msgs: Msg[]): BodyView
}

function viewMaker(protocol: ProtocolName, body: any): ViewMaker | undefined {
  if (!isObj(body)) return undefined
  if (protocol === 'anthropic' && Array.isArray(body.messages))
    return { items: body.messages, msg: anthropicMsg, view: (msgs) => anthropicView(body, msgs) }
  if (protocol === 'openai' && Array.isArray(body.messages))
    return { items: body.messages, msg: openaiMsg, view: (msgs) => openaiView(body, msgs) }
  if (protocol === 'responses' && Array.isArray(body.input))
    return { items: body.input, msg: responsesItem, view: (msgs) => responsesView(body, msgs) }
  if (protocol === 'gemini' && Array.isArray(body.contents)) {
    const counter = { n: 0 }
    return { items: body.contents, msg: (c) => geminiMsg(c, counter), view: (msgs) => geminiView(body, msgs) }
  }
  return undefined
}

/** The body's view, or undefined for a body with nothing to compress (Responses `input` as one string). */
export function viewOf(protocol: ProtocolName, body: any): BodyView | undefined {
  const v = viewMaker(protocol, body)
  if (!v) return undefined
  const msgs: Msg[] = []
  for (let i = 0; i < v.items.length; i++) msgs.push(runThrough(v.msg(v.items[i])))
  return v.view(msgs)
}

/** viewOf, the messages made a slice at a time (tens of thousands of messages, or of blocks in one) */
export async function viewOfPaced(protocol: ProtocolName, body: any, pace: Pace): Promise<BodyView | undefined> {
  const v = viewMaker(protocol, body)
  if (!v) return undefined
  const msgs: Msg[] = []
  for (let i = 0; i < v.items.length; i++) {
    // the message's generator driven here (an async call per message cost more than its parts)
    const steps = v.msg(v.items[i])
    let r = steps.next()
    while (!r.done) {
      // NOW and a JSON text asked for by stepPaced; a plain pause here
      if (r.value !== undefined) r = await stepPaced(steps, r.value, pace)
      else {
        if (pace.due()) await pace.yield()
        r = steps.next()
      }
    }
    msgs.push(r.value)
    if (pace.due()) await pace.yield()
  }
  return v.view(msgs)
}

/** how many messages the body's view would hold, without making it */
export function messageCount(protocol: ProtocolName, body: any): number {
  return viewMaker(protocol, body)?.items.length ?? 0
}

const arrLen = (v: unknown) => (Array.isArray(v) ? v.length : 0)

/**
 * How many messages and parts (content blocks, tool calls, Gemini parts) the view would hold,
 * counted until over `max`: one message of 110,000 blocks is as long a walk as 110,000 messages.
 */
export function unitCount(protocol: ProtocolName, body: any, max: number): number {
  const items = viewMaker(protocol, body)?.items
  if (!items) return 0
  let n = items.length
  for (let i = 0; i < items.length && n <= max; i++) {
    const it = items[i]
    if (isObj(it)) n += arrLen(it.content) + arrLen(it.tool_calls) + arrLen(it.parts)
  }
  return n
}
