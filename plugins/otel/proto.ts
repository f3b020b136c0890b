// A request's spans in OTLP/protobuf (opentelemetry/proto/trace/v1/trace.proto), the wire format
// OTLP/HTTP uses by default: the same spans json.ts writes, field for field, in about half the
// bytes (ids and times as raw bytes, attribute wrappers as a tag and a length instead of JSON
// keys), written with no text to build at all. Each request's spans go to a reused scratch buffer
// and from there into their batch's body (batch.ts); the batch's envelope (resource, scope) is
// written around them when it is sealed (`protoFraming`).
//
// What repeats from request to request (an attribute's key, a model's span name and first
// attributes, a team's attribute) is encoded once and copied. Field numbers and order as the
// official ProtobufTraceSerializer writes them; fields that hold proto3 defaults (dropped counts:
// zero for every span of ours) are left out, which every decoder reads as the same thing.
import type { MeshContext } from '../../core/types.ts'
import type { Framing } from './batch.ts'
import * as spans from './spans.ts'
import type { Marks } from './spans.ts'

// taken once: under the TypeScript loader every use of an imported binding is a property read
const { conversationOf, errorOf, isCacheHit, operationOf, perModel, providerOf, randomHex } = spans

// wire types
const VARINT = 0
const I64 = 1
const LEN = 2
const tag = (field: number, wire: number) => (field << 3) | wire

// ---- the scratch buffer and its primitive writes ----

let b: Buffer = Buffer.allocUnsafeSlow(16 * 1024)
let p = 0

/** room for `n` more bytes (a request's spans are about 800 bytes; a client may name a long model) */
function ensure(n: number): void {
  if (p + n <= b.length) return
  const bigger = Buffer.allocUnsafeSlow(Math.max(b.length * 2, p + n))
  b.copy(bigger, 0, 0, p)
  b = bigger
}

/** the bytes varint() writes for a non-negative integer below 2^53 */
function varintSize(n: number): number {
  if (n < 0x80) return 1
  if (n < 0x4000) return 2
  let size = 3
  for (let x = n / 0x200000; x >= 1; x /= 0x80) size++
  return size
}

/** a non-negative integer below 2^53 */
function varint(n: number): void {
  while (n >= 0x80) {
    b[p++] = (n & 0x7f) | 0x80
    // not >>> 7: n may be past 32 bits (a token count is a JS number)
    n = Math.floor(n / 128)
  }
  b[p++] = n
}

function raw(bytes: Uint8Array): void {
  b.set(bytes, p)
  p += bytes.length
}

/** the bytes `write` puts in a buffer of `room` bytes, as a Buffer of their own (made once, kept) */
function captured(write: () => void, room: number): Buffer {
  const save = [b, p] as const
  b = Buffer.allocUnsafe(room)
  p = 0
  write()
  const out = Buffer.from(b.subarray(0, p))
  ;[b, p] = save
  return out
}

// hex digit values by char code: an id is two table reads a byte, no call into C++
const HEX = new Uint8Array(128)
for (let i = 0; i < 16; i++) HEX['0123456789abcdef'.charCodeAt(i)] = i
for (let i = 10; i < 16; i++) HEX['ABCDEF'.charCodeAt(i - 10)] = i

// a request's trace id and its request span's id, decoded once: each is written into two or three
// of its spans
const TRACE = new Uint8Array(16)
const SELF = new Uint8Array(8)

/** hex id `hex` into `into` (its length in bytes) */
function decodeId(hex: string, into: Uint8Array): void {
  for (let i = 0; i < into.length; i++) into[i] = (HEX[hex.charCodeAt(2 * i)]! << 4) | HEX[hex.charCodeAt(2 * i + 1)]!
}

/** a bytes field holding a decoded id */
function idBytesField(field: number, id: Uint8Array): void {
  b[p++] = tag(field, LEN)
  b[p++] = id.length
  for (let i = 0; i < id.length; i++) b[p++] = id[i]!
}

const SPAN_ID = new Uint8Array(8)

/** a bytes field holding a span id (hex) used once */
function idField(field: number, hex: string): void {
  decodeId(hex, SPAN_ID)
  idBytesField(field, SPAN_ID)
}

