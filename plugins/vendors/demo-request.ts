// What the demo vendor reads from a request, in each protocol: the user's actual question, the
// tools offered and whether one is forced, the tool results it is answering, the output limit.
// Read from the body that would go upstream, not the canonical prompt: the canonical view joins a
// message's text blocks (Claude Code's <system-reminder> blocks with the question) and flattens
// tool calls and results into hashing strings.
import type { MeshContext, ProtocolName } from '../../core/types.ts'

export interface DemoTool {
  name: string
  description: string
  /** the tool's JSON schema for its arguments, as the client sent it */
  schema: unknown
}

/** auto: call a tool the prompt asks for; required: call one anyway; names: the tools allowed */
export interface DemoToolChoice {
  mode: 'auto' | 'none' | 'required'
  names?: string[]
}

export interface DemoToolResult {
  name: string
  text: string
  isError: boolean
}

export interface DemoRequest {
  question: string
  tools: DemoTool[]
  toolChoice: DemoToolChoice
  /** results the last turn carries back to the model */
  toolResults: DemoToolResult[]
  maxTokens?: number
}

/** One message in neutral form: its text blocks, the tool calls it makes, the results it returns. */
interface Turn {
  role: 'user' | 'assistant' | 'other'
  texts: string[]
  calls: Array<{ id: string; name: string }>
  results: Array<{ id: string; name: string; text: string; isError: boolean }>
}

// a tools list or a conversation longer than any real one is read only this far
const MAX_TOOLS = 256
const MAX_TURNS = 2048

const isObject = (v: unknown): v is Record<string, any> => typeof v === 'object' && v !== null && !Array.isArray(v)
const str = (v: unknown): string => (typeof v === 'string' ? v : '')
const list = (v: unknown): any[] => (Array.isArray(v) ? v : [])
// only the newest turns are read: 120,238 messages mapped whole, then cut, held the loop ~110 ms
// (npm run fuzz, seed 1992691901 case 3826)
const lastTurns = (v: unknown): any[] => (Array.isArray(v) ? (v.length > MAX_TURNS ? v.slice(-MAX_TURNS) : v) : [])
const REMINDER_OPEN = '<system-reminder>'
const REMINDER_CLOSE = '</system-reminder>'

export function readDemoRequest(ctx: MeshContext): DemoRequest {
  const body = isObject(ctx.request.body) ? ctx.request.body : {}
  const reader = READERS[ctx.protocol]
  const turns = reader.turns(body).slice(-MAX_TURNS)
  return {
    question: questionOf(turns) ?? fallbackQuestion(ctx),
    tools: reader.tools(body).slice(0, MAX_TOOLS),
    toolChoice: reader.toolChoice(body),
    toolResults: lastResults(turns),
    maxTokens: ctx.prompt.maxTokens ?? reader.maxTokens?.(body),
  }
}

/**
 * The last user message's last text block that is not a <system-reminder> (Claude Code sends
 * reminders as text blocks before and after the question, and tool results as user messages).
 */
function questionOf(turns: Turn[]): string | undefined {
  for (let i = turns.length - 1; i >= 0; i--) {
    const t = turns[i]!
    if (t.role !== 'user') continue
    for (let j = t.texts.length - 1; j >= 0; j--) {
      const text = withoutReminders(t.texts[j]!).trim()
      if (text) return text
    }
  }
  return undefined
}

/** The text with its <system-reminder>...</system-reminder> sections taken out (in linear time: a regex could backtrack). */
function withoutReminders(text: string): string {
  let out = ''
  let from = 0
  for (;;) {
    const open = text.indexOf(REMINDER_OPEN, from)
    const close = open < 0 ? -1 : text.indexOf(REMINDER_CLOSE, open)
    if (close < 0) return out + text.slice(from)
    out += text.slice(from, open)
    from = close + REMINDER_CLOSE.length
  }
}

function fallbackQuestion(ctx: MeshContext): string {
  const users = ctx.prompt.messages.filter((m) => m.role === 'user' && m.text.trim())
  return (users.at(-1) ?? ctx.prompt.messages.at(-1))?.text ?? ''
}

/** The tool results of the trailing turns, named after the calls they answer. */
function lastResults(turns: Turn[]): DemoToolResult[] {
  const names = new Map<string, string>()
  for (const t of turns) for (const c of t.calls) names.set(c.id, c.name)
  const out: DemoToolResult[] = []
  for (let i = turns.length - 1; i >= 0 && turns[i]!.results.length; i--) {
    out.unshift(
      ...turns[i]!.results.map((r) => ({
        name: r.name || names.get(r.id) || 'the tool',
        text: r.text,
        isError: r.isError,
      })),
    )
  }
  return out
}

