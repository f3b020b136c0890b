// guard: keeps credentials out of prompts. Every string of the request body (messages, system
// prompt, tool calls and results, in the client's own protocol) is searched for secrets
// (detect.ts); a secret is replaced by [REDACTED:kind] in the body that goes upstream and in
// ctx.prompt, or the request is refused with a 403 secret_in_prompt, per kind. Runs first
// (enforce 'pre', listed before normalise): the caches' keys, the breaker's fingerprints, the audit
// entry and the events are all computed after it, on the redacted request.
import { reparsePrompt, reparsePromptSliced } from '../../core/reparse.ts'
import { Slicer } from '../../core/slicer.ts'
import { refuseOrRecord } from '../../core/dry-run.ts'
import { definePlugin } from '../../core/plugin.ts'
import type { Identity, MeshContext, Plugin } from '../../core/types.ts'
import { SECRET_GROUPS, SECRET_KINDS, detectSecrets, maySecret, type SecretKind, type SecretMatch } from './detect.ts'

export {
  SECRET_GROUPS,
  SECRET_KINDS,
  detectSecrets,
  entropy,
  maySecret,
  type SecretKind,
  type SecretMatch,
} from './detect.ts'

export type GuardAction = 'redact' | 'block'

export interface GuardOptions {
  /** what happens to a secret of a kind not named in `redact`, `block` or `off` (default 'redact') */
  action?: GuardAction
  /** kinds (or groups: cloud, vcs, payment, chat, llm) that are replaced by [REDACTED:kind] */
  redact?: string[]
  /** kinds (or groups) that get the request refused with a 403 secret_in_prompt */
  block?: string[]
  /** kinds (or groups) not looked for */
  off?: string[]
  /** exact values never treated as secrets (a team's own published test fixtures) */
  allow?: string[]
}

/** One secret found: its kind and where in the request (`messages[2] (user)`), never its value. */
export interface GuardFinding {
  kind: string
  where: string
  action: GuardAction
}

/** ctx.state.guard: what the guard found on this request */
export interface GuardState {
  /** secrets found per kind */
  counts: Record<string, number>
  findings: GuardFinding[]
  /** 'blocked' when a kind set to block was found (on a dry run: would have been) */
  outcome: 'redacted' | 'blocked'
}

declare module '../../core/types.ts' {
  interface MeshState {
    guard?: GuardState
  }
  interface MeshEvents {
    /** secrets were replaced by [REDACTED:kind] before the request went on (no values, only kinds and places) */
    secret_redacted: { id: string; identity: Identity; counts: Record<string, number>; where: string[] }
    /** a request was refused because its prompt held a secret of a blocked kind */
    secret_blocked: { id: string; identity: Identity; counts: Record<string, number>; where: string[] }
  }
}

export const REDACTED_HEADER = 'X-AgentMesh-Redacted'

function expand(list: unknown, field: string): SecretKind[] {
  if (list === undefined) return []
  if (!Array.isArray(list) || list.some((k) => typeof k !== 'string'))
    throw new Error(`guard: ${field} must be an array of kind names, got ${JSON.stringify(list)}`)
  return list.flatMap((k: string) => {
    if (SECRET_GROUPS[k]) return SECRET_GROUPS[k]
    if ((SECRET_KINDS as readonly string[]).includes(k)) return [k as SecretKind]
    throw new Error(
      `guard: unknown kind "${k}" in ${field} (kinds: ${SECRET_KINDS.join(', ')}; groups: ${Object.keys(SECRET_GROUPS).join(', ')})`,
    )
  })
}

/** each kind's action; kinds that are off are absent */
export function resolveActions(options: GuardOptions): Map<SecretKind, GuardAction> {
  if (options === null || typeof options !== 'object' || Array.isArray(options))
    throw new Error(`guard: options must be an object, got ${JSON.stringify(options)}`)
  const known = new Set(['action', 'redact', 'block', 'off', 'allow'])
  for (const key of Object.keys(options))
    if (!known.has(key)) throw new Error(`guard: unknown option "${key}" (expected one of ${[...known].join(', ')})`)
  const fallback = options.action ?? 'redact'
  if (fallback !== 'redact' && fallback !== 'block')
    throw new Error(`guard: action must be 'redact' or 'block', got ${JSON.stringify(options.action)}`)
  if (
    options.allow !== undefined &&
    (!Array.isArray(options.allow) || options.allow.some((v) => typeof v !== 'string'))
  )
    throw new Error('guard: allow must be an array of strings')
  const actions = new Map<SecretKind, GuardAction>(SECRET_KINDS.map((k) => [k, fallback]))
  for (const k of expand(options.redact, 'redact')) actions.set(k, 'redact')
  for (const k of expand(options.block, 'block')) actions.set(k, 'block')
  for (const k of expand(options.off, 'off')) actions.delete(k)
  return actions
}

