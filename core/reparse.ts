// The prompt read again from a body a plugin rewrote (a secret redacted, personal data masked), so
// what runs after it (caches, quota, audit) sees the body that goes upstream.
import { embeddingsPrompt } from './embeddings.ts'
import { protocols } from './protocols/index.ts'
import type { Slicer } from './slicer.ts'
import type { MeshContext } from './types.ts'

export function reparsePrompt(ctx: MeshContext): void {
  const before = ctx.prompt
  const pathModel = ctx.protocol === 'gemini' ? before.model : undefined
  const next =
    ctx.operation === 'embeddings'
      ? embeddingsPrompt(ctx.protocol, ctx.request.body, pathModel)
      : protocols[ctx.protocol].parse(ctx.request.body, { pathModel, stream: before.stream })
  // set by the core after parsing (a Responses chain)
  if (before.stateful !== undefined) next.stateful = before.stateful
  if (before.noCache !== undefined) next.noCache = before.noCache
  ctx.prompt = next
}

/** reparsePrompt for a body of tens of thousands of messages: the same prompt, read in slices (the adapter's parseSliced) */
export async function reparsePromptSliced(ctx: MeshContext, slicer: Slicer): Promise<void> {
  if (ctx.operation === 'embeddings') return reparsePrompt(ctx)
  const before = ctx.prompt
  const pathModel = ctx.protocol === 'gemini' ? before.model : undefined
  const next = await protocols[ctx.protocol].parseSliced(ctx.request.body, { pathModel, stream: before.stream }, slicer)
  if (before.stateful !== undefined) next.stateful = before.stateful
  if (before.noCache !== undefined) next.noCache = before.noCache
  ctx.prompt = next
}
