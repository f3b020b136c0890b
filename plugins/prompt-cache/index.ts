// prompt-cache: turns on Anthropic's own prompt cache for long, stable prefixes (tools, then the
// system prompt) by adding cache_control breakpoints, unless the client placed its own.
// Runs in `route` after routers (enforce 'post'), when the answering vendor is known.
import { joiner } from '../../core/canonical.ts'
import { stringifySliced } from '../../core/json-sliced.ts'
import { definePlugin } from '../../core/plugin.ts'
import { SLICED_PARSE_CHARS } from '../../core/protocols/shared.ts'
import { Slicer } from '../../core/slicer.ts'
import type { MeshContext, Plugin } from '../../core/types.ts'

export interface PromptCacheOptions {
  /** smallest prefix, in tokens, worth a breakpoint (default 1024; Anthropic ignores shorter ones) */
  minTokens?: number
  /** mark the end of the tool list (default true) */
  tools?: boolean
  /** mark the end of the system prompt (default true) */
  system?: boolean
  /** vendor names that speak Anthropic's cache_control (default ['anthropic']) */
  vendors?: string[]
  /** cache_control ttl: Anthropic's default 5 minutes, or '1h' */
  ttl?: '5m' | '1h'
}

const KNOWN = new Set(['minTokens', 'tools', 'system', 'vendors', 'ttl'])

function validate(o: PromptCacheOptions): void {
  if (o === null || typeof o !== 'object' || Array.isArray(o))
    throw new Error(`prompt-cache: options must be an object, got ${JSON.stringify(o)}`)
  for (const k of Object.keys(o))
    if (!KNOWN.has(k)) throw new Error(`prompt-cache: unknown option "${k}" (expected one of ${[...KNOWN].join(', ')})`)
  if (
    o.minTokens !== undefined &&
    (typeof o.minTokens !== 'number' || !Number.isInteger(o.minTokens) || o.minTokens < 0)
  ) {
    throw new Error(`prompt-cache: minTokens must be a non-negative integer, got ${JSON.stringify(o.minTokens)}`)
  }
  for (const b of ['tools', 'system'] as const)
    if (o[b] !== undefined && typeof o[b] !== 'boolean')
      throw new Error(`prompt-cache: ${b} must be a boolean, got ${JSON.stringify(o[b])}`)
  if (o.vendors !== undefined && (!Array.isArray(o.vendors) || o.vendors.some((v) => typeof v !== 'string'))) {
    throw new Error(`prompt-cache: vendors must be an array of vendor names, got ${JSON.stringify(o.vendors)}`)
  }
  if (o.ttl !== undefined && o.ttl !== '5m' && o.ttl !== '1h')
    throw new Error(`prompt-cache: ttl must be "5m" or "1h", got ${JSON.stringify(o.ttl)}`)
}

const marked = (b: unknown) => !!b && typeof b === 'object' && 'cache_control' in b

/** true when the client placed a cache_control anywhere (system, tools or message blocks) */
export function hasClientCacheControl(body: any): boolean {
  const blocks = (v: unknown): boolean => Array.isArray(v) && v.some(marked)
  if (blocks(body?.system) || blocks(body?.tools)) return true
  if (Array.isArray(body?.messages)) for (const m of body.messages) if (blocks(m?.content)) return true
  return false
}

/** hasClientCacheControl, a pause every 256 blocks, tools or messages (a body of 172,670 tools) */
async function hasClientCacheControlSliced(body: any, slicer: Slicer): Promise<boolean> {
  let n = 0
  const blocks = async (v: unknown): Promise<boolean> => {
    if (!Array.isArray(v)) return false
    for (let i = 0; i < v.length; i++) {
      if (marked(v[i])) return true
      if ((++n & 255) === 0) await slicer.pause()
    }
    return false
  }
  if ((await blocks(body?.system)) || (await blocks(body?.tools))) return true
  if (Array.isArray(body?.messages))
    for (const m of body.messages) {
      if (await blocks(m?.content)) return true
      if ((++n & 255) === 0) await slicer.pause()
    }
  return false
}

function systemText(system: unknown): string {
  if (typeof system === 'string') return system
  if (Array.isArray(system)) return system.map((b: any) => (b?.type === 'text' ? String(b.text ?? '') : '')).join('\n')
  return ''
}

