// How the demo vendor decides to call a tool and what it passes: deterministic, simple rules a
// user can predict. A tool is called when the prompt shares enough words with its name and the
// first sentence of its description; its arguments are built from its JSON schema.
import type { DemoTool, DemoToolChoice } from './demo-request.ts'

const STOP_WORDS = new Set(
  (
    'the and for with about from into onto this that these those there here what which who whom whose when where why how ' +
    'are was were been being have has had does did doing can could would should will shall may might must ' +
    'you your yours our ours their theirs its his her him she they them me my mine we us i ' +
    'please tell give want need like some any all each every one more most much many very just also then than ' +
    'not now today tomorrow yesterday out over under again only own same other such too'
  ).split(' '),
)

// verbs half the tools start with ("get_", "read", "write"): on their own they say little about
// which tool a prompt wants, so a name word of this kind weighs no more than a description word
const GENERIC_VERBS = new Set(
  'get set read write run create make list find search fetch update delete remove edit show add call check look send open load save execute query lookup put post generate use'.split(
    ' ',
  ),
)

/** Score at which a prompt asks for a tool: one specific name word, or two words of name and description. */
const CALL_THRESHOLD = 2
const MAX_PROMPT_CHARS = 4000

const URL_IN_TEXT = /\bhttps?:\/\/[^\s"'<>)]+/i
const PATH_IN_TEXT =
  /(?:^|\s)((?:~|\.{1,2})?\/?[\w.-]+(?:\/[\w.-]+)+\/?|[\w-]+\.[a-z][a-z0-9]{0,4})(?=[\s,;:!?)]|\.?$)/i

function stem(word: string): string {
  if (word.length > 5 && word.endsWith('ing')) return word.slice(0, -3)
  if (word.length > 4 && word.endsWith('ed')) return word.slice(0, -2)
  if (word.length > 3 && word.endsWith('s') && !word.endsWith('ss')) return word.slice(0, -1)
  return word
}

/** Content words, lower case and stemmed; names are split at snake_case, kebab-case and camelCase. */
export function wordsOf(text: string): Set<string> {
  const out = new Set<string>()
  const spaced = text
    .slice(0, MAX_PROMPT_CHARS)
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
  for (const w of spaced.split(/[^\p{L}\p{N}]+/u)) {
    if (w.length >= 3 && !STOP_WORDS.has(w)) out.add(stem(w))
  }
  return out
}

const firstSentence = (text: string) => text.split(/(?<=[.!?])\s|\n/, 1)[0]!.slice(0, 300)

/** How strongly the prompt asks for this tool: 2 per specific name word, 1 per other shared word. */
function score(tool: DemoTool, prompt: Set<string>): number {
  const name = wordsOf(tool.name)
  let total = 0
  for (const w of name) if (prompt.has(w)) total += GENERIC_VERBS.has(w) ? 1 : 2
  for (const w of wordsOf(firstSentence(tool.description))) if (prompt.has(w) && !name.has(w)) total += 1
  return total
}

/**
 * The tool to call, if any: under `auto` the best-scoring tool at or above the threshold; when
 * forced, the best-scoring allowed tool even below it. Ties go to the tool listed first.
 */
export function pickTool(tools: DemoTool[], choice: DemoToolChoice, question: string): DemoTool | undefined {
  if (choice.mode === 'none') return undefined
  const allowed = choice.names ? tools.filter((t) => choice.names!.includes(t.name)) : tools
  const prompt = wordsOf(question)
  // a path or a URL in the prompt is what file and web tools act on ("read src/app.ts")
  if (PATH_IN_TEXT.test(question.slice(0, MAX_PROMPT_CHARS))) prompt.add('file').add('path')
  if (URL_IN_TEXT.test(question.slice(0, MAX_PROMPT_CHARS))) prompt.add('url').add('link')
  let best: DemoTool | undefined
  let bestScore = -1
  for (const t of allowed) {
    const s = score(t, prompt)
    if (s > bestScore) [best, bestScore] = [t, s]
  }
  if (choice.mode === 'required') return best
  return bestScore >= CALL_THRESHOLD ? best : undefined
}

