// Streamed answers and the exact cache, driven by the official SDKs' streaming helpers against a
// real listening proxy whose upstream is a local mock vendor (the only mock: an LLM vendor).
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createAgentMesh, type AgentMesh } from '../core/index.ts'
import type { MeshEvent } from '../core/types.ts'
import { exactCache } from '../plugins/exact-cache/index.ts'
import { normalise } from '../plugins/normalise/index.ts'
import { anthropic } from '../plugins/vendors/anthropic.ts'
import { google } from '../plugins/vendors/google.ts'
import { openai } from '../plugins/vendors/openai.ts'
import { mockText, startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'
import { demo } from '../plugins/vendors/demo.ts'

let up: MockUpstream
let app: AgentMesh
let url = ''
let dataDir = ''
let closeServer: () => Promise<void>
const events: MeshEvent[] = []
let claude: Anthropic
let gpt: OpenAI

beforeAll(async () => {
  up = await startMockUpstream()
  app = await createAgentMesh({
    dataDir: (dataDir = mkdtempSync(join(tmpdir(), 'am-cache-'))),
    log: { level: 'silent' },
    plugins: [
      normalise(),
      exactCache({ retryWindowSeconds: 0 }),
      anthropic({ baseURL: up.url, apiKey: 'test-key' }),
      openai({ baseURL: up.url, apiKey: 'test-key' }),
      google({ baseURL: up.url, apiKey: 'test-key' }),
      demo(),
    ],
  })
  app.mesh.on((e) => {
    events.push(e)
  })
  const server = await app.listen({ port: 0, host: '127.0.0.1' })
  url = server.url
  closeServer = server.close
  claude = new Anthropic({ baseURL: url, apiKey: 'client-key', maxRetries: 0 })
  gpt = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'client-key', maxRetries: 0 })
})

afterAll(async () => {
  await closeServer()
  await app.close()
  await up.close()
  rmSync(dataDir, { recursive: true, force: true })
})

beforeEach(() => {
  up.behaviour = {}
})

const upstreamCount = () => up.received.length

