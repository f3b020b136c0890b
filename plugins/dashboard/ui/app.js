// The AgentMesh dashboard: Preact + htm, no build step. Everything shown comes from
// /agentmesh/events (resumed with Last-Event-ID) and the admin APIs; no prompt text is in either.
import { h, render } from 'preact'
import { useEffect, useRef, useState } from 'preact/hooks'
import htm from '/agentmesh/ui/vendor/htm.js'
import uPlot from '/agentmesh/ui/vendor/uplot.js'

const html = htm.bind(h)
const MAX_ROWS = 1000
// every event but the per-request ones this page does not show: a request's `response` carries its
// identity, usage and cost, so its `request`, `llm_call`, cache misses and plugins' own x- events
// would only be serialised and sent for nothing (5 dashboards reading every event cost a busy proxy
// ~10% of its CPU). bench:proxy's dashboard line reads this same URL (DASHBOARD_EVENTS in plugins/dashboard/index.ts).
const EVENTS_URL = '/agentmesh/events?exclude=request,llm_call,cache_miss,x-*&fold=20'
const SERIES_SECONDS = 120

// ---------------------------------------------------------------- state fed by the event stream

const store = {
  token: sessionStorage.getItem('agentmesh.token') || '',
  connected: false,
  needsLogin: false,
  // 0 on page load: the server replays what it retained, so a reload rebuilds the tables
  lastId: 0,
  rows: new Map(), // request id -> row, insertion order = arrival order
  seen: {
    requests: 0,
    tokens: 0,
    usd: 0,
    savedUsd: 0,
    errors: 0,
    hits: { exact: 0, semantic: 0, vendor: 0 },
    lookups: 0,
    vendorCalls: 0,
  },
  perSecond: new Map(), // epoch second -> responses
  folded: 0, // responses counted from the server's sums, not shown as rows
  feed: [], // newest non-request events (quota, approvals, runs, errors)
  version: 0,
}
const subscribers = new Set()
let scheduled = false
function changed() {
  store.version++
  if (scheduled) return
  scheduled = true
  // at most one render per animation frame, however many events arrive
  requestAnimationFrame(() => {
    scheduled = false
    for (const s of subscribers) s(store.version)
  })
}
function useStore() {
  const [, set] = useState(0)
  useEffect(() => {
    subscribers.add(set)
    return () => subscribers.delete(set)
  }, [])
  return store
}

const authHeaders = () => (store.token ? { authorization: `Bearer ${store.token}` } : {})

function rowOf(id) {
  let r = store.rows.get(id)
  if (!r) {
    r = { id, time: Date.now(), status: 'pending' }
    store.rows.set(id, r)
    if (store.rows.size > MAX_ROWS) store.rows.delete(store.rows.keys().next().value)
    if (approvals.size > MAX_ROWS) approvals.delete(approvals.keys().next().value)
  }
  return r
}

