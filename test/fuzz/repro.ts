// Reproductions a person can paste: the exact replay (`npm run fuzz -- --seed S --case I`), and
// a curl line when curl can send the bytes, else a few lines of node over a raw socket.
import type { FuzzCase } from './cases.ts'

const TARGETS = {
  mock: 'solo preset, vendors at a mock upstream (test/fuzz/server.ts)',
  demo: 'demo preset (npx agentmesh dev)',
} as const

/** bash $'...' quoting of latin1 bytes */
function ansiC(s: string): string {
  let out = ''
  for (const ch of s) {
    const code = ch.charCodeAt(0)
    if (ch === "'" || ch === '\\') out += '\\' + ch
    else if (code < 0x20 || code >= 0x7f) out += '\\x' + code.toString(16).padStart(2, '0')
    else out += ch
  }
  return `$'${out}'`
}

const shellSingle = (s: string) => `'${s.replace(/'/g, "'\\''")}'`
const controls = /[\x00-\x1f\x7f]/

function curl(c: FuzzCase, port: string): string | null {
  if (c.framing !== 'content-length' || controls.test(c.path) || c.path.includes(' ')) return null
  if (c.headers.some(([k, v]) => k === '\u0000no-host' || controls.test(v) || v.length > 4000) || c.headers.length > 20)
    return null
  const parts = ['curl -sS -i --path-as-is', c.method === 'HEAD' ? '-I' : `-X ${c.method}`]
  parts.push(ansiC(`http://127.0.0.1:${port}${c.path}`))
  for (const [k, v] of c.headers) parts.push('-H', ansiC(`${k}: ${v}`))
  if (c.method !== 'GET' && c.method !== 'HEAD' && c.body.length) {
    if (c.body.length <= 1500) parts.push('--data-binary', ansiC(c.body.toString('latin1')))
    else if (c.bodyExpr)
      parts.push('--data-binary', `@<(node -e ${shellSingle(`process.stdout.write(${c.bodyExpr})`)})`)
    else return null
  }
  if (c.abort)
    parts.push(
      c.abort.afterMs !== undefined
        ? `--max-time ${Math.max(0.001, c.abort.afterMs / 1000)}`
        : `| head -c ${c.abort.afterBytes}`,
    )
  return parts.join(' ')
}

function nodeSnippet(c: FuzzCase, port: string): string | null {
  const body =
    c.bodyExpr ?? (c.body.length <= 1500 ? `Buffer.from(${JSON.stringify(c.body.toString('base64'))},"base64")` : null)
  if (body === null || c.framing !== 'content-length') return null
  const head = [
    `${c.method} ${c.path} HTTP/1.1`,
    ...(c.headers.some(([k]) => k === 'host' || k === '\u0000no-host') ? [] : [`host: 127.0.0.1:${port}`]),
    ...c.headers.filter(([k]) => k !== '\u0000no-host').map(([k, v]) => `${k}: ${v}`),
  ].join('\r\n')
  const js = `const b=Buffer.from(${body});const s=require("net").connect(${port},"127.0.0.1");s.end(Buffer.concat([Buffer.from(${JSON.stringify(head)}+"\\r\\ncontent-length: "+b.length+"\\r\\nconnection: close\\r\\n\\r\\n","latin1"),b]));s.pipe(process.stdout)`
  return `node -e ${shellSingle(js)}`
}

export function reproOf(c: FuzzCase, port = '8080'): string {
  const lines = [
    `# target: ${TARGETS[c.target]}; case ${c.index} of seed ${c.seed} (corpus ${c.seedName}); mutations: ${c.mutations.join(' | ') || 'none'}`,
  ]
  if (Object.keys(c.upstream).length && c.target === 'mock')
    lines.push(`# mock upstream behaviour: ${JSON.stringify(c.upstream)}`)
  lines.push(`npm run fuzz -- --seed ${c.seed} --case ${c.index}`)
  // a line nobody can read is no reproduction: long ones are left to --dump
  const one = [curl(c, port), nodeSnippet(c, port)].find((l) => l && l.length <= 1500)
  lines.push(
    one ??
      `# (request of ${c.body.length} body bytes; write it out with: npm run fuzz -- --seed ${c.seed} --case ${c.index} --dump DIR)`,
  )
  return lines.join('\n')
}
