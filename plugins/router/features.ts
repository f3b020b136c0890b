// What the router reads off a request: who sent it, how big it is, what it needs of a model
// (tools, images, JSON), and how hard it looks (the complexity tier). Bounded work: the tier reads
// at most the last user message's first few thousand characters.
import type { MeshContext, Prompt } from '../../core/types.ts'
import type { ModelTier } from './capabilities.ts'
import type { CompiledOptions, RouteRequest } from './options.ts'

/** JSON output the request asks for, from each protocol's field (core/protocols put it in prompt.responseFormat). */
export function jsonNeed(prompt: Prompt): RouteRequest['json'] {
  const f = prompt.responseFormat as Record<string, any> | undefined
  if (!f || typeof f !== 'object') return false
  // OpenAI response_format, Responses text.format, Anthropic output_format
  if (typeof f.type === 'string')
    return f.type === 'json_schema' ? 'schema' : f.type === 'json_object' ? 'object' : false
  // Gemini generationConfig
  if (f.responseSchema !== undefined) return 'schema'
  return f.responseMimeType === 'application/json' ? 'object' : false
}

const hasTools = (p: Prompt) => (Array.isArray(p.tools) ? p.tools.length > 0 : !!p.tools)

export function routeRequest(ctx: MeshContext, alias: boolean): RouteRequest {
  const p = ctx.prompt
  return {
    team: ctx.identity.team,
    user: ctx.identity.user,
    tool: ctx.identity.tool,
    protocol: ctx.protocol,
    model: p.model,
    alias,
    inputTokens: Math.max(0, Math.round(ctx.usage.inputTokens || 0)),
    maxTokens: p.maxTokens,
    tools: hasTools(p),
    images: p.hasImages,
    json: jsonNeed(p),
    stream: p.stream,
  }
}

// code fences, stack traces, or the words of a reasoning task: signs a small model is the wrong one
const CODE = /```|\bfunction\b|\bdef |\bclass |=>|#include|\bimport |\bSELECT\b|Traceback|\bat [\w.$]+\(/
const REASONING =
  /\b(prove|proof|derive|step[- ]by[- ]step|analy[sz]e|debug|refactor|architect|optimi[sz]e|trade-?offs?|algorithm|complexity|theorem|reason through|plan)\b/i
const SCAN_CHARS = 4000

function lastUserText(p: Prompt): string {
  for (let i = p.messages.length - 1; i >= 0; i--) {
    const m = p.messages[i]!
    if (m.role === 'user') return m.text.length > SCAN_CHARS ? m.text.slice(0, SCAN_CHARS) : m.text
  }
  return ''
}

/**
 * The smallest tier that may answer: 'small' for a short plain question, 'large' for a long request
 * or code/reasoning beyond a short one, 'medium' between. Tools and images say nothing of
 * difficulty (agents send tools with every call), so they do not raise it.
 */
export function minimumTier(
  ctx: MeshContext,
  req: RouteRequest,
  c: Exclude<CompiledOptions['complexity'], false>,
): ModelTier {
  if (req.inputTokens >= c.longTokens) return 'large'
  const text = lastUserText(ctx.prompt)
  if (CODE.test(text) || REASONING.test(text)) return req.inputTokens > c.shortTokens ? 'large' : 'medium'
  return req.inputTokens <= c.shortTokens ? 'small' : 'medium'
}

export const TIER_RANK: Record<ModelTier, number> = { small: 0, medium: 1, large: 2 }
