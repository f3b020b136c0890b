// mask: personal data out of the prompt, reversibly. Before the call every detected value in the
// body sent upstream (and in ctx.prompt, what caches and the audit read) becomes a placeholder,
// the same value the same placeholder (`<EMAIL_1>`); the answer the client receives gets the
// values back through the core's answer-text hook, streamed answers included. The mapping lives
// in this request's closure only: never in ctx.state, events, logs or the cache.
import { reparsePromptSliced } from '../../core/reparse.ts'
import { Slicer } from '../../core/slicer.ts'
import { definePlugin } from '../../core/plugin.ts'
import type { MeshContext, Plugin } from '../../core/types.ts'
import { detectPersonalData, PERSONAL_DATA_KINDS, type PersonalDataKind } from './detect.ts'
import { Restorer } from './restore.ts'

export { detectPersonalData, PERSONAL_DATA_KINDS } from './detect.ts'
export type { PersonalDataKind, PersonalDataMatch } from './detect.ts'

export interface MaskOptions {
  /** kinds masked for every team without its own entry (default email, card, iban) */
  kinds?: PersonalDataKind[]
  /** per team: its own kinds (replacing `kinds`), `[]` or false to mask nothing for it */
  teams?: Record<string, PersonalDataKind[] | false>
}

/** what the plugin publishes as ctx.state.mask: how many distinct values of each kind, never the values */
export interface MaskState {
  counts: Partial<Record<PersonalDataKind, number>>
}

declare module '../../core/types.ts' {
  interface MeshState {
    mask?: MaskState
  }
  interface MeshEvents {
    /** personal data was masked before the call (plugins/mask): counts only */
    pii_masked: { id: string; team: string; counts: Partial<Record<PersonalDataKind, number>> }
  }
}

export const DEFAULT_KINDS: PersonalDataKind[] = ['email', 'card', 'iban']
const LABEL: Record<PersonalDataKind, string> = {
  email: 'EMAIL',
  phone: 'PHONE',
  card: 'CARD',
  iban: 'IBAN',
  'national-id': 'NATIONAL_ID',
  ip: 'IP',
}
const EXISTING = /<(EMAIL|PHONE|CARD|IBAN|NATIONAL_ID|IP)_(\d+)>/g

function validKinds(where: string, v: unknown): PersonalDataKind[] {
  if (!Array.isArray(v) || v.some((k) => !(PERSONAL_DATA_KINDS as readonly string[]).includes(k))) {
    throw new Error(`mask: ${where} must be an array of ${PERSONAL_DATA_KINDS.join(' | ')}, got ${JSON.stringify(v)}`)
  }
  return [...new Set(v as PersonalDataKind[])]
}

function validate(o: MaskOptions): void {
  if (o === null || typeof o !== 'object' || Array.isArray(o))
    throw new Error(`mask: options must be an object, got ${JSON.stringify(o)}`)
  for (const k of Object.keys(o))
    if (k !== 'kinds' && k !== 'teams') throw new Error(`mask: unknown option "${k}" (expected kinds, teams)`)
  if (o.kinds !== undefined) validKinds('kinds', o.kinds)
  if (o.teams !== undefined) {
    if (!o.teams || typeof o.teams !== 'object' || Array.isArray(o.teams))
      throw new Error(`mask: teams must be an object { team: kinds[] | false }`)
    for (const [team, kinds] of Object.entries(o.teams)) if (kinds !== false) validKinds(`teams.${team}`, kinds)
  }
}

// strings that are not prose: ids, signatures, base64 media (costly to scan and never personal data)
const SKIP_KEYS = new Set([
  'id',
  'model',
  'role',
  'type',
  'signature',
  'thoughtSignature',
  'thought_signature',
  'encrypted_content',
  'tool_use_id',
  'tool_call_id',
  'call_id',
  'previous_response_id',
  'mime_type',
  'mimeType',
  'media_type',
])
// thinking is signed by the vendor: a changed block is refused on the next turn
const SKIP_TYPES = new Set(['thinking', 'redacted_thinking', 'reasoning'])

interface Site {
  parent: Record<string, any> | any[]
  key: string | number
  text: string
  found: Array<{ kind: string; start: number; end: number }>
}

interface Scan {
  kinds: readonly string[]
  sites: Site[]
  /** the highest number of each label already in the text, made lazily: most bodies have none */
  reserved?: Map<string, number>
}

