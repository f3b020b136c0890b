// The popup: connection state, the proxy URL and today's figures. The figures live in
// chrome.storage.local and are shown from there at once; the worker's status call (which wakes it
// if the browser stopped it) then adds the connection state.
import { emptyStats, formatUsd, localDay, type Stats, type Status } from './shared.ts'

const $ = <T extends HTMLElement>(sel: string) => document.querySelector(sel) as T

function show(s: Stats): void {
  const set = (metric: string, v: string) => {
    $(`[data-metric="${metric}"] dd`).textContent = v
  }
  set('prompts', s.prompts.toLocaleString('en-US'))
  set('asked-before', s.askedBefore.toLocaleString('en-US'))
  set('cache-hits', s.cacheHits.toLocaleString('en-US'))
  set('saved-tokens', s.savedTokens.toLocaleString('en-US'))
  set('saved-usd', formatUsd(s.savedUsd))
  set('budget-left', s.budgetLeftPct === null ? '–' : `${s.budgetLeftPct}%`)
}

async function main(): Promise<void> {
  const { stats } = await chrome.storage.local.get('stats')
  const st = stats as Stats | undefined
  show(st && st.day === localDay() ? st : emptyStats())
  const state = $('#state')
  try {
    const s = (await chrome.runtime.sendMessage({ type: 'status' })) as Status
    state.dataset.connected = String(s.connected)
    state.textContent = s.connected ? 'connected' : 'offline'
    state.title = s.message
    $('#proxy').textContent = s.connected ? s.proxyUrl : s.message
    $<HTMLAnchorElement>('#dashboard').href = s.dashboardUrl
    show(s.stats)
  } catch (err) {
    state.dataset.connected = 'false'
    state.textContent = 'offline'
    $('#proxy').textContent = `the extension's worker did not answer: ${(err as Error).message}`
  }
}

void main()
