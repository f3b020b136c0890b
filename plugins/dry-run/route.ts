// POST /agentmesh/preview: the body of any protocol's chat request (what a browser extension is
// about to send), previewed as JSON. The body goes through the proxy's own route for its protocol
// as a dry run, with the caller's credentials and identity headers, so the preview is exactly what
// that call would get; `?protocol=` and `?model=` (Gemini bodies name no model) say what the body
// alone cannot.
import { randomUUID } from 'node:crypto'
import { adminError, json } from '../../core/admin.ts'
import type { Mesh } from '../../core/types.ts'
import type { Preview } from './preview.ts'

type Protocol = 'openai' | 'anthropic' | 'gemini' | 'responses'
const PROTOCOLS: readonly Protocol[] = ['openai', 'anthropic', 'gemini', 'responses']
const MODEL = /^[A-Za-z0-9._:/@-]{1,128}$/
const MAX_BODY = 10 * 1024 * 1024
// hop-by-hop and body headers are the inner request's own
const DROPPED = new Set([
  'content-length',
  'content-encoding',
  'transfer-encoding',
  'connection',
  'host',
  'x-agentmesh-request-id',
  'x-agentmesh-dry-run',
])

/** Which protocol a chat body is written in, when the caller does not say. */
export function detectProtocol(body: Record<string, any>, headers: Headers): Protocol | undefined {
  if (Array.isArray(body.contents)) return 'gemini'
  if (body.input !== undefined && body.messages === undefined) return 'responses'
  if (!Array.isArray(body.messages)) return undefined
  if (headers.has('anthropic-version') || body.system !== undefined || /^claude/i.test(String(body.model ?? '')))
    return 'anthropic'
  const anthropicBlock = (b: any) =>
    b?.type === 'tool_use' || b?.type === 'tool_result' || (b?.type === 'image' && b?.source)
  if (body.messages.some((m: any) => Array.isArray(m?.content) && m.content.some(anthropicBlock))) return 'anthropic'
  return 'openai'
}

function pathFor(protocol: Protocol, model: string): string {
  if (protocol === 'openai') return '/v1/chat/completions'
  if (protocol === 'anthropic') return '/v1/messages'
  if (protocol === 'responses') return '/v1/responses'
  return `/v1beta/models/${encodeURIComponent(model)}:generateContent`
}

interface Parsed {
  protocol: Protocol
  body: Record<string, any>
  model: string
}

async function parse(request: Request): Promise<Parsed | Response> {
  const text = await request.text()
  if (text.length > MAX_BODY) return adminError(413, 'request_too_large', `body larger than ${MAX_BODY} bytes`)
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch (err) {
    return adminError(400, 'invalid_request_error', `malformed JSON body: ${(err as Error).message}`)
  }
  if (!body || typeof body !== 'object' || Array.isArray(body))
    return adminError(
      400,
      'invalid_request_error',
      'send a chat request body (OpenAI, Anthropic, Gemini or Responses) as a JSON object',
    )
  const q = new URL(request.url).searchParams
  const asked = q.get('protocol')
  if (asked !== null && !PROTOCOLS.includes(asked as Protocol))
    return adminError(400, 'invalid_request_error', `protocol must be one of ${PROTOCOLS.join(', ')}`)
  const b = body as Record<string, any>
  const protocol = (asked as Protocol | null) ?? detectProtocol(b, request.headers)
  if (!protocol)
    return adminError(
      400,
      'invalid_request_error',
      'cannot tell the protocol of this body (no messages, contents or input): add ?protocol=openai|anthropic|gemini|responses',
    )
  const model = String(q.get('model') ?? b.model ?? '')
  if (protocol === 'gemini' && !MODEL.test(model))
    return adminError(
      400,
      'invalid_request_error',
      'a Gemini body names no model: add ?model=gemini-... (letters, digits and ._:/@- only)',
    )
  // a preview is one JSON answer; Gemini's model lives in the path, not the body
  const { stream: _s, ...rest } = b
  if (protocol === 'gemini') delete rest.model
  return { protocol, body: rest, model }
}

export function addPreviewRoute(mesh: Mesh, wanted: Map<string, Preview | null>): void {
  mesh.addRoute('POST', '/agentmesh/preview', async (request) => {
    if (!mesh.fetch)
      return adminError(
        501,
        'not_implemented',
        'this AgentMesh core cannot run a request in-process (Mesh.fetch); send the request itself with X-AgentMesh-Dry-Run: true',
      )
    const parsed = await parse(request)
    if (parsed instanceof Response) return parsed
    const id = randomUUID()
    const headers = new Headers()
    request.headers.forEach((v, k) => {
      if (!DROPPED.has(k)) headers.set(k, v)
    })
    headers.set('content-type', 'application/json')
    headers.set('x-agentmesh-dry-run', 'true')
    headers.set('x-agentmesh-request-id', id)
    wanted.set(id, null)
    let res: Response
    let preview: Preview | null | undefined
    try {
      res = await mesh.fetch(
        new Request(new URL(pathFor(parsed.protocol, parsed.model), request.url), {
          method: 'POST',
          headers,
          body: JSON.stringify(parsed.body),
        }),
      )
    } finally {
      preview = wanted.get(id)
      wanted.delete(id)
    }
    const out: Record<string, string> = {}
    res.headers.forEach((v, k) => {
      if (k.startsWith('x-agentmesh-') || k.startsWith('access-control-') || k === 'vary' || k === 'retry-after')
        out[k] = v
    })
    // refused before the preview (bad body, identity): the proxy's own error, as the protocol shapes it
    if (!preview)
      return json(
        res.status === 200 ? 500 : res.status,
        await res.json().catch(() => ({ error: { type: 'internal_error', message: 'no preview was made' } })),
        out,
      )
    return json(200, { ...preview, protocol: parsed.protocol, headers: out }, out)
  })
}