/** Text of a content value: a string, or the text parts of an array (OpenAI and Anthropic alike). */
function textsOf(content: unknown): string[] {
  if (typeof content === 'string') return [content]
  return list(content)
    .filter((b) => isObject(b) && b.type === 'text' && typeof b.text === 'string')
    .map((b) => b.text)
}

/** A tool result's content as text; JSON for structured results (Gemini's response objects). */
function resultText(content: unknown): string {
  if (typeof content === 'string') return content
  const texts = textsOf(content)
  if (texts.length) return texts.join('\n')
  return content === undefined ? '' : (JSON.stringify(content) ?? '')
}

interface ProtocolReader {
  turns(body: Record<string, any>): Turn[]
  tools(body: Record<string, any>): DemoTool[]
  toolChoice(body: Record<string, any>): DemoToolChoice
  /** limits the core's parser does not read */
  maxTokens?(body: Record<string, any>): number | undefined
}

const openai: ProtocolReader = {
  turns: (body) =>
    lastTurns(body.messages)
      .filter(isObject)
      .map((m): Turn => {
        const calls = [
          ...list(m.tool_calls),
          ...(isObject(m.function_call) ? [{ id: '', function: m.function_call }] : []),
        ]
        const result =
          m.role === 'tool' || m.role === 'function'
            ? [
                {
                  id: str(m.tool_call_id),
                  name: m.role === 'function' ? str(m.name) : '',
                  text: resultText(m.content),
                  isError: false,
                },
              ]
            : []
        return {
          role: m.role === 'user' ? 'user' : m.role === 'assistant' ? 'assistant' : 'other',
          texts: m.role === 'user' ? textsOf(m.content) : [],
          calls: calls.filter(isObject).map((c) => ({ id: str(c.id), name: str(c.function?.name) })),
          results: result,
        }
      }),
  tools: (body) =>
    [
      ...list(body.tools)
        .filter((t) => isObject(t) && t.type === 'function' && isObject(t.function))
        .map((t) => t.function),
      ...list(body.functions).filter(isObject),
    ]
      .filter((f) => typeof f.name === 'string')
      .map((f) => ({ name: f.name, description: str(f.description), schema: f.parameters })),
  toolChoice(body) {
    const c = body.tool_choice ?? body.function_call
    if (c === 'none') return { mode: 'none' }
    if (c === 'required') return { mode: 'required' }
    if (isObject(c)) {
      const name = c.type === 'function' ? c.function?.name : c.name
      if (typeof name === 'string') return { mode: 'required', names: [name] }
      // { type: 'allowed_tools', allowed_tools: { mode, tools } }
      const allowed = c.allowed_tools
      if (isObject(allowed)) {
        const names = list(allowed.tools)
          .map((t) => t?.function?.name ?? t?.name)
          .filter((n): n is string => typeof n === 'string')
        return { mode: allowed.mode === 'required' ? 'required' : 'auto', names }
      }
    }
    return { mode: 'auto' }
  },
}

const anthropic: ProtocolReader = {
  turns: (body) =>
    lastTurns(body.messages)
      .filter(isObject)
      .map((m): Turn => {
        const blocks = list(m.content).filter(isObject)
        return {
          role: m.role === 'user' ? 'user' : m.role === 'assistant' ? 'assistant' : 'other',
          texts: textsOf(m.content),
          calls: blocks.filter((b) => b.type === 'tool_use').map((b) => ({ id: str(b.id), name: str(b.name) })),
          results: blocks
            .filter((b) => b.type === 'tool_result')
            .map((b) => ({
              id: str(b.tool_use_id),
              name: '',
              text: resultText(b.content),
              isError: b.is_error === true,
            })),
        }
      }),
  // server tools (web search, code execution) have no input_schema: the vendor runs them, not the client
  tools: (body) =>
    list(body.tools)
      .filter((t) => isObject(t) && typeof t.name === 'string' && isObject(t.input_schema))
      .map((t) => ({ name: t.name, description: str(t.description), schema: t.input_schema })),
  toolChoice(body) {
    const c = body.tool_choice
    if (!isObject(c)) return { mode: 'auto' }
    if (c.type === 'none') return { mode: 'none' }
    if (c.type === 'any') return { mode: 'required' }
    if (c.type === 'tool' && typeof c.name === 'string') return { mode: 'required', names: [c.name] }
    return { mode: 'auto' }
  },
}

