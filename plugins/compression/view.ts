// One neutral view over the four protocols' request bodies, so that each strategy is written once.
// A view holds references into the body itself: a part's `set` rewrites the body in place and
// `keep` writes the kept messages back. Anything the view does not understand is an 'other' part
// or a 'system' message, which no strategy touches or drops.
import type { ProtocolName } from '../../core/types.ts'
import type { Pace } from './pace.ts'

export type PartKind = 'text' | 'call' | 'result' | 'image' | 'other'

export interface Part {
  kind: PartKind
  /** text parts: the text; results: the output's text (text blocks joined); calls: the arguments as JSON text */
  text: string
  /** rewrite the text in place (text and result parts; images inside a result are kept) */
  set?(text: string): void
  /** call and result parts: the call id that pairs them (Gemini may have none) */
  id?: string
  /** call parts: the tool's name */
  name?: string
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
}

const isObj = (v: unknown): v is Record<string, any> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** The text blocks of a content array joined; `set` replaces them with one text block where the first was. */
function blockArrayPart(kind: PartKind, owner: Record<string, any>, key: string, textType: string, id?: string): Part {
  const v = owner[key]
  if (typeof v === 'string' || v == null) {
    return {
      kind,
      id,
      text: typeof v === 'string' ? v : '',
      set: (s) => {
        owner[key] = s
      },
    }
  }
  const arr: any[] = Array.isArray(v) ? v : []
  const texts = arr.filter((b) => isObj(b) && typeof b.text === 'string' && (b.type === textType || b.type === 'text'))
  return {
    kind,
    id,
    text: texts.map((b) => b.text).join('\n'),
    set: (s) => {
      const first = arr.findIndex((b) => texts.includes(b))
      const kept = arr.filter((b) => !texts.includes(b))
      if (first < 0) kept.push({ type: textType, text: s })
      else kept.splice(first, 0, { ...texts[0], text: s })
      owner[key] = kept
    },
  }
}

// --- Anthropic Messages -------------------------------------------------------------------------

function anthropicParts(m: any): Part[] {
  if (typeof m.content === 'string')
    return [
      {
        kind: 'text',
        text: m.content,
        set: (s) => {
          m.content = s
        },
      },
    ]
  if (!Array.isArray(m.content)) return [{ kind: 'other', text: '' }]
  return m.content.map((b: any): Part => {
    if (!isObj(b)) return { kind: 'other', text: '' }
    if (b.type === 'text' && typeof b.text === 'string')
      return {
        kind: 'text',
        text: b.text,
        set: (s) => {
          b.text = s
        },
      }
    if (b.type === 'tool_use')
      return { kind: 'call', id: String(b.id), name: String(b.name), text: JSON.stringify(b.input ?? {}) }
    if (b.type === 'tool_result') return blockArrayPart('result', b, 'content', 'text', String(b.tool_use_id))
    if (b.type === 'image' || b.type === 'document') return { kind: 'image', text: '' }
    return { kind: 'other', text: '' }
  })
}

function anthropicMsg(m: any): Msg {
  const known = m?.role === 'user' || m?.role === 'assistant'
  return { role: known ? m.role : 'system', parts: known ? anthropicParts(m) : [], item: m }
}

