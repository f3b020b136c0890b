// Who a call is for and which agent run it belongs to, carried through async code by
// AsyncLocalStorage: `withIdentity({ team }, () => client.chat.completions.create(...))` names the
// caller of every model call made inside, however deep, without threading options through.
import { AsyncLocalStorage } from 'node:async_hooks'

export interface SdkIdentity {
  team?: string
  user?: string
  tool?: string
}

export interface CallScope {
  identity?: SdkIdentity
  /** X-AgentMesh-Run-Id: the agent run a call belongs to (the breaker's per-run budgets) */
  runId?: string
  /** any other request headers for the calls inside (X-AgentMesh-Dry-Run, ...) */
  headers?: Record<string, string>
}

const scopes = new AsyncLocalStorage<CallScope>()

/** The scope of the code running now; nested scopes override their parent's fields. */
export function currentScope(): CallScope | undefined {
  return scopes.getStore()
}

/** Run fn with every model call inside it made as this team/user/tool. */
export function withIdentity<T>(identity: SdkIdentity, fn: () => T): T {
  const outer = scopes.getStore()
  return scopes.run({ ...outer, identity: { ...outer?.identity, ...identity } }, fn)
}

/** Run fn as one agent run: every model call inside carries X-AgentMesh-Run-Id. */
export function withRun<T>(runId: string, fn: () => T): T {
  return scopes.run({ ...scopes.getStore(), runId }, fn)
}

/** Run fn with a scope of several fields at once (what the framework integrations use). */
export function withScope<T>(scope: CallScope, fn: () => T): T {
  const outer = scopes.getStore()
  return scopes.run(
    {
      ...outer,
      ...scope,
      identity: { ...outer?.identity, ...scope.identity },
      headers: { ...outer?.headers, ...scope.headers },
    },
    fn,
  )
}

/**
 * The headers a scope (over the wrapper's own defaults) adds to a request. Identity headers are
 * read by the default identity resolver (trustIdentityHeaders); under virtual keys the key decides.
 */
export function scopeHeaders(scope: CallScope | undefined, defaults: CallScope | undefined): Array<[string, string]> {
  const out: Array<[string, string]> = []
  const id = { ...defaults?.identity, ...scope?.identity }
  if (id.team) out.push(['x-agentmesh-team', id.team])
  if (id.user) out.push(['x-agentmesh-user', id.user])
  if (id.tool) out.push(['x-agentmesh-tool', id.tool])
  const run = scope?.runId ?? defaults?.runId
  if (run) out.push(['x-agentmesh-run-id', run])
  for (const h of [defaults?.headers, scope?.headers])
    if (h) for (const [k, v] of Object.entries(h)) out.push([k.toLowerCase(), v])
  return out
}
