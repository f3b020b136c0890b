// Default identity: X-AgentMesh-Team/-User/-Tool headers, the tool guessed from the User-Agent.
// A key-based resolver (plugins/keys) replaces it through mesh.setIdentityResolver.
import type { Identity, IdentityResolver, MeshResponse } from './types.ts'

const NAME = /^[A-Za-z0-9._@:+-]{1,64}$/

const agents: Array<[RegExp, string]> = [
  [/claude-cli|claude-code|claude code/i, 'claude-code'],
  [/agentmesh-extension/i, 'browser-extension'],
  // Codex CLI: `codex_exec/0.171.0 (...)`, `codex_cli_rs/...` (its `originator` header)
  [/^codex_|codex-cli|codex cli/i, 'codex'],
  [/^OpenAI\//i, 'openai-sdk'],
  [/^Anthropic\//i, 'anthropic-sdk'],
  [/google-genai|gemini/i, 'gemini-sdk'],
  [/^curl\//i, 'curl'],
  [/cursor/i, 'cursor'],
  [/copilot/i, 'copilot'],
  [/python-requests|python-httpx|aiohttp/i, 'python'],
  [/node-fetch|undici|axios/i, 'node'],
  [/Mozilla\//, 'browser'],
]

export function toolFromUserAgent(ua: string | null): string {
  if (!ua) return 'unknown'
  for (const [re, name] of agents) if (re.test(ua)) return name
  return 'unknown'
}

export function headerIdentity(headers: Headers, defaults: { team: string; user: string }): Identity | MeshResponse {
  const out: Identity = {
    team: defaults.team,
    user: defaults.user,
    tool: toolFromUserAgent(headers.get('user-agent')),
    source: 'default',
  }
  for (const field of ['team', 'user', 'tool'] as const) {
    const v = headers.get(`x-agentmesh-${field}`)
    if (v === null) continue
    if (!NAME.test(v))
      return {
        kind: 'error',
        status: 400,
        type: 'invalid_request_error',
        message: `X-AgentMesh-${field[0]!.toUpperCase()}${field.slice(1)} must be 1-64 characters of letters, digits and . _ @ : + -`,
      }
    out[field] = v
    out.source = 'header'
  }
  return out
}

export const defaultIdentityResolver: IdentityResolver = (ctx) => {
  const defaults = ctx.mesh.config.defaultIdentity
  if (!ctx.mesh.config.trustIdentityHeaders)
    return {
      team: defaults.team,
      user: defaults.user,
      tool: toolFromUserAgent(ctx.request.headers.get('user-agent')),
      source: 'default',
    }
  return headerIdentity(ctx.request.headers, defaults)
}
