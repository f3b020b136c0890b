// Answers given outside a request's lifecycle (an unknown route, a 413, health, count_tokens):
// they carry the governance headers too, saying nothing was spent, and errors come in the error
// shape of the protocol the path belongs to.
import type { H3Event } from 'h3'
import { FastResponse } from 'srvx'
import { protocols } from './protocols/index.ts'
import { newRequestId } from './request-id.ts'
import type { ProtocolName } from './types.ts'

export interface Replies {
  /** the governance headers of an answer that spent nothing, with CORS for the origin */
  bareHeaders(origin: string | null): Record<string, string>
  json(event: H3Event, body: unknown, extraHeaders?: Record<string, string>, status?: number): Response
  /** a JSON body passed on as it came (a vendor's answer) */
  bytes(event: H3Event, body: Buffer, extraHeaders?: Record<string, string>): Response
  /** an error in the protocol's own shape */
  protocolError(event: H3Event, protocol: ProtocolName, status: number, type: string, message: string): Response
  /** an error of AgentMesh's own routes (events, plugins' admin routes) */
  jsonError(status: number, type: string, message: string, origin: string | null): Response
}

export function createReplies(corsHeaders: (origin: string | null) => Record<string, string>): Replies {
  const bareHeaders = (origin: string | null): Record<string, string> => ({
    'x-agentmesh-request-id': newRequestId(),
    'x-agentmesh-vendor': 'none',
    'x-agentmesh-model': '',
    'x-agentmesh-tokens': '0',
    'x-agentmesh-cost-usd': '0.000000',
    'x-agentmesh-cache': 'bypass',
    'x-agentmesh-latency-ms': '0.0',
    ...corsHeaders(origin),
  })
  const respond = (status: number, body: unknown, headers: Record<string, string>) =>
    new FastResponse(Buffer.isBuffer(body) ? (body as unknown as BodyInit) : JSON.stringify(body), {
      status,
      headers: { 'content-type': 'application/json', ...headers },
    }) as unknown as Response
  return {
    bareHeaders,
    json: (event, body, extra, status = 200) =>
      respond(status, body, { ...bareHeaders(event.req.headers.get('origin')), ...extra }),
    bytes: (event, body, extra) => respond(200, body, { ...bareHeaders(event.req.headers.get('origin')), ...extra }),
    protocolError: (event, protocol, status, type, message) =>
      respond(
        status,
        protocols[protocol].errorBody(status, type, message),
        bareHeaders(event.req.headers.get('origin')),
      ),
    jsonError: (status, type, message, origin) => respond(status, { error: { type, message } }, bareHeaders(origin)),
  }
}
