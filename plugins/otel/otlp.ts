// The OTLP/JSON encoding of spans, this plugin's own: with the SDK's BatchSpanProcessor and
// OTLPTraceExporter, about 40% of the plugin's added CPU (0.111 ms per request in bench:proxy's
// "metrics+tracing on vs off" line, 3 spans per request) went to the exporter's serializer building
// an object tree per span and then JSON.stringify-ing it. Here each finished span is written once,
// straight to its OTLP/JSON text, and that text into its batch's request body (batch.ts), which the
// official export delegate sends as it is (export.ts). The wire format is the one the official JS
// exporter sends (same field names and order, hex ids, nanosecond times as strings, kind = API kind
// + 1, flags with the has-is-remote bit), which test/observe-otel.test.ts decodes and checks.

/** a string attribute; `key` is one of ours (no escaping needed), the value is escaped */
export const str = (key: string, v: string) => `{"key":"${key}","value":{"stringValue":${JSON.stringify(v)}}}`

/**
 * `text` as one flat string. A text made by joining (`${a}${b}`) is a tree of its pieces that V8
 * walks again each time the text is written into a batch (about 10-20 ns a piece, most of the cost
 * of a span): a text kept to be written again and again is flattened once, when it is made.
 */
export const flat = (text: string): string => Buffer.from(text, 'utf8').toString('utf8')

/**
 * str() for an attribute whose values repeat from request to request (models, teams, providers):
 * each value's text is made once, flat. Bounded: past `max` values the cache starts over.
 */
export function repeatedStr(key: string, max = 1000, lead = ''): (v: string) => string {
  const made = new Map<string, string>()
  return (v) => {
    let t = made.get(v)
    if (t === undefined) {
      if (made.size >= max) made.clear()
      t = flat(lead + str(key, v))
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

/**
 * `,` and num() for one key, the text before the value made once: a span's text is then three
 * pieces per number instead of six (each piece is walked again when the span is written, see flat())
 */
export function numAfterComma(key: string): (v: number) => string {
  const int = flat(`,{"key":"${key}","value":{"intValue":`)
  const double = flat(`,{"key":"${key}","value":{"doubleValue":`)
  const none = flat(`,${num(key, Number.NaN)}`)
  return (v) => (!Number.isFinite(v) ? none : Number.isInteger(v) ? `${int}${v}}}` : `${double}${v}}}`)
}

/** `,` and str() for one key, as numAfterComma */
export function strAfterComma(key: string): (v: string) => string {
  const head = flat(`,{"key":"${key}","value":{"stringValue":`)
  return (v) => `${head}${JSON.stringify(v)}}}`
}

// performance.now() values as epoch nanoseconds, the origin split once (as the SDK's hrTime adds
// the origin and the offset as separate [s, ns] pairs, so no precision is lost to one float)
const ORIGIN_S = Math.trunc(performance.timeOrigin / 1000)
const ORIGIN_NS = Math.round((performance.timeOrigin % 1000) * 1e6)

let lastS = -1
let lastSText = ''
// '000'…'999': the nanoseconds written as three groups of three digits. Turning the number itself
// into text (a heap number, from the float arithmetic) was most of this function's cost
const DIGITS3 = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'))

/** a performance.now() value as OTLP's epoch nanoseconds, a decimal string */
export function nanos(t: number): string {
  let s = ORIGIN_S + Math.trunc(t / 1000)
  // an integer below 2e9: int32 arithmetic from here
  let ns = (ORIGIN_NS + Math.round((t % 1000) * 1e6)) | 0
  if (ns >= 1e9) {
    s += 1
    ns -= 1e9
  }
  // the seconds' text changes once a second
  if (s !== lastS) {
    lastS = s
    lastSText = String(s)
  }
  const hi = (ns / 1e6) | 0
  const rest = ns - hi * 1e6
  const mid = (rest / 1000) | 0
  return lastSText + DIGITS3[hi]! + DIGITS3[mid]! + DIGITS3[rest - mid * 1000]!
}

/** the OTLP resource and scope every trace export carries: the text around the spans */
export function envelope(serviceName: string) {
  const resource = `{"attributes":[${str('service.name', serviceName)}],"droppedAttributesCount":0}`
  return {
    head: `{"resourceSpans":[{"resource":${resource},"scopeSpans":[{"scope":{"name":"agentmesh"},"spans":[`,
    tail: ']}]}]}',
  }
}