// opaque fields a vendor checks byte for byte (thinking signatures, encrypted reasoning) and
// inline media: never secrets in prose, and changing them would break the request
const OPAQUE_KEYS = new Set(['signature', 'encrypted_content'])
const MEDIA_KEYS = ['media_type', 'mimeType', 'mime_type', 'format']
const MEDIA_URL = /^data:(?:image|audio|video)\/|^data:application\/pdf/

type Place = string | number
/** a string, its holder and key, and the first two keys of its path (placeOf reads only those) */
type Visit = (holder: any, key: Place, value: string, top: Place, second: Place | undefined) => void

const mediaNode = (node: any) =>
  !Array.isArray(node) && (node.type === 'redacted_thinking' || MEDIA_KEYS.some((k) => k in node))
const skipped = (key: Place, value: string, media: boolean) =>
  OPAQUE_KEYS.has(key as string) || (media && key === 'data') || MEDIA_URL.test(value)

/** every string in the body, with its place, skipping opaque and media fields */
function walk(node: any, visit: Visit, depth = 0, top: Place = '', second?: Place): void {
  if (depth > 200 || node === null || typeof node !== 'object') return
  // inline media next to its type, and Anthropic's redacted_thinking (encrypted, checked by the vendor)
  const media = mediaNode(node)
  for (const key of Array.isArray(node) ? node.keys() : Object.keys(node)) {
    const value = node[key]
    const t = depth === 0 ? key : top
    const s = depth === 1 ? key : second
    if (typeof value === 'string') {
      if (!skipped(key, value, media)) visit(node, key, value, t, s)
    } else if (value !== null && typeof value === 'object') walk(value, visit, depth + 1, t, s)
  }
}

interface Frame {
  node: any
  /** an object's keys; an array's are its indices */
  keys: string[] | undefined
  n: number
  i: number
  depth: number
  media: boolean
  top: Place
  second: Place | undefined
}

/**
 * walk's strings one at a time, in walk's order, with nothing allocated per string: a large body
 * is searched between them in slices (a walk of 70,000 messages in one go held the loop for
 * 50-220 ms, most of it collecting the garbage of a place per string)
 */
class Strings {
  holder: any
  key: Place = 0
  value = ''
  top: Place = ''
  second: Place | undefined
  private readonly frames: Frame[] = []
  constructor(body: unknown) {
    this.enter(body, 0, '', undefined)
  }
  private enter(node: any, depth: number, top: Place, second: Place | undefined): void {
    if (depth > 200 || node === null || typeof node !== 'object') return
    const keys = Array.isArray(node) ? undefined : Object.keys(node)
    const n = keys ? keys.length : node.length
    this.frames.push({ node, keys, n, i: 0, depth, media: mediaNode(node), top, second })
  }
  /** the next string into holder, key, value, top, second; false after the last */
  next(): boolean {
    for (;;) {
      const f = this.frames[this.frames.length - 1]
      if (!f) return false
      if (f.i >= f.n) {
        this.frames.pop()
        continue
      }
      const key = f.keys ? f.keys[f.i]! : f.i
      f.i++
      const value = f.node[key]
      const top = f.depth === 0 ? key : f.top
      const second = f.depth === 1 ? key : f.second
      if (typeof value === 'string') {
        if (skipped(key, value, f.media)) continue
        this.holder = f.node
        this.key = key
        this.value = value
        this.top = top
        this.second = second
        return true
      }
      if (value !== null && typeof value === 'object') this.enter(value, f.depth + 1, top, second)
    }
  }
}

// past this size the body is read string by string, media left out: a 1 MB base64 image costs
// the one-pass test about 10 ms, the walk that skips it next to nothing
const LARGE_BODY = 64 * 1024

const maybe = (s: string) => maySecret(s) || s.indexOf('\\u') >= 0

function anyString(body: unknown, test: (s: string) => boolean): boolean {
  let found = false
  walk(body, (_holder, _key, value) => {
    found ||= test(value)
  })
  return found
}

const SAFE_ROLE = /^[A-Za-z_]{1,32}$/

