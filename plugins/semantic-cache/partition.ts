// Which stored prompts a request may be compared with. A semantic hit is only considered between
// requests that agree on everything but the wording of the last user message: vendor family,
// model, system prompt, every earlier turn, tools, tool choice, response format, sampling
// parameters, scope (team / user / global plus the namespace header) and embedder.
import { createHash } from 'node:crypto'
import { canonicalJson } from '../../core/canonical.ts'
import type { MeshContext } from '../../core/types.ts'
import { textWindow } from './text.ts'

export type Scope = 'global' | 'team' | 'user'

export function vendorFamily(model: string, fallback: string): string {
  const m = model.toLowerCase().replace(/^models\//, '')
  if (/^(claude|anthropic)/.test(m)) return 'anthropic'
  if (/^(gpt|o\d|chatgpt|text-|davinci|babbage|ft:gpt|ft:o)/.test(m)) return 'openai'
  if (/^(gemini|gemma)/.test(m)) return 'google'
  return fallback
}

export function scopeOf(ctx: MeshContext, scope: Scope): string {
  const ns = ctx.request.headers.get('x-agentmesh-cache-namespace')?.trim()
  const base =
    scope === 'global'
      ? 'global'
      : scope === 'user'
        ? `user:${ctx.identity.team}\u0000${ctx.identity.user}`
        : `team:${ctx.identity.team}`
  return ns ? `${base}\u0000ns:${ns}` : base
}

export type PartitionResult = { ok: true; key: string; text: string; hint?: string } | { ok: false; reason: string }

export function partitionOf(ctx: MeshContext, scope: Scope, embedderId: string): PartitionResult {
  const view = ctx.normalised ?? { system: ctx.prompt.system, messages: ctx.prompt.messages }
  const msgs = view.messages
  const last = msgs[msgs.length - 1]
  if (!last || last.role !== 'user') return { ok: false, reason: 'the last message is not a user message' }
  // images and tool results are not compared by meaning: only the exact cache may answer them
  if (last.extra) return { ok: false, reason: 'the last message carries images or tool results' }
  if (!last.text.trim()) return { ok: false, reason: 'empty prompt' }
  const original = ctx.prompt.messages[ctx.prompt.messages.length - 1]
  const p = ctx.prompt
  // a long message is embedded and judged by its head and tail only; what lies between them must
  // then be the same word for word, or a prompt that differs in the middle would be served
  // another's answer, so that part's digest joins the partition
  const win = textWindow(last.text)
  const key = createHash('sha256')
    .update(
      canonicalJson({
        v: 1,
        embedder: embedderId,
        scope: scopeOf(ctx, scope),
        family: vendorFamily(p.model, ctx.route?.vendor || ctx.protocol),
        model: p.model,
        system: view.system,
        earlier: msgs.slice(0, -1).map((m) => [m.role, m.text, m.extra ?? null]),
        tools: p.tools ?? null,
        toolChoice: p.toolChoice ?? null,
        responseFormat: p.responseFormat ?? null,
        params: p.params ?? {},
        // a different output limit can cut the answer short
        maxTokens: p.maxTokens ?? null,
        ...(win.cut ? { cut: win.cut } : {}),
      }),
    )
    .digest('base64url')
    .slice(0, 32)
  return {
    ok: true,
    key,
    text: win.text,
    ...(original && original.text !== last.text ? { hint: textWindow(original.text).text } : {}),
  }
}