// performance.now() values as epoch nanoseconds, in two 32-bit halves: the origin split into
// seconds and nanoseconds once (as the SDK's hrTime), then exact integer arithmetic in doubles
const ORIGIN_S = Math.trunc(performance.timeOrigin / 1000)
const ORIGIN_NS = Math.round((performance.timeOrigin % 1000) * 1e6)
const TWO_16 = 0x10000
const TWO_32 = 0x100000000

/** a fixed64 field: the epoch nanoseconds of performance.now() value `t` */
function nanosField(field: number, t: number): void {
  let s = ORIGIN_S + Math.trunc(t / 1000)
  let ns = ORIGIN_NS + Math.round((t % 1000) * 1e6)
  if (ns >= 1e9) {
    s += 1
    ns -= 1e9
  }
  // s * 1e9 + ns overflows a double's 53 bits: s = hi16 * 2^16 + lo16, each product exact
  const hiPart = Math.floor(s / TWO_16) * 1e9 // × 2^16 below
  const low = (s % TWO_16) * 1e9 + ns
  const hiPartHigh = Math.floor(hiPart / TWO_16)
  const l = (hiPart % TWO_16) * TWO_16 + low
  const lo32 = l % TWO_32
  const hi32 = hiPartHigh + Math.floor(l / TWO_32)
  // byte stores: a typed array keeps the low 8 bits of what it is given
  b[p++] = tag(field, I64)
  b[p++] = lo32
  b[p++] = lo32 >>> 8
  b[p++] = lo32 >>> 16
  b[p++] = lo32 >>> 24
  b[p++] = hi32
  b[p++] = hi32 >>> 8
  b[p++] = hi32 >>> 16
  b[p++] = hi32 >>> 24
}

/** a string field; the length is known first for short text (at most 3 bytes a UTF-16 unit) */
function strField(field: number, s: string): void {
  b[p++] = tag(field, LEN)
  if (s.length <= 42) {
    const n = b.write(s, p + 1)
    b[p] = n
    p += 1 + n
    return
  }
  const n = Buffer.byteLength(s)
  varint(n)
  p += b.write(s, p)
}

// ---- attributes (Span field 9: KeyValue { key = 1; AnyValue value = 2 }) ----

/** KeyValue's key field, encoded once per key */
const keyOf = (key: string) => Buffer.concat([Buffer.from([tag(1, LEN), Buffer.byteLength(key)]), Buffer.from(key)])

/** one string attribute at p, its lengths counted first */
function strAttrField(key: Buffer, v: string): void {
  const n = Buffer.byteLength(v)
  const any = 1 + varintSize(n) + n
  b[p++] = tag(9, LEN)
  varint(key.length + 1 + varintSize(any) + any)
  raw(key)
  b[p++] = tag(2, LEN)
  varint(any)
  b[p++] = tag(1, LEN)
  varint(n)
  p += b.write(v, p)
}

/** one string attribute, whole: what is cached for the values that repeat */
const encodeStrAttr = (key: Buffer, v: string): Buffer =>
  captured(() => strAttrField(key, v), 16 + key.length + 3 * v.length)

/** a string attribute whose values repeat (teams, users, models): each value's bytes made once */
function repeatedAttr(key: string, max = 1000): (v: string) => void {
  const k = keyOf(key)
  const made = new Map<string, Buffer>()
  return (v) => {
    let e = made.get(v)
    if (e === undefined) {
      if (made.size >= max) made.clear()
      e = encodeStrAttr(k, v)
      made.set(v, e)
    }
    raw(e)
  }
}

/**
 * `s`'s bytes at p when it is ASCII and short (a request id): a loop is cheaper than the two calls
 * into C++ (its length, then its bytes). Returns how many were written, or -1 (not ASCII: nothing
 * counts).
 */
function ascii(s: string, at: number): number {
  const n = s.length
  if (n > 64) return -1
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0x80) return -1
    b[at + i] = c
  }
  return n
}

/** a string attribute whose values do not repeat (request ids, conversations, error types) */
function strAttr(key: string): (v: string) => void {
  const k = keyOf(key)
  const kvFixed = k.length + 1 + 1 + 1 + 1
  return (v) => {
    // an ASCII text of at most 64 bytes: every length below fits one byte
    const at = p + 1 + 1 + k.length + 1 + 1 + 1 + 1
    const short = ascii(v, at)
    if (short >= 0) {
      b[p++] = tag(9, LEN)
      b[p++] = kvFixed + short
      raw(k)
      b[p++] = tag(2, LEN)
      b[p++] = 2 + short
      b[p++] = tag(1, LEN)
      b[p++] = short
      p += short
      return
    }
    strAttrField(k, v)
  }
}

