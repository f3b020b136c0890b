// Admin API plumbing shared by plugins with admin routes (keys, quota): the admin-token check
// (constant time) and JSON answers.
import { createHash, timingSafeEqual } from 'node:crypto'

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body, null, 2), {
    status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers },
  })
}

export const adminError = (status: number, type: string, message: string) => json(status, { error: { type, message } })

/** The configured admin token: the plugin option, else AGENTMESH_ADMIN_TOKEN; undefined disables the admin API. */
export function resolveAdminToken(option: string | undefined, plugin: string): string | undefined {
  const token = option ?? process.env.AGENTMESH_ADMIN_TOKEN
  if (token === undefined || token === '') return undefined
  if (typeof token !== 'string' || token.length < 16)
    throw new Error(`${plugin}: adminToken (or AGENTMESH_ADMIN_TOKEN) must be at least 16 characters`)
  return token
}

const digest = (s: string) => createHash('sha256').update(s).digest()

/** null when the request carries the admin token, else the error response to send. */
export function checkAdmin(request: Request, token: string | undefined): Response | null {
  if (!token) {
    return adminError(
      403,
      'admin_disabled',
      'the admin API is disabled: set the AGENTMESH_ADMIN_TOKEN environment variable (or adminToken in the plugin options) and send it as Authorization: Bearer <token>',
    )
  }
  const auth = request.headers.get('authorization') ?? ''
  const presented = /^Bearer\s+/i.test(auth)
    ? auth.replace(/^Bearer\s+/i, '')
    : (request.headers.get('x-agentmesh-admin-token') ?? '')
  // compare digests: equal length, so timingSafeEqual never throws and never leaks the length
  if (!presented || !timingSafeEqual(digest(presented), digest(token))) {
    return adminError(
      401,
      'authentication_error',
      'admin token missing or wrong: send Authorization: Bearer <AGENTMESH_ADMIN_TOKEN>',
    )
  }
  return null
}

/** The JSON body of an admin request, or a 400 response. */
export async function readJson(request: Request, maxBytes = 64 * 1024): Promise<{ body?: unknown; error?: Response }> {
  const type = request.headers.get('content-type') ?? ''
  if (type && !/^application\/json\b/i.test(type))
    return { error: adminError(400, 'invalid_request_error', 'send a JSON body with content-type: application/json') }
  const text = await request.text()
  if (text.length > maxBytes)
    return { error: adminError(413, 'invalid_request_error', `body larger than ${maxBytes} bytes`) }
  try {
    return { body: JSON.parse(text) }
  } catch (err) {
    return { error: adminError(400, 'invalid_request_error', `malformed JSON body: ${(err as Error).message}`) }
  }
}
