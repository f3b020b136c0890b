// The Prometheus metrics and how one finished request adds to them. This runs in afterResponse on
// every request, so it adds to plain per-series records (found by its label values, level by level) and
// prom-client reads them at scrape time through `collect()`: prom-client's own inc() hashes and
// validates the labels on every call, several times per request, about 20 µs in all. It reads the
// context only: no event listener (the core would then build every event object), no storage.
import { Counter, Histogram, type Registry } from 'prom-client'
import type { MeshContext } from '../../core/types.ts'
import type { LabelSets } from './labels.ts'

const WHO = ['team', 'user', 'tool', 'vendor', 'model'] as const
type Who = Record<(typeof WHO)[number], string>
// seconds: a cache hit is milliseconds, a long generation a minute or more
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
const OVERHEAD_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]
const TOKEN_TYPES = ['input', 'output', 'cache_read', 'cache_write'] as const

export interface Layers {
  exact: boolean
  semantic: boolean
}

/** one team/user/tool/vendor/model combination's running totals */
interface Series {
  who: Who
  byStatus: Map<string, number>
  tokens: [number, number, number, number]
  usd: number
  savedUsd: number
  /** its vendor and model's latency histograms, found once (the series' labels name both) */
  upstream?: Hist
  ttft?: Hist
}

/** a histogram kept by hand: counts per bucket (cumulated at scrape), sum and count */
interface Hist {
  labels: Record<string, string>
  counts: number[]
  sum: number
  count: number
}

/** the histogram of `key`, made with `labels` (callers evaluate this only for a new key: nothing made per request) */
function histOf(map: Map<string, Hist>, key: string, labels: Record<string, string>, buckets: number[]): Hist {
  let h = map.get(key)
  if (h === undefined) {
    h = { labels, counts: new Array(buckets.length).fill(0), sum: 0, count: 0 }
    map.set(key, h)
  }
  return h
}

function add(h: Hist, buckets: number[], v: number) {
  let i = 0
  while (i < buckets.length && v > buckets[i]!) i++
  if (i < buckets.length) h.counts[i]!++
  h.sum += v
  h.count++
}

/** series by team, then user, tool, vendor and model: each level looks up a label value whose hash
 *  LabelSets.value() already computed, where one joined key was a new string to hash per request */
type Level = Map<string, Level | Series>

function level(parent: Level, key: string): Level {
  let l = parent.get(key) as Level | undefined
  if (l === undefined) {
    l = new Map()
    parent.set(key, l)
  }
  return l
}

