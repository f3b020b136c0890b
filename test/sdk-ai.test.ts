// The Vercel AI SDK through agentMeshMiddleware: generateText and streamText with the OpenAI
// (Responses API and Chat Completions) and Anthropic providers, every call governed by the mesh
// (the mock upstream sees the mesh's configured key, events name the identity), none by the
// provider's own transport.
import { createAnthropic } from '@ai-sdk/anthropic'
import { createOpenAI } from '@ai-sdk/openai'
import { APICallError, generateText, streamText, wrapLanguageModel } from 'ai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { agentMeshMiddleware } from '../core/sdk/ai.ts'
import { createMesh, type SdkMesh } from '../core/sdk/index.ts'
import type { MeshEvent } from '../core/types.ts'
import { quota } from '../plugins/quota/index.ts'
import { anthropic } from '../plugins/vendors/anthropic.ts'
import { openai } from '../plugins/vendors/openai.ts'
import { clearVendorEnv, tempDir } from './helpers/core-harness.ts'
import { mockText, startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'

let mock: MockUpstream
let mesh: SdkMesh
const events: MeshEvent[] = []
// the providers as a program creates them: their own keys and default base URLs, no fetch option
const openaiProvider = createOpenAI({ apiKey: 'sk-provider-own' })
const anthropicProvider = createAnthropic({ apiKey: 'sk-ant-provider-own' })

beforeAll(async () => {
  clearVendorEnv()
  mock = await startMockUpstream({})
  mesh = await createMesh({
    config: {
      log: { level: 'silent' },
      dataDir: tempDir(),
      plugins: [
        quota({ limits: { teams: { tiny: { tokensPerDay: 5 } } } }),
        openai({ baseURL: mock.url, apiKey: 'sk-configured' }),
        anthropic({ baseURL: mock.url, apiKey: 'sk-ant-configured' }),
      ],
    },
  })
  mesh.on((e) => events.push(e))
})
afterAll(async () => {
  await mesh.close()
  await mock.close()
})

const identityOf = (requestId: unknown) =>
  (events.find((e) => e.type === 'request' && (e.data as any).id === requestId)?.data as any)?.identity

describe('agentMeshMiddleware', () => {
  const middleware = () => agentMeshMiddleware(mesh, { identity: { team: 'eng', user: 'vercel' } })

  it('generateText (OpenAI Responses API) through the mesh, governance in providerMetadata', async () => {
    const model = wrapLanguageModel({ model: openaiProvider('gpt-4o-mini'), middleware: middleware() })
    const r = await generateText({ model, prompt: 'ai sdk generate', maxRetries: 0 })
    expect(r.text).toBe(mockText('ai sdk generate'))
    expect(mock.received.at(-1)!.path).toBe('/v1/responses')
    expect(mock.received.at(-1)!.headers.authorization).toBe('Bearer sk-configured')
    const g = r.providerMetadata?.agentmesh as any
    expect(g.vendor).toBe('openai')
    expect(identityOf(g.requestId)).toMatchObject({ team: 'eng', user: 'vercel' })
  })

  it('streamText (Chat Completions) through the mesh', async () => {
    const model = wrapLanguageModel({ model: openaiProvider.chat('gpt-4o-mini'), middleware: middleware() })
    const r = streamText({ model, prompt: 'ai sdk stream', maxRetries: 0 })
    let text = ''
    for await (const t of r.textStream) text += t
    expect(text).toBe(mockText('ai sdk stream'))
    const headers = (await r.response).headers ?? {}
    expect(headers['x-agentmesh-vendor']).toBe('openai')
    expect(mock.received.at(-1)!.path).toBe('/v1/chat/completions')
  })

  it('Anthropic: generate and stream, per-call identity from providerOptions', async () => {
    const model = wrapLanguageModel({ model: anthropicProvider('claude-haiku-4-5'), middleware: middleware() })
    const g = await generateText({
      model,
      prompt: 'anthropic via ai',
      maxRetries: 0,
      providerOptions: { agentmesh: { team: 'research' } },
    })
    expect(g.text).toBe(mockText('anthropic via ai'))
    expect(mock.received.at(-1)!.headers['x-api-key']).toBe('sk-ant-configured')
    expect(identityOf((g.providerMetadata?.agentmesh as any)?.requestId)).toMatchObject({ team: 'research' })
    const s = streamText({ model, prompt: 'anthropic stream via ai', maxRetries: 0 })
    expect(await s.text).toBe(mockText('anthropic stream via ai'))
  })

  it("a quota block is the AI SDK's APICallError with status 429 and the AgentMesh message", async () => {
    const model = wrapLanguageModel({
      model: openaiProvider.chat('gpt-4o-mini'),
      middleware: agentMeshMiddleware(mesh, { identity: { team: 'tiny' } }),
    })
    const err = await generateText({ model, prompt: 'over budget', maxRetries: 0 }).catch((e) => e)
    expect(APICallError.isInstance(err)).toBe(true)
    expect(err.statusCode).toBe(429)
    expect(err.message).toMatch(/tiny/)
  })

  it('a provider created with fetch: mesh.fetch is used as it is', async () => {
    const own = createOpenAI({ apiKey: 'x', fetch: mesh.fetch })
    const model = wrapLanguageModel({ model: own.chat('gpt-4o-mini'), middleware: middleware() })
    const r = await generateText({ model, prompt: 'own fetch', maxRetries: 0 })
    expect(r.text).toBe(mockText('own fetch'))
    expect((r.providerMetadata?.agentmesh as any)?.vendor).toBe('openai')
  })
})