async function waitFor(pred: () => boolean, what: string, ms = 5000) {
  const start = Date.now()
  while (!pred()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}
const stores = () => events.filter((e) => e.type === 'x-cache_store').length
/** a request is settled once its vendor call was logged (llm_call) or it failed (error) */
const calls = () => events.filter((e) => e.type === 'llm_call' || e.type === 'error').length

describe('streamed answers: stored only when complete, replayed as valid streams', () => {
  it('Anthropic: a streamed answer is stored, then replayed to messages.stream() and to a non-streaming request', async () => {
    const prompt = 'Explain backpressure in Node streams.'
    const params = {
      model: 'claude-haiku-4-5',
      max_tokens: 256,
      messages: [{ role: 'user' as const, content: prompt }],
    }
    const before = stores()
    const first = claude.messages.stream(params)
    const firstMsg = await first.finalMessage()
    expect((await first.withResponse()).response.headers.get('x-agentmesh-cache')).toBe('miss')
    expect(firstMsg.content[0]).toMatchObject({ type: 'text', text: mockText(prompt) })
    await waitFor(() => stores() > before, 'the streamed answer to be stored')
    const n = upstreamCount()

    const replay = claude.messages.stream(params)
    let streamedText = ''
    const types: string[] = []
    replay.on('text', (t) => {
      streamedText += t
    })
    replay.on('streamEvent', (e) => {
      types.push(e.type)
    })
    const msg = await replay.finalMessage()
    const { response } = await replay.withResponse()
    expect(response.headers.get('x-agentmesh-cache')).toBe('exact')
    expect(response.headers.get('content-type')).toContain('text/event-stream')
    expect(msg.content[0]).toMatchObject({ type: 'text', text: mockText(prompt) })
    expect(streamedText).toBe(mockText(prompt))
    expect(types[0]).toBe('message_start')
    expect(types.at(-1)).toBe('message_stop')
    expect(types).toContain('content_block_delta')
    // the replay reports the usage of the call it replays; the headers say nothing was billed
    expect(msg.usage).toMatchObject({
      input_tokens: firstMsg.usage.input_tokens,
      output_tokens: firstMsg.usage.output_tokens,
    })
    expect(response.headers.get('x-agentmesh-tokens')).toBe('0')

    const plain = await claude.messages.create(params).withResponse()
    expect(plain.response.headers.get('x-agentmesh-cache')).toBe('exact')
    expect(plain.data.content[0]).toMatchObject({ type: 'text', text: mockText(prompt) })
    expect(upstreamCount()).toBe(n)
  })

  it('Anthropic: a non-streamed answer serves a later streaming request, tool calls included', async () => {
    const params = {
      model: 'claude-haiku-4-5',
      max_tokens: 256,
      tools: [
        {
          name: 'get_weather',
          description: 'weather',
          input_schema: { type: 'object' as const, properties: { city: { type: 'string' } } },
        },
      ],
      messages: [{ role: 'user' as const, content: 'Weather in Paris?' }],
    }
    const first = await claude.messages.create(params)
    expect(first.content[0]).toMatchObject({ type: 'tool_use', name: 'get_weather', input: { city: 'Paris' } })
    const n = upstreamCount()
    const stream = claude.messages.stream(params)
    const msg = await stream.finalMessage()
    expect((await stream.withResponse()).response.headers.get('x-agentmesh-cache')).toBe('exact')
    expect(msg.stop_reason).toBe('tool_use')
    expect(msg.content[0]).toMatchObject({ type: 'tool_use', name: 'get_weather', input: { city: 'Paris' } })
    expect(upstreamCount()).toBe(n)
  })

  it('Anthropic: a stream the client aborts is not stored', async () => {
    up.behaviour = { eventGapMs: 40 }
    const prompt = 'a long answer the client abandons one two three four five six seven eight nine ten'
    const params = {
      model: 'claude-haiku-4-5',
      max_tokens: 256,
      messages: [{ role: 'user' as const, content: prompt }],
    }
    const c = calls()
    const s = claude.messages.stream(params)
    await new Promise<void>((resolve) => s.on('text', () => resolve()))
    s.abort()
    await s.done().catch(() => undefined)
    await waitFor(() => calls() > c, 'the aborted stream to settle')
    await new Promise((r) => setTimeout(r, 50))
    up.behaviour = {}
    const n = upstreamCount()
    const res = await claude.messages.create(params).withResponse()
    expect(res.response.headers.get('x-agentmesh-cache')).toBe('miss')
    expect(upstreamCount()).toBe(n + 1)
  })

  it('Anthropic: a stream the upstream cuts is not stored', async () => {
    // the first events reach the client before the cut: a stream that broke mid-way
    up.behaviour = { cutAfterEvents: 3, eventGapMs: 30 }
    const prompt = 'an answer the upstream cuts short'
    const params = {
      model: 'claude-haiku-4-5',
      max_tokens: 256,
      messages: [{ role: 'user' as const, content: prompt }],
    }
    const c = calls()
    const s = claude.messages.stream(params)
    let sawText = false
    s.on('text', () => {
      sawText = true
    })
    await expect(s.finalMessage()).rejects.toThrow()
    expect(sawText).toBe(true)
    await waitFor(() => calls() > c, 'the cut stream to settle')
    await new Promise((r) => setTimeout(r, 50))
    up.behaviour = {}
    const res = await claude.messages.create(params).withResponse()
    expect(res.response.headers.get('x-agentmesh-cache')).toBe('miss')
    expect(res.data.content[0]).toMatchObject({ type: 'text', text: mockText(prompt) })
  })

  it('an upstream error is not stored', async () => {
    up.behaviour = { status: 500 }
    const params = {
      model: 'claude-haiku-4-5',
      max_tokens: 256,
      messages: [{ role: 'user' as const, content: 'fails first' }],
    }
    await expect(claude.messages.create(params)).rejects.toThrow()
    up.behaviour = {}
    const res = await claude.messages.create(params).withResponse()
    expect(res.response.headers.get('x-agentmesh-cache')).toBe('miss')
  })

  it('OpenAI: chat.completions.stream() stores; create({stream: true}) and a plain create() replay it', async () => {
    const prompt = 'Name three sorting algorithms.'
    const params = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: prompt }] }
    const before = stores()
    const runner = gpt.chat.completions.stream(params)
    const first = await runner.finalChatCompletion()
    expect(first.choices[0]!.message.content).toBe(mockText(prompt))
    await waitFor(() => stores() > before, 'the streamed answer to be stored')
    const n = upstreamCount()

    const { data: stream, response } = await gpt.chat.completions.create({ ...params, stream: true }).withResponse()
    expect(response.headers.get('x-agentmesh-cache')).toBe('exact')
    let text = ''
    let finish: string | null | undefined
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? ''
      finish = chunk.choices[0]?.finish_reason ?? finish
    }
    expect(text).toBe(mockText(prompt))
    expect(finish).toBe('stop')

    const helper = gpt.chat.completions.stream(params)
    expect((await helper.finalChatCompletion()).choices[0]!.message.content).toBe(mockText(prompt))

    const plain = await gpt.chat.completions.create(params).withResponse()
    expect(plain.response.headers.get('x-agentmesh-cache')).toBe('exact')
    expect(plain.data.choices[0]!.message.content).toBe(mockText(prompt))
    expect(upstreamCount()).toBe(n)
  })

  it('OpenAI: a non-streamed answer serves a streaming request', async () => {
    const prompt = 'What is a B-tree?'
    const params = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: prompt }] }
    await gpt.chat.completions.create(params)
    const n = upstreamCount()
    const runner = gpt.chat.completions.stream(params)
    let deltas = ''
    runner.on('content', (d) => {
      deltas += d
    })
    const done = await runner.finalChatCompletion()
    expect(done.choices[0]!.message.content).toBe(mockText(prompt))
    expect(deltas).toBe(mockText(prompt))
    expect(upstreamCount()).toBe(n)
  })

  it('Gemini: a streamed answer replays as an SSE stream', async () => {
    const req = { contents: [{ role: 'user', parts: [{ text: 'What is Rust?' }] }] }
    const post = async () => {
      const res = await fetch(`${url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(req),
      })
      const raw = await res.text()
      const text = raw
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => JSON.parse(l.slice(5)))
        .map((j) => j.candidates?.[0]?.content?.parts?.map((p: any) => p.text ?? '').join('') ?? '')
        .join('')
      return { cache: res.headers.get('x-agentmesh-cache'), type: res.headers.get('content-type'), text }
    }
    const before = stores()
    const a = await post()
    await waitFor(() => stores() > before, 'the Gemini stream to be stored')
    const b = await post()
    expect([a.cache, b.cache]).toEqual(['miss', 'exact'])
    expect(b.type).toContain('text/event-stream')
    expect(b.text).toBe(mockText('What is Rust?'))
  })
})
