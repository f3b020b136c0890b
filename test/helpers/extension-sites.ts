// Local HTTPS stand-ins for chatgpt.com (a textarea page), claude.ai (a ProseMirror-style
// contenteditable page) and gemini.google.com (a Quill contenteditable), each a small single-page
// app whose "New chat" link replaces the input box without a page load. The browser reaches them through --host-resolver-rules; the
// certificate is self-signed, made at test time with node:crypto. api.openai.com and
// api.anthropic.com are mapped here too and answer 418: a call the redirect missed is visible.
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto'
import { createServer, type Server } from 'node:https'

export const FAKE_HOSTS = ['chatgpt.com', 'claude.ai', 'gemini.google.com', 'api.openai.com', 'api.anthropic.com']

export interface Sites {
  port: number
  /** what reached the fixture for the vendor API hosts (should be nothing when redirected) */
  apiHits: string[]
  close(): Promise<void>
}

// DER, just what a self-signed certificate needs
const der = (tag: number, ...parts: Buffer[]): Buffer => {
  const body = Buffer.concat(parts)
  const n = body.length
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff])
  return Buffer.concat([Buffer.from([tag]), len, body])
}
const seq = (...p: Buffer[]) => der(0x30, ...p)
const oid = (dotted: string): Buffer => {
  const [a, b, ...rest] = dotted.split('.').map(Number)
  const bytes = [a! * 40 + b!]
  for (const v of rest) {
    const chunk = [v & 0x7f]
    for (let x = v >> 7; x > 0; x >>= 7) chunk.unshift((x & 0x7f) | 0x80)
    bytes.push(...chunk)
  }
  return der(0x06, Buffer.from(bytes))
}
const utcTime = (d: Date) => der(0x17, Buffer.from(d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z'))
const name = (cn: string) => seq(der(0x31, seq(oid('2.5.4.3'), der(0x0c, Buffer.from(cn)))))

/** A self-signed P-256 certificate for the fake hosts, made with node:crypto (no openssl needed). */
function certificate(): { key: string; cert: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const ecdsaSha256 = seq(oid('1.2.840.10045.4.3.2'))
  const now = Date.now()
  const san = seq(...FAKE_HOSTS.map((h) => der(0x82, Buffer.from(h))))
  const tbs = seq(
    der(0xa0, der(0x02, Buffer.from([2]))),
    der(0x02, randomBytes(8).fill(0x01, 0, 1)),
    ecdsaSha256,
    name('agentmesh test'),
    seq(utcTime(new Date(now - 3_600_000)), utcTime(new Date(now + 2 * 86_400_000))),
    name('agentmesh test'),
    publicKey.export({ type: 'spki', format: 'der' }),
    der(0xa3, seq(seq(oid('2.5.29.17'), der(0x04, san)))),
  )
  const signature = sign('sha256', tbs, privateKey)
  const cert = seq(tbs, ecdsaSha256, der(0x03, Buffer.from([0]), signature))
  const pem = `-----BEGIN CERTIFICATE-----\n${cert
    .toString('base64')
    .match(/.{1,64}/g)!
    .join('\n')}\n-----END CERTIFICATE-----\n`
  return { key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: pem }
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
  // sent: the box is emptied in place, as the real sites do
  form.addEventListener('submit', (e) => { e.preventDefault(); const box = form.querySelector('textarea, [contenteditable]'); window.sent.push(box.value ?? box.innerText); if (box.value !== undefined) box.value = ''; else box.innerHTML = '<p><br></p>' })
  form.firstElementChild.addEventListener('keydown', (e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); form.requestSubmit() } })
}
document.getElementById('new-chat').addEventListener('click', (e) => { e.preventDefault(); history.pushState({}, '', '/c/' + Date.now()); render() })
render()
${API_CALL}
</script></body></html>`
}

const PAGES: Record<string, string> = {
  'chatgpt.com': page('ChatGPT (fixture)', `<textarea id="prompt-textarea" placeholder="Ask anything"></textarea>`),
  'claude.ai': page(
    'Claude (fixture)',
    `<div class="ProseMirror" contenteditable="true" role="textbox" translate="no"><p><br></p></div>`,
  ),
  // Gemini's input is a Quill editor inside a <rich-textarea> element
  'gemini.google.com': page(
    'Gemini (fixture)',
    `<rich-textarea style="flex:1;display:block"><div class="ql-editor" contenteditable="true" role="textbox" style="min-height:48px;padding:10px;border:1px solid #ccc;border-radius:12px;background:#fff"><p><br></p></div></rich-textarea>`,
  ),
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
    res.writeHead(req.method === 'OPTIONS' ? 204 : 418, {
      'access-control-allow-origin': '*',
      'access-control-allow-headers': '*',
      'content-type': 'text/plain',
    })
    res.end(req.method === 'OPTIONS' ? '' : 'not redirected: the fixture answered instead of AgentMesh')
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      resolve({
        port,
        apiHits,
        close: () =>
          new Promise((r) => {
            server.closeAllConnections()
            server.close(() => r())
          }),
      })
    })
  })
}
