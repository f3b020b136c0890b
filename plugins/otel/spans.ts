// What a request's spans are, whichever encoding writes them (json.ts for OTLP/JSON, proto.ts for
// OTLP/protobuf): the request span (GenAI semantic conventions plus agentmesh.*), a child for the
// cache lookup and a child for the upstream call, written after the answer went out with the
// times the hooks noted. Attribute names as in the GenAI conventions (gen_ai.*, still
// "development" there, so written out rather than imported from the incubating set). Here: the
// trace context (the client's traceparent, the ids chosen before the vendor call) and the
// decisions both encodings share.
//
// Each span is known whole only after the request ended, so none goes through a Tracer (whose
// live-span machinery was a third of the plugin's cost) nor through the SDK's span objects and
// exporter (whose serializer was 40% of what was left): each is written straight to its wire
// format. What is exported is what the SDK exported: the same fields, the parent-based sampler's
// decision (an unsampled client trace: no span of ours), the ids the vendor was told in its
// traceparent.
import { randomBytes } from 'node:crypto'
import type { MeshContext } from '../../core/types.ts'

/** a W3C trace context: the client's traceparent */
export interface TraceParent {
  traceId: string
  spanId: string
  /** the sampled bit */
  traceFlags: number
}

/**
 * performance.now() values the hooks noted on the request; `upstream`: the trace and span ids
 * chosen before the vendor call, sent to the vendor as its traceparent and given to the spans
 */
export interface Marks {
  start: number
  cacheStart?: number
  cacheEnd?: number
  routeAt?: number
  end: number
  /** the client's traceparent */
  parent?: TraceParent
  upstream?: { traceId: string; spanId: string }
}

// random ids sliced from a pooled hex text: one randomBytes and one hex conversion per ~1,000
// requests (32 random bytes each) instead of a hex conversion (a call into C++) per id. A fill
// costs ~6 µs plus the bytes: 4 KB pools were 55 ns a request, 32 KB ones are ~14
const POOL_BYTES = 32 * 1024
let pool = ''
let poolAt = 0
const ZERO_TRACE = '0'.repeat(32)
const ZERO_SPAN = '0'.repeat(16)

/** `bytes` random bytes as hex; never all zeros (an invalid W3C id) */
export function randomHex(bytes: 8 | 16): string {
  const chars = bytes * 2
  if (poolAt + chars > pool.length) {
    pool = randomBytes(POOL_BYTES).toString('hex')
    poolAt = 0
  }
  const id = pool.slice(poolAt, poolAt + chars)
  poolAt += chars
  return id === ZERO_TRACE || id === ZERO_SPAN ? randomHex(bytes) : id
}

/**
 * The ids of the upstream call's span, chosen before the call: the client's trace (when it sent a
 * sampled traceparent) or a new one. undefined when the client's trace is not sampled: then no
 * span of ours is exported, and the vendor gets the client's traceparent as it came.
 */
export function chooseUpstreamIds(parent: TraceParent | undefined): { traceId: string; spanId: string } | undefined {
  if (parent && !(parent.traceFlags & 1)) return undefined
  return { traceId: parent ? parent.traceId : randomHex(16), spanId: randomHex(8) }
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** the client's W3C traceparent as the parent of the request span; malformed or all-zero ids are ignored */
export function parentOf(header: string | null): TraceParent | undefined {
  const m = header ? TRACEPARENT.exec(header.trim()) : null
  if (!m || m[1] === ZERO_TRACE || m[2] === ZERO_SPAN) return undefined
  return { traceId: m[1]!, spanId: m[2]!, traceFlags: Number.parseInt(m[3]!, 16) & 1 }
}

const PROVIDERS: Record<string, string> = {
  openai: 'openai',
  anthropic: 'anthropic',
  google: 'gcp.gemini',
  demo: 'agentmesh.demo',
}

/** gen_ai.provider.name of a vendor */
export const providerOf = (vendor: string): string => PROVIDERS[vendor] ?? vendor

/** gen_ai.operation.name */
export const operationOf = (ctx: MeshContext): string => (ctx.operation === 'embeddings' ? 'embeddings' : 'chat')

/** error.type of a request that failed (an HTTP error status, or aborted); undefined when it did not */
export function errorOf(ctx: MeshContext): string | undefined {
  const failed = (ctx.status ?? 0) >= 400 || ctx.aborted
  return failed ? (ctx.error?.type ?? (ctx.aborted ? 'aborted' : String(ctx.status))) : undefined
}

/** an answer from a cache: its tokens were not spent, so no gen_ai.usage.* */
export const isCacheHit = (ctx: MeshContext): boolean => ctx.cache.status === 'exact' || ctx.cache.status === 'semantic'

/** gen_ai.conversation.id: the client's session header, at most 128 characters */
export function conversationOf(ctx: MeshContext): string | undefined {
  const c = ctx.request.headers.get('x-agentmesh-session') ?? ctx.request.headers.get('x-session-id')
  return c ? c.slice(0, 128) : undefined
}

// models are the client's to name: past this many per operation and vendor, a cache starts over
const MAX_MODELS = 1000

/**
 * What only a span's operation, vendor and model decide (its name, its first attributes), made
 * once by `make` and kept: by operation, then vendor, then model, so that no key text is built
 * and hashed per request.
 */
export function perModel<T>(make: (operation: string, vendor: string, model: string) => T) {
  const byOperation = new Map<string, Map<string, Map<string, T>>>()
  return (operation: string, vendor: string, model: string): T => {
    let byVendor = byOperation.get(operation)
    if (byVendor === undefined) byOperation.set(operation, (byVendor = new Map()))
    let byModel = byVendor.get(vendor)
    if (byModel === undefined) byVendor.set(vendor, (byModel = new Map()))
    let t = byModel.get(model)
    if (t === undefined) {
      if (byModel.size >= MAX_MODELS) byModel.clear()
      t = make(operation, vendor, model)
      byModel.set(model, t)
    }
    return t
  }
}