/** Every string of the body that holds personal data, in document order (plain recursion: no closure per request). */
function visit(scan: Scan, parent: Record<string, any> | any[], key: string | number, v: unknown): void {
  if (typeof v === 'string') {
    if (v.length < 6 || v.startsWith('data:')) return
    const found = detectPersonalData(v, scan.kinds)
    if (found.length) scan.sites.push({ parent, key, text: v, found })
    reserve(scan, v)
  } else if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) visit(scan, v, i, v[i])
  } else if (v !== null && typeof v === 'object') {
    const o = v as Record<string, any>
    if (SKIP_TYPES.has(o.type) || o.thought === true) return
    // base64 media: Anthropic's { type: 'base64', data }, Gemini's inlineData { mimeType, data }
    const media = o.type === 'base64' || 'mimeType' in o || 'mime_type' in o
    for (const k in o) if (!SKIP_KEYS.has(k) && !(media && k === 'data')) visit(scan, o, k, o[k])
  }
}

/** The same value written two ways (a card with or without spaces) is one value. */
function canonical(kind: string, value: string): string {
  if (kind === 'email' || kind === 'ip') return value.toLowerCase()
  if (kind === 'phone') return value.replace(/[^\d+]/g, '')
  return value.replace(/[\s-]/g, '').toUpperCase()
}

export interface Masking {
  /** every form seen → its placeholder, longest first (for replacing in other strings) */
  forms: Array<[string, string]>
  /** placeholder → the value as first written */
  values: Map<string, string>
  counts: Partial<Record<PersonalDataKind, number>>
}

function visitBody(scan: Scan, body: unknown): void {
  for (const k in body as Record<string, unknown>)
    if (!SKIP_KEYS.has(k)) visit(scan, body as Record<string, unknown>, k, (body as Record<string, unknown>)[k])
}

interface Frame {
  node: any
  keys: string[] | undefined
  n: number
  i: number
}

/**
 * visitBody's strings one at a time, in its order, with the same strings left out: a large body is
 * searched between them in slices (a visit of 70,000 messages in one go, with a pending site per
 * string, held the loop for 30-90 ms, most of it collecting the garbage of those sites)
 */
class Strings {
  parent: any
  key: string | number = 0
  value = ''
  private readonly frames: Frame[] = []
  constructor(body: unknown) {
    // the body itself: every key but SKIP_KEYS, whatever its type (visitBody)
    this.frames.push(objectFrame(body as Record<string, any>, false))
  }
  /** the next string into parent, key, value; false after the last */
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
      const v = f.node[key]
      if (typeof v === 'string') {
        if (v.length < 6 || v.startsWith('data:')) continue
        this.parent = f.node
        this.key = key
        this.value = v
        return true
      }
      if (Array.isArray(v)) this.frames.push({ node: v, keys: undefined, n: v.length, i: 0 })
      else if (v !== null && typeof v === 'object' && !(SKIP_TYPES.has(v.type) || v.thought === true)) {
        const media = v.type === 'base64' || 'mimeType' in v || 'mime_type' in v
        this.frames.push(objectFrame(v, media))
      }
    }
  }
}

/** the keys visit reads of an object, in its order (for...in) */
function objectFrame(o: Record<string, any>, media: boolean): Frame {
  const keys: string[] = []
  for (const k in o) if (!SKIP_KEYS.has(k) && !(media && k === 'data')) keys.push(k)
  return { node: o, keys, n: keys.length, i: 0 }
}

/** the placeholders already in a string (an earlier turn's, kept by a vendor) noted as reserved */
function reserve(scan: Scan, v: string): void {
  if (v.indexOf('<') < 0) return
  for (const m of v.matchAll(EXISTING)) {
    scan.reserved ??= new Map()
    scan.reserved.set(m[1]!, Math.max(scan.reserved.get(m[1]!) ?? 0, Number(m[2])))
  }
}

/** Replace the values in the body in place; undefined when there was nothing to mask. */
export function maskBody(body: unknown, kinds: readonly string[]): Masking | undefined {
  const scan: Scan = { kinds, sites: [] }
  visitBody(scan, body)
  return assign(scan)
}

// Past this size the body is searched in slices of about SLICE_MS of CPU with the event loop given
// back between them (issue 11: no request may hold the others up for more than about 50 ms).
const ASYNC_BODY = 256 * 1024
const SLICE_MS = 10
// A longer string is searched window by window; each window also reads WINDOW_CONTEXT characters
// on each side (the longest candidate is about 40, the farthest look-around 256) and keeps what
// starts inside it.
const WINDOW = 128 * 1024
const WINDOW_CONTEXT = 1024