/** systemText for a system prompt of many blocks, joined a pause every 1,024 blocks (150,000 blocks: ~40 ms in one go) */
async function systemTextSliced(system: unknown, slicer: Slicer): Promise<string> {
  if (!Array.isArray(system) || system.length < 1024) return systemText(system)
  const text = joiner('\n')
  for (let i = 0; i < system.length; i++) {
    const b = system[i]
    text.add(b?.type === 'text' ? String(b.text ?? '') : '')
    if ((i & 1023) === 1023) {
      text.cut()
      await slicer.pause()
    }
  }
  // the one flat join in a slice of its own
  await slicer.yield()
  const joined = text.end('', '')
  await slicer.yield()
  return joined
}

/**
 * Adds breakpoints to an Anthropic Messages body in place. The prefix is cumulative (tools come
 * before the system prompt), so the system breakpoint counts the tools too. Returns what was marked.
 */
export function addCacheControl(
  body: any,
  count: (text: string) => number,
  opts: Required<Pick<PromptCacheOptions, 'minTokens' | 'tools' | 'system'>> & { ttl?: '5m' | '1h' },
): Array<'tools' | 'system'> {
  if (!body || typeof body !== 'object' || hasClientCacheControl(body)) return []
  const marker = opts.ttl === '1h' ? { type: 'ephemeral', ttl: '1h' } : { type: 'ephemeral' }
  const atLeast = (text: string, min: number) => text.length >= min && count(text) >= min
  const added: Array<'tools' | 'system'> = []
  const tools = Array.isArray(body.tools) && body.tools.length ? body.tools : undefined
  const toolsText = tools ? JSON.stringify(tools) : ''
  // new arrays, never in-place edits: ctx.prompt holds references to the client's originals
  if (opts.tools && tools && atLeast(toolsText, opts.minTokens)) {
    body.tools = [...tools.slice(0, -1), { ...tools[tools.length - 1], cache_control: marker }]
    added.push('tools')
  }
  const sys = systemText(body.system)
  if (opts.system && sys && atLeast(toolsText + sys, opts.minTokens)) {
    if (typeof body.system === 'string') {
      body.system = [{ type: 'text', text: body.system, cache_control: marker }]
      added.push('system')
    } else if (Array.isArray(body.system) && body.system.length) {
      const last = body.system.length - 1
      if (body.system[last]?.type === 'text') {
        body.system = [...body.system.slice(0, -1), { ...body.system[last], cache_control: marker }]
        added.push('system')
      }
    }
  }
  return added
}

/** addCacheControl's options */
type MarkOptions = Parameters<typeof addCacheControl>[2]

/**
 * addCacheControl for a body of megabytes, the same marks in slices of the event loop: 172,670
 * tools held the loop ~80 ms in one go (npm run fuzz seed 17107786 case 3335): one JSON.stringify
 * of their 7 MB, and two counts of texts the tokenizer had to flatten first (JSON.stringify's text
 * and the tools' text + the system prompt are ropes; a 7 MB rope took 50-100 ms to count, the same
 * text flat 2-20 ms). Here the tools' JSON is made in slices, and each flat copy of megabytes
 * (10-30 ms on a loaded machine) and each count is a turn of its own.
 */
