// Model list and retrieve for every client protocol: OpenAI and Anthropic at /v1/models[/{id}]
// (told apart by `anthropic-version`, which every Anthropic SDK sends), Gemini at
// /v1beta/models[/{model}] and, for a Google client, at /v1/models[/{model}].
//
// Answered from the configured vendors' model lists, never forwarded, even with a vendor key:
// the list says what this proxy serves and routes (all vendors' models, as /v1/models always
// did), not what one vendor's key can reach (an organisation's fine-tunes would be shown to every
// virtual-key holder); tools list models at start-up, which must not depend on a vendor being up
// or spend its rate limit; and one page of merged local ids cannot be mixed with a vendor's
// pagination. The cost: no vendor metadata (Gemini's token limits) beyond what is known here.
import type { H3, H3Event } from 'h3'
import { headerSafe } from './headers.ts'
import { ProtocolError } from './protocols/index.ts'
import { checkModelName } from './protocols/shared.ts'
import type { Mesh } from './types.ts'

type ModelsProtocol = 'openai' | 'anthropic' | 'gemini'

export interface ModelRouteDeps {
  mesh: Mesh
  /** a JSON answer with the bare governance headers (nothing is spent on these routes) */
  json(event: H3Event, body: unknown, extraHeaders?: Record<string, string>): Response
  /** an error in the protocol's own shape */
  error(event: H3Event, protocol: ModelsProtocol, status: number, type: string, message: string): Response
}

// fixed dates: the proxy does not know when a vendor released a model, and a stable value keeps
// the answers cacheable and comparable
const CREATED_UNIX = 1735689600
const CREATED_AT = '2025-01-01T00:00:00Z'

export function registerModelRoutes(app: H3, deps: ModelRouteDeps): void {
  app.get('/v1/models', (event) => listModels(event, clientProtocol(event), deps))
  app.get('/v1/models/:id', (event) => retrieveModel(event, clientProtocol(event), deps))
  app.get('/v1beta/models', (event) => listModels(event, 'gemini', deps))
  app.get('/v1beta/models/:id', (event) => retrieveModel(event, 'gemini', deps))
}

/**
 * Who is asking at a path three protocols share: Anthropic's SDKs send `anthropic-version`,
 * Google's `x-goog-api-client` (and a key as `x-goog-api-key` or `?key=`); anyone else is OpenAI.
 */
function clientProtocol(event: H3Event): ModelsProtocol {
  const h = event.req.headers
  if (h.has('anthropic-version')) return 'anthropic'
  if (h.has('x-goog-api-client') || h.has('x-goog-api-key') || event.url.searchParams.has('key')) return 'gemini'
  return 'openai'
}

/**
 * The ids a client of the protocol may name. OpenAI and Anthropic clients get every vendor's
 * models (what /v1/models always answered); a Gemini client only those a Gemini-speaking vendor
 * serves, since a Gemini request for another vendor's model is not translated.
 */