// Arguments from the tool's JSON schema (OpenAI and Anthropic JSON Schema, Gemini's OpenAPI
// subset with upper-case type names): required properties always, optional ones only when the
// prompt supplies their value; const, default, then enum; local $refs, anyOf/oneOf (first branch
// that is not null), allOf merged; bounds, lengths and formats honoured (not `pattern`).

interface ArgsContext {
  /** the question on one line, as far as values are taken from it */
  text: string
  words: Set<string>
  root: unknown
  /** nodes left to build: schemas nest and repeat, the work per request stays bounded */
  budget: number
}

type Schema = Record<string, any>

const MAX_DEPTH = 12
const MAX_ITEMS = 16
const MAX_PROPERTIES = 64
const MAX_STRING = 1000
/** enum values, anyOf/allOf branches and required names read per schema node */
const MAX_LIST = 256
/**
 * a property name longer than this is passed over: names are identifiers, and one of megabytes
 * (npm run fuzz, seed 555222016 case 3657: a `required` name of 3.4M characters) would be read by
 * promptString's regexes and copied into the arguments, all in one block (~600 ms)
 */
const MAX_NAME = 256

const isObject = (v: unknown): v is Schema => typeof v === 'object' && v !== null && !Array.isArray(v)

export function argumentsFor(tool: DemoTool, question: string): Record<string, unknown> {
  const text = question.slice(0, MAX_PROMPT_CHARS).replace(/\s+/g, ' ').trim()
  const value = valueFor(tool.schema, '', { text, words: wordsOf(text), root: tool.schema, budget: 2000 }, 0, 0)
  return isObject(value) ? value : {}
}

/** The schema behind local `$ref`s (`#/$defs/X`, `#/definitions/X`, any pointer into the root). */
function resolve(schema: unknown, root: unknown): Schema | undefined {
  let s = schema
  for (let hops = 0; isObject(s) && typeof s.$ref === 'string' && hops < 16; hops++) {
    if (!s.$ref.startsWith('#')) return undefined
    let target: unknown = root
    for (const key of s.$ref.slice(1).split('/').filter(Boolean)) {
      target = isObject(target) ? target[pointerKey(key)] : undefined
    }
    s = target
  }
  return isObject(s) ? s : undefined
}

function pointerKey(segment: string): string {
  let key = segment
  try {
    key = decodeURIComponent(segment)
  } catch {
    // not percent-encoded after all: taken as written
  }
  return key.replace(/~1/g, '/').replace(/~0/g, '~')
}

function typeOf(s: Schema): string {
  const t = Array.isArray(s.type) ? (s.type.find((x: unknown) => String(x).toLowerCase() !== 'null') ?? 'null') : s.type
  if (typeof t === 'string') return t.toLowerCase()
  return isObject(s.properties) ? 'object' : s.items !== undefined || Array.isArray(s.prefixItems) ? 'array' : 'string'
}

function valueFor(schema: unknown, name: string, c: ArgsContext, depth: number, index: number): unknown {
  const s = resolve(schema, c.root)
  if (!s) return stringFor({}, name, c, index)
  // past the budget or the depth, the smallest value of the type: nothing below it is built
  if (--c.budget < 0 || depth > MAX_DEPTH) return smallest(s, name, c)
  if ('const' in s) return s.const
  if ('default' in s) return s.default
  if (Array.isArray(s.enum) && s.enum.length) return enumValue(s.enum, c.words, index)
  const branches = s.anyOf ?? s.oneOf
  if (Array.isArray(branches) && branches.length) {
    const branch = branches.slice(0, MAX_LIST).find((b) => typeOf(resolve(b, c.root) ?? {}) !== 'null') ?? branches[0]
    return valueFor(branch, name, c, depth + 1, index)
  }
  if (Array.isArray(s.allOf) && s.allOf.length) return valueFor(mergeAll(s, c.root), name, c, depth + 1, index)
  switch (typeOf(s)) {
    case 'object':
      return objectFor(s, c, depth)
    case 'array':
      return arrayFor(s, name, c, depth)
    case 'integer':
      return numberFor(s, true)
    case 'number':
      return numberFor(s, false)
    case 'boolean':
      return false
    case 'null':
      return null
    default:
      return stringFor(s, name, c, index)
  }
}

