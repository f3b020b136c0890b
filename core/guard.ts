// Who may talk to the proxy at all, checked before any route: the Host header (a page on another
// site that re-points its DNS name at 127.0.0.1 reaches us with its own name as Host: DNS
// rebinding) and the browser Origin (a page on another site posting to a loopback proxy). The
// operator's vendor keys are spent on every call that gets through, so both default to closed.
import type { ResolvedMeshConfig } from './types.ts'

const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/

/** Origin patterns: '*' matches within one URL part; a trailing ':*' is any port or none. */
const patterns = new Map<string, RegExp>()
export function originPattern(glob: string): RegExp {
  let re = patterns.get(glob)
  if (!re) {
    const anyPort = glob.endsWith(':*')
    const body = anyPort ? glob.slice(0, -2) : glob
    const source = body
      .split('*')
      .map((s) => s.replace(/[.+?^${}()|[\]\\/]/g, '\\$&'))
      .join('[^/:]*')
    patterns.set(glob, (re = new RegExp('^' + source + (anyPort ? '(?::\\d{1,5})?' : '') + '$', 'i')))
  }
  return re
}

export function originAllowed(origins: string[] | '*', origin: string): boolean {
  if (origins === '*') return true
  for (const o of origins) if (o === origin || (o.includes('*') && originPattern(o).test(origin))) return true
  return false
}

export interface Refusal {
  status: number
  type: string
  message: string
  /** the connection cannot carry another request (its body's end is unknown) */
  close?: boolean
}

/**
 * A checker for one config: undefined when the request may go on, else why not. Host verdicts
 * are remembered (a deployment sees a handful of Host values), so the common case is one Map read.
 */
export function createRequestGuard(config: ResolvedMeshConfig): (headers: Headers) => Refusal | undefined {
  const named = config.allowedHosts === true ? [] : config.allowedHosts.map((h) => h.toLowerCase())
  const anyHost = config.allowedHosts === true
  const listen = config.host.toLowerCase()
  const verdicts = new Map<string, boolean>()

  const hostAllowed = (host: string): boolean => {
    let ok = verdicts.get(host)
    if (ok !== undefined) return ok
    const name = hostName(host)
    ok =
      anyHost ||
      name.startsWith('[') ||
      IPV4.test(name) ||
      name === 'localhost' ||
      name.endsWith('.localhost') ||
      name === listen ||
      named.some((n) => (n.startsWith('.') ? name.endsWith(n) || name === n.slice(1) : name === n))
    // bounded: a flood of made-up Host values must not grow memory
    if (verdicts.size < 256) verdicts.set(host, ok)
    return ok
  }

  return (headers) => {
    // a body framed by another coding than chunked (RFC 9112 6.3: only a final chunked tells where
    // it ends): Node then reads it until the client closes, and a client waiting for the answer
    // waits for ever; refused at once instead
    const te = headers.get('transfer-encoding')
    if (te !== null && !/(^|,)\s*chunked\s*$/i.test(te)) {
      return {
        status: 400,
        type: 'invalid_request_error',
        message: `Transfer-Encoding "${te.slice(0, 60)}" does not end with chunked: the body's end cannot be known`,
        close: true,
      }
    }
    const host = headers.get('host')
    if (host && !hostAllowed(host.toLowerCase())) {
      return {
        status: 403,
        type: 'permission_error',
        message: `Host "${host.slice(0, 100)}" is not allowed: add it to \`allowedHosts\` in agentmesh.config.ts`,
      }
    }
    const origin = headers.get('origin')
    if (origin && !originAllowed(config.cors.origins, origin) && !sameOrigin(origin, host)) {
      return {
        status: 403,
        type: 'permission_error',
        message: `browser origin "${origin.slice(0, 100)}" is not allowed: add it to \`cors.origins\` in agentmesh.config.ts`,
      }
    }
    return undefined
  }
}

/** 'example.com:8080' -> 'example.com', '[::1]:8080' -> '[::1]' */
function hostName(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']')
    return end < 0 ? host : host.slice(0, end + 1)
  }
  const colon = host.indexOf(':')
  return colon < 0 ? host : host.slice(0, colon)
}

/** a page the proxy itself served (the dashboard) posting back to it */
function sameOrigin(origin: string, host: string | null): boolean {
  if (!host) return false
  const i = origin.indexOf('://')
  return i > 0 && origin.slice(i + 3).toLowerCase() === host.toLowerCase()
}

/** LLM calls carry JSON; a form or text/plain body is what a cross-site page can send without asking. */
export function isJsonContentType(type: string | null): boolean {
  if (!type) return false
  const semi = type.indexOf(';')
  const mime = (semi < 0 ? type : type.slice(0, semi)).trim().toLowerCase()
  return mime === 'application/json' || mime.endsWith('+json')
}
