// LangGraph.js through agentMeshLangChain: a graph of two model calls (two nodes, one
// ChatOpenAI each), both governed by the mesh and named as one run (X-AgentMesh-Run-Id), a second
// invocation another run; a run can also be named through the invocation's metadata.
import { ChatOpenAI } from '@langchain/openai'
import { Annotation, END, START, StateGraph } from '@langchain/langgraph'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { definePlugin } from '../core/plugin.ts'
import { createMesh, type SdkMesh } from '../core/sdk/index.ts'
import { agentMeshLangChain } from '../core/sdk/langchain.ts'
import { openai } from '../plugins/vendors/openai.ts'
import { clearVendorEnv, tempDir } from './helpers/core-harness.ts'
import { mockText, startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'

const seen: Array<{ team: string; run: string | null; path: string }> = []
const recorder = definePlugin({
  name: 'test:runs',
  hooks: {
    beforeRequest: (ctx) =>
      void seen.push({
        team: ctx.identity.team,
        run: ctx.request.headers.get('x-agentmesh-run-id'),
        path: new URL(ctx.request.url).pathname,
      }),
  },
})

let mock: MockUpstream
let mesh: SdkMesh
beforeAll(async () => {
  clearVendorEnv()
  mock = await startMockUpstream({})
  mesh = await createMesh({
    config: {
      log: { level: 'silent' },
      dataDir: tempDir(),
      plugins: [recorder, openai({ baseURL: mock.url, apiKey: 'sk-configured' })],
    },
  })
})
afterAll(async () => {
  await mesh.close()
  await mock.close()
})

function graphOf(fetch: typeof globalThis.fetch) {
  const llm = new ChatOpenAI({ model: 'gpt-4o-mini', apiKey: 'sk-unused', maxRetries: 0, configuration: { fetch } })
  const State = Annotation.Root({
    question: Annotation<string>(),
    draft: Annotation<string>(),
    answer: Annotation<string>(),
  })
  return new StateGraph(State)
    .addNode('write', async (s) => ({ draft: String((await llm.invoke(s.question)).content) }))
    .addNode('check', async (s) => ({ answer: String((await llm.invoke(`review: ${s.draft}`)).content) }))
    .addEdge(START, 'write')
    .addEdge('write', 'check')
    .addEdge('check', END)
    .compile()
}

describe('LangGraph.js', () => {
  it('both model calls of a graph run go through the mesh as one named run', async () => {
    const lc = agentMeshLangChain(mesh, { identity: { team: 'graph-team' } })
    const graph = graphOf(lc.fetch)
    const before = seen.length
    const calls = mock.received.length
    const out = await graph.invoke({ question: 'plan the trip' }, { callbacks: [lc.handler] })
    expect(out.draft).toBe(mockText('plan the trip'))
    expect(out.answer).toBe(mockText(`review: ${mockText('plan the trip')}`))
    const mine = seen.slice(before)
    expect(mine).toHaveLength(2)
    expect(mock.received.length - calls).toBe(2)
    expect(mine.every((s) => s.team === 'graph-team' && s.path === '/v1/chat/completions')).toBe(true)
    expect(mine[0]!.run).toMatch(/^[0-9a-f-]{36}$/)
    expect(mine[1]!.run).toBe(mine[0]!.run)

    // another invocation is another run
    const next = seen.length
    await graph.invoke({ question: 'plan another trip' }, { callbacks: [lc.handler] })
    const again = seen.slice(next)
    expect(again).toHaveLength(2)
    expect(again[0]!.run).toBe(again[1]!.run)
    expect(again[0]!.run).not.toBe(mine[0]!.run)
  })

  it('a run named in the invocation metadata', async () => {
    const lc = agentMeshLangChain(mesh)
    const before = seen.length
    await graphOf(lc.fetch).invoke(
      { question: 'named run' },
      { callbacks: [lc.handler], metadata: { agentmesh_run_id: 'trip-planner-42' } },
    )
    expect(seen.slice(before).map((s) => s.run)).toEqual(['trip-planner-42', 'trip-planner-42'])
  })
})
