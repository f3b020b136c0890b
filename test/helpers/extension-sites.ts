// Local HTTPS stand-ins for chatgpt.com (a textarea page), claude.ai (a ProseMirror-style
// contenteditable page) and gemini.google.com (a Quill contenteditable), each a small single-page app whose "New chat" link replaces the input
// box without a page load. The browser reaches them through --host-resolver-rules; the
// certificate is self-signed, made at test time with openssl. api.openai.com and
// api.anthropic.com are mapped here too and answer 418: a call the redirect missed is visible.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const FAKE_HOSTS = ['chatgpt.com', 'claude.ai', 'gemini.google.com', 'api.openai.com', 'api.anthropic.com']

export interface Sites {
  port: number
  /** what reached the fixture for the vendor API hosts (should be nothing when redirected) */
  apiHits: string[]
  close(): Promise<void>
}

function certificate(): { key: Buffer; cert: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'agentmesh-ext-cert-'))
  try {
    const san = `subjectAltName=${FAKE_HOSTS.map((h) => `DNS:${h}`).join(',')}`
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', '/CN=chatgpt.com', '-addext', san], { stdio: 'ignore' })
    return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const STYLE = `body{font:16px system-ui,sans-serif;margin:0;background:#f7f7f8}nav{padding:12px 24px}main{padding:24px}
#composer{position:fixed;bottom:40px;left:15%;width:70%;display:flex;gap:8px;align-items:flex-end}
#prompt-textarea,.ProseMirror{flex:1;min-height:48px;padding:10px;border:1px solid #ccc;border-radius:12px;background:#fff;font:inherit}
.ProseMirror p{margin:0}`

// the page's own fetch of the vendor API: what a web app that calls OpenAI from the browser does
const API_CALL = `window.callOpenAI = async (prompt, key) => {
  const res = await fetch('https://api.openai.com/v1/chat/completions', { method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer ' + key },
    body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: prompt }] }) })
  return read(res)
}
window.callAnthropic = async (prompt, key) => {
  const res = await fetch('https://api.anthropic.com/v1/messages', { method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': key, 'anthropic-version': '2023-06-01', 'anthropic-dangerous-direct-browser-access': 'true' },
    body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 100, messages: [{ role: 'user', content: prompt }] }) })
  return read(res)
}
async function read(res) {
  const headers = {}; res.headers.forEach((v, k) => { headers[k] = v })
  return { status: res.status, url: res.url, headers, body: await res.text() }
}`

function page(title: string, composer: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title><style>${STYLE}</style></head>
<body><nav><a href="/c/new" id="new-chat">New chat</a></nav><main id="app"></main>
<script>
window.sent = []
function render() {
  document.getElementById('app').innerHTML = '<h1>' + location.pathname + '</h1><form id="composer">${composer}<button type="submit" data-testid="send-button" aria-label="Send prompt">Send</button></form>'
  const form = document.getElementById('composer')
  form.addEventListener('submit', (e) => { e.preventDefault(); const box = form.firstElementChild; window.sent.push(box.value ?? box.innerText); render() })
  form.firstElementChild.addEventListener('keydown', (e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); form.requestSubmit() } })
}
document.getElementById('new-chat').addEventListener('click', (e) => { e.preventDefault(); history.pushState({}, '', '/c/' + Date.now()); render() })
render()
${API_CALL}
</script></body></html>`
}

const PAGES: Record<string, string> = {
  'chatgpt.com': page('ChatGPT (fixture)', `<textarea id="prompt-textarea" placeholder="Ask anything"></textarea>`),
  'claude.ai': page('Claude (fixture)', `<div class="ProseMirror" contenteditable="true" role="textbox" translate="no"><p><br></p></div>`),
  // Gemini's input is a Quill editor inside a <rich-textarea> element
  'gemini.google.com': page('Gemini (fixture)', `<rich-textarea style="flex:1;display:block"><div class="ql-editor" contenteditable="true" role="textbox" style="min-height:48px;padding:10px;border:1px solid #ccc;border-radius:12px;background:#fff"><p><br></p></div></rich-textarea>`),
}

export function startSites(port = 0): Promise<Sites> {
  const apiHits: string[] = []
  const server: Server = createServer(certificate(), (req, res) => {
    const host = (req.headers.host ?? '').replace(/:\d+$/, '')
    const html = PAGES[host]
    if (html && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
      return res.end(html)
    }
    apiHits.push(`${req.method} ${host}${req.url}`)
    // answer preflights so a missed redirect shows as 418 on the real call, not as a CORS error
    res.writeHead(req.method === 'OPTIONS' ? 204 : 418, { 'access-control-allow-origin': '*', 'access-control-allow-headers': '*', 'content-type': 'text/plain' })
    res.end(req.method === 'OPTIONS' ? '' : 'not redirected: the fixture answered instead of AgentMesh')
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      resolve({ port, apiHits, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()) }) })
    })
  })
}