function apply(e) {
  const d = e.data || {}
  // the request's outcome, with its usage and cost: the one event of every request this page reads
  if (e.type === 'response') {
    const hit = d.cache === 'exact' || d.cache === 'semantic'
    const r = Object.assign(rowOf(d.id), {
      time: e.time - d.latencyMs,
      status: d.status,
      cache: d.cache,
      latencyMs: d.latencyMs,
      identity: d.identity,
      protocol: d.protocol,
      stream: d.stream,
      model: d.requested,
      vendor: d.vendor,
      answeredModel: d.model,
      usage: d.usage,
      costUsd: d.costUsd,
      upstreamMs: d.upstreamMs,
      aborted: d.aborted,
      settled: true,
    })
    store.seen.requests++
    if (d.status >= 400) store.seen.errors++
    if (hit) {
      store.seen.hits[d.cache]++
      store.seen.savedUsd += r.savedUsd || 0
    }
    if (d.cache !== 'bypass') store.seen.lookups++
    if (d.usage) {
      store.seen.tokens += d.usage.inputTokens + d.usage.outputTokens
      if (d.usage.cacheReadTokens > 0) store.seen.hits.vendor++
    }
    store.seen.usd += d.costUsd || 0
    if (d.vendorCalled) store.seen.vendorCalls++
    const sec = Math.floor(e.time / 1000)
    store.perSecond.set(sec, (store.perSecond.get(sec) || 0) + 1)
    if (store.perSecond.size > SERIES_SECONDS * 2) store.perSecond.delete(store.perSecond.keys().next().value)
    return
  }
  // past 20 requests in 40 ms the server sends the others' sums instead of their rows: the
  // counters stay exact, the table shows a sample
  if (e.type === 'responses_folded') {
    const s = store.seen
    s.requests += d.requests
    s.errors += d.errors
    s.tokens += d.tokens
    s.usd += d.usd
    s.savedUsd += d.savedUsd
    s.lookups += d.lookups
    s.vendorCalls += d.vendorCalls
    for (const k of ['exact', 'semantic', 'vendor']) s.hits[k] += d.hits[k]
    store.folded += d.requests
    const sec = Math.floor(e.time / 1000)
    store.perSecond.set(sec, (store.perSecond.get(sec) || 0) + d.requests)
    return
  }
  // the entry's place in the audit log, once its batch is written (only for rows still shown)
  if (e.type === 'audit_entry') {
    if (store.rows.has(d.id)) store.rows.get(d.id).auditSeq = d.seq
    return
  }
  // a request's other events come before its response: they start its row (pending until then)
  if (e.type === 'cache_hit')
    Object.assign(rowOf(d.id), {
      cacheKind: d.kind,
      similarity: d.similarity,
      savedTokens: d.savedTokens,
      savedUsd: d.savedUsd,
    })
  else if (e.type === 'route' && d.id)
    rowOf(d.id).route = {
      requested: d.requested,
      vendor: d.vendor,
      model: d.model,
      reason: d.reason,
      rule: d.rule,
      skipped: d.skipped,
    }
  else if (typeof d.id === 'string') {
    const r = rowOf(d.id)
    if (e.type === 'error') r.error = { status: d.status, type: d.type, plugin: d.plugin }
    const g = guardOf(e)
    if (g) (r.guards ||= []).push(g)
    if (e.type === 'approval_requested') {
      r.approval = d.approval
      approvals.set(d.approval, d.id)
    }
  } else if (
    (e.type === 'approval_granted' || e.type === 'approval_denied') &&
    store.rows.has(approvals.get(d.approval))
  ) {
    // decisions name the approval, not the request: joined through the approval_requested event
    store.rows
      .get(approvals.get(d.approval))
      .guards?.push(`approval ${e.type === 'approval_granted' ? 'granted' : 'denied'} by ${d.by}`)
  }
  // governance events only: routing, cache lookups and plugins' own x- events are per-request detail
  if (!PER_REQUEST.has(e.type) && !e.type.startsWith('x-')) store.feed.unshift(e)
  if (store.feed.length > 200) store.feed.pop()
}

const PER_REQUEST = new Set(['route', 'cache_hit', 'cache_miss', 'request', 'llm_call'])

/** approval id -> request id, for the decisions (bounded like the rows) */
const approvals = new Map()

const counts = (c) =>
  Object.entries(c || {})
    .map(([k, n]) => `${k}×${n}`)
    .join(', ')

/** one line per guard that acted on a request: kinds, counts and limits only (no event carries prompt text) */
function guardOf(e) {
  const d = e.data
  switch (e.type) {
    case 'secret_redacted':
      return `secrets redacted: ${counts(d.counts)} in ${(d.where || []).join(', ')}`
    case 'secret_blocked':
      return `blocked for secrets: ${counts(d.counts)} in ${(d.where || []).join(', ')}`
    case 'pii_masked':
      return `personal data masked: ${counts(d.counts)}`
    case 'compressed':
      return `compressed ${num(d.before)} → ${num(d.after)} tokens (${(d.strategies || []).join(', ')})${d.met ? '' : ', target not met'}`
    case 'dry_run':
      return `dry run: would be ${d.outcome}, ~${num(d.estimatedTokens)} tokens, ~${usd(d.estimatedUsd)}`
    case 'run_warn':
      return `run ${d.run}: ${d.limit} at ${d.pct}% (${num(d.used)} of ${num(d.max)})`
    case 'run_tripped':
      return `run ${d.run} stopped: ${d.type} (${d.limit})`
    case 'approval_requested':
      return `approval ${d.approval} asked (rule ${d.rule}, ${d.mode})`
    case 'quota_warn':
      return `quota warning: ${d.scope} ${d.limit} at ${d.pct}% (${num(d.used)} of ${num(d.max)})`
    case 'quota_block':
      return `quota blocked: ${d.scope} ${d.limit} (${num(d.used)} of ${num(d.max)})`
    default:
      return undefined
  }
}

