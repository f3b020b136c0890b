// The two GenAI client histograms, aggregated here and handed to the official OTLPMetricExporter as
// the SDK's ResourceMetrics on each interval, instead of recorded through @opentelemetry/sdk-metrics'
// instruments: the SDK hashes the attribute object on every record() (sorting its keys and
// stringifying them) to find the series, about 18% of the plugin's added CPU in bench:proxy (3
// records per request). Here a request finds its series through Maps nested by its attribute values
// (no key to build and hash), and each series' attribute object is made once. What is exported is what the SDK
// exported with its defaults: explicit-bucket histograms with the default boundaries, min and max,
// cumulative temporality, each series starting when it was first recorded, the times in
// milliseconds; past the cardinality limit, one series marked otel.metric.overflow.
import { type Attributes, ValueType } from '@opentelemetry/api'
import type { Resource } from '@opentelemetry/resources'
import {
  AggregationTemporality,
  DataPointType,
  type DataPoint,
  type Histogram,
  type MetricData,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics'
import type { MeshContext } from '../../core/types.ts'

// the SDK's default explicit bucket boundaries (no advice was given to its instruments)
const BOUNDS = [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000]
// attribute sets kept: the request model is the client's to name, so beyond this every new set
// folds into one overflow series (the SDK's default limit is 2000 series per instrument: 2 per set)
const MAX_SETS = 1000

class Hist {
  readonly counts = new Array<number>(BOUNDS.length + 1).fill(0)
  count = 0
  sum = 0
  min = Number.POSITIVE_INFINITY
  max = Number.NEGATIVE_INFINITY
  constructor(readonly start: number) {}

  record(v: number) {
    // as the SDK: a histogram takes no negative (or NaN) value
    if (!(v >= 0)) return
    let i = 0
    while (i < BOUNDS.length && v > BOUNDS[i]!) i++
    this.counts[i]!++
    this.count++
    this.sum += v
    if (v < this.min) this.min = v
    if (v > this.max) this.max = v
  }

  point(attributes: Attributes, now: [number, number]): DataPoint<Histogram> {
    return {
      attributes,
      startTime: hrTime(this.start),
      endTime: now,
      value: {
        buckets: { boundaries: BOUNDS, counts: [...this.counts] },
        count: this.count,
        sum: this.sum,
        min: this.min,
        max: this.max,
      },
    }
  }
}

/** an epoch millisecond time (Date.now()) as the SDK's [seconds, nanoseconds] */
const hrTime = (ms: number): [number, number] => [Math.trunc(ms / 1000), (ms % 1000) * 1e6]

/** one attribute set's series: its attributes, and each token type's with gen_ai.token.type */
interface Series {
  attrs: Attributes
  inputAttrs?: Attributes
  outputAttrs?: Attributes
  duration?: Hist
  input?: Hist
  output?: Hist
}

/** series by operation, provider, requested model, answering model, then error type ('' when none):
 *  each level one lookup of a string the request already holds, instead of a joined key to hash */
type Level = Map<string, Level | Series>

function level(parent: Level, key: string): Level {
  let l = parent.get(key) as Level | undefined
  if (l === undefined) {
    l = new Map()
    parent.set(key, l)
  }
  return l
}

export class GenAiHistograms {
  readonly #tree: Level = new Map()
  readonly #sets: Series[] = []
  #overflow: Series | undefined

  constructor(
    private readonly resource: Resource,
    private readonly scope = { name: 'agentmesh', version: '' },
  ) {}

  /** a new attribute set's series (the overflow one past the limit); `type`: its error.type */
  #made(parent: Level, key: string, a: Attributes, type: string | undefined): Series {
    if (this.#sets.length >= MAX_SETS) {
      this.#overflow ??= { attrs: { 'otel.metric.overflow': true } }
      return this.#overflow
    }
    const s: Series = { attrs: type === undefined ? a : { ...a, 'error.type': type } }
    parent.set(key, s)
    this.#sets.push(s)
    return s
  }

  /** one finished request: its duration, and the tokens the vendor billed */
  record(ctx: MeshContext, seconds: number): void {
    const operation = ctx.operation === 'embeddings' ? 'embeddings' : 'chat'
    const vendor = ctx.route.vendor
    const requested = ctx.prompt?.model ?? ''
    const answered = ctx.answer?.model
    const byType = level(level(level(level(this.#tree, operation), vendor), requested), answered ?? '')
    // the attribute object is made only for a new series (no closure per request)
    const s =
      (byType.get('') as Series | undefined) ??
      this.#made(byType, '', attributes(operation, vendor, requested, answered), undefined)
    if ((ctx.status ?? 0) >= 400) {
      const type = ctx.error?.type || String(ctx.status)
      const e =
        (byType.get(type) as Series | undefined) ??
        this.#made(byType, type, attributes(operation, vendor, requested, answered), type)
      ;(e.duration ??= new Hist(Date.now())).record(seconds)
    } else (s.duration ??= new Hist(Date.now())).record(seconds)
    const hit = ctx.cache.status === 'exact' || ctx.cache.status === 'semantic'
    if (!hit && !ctx.usage.estimated) {
      // a series' start time is read once, when it is made (a clock read per request was 3% of this)
      ;(s.input ??= new Hist(Date.now())).record(ctx.usage.inputTokens)
      // the overflow series has no token type (as the SDK's: only otel.metric.overflow)
      ;(s === this.#overflow ? s.input : (s.output ??= new Hist(Date.now()))).record(ctx.usage.outputTokens)
    }
  }

  /** the SDK's export data for the two metrics, undefined when nothing was recorded yet */
  collect(nowMs: number): ResourceMetrics | undefined {
    const now = hrTime(nowMs)
    const tokens: DataPoint<Histogram>[] = []
    const durations: DataPoint<Histogram>[] = []
    for (const s of this.#sets) {
      if (s.input) tokens.push(s.input.point((s.inputAttrs ??= { ...s.attrs, 'gen_ai.token.type': 'input' }), now))
      if (s.output) tokens.push(s.output.point((s.outputAttrs ??= { ...s.attrs, 'gen_ai.token.type': 'output' }), now))
      if (s.duration) durations.push(s.duration.point(s.attrs, now))
    }
    // the overflow series has no token type (as the SDK's: only otel.metric.overflow)
    const o = this.#overflow
    if (o?.input) tokens.push(o.input.point(o.attrs, now))
    if (o?.duration) durations.push(o.duration.point(o.attrs, now))
    const metrics: MetricData[] = []
    if (tokens.length) metrics.push(histogram(TOKENS, tokens))
    if (durations.length) metrics.push(histogram(DURATION, durations))
    if (!metrics.length) return undefined
    return { resource: this.resource, scopeMetrics: [{ scope: this.scope, metrics }] }
  }
}

function attributes(operation: string, vendor: string, requested: string, answered: string | undefined): Attributes {
  const a: Attributes = {
    'gen_ai.operation.name': operation,
    'gen_ai.provider.name': vendor,
    'gen_ai.request.model': requested,
  }
  if (answered) a['gen_ai.response.model'] = answered
  return a
}

const TOKENS = {
  name: 'gen_ai.client.token.usage',
  description: 'Tokens used, by gen_ai.token.type (input, output)',
  unit: '{token}',
  valueType: ValueType.INT,
}
const DURATION = {
  name: 'gen_ai.client.operation.duration',
  description: 'GenAI operation duration',
  unit: 's',
  valueType: ValueType.DOUBLE,
}

function histogram(descriptor: typeof TOKENS, dataPoints: DataPoint<Histogram>[]): MetricData {
  return {
    descriptor,
    aggregationTemporality: AggregationTemporality.CUMULATIVE,
    dataPointType: DataPointType.HISTOGRAM,
    dataPoints,
  }
}