// the Gemini REST API takes the proto field names (snake_case) as well as camelCase
const either = (o: unknown, camel: string, snake: string): unknown => (isObject(o) ? (o[camel] ?? o[snake]) : undefined)

const gemini: ProtocolReader = {
  turns: (body) =>
    lastTurns(body.contents)
      .filter(isObject)
      .map((c): Turn => {
        const parts = list(c.parts).filter(isObject)
        const responses = parts.map((p) => either(p, 'functionResponse', 'function_response')).filter(isObject)
        return {
          role: c.role === 'model' ? 'assistant' : c.role === undefined || c.role === 'user' ? 'user' : 'other',
          texts: parts.filter((p) => typeof p.text === 'string' && !p.thought).map((p) => p.text),
          calls: parts
            .map((p) => either(p, 'functionCall', 'function_call'))
            .filter(isObject)
            .map((f) => ({ id: str(f.id), name: str(f.name) })),
          results: responses.map((r) => ({
            id: str(r.id),
            name: str(r.name),
            text: resultText(r.response),
            isError: false,
          })),
        }
      }),
  tools: (body) =>
    list(body.tools)
      .flatMap((t) => list(either(t, 'functionDeclarations', 'function_declarations')))
      .filter((f) => isObject(f) && typeof f.name === 'string')
      .map((f) => ({
        name: f.name,
        description: str(f.description),
        schema: f.parameters ?? either(f, 'parametersJsonSchema', 'parameters_json_schema'),
      })),
  toolChoice(body) {
    const config = either(either(body, 'toolConfig', 'tool_config'), 'functionCallingConfig', 'function_calling_config')
    const mode = String(either(config, 'mode', 'mode') ?? 'AUTO').toUpperCase()
    const names = list(either(config, 'allowedFunctionNames', 'allowed_function_names')).filter(
      (n): n is string => typeof n === 'string',
    )
    if (mode === 'NONE') return { mode: 'none' }
    return { mode: mode === 'ANY' ? 'required' : 'auto', ...(names.length ? { names } : {}) }
  },
  maxTokens(body) {
    const n = either(either(body, 'generationConfig', 'generation_config'), 'maxOutputTokens', 'max_output_tokens')
    return Number.isInteger(n) && (n as number) > 0 ? (n as number) : undefined
  },
}

/** Text parts of a Responses message: input_text in questions, output_text in earlier answers. */
const responseTexts = (content: unknown): string[] =>
  typeof content === 'string'
    ? [content]
    : list(content)
        .filter((p) => isObject(p) && typeof p.text === 'string' && /^(input_text|output_text|text)$/.test(p.type))
        .map((p) => p.text)

const responses: ProtocolReader = {
  turns: (body) =>
    (typeof body.input === 'string' ? [{ role: 'user', content: body.input }] : lastTurns(body.input))
      .filter(isObject)
      .map((it): Turn => {
        const type = it.type ?? 'message'
        if (type === 'function_call')
          return { role: 'assistant', texts: [], calls: [{ id: str(it.call_id), name: str(it.name) }], results: [] }
        if (type === 'function_call_output')
          return {
            role: 'user',
            texts: [],
            calls: [],
            results: [
              {
                id: str(it.call_id),
                name: '',
                text: resultText(typeof it.output === 'string' ? it.output : responseTexts(it.output).join('\n')),
                isError: false,
              },
            ],
          }
        if (type !== 'message') return { role: 'other', texts: [], calls: [], results: [] }
        return {
          role: it.role === 'user' ? 'user' : it.role === 'assistant' ? 'assistant' : 'other',
          texts: it.role === 'user' ? responseTexts(it.content) : [],
          calls: [],
          results: [],
        }
      }),
  // flat function tools; built-in ones (web_search, file_search) run at the vendor, not the client
  tools: (body) =>
    list(body.tools)
      .filter((t) => isObject(t) && t.type === 'function' && typeof t.name === 'string')
      .map((t) => ({ name: t.name, description: str(t.description), schema: t.parameters })),
  toolChoice(body) {
    const c = body.tool_choice
    if (c === 'none') return { mode: 'none' }
    if (c === 'required') return { mode: 'required' }
    if (isObject(c) && c.type === 'function' && typeof c.name === 'string') return { mode: 'required', names: [c.name] }
    if (isObject(c) && c.type === 'allowed_tools') {
      const names = list(c.tools)
        .map((t) => t?.name)
        .filter((n): n is string => typeof n === 'string')
      return { mode: c.mode === 'required' ? 'required' : 'auto', names }
    }
    return { mode: 'auto' }
  },
}

const READERS: Record<ProtocolName, ProtocolReader> = { openai, anthropic, gemini, responses }
