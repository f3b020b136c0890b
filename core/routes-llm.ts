// The LLM routes of the four client protocols: each reads its body (within the size limit, as
// JSON) and hands the call to the lifecycle (core/pipeline.ts). What is particular to a protocol
// (Gemini's model and method in the path, count_tokens shapes) comes from its adapter.
import { isAscii } from 'node:buffer'
import type { IncomingMessage } from 'node:http'
import type { H3, H3Event } from 'h3'
import type { MeshInternals } from './app.ts'
import { isJsonContentType } from './guard.ts'
import { headerSafe } from './headers.ts'
import {
  defaultRoute,
  forwardResponsesState,
  handleLlmRequest,
  type LlmRequest,
  parseBodySliced,
  requestIdentity,
  vendorTokenCount,
} from './pipeline.ts'
import { type ProtocolError, protocolOfPath, protocols } from './protocols/index.ts'
import type { Replies } from './replies.ts'
import { LARGE_BODY_CHARS, Slicer } from './slicer.ts'
import type { Operation, ProtocolName, ResolvedMeshConfig } from './types.ts'

export interface LlmRouteDeps {
  config: ResolvedMeshConfig
  internals: MeshInternals
  replies: Replies
}

const NOT_JSON = 'send the request body as JSON with content-type: application/json'
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

export function registerLlmRoutes(app: H3, deps: LlmRouteDeps): void {
  const { replies } = deps
  const unknownRoute = (event: H3Event) =>
    replies.protocolError(
      event,
      protocolOfPath(event.url.pathname),
      404,
      'not_found_error',
      `no route for ${event.req.method} ${event.url.pathname.slice(0, 200)}`,
    )
  app.post('/v1/chat/completions', (event) => llmCall(deps, event, 'openai', 'chat'))
  app.post('/v1/embeddings', (event) => llmCall(deps, event, 'openai', 'embeddings'))
  app.post('/v1/messages', (event) => llmCall(deps, event, 'anthropic', 'chat'))
  app.post('/v1/messages/count_tokens', (event) => countTokens(deps, event, 'anthropic'))
  // the Responses API; its stored state (retrieve, delete, cancel, input items) lives at the vendor
  app.post('/v1/responses', (event) => llmCall(deps, event, 'responses', 'chat'))
  app.post('/v1/responses/input_tokens', (event) => countTokens(deps, event, 'responses'))
  app.get('/v1/responses/:id', (event) => responsesState(deps, event, 'GET', ''))
  app.delete('/v1/responses/:id', (event) => responsesState(deps, event, 'DELETE', ''))
  app.post('/v1/responses/:id/cancel', (event) => responsesState(deps, event, 'POST', '/cancel'))
  app.get('/v1/responses/:id/input_items', (event) => responsesState(deps, event, 'GET', '/input_items'))
  app.post('/v1beta/models/:modelAction', (event) => geminiCall(deps, event))
  // Gemini's v1 paths (`@google/genai` with apiVersion 'v1'): the same methods. Without a
  // `:method` the path is not Gemini's: the unknown route's 404, in the path's protocol
  app.post('/v1/models/:modelAction', (event) =>
    protocolOfPath(event.url.pathname) === 'gemini' ? geminiCall(deps, event) : unknownRoute(event),
  )
  // unknown routes: a JSON 404 in the error shape of the path's protocol (the router prefers any
  // specific route, registered before or after)
  app.all('/**', unknownRoute)
}

function requestOf(
  event: H3Event,
  protocol: ProtocolName,
  operation: Operation,
  rawBody: string,
  path?: { model: string; stream: boolean },
): LlmRequest {
  return {
    protocol,
    operation,
    request: event.req as Request,
    rawBody,
    pathModel: path?.model,
    pathStream: path?.stream,
    path: event.url.pathname,
    search: event.url.search,
    nodeResponse: (event.runtime as any)?.node?.res,
  }
}