export function createMetrics(registry: Registry) {
  const series: Series[] = []
  const byWho: Level = new Map()
  // lookups by layer and outcome: fixed counters (a request bumps one or two), the zeros not exported
  const cache: Record<CacheCount, number> = {
    'exact:hit': 0,
    'exact:miss': 0,
    'exact:bypass': 0,
    'semantic:hit': 0,
    'semantic:miss': 0,
    'semantic:bypass': 0,
    'vendor:hit': 0,
    'vendor:miss': 0,
  }
  // each HTTP status's label, decided once (a value admitted stays admitted, `other` stays other)
  const statusLabels: string[] = []
  const quota = new Map<string, [number, number]>() // team -> [warn, block]
  const hists = { upstream: new Map<string, Hist>(), ttft: new Map<string, Hist>(), overhead: new Map<string, Hist>() }
  const registers = [registry]
  const counter = (name: string, help: string, labelNames: readonly string[], fill: (c: Counter) => void) =>
    new Counter({
      name,
      help,
      labelNames: [...labelNames],
      registers,
      collect() {
        this.reset()
        fill(this)
      },
    })
  counter(
    'agentmesh_requests_total',
    'LLM requests answered, by who, vendor, model and HTTP status (aborted: the client went away)',
    [...WHO, 'status'],
    (c) => {
      for (const s of series) for (const [status, n] of s.byStatus) c.inc({ ...s.who, status }, n)
    },
  )
  counter(
    'agentmesh_tokens_total',
    'Tokens billed by the vendor, by type (input, output, cache_read, cache_write); cache hits bill none',
    [...WHO, 'type'],
    (c) => {
      for (const s of series)
        for (let i = 0; i < 4; i++) if (s.tokens[i]) c.inc({ ...s.who, type: TOKEN_TYPES[i]! }, s.tokens[i])
    },
  )
  counter('agentmesh_cost_usd_total', 'USD spent at the vendor, priced from the model that answered', WHO, (c) => {
    for (const s of series) if (s.usd) c.inc(s.who, s.usd)
  })
  counter('agentmesh_cost_saved_usd_total', 'USD not spent because a cache answered', WHO, (c) => {
    for (const s of series) if (s.savedUsd) c.inc(s.who, s.savedUsd)
  })
  counter(
    'agentmesh_cache_lookups_total',
    'Cache lookups by layer (exact, semantic, vendor prompt cache) and outcome (hit, miss, bypass)',
    ['layer', 'outcome'],
    (c) => {
      for (const [k, n] of Object.entries(cache)) {
        if (!n) continue
        const [layer, outcome] = k.split(':')
        c.inc({ layer: layer!, outcome: outcome! }, n)
      }
    },
  )
  counter('agentmesh_quota_warn_total', 'Requests answered past a quota warning percentage', ['team'], (c) => {
    for (const [team, q] of quota) if (q[0]) c.inc({ team }, q[0])
  })
  counter('agentmesh_quota_block_total', 'Requests refused by a quota (429)', ['team'], (c) => {
    for (const [team, q] of quota) if (q[1]) c.inc({ team }, q[1])
  })
  const histogram = (name: string, help: string, labelNames: string[], buckets: number[], from: Map<string, Hist>) =>
    new Histogram({
      name,
      help,
      labelNames,
      buckets,
      registers,
      collect() {
        fillHistogram(this, from, buckets)
      },
    })
  histogram(
    'agentmesh_upstream_latency_seconds',
    'Time from the vendor call to its response headers',
    ['vendor', 'model'],
    LATENCY_BUCKETS,
    hists.upstream,
  )
  histogram(
    'agentmesh_time_to_first_token_seconds',
    'Streamed answers: time from the vendor call to its first streamed bytes (the response head of an SSE answer)',
    ['vendor', 'model'],
    LATENCY_BUCKETS,
    hists.ttft,
  )
  histogram(
    'agentmesh_proxy_overhead_seconds',
    'Non-streamed answers: time in the proxy itself (arrival to answer, minus the wait for the vendor)',
    ['cache'],
    OVERHEAD_BUCKETS,
    hists.overhead,
  )
  return { series, byWho, cache, statusLabels, quota, hists }
}

/**
 * prom-client has no call that sets a histogram's counts, and replaying them one observe() each
 * would make a scrape as slow as the traffic was large. So the scrape writes its internal entries
 * (zero() makes one; the key is its label hash, `name:value,` in sorted label order), which
 * prom-client 15 (pinned) then renders, cumulating the buckets itself.
 */
function fillHistogram(h: Histogram, from: Map<string, Hist>, buckets: number[]) {
  h.reset()
  const internal = h as unknown as {
    hashMap: Record<string, { bucketValues: Record<number, number>; sum: number; count: number }>
    sortedLabelNames: string[]
  }
  for (const x of from.values()) {
    h.zero(x.labels)
    const entry = internal.hashMap[internal.sortedLabelNames.map((k) => `${k}:${x.labels[k]},`).join('')]
    if (!entry) continue
    for (let i = 0; i < buckets.length; i++) entry.bucketValues[buckets[i]!] = x.counts[i]!
    entry.sum = x.sum
    entry.count = x.count
  }
}

export type Metrics = ReturnType<typeof createMetrics>

const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1)

type CacheCount = `${'exact' | 'semantic'}:${'hit' | 'miss' | 'bypass'}` | `vendor:${'hit' | 'miss'}`

/** the status label of a request: `aborted`, or its HTTP status (bounded as every label) */
function statusLabel(m: Metrics, labels: LabelSets, ctx: MeshContext): string {
  if (ctx.aborted) return labels.value('status', 'aborted')
  const code = ctx.status ?? 0
  // an HTTP status is an integer below 1000: its label found by index, no text made per request
  if (!(Number.isInteger(code) && code >= 0 && code < 1000)) return labels.value('status', String(code))
  return (m.statusLabels[code] ??= labels.value('status', String(code)))
}

/** the series at these values, when each level has them as keys (undefined is never a key) */
function seriesOf(root: Level, a: string, b: string, c: string, d: string, e: string | undefined): Series | undefined {
  const l1 = root.get(a) as Level | undefined
  const l2 = l1 && (l1.get(b) as Level | undefined)
  const l3 = l2 && (l2.get(c) as Level | undefined)
  const l4 = l3 && (l3.get(d) as Level | undefined)
  return l4 && e !== undefined ? (l4.get(e) as Series | undefined) : undefined
}