// ---------------------------------------------------------------- SSE over fetch: headers, resume

async function connect() {
  let delay = 500
  for (;;) {
    try {
      const headers = { ...authHeaders(), accept: 'text/event-stream' }
      headers['last-event-id'] = String(store.lastId)
      const res = await fetch(EVENTS_URL, { headers, cache: 'no-store' })
      if (res.status === 401 || res.status === 403) {
        store.needsLogin = true
        store.connected = false
        changed()
        return
      }
      if (!res.ok || !res.body) throw new Error(`events: ${res.status}`)
      store.connected = true
      store.needsLogin = false
      changed()
      delay = 500
      await readEvents(res.body)
    } catch {
      /* dropped: retried below */
    }
    store.connected = false
    changed()
    await new Promise((r) => setTimeout(r, delay))
    delay = Math.min(delay * 2, 10_000)
  }
}

async function readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader()
  let buf = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return
    buf += value
    let at
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, at)
      buf = buf.slice(at + 2)
      const data = block
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trim())
        .join('\n')
      if (!data) continue
      const e = JSON.parse(data)
      if (e.id) store.lastId = e.id
      apply(e)
      changed()
    }
  }
}

// ---------------------------------------------------------------- admin API

async function api(path, init = {}) {
  const res = await fetch(path, {
    ...init,
    headers: { ...authHeaders(), ...(init.body ? { 'content-type': 'application/json' } : {}), ...init.headers },
  })
  const body = await res.json().catch(() => ({}))
  if (!res.ok) throw new Error(body?.error?.message || `${res.status}`)
  return body
}

/** read an admin endpoint now, then again within a second of the event stream moving */
function useApi(path) {
  const [state, set] = useState({ data: undefined, error: undefined })
  const load = () =>
    api(path).then(
      (data) => set({ data }),
      (err) => set({ data: undefined, error: err.message }),
    )
  useEffect(() => {
    let seen = store.version
    load()
    const timer = setInterval(() => {
      if (store.version !== seen) {
        seen = store.version
        load()
      }
    }, 1000)
    return () => clearInterval(timer)
  }, [path])
  return [state, load]
}

// ---------------------------------------------------------------- formatting

const usd = (n) => `$${(n || 0).toFixed(n >= 100 ? 2 : 4)}`
const num = (n) => (n || 0).toLocaleString('en-US')
const pct = (a, b) => (b ? `${((a / b) * 100).toFixed(1)}%` : '–')
const statusClass = (s) => (s === 'pending' ? 'muted' : s >= 400 ? 's-bad' : 's-ok')
const outcomeOf = (r) =>
  r.status === 'pending'
    ? 'pending'
    : r.status === 429
      ? 'blocked'
      : r.status >= 400
        ? 'failed'
        : r.cache === 'exact' || r.cache === 'semantic'
          ? 'hit'
          : 'ok'

// ---------------------------------------------------------------- views

function Card({ k, v, id }) {
  return html`<div class="card" data-metric=${id}><div class="k">${k}</div><div class="v">${v}</div></div>`
}

function RpsChart() {
  const el = useRef(null)
  const plot = useRef(null)
  const s = useStore()
  const draw = () => {
    const now = Math.floor(Date.now() / 1000)
    const xs = []
    const ys = []
    for (let t = now - SERIES_SECONDS; t <= now; t++) {
      xs.push(t)
      ys.push(s.perSecond.get(t) || 0)
    }
    plot.current?.setData([xs, ys])
  }
  useEffect(() => {
    const dark = matchMedia('(prefers-color-scheme: dark)').matches
    plot.current = new uPlot(
      {
        width: el.current.clientWidth || 300,
        height: 140,
        legend: { show: false },
        series: [{}, { label: 'req/s', stroke: dark ? '#60a5fa' : '#2563eb', fill: dark ? '#60a5fa33' : '#2563eb22' }],
        axes: [{ stroke: dark ? '#9ca3af' : '#6b7280' }, { stroke: dark ? '#9ca3af' : '#6b7280' }],
      },
      [[], []],
      el.current,
    )
    const resize = () => plot.current.setSize({ width: el.current.clientWidth, height: 140 })
    addEventListener('resize', resize)
    const timer = setInterval(() => draw(), 1000)
    return () => {
      removeEventListener('resize', resize)
      clearInterval(timer)
      plot.current.destroy()
    }
  }, [])
  useEffect(draw)
  return html`<div ref=${el} class="chart"></div>`
}

