// What `agentmesh dev` / `serve` print once listening: where, with what, and the next steps for
// this config (lines to copy into a shell).
import { VERSION, type AgentMesh } from './app.ts'
import type { Listening } from './cli-listen.ts'
import type { ResolvedMeshConfig } from './types.ts'

const CURL_BODY = JSON.stringify({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'Hello from AgentMesh' }],
})

export function bannerLines(mode: string, at: Listening, mesh: AgentMesh, config: ResolvedMeshConfig): string[] {
  const storage =
    config.storage.driver === 'redis'
      ? 'redis'
      : config.storage.driver === 'fs'
        ? `fs (${mesh.mesh.dataDir})`
        : 'memory'
  return [
    `AgentMesh ${VERSION} (${mode})`,
    `  listening on ${at.url}`,
    ...at.networkURLs.map((u) => `  network   ${u}`),
    ...(at.note ? [`  note      ${at.note}`] : []),
    `  preset    ${config.preset}`,
    `  plugins   ${mesh.plugins.map((p) => p.name).join(' -> ') || '(none)'}`,
    `  storage   ${storage}`,
    `  config    ${config.sources.length ? config.sources.join(', ') : '(none: embedded defaults)'}`,
    `  data dir  ${mesh.mesh.dataDir}`,
    '',
    ...nextSteps(at.url, mesh, config),
  ]
}

/**
 * Next steps that work as printed for this config: the demo vendor needs no key, a required
 * virtual key goes where each client sends its key, and an authenticated event stream needs the
 * admin token.
 */
export function nextSteps(url: string, mesh: AgentMesh, config: ResolvedMeshConfig): string[] {
  const names = mesh.plugins.map((p) => p.name)
  const keysRequired = mesh.plugins.some((p) => p.name === 'keys' && p.options?.required === true)
  const demo = names.includes('vendor:demo')
  const events = `${url}/agentmesh/events`
  const lines: string[] = []
  if (keysRequired) {
    lines.push('Next steps (every client needs a virtual key):')
    lines.push('  npx agentmesh keys create --team eng --user alice     # prints an am-… key; then: export AM_KEY=am-…')
  } else if (demo) {
    lines.push('Next steps (no keys needed: the demo vendor answers every model):')
  } else {
    lines.push(
      "Next steps (vendor keys from ANTHROPIC_API_KEY / OPENAI_API_KEY / GEMINI_API_KEY, else the client's own):",
    )
  }
  // the SDKs send ANTHROPIC_API_KEY / OPENAI_API_KEY as their key: that is where a virtual key goes
  const key = (name: string) => (keysRequired ? ` ${name}=$AM_KEY` : '')
  lines.push(`  ANTHROPIC_BASE_URL=${url}${key('ANTHROPIC_API_KEY')} claude`)
  lines.push(`  export OPENAI_BASE_URL=${url}/v1${key('OPENAI_API_KEY')}`)
  const auth = keysRequired
    ? ` -H "authorization: Bearer $AM_KEY"`
    : demo
      ? ''
      : ` -H "authorization: Bearer $OPENAI_API_KEY"`
  lines.push(`  curl ${url}/v1/chat/completions -H 'content-type: application/json'${auth} -d '${CURL_BODY}'`)
  const admin = config.events.access === 'authenticated' ? ` -H "authorization: Bearer $AGENTMESH_ADMIN_TOKEN"` : ''
  lines.push(`  curl -N ${events}${admin}     # live events`)
  return lines
}