const TWO_53 = 2 ** 53

/** a number attribute as the SDK types it: int_value (3) for an integer, double_value (4) otherwise */
function numAttr(key: string): (v: number) => void {
  const k = keyOf(key)
  return (v) => {
    b[p++] = tag(9, LEN)
    if (Number.isInteger(v) && v >= 0 && v < TWO_53) {
      const any = 1 + varintSize(v)
      b[p++] = k.length + 1 + 1 + any
      raw(k)
      b[p++] = tag(2, LEN)
      b[p++] = any
      b[p++] = tag(3, VARINT)
      varint(v)
    } else if (Number.isInteger(v) && Math.abs(v) < TWO_53) {
      // a negative int64 is ten bytes of two's complement
      const bits = BigInt.asUintN(64, BigInt(v))
      b[p++] = k.length + 1 + 1 + 11
      raw(k)
      b[p++] = tag(2, LEN)
      b[p++] = 11
      b[p++] = tag(3, VARINT)
      let x = bits
      for (let i = 0; i < 9; i++) {
        b[p++] = Number(x & 0x7fn) | 0x80
        x >>= 7n
      }
      b[p++] = Number(x)
    } else {
      // NaN and ±Infinity are doubles protobuf carries (JSON could not: json.ts writes null)
      b[p++] = k.length + 1 + 1 + 9
      raw(k)
      b[p++] = tag(2, LEN)
      b[p++] = 9
      b[p++] = tag(4, I64)
      b.writeDoubleLE(v, p)
      p += 8
    }
  }
}

const OPERATION = repeatedAttr('gen_ai.operation.name')
const PROVIDER = repeatedAttr('gen_ai.provider.name')
const REQUEST_MODEL = repeatedAttr('gen_ai.request.model')
const RESPONSE_MODEL = repeatedAttr('gen_ai.response.model')
const TEAM = repeatedAttr('agentmesh.team')
const USER = repeatedAttr('agentmesh.user')
const TOOL = repeatedAttr('agentmesh.tool')
const CACHE = repeatedAttr('agentmesh.cache')
const COST = numAttr('agentmesh.cost_usd')
const SAVED = numAttr('agentmesh.saved_usd')
const REQUEST_ID = strAttr('agentmesh.request_id')
const STATUS_CODE = numAttr('http.response.status_code')
const INPUT_TOKENS = numAttr('gen_ai.usage.input_tokens')
const OUTPUT_TOKENS = numAttr('gen_ai.usage.output_tokens')
const CACHE_READ_TOKENS = numAttr('gen_ai.usage.cache_read.input_tokens')
const CACHE_WRITE_TOKENS = numAttr('gen_ai.usage.cache_creation.input_tokens')
const SIMILARITY = numAttr('agentmesh.cache.similarity')
const CONVERSATION = strAttr('gen_ai.conversation.id')
const ERROR_TYPE = strAttr('error.type')

// ---- spans ----

// OTLP's span kinds (the API's + 1) and flags, as spans.ts says
const INTERNAL = 1
const SERVER = 2
const CLIENT = 3
const LOCAL_PARENT = 0x101
const REMOTE_PARENT = 0x301

/**
 * What only a span's operation, vendor and model decide, encoded once per model: its name and
 * kind fields, and its first attributes (operation, provider, request model).
 */
interface ModelBytes {
  clientHead: Buffer
  requestHead: Buffer
  first: Buffer
}

function nameAndKind(name: string, kind: number): void {
  strField(5, name)
  b[p++] = tag(6, VARINT)
  b[p++] = kind
}

const bytesOf = perModel((operation, vendor, model): ModelBytes => {
  // a model's name is the client's: room for any length
  const room = 1024 + 3 * (model.length + operation.length + vendor.length)
  return {
    clientHead: captured(() => nameAndKind(`${operation} ${model}`, CLIENT), room),
    requestHead: captured(() => nameAndKind(`${operation} ${model}`.trim(), SERVER), room),
    first: captured(() => {
      OPERATION(operation)
      PROVIDER(providerOf(vendor))
      REQUEST_MODEL(model)
    }, room),
  }
})