function Overview({ usage }) {
  const s = useStore()
  const g = usage.data?.scopes?.find((x) => x.scope === 'global')
  const now = Math.floor(Date.now() / 1000)
  let last10 = 0
  for (let t = now - 10; t < now; t++) last10 += s.perSecond.get(t) || 0
  const hit = s.seen.hits
  const models = new Map()
  for (const r of s.rows.values())
    if (r.status !== 'pending') {
      const m = r.answeredModel || r.model
      const x = models.get(m) || { n: 0, usd: 0 }
      x.n++
      x.usd += r.costUsd || 0
      models.set(m, x)
    }
  const top = [...models].sort((a, b) => b[1].n - a[1].n).slice(0, 8)
  return html`
    <div class="cards">
      <${Card} id="rps" k="requests / s (10 s)" v=${(last10 / 10).toFixed(1)} />
      ${
        g
          ? html`
        <${Card} id="day-requests" k="requests today" v=${num(g.day.requests)} />
        <${Card} id="day-tokens" k="tokens today" v=${num(g.day.tokens)} />
        <${Card} id="day-usd" k="spent today" v=${usd(g.day.usd)} />
        <${Card} id="day-saved" k="saved today" v=${usd(g.day.savedUsd)} />
        <${Card} id="month-usd" k="spent this month" v=${usd(g.month.usd)} />
        <${Card} id="day-blocked" k="blocked today" v=${num(g.day.blocked)} />`
          : html`
        <${Card} id="seen-requests" k="requests (live)" v=${num(s.seen.requests)} />
        <${Card} id="seen-tokens" k="tokens (live)" v=${num(s.seen.tokens)} />
        <${Card} id="seen-usd" k="spent (live)" v=${usd(s.seen.usd)} />`
      }
      <${Card} id="errors" k="errors (live)" v=${num(s.seen.errors)} />
      <${Card} id="hit-exact" k="exact cache hits" v=${pct(hit.exact, s.seen.lookups)} />
      <${Card} id="hit-semantic" k="semantic cache hits" v=${pct(hit.semantic, s.seen.lookups)} />
      <${Card} id="hit-vendor" k="vendor prompt cache" v=${pct(hit.vendor, s.seen.vendorCalls)} />
    </div>
    <section><h2>Requests per second</h2><${RpsChart} /></section>
    <section><h2>Top models</h2><table><thead><tr><th>model</th><th>requests</th><th>USD</th></tr></thead>
      <tbody>${top.map(([m, x]) => html`<tr><td>${m}</td><td>${x.n}</td><td>${usd(x.usd)}</td></tr>`)}</tbody></table></section>
    ${usage.error ? html`<p class="muted">Totals for today and this month need the admin token (${usage.error}); live numbers are since this page opened.</p>` : ''}`
}

function LimitBar({ l, warnAt, hardStopAt }) {
  const p = Math.min(100, l.pct)
  const cls = l.pct >= hardStopAt ? 'bad' : l.pct >= warnAt ? 'warn' : ''
  return html`<div class="bar" title=${`${l.used} of ${l.limit} (${l.pct}%)`}><i class=${cls} style=${`width:${p}%`}></i><b style=${`left:${Math.min(100, warnAt)}%`}></b><b style=${`left:${Math.min(100, hardStopAt)}%`}></b></div>`
}