function smallest(s: Schema, name: string, c: ArgsContext): unknown {
  if ('const' in s) return s.const
  if (Array.isArray(s.enum) && s.enum.length) return s.enum[0]
  switch (typeOf(s)) {
    case 'object':
      return {}
    case 'array':
      return []
    case 'integer':
      return numberFor(s, true)
    case 'number':
      return numberFor(s, false)
    case 'boolean':
      return false
    case 'null':
      return null
    default:
      return stringFor(s, name, c, 0)
  }
}

/** allOf as one schema: properties and required lists merged, the rest from the first branch that has it. */
function mergeAll(s: Schema, root: unknown): Schema {
  const { allOf, ...rest } = s
  const parts = [rest, ...allOf.slice(0, MAX_LIST).map((b: unknown) => resolve(b, root) ?? {})]
  const merged: Schema = Object.assign({}, ...parts.slice().reverse())
  merged.properties = Object.assign({}, ...parts.map((p) => (isObject(p.properties) ? p.properties : {})))
  merged.required = parts.flatMap((p) => (Array.isArray(p.required) ? p.required : []))
  return merged
}

/** The enum value the prompt names, else the first (or, for array items, each in turn). */
function enumValue(values: unknown[], prompt: Set<string>, index: number): unknown {
  const named = values.slice(0, MAX_LIST).find((v) => {
    const words = typeof v === 'string' && v.length <= MAX_STRING ? wordsOf(v) : new Set<string>()
    return words.size > 0 && [...words].every((w) => prompt.has(w))
  })
  return index === 0 && named !== undefined ? named : values[index % values.length]
}

function objectFor(s: Schema, c: ArgsContext, depth: number): Record<string, unknown> {
  const props: Schema = isObject(s.properties) ? s.properties : {}
  const required = new Set(
    (Array.isArray(s.required) ? s.required.slice(0, MAX_LIST) : []).filter(
      (k: unknown): k is string => typeof k === 'string' && k.length <= MAX_NAME,
    ),
  )
  // no prototype: a property named __proto__ is an argument like any other
  const out: Record<string, unknown> = Object.create(null)
  let seen = 0
  for (const key in props) {
    if (++seen > MAX_PROPERTIES) break
    if (key.length > MAX_NAME) continue
    if (required.has(key)) out[key] = valueFor(props[key], key, c, depth + 1, 0)
    else {
      // an optional property is passed only when the prompt says what it is
      const p = resolve(props[key], c.root)
      const fromPrompt = p && typeOf(p) === 'string' && !p.enum ? promptString(key, c.text) : undefined
      if (fromPrompt !== undefined) out[key] = fitLength(p!, fromPrompt)
    }
  }
  for (const key of [...required].slice(0, MAX_PROPERTIES)) if (!(key in out)) out[key] = stringFor({}, key, c, 0)
  return out
}

function arrayFor(s: Schema, name: string, c: ArgsContext, depth: number): unknown[] {
  const prefix: unknown[] = Array.isArray(s.prefixItems) ? s.prefixItems : Array.isArray(s.items) ? s.items : []
  const min = Number.isInteger(s.minItems) ? s.minItems : 1
  const max = Number.isInteger(s.maxItems) ? s.maxItems : Infinity
  // at least one item where the schema allows it: an empty list shows nothing
  const n = Math.max(0, Math.min(Math.max(min, 1, prefix.length), max, MAX_ITEMS))
  const items = isObject(s.items) ? s.items : {}
  return Array.from({ length: n }, (_, i) => valueFor(prefix[i] ?? items, name, c, depth + 1, i))
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined)