export async function addCacheControlLarge(
  body: any,
  count: (text: string) => number | Promise<number>,
  opts: MarkOptions,
  slicer: Slicer,
): Promise<Array<'tools' | 'system'>> {
  if (!body || typeof body !== 'object' || (await hasClientCacheControlSliced(body, slicer))) return []
  const marker = opts.ttl === '1h' ? { type: 'ephemeral', ttl: '1h' } : { type: 'ephemeral' }
  // the texts' joins: flat, where JSON.stringify and + make ropes
  const atLeast = async (texts: string[], min: number) => {
    if (texts.reduce((n, t) => n + t.length, 0) < min) return false
    // no tools: the system prompt's own text, not a copy of its megabytes
    const parts = texts.filter((t) => t.length > 0)
    await slicer.yield()
    const text = parts.length === 1 ? parts[0]! : parts.join('')
    await slicer.yield()
    // a sliced count (countAsync) gives the loop back inside the tokenizer's work too
    const n = await count(text)
    await slicer.yield()
    return n >= min
  }
  const added: Array<'tools' | 'system'> = []
  const tools: unknown[] | undefined = Array.isArray(body.tools) && body.tools.length ? body.tools : undefined
  let toolsText = ''
  if (tools) {
    const pieces = (await stringifySliced(tools, slicer)) ?? []
    await slicer.yield()
    toolsText = pieces.join('')
  }
  if (opts.tools && tools && (await atLeast([toolsText], opts.minTokens))) {
    // a new array, never an in-place edit: ctx.prompt holds references to the client's originals
    const copy = tools.slice()
    copy[copy.length - 1] = { ...(tools[tools.length - 1] as object), cache_control: marker }
    body.tools = copy
    added.push('tools')
  }
  const sys = opts.system ? await systemTextSliced(body.system, slicer) : ''
  if (opts.system && sys && (await atLeast([toolsText, sys], opts.minTokens))) {
    if (typeof body.system === 'string') {
      body.system = [{ type: 'text', text: body.system, cache_control: marker }]
      added.push('system')
    } else if (Array.isArray(body.system) && body.system.length) {
      const last = body.system.length - 1
      if (body.system[last]?.type === 'text') {
        // a new array, never an in-place edit
        const copy = body.system.slice()
        copy[last] = { ...body.system[last], cache_control: marker }
        body.system = copy
        added.push('system')
      }
    }
  }
  return added
}

/** what was marked goes upstream (the body changed) and into the request's meta */
function noteMarks(ctx: MeshContext, added: Array<'tools' | 'system'>): void {
  if (!added.length) return
  ctx.request.dirty = true
  ctx.meta['prompt-cache'] = { added }
}

/** the slices of a large body's marking (issue 11: no request holds the others up for more than about 50 ms) */
const SLICE_MS = 10
const LARGE_TOOLS = 2048

export function promptCache(options: PromptCacheOptions = {}): Plugin {
  validate(options)
  const opts = {
    minTokens: options.minTokens ?? 1024,
    tools: options.tools ?? true,
    system: options.system ?? true,
    ttl: options.ttl,
  }
  const vendors = new Set(options.vendors ?? ['anthropic'])
  const applies = (ctx: MeshContext) => {
    if (ctx.protocol !== 'anthropic' || ctx.operation !== 'chat') return false
    const vendor = ctx.mesh.vendors.get(ctx.route.vendor)
    return vendors.has(ctx.route.vendor) && (!vendor || vendor.protocol === 'anthropic')
  }
  return definePlugin({
    name: 'prompt-cache',
    enforce: 'post',
    options: { ...options },
    hooks: {
      route(ctx) {
        if (ctx.response || !applies(ctx)) return
        const model = ctx.route.model || ctx.prompt.model
        const tokens = ctx.mesh.tokens
        const count = (t: string) => tokens.count(t, model)
        // a body of megabytes (tens of thousands of tools) is marked in slices, its counts too; a
        // small one in one go (SDK mode has no raw body: the tools' number tells)
        const body = ctx.request.body
        if ((ctx.request.rawBody?.length ?? 0) > SLICED_PARSE_CHARS || body?.tools?.length > LARGE_TOOLS) {
          const sliced = tokens.countAsync ? (t: string) => tokens.countAsync!(t, model) : count
          return addCacheControlLarge(body, sliced, opts, new Slicer(SLICE_MS)).then((added) => noteMarks(ctx, added))
        }
        noteMarks(ctx, addCacheControl(body, count, opts))
      },
      afterResponse(ctx) {
        if (ctx.protocol !== 'anthropic' || ctx.operation !== 'chat') return
        const read = ctx.usage?.cacheReadTokens ?? 0
        const write = ctx.usage?.cacheWriteTokens ?? 0
        const added = (ctx.meta['prompt-cache']?.added as string[] | undefined) ?? []
        if (!read && !write && !added.length) return
        ctx.meta['prompt-cache'] = { added, readTokens: read, writeTokens: write }
        ctx.mesh.emit('x-prompt_cache', { id: ctx.id, added, readTokens: read, writeTokens: write })
      },
    },
  })
}

export default promptCache