function Teams({ usage }) {
  const s = useStore()
  const [msg, setMsg] = useState('')
  if (usage.error) return html`<section><p class="muted">Budgets need the admin token: ${usage.error}</p></section>`
  const r = usage.data
  if (!r) return html`<p class="muted">loading…</p>`
  const grant = async (ev) => {
    ev.preventDefault()
    const f = new FormData(ev.target)
    try {
      await api('/agentmesh/admin/grants', {
        method: 'POST',
        body: JSON.stringify({ team: f.get('team'), tokens: Number(f.get('tokens')), for: f.get('for') || '24h' }),
      })
      setMsg('granted')
      usage.reload()
    } catch (err) {
      setMsg(err.message)
    }
  }
  const members = (team) => {
    const users = new Set()
    const tools = new Set()
    for (const x of s.rows.values())
      if (x.identity?.team === team) {
        users.add(x.identity.user)
        tools.add(x.identity.tool)
      }
    return `${[...users].join(', ') || '–'} · ${[...tools].join(', ') || '–'}`
  }
  return html`
    <section><h2>Budgets today and this month</h2><table class="teams"><thead><tr><th>scope</th><th>requests</th><th>tokens</th><th>USD</th><th>saved</th><th>limits</th><th class="hide-sm">users · tools (live)</th></tr></thead><tbody>
      ${r.scopes
        .filter((x) => x.scope === 'global' || x.scope.startsWith('team:'))
        .map(
          (x) => html`<tr data-scope=${x.scope}>
        <td>${x.scope}</td><td>${num(x.day.requests)}</td><td>${num(x.day.tokens)}</td><td>${usd(x.day.usd)}</td><td>${usd(x.day.savedUsd)}</td>
        <td>${Object.entries({ ...x.day.limits, ...x.month.limits }).map(([k, l]) => html`<div class="row"><span class="muted">${k}</span><${LimitBar} l=${l} warnAt=${r.warnAt} hardStopAt=${r.hardStopAt} /></div>`)}${x.grants.map((g) => html`<div class="muted">grant ${g.tokens ?? ''} ${g.usd ? usd(g.usd) : ''} until ${g.expires}</div>`)}</td>
        <td class="hide-sm">${x.scope.startsWith('team:') ? members(x.scope.slice(5)) : ''}</td></tr>`,
        )}
    </tbody></table></section>
    <section><h2>Grant tokens to a team</h2><form class="row" onSubmit=${grant}><input name="team" placeholder="team" required /><input name="tokens" type="number" min="1" placeholder="tokens" required /><input name="for" placeholder="24h" /><button>grant</button> <span class="muted">${msg}</span></form></section>`
}

const FILTERS = ['team', 'user', 'tool', 'model', 'cache', 'outcome']