export function modelIds(mesh: Mesh, protocol: ModelsProtocol): string[] {
  const vendors = [...mesh.vendors.values()].filter(
    (v) => protocol !== 'gemini' || v.protocol === 'gemini' || v.protocol === 'any',
  )
  const ids = vendors
    .flatMap((v) => v.models?.() ?? [])
    .map((id) => (protocol === 'gemini' ? id.replace(/^models\//, '') : id))
  return [...new Set(ids)]
}

function ownerOf(mesh: Mesh, id: string): string {
  for (const v of mesh.vendors.values()) if (v.models?.().includes(id)) return v.name
  return 'agentmesh'
}

function modelObject(mesh: Mesh, protocol: ModelsProtocol, id: string) {
  if (protocol === 'anthropic') return { type: 'model', id, display_name: id, created_at: CREATED_AT }
  if (protocol === 'openai') return { id, object: 'model', created: CREATED_UNIX, owned_by: ownerOf(mesh, id) }
  // the methods this proxy serves for the model; token limits are left out rather than guessed
  const methods = /embed/i.test(id)
    ? ['embedContent', 'batchEmbedContents']
    : ['generateContent', 'streamGenerateContent', 'countTokens']
  return { name: `models/${id}`, baseModelId: id, displayName: id, supportedGenerationMethods: methods }
}

function listModels(event: H3Event, protocol: ModelsProtocol, deps: ModelRouteDeps): Response {
  const ids = modelIds(deps.mesh, protocol)
  const object = (id: string) => modelObject(deps.mesh, protocol, id)
  try {
    if (protocol === 'openai') return deps.json(event, { object: 'list', data: ids.map(object) })
    const q = event.url.searchParams
    if (protocol === 'anthropic') {
      const page = anthropicPage(ids, q)
      return deps.json(event, {
        data: page.map(object),
        has_more: page.hasMore,
        first_id: page[0] ?? null,
        last_id: page.at(-1) ?? null,
      })
    }
    const { page, next } = geminiPage(ids, q)
    return deps.json(event, { models: page.map(object), ...(next ? { nextPageToken: next } : {}) })
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err
    return deps.error(event, protocol, err.status, err.type, err.message)
  }
}

function retrieveModel(event: H3Event, protocol: ModelsProtocol, deps: ModelRouteDeps): Response {
  let id: string
  try {
    id = decodeURIComponent(event.context.params?.id ?? '')
  } catch {
    return deps.error(
      event,
      protocol,
      400,
      'invalid_request_error',
      'the model in the path is not valid percent-encoding',
    )
  }
  try {
    checkModelName(id, 'the model in the path')
  } catch (err) {
    return deps.error(event, protocol, 400, 'invalid_request_error', (err as Error).message)
  }
  const bare = protocol === 'gemini' ? id.replace(/^models\//, '') : id
  if (!modelIds(deps.mesh, protocol).includes(bare)) {
    return deps.error(
      event,
      protocol,
      404,
      'not_found_error',
      `model "${bare}" is not served by this proxy; list the models it serves with GET ${protocol === 'gemini' ? '/v1beta/models' : '/v1/models'}`,
    )
  }
  return deps.json(event, modelObject(deps.mesh, protocol, bare), { 'x-agentmesh-model': headerSafe(bare) })
}

function positiveInt(value: string | null, name: string, max: number, fallback: number): number {
  if (value === null) return fallback
  const n = Number(value)
  if (!/^\d+$/.test(value) || n < 1) throw new ProtocolError(`\`${name}\` must be a positive integer`)
  return Math.min(n, max)
}

/** Anthropic's cursor pages: `limit` (default 20, at most 1000), `after_id` or `before_id`. */
function anthropicPage(ids: string[], q: URLSearchParams): string[] & { hasMore: boolean } {
  const limit = positiveInt(q.get('limit'), 'limit', 1000, 20)
  const after = q.get('after_id')
  const before = q.get('before_id')
  const index = (id: string, name: string) => {
    const i = ids.indexOf(id)
    if (i < 0) throw new ProtocolError(`\`${name}\` names no model in the list`)
    return i
  }
  let page: string[]
  let hasMore: boolean
  if (before !== null) {
    const end = index(before, 'before_id')
    page = ids.slice(Math.max(0, end - limit), end)
    hasMore = end - limit > 0
  } else {
    const start = after !== null ? index(after, 'after_id') + 1 : 0
    page = ids.slice(start, start + limit)
    hasMore = start + limit < ids.length
  }
  return Object.assign(page, { hasMore })
}

/** Gemini's token pages: `pageSize` (default 50, at most 1000); the token is the next offset. */
function geminiPage(ids: string[], q: URLSearchParams): { page: string[]; next?: string } {
  const size = positiveInt(q.get('pageSize'), 'pageSize', 1000, 50)
  const token = q.get('pageToken')
  let start = 0
  if (token) {
    start = Number(token)
    if (!/^\d+$/.test(token) || start > ids.length)
      throw new ProtocolError('`pageToken` is not a token this proxy issued')
  }
  const end = start + size
  return { page: ids.slice(start, end), ...(end < ids.length ? { next: String(end) } : {}) }
}