function anthropicView(body: any, msgs: Msg[]): BodyView {
  return {
    msgs,
    strictRoles: true,
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

function openaiMsg(m: any): Msg {
  const role = m?.role
  if (role === 'tool' || role === 'function')
    return {
      role: 'tool',
      item: m,
      parts: [blockArrayPart('result', m, 'content', 'text', m.tool_call_id ?? m.name)],
    }
  if (role !== 'user' && role !== 'assistant') return { role: 'system', item: m, parts: [] }
  const parts: Part[] = []
  if (Array.isArray(m.content)) {
    for (const p of m.content) {
      if (isObj(p) && p.type === 'text' && typeof p.text === 'string')
        parts.push({
          kind: 'text',
          text: p.text,
          set: (s) => {
            p.text = s
          },
        })
      else
        parts.push({
          kind:
            isObj(p) && (p.type === 'image_url' || p.type === 'input_audio' || p.type === 'file') ? 'image' : 'other',
          text: '',
        })
    }
  } else if (typeof m.content === 'string')
    parts.push({
      kind: 'text',
      text: m.content,
      set: (s) => {
        m.content = s
      },
    })
  for (const c of Array.isArray(m.tool_calls) ? m.tool_calls : []) {
    const fn = c?.function ?? {}
    parts.push({
      kind: 'call',
      id: String(c?.id),
      name: String(fn.name),
      text: typeof fn.arguments === 'string' ? fn.arguments : '',
      set: (s) => {
        fn.arguments = s
      },
    })
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

function responsesItem(it: any): Msg {
  const type = it?.type
  if (type === 'function_call' || type === 'custom_tool_call') {
    const key = type === 'function_call' ? 'arguments' : 'input'
    return {
      role: 'assistant',
      item: it,
      parts: [
        {
          kind: 'call',
          id: String(it.call_id),
          name: String(it.name),
          text: String(it[key] ?? ''),
          set: (s) => {
            it[key] = s
          },
        },
      ],
    }
  }
  if (type === 'function_call_output' || type === 'custom_tool_call_output')
    return { role: 'tool', item: it, parts: [blockArrayPart('result', it, 'output', 'input_text', String(it.call_id))] }
  if (type === 'reasoning') return { role: 'assistant', item: it, parts: [{ kind: 'other', text: '' }] }
  if ((type === 'message' || type === undefined) && (it?.role === 'user' || it?.role === 'assistant')) {
    const textType = it.role === 'user' ? 'input_text' : 'output_text'
    const parts: Part[] = []
    if (typeof it.content === 'string')
      parts.push({
        kind: 'text',
        text: it.content,
        set: (s) => {
          it.content = s
        },
      })
    else
      for (const p of Array.isArray(it.content) ? it.content : []) {
        if (isObj(p) && (p.type === textType || p.type === 'text') && typeof p.text === 'string')
          parts.push({
            kind: 'text',
            text: p.text,
            set: (s) => {
              p.text = s
            },
          })
        else
          parts.push({
            kind: isObj(p) && (p.type === 'input_image' || p.type === 'input_file') ? 'image' : 'other',
            text: '',
          })
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

/** the longest string inside a functionResponse's response: what a truncation or minification rewrites */
function longestLeaf(v: any, depth = 0): { owner: any; key: string | number; len: number } | undefined {
  if (depth > 8 || v === null || typeof v !== 'object') return undefined
  let best: { owner: any; key: string | number; len: number } | undefined
  for (const k of Object.keys(v)) {
    const x = v[k]
    const cand = typeof x === 'string' ? { owner: v, key: k, len: x.length } : longestLeaf(x, depth + 1)
    if (cand && (!best || cand.len > best.len)) best = cand
  }
  return best
}

function geminiParts(c: any, counter: { n: number }): Part[] {
  return (Array.isArray(c.parts) ? c.parts : []).map((p: any): Part => {
    if (!isObj(p)) return { kind: 'other', text: '' }
    if (typeof p.text === 'string' && !p.thought)
      return {
        kind: 'text',
        text: p.text,
        set: (s) => {
          p.text = s
        },
      }
    if (isObj(p.functionCall))
      return {
        kind: 'call',
        id: p.functionCall.id ?? `${p.functionCall.name}#${counter.n++}`,
        name: String(p.functionCall.name),
        text: JSON.stringify(p.functionCall.args ?? {}),
      }
    if (isObj(p.functionResponse)) {
      const leaf = longestLeaf(p.functionResponse.response)
      if (!leaf)
        return { kind: 'result', id: p.functionResponse.id, text: JSON.stringify(p.functionResponse.response ?? {}) }
      return {
        kind: 'result',
        id: p.functionResponse.id,
        text: leaf.owner[leaf.key],
        set: (s) => {
          leaf.owner[leaf.key] = s
        },
      }
    }
    if (p.inlineData || p.fileData) return { kind: 'image', text: '' }
    return { kind: 'other', text: '' }
  })
}

/** a Gemini content's message; `counter` numbers the calls without an id across the body */
function geminiMsg(c: any, counter: { n: number }): Msg {
  const role: Role = c?.role === 'model' ? 'assistant' : c?.role === 'function' ? 'tool' : 'user'
  return { role, item: c, parts: geminiParts(c, counter) }
}

function geminiView(body: any, msgs: Msg[]): BodyView {
  return {
    msgs,
    strictRoles: true,
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

/** A protocol's items in the body, the message each makes, and the view over those messages. */
interface ViewMaker {
  items: any[]
  msg(item: any): Msg
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
  for (let i = 0; i < v.items.length; i++) msgs.push(v.msg(v.items[i]))
  return v.view(msgs)
}

/** viewOf, the messages made a slice at a time (a body of tens of thousands of messages) */
export async function viewOfPaced(protocol: ProtocolName, body: any, pace: Pace): Promise<BodyView | undefined> {
  const v = viewMaker(protocol, body)
  if (!v) return undefined
  const msgs: Msg[] = []
  for (let i = 0; i < v.items.length; i++) {
    msgs.push(v.msg(v.items[i]))
    if (pace.due()) await pace.yield()
  }
  return v.view(msgs)
}

/** how many messages the body's view would hold, without making it */
export function messageCount(protocol: ProtocolName, body: any): number {
  return viewMaker(protocol, body)?.items.length ?? 0
}