function Requests() {
  const s = useStore()
  const [f, setF] = useState({})
  const [sel, setSel] = useState(undefined)
  const match = (r) =>
    (!f.team || r.identity?.team === f.team) &&
    (!f.user || r.identity?.user === f.user) &&
    (!f.tool || r.identity?.tool === f.tool) &&
    (!f.model || (r.answeredModel || r.model || '').includes(f.model)) &&
    (!f.cache || r.cache === f.cache) &&
    (!f.outcome || outcomeOf(r) === f.outcome)
  const rows = [...s.rows.values()].reverse().filter(match).slice(0, 200)
  const detail = sel && s.rows.get(sel)
  return html`
    <section><div class="filters">${FILTERS.map((k) =>
      k === 'cache' || k === 'outcome'
        ? html`<select name=${k} onChange=${(e) => setF({ ...f, [k]: e.target.value })}><option value="">${k}: any</option>${(k === 'cache' ? ['exact', 'semantic', 'miss', 'bypass'] : ['ok', 'hit', 'blocked', 'failed', 'pending']).map((o) => html`<option>${o}</option>`)}</select>`
        : html`<input name=${k} placeholder=${k} onInput=${(e) => setF({ ...f, [k]: e.target.value.trim() })} />`,
    )}</div>
    <table class="requests"><thead><tr><th>time</th><th>team</th><th class="hide-sm">user</th><th class="hide-sm">tool</th><th>model</th><th>cache</th><th>status</th><th>tokens</th><th>USD</th><th class="hide-sm">ms</th></tr></thead><tbody>
      ${rows.map((r) => html`<tr data-id=${r.id} onClick=${() => setSel(r.id)}><td>${new Date(r.time).toLocaleTimeString()}</td><td>${r.identity?.team}</td><td class="hide-sm">${r.identity?.user}</td><td class="hide-sm">${r.identity?.tool}</td><td>${r.answeredModel || r.model}</td><td>${r.cache || ''}</td><td class=${statusClass(r.status)}>${r.status}</td><td>${r.usage ? num(r.usage.inputTokens + r.usage.outputTokens) : r.cache === 'exact' || r.cache === 'semantic' ? 0 : ''}</td><td>${r.costUsd !== undefined ? usd(r.costUsd) : ''}</td><td class="hide-sm">${r.latencyMs ? r.latencyMs.toFixed(0) : ''}</td></tr>`)}
    </tbody></table>
    ${s.folded > 0 ? html`<p class="muted" id="folded">${num(s.folded)} requests came faster than 500 a second: counted in the totals, not listed here (<code>agentmesh observe</code> or <code>agentmesh audit export</code> lists every one)</p>` : ''}</section>
    ${
      detail
        ? html`<section class="detail"><h2>Request ${detail.id} <button onClick=${() => setSel(undefined)}>close</button></h2><dl>
      <dt>team / user / tool</dt><dd>${detail.identity?.team} / ${detail.identity?.user} / ${detail.identity?.tool}</dd>
      <dt>protocol</dt><dd>${detail.protocol}${detail.stream ? ' (streamed)' : ''}</dd>
      <dt>asked / answered by</dt><dd>${detail.model} → ${detail.vendor || '–'} ${detail.answeredModel || ''}</dd>
      <dt>cache</dt><dd>${detail.cache || '–'}${detail.similarity !== undefined ? ` (similarity ${detail.similarity.toFixed(3)})` : ''}${detail.savedUsd ? `, saved ${usd(detail.savedUsd)} / ${num(detail.savedTokens)} tokens` : ''}</dd>
      <dt>tokens</dt><dd>${detail.usage ? `in ${num(detail.usage.inputTokens)}, out ${num(detail.usage.outputTokens)}, cache read ${num(detail.usage.cacheReadTokens)}, cache write ${num(detail.usage.cacheWriteTokens)}` : '–'}</dd>
      <dt>cost</dt><dd>${detail.costUsd !== undefined ? usd(detail.costUsd) : '–'}</dd>
      <dt>latency</dt><dd>${detail.latencyMs ? `${detail.latencyMs.toFixed(1)} ms in all${detail.aborted ? ' (did not complete)' : ''}` : '–'}${detail.upstreamMs ? `, vendor ${detail.upstreamMs.toFixed(1)} ms` : ''}</dd>
      <dt>status</dt><dd>${detail.status}${detail.error ? ` ${detail.error.type}${detail.error.plugin ? ` (${detail.error.plugin})` : ''}` : ''}</dd>
      <dt>route</dt><dd data-field="route">${detail.route ? `${detail.route.requested} → ${detail.route.vendor}/${detail.route.model}: ${detail.route.reason}${detail.route.rule ? ` (rule ${detail.route.rule})` : ''}` : detail.status === 'pending' ? '–' : 'the requested model (no routing rule acted)'}</dd>
      <dt>guards</dt><dd data-field="guards">${detail.guards?.length ? html`<ul>${detail.guards.map((g) => html`<li>${g}</li>`)}</ul>` : 'none acted'}</dd>
      <dt>audit</dt><dd data-field="audit">${detail.auditSeq !== undefined ? html`entry <code>#${detail.auditSeq}</code> in the audit log (id <code>${detail.id}</code>)` : html`<span class="muted">not written yet${detail.status === 'pending' ? '' : ', or written before this page was opened'} (id <code>${detail.id}</code>; <code>agentmesh audit export</code> lists every entry)</span>`}</dd>
    </dl></section>`
        : ''
    }`
}

