// LangChain.js / LangGraph.js: every model call a graph makes goes through the mesh and carries
// the graph run's id as X-AgentMesh-Run-Id, so the breaker's per-run budgets see one agent run.
//   const lc = agentMeshLangChain(mesh, { identity: { team: 'eng' } })
//   const llm = new ChatOpenAI({ model, configuration: { fetch: lc.fetch } })   // ChatAnthropic: clientOptions
//   await graph.invoke(input, { callbacks: [lc.handler] })
// A callback handler cannot change how a model sends its request, so governing is the chat model's
// own `fetch` option; the handler only learns which run a call belongs to. LangChain keeps the
// running step's config in its AsyncLocalStorage; the fetch reads the step's run id from it and the
// handler maps that to the root run (the graph invocation). This entry imports @langchain/core,
// an optional peer, so it is its own export: agentmesh/sdk/langchain.
import { BaseCallbackHandler } from '@langchain/core/callbacks/base'
import { AsyncLocalStorageProviderSingleton } from '@langchain/core/singletons'
import { currentScope, type SdkIdentity } from './context.ts'
import { MESH_FETCH, type MeshFetch, type SdkMesh } from './mesh.ts'

export interface LangChainOptions {
  identity?: SdkIdentity
  /** a fixed run id for every call; default: the graph invocation's own run id */
  runId?: string
  /** how a root run id becomes X-AgentMesh-Run-Id (default: as it is, a UUID) */
  runName?: (rootRunId: string) => string
  headers?: Record<string, string>
}

// a graph that never ends (a crash mid-run) must not grow the map without bound
const MAX_RUNS = 10_000

/** Records which run started which, so any step's run id leads to its graph invocation. */
export class AgentMeshCallbackHandler extends BaseCallbackHandler {
  name = 'agentmesh'
  // the map must be written before the model's request goes out, not in the background
  override awaitHandlers = true
  #parents = new Map<string, string | undefined>()

  #start(runId: string, parentRunId?: string) {
    if (this.#parents.size >= MAX_RUNS) this.#parents.delete(this.#parents.keys().next().value!)
    this.#parents.set(runId, parentRunId)
  }
  #end(runId: string) {
    this.#parents.delete(runId)
  }
  override handleChainStart(_c: unknown, _i: unknown, runId: string, parentRunId?: string) {
    this.#start(runId, parentRunId)
  }
  override handleChatModelStart(_l: unknown, _m: unknown, runId: string, parentRunId?: string) {
    this.#start(runId, parentRunId)
  }
  override handleLLMStart(_l: unknown, _p: unknown, runId: string, parentRunId?: string) {
    this.#start(runId, parentRunId)
  }
  override handleToolStart(_t: unknown, _i: unknown, runId: string, parentRunId?: string) {
    this.#start(runId, parentRunId)
  }
  override handleChainEnd(_o: unknown, runId: string) {
    this.#end(runId)
  }
  override handleChainError(_e: unknown, runId: string) {
    this.#end(runId)
  }
  override handleLLMEnd(_o: unknown, runId: string) {
    this.#end(runId)
  }
  override handleLLMError(_e: unknown, runId: string) {
    this.#end(runId)
  }
  override handleToolEnd(_o: unknown, runId: string) {
    this.#end(runId)
  }
  override handleToolError(_e: unknown, runId: string) {
    this.#end(runId)
  }

  /** the outermost run this handler saw above runId (runId itself when it knows none) */
  rootOf(runId: string): string {
    let id = runId
    for (let i = 0; i < 1000; i++) {
      const parent = this.#parents.get(id)
      if (!parent) return id
      id = parent
    }
    return id
  }
}

interface LangChainConfig {
  metadata?: Record<string, unknown>
  callbacks?: { getParentRunId?(): string | undefined }
}

/** The run of the LangChain step running now: metadata.agentmesh_run_id, else its root run. */
function langChainRun(handler: AgentMeshCallbackHandler): string | undefined {
  const config = AsyncLocalStorageProviderSingleton.getRunnableConfig() as LangChainConfig | undefined
  const named = config?.metadata?.agentmesh_run_id
  if (typeof named === 'string') return named
  const step = config?.callbacks?.getParentRunId?.()
  return step ? handler.rootOf(step) : undefined
}

export interface AgentMeshLangChain {
  /** for ChatOpenAI({ configuration: { fetch } }), ChatAnthropic({ clientOptions: { fetch } }) */
  fetch: MeshFetch
  /** pass in the invocation's callbacks: graph.invoke(input, { callbacks: [handler] }) */
  handler: AgentMeshCallbackHandler
}

export function agentMeshLangChain(mesh: SdkMesh, options: LangChainOptions = {}): AgentMeshLangChain {
  if (!mesh || typeof mesh.fetchFor !== 'function')
    throw new TypeError('agentMeshLangChain: pass the result of createMesh()')
  const handler = new AgentMeshCallbackHandler()
  const base = {
    ...(options.identity ? { identity: options.identity } : {}),
    ...(options.headers ? { headers: options.headers } : {}),
  }
  const plain = mesh.fetchFor({ ...base, ...(options.runId ? { runId: options.runId } : {}) })
  const fetch: MeshFetch = (input, init) => {
    // withRun() around the call, or a fixed runId, wins over the graph's own run
    if (options.runId || currentScope()?.runId) return plain(input, init)
    const root = langChainRun(handler)
    if (!root) return plain(input, init)
    return mesh.fetchFor({ ...base, runId: options.runName ? options.runName(root) : root })(input, init)
  }
  return { fetch: Object.assign(fetch, { [MESH_FETCH]: true }), handler }
}