/** A JSON body within the limit, or the error response to answer with. */
async function jsonBody(deps: LlmRouteDeps, event: H3Event, protocol: ProtocolName): Promise<string | Response> {
  if (!isJsonContentType(event.req.headers.get('content-type')))
    return deps.replies.protocolError(event, protocol, 415, 'invalid_request_error', NOT_JSON)
  const body = await readBody(event, deps.config.limits.bodyBytes)
  return typeof body === 'string'
    ? body
    : deps.replies.protocolError(event, protocol, body.status, body.type, body.message)
}

async function llmCall(
  deps: LlmRouteDeps,
  event: H3Event,
  protocol: ProtocolName,
  operation: Operation,
  path?: { model: string; stream: boolean },
): Promise<Response> {
  const body = await jsonBody(deps, event, protocol)
  if (typeof body !== 'string') return body
  // the read ended with the body's last copy (tens of ms at 10 MB); parsing it is another such
  // step: in a turn of its own, so the two do not add up in one block of the event loop
  if (body.length > LARGE_BODY_CHARS) await nextTurn()
  const handled = handleLlmRequest(deps.internals, requestOf(event, protocol, operation, body, path))
  deps.internals.track(handled)
  return handled
}

function geminiCall(deps: LlmRouteDeps, event: H3Event): Promise<Response> | Response {
  let call: ReturnType<NonNullable<typeof protocols.gemini.pathCall>>
  try {
    call = protocols.gemini.pathCall!(event.context.params?.modelAction ?? '')
  } catch (err) {
    const e = err as ProtocolError
    return deps.replies.protocolError(event, 'gemini', e.status, e.type, e.message)
  }
  if (call.operation === 'count_tokens') return countTokens(deps, event, 'gemini', call.model)
  return llmCall(deps, event, 'gemini', call.operation, call)
}

/** The vendor's own count when it has one and a key for it; the local estimate, marked, otherwise. */
async function countTokens(
  deps: LlmRouteDeps,
  event: H3Event,
  protocol: ProtocolName,
  pathModel?: string,
): Promise<Response> {
  const { replies, internals } = deps
  const body = await jsonBody(deps, event, protocol)
  if (typeof body !== 'string') return body
  const adapter = protocols[protocol]
  try {
    // reading, parsing and counting a large body: each in a turn of its own (as in llmCall)
    if (body.length > LARGE_BODY_CHARS) await nextTurn()
    const parsed = (await parseBodySliced(body)) as any
    if (body.length > LARGE_BODY_CHARS) await nextTurn()
    const request = adapter.countTokens!.request(parsed)
    const prompt =
      body.length > LARGE_BODY_CHARS
        ? await adapter.parseSliced(request, { pathModel }, new Slicer(10))
        : adapter.parse(request, { pathModel })
    const model = headerSafe(prompt.model)
    const req = requestOf(
      event,
      protocol,
      'count_tokens',
      body,
      pathModel === undefined ? undefined : { model: pathModel, stream: false },
    )
    const who = await requestIdentity(internals, req)
    if ('kind' in who)
      return who.kind === 'error'
        ? replies.protocolError(event, protocol, who.status, who.type, who.message)
        : replies.protocolError(event, protocol, 403, 'permission_error', 'refused')
    const exact = await vendorTokenCount(internals, req, { body: parsed, prompt, identity: who })
    if (exact)
      return replies.bytes(event, exact.body, {
        'x-agentmesh-vendor': headerSafe(defaultRoute(internals, protocol, prompt.model).vendor),
        'x-agentmesh-model': model,
      })
    const tokens = await internals.mesh.tokens.estimateInputAsync(prompt, prompt.model)
    return replies.json(event, adapter.countTokens!.answer(tokens), {
      'x-agentmesh-usage': 'estimated',
      'x-agentmesh-model': model,
    })
  } catch (err) {
    return replies.protocolError(event, protocol, 400, 'invalid_request_error', (err as Error).message)
  }
}