function numberFor(s: Schema, integer: boolean): number {
  const min = num(s.minimum)
  const max = num(s.maximum)
  // JSON Schema draft 4 wrote exclusive bounds as booleans beside minimum/maximum
  const xmin = s.exclusiveMinimum === true ? min : num(s.exclusiveMinimum)
  const xmax = s.exclusiveMaximum === true ? max : num(s.exclusiveMaximum)
  let v = 1
  if (min !== undefined && v < min) v = min
  if (xmin !== undefined && v <= xmin) v = integer ? Math.floor(xmin) + 1 : xmin + 1
  if (max !== undefined && v > max) v = max
  if (xmax !== undefined && v >= xmax) v = integer ? Math.ceil(xmax) - 1 : xmax - (xmax - (xmin ?? min ?? xmax - 2)) / 2
  if (integer) v = Math.ceil(v)
  const step = num(s.multipleOf)
  if (step && step > 0) v = Math.ceil(v / step) * step
  return v
}

// property names whose value the prompt can supply, by what they hold
const NAME_KINDS: Array<[kind: 'url' | 'path' | 'place' | 'query', words: string[]]> = [
  ['url', ['url', 'uri', 'link', 'href', 'website']],
  ['path', ['path', 'file', 'filepath', 'filename', 'dir', 'directory', 'folder']],
  ['place', ['city', 'location', 'place', 'town', 'country', 'region', 'address', 'destination', 'origin']],
  [
    'query',
    [
      'query',
      'q',
      'search',
      'question',
      'prompt',
      'topic',
      'keyword',
      'keywords',
      'term',
      'subject',
      'title',
      'text',
      'input',
      'message',
    ],
  ],
]
const PLACE_IN_TEXT = /\b(?:in|at|for|near|to|from)\s+(\p{Lu}[\p{L}'’-]*(?:\s+\p{Lu}[\p{L}'’-]*)*)/u

/** A value for a property named like `city`, `query` or `file_path`, taken from the prompt; undefined when it has none. */
function promptString(name: string, text: string): string | undefined {
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
  const kind = NAME_KINDS.find(([, names]) => names.some((n) => words.includes(n)))?.[0]
  switch (kind) {
    case 'url':
      return URL_IN_TEXT.exec(text)?.[0]
    case 'path':
      return PATH_IN_TEXT.exec(text)?.[1]
    case 'place':
      return PLACE_IN_TEXT.exec(text)?.[1]
    case 'query':
      return text.slice(0, 200) || undefined
    default:
      return undefined
  }
}

const FORMATS: Record<string, string> = {
  date: '2025-01-01',
  'date-time': '2025-01-01T00:00:00Z',
  time: '00:00:00Z',
  email: 'demo@example.com',
  uri: 'https://example.com/',
  url: 'https://example.com/',
  hostname: 'example.com',
  ipv4: '192.0.2.1',
  ipv6: '2001:db8::1',
  uuid: '00000000-0000-4000-8000-000000000000',
}

function stringFor(s: Schema, name: string, c: ArgsContext, index: number): string {
  const format = typeof s.format === 'string' && Object.hasOwn(FORMATS, s.format) ? FORMATS[s.format] : undefined
  const value = promptString(name, c.text) ?? format ?? `demo ${name || 'value'}`
  // array items are told apart, so that `uniqueItems` holds
  return fitLength(s, index > 0 && !format ? `${value} ${index + 1}` : value)
}

function fitLength(s: Schema, value: string): string {
  const min = Math.min(Number.isInteger(s.minLength) ? s.minLength : 0, MAX_STRING)
  let out = value
  if (out.length < min) {
    while (out.length < min) out += out ? ' demo' : 'demo'
    out = out.slice(0, min)
  }
  return Number.isInteger(s.maxLength) && s.maxLength >= min ? out.slice(0, s.maxLength) : out
}
