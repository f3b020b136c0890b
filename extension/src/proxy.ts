// Every call from the extension to the proxy, made from the service worker (a content script's
// fetch to loopback is subject to the browser's local-network rules and can hang on a permission
// prompt), each with a timeout, each with the identity headers.
import { type Estimate, type Failure, type Settings, SITES, type Site, type SiteId } from './shared.ts'

/** the overlay must say "offline" within 2 s: the worker gives up before that */
export const PREVIEW_TIMEOUT_MS = 1200
const ANSWER_TIMEOUT_MS = 20_000
const STATUS_TIMEOUT_MS = 1500

export const siteById = (id: SiteId): Site => SITES.find((s) => s.id === id)!

export function baseUrl(settings: Settings): string {
  return settings.proxyUrl.replace(/\/+$/, '')
}

/** X-AgentMesh-Tool: browser-<site>, the configured user and team, the virtual key as a Bearer token */
export function identityHeaders(settings: Settings, tool: string): Record<string, string> {
  const h: Record<string, string> = { 'x-agentmesh-tool': tool }
  if (settings.user) h['x-agentmesh-user'] = settings.user
  if (settings.team) h['x-agentmesh-team'] = settings.team
  if (settings.key) h.authorization = `Bearer ${settings.key}`
  return h
}

/** The request the site's own vendor would get for this prompt, in that vendor's protocol. */
export function chatRequest(
  settings: Settings,
  site: Site,
  text: string,
): { path: string; body: unknown; model: string } {
  const model = settings.models[site.id] || site.defaultModel
  if (site.protocol === 'anthropic')
    return {
      path: '/v1/messages',
      model,
      body: { model, max_tokens: 1024, messages: [{ role: 'user', content: text }] },
    }
  if (site.protocol === 'gemini')
    return {
      path: `/v1beta/models/${encodeURIComponent(model)}:generateContent`,
      model,
      body: { contents: [{ role: 'user', parts: [{ text }] }] },
    }
  return { path: '/v1/chat/completions', model, body: { model, messages: [{ role: 'user', content: text }] } }
}

async function call(
  settings: Settings,
  path: string,
  init: RequestInit & { timeoutMs: number; tool: string },
): Promise<Response> {
  const headers = {
    ...identityHeaders(settings, init.tool),
    ...(init.body ? { 'content-type': 'application/json' } : {}),
  }
  // no `cache:` option: the browser would add Cache-Control: no-cache, which tells the proxy to skip its cache
  return fetch(baseUrl(settings) + path, {
    method: init.method,
    body: init.body,
    headers,
    signal: AbortSignal.timeout(init.timeoutMs),
  })
}

function unreachable(settings: Settings, err: unknown): Failure {
  const slow = (err as Error)?.name === 'TimeoutError'
  return {
    ok: false,
    offline: true,
    message: `AgentMesh offline: ${slow ? 'no answer from' : 'cannot reach'} ${baseUrl(settings)}`,
  }
}

async function refusal(res: Response): Promise<Failure> {
  const body = (await res.json().catch(() => null)) as { error?: { message?: string } } | null
  const why = body?.error?.message ?? res.statusText
  return { ok: false, offline: false, message: `AgentMesh refused the preview (${res.status}): ${why}`.slice(0, 240) }
}

const num = (v: string | null | undefined): number | null =>
  v == null || v === '' || !Number.isFinite(Number(v)) ? null : Number(v)

/** POST /agentmesh/preview: what this prompt would cost, whether it was asked before, which guard would stop it */
export async function preview(settings: Settings, siteId: SiteId, text: string): Promise<Estimate | Failure> {
  const site = siteById(siteId)
  const req = chatRequest(settings, site, text)
  const q = new URLSearchParams({ protocol: site.protocol, model: req.model })
  let res: Response
  let p: any
  try {
    res = await call(settings, `/agentmesh/preview?${q}`, {
      method: 'POST',
      body: JSON.stringify(req.body),
      timeoutMs: PREVIEW_TIMEOUT_MS,
      tool: `browser-${siteId}`,
    })
    if (res.status === 404)
      return {
        ok: false,
        offline: false,
        message: `AgentMesh at ${baseUrl(settings)} has no preview: add the dry-run plugin (dryRun()) to its config`,
      }
    if (!res.ok) return await refusal(res)
    p = await res.json()
  } catch (err) {
    return unreachable(settings, err)
  }
  return {
    ok: true,
    model: String(p.route?.model ?? req.model),
    vendor: String(p.route?.vendor ?? ''),
    inputTokens: Number(p.estimate?.inputTokens ?? 0),
    inputUsd: Number(p.estimate?.inputUsd ?? 0),
    outcome: p.outcome,
    cache: p.cache ?? { status: 'miss' },
    team: String(p.identity?.team ?? ''),
    user: String(p.identity?.user ?? ''),
    quotaPct: num(p.headers?.['x-agentmesh-quota-pct']),
    guards: Array.isArray(p.guards)
      ? p.guards.map((g: any) => ({
          guard: String(g.guard),
          action: g.action === 'hold' ? 'hold' : 'block',
          message: String(g.message ?? ''),
        }))
      : [],
  }
}

function answerText(protocol: Site['protocol'], body: any): string {
  if (protocol === 'anthropic')
    return (body?.content ?? [])
      .filter((b: any) => b?.type === 'text')
      .map((b: any) => b.text)
      .join('')
  if (protocol === 'gemini')
    return (body?.candidates?.[0]?.content?.parts ?? []).map((p: any) => p?.text ?? '').join('')
  return String(body?.choices?.[0]?.message?.content ?? '')
}

export interface Answer {
  text: string
  cache: string
  savedTokens: number
  savedUsd: number
  quotaPct: number | null
}

/** The prompt sent for real through the proxy: the overlay offers this when the cache has the answer. */
export async function ask(settings: Settings, siteId: SiteId, text: string): Promise<Answer | Failure> {
  const site = siteById(siteId)
  const req = chatRequest(settings, site, text)
  try {
    const res = await call(settings, req.path, {
      method: 'POST',
      body: JSON.stringify(req.body),
      timeoutMs: ANSWER_TIMEOUT_MS,
      tool: `browser-${siteId}`,
    })
    if (!res.ok) return { ...(await refusal(res)), message: `AgentMesh refused the request (${res.status})` }
    const h = res.headers
    return {
      text: answerText(site.protocol, await res.json()),
      cache: h.get('x-agentmesh-cache') ?? 'miss',
      savedTokens: num(h.get('x-agentmesh-tokens-saved')) ?? 0,
      savedUsd: num(h.get('x-agentmesh-cost-saved-usd')) ?? 0,
      quotaPct: num(h.get('x-agentmesh-quota-pct')),
    }
  } catch (err) {
    return unreachable(settings, err)
  }
}

/** GET /agentmesh/health: whether the popup shows "connected" */
export async function health(settings: Settings): Promise<{ ok: boolean; message: string }> {
  try {
    const res = await call(settings, '/agentmesh/health', {
      method: 'GET',
      timeoutMs: STATUS_TIMEOUT_MS,
      tool: 'browser-extension',
    })
    return res.ok
      ? { ok: true, message: `connected to ${baseUrl(settings)}` }
      : { ok: false, message: `${baseUrl(settings)} answered ${res.status}` }
  } catch (err) {
    return { ok: false, message: unreachable(settings, err).message }
  }
}