/** detectPersonalData over a string of any length, window by window, pausing between windows */
async function personalIn(text: string, kinds: readonly string[], slicer: Pacer): Promise<Site['found']> {
  await slicer.pause()
  if (text.length <= WINDOW + WINDOW_CONTEXT) return detectPersonalData(text, kinds)
  const out: Site['found'] = []
  for (let at = 0; at < text.length; at += WINDOW) {
    if (at) await slicer.pause()
    const from = Math.max(0, at - WINDOW_CONTEXT)
    for (const f of detectPersonalData(text.slice(from, at + WINDOW + WINDOW_CONTEXT), kinds)) {
      const start = f.start + from
      if (start < at || start >= at + WINDOW || (out.length && start < out[out.length - 1]!.end)) continue
      out.push({ kind: f.kind, start, end: f.end + from })
    }
  }
  return out
}

/** how a large body's search gives the event loop back (core/slicer.ts; a test's may yield more often) */
export type Pacer = Pick<Slicer, 'due' | 'yield' | 'pause'>

/** maskBody for a large body: the same search, in slices */
export async function maskBodyLarge(
  body: unknown,
  kinds: readonly string[],
  slicer: Pacer = new Slicer(SLICE_MS),
): Promise<Masking | undefined> {
  // the plugin before this one (the guard, on the same large body) may have just worked a slice
  await slicer.yield()
  const scan: Scan = { kinds, sites: [] }
  const at = new Strings(body)
  while (at.next()) {
    const text = at.value
    const found =
      text.length > WINDOW + WINDOW_CONTEXT ? await personalIn(text, kinds, slicer) : detectPersonalData(text, kinds)
    if (found.length) scan.sites.push({ parent: at.parent, key: at.key, text, found })
    reserve(scan, text)
    if (slicer.due()) await slicer.yield()
  }
  const placed = new Placeholders(scan.reserved)
  for (const site of scan.sites) {
    placed.put(site)
    if (slicer.due()) await slicer.yield()
  }
  return placed.masking(slicer)
}

/** each value found gets its placeholder, in the body and in the returned maps */
function assign(scan: Scan): Masking | undefined {
  if (!scan.sites.length) return undefined
  const placed = new Placeholders(scan.reserved)
  for (const site of scan.sites) placed.put(site)
  const forms = [...placed.forms].sort((a, b) => b[0].length - a[0].length)
  return { forms, values: placed.values, counts: placed.counts }
}

/** placeholders given out site by site (a large body's sites are put in slices) */
class Placeholders {
  private readonly byCanonical = new Map<string, string>()
  readonly forms = new Map<string, string>()
  readonly values = new Map<string, string>()
  readonly counts: Partial<Record<PersonalDataKind, number>> = {}
  constructor(private readonly reserved: Map<string, number> | undefined) {}

  /** the site's values replaced by their placeholders in the body */
  put(site: Site): void {
    const { byCanonical, counts } = this
    let out = ''
    let at = 0
    for (const f of site.found) {
      const value = site.text.slice(f.start, f.end)
      const key = f.kind + '\u0000' + canonical(f.kind, value)
      let placeholder = byCanonical.get(key)
      if (!placeholder) {
        const kind = f.kind as PersonalDataKind
        const label = LABEL[kind]
        // a placeholder already in the text (an earlier turn's, kept by a vendor) is not reused
        const n = (counts[kind] ?? 0) + 1 + (this.reserved?.get(label) ?? 0)
        counts[kind] = (counts[kind] ?? 0) + 1
        placeholder = `<${label}_${n}>`
        byCanonical.set(key, placeholder)
        this.values.set(placeholder, value)
      }
      this.forms.set(value, placeholder)
      out += site.text.slice(at, f.start) + placeholder
      at = f.end
    }
    ;(site.parent as any)[site.key] = out + site.text.slice(at)
  }

  /**
   * for a large body: the forms longest first as assign sorts them (a stable sort by length), by
   * buckets of length, since tens of thousands of distinct values sort for tens of ms
   */
  async masking(slicer: Pacer): Promise<Masking | undefined> {
    if (!this.values.size) return undefined
    const buckets: Array<Array<[string, string]>> = []
    for (const form of this.forms) (buckets[form[0].length] ??= []).push(form)
    await slicer.pause()
    const forms: Array<[string, string]> = []
    for (let len = buckets.length - 1; len >= 0; len--) {
      const b = buckets[len]
      if (b) for (const f of b) forms.push(f)
    }
    return { forms, values: this.values, counts: this.counts }
  }
}

function replaceForms(text: string, forms: Array<[string, string]>): string {
  let out = text
  for (const [value, placeholder] of forms) if (out.includes(value)) out = out.split(value).join(placeholder)
  return out
}