// Status { message = 2; code = 3 }: unset (code 0, written as the SDK writes it)
const STATUS_UNSET = Buffer.from([tag(15, LEN), 2, tag(3, VARINT), 0])

/** a failed request's status: code 2 (error), with the error's type as its message when known */
function errorStatusField(message: string | undefined): void {
  if (message === undefined) {
    b[p++] = tag(15, LEN)
    b[p++] = 2
    b[p++] = tag(3, VARINT)
    b[p++] = 2
    return
  }
  const n = Buffer.byteLength(message)
  b[p++] = tag(15, LEN)
  varint(1 + varintSize(n) + n + 2)
  b[p++] = tag(2, LEN)
  varint(n)
  p += b.write(message, p)
  b[p++] = tag(3, VARINT)
  b[p++] = 2
}

/** flags, field 16 (fixed32): its tag is two bytes */
function flagsField(flags: number): void {
  b[p++] = 0x85
  b[p++] = 0x01
  b[p++] = flags
  b[p++] = flags >>> 8
  b[p++] = 0
  b[p++] = 0
}

/**
 * A span's framing in ScopeSpans (field 2): its tag and length go before it, but the length is
 * known only after. Two bytes are kept for it (spans are 128 bytes to 16 KB); other sizes move the
 * span by a byte or two.
 */
function openSpan(): number {
  b[p] = tag(2, LEN)
  p += 3
  return p
}

function closeSpan(at: number): void {
  const n = p - at
  const size = varintSize(n)
  if (size !== 2) {
    ensure(size)
    b.copyWithin(at - 2 + size, at, p)
    p += size - 2
  }
  const save = p
  p = at - 2
  varint(n)
  p = save
}

function cacheLookupSpan(from: number, to: number, status: string): void {
  const at = openSpan()
  idBytesField(1, TRACE)
  idField(2, randomHex(8))
  idBytesField(4, SELF)
  nameAndKind('agentmesh.cache_lookup', INTERNAL)
  nanosField(7, from)
  nanosField(8, to)
  CACHE(status)
  raw(STATUS_UNSET)
  flagsField(LOCAL_PARENT)
  closeSpan(at)
}

function upstreamSpan(spanId: string, t: ModelBytes, from: number, to: number, status: number): void {
  const at = openSpan()
  idBytesField(1, TRACE)
  idField(2, spanId)
  idBytesField(4, SELF)
  raw(t.clientHead)
  nanosField(7, from)
  nanosField(8, to)
  raw(t.first)
  STATUS_CODE(status)
  raw(STATUS_UNSET)
  flagsField(LOCAL_PARENT)
  closeSpan(at)
}

/** the request span's attributes after its first three, in json.ts's order (the SDK's span's) */
function requestAttributes(ctx: MeshContext, error: string | undefined): void {
  const u = ctx.usage
  TEAM(ctx.identity.team)
  USER(ctx.identity.user)
  TOOL(ctx.identity.tool)
  CACHE(ctx.cache.status)
  COST(ctx.cost.usd)
  SAVED(ctx.cost.savedUsd)
  REQUEST_ID(ctx.id)
  STATUS_CODE(ctx.status ?? 0)
  if (ctx.answer?.model) RESPONSE_MODEL(ctx.answer.model)
  if (!isCacheHit(ctx) && !u.estimated) {
    INPUT_TOKENS(u.inputTokens)
    OUTPUT_TOKENS(u.outputTokens)
    if (u.cacheReadTokens) CACHE_READ_TOKENS(u.cacheReadTokens)
    if (u.cacheWriteTokens) CACHE_WRITE_TOKENS(u.cacheWriteTokens)
  }
  if (ctx.cache.similarity !== undefined) SIMILARITY(ctx.cache.similarity)
  const conversation = conversationOf(ctx)
  if (conversation) CONVERSATION(conversation)
  if (error !== undefined) ERROR_TYPE(error)
}

