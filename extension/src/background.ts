// The service worker: the only part that talks to the proxy. It answers the overlay's previews,
// fetches a cached answer when the user asks for it, keeps today's figures in
// chrome.storage.local (they outlive the worker, which the browser stops whenever it likes) and
// keeps the redirect rules in step with the options.
import { ask, baseUrl, health, preview } from './proxy.ts'
import { applyRedirect } from './redirect.ts'
import {
  type CachedAnswer,
  emptyStats,
  type Failure,
  localDay,
  type Message,
  mergeSettings,
  type Settings,
  type Stats,
  type Status,
} from './shared.ts'

async function settings(): Promise<Settings> {
  const { settings } = await chrome.storage.local.get('settings')
  return mergeSettings(settings as Partial<Settings> | undefined)
}

async function stats(): Promise<Stats> {
  const { stats } = await chrome.storage.local.get('stats')
  const s = stats as Stats | undefined
  return s && s.day === localDay() ? s : emptyStats()
}

// updates are read-modify-write on one key: chain them so two messages never lose a count
let pending: Promise<unknown> = Promise.resolve()
function updateStats(change: (s: Stats) => void): Promise<Stats> {
  const next = pending.then(async () => {
    const s = await stats()
    change(s)
    await chrome.storage.local.set({ stats: s })
    return s
  })
  pending = next.catch(() => undefined)
  return next
}

const budgetLeft = (quotaPct: number | null): number | null =>
  quotaPct === null ? null : Math.max(0, Math.round((100 - quotaPct) * 10) / 10)

async function status(): Promise<Status> {
  const s = await settings()
  const h = await health(s)
  const st = h.ok
    ? await updateStats((x) => {
        x.lastContact = Date.now()
      })
    : await stats()
  return {
    connected: h.ok,
    message: h.message,
    proxyUrl: baseUrl(s),
    dashboardUrl: `${baseUrl(s)}/agentmesh/`,
    stats: st,
    settings: s,
  }
}

async function handle(msg: Message): Promise<unknown> {
  switch (msg.type) {
    case 'preview': {
      const r = await preview(await settings(), msg.site, msg.text)
      if (r.ok)
        await updateStats((x) => {
          x.lastContact = Date.now()
          if (r.quotaPct !== null) x.budgetLeftPct = budgetLeft(r.quotaPct)
        })
      return r
    }
    case 'cached-answer': {
      const r = await ask(await settings(), msg.site, msg.text)
      if ('ok' in r) return r satisfies Failure
      const hit = r.cache === 'exact' || r.cache === 'semantic'
      await updateStats((x) => {
        x.lastContact = Date.now()
        if (hit) {
          x.cacheHits++
          x.savedTokens += r.savedTokens
          x.savedUsd += r.savedUsd
        }
        if (r.quotaPct !== null) x.budgetLeftPct = budgetLeft(r.quotaPct)
      })
      return {
        ok: true,
        text: r.text,
        cache: r.cache,
        savedTokens: r.savedTokens,
        savedUsd: r.savedUsd,
      } satisfies CachedAnswer
    }
    case 'sent':
      await updateStats((x) => {
        x.prompts++
        if (msg.askedBefore) x.askedBefore++
        if (msg.quotaPct !== null) x.budgetLeftPct = budgetLeft(msg.quotaPct)
      })
      return { ok: true }
    case 'status':
      return status()
    case 'settings-changed':
      await applyRedirect(await settings())
      return { ok: true }
  }
}

chrome.runtime.onMessage.addListener((msg: Message, _sender, sendResponse) => {
  handle(msg).then(sendResponse, (err: Error) =>
    sendResponse({ ok: false, offline: false, message: `AgentMesh extension error: ${err.message}` } satisfies Failure),
  )
  // the answer comes asynchronously
  return true
})

// the dynamic rules persist across restarts; re-apply on install/update so a changed rule shape lands
chrome.runtime.onInstalled.addListener(() => {
  settings()
    .then(applyRedirect)
    .catch(() => undefined)
})