/** The same values out of the governance view: ctx.prompt (caches, audit, tokens) and ctx.normalised. */
function maskViews(ctx: MeshContext, forms: Array<[string, string]>): void {
  const p = ctx.prompt
  p.system = replaceForms(p.system, forms)
  for (const m of p.messages) {
    m.text = replaceForms(m.text, forms)
    if (m.extra) m.extra = replaceForms(m.extra, forms)
  }
  const deep = (v: unknown): unknown => {
    if (typeof v === 'string') return replaceForms(v, forms)
    if (Array.isArray(v)) return v.map(deep)
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, deep(x)]))
    return v
  }
  if (p.tools !== undefined) p.tools = deep(p.tools)
  if (p.toolChoice !== undefined) p.toolChoice = deep(p.toolChoice)
  if (p.responseFormat !== undefined) p.responseFormat = deep(p.responseFormat)
  p.params = deep(p.params) as Record<string, unknown>
  maskNormalised(ctx, forms)
}

/** a config that lists normalise before mask: its view was made from the real values */
function maskNormalised(ctx: MeshContext, forms: Array<[string, string]>): void {
  const n = ctx.normalised
  if (n) {
    const lower = forms.map(([v, ph]) => [v.toLowerCase(), ph.toLowerCase()] as [string, string])
    n.system = replaceForms(replaceForms(n.system, forms), lower)
    for (const m of n.messages) {
      m.text = replaceForms(replaceForms(m.text, forms), lower)
      if (m.extra) m.extra = replaceForms(replaceForms(m.extra, forms), lower)
    }
  }
}

/** the request after masking: its views, the answer's restorer, headers, state and event */
function masked(ctx: MeshContext, m: Masking, wanted: readonly string[]): void {
  ctx.request.dirty = true
  maskViews(ctx, m.forms)
  publish(ctx, m, wanted)
}

/**
 * masked for a large body: its views are parsed again from the masked body, in slices (replacing
 * every value in every view string costs values × strings, minutes for a body with thousands of
 * addresses; the parse in one go held the loop for 25-60 ms on 70,000 turns)
 */
async function maskedLarge(ctx: MeshContext, m: Masking, wanted: readonly string[], slicer: Slicer): Promise<void> {
  ctx.request.dirty = true
  await slicer.pause()
  await reparsePromptSliced(ctx, slicer)
  maskNormalised(ctx, m.forms)
  publish(ctx, m, wanted)
}

/** what every masked request carries: the cache key's mark, the answer's restorer, headers, state and event */
function publish(ctx: MeshContext, m: Masking, wanted: readonly string[]): void {
  // in the cache key: an answer stored under masking is served only to requests masked the
  // same way, never to one that sends the placeholders' text unmasked
  ctx.prompt.params = { ...ctx.prompt.params, agentmesh_masked: wanted.join(',') }
  let longest = 0
  for (const p of m.values.keys()) longest = Math.max(longest, p.length)
  ctx.answerText = { open: () => new Restorer(m.values, longest) }
  ctx.state.mask = { counts: m.counts }
  ctx.headers['x-agentmesh-masked'] = PERSONAL_DATA_KINDS.filter((k) => m.counts[k])
    .map((k) => `${k}:${m.counts[k]}`)
    .join(',')
  ctx.mesh.emit('pii_masked', { id: ctx.id, team: ctx.identity.team, counts: m.counts })
}

export function mask(options: MaskOptions = {}): Plugin {
  validate(options)
  // frozen: the detector then knows each list by identity, without joining it on every request
  const kinds = Object.freeze(options.kinds ? validKinds('kinds', options.kinds) : [...DEFAULT_KINDS])
  const teams = new Map(
    Object.entries(options.teams ?? {}).map(([t, k]) => [
      t,
      Object.freeze(k === false ? [] : validKinds(`teams.${t}`, k)),
    ]),
  )
  const anything = kinds.length > 0 || [...teams.values()].some((k) => k.length > 0)
  const plugin = { name: 'mask', enforce: 'pre' as const, options: { kinds, teams: Object.fromEntries(teams) } }
  // nothing to mask for anyone: no hook, so the request path does not change at all
  if (!anything) return definePlugin(plugin)
  return definePlugin({
    ...plugin,
    hooks: {
      beforeRequest(ctx) {
        const wanted = teams.get(ctx.identity.team) ?? kinds
        if (!wanted.length || ctx.request.body === null || typeof ctx.request.body !== 'object') return
        if ((ctx.request.rawBody?.length ?? 0) > ASYNC_BODY) {
          const slicer = new Slicer(SLICE_MS)
          return maskBodyLarge(ctx.request.body, wanted, slicer).then((m) => m && maskedLarge(ctx, m, wanted, slicer))
        }
        const m = maskBody(ctx.request.body, wanted)
        if (m) masked(ctx, m, wanted)
      },
    },
  })
}