/** where a string sits, for the client and the events: `messages[2] (user)`, `system`, `tools[0]` */
function placeOf(body: any, top: Place, index: Place | undefined): string {
  if (typeof index !== 'number') return String(top).slice(0, 40)
  const item = body?.[top as string]?.[index]
  const role = typeof item?.role === 'string' ? item.role : typeof item?.type === 'string' ? item.type : undefined
  return `${String(top).slice(0, 40)}[${index}]${role && SAFE_ROLE.test(role) ? ` (${role})` : ''}`
}

function redactText(text: string, hits: SecretMatch[]): string {
  let out = ''
  let at = 0
  for (const h of hits) {
    out += `${text.slice(at, h.start)}[REDACTED:${h.kind}]`
    at = h.end
  }
  return out + text.slice(at)
}

function describe(findings: GuardFinding[]): string {
  const shown = findings.slice(0, 5).map((f) => `${/^[aeio]/.test(f.kind) ? 'an' : 'a'} ${f.kind} in ${f.where}`)
  const more = findings.length > 5 ? ` and ${findings.length - 5} more` : ''
  return `${shown.join(', ')}${more}`
}

/** what is looked for and what is done with each kind (guardScope) */
export interface Scope {
  kinds: SecretKind[]
  actions: Map<SecretKind, GuardAction>
  allow: Set<string>
}

/** one string's secrets redacted in place and recorded as findings */
function record(
  body: unknown,
  site: { holder: any; key: Place; value: string; top: Place; second: Place | undefined },
  found: SecretMatch[],
  scope: Scope,
  findings: GuardFinding[],
): void {
  if (!found.length) return
  const { holder, key, value } = site
  const hits = scope.allow.size ? found.filter((h) => !scope.allow.has(value.slice(h.start, h.end))) : found
  if (!hits.length) return
  holder[key] = redactText(value, hits)
  const where = placeOf(body, site.top, site.second)
  for (const h of hits)
    findings.push({ kind: h.kind, where, action: scope.actions.get(h.kind as SecretKind) ?? 'redact' })
}

// \u escapes inside a string: a tool result that is JSON text (Go's encoder writes <, > and & so),
// or a key spelled that way on purpose (sk-\u0061nt-...). The model reads through them, so the
// search does too: a string holding one is searched again with every escape decoded.
const ESCAPE = /\\+u([0-9A-Fa-f]{4})/g

/** the string with its \u escapes decoded, and where each decoded character came from */
function unescapeU(value: string): { text: string; from: number[] } {
  let text = ''
  const from: number[] = []
  let at = 0
  for (const m of value.matchAll(ESCAPE)) {
    for (let i = at; i < m.index; i++) from.push(i)
    text += value.slice(at, m.index) + String.fromCharCode(Number.parseInt(m[1]!, 16))
    from.push(m.index)
    at = m.index + m[0].length
  }
  for (let i = at; i <= value.length; i++) from.push(i)
  return { text: text + value.slice(at), from }
}

/** detectSecrets, and what only the decoded text shows when the string holds \u escapes */
export function secretsOf(value: string, kinds?: readonly string[]): SecretMatch[] {
  const hits = detectSecrets(value, kinds)
  if (value.indexOf('\\u') < 0) return hits
  const { text, from } = unescapeU(value)
  let added = false
  for (const h of detectSecrets(text, kinds)) {
    const start = from[h.start]!
    const end = from[h.end]!
    if (hits.some((o) => start < o.end && o.start < end)) continue
    hits.push({ kind: h.kind, start, end })
    added = true
  }
  return added ? hits.sort((a, b) => a.start - b.start) : hits
}

/** search the body, redact what was found, and refuse if a blocked kind was among it */
function inspect(ctx: MeshContext, scope: Scope): void {
  conclude(ctx, redactBody(ctx.request.body, scope))
}

/** every string of the body searched, its secrets redacted in place: what was found */
export function redactBody(body: unknown, scope: Scope): GuardFinding[] {
  const findings: GuardFinding[] = []
  walk(body, (holder, key, value, top, second) =>
    record(body, { holder, key, value, top, second }, secretsOf(value, scope.kinds), scope, findings),
  )
  return findings
}

// Past this size the body is searched in slices of about SLICE_MS of CPU with the event loop given
// back between them (issue 11: no request may hold the others up for more than about 50 ms).
const ASYNC_BODY = 256 * 1024
const SLICE_MS = 10
// A longer string is searched window by window; each window also reads the text around it (a
// private key block runs up to about 20,000 characters) and keeps what starts inside it.
const WINDOW = 128 * 1024
const WINDOW_BEFORE = 1024
const WINDOW_AFTER = 24 * 1024