/** the series of these raw values through the label sets (bounded, `other` past a limit), made if new */
function newSeries(
  m: Metrics,
  labels: LabelSets,
  rawTeam: string,
  rawUser: string,
  rawTool: string,
  vendorName: string,
  modelName: string | undefined,
): Series {
  const team = labels.value('team', rawTeam)
  const user = labels.value('user', rawUser)
  const tool = labels.value('tool', rawTool)
  const vendor = vendorName === 'none' ? 'none' : labels.value('vendor', vendorName)
  const model = labels.value('model', modelName)
  const byModel = level(level(level(level(m.byWho, team), user), tool), vendor)
  let s = byModel.get(model) as Series | undefined
  if (s === undefined) {
    s = { who: { team, user, tool, vendor, model }, byStatus: new Map(), tokens: [0, 0, 0, 0], usd: 0, savedUsd: 0 }
    byModel.set(model, s)
    m.series.push(s)
  }
  return s
}

/** Add one finished request to the metrics. */
export function recordRequest(m: Metrics, labels: LabelSets, layers: Layers, ctx: MeshContext, now: number): void {
  const id = ctx.identity
  // refused before any vendor answered: no vendor is named, as in X-AgentMesh-Vendor
  const vendorName = ctx.response?.kind === 'error' && !ctx.upstream ? 'none' : ctx.route.vendor
  const modelName = ctx.answer?.model || ctx.route.model || ctx.prompt?.model
  // values seen before are their own labels (admitted for good): the tree answers with no label
  // check; a new, folded, cut or missing value takes the label sets' way
  const s =
    seriesOf(m.byWho, id.team, id.user, id.tool, vendorName, modelName) ??
    newSeries(m, labels, id.team, id.user, id.tool, vendorName, modelName)
  const { team, vendor, model } = s.who
  bump(s.byStatus, statusLabel(m, labels, ctx))
  const u = ctx.usage
  s.tokens[0] += u.inputTokens
  s.tokens[1] += u.outputTokens
  s.tokens[2] += u.cacheReadTokens
  s.tokens[3] += u.cacheWriteTokens
  s.usd += ctx.cost.usd
  s.savedUsd += ctx.cost.savedUsd
  recordCache(m, layers, ctx)
  const warned = ctx.headers['X-AgentMesh-Quota-Warn'] !== undefined
  const blocked = ctx.response?.kind === 'error' && ctx.response.type === 'quota_exceeded'
  if (warned || blocked) {
    const q = m.quota.get(team) ?? [0, 0]
    if (warned) q[0]++
    if (blocked) q[1]++
    m.quota.set(team, q)
  }
  const up = ctx.upstream
  if (up) {
    // found once per series (its labels name the vendor and model)
    add(
      (s.upstream ??= histOf(m.hists.upstream, `${vendor}\u0000${model}`, { vendor, model }, LATENCY_BUCKETS)),
      LATENCY_BUCKETS,
      up.latencyMs / 1000,
    )
    if (ctx.prompt.stream)
      add(
        (s.ttft ??= histOf(m.hists.ttft, `${vendor}\u0000${model}`, { vendor, model }, LATENCY_BUCKETS)),
        LATENCY_BUCKETS,
        up.latencyMs / 1000,
      )
  }
  if (!ctx.prompt?.stream) {
    const cache = ctx.cache.status
    const h = m.hists.overhead.get(cache) ?? histOf(m.hists.overhead, cache, { cache }, OVERHEAD_BUCKETS)
    add(h, OVERHEAD_BUCKETS, Math.max(0, now - ctx.startedAt - (up?.latencyMs ?? 0)) / 1000)
  }
}

/**
 * A miss went through every configured layer; a semantic hit missed the exact layer first. The
 * vendor's own prompt cache counts as hit when the vendor billed cache-read tokens.
 */
function recordCache(m: Metrics, layers: Layers, ctx: MeshContext) {
  const status = ctx.cache.status
  const c = m.cache
  if (status === 'exact') c['exact:hit']++
  else if (status === 'semantic') {
    if (layers.exact) c['exact:miss']++
    c['semantic:hit']++
  } else if (status === 'bypass') {
    if (layers.exact) c['exact:bypass']++
    if (layers.semantic) c['semantic:bypass']++
  } else if (ctx.upstream || ctx.answer) {
    if (layers.exact) c['exact:miss']++
    if (layers.semantic) c['semantic:miss']++
  }
  if (ctx.upstream && ctx.upstream.status < 300) {
    if (ctx.usage.cacheReadTokens > 0) c['vendor:hit']++
    else c['vendor:miss']++
  }
}
