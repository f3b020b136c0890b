// The panel next to the input box, in a shadow root: the page's styles cannot reach it and its
// styles reach nothing on the page. It only shows; it never holds the user's typing or sending.
import { type CachedAnswer, type Estimate, type Failure, formatUsd } from './shared.ts'

const CSS = `
:host { all: initial; position: fixed; z-index: 2147483646; top: 0; left: 0; display: none; }
:host([data-visible="true"]) { display: block; }
.panel { box-sizing: border-box; width: 320px; max-width: calc(100vw - 16px); padding: 8px 10px; border-radius: 10px;
  font: 12px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; background: #fff;
  border: 1px solid #d0d7de; box-shadow: 0 4px 16px rgba(0,0,0,.12); }
@media (prefers-color-scheme: dark) { .panel { color: #e6edf3; background: #161b22; border-color: #30363d; } }
.title { display: flex; justify-content: space-between; font-weight: 600; margin-bottom: 2px; }
.title small { font-weight: 400; opacity: .7; }
.line { margin: 1px 0; overflow-wrap: anywhere; }
.line[data-field="offline"], .line[data-field="estimate"] { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.hit { color: #1a7f37; } .warn { color: #9a6700; } .bad { color: #cf222e; }
@media (prefers-color-scheme: dark) { .hit { color: #3fb950; } .warn { color: #d29922; } .bad { color: #f85149; } }
button { all: unset; cursor: pointer; margin-top: 4px; padding: 2px 8px; border-radius: 6px; border: 1px solid currentColor; font-size: 11px; }
.answer { margin-top: 6px; max-height: 200px; overflow: auto; white-space: pre-wrap; border-top: 1px solid #d0d7de; padding-top: 6px; }
`

export type PanelState =
  | { kind: 'idle' }
  | { kind: 'loading' }
  | { kind: 'estimate'; estimate: Estimate }
  | { kind: 'failure'; failure: Failure }

export function cacheLabel(c: Estimate['cache']): string {
  if (c.status === 'exact') return 'asked before: exact'
  if (c.status === 'semantic') return `asked before: similar (${(c.similarity ?? 0).toFixed(2)})`
  return 'asked before: new'
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string>,
  text?: string,
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag)
  for (const k in attrs) e.setAttribute(k, attrs[k]!)
  if (text !== undefined) e.textContent = text
  return e
}

export class Overlay {
  readonly host: HTMLElement
  private readonly panel: HTMLElement
  private readonly body: HTMLElement
  private readonly status: HTMLElement
  private anchor: Element | null = null
  private answer: HTMLElement | null = null
  onShowCached: (() => void) | null = null

  constructor() {
    this.host = document.createElement('agentmesh-overlay')
    const root = this.host.attachShadow({ mode: 'open' })
    const style = el('style', {}, CSS)
    const panel = (this.panel = el('div', { class: 'panel', part: 'panel' }))
    const title = el('div', { class: 'title' }, 'AgentMesh')
    this.status = el('small', { 'data-field': 'status' }, '')
    title.append(this.status)
    this.body = el('div', { class: 'body' })
    panel.append(title, this.body)
    root.append(style, panel)
    this.host.dataset.state = 'idle'
  }

  /** Next to this input box (or hidden when there is none). */
  attach(anchor: Element | null): void {
    this.anchor = anchor
    if (anchor && !this.host.isConnected) document.documentElement.append(this.host)
    this.place()
  }

  place(): void {
    const a = this.anchor
    if (!a || !a.isConnected || this.host.dataset.state === 'idle') {
      this.host.dataset.visible = 'false'
      return
    }
    this.host.dataset.visible = 'true'
    const r = a.getBoundingClientRect()
    const pw = this.panel.offsetWidth || 320
    const ph = this.panel.offsetHeight || 80
    const top = r.top - ph - 8 >= 0 ? r.top - ph - 8 : Math.min(window.innerHeight - ph - 8, r.bottom + 8)
    const left = Math.max(8, Math.min(window.innerWidth - pw - 8, r.right - pw))
    this.host.style.transform = `translate(${Math.round(left)}px, ${Math.round(Math.max(0, top))}px)`
  }

  render(state: PanelState): void {
    this.host.dataset.state = state.kind
    this.body.replaceChildren()
    this.answer = null
    if (state.kind === 'loading') this.status.textContent = 'estimating…'
    else if (state.kind === 'failure') this.renderFailure(state.failure)
    else if (state.kind === 'estimate') this.renderEstimate(state.estimate)
    else this.status.textContent = ''
    this.place()
  }

  private renderFailure(f: Failure): void {
    this.status.textContent = f.offline ? 'offline' : 'error'
    this.body.append(
      el('div', { class: 'line warn', 'data-field': f.offline ? 'offline' : 'error', title: f.message }, f.message),
    )
  }

  private renderEstimate(e: Estimate): void {
    this.status.textContent = e.vendor ? `${e.vendor} · ${e.model}` : e.model
    this.body.append(
      el(
        'div',
        { class: 'line', 'data-field': 'estimate' },
        `≈ ${e.inputTokens.toLocaleString('en-US')} tokens · ${formatUsd(e.inputUsd)} input · ${e.model}`,
      ),
    )
    const hit = e.cache.status === 'exact' || e.cache.status === 'semantic'
    const saves = hit
      ? ` · would save ${(e.cache.savedTokens ?? 0).toLocaleString('en-US')} tokens (${formatUsd(e.cache.savedUsd ?? 0)})`
      : ''
    this.body.append(
      el('div', { class: hit ? 'line hit' : 'line', 'data-field': 'cache' }, cacheLabel(e.cache) + saves),
    )
    const who = [e.team && `team ${e.team}`, e.user && `user ${e.user}`].filter(Boolean).join(' · ')
    const quota = e.quotaPct === null ? 'no quota set' : `quota ${e.quotaPct}% used after this`
    this.body.append(
      el(
        'div',
        { class: e.quotaPct !== null && e.quotaPct >= 90 ? 'line warn' : 'line', 'data-field': 'quota' },
        `${who ? `${who} · ` : ''}${quota}`,
      ),
    )
    for (const g of e.guards) {
      const what = g.action === 'block' ? `would be blocked by ${g.guard}` : `would be held by ${g.guard}`
      this.body.append(
        el(
          'div',
          { class: g.action === 'block' ? 'line bad' : 'line warn', 'data-field': 'guard', title: g.message },
          `${what}: ${g.message}`,
        ),
      )
    }
    if (hit && !e.guards.some((g) => g.action === 'block')) {
      const b = el(
        'button',
        { type: 'button', 'data-action': 'show-cached' },
        'Show the cached answer instead of sending',
      )
      // the focus stays in the input box: the user can go on typing or press Enter to send
      b.addEventListener('mousedown', (ev) => ev.preventDefault())
      b.addEventListener('click', () => this.onShowCached?.())
      this.body.append(b)
    }
  }

  showAnswer(r: CachedAnswer | Failure): void {
    this.answer?.remove()
    const text = r.ok ? r.text : r.message
    this.answer = el('div', { class: 'answer', 'data-field': 'answer', 'data-cache': r.ok ? r.cache : 'error' }, text)
    this.body.append(this.answer)
    this.place()
  }
}