async function responsesState(deps: LlmRouteDeps, event: H3Event, method: string, tail: string): Promise<Response> {
  let id: string
  try {
    id = decodeURIComponent(event.context.params?.id ?? '')
  } catch {
    return deps.replies.protocolError(
      event,
      'responses',
      400,
      'invalid_request_error',
      'the response id in the path is not valid percent-encoding',
    )
  }
  const body = method === 'POST' ? await readBody(event, deps.config.limits.bodyBytes) : ''
  if (typeof body !== 'string')
    return deps.replies.protocolError(event, 'responses', body.status, body.type, body.message)
  const handled = forwardResponsesState(deps.internals, requestOf(event, 'responses', 'chat', body), {
    method,
    id,
    tail,
  })
  deps.internals.track(handled)
  return handled
}

type BodyError = { status: number; type: string; message: string }

/** chunks of ASCII as one string (Latin-1 reads ASCII as UTF-8 does) */
const latin1 = (chunks: Buffer[]) => (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString('latin1')

/**
 * Read the request body as text within the byte limit; 413 beyond it, without reading the rest.
 * Straight from the Node socket rather than h3's body reading (a web stream): an h3 app on srvx
 * whose one route reads a 200-byte JSON body took about 100 µs of CPU per request this way and
 * about 160 µs with h3's assertBodySize + event.req.text() (median ratio 1.66, both servers loaded
 * at once on one core); at 100 KB the two cost the same.
 */
async function readBody(event: H3Event, limit: number): Promise<string | BodyError> {
  const declared = Number(event.req.headers.get('content-length') ?? NaN)
  const tooLarge = { status: 413, type: 'request_too_large', message: `request body exceeds the ${limit} byte limit` }
  if (declared > limit) return tooLarge
  const nodeReq = (event.runtime as any)?.node?.req as IncomingMessage | undefined
  if (!nodeReq) {
    const text = await event.req.text()
    return Buffer.byteLength(text) > limit ? tooLarge : text
  }
  return new Promise((done) => {
    // one chunk (most requests) is decoded at the end. From the second on, while every byte is
    // ASCII the chunks are kept and the whole is decoded at the end as Latin-1 (the same text),
    // which Node keeps outside the JS heap: no string of megabytes joined on the heap (tens of ms
    // at 10 MB, and its collection). Once a byte is not, each chunk is decoded as it arrives, so a
    // body of megabytes is not decoded in one stretch that holds up other requests.
    let first: Buffer | undefined
    let ascii: Buffer[] | undefined
    let decoder: TextDecoder | undefined
    const parts: string[] = []
    let size = 0
    nodeReq.on('data', (c: Buffer) => {
      size += c.length
      if (size > limit) {
        nodeReq.removeAllListeners('data')
        nodeReq.pause()
        done(tooLarge)
        return
      }
      if (!first && !ascii && !decoder) {
        first = c
        return
      }
      if (!decoder) {
        if (!ascii && isAscii(first!)) ascii = [first!]
        if (ascii && isAscii(c)) {
          ascii.push(c)
          return
        }
        // ignoreBOM keeps a leading BOM as Buffer#toString does: JSON.parse then refuses it alike
        decoder = new TextDecoder('utf-8', { ignoreBOM: true })
        parts.push(ascii ? latin1(ascii) : decoder.decode(first, { stream: true }))
        first = ascii = undefined
      }
      parts.push(decoder.decode(c, { stream: true }))
    })
    nodeReq.once('end', () => {
      if (ascii) return done(latin1(ascii))
      if (!decoder) return done(first ? first.toString('utf8') : '')
      parts.push(decoder.decode())
      done(parts.join(''))
    })
    nodeReq.once('error', () =>
      done({ status: 400, type: 'invalid_request_error', message: 'request body could not be read' }),
    )
  })
}
