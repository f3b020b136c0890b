// The options page: proxy URL, virtual key, user, team, the model per site and the redirect
// switch. A proxy that is not on loopback needs a host permission, asked for on save.
import { mergeSettings, type Settings, SITES } from './shared.ts'

const form = document.querySelector('#options') as HTMLFormElement
const field = (name: string) => form.elements.namedItem(name) as HTMLInputElement

async function load(): Promise<void> {
  const { settings } = await chrome.storage.local.get('settings')
  const s = mergeSettings(settings as Partial<Settings> | undefined)
  field('proxyUrl').value = s.proxyUrl
  field('key').value = s.key
  field('user').value = s.user
  field('team').value = s.team
  field('redirect').checked = s.redirect
  for (const site of SITES) field(`model-${site.id}`).value = s.models[site.id]
  form.dataset.loaded = 'true'
}

function read(): Settings {
  const base = mergeSettings(undefined)
  const models = { ...base.models }
  for (const site of SITES) models[site.id] = field(`model-${site.id}`).value.trim() || site.defaultModel
  return {
    proxyUrl: field('proxyUrl').value.trim().replace(/\/+$/, ''),
    key: field('key').value.trim(),
    user: field('user').value.trim(),
    team: field('team').value.trim(),
    redirect: field('redirect').checked,
    models,
  }
}

const loopback = (u: URL) => u.hostname === '127.0.0.1' || u.hostname === 'localhost'

form.addEventListener('submit', async (e) => {
  e.preventDefault()
  const out = document.querySelector('#saved') as HTMLOutputElement
  const s = read()
  const url = new URL(s.proxyUrl)
  // must run in the click's user gesture: ask before any other await
  if (!loopback(url) && !(await chrome.permissions.request({ origins: [`${url.origin}/*`] }))) {
    out.textContent = `Not saved: the extension needs permission to reach ${url.origin}`
    return
  }
  await chrome.storage.local.set({ settings: s })
  await chrome.runtime.sendMessage({ type: 'settings-changed' })
  out.textContent = 'Saved.'
})

void load()