// a string this long is written out in pieces (JSON.stringify of 10 MB takes 60 to 200 ms here)
const STRING_PIECE = 1024 * 1024
// elements written by one JSON.stringify together, up to about this many characters (a run of 1 MB of
// short messages took 10-20 ms)
const RUN_CHARS = 256 * 1024

/** JSON.stringify(value), the same text, written in slices */
export async function stringifyInSlices(value: unknown, slicer: Pacer = new Slicer(SLICE_MS)): Promise<string> {
  const out: string[] = []
  await writeJson(value, out, slicer)
  // the text made one string: a copy of megabytes (about 30 ms for 10 MB here), in a turn of its own
  if (out.length > 1) await slicer.yield()
  return out.join('')
}

/** about how long a value's JSON text is, counted up to `limit` */
function sizeUpTo(v: unknown, limit: number): number {
  if (typeof v === 'string') return v.length + 2
  if (v === null || typeof v !== 'object') return 8
  let n = 2
  for (const x of Array.isArray(v) ? v : Object.values(v)) {
    n += sizeUpTo(x, limit - n) + 8
    if (n >= limit) break
  }
  return n
}

async function writeJson(v: unknown, out: string[], slicer: Pacer): Promise<void> {
  if (slicer.due()) await slicer.yield()
  if (typeof v === 'string' && v.length > STRING_PIECE) {
    // the first slice of a string made by concatenation (a redacted one) copies it whole: a turn of its own
    await slicer.yield()
    let piece = '"'
    for (let at = 0; at < v.length; ) {
      let end = Math.min(v.length, at + STRING_PIECE)
      // never between the two halves of a surrogate pair: alone, each would be written escaped
      const last = v.charCodeAt(end - 1)
      if (end < v.length && last >= 0xd800 && last <= 0xdbff) end--
      piece += JSON.stringify(v.slice(at, end)).slice(1, -1)
      at = end
      out.push(piece)
      piece = ''
      if (slicer.due()) await slicer.yield()
    }
    out.push('"')
  } else if (Array.isArray(v)) {
    out.push('[')
    for (let i = 0; i < v.length; ) {
      // a run of elements that are small together is written by one JSON.stringify: a few large
      // pieces, not thousands of small ones for the young generation to copy
      let j = i
      for (let size = 0; j < v.length && size < RUN_CHARS; j++) {
        const n = sizeUpTo(v[j], STRING_PIECE)
        if (n >= STRING_PIECE) break
        size += n
      }
      if (j > i) {
        out.push(`${i ? ',' : ''}${JSON.stringify(v.slice(i, j)).slice(1, -1)}`)
        i = j
        if (slicer.due()) await slicer.yield()
        continue
      }
      if (i) out.push(',')
      await writeJson(v[i], out, slicer)
      i++
    }
    out.push(']')
  } else if (v !== null && typeof v === 'object' && typeof (v as any).toJSON !== 'function') {
    out.push('{')
    let first = true
    for (const k of Object.keys(v)) {
      const x = (v as Record<string, unknown>)[k]
      if (x === undefined || typeof x === 'function' || typeof x === 'symbol') continue
      out.push(`${first ? '' : ','}${JSON.stringify(k)}:`)
      first = false
      await writeJson(x, out, slicer)
    }
    out.push('}')
  } else out.push(JSON.stringify(v))
}

/** how a large body's search gives the event loop back (core/slicer.ts; a test's may yield more often) */
export type Pacer = Pick<Slicer, 'due' | 'yield' | 'pause'>

/** detectSecrets over a string of any length, window by window, pausing between windows */
async function secretsIn(text: string, kinds: SecretKind[], slicer: Pacer): Promise<SecretMatch[]> {
  await slicer.pause()
  if (text.length <= WINDOW + WINDOW_AFTER) return secretsOf(text, kinds)
  const out: SecretMatch[] = []
  for (let at = 0; at < text.length; at += WINDOW) {
    if (at) await slicer.pause()
    const from = Math.max(0, at - WINDOW_BEFORE)
    for (const h of secretsOf(text.slice(from, at + WINDOW + WINDOW_AFTER), kinds)) {
      const start = h.start + from
      // the previous window found it already, or a match of it that this one saw cut short
      if (start < at || start >= at + WINDOW || (out.length && start < out[out.length - 1]!.end)) continue
      out.push({ kind: h.kind, start, end: h.end + from })
    }
  }
  return out
}