/** what a request's spans may take beyond their fixed parts: 3 bytes a UTF-16 unit of its texts */
function textRoom(ctx: MeshContext): number {
  const i = ctx.identity
  return (
    3 *
    (i.team.length +
      i.user.length +
      i.tool.length +
      ctx.id.length +
      (ctx.answer?.model?.length ?? 0) +
      (ctx.error?.type?.length ?? 0) * 2 +
      256)
  )
}

/**
 * The request's spans, children first (as json.ts), to `out` as their ScopeSpans entries (each
 * with its tag and length); nothing when the client's trace is not sampled.
 */
export function emitProtoSpans(out: (spans: Uint8Array, count: number) => void, ctx: MeshContext, marks: Marks): void {
  const parent = marks.parent
  if (parent && !(parent.traceFlags & 1)) return
  const operation = operationOf(ctx)
  const vendor = ctx.route.vendor
  const error = errorOf(ctx)
  decodeId(parent?.traceId ?? marks.upstream?.traceId ?? randomHex(16), TRACE)
  decodeId(randomHex(8), SELF)
  // as the SDK, an end before the start is a zero-length span
  const { start, routeAt, cacheStart } = marks
  const end = Math.max(marks.end, start)
  const request = bytesOf(operation, vendor, ctx.prompt?.model ?? '')
  p = 0
  ensure(2048 + request.requestHead.length + request.first.length + textRoom(ctx))
  let count = 1
  if (cacheStart !== undefined) {
    const to = marks.cacheEnd ?? routeAt ?? marks.end
    cacheLookupSpan(cacheStart, Math.max(to, cacheStart), ctx.cache.status)
    count++
  }
  const up = ctx.upstream
  if (up && routeAt !== undefined) {
    const t = bytesOf(operation, vendor, ctx.route.model)
    ensure(t.clientHead.length + t.first.length + 64)
    const to = Math.max(marks.end, routeAt)
    upstreamSpan(marks.upstream?.spanId ?? randomHex(8), t, routeAt, to, up.status)
    count++
  }
  const at = openSpan()
  idBytesField(1, TRACE)
  idBytesField(2, SELF)
  if (parent) idField(4, parent.spanId)
  raw(request.requestHead)
  nanosField(7, start)
  nanosField(8, end)
  raw(request.first)
  requestAttributes(ctx, error)
  if (error === undefined) raw(STATUS_UNSET)
  else errorStatusField(ctx.error?.type)
  flagsField(parent ? REMOTE_PARENT : LOCAL_PARENT)
  closeSpan(at)
  out(b.subarray(0, p), count)
}

// ---- the batch's envelope ----

/**
 * ExportTraceServiceRequest { ResourceSpans resource_spans = 1 } around a batch's spans:
 * ResourceSpans { Resource resource = 1; ScopeSpans scope_spans = 2 }, ScopeSpans
 * { InstrumentationScope scope = 1; Span spans = 2 }. The lengths depend on the spans' bytes, so it
 * is written when the batch is sealed, just before them (the body keeps `reserve` bytes for it).
 */
export function protoFraming(serviceName: string): Framing {
  const resource = captured(
    () => {
      // Resource { attributes = 1 }: service.name; the attribute's KeyValue re-tagged as field 1
      const attr = encodeStrAttr(keyOf('service.name'), serviceName)
      attr[0] = tag(1, LEN)
      b[p++] = tag(1, LEN)
      varint(attr.length)
      raw(attr)
    },
    4096 + 3 * serviceName.length,
  )
  const scope = captured(() => {
    b[p++] = tag(1, LEN)
    b[p++] = 11
    strField(1, 'agentmesh')
  }, 16)
  return {
    reserve: resource.length + scope.length + 3 * 6,
    separator: undefined,
    seal(body, spansStart, spansEnd) {
      const scopeSpans = scope.length + (spansEnd - spansStart)
      const resourceSpans = resource.length + 1 + varintSize(scopeSpans) + scopeSpans
      const start =
        spansStart - (1 + varintSize(resourceSpans) + resource.length + 1 + varintSize(scopeSpans) + scope.length)
      const save = [b, p] as const
      b = body
      p = start
      b[p++] = tag(1, LEN)
      varint(resourceSpans)
      raw(resource)
      b[p++] = tag(2, LEN)
      varint(scopeSpans)
      raw(scope)
      ;[b, p] = save
      return { start, end: spansEnd }
    },
  }
}
