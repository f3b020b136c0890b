// prompt-cache: turns on Anthropic's own prompt cache for long, stable prefixes (tools, then the
// system prompt) by adding cache_control breakpoints, unless the client placed its own.
// Runs in `route` after routers (enforce 'post'), when the answering vendor is known.
import { definePlugin } from '../../core/plugin.ts'
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

/** true when the client placed a cache_control anywhere (system, tools or message blocks) */
export function hasClientCacheControl(body: any): boolean {
  const blocks = (v: unknown): boolean =>
    Array.isArray(v) && v.some((b) => b && typeof b === 'object' && 'cache_control' in b)
  if (blocks(body?.system) || blocks(body?.tools)) return true
  if (Array.isArray(body?.messages)) for (const m of body.messages) if (blocks(m?.content)) return true
  return false
}

function systemText(system: unknown): string {
  if (typeof system === 'string') return system
  if (Array.isArray(system)) return system.map((b: any) => (b?.type === 'text' ? String(b.text ?? '') : '')).join('\n')
  return ''
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
        const added = addCacheControl(
          ctx.request.body,
          (t) => ctx.mesh.tokens.count(t, ctx.route.model || ctx.prompt.model),
          opts,
        )
        if (added.length) {
          ctx.request.dirty = true
          ctx.meta['prompt-cache'] = { added }
        }
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
