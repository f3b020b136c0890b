// The two GenAI client histograms, aggregated here and exported as OTLP/JSON on the interval,
// instead of through @opentelemetry/sdk-metrics: the SDK hashes the attribute object on every
// record() (sorting its keys and stringifying them) to find the series, about 18% of the plugin's
// added CPU in bench:proxy (3 records per request). Here a request finds its series with one Map
// lookup by a key it builds from four strings, and each series' attributes are encoded once.
// What is exported is what the SDK exported with its defaults: explicit-bucket histograms with the
// default boundaries, min and max, cumulative temporality, each series starting when it was first
// recorded, the times in milliseconds; past the cardinality limit, one series marked
// otel.metric.overflow.
import type { MeshContext } from '../../core/types.ts'
import { msNanos, str } from './otlp.ts'

// the SDK's default explicit bucket boundaries (no advice was given to its instruments)
const BOUNDS = [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000]
const BOUNDS_JSON = `[${BOUNDS.join(',')}]`
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

  point(attributes: string, now: string): string {
    return `{"attributes":[${attributes}],"bucketCounts":[${this.counts.join(',')}],"explicitBounds":${BOUNDS_JSON},"count":${this.count},"sum":${this.sum},"min":${this.min},"max":${this.max},"startTimeUnixNano":"${msNanos(this.start)}","timeUnixNano":"${now}"}`
  }
}

/** one attribute set's series: its encoded attributes, with and without each token type */
interface Series {
  attrs: string
  duration?: Hist
  input?: Hist
  output?: Hist
}

export class GenAiHistograms {
  readonly #sets = new Map<string, Series>()
  #overflow: Series | undefined

  #series(key: string, attrs: () => string): Series {
    let s = this.#sets.get(key)
    if (s !== undefined) return s
    if (this.#sets.size >= MAX_SETS) {
      this.#overflow ??= { attrs: `{"key":"otel.metric.overflow","value":{"boolValue":true}}` }
      return this.#overflow
    }
    s = { attrs: attrs() }
    this.#sets.set(key, s)
    return s
  }

  /** one finished request: its duration, and the tokens the vendor billed */
  record(ctx: MeshContext, seconds: number): void {
    const operation = ctx.operation === 'embeddings' ? 'embeddings' : 'chat'
    const vendor = ctx.route.vendor
    const requested = ctx.prompt?.model ?? ''
    const answered = ctx.answer?.model
    const base = `${operation}\u0000${vendor}\u0000${requested}\u0000${answered ?? ''}`
    const attrs = () =>
      `${str('gen_ai.operation.name', operation)},${str('gen_ai.provider.name', vendor)},${str('gen_ai.request.model', requested)}${answered ? `,${str('gen_ai.response.model', answered)}` : ''}`
    const now = Date.now()
    const failed = (ctx.status ?? 0) >= 400
    const s = this.#series(base, attrs)
    if (failed) {
      const type = ctx.error?.type ?? String(ctx.status)
      const e = this.#series(`${base}\u0000${type}`, () => `${attrs()},${str('error.type', type)}`)
      ;(e.duration ??= new Hist(now)).record(seconds)
    } else (s.duration ??= new Hist(now)).record(seconds)
    const hit = ctx.cache.status === 'exact' || ctx.cache.status === 'semantic'
    if (!hit && !ctx.usage.estimated) {
      ;(s.input ??= new Hist(now)).record(ctx.usage.inputTokens)
      // the overflow series has no token type (as the SDK's: only otel.metric.overflow)
      ;(s === this.#overflow ? s.input : (s.output ??= new Hist(now))).record(ctx.usage.outputTokens)
    }
  }

  /** the OTLP/JSON `metrics` array's items, '' when nothing was recorded yet */
  encode(nowMs: number): string {
    const now = msNanos(nowMs)
    const tokens: string[] = []
    const durations: string[] = []
    const all = this.#overflow ? [...this.#sets.values(), this.#overflow] : this.#sets.values()
    for (const s of all) {
      if (s === this.#overflow) {
        if (s.input) tokens.push(s.input.point(s.attrs, now))
        if (s.duration) durations.push(s.duration.point(s.attrs, now))
        continue
      }
      if (s.input) tokens.push(s.input.point(`${s.attrs},${str('gen_ai.token.type', 'input')}`, now))
      if (s.output) tokens.push(s.output.point(`${s.attrs},${str('gen_ai.token.type', 'output')}`, now))
      if (s.duration) durations.push(s.duration.point(s.attrs, now))
    }
    const out: string[] = []
    if (tokens.length)
      out.push(
        `{"name":"gen_ai.client.token.usage","description":"Tokens used, by gen_ai.token.type (input, output)","unit":"{token}","histogram":{"aggregationTemporality":2,"dataPoints":[${tokens.join(',')}]}}`,
      )
    if (durations.length)
      out.push(
        `{"name":"gen_ai.client.operation.duration","description":"GenAI operation duration","unit":"s","histogram":{"aggregationTemporality":2,"dataPoints":[${durations.join(',')}]}}`,
      )
    return out.join(',')
  }
}
