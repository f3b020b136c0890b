// OTLP/HTTP with the JSON encoding, written here rather than through the official exporters: with
// the SDK's BatchSpanProcessor and OTLPTraceExporter, about 40% of the plugin's added CPU (0.111
// ms per request in bench:proxy's "metrics+tracing on vs off" line, 3 spans per request) went to
// the exporter's serializer building an object tree per span and then JSON.stringify-ing it.
// Here each finished span is written once, straight to its OTLP/JSON text, and that text into
// its batch's request body (batch.ts). The wire format is the one the official JS exporter sends (same field names and
// order, hex ids, nanosecond times as strings, kind = API kind + 1, flags with the
// has-is-remote bit), which test/observe-otel.test.ts decodes and checks.
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import type { Logger } from '../../core/types.ts'

/** a string attribute; `key` is one of ours (no escaping needed), the value is escaped */
export const str = (key: string, v: string) => `{"key":"${key}","value":{"stringValue":${JSON.stringify(v)}}}`

/**
 * str() for an attribute whose values repeat from request to request (models, teams, providers):
 * each value's text is made once. Bounded: past `max` values the cache starts over.
 */
export function repeatedStr(key: string, max = 1000): (v: string) => string {
  const made = new Map<string, string>()
  return (v) => {
    let t = made.get(v)
    if (t === undefined) {
      if (made.size >= max) made.clear()
      t = str(key, v)
      made.set(v, t)
    }
    return t
  }
}

/** a number attribute as the SDK types it: intValue for an integer, doubleValue otherwise */
export function num(key: string, v: number): string {
  // JSON has no NaN or Infinity: the SDK's JSON.stringify wrote null
  if (!Number.isFinite(v)) return `{"key":"${key}","value":{"doubleValue":null}}`
  return Number.isInteger(v)
    ? `{"key":"${key}","value":{"intValue":${v}}}`
    : `{"key":"${key}","value":{"doubleValue":${v}}}`
}

// performance.now() values as epoch nanoseconds, the origin split once (as the SDK's hrTime adds
// the origin and the offset as separate [s, ns] pairs, so no precision is lost to one float)
const ORIGIN_S = Math.trunc(performance.timeOrigin / 1000)
const ORIGIN_NS = Math.round((performance.timeOrigin % 1000) * 1e6)

const NINE_ZEROS = '000000000'
let lastS = -1
let lastSText = ''

/** a performance.now() value as OTLP's epoch nanoseconds, a decimal string */
export function nanos(t: number): string {
  let s = ORIGIN_S + Math.trunc(t / 1000)
  let ns = ORIGIN_NS + Math.round((t % 1000) * 1e6)
  if (ns >= 1e9) {
    s += 1
    ns -= 1e9
  }
  // the seconds' text changes once a second; numbers past V8's small integers (2^30) are slow to
  // turn into text, and the nanoseconds (< 1e9) are small integers: padded to 9 digits by hand
  if (s !== lastS) {
    lastS = s
    lastSText = String(s)
  }
  const n = String(ns)
  return `${lastSText}${NINE_ZEROS.slice(n.length)}${n}`
}

/** an epoch millisecond time (Date.now()) as OTLP nanoseconds: the metrics' times, as the SDK's */
export const msNanos = (ms: number) => `${ms}000000`

/** the OTLP resource and scope every export carries: the traces' text around the spans, the metrics' */
export function envelope(serviceName: string) {
  const resource = `{"attributes":[${str('service.name', serviceName)}],"droppedAttributesCount":0}`
  return {
    traces: {
      head: `{"resourceSpans":[{"resource":${resource},"scopeSpans":[{"scope":{"name":"agentmesh"},"spans":[`,
      tail: ']}]}]}',
    },
    metrics: (metrics: string) =>
      `{"resourceMetrics":[{"resource":${resource},"scopeMetrics":[{"scope":{"name":"agentmesh","version":""},"metrics":[${metrics}]}]}]}`,
  }
}

export interface PostOptions {
  /** per export, ms: a collector that hangs does not hold sockets (the SDK's default, 10 s) */
  timeoutMs: number
  /** exports in flight at once; more wait (spans in the queue, metrics skip a turn) */
  maxInFlight: number
  /** extra request headers per signal (a collector's auth): never logged */
  headers?: { traces?: Record<string, string>; metrics?: Record<string, string> }
}

/**
 * POSTs JSON bodies to one OTLP/HTTP base URL over keep-alive connections. No retries: a failed
 * export is dropped and counted, so an outage costs one attempt per batch, not a growing storm.
 * An outage is logged once when it starts and once when the collector answers again.
 */
