// The content script on chatgpt.com, claude.ai and gemini.google.com: finds the input box (a
// textarea or a contenteditable editor such as ProseMirror), asks the service worker for a preview
// as the user types (debounced) and shows it in the overlay. The sites are single-page apps that
// replace the input box on navigation: a MutationObserver finds the new one.
import { Overlay } from './overlay.ts'
import { type CachedAnswer, type Estimate, type Failure, type Message, type Site, siteOf } from './shared.ts'

const DEBOUNCE_MS = 300
/** the worker gives up on the proxy at 1.2 s; this covers a worker that does not answer at all */
const OFFLINE_AFTER_MS = 1500
/** while the proxy is offline, ask again after 3 s, then 6, 12 ... at most 30 */
const RETRY_MS = [3000, 6000, 12_000, 30_000]
const MAX_CHARS = 200_000

function visible(e: Element): boolean {
  const r = e.getBoundingClientRect()
  return r.width > 0 && r.height > 0
}

function findEditor(site: Site): HTMLElement | null {
  for (const sel of site.editors) {
    for (const e of document.querySelectorAll<HTMLElement>(sel)) if (visible(e)) return e
  }
  return null
}

function textOf(editor: HTMLElement): string {
  // biome-ignore lint/performance/useDomNodeTextContent: an editor's paragraphs are blocks; innerText keeps their line breaks, textContent runs them together
  const t =
    editor instanceof HTMLTextAreaElement || editor instanceof HTMLInputElement ? editor.value : editor.innerText
  return t.trim().slice(0, MAX_CHARS)
}

function send<T>(msg: Message): Promise<T> {
  return chrome.runtime.sendMessage(msg) as Promise<T>
}

/** The worker's answer, or the offline line once OFFLINE_AFTER_MS pass without one. */
function previewWithin(msg: Message): Promise<Estimate | Failure> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<Failure>((resolve) => {
    timer = setTimeout(
      () => resolve({ ok: false, offline: true, message: 'AgentMesh offline: no answer from the proxy within 2 s' }),
      OFFLINE_AFTER_MS,
    )
  })
  const asked = send<Estimate | Failure>(msg).catch(
    (err: Error): Failure => ({
      ok: false,
      offline: true,
      message: `AgentMesh offline: the extension is not running (${err.message})`,
    }),
  )
  return Promise.race([asked, late]).finally(() => clearTimeout(timer))
}

class Watcher {
  private readonly overlay = new Overlay()
  private editor: HTMLElement | null = null
  private timer: ReturnType<typeof setTimeout> | undefined
  private seq = 0
  private text = ''
  private last: { text: string; estimate: Estimate } | null = null
  private lastSent = { text: '', at: 0 }
  private retries = 0

  constructor(private readonly site: Site) {
    this.overlay.onShowCached = () => this.showCached()
  }

  start(): void {
    let queued = false
    // SPA navigation replaces the input box: look again after the page's mutations settle
    new MutationObserver(() => {
      if (queued) return
      queued = true
      setTimeout(() => {
        queued = false
        this.rescan()
      }, 150)
    }).observe(document.documentElement, { childList: true, subtree: true })
    document.addEventListener('input', (e) => this.onInput(e), true)
    document.addEventListener('keydown', (e) => this.onKeydown(e), true)
    document.addEventListener('click', (e) => this.onClick(e), true)
    const place = () => this.overlay.place()
    window.addEventListener('resize', place, { passive: true })
    window.addEventListener('scroll', place, { passive: true, capture: true })
    this.rescan()
  }

  private rescan(): void {
    const found = this.editor?.isConnected && visible(this.editor) ? this.editor : findEditor(this.site)
    if (found !== this.editor) {
      this.editor = found
      this.text = ''
      this.last = null
      this.seq++
      this.overlay.render({ kind: 'idle' })
      if (found && textOf(found)) this.schedule()
    } else if (found && this.text && !textOf(found)) {
      // the site emptied the box after sending (a DOM change, no input event): nothing to estimate
      this.text = ''
      this.last = null
      this.seq++
      this.overlay.render({ kind: 'idle' })
    }
    this.overlay.attach(this.editor)
  }

  private inEditor(target: EventTarget | null): boolean {
    return target instanceof Node && !!this.editor && (this.editor === target || this.editor.contains(target))
  }

  private onInput(e: Event): void {
    if (!this.inEditor(e.target)) {
      // typing into an editor the observer has not seen yet (it appeared without a mutation we caught)
      this.rescan()
      if (!this.inEditor(e.target)) return
    }
    this.schedule()
  }

  private schedule(): void {
    this.retries = 0
    clearTimeout(this.timer)
    this.timer = setTimeout(() => void this.refresh(), DEBOUNCE_MS)
  }

  private async refresh(): Promise<void> {
    if (!this.editor) return
    const text = textOf(this.editor)
    if (text === this.text && this.overlay.host.dataset.state !== 'failure') return
    this.text = text
    const seq = ++this.seq
    if (!text) return this.overlay.render({ kind: 'idle' })
    this.overlay.render({ kind: 'loading' })
    const r = await previewWithin({ type: 'preview', site: this.site.id, text })
    // a newer keystroke has its own request in flight
    if (seq !== this.seq) return
    this.last = r.ok ? { text, estimate: r } : null
    this.overlay.render(r.ok ? { kind: 'estimate', estimate: r } : { kind: 'failure', failure: r })
    if (r.ok || !r.offline) {
      this.retries = 0
      return
    }
    // the proxy may come back (or finish starting): look again while the text stays the same
    const wait = RETRY_MS[Math.min(this.retries++, RETRY_MS.length - 1)]!
    this.timer = setTimeout(() => {
      if (seq === this.seq && document.visibilityState === 'visible') void this.refresh()
    }, wait)
  }

  private onKeydown(e: KeyboardEvent): void {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && this.inEditor(e.target)) this.sent()
  }

  private onClick(e: MouseEvent): void {
    const t = e.target instanceof Element ? e.target : null
    if (t && this.site.sendButtons.some((s) => t.closest(s))) this.sent()
  }

  /** counted, never held: the page sends as it always does */
  private sent(): void {
    const text = this.editor ? textOf(this.editor) : ''
    if (!text) return
    const now = Date.now()
    // Enter and the button's click can both fire for one send
    if (text === this.lastSent.text && now - this.lastSent.at < 1500) return
    this.lastSent = { text, at: now }
    const e = this.last?.text === text ? this.last.estimate : undefined
    const askedBefore = e ? e.cache.status === 'exact' || e.cache.status === 'semantic' : false
    send({ type: 'sent', site: this.site.id, askedBefore, quotaPct: e?.quotaPct ?? null }).catch(() => undefined)
    // a textarea emptied by the page's script changes no DOM: look again once it has sent
    setTimeout(() => this.rescan(), 500)
  }

  private async showCached(): Promise<void> {
    if (!this.last) return
    const r = await send<CachedAnswer | Failure>({
      type: 'cached-answer',
      site: this.site.id,
      text: this.last.text,
    }).catch((err: Error): Failure => ({ ok: false, offline: true, message: `AgentMesh offline: ${err.message}` }))
    this.overlay.showAnswer(r)
  }
}

const site = siteOf(location.hostname)
if (site) new Watcher(site).start()