function Keys() {
  const [keys, reloadKeys] = useApi('/agentmesh/admin/keys')
  const [appr, reloadAppr] = useApi('/agentmesh/admin/approvals')
  const [runs] = useApi('/agentmesh/admin/runs')
  const [made, setMade] = useState('')
  const create = async (ev) => {
    ev.preventDefault()
    const f = new FormData(ev.target)
    try {
      const k = await api('/agentmesh/admin/keys', {
        method: 'POST',
        body: JSON.stringify({ team: f.get('team'), user: f.get('user') }),
      })
      setMade(`${k.key} (shown once)`)
      reloadKeys()
    } catch (err) {
      setMade(err.message)
    }
  }
  const act = (path, reload) => api(path, { method: 'POST', body: '{}' }).then(reload, (err) => alert(err.message))
  return html`
    <section><h2>Approvals waiting</h2>${appr.error ? html`<p class="muted">${appr.error}</p>` : html`<table class="approvals"><tbody>${(appr.data?.approvals || []).map((a) => html`<tr data-approval=${a.id}><td>${a.id}</td><td>${a.identity?.team}/${a.identity?.user}</td><td>${a.model}</td><td>${a.rule}</td><td><button onClick=${() => act(`/agentmesh/admin/approvals/${a.id}/approve`, reloadAppr)}>approve</button> <button onClick=${() => act(`/agentmesh/admin/approvals/${a.id}/deny`, reloadAppr)}>deny</button></td></tr>`)}</tbody></table>`}</section>
    <section><h2>Virtual keys</h2>${
      keys.error
        ? html`<p class="muted">${keys.error}</p>`
        : html`
      <form class="row" onSubmit=${create}><input name="team" placeholder="team" required /><input name="user" placeholder="user" required /><button>create key</button> <code>${made}</code></form>
      <table class="keys"><tbody>${(keys.data?.keys || []).map((k) => html`<tr><td>${k.id}</td><td>${k.team}/${k.user}</td><td>${k.revoked ? 'revoked' : 'active'}</td><td>${k.revoked ? '' : html`<button onClick=${() => api(`/agentmesh/admin/keys/${k.id}`, { method: 'DELETE' }).then(reloadKeys)}>revoke</button>`}</td></tr>`)}</tbody></table>`
    }</section>
    <section><h2>Agent runs</h2>${runs.error ? html`<p class="muted">${runs.error}</p>` : html`<table><tbody>${(runs.data?.runs || []).slice(0, 50).map((r) => html`<tr><td>${r.run ?? r.id}</td><td>${r.team}</td><td>${r.tripped ? 'tripped' : 'running'}</td><td>${r.calls ?? ''}</td></tr>`)}</tbody></table>`}</section>`
}

/** "verify now": the proxy checks every hash, link and checkpoint signature (the admin token) */
function VerifyNow() {
  const [st, set] = useState({ busy: false })
  const run = () => {
    set({ busy: true })
    api('/agentmesh/admin/audit/verify', { method: 'POST', body: '{}' }).then(
      (r) => set({ r }),
      (err) => set({ error: err.message }),
    )
  }
  const r = st.r
  return html`<div class="verify"><button data-action="verify" disabled=${st.busy} onClick=${run}>${st.busy ? 'verifying…' : 'verify now'}</button>
    ${st.error ? html` <span class="s-bad" data-verify="error">${st.error}</span>` : ''}
    ${
      r
        ? html`<dl data-verify=${r.ok ? 'ok' : 'fail'}>
      <dt>result</dt><dd class=${r.ok ? 's-ok' : 's-bad'}>${r.ok ? 'OK' : `FAIL: ${r.problem?.kind}`} <span class="muted">checked ${new Date(r.checkedAt).toLocaleTimeString()} in ${r.ms} ms</span></dd>
      <dt>${r.ok ? 'entries' : 'entries verified before it'}</dt><dd data-field="entries">${num(r.entries)}${r.ok && r.unsignedTail ? html` <span class="muted">(${num(r.unsignedTail)} not signed yet)</span>` : ''}</dd>
      <dt>checkpoints</dt><dd data-field="checkpoints">${num(r.checkpoints)}</dd>
      <dt>last signed checkpoint</dt><dd>${r.lastCheckpoint ? `seq ${r.lastCheckpoint.seq}, ${r.lastCheckpoint.ts}, key ${r.lastCheckpoint.keyId}` : '–'}</dd>
      <dt>signed heads compared</dt><dd>${r.heads}</dd>
      ${r.problem ? html`<dt>problem</dt><dd class="s-bad" data-field="problem">${r.problem.message}${r.problem.seq !== undefined ? ` (seq ${r.problem.seq})` : ''}</dd>` : ''}
    </dl>`
        : ''
    }</div>`
}