export class OtlpHttp {
  inFlight = 0
  failures = 0
  #down = false
  readonly #agent: HttpAgent
  readonly #request: typeof httpRequest
  readonly #pending = new Set<Promise<boolean>>()
  constructor(
    private readonly base: string,
    private readonly o: PostOptions,
    private readonly log: () => Logger | undefined,
  ) {
    const https = base.startsWith('https:')
    this.#agent = https
      ? new HttpsAgent({ keepAlive: true, maxSockets: o.maxInFlight })
      : new HttpAgent({ keepAlive: true, maxSockets: o.maxInFlight })
    this.#request = https ? httpsRequest : httpRequest
  }

  get busy(): boolean {
    return this.inFlight >= this.o.maxInFlight
  }

  /** resolves true when the collector took it (2xx); never rejects */
  post(path: '/v1/traces' | '/v1/metrics', body: Buffer | string, what: string): Promise<boolean> {
    this.inFlight++
    const done = new Promise<boolean>((resolve) => {
      let settled = false
      const finish = (ok: boolean, why?: string) => {
        if (settled) return
        settled = true
        this.inFlight--
        this.#health(ok, why, what)
        resolve(ok)
      }
      const payload = typeof body === 'string' ? Buffer.from(body) : body
      const req = this.#request(
        `${this.base}${path}`,
        {
          method: 'POST',
          agent: this.#agent,
          timeout: this.o.timeoutMs,
          headers: {
            ...(path === '/v1/traces' ? this.o.headers?.traces : this.o.headers?.metrics),
            'content-type': 'application/json',
            'content-length': payload.length,
            'user-agent': 'agentmesh-otlp',
          },
        },
        (res: IncomingMessage) => {
          // read the answer to the end, so the connection goes back to the pool
          res.resume()
          res.on('end', () => {
            const s = res.statusCode ?? 0
            finish(s >= 200 && s < 300, `HTTP ${s}`)
          })
          res.on('error', (err) => finish(false, err.message))
        },
      )
      req.on('timeout', () => req.destroy(new Error(`no answer in ${this.o.timeoutMs} ms`)))
      req.on('error', (err) => finish(false, err.message))
      req.end(payload)
    })
    this.#pending.add(done)
    void done.then(() => this.#pending.delete(done))
    return done
  }

  #health(ok: boolean, why: string | undefined, what: string) {
    if (ok) {
      if (this.#down) this.log()?.info('otel: the collector answers again', { url: this.base })
      this.#down = false
      return
    }
    this.failures++
    if (!this.#down)
      this.log()?.warn('otel: an export failed; until the collector answers, what fails is dropped', {
        url: this.base,
        error: why,
        dropped: what,
      })
    this.#down = true
  }

  /** waits for the exports in flight until `deadline` (Date.now()), then closes the connections */
  async close(deadline = Date.now() + this.o.timeoutMs): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise((r) => {
      timer = setTimeout(r, Math.max(0, deadline - Date.now()))
    })
    await Promise.race([Promise.allSettled([...this.#pending]), late])
    clearTimeout(timer)
    this.#agent.destroy()
  }
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
// a value Node writes without throwing: visible Latin-1 and tabs/spaces, no CR/LF
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/

/**
 * The headers of OTEL_EXPORTER_OTLP_HEADERS (and the _TRACES_/_METRICS_ forms): `k1=v1,k2=v2`,
 * values percent-encoded, as the OpenTelemetry spec's exporter configuration writes them.
 */
export function parseHeaderList(list: string | undefined, from: string): Record<string, string> {
  const out: Record<string, string> = {}
  if (!list) return out
  for (const part of list.split(',')) {
    if (!part.trim()) continue
    const eq = part.indexOf('=')
    if (eq <= 0) throw new Error(`otel: ${from} must be key=value pairs separated by commas`)
    let value: string
    try {
      value = decodeURIComponent(part.slice(eq + 1).trim())
    } catch {
      throw new Error(`otel: ${from} has a value that is not percent-encoded text`)
    }
    out[part.slice(0, eq).trim().toLowerCase()] = value
  }
  return checkHeaders(out, from)
}

/** header names and values Node can send: a bad one fails at start, not at every export */
export function checkHeaders(headers: Record<string, string>, from: string): Record<string, string> {
  for (const [k, v] of Object.entries(headers)) {
    if (!HEADER_NAME.test(k)) throw new Error(`otel: ${from}: "${k.slice(0, 40)}" is not a header name`)
    if (typeof v !== 'string' || !HEADER_VALUE.test(v))
      throw new Error(`otel: ${from}: the value of "${k}" must be text without line breaks`)
  }
  return headers
}
