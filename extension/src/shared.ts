// What the service worker, the content script, the popup and the options page agree on: the
// settings, the sites, the messages between them and today's figures in chrome.storage.local.

export type SiteId = 'chatgpt' | 'claude' | 'gemini'

export interface Site {
  id: SiteId
  host: string
  /** the protocol of the body the preview is asked for */
  protocol: 'openai' | 'anthropic' | 'gemini'
  defaultModel: string
  /** the input box, most specific first: ProseMirror on chatgpt.com and claude.ai, Quill on Gemini */
  editors: string[]
  /** the send buttons, to count a prompt as sent */
  sendButtons: string[]
}

export const SITES: readonly Site[] = [
  {
    id: 'chatgpt',
    host: 'chatgpt.com',
    protocol: 'openai',
    defaultModel: 'gpt-4o',
    editors: ['#prompt-textarea', 'div.ProseMirror[contenteditable="true"]', 'textarea', '[contenteditable="true"]'],
    sendButtons: ['[data-testid="send-button"]', 'button[aria-label*="Send" i]'],
  },
  {
    id: 'claude',
    host: 'claude.ai',
    protocol: 'anthropic',
    defaultModel: 'claude-sonnet-4-5',
    editors: ['div.ProseMirror[contenteditable="true"]', '[contenteditable="true"]', 'textarea'],
    sendButtons: ['button[aria-label*="Send" i]'],
  },
  {
    id: 'gemini',
    host: 'gemini.google.com',
    protocol: 'gemini',
    defaultModel: 'gemini-2.5-flash',
    editors: ['rich-textarea .ql-editor[contenteditable="true"]', '[contenteditable="true"]', 'textarea'],
    sendButtons: ['button.send-button', 'button[aria-label*="Send" i]'],
  },
]

export function siteOf(hostname: string): Site | undefined {
  const h = hostname.toLowerCase()
  return SITES.find((s) => h === s.host || h.endsWith(`.${s.host}`))
}

export interface Settings {
  /** the proxy's base URL, e.g. http://127.0.0.1:8080 */
  proxyUrl: string
  user: string
  team: string
  /** a virtual key (am-...): required by the team preset; sent as Authorization: Bearer */
  key: string
  /** opt-in: send the browser's direct calls to api.openai.com / api.anthropic.com to the proxy */
  redirect: boolean
  /** the model each site's prompts are estimated for */
  models: Record<SiteId, string>
}

export const DEFAULT_SETTINGS: Settings = {
  proxyUrl: 'http://127.0.0.1:8080',
  user: '',
  team: '',
  key: '',
  redirect: false,
  models: { chatgpt: 'gpt-4o', claude: 'claude-sonnet-4-5', gemini: 'gemini-2.5-flash' },
}

export function mergeSettings(stored: Partial<Settings> | undefined): Settings {
  return { ...DEFAULT_SETTINGS, ...stored, models: { ...DEFAULT_SETTINGS.models, ...stored?.models } }
}

/** Today's figures. `day` is the local date they belong to; another day starts from zero. */
export interface Stats {
  day: string
  /** prompts sent on the three sites while the overlay watched */
  prompts: number
  /** prompts the proxy's cache already had an answer for when they were sent or shown */
  askedBefore: number
  /** cached answers shown instead of sending */
  cacheHits: number
  savedTokens: number
  savedUsd: number
  /** the team's budget left, in percent, from the latest answer's X-AgentMesh-Quota-Pct; null: no quota */
  budgetLeftPct: number | null
  /** the last time the proxy answered (ms since epoch) */
  lastContact: number | null
}

export const localDay = (t = Date.now()): string => {
  const d = new Date(t)
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`
}

export const emptyStats = (day = localDay()): Stats => ({
  day,
  prompts: 0,
  askedBefore: 0,
  cacheHits: 0,
  savedTokens: 0,
  savedUsd: 0,
  budgetLeftPct: null,
  lastContact: null,
})

/** What the overlay shows for one prompt: the proxy's preview, reduced. */
export interface Estimate {
  ok: true
  model: string
  vendor: string
  inputTokens: number
  inputUsd: number
  outcome: 'vendor' | 'cache' | 'blocked' | 'held'
  cache: { status: string; similarity?: number; savedTokens?: number; savedUsd?: number }
  team: string
  user: string
  quotaPct: number | null
  guards: Array<{ guard: string; action: 'block' | 'hold'; message: string }>
}

export interface Failure {
  ok: false
  /** one line for the overlay */
  message: string
  /** the proxy could not be reached (down, slow, refused) rather than answered with an error */
  offline: boolean
}

export type Message =
  | { type: 'preview'; site: SiteId; text: string }
  | { type: 'cached-answer'; site: SiteId; text: string }
  | { type: 'sent'; site: SiteId; askedBefore: boolean; quotaPct: number | null }
  | { type: 'status' }
  | { type: 'settings-changed' }

export interface CachedAnswer {
  ok: true
  text: string
  cache: string
  savedTokens: number
  savedUsd: number
}

export interface Status {
  connected: boolean
  message: string
  proxyUrl: string
  dashboardUrl: string
  stats: Stats
  settings: Settings
}

export const formatUsd = (n: number): string =>
  n >= 0.01 ? `$${n.toFixed(2)}` : `$${n.toFixed(6).replace(/0+$/, '').replace(/\.$/, '')}`