function Audit() {
  const [health] = useApi('/agentmesh/health')
  const s = useStore()
  const a = health.data?.checks?.audit
  return html`<section><h2>Audit log</h2>${
    !health.data
      ? 'loading…'
      : !health.data.plugins?.includes('audit')
        ? html`<p class="muted">no audit plugin in this configuration</p>`
        : html`<dl>
    <dt>state</dt><dd class=${a && !a.ok ? 's-bad' : 's-ok'}>${a ? (a.ok ? 'writing' : a.message) : 'writing'}</dd>
    <dt>public key</dt><dd><a href="/agentmesh/audit/public-key">/agentmesh/audit/public-key</a></dd></dl>
    <${VerifyNow} />
    <p class="muted">The same check offline: <code>agentmesh audit verify</code> (with <code>--strict</code> to fail on unsigned entries).</p>`
  }</section>
    <section><h2>Recent governance events</h2><table class="feed"><tbody>${s.feed.slice(0, 50).map((e) => html`<tr><td>${new Date(e.time).toLocaleTimeString()}</td><td>${e.type}</td><td>${e.data.scope || e.data.rule || e.data.type || ''}</td></tr>`)}</tbody></table></section>`
}

function Login() {
  const submit = (ev) => {
    ev.preventDefault()
    store.token = new FormData(ev.target).get('token').trim()
    sessionStorage.setItem('agentmesh.token', store.token)
    // the event stream refused us and stopped: start it with the token. Otherwise (open events,
    // signing in for the admin views) it is still running: reload, so every view reads with the token
    if (!store.needsLogin) return location.reload()
    store.needsLogin = false
    changed()
    connect()
  }
  return html`<form class="card login" onSubmit=${submit}><h2>Sign in</h2><p class="muted">The admin token ($AGENTMESH_ADMIN_TOKEN) sees every team; a virtual key (am-…) sees its own team. Kept in this tab only.</p><input name="token" type="password" autocomplete="off" placeholder="token or am- key" /><button>open</button></form>`
}

const VIEWS = {
  overview: 'Overview',
  teams: 'Teams & budgets',
  requests: 'Requests',
  keys: 'Keys & approvals',
  audit: 'Audit',
}

function App() {
  const s = useStore()
  const [view, setView] = useState(location.hash.slice(1) in VIEWS ? location.hash.slice(1) : 'overview')
  const [usageState, reloadUsage] = useApi('/agentmesh/admin/usage')
  // open events need no token, but the admin views do: the header offers the form
  const [signingIn, setSigningIn] = useState(false)
  const usage = { ...usageState, reload: reloadUsage }
  useEffect(() => {
    const on = () => location.hash.slice(1) in VIEWS && setView(location.hash.slice(1))
    addEventListener('hashchange', on)
    return () => removeEventListener('hashchange', on)
  }, [])
  const go = (v) => {
    location.hash = v
    setView(v)
  }
  return html`<header><h1>AgentMesh</h1><nav>${Object.entries(VIEWS).map(([k, label]) => html`<button data-view=${k} aria-current=${view === k ? 'page' : undefined} onClick=${() => go(k)}>${label}</button>`)}</nav>
    <span class="status" data-connected=${String(s.connected)}><span class=${s.connected ? 'dot on' : 'dot'}></span>${s.connected ? 'live' : 'reconnecting'}</span>
    ${
      s.token
        ? html`<button onClick=${() => {
            sessionStorage.removeItem('agentmesh.token')
            location.reload()
          }}>sign out</button>`
        : html`<button data-action="sign-in" onClick=${() => setSigningIn(true)}>admin sign in</button>`
    }</header>
    <main>${s.needsLogin || signingIn ? html`<${Login} />` : view === 'overview' ? html`<${Overview} usage=${usage} />` : view === 'teams' ? html`<${Teams} usage=${usage} />` : view === 'requests' ? html`<${Requests} />` : view === 'keys' ? html`<${Keys} />` : html`<${Audit} />`}</main>`
}

// the root's loading text is replaced, not kept beside the app (render() appends in Preact 11)
const root = document.getElementById('app')
root.textContent = ''
render(html`<${App} />`, root)
connect()