/** inspect for a large body: the same search, in slices */
async function inspectLarge(ctx: MeshContext, scope: Scope): Promise<void> {
  const body = ctx.request.body
  const slicer = new Slicer(SLICE_MS)
  // the core's parse of the body just ran in this same turn of the event loop
  await slicer.yield()
  const findings = await redactBodyLarge(body, scope, slicer)
  if (!findings.length) return
  const rawBody = await stringifyInSlices(body, slicer)
  await slicer.pause()
  // the prompt read again from the redacted body, in slices (in one go: 25-100 ms on 70,000 turns)
  await reparsePromptSliced(ctx, slicer)
  await slicer.pause()
  conclude(ctx, findings, rawBody)
}

/** redactBody, the same search and the same findings, in slices */
export async function redactBodyLarge(body: unknown, scope: Scope, slicer: Pacer): Promise<GuardFinding[]> {
  const findings: GuardFinding[] = []
  const at = new Strings(body)
  while (at.next()) {
    const long = at.value.length > WINDOW + WINDOW_AFTER
    const found = long ? await secretsIn(at.value, scope.kinds, slicer) : secretsOf(at.value, scope.kinds)
    record(body, at, found, scope, findings)
    if (slicer.due()) await slicer.yield()
  }
  return findings
}

/**
 * after the search: the request rewritten, the headers and events, or the refusal; a large body
 * comes with its text, its prompt already read again
 */
function conclude(ctx: MeshContext, findings: GuardFinding[], rawBody?: string): void {
  // the one pass over the raw body saw a candidate that was none
  if (!findings.length) return
  const body = ctx.request.body
  ctx.request.dirty = true
  // nothing after this hook may read the original text (the breaker fingerprints the raw body)
  if (rawBody === undefined) {
    ctx.request.rawBody = JSON.stringify(body)
    reparsePrompt(ctx)
  } else ctx.request.rawBody = rawBody
  const counts: Record<string, number> = {}
  for (const f of findings) counts[f.kind] = (counts[f.kind] ?? 0) + 1
  const where = [...new Set(findings.map((f) => f.where))]
  const blocked = findings.filter((f) => f.action === 'block')
  ctx.state.guard = { counts, findings, outcome: blocked.length ? 'blocked' : 'redacted' }
  if (blocked.length) {
    ctx.mesh.emit('secret_blocked', { id: ctx.id, identity: ctx.identity, counts, where })
    const message = `secret_in_prompt: the request holds ${describe(blocked)}; it was not sent. Remove the secret and send the request again.`
    refuseOrRecord(ctx, 'guard', {
      kind: 'error',
      status: 403,
      type: 'secret_in_prompt',
      message,
      headers: { 'x-should-retry': 'false' },
    })
    if (ctx.response) return
  }
  ctx.headers[REDACTED_HEADER] = Object.entries(counts)
    .map(([k, n]) => `${k}:${n}`)
    .join(',')
  ctx.mesh.emit('secret_redacted', { id: ctx.id, identity: ctx.identity, counts, where })
}

/** the options made into what the search needs */
export function guardScope(options: GuardOptions = {}): Scope {
  const actions = resolveActions(options)
  // frozen: detectSecrets checks the list once, not for every string
  const kinds = Object.freeze([...actions.keys()]) as SecretKind[]
  return { kinds, actions, allow: new Set(options.allow ?? []) }
}

export function guard(options: GuardOptions = {}): Plugin {
  const scope = guardScope(options)
  const kinds = scope.kinds
  return definePlugin({
    name: 'guard',
    // before normalise and the caches: they must only ever see the redacted prompt
    enforce: 'pre',
    options: { ...options, ...(options.allow ? { allow: `(${options.allow.length} values)` } : {}) } as Record<
      string,
      unknown
    >,
    hooks: {
      beforeRequest(ctx) {
        if (!kinds.length) return
        const req = ctx.request
        // one pass over the JSON text; a body another plugin changed is read as it now is
        const raw = req.dirty ? JSON.stringify(req.body) : req.rawBody
        if (!raw) return
        // a large body: every string searched in slices, without the one-pass test (itself a
        // full pass over the text, in one go)
        if (raw.length > ASYNC_BODY) return inspectLarge(ctx, scope)
        // the one-pass test reads the JSON text: a \u escape there (the client's, or one inside a
        // string) may spell a secret it cannot see, and the strings are searched instead
        if (raw.length <= LARGE_BODY ? !maySecret(raw) && raw.indexOf('\\u') < 0 : !anyString(req.body, maybe)) return
        inspect(ctx, scope)
      },
    },
  })
}

export default guard
