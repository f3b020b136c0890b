// The vendor prompt cache: Anthropic cache_control breakpoints added to long system prompts and
// tool lists, checked in what actually reached the (mock) upstream.
import Anthropic from '@anthropic-ai/sdk'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAgentMesh, type AgentMesh } from '../core/index.ts'
import { definePlugin } from '../core/plugin.ts'
import type { MeshEvent } from '../core/types.ts'
import { addCacheControl, promptCache } from '../plugins/prompt-cache/index.ts'
import { anthropic } from '../plugins/vendors/anthropic.ts'
import { openai } from '../plugins/vendors/openai.ts'
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'
import { demo } from '../plugins/vendors/demo.ts'

const words = (n: number) => Array.from({ length: n }, (_, i) => `policy${i % 97} clause ${i}`).join(' ')
const LONG = `You are the support assistant for ACME. Follow these rules. ${words(900)}`
const SHORT = 'Be brief.'
const tools = (n: number) =>
  Array.from({ length: n }, (_, i) => ({
    name: `tool_${i}`,
    description: `does thing ${i}: ${words(30)}`,
    input_schema: { type: 'object', properties: { q: { type: 'string' } } },
  }))

let up: MockUpstream
let app: AgentMesh
let url = ''
let dataDir = ''
let closeServer: () => Promise<void>
const events: MeshEvent[] = []

beforeAll(async () => {
  up = await startMockUpstream()
  // a second Anthropic-protocol upstream that reports prompt-cache usage, as Anthropic does on a cache read
  const cachingVendor = definePlugin({
    name: 'vendor:caching',
    setup(mesh) {
      mesh.registerVendor({
        name: 'caching',
        protocol: 'anthropic',
        handles: (m) => m === 'claude-cached',
        async call() {
          const body = {
            id: 'msg_c',
            type: 'message',
            role: 'assistant',
            model: 'claude-cached',
            content: [{ type: 'text', text: 'ok' }],
            stop_reason: 'end_turn',
            stop_sequence: null,
            usage: {
              input_tokens: 20,
              output_tokens: 1,
              cache_read_input_tokens: 1500,
              cache_creation_input_tokens: 0,
            },
          }
          return {
            status: 200,
            headers: { 'content-type': 'application/json' },
            body: Buffer.from(JSON.stringify(body)),
            stream: false,
          }
        },
      })
    },
  })
  app = await createAgentMesh({
    dataDir: (dataDir = mkdtempSync(join(tmpdir(), 'am-cache-'))),
    log: { level: 'silent' },
    plugins: [
      promptCache({ vendors: ['anthropic', 'caching'] }),
      cachingVendor,
      anthropic({ baseURL: up.url, apiKey: 'k' }),
      openai({ baseURL: up.url, apiKey: 'k' }),
      demo(),
    ],
  })
  app.mesh.on((e) => {
    events.push(e)
  })
  const server = await app.listen({ port: 0, host: '127.0.0.1' })
  url = server.url
  closeServer = server.close
})

afterAll(async () => {
  await closeServer()
  await app.close()
  await up.close()
  rmSync(dataDir, { recursive: true, force: true })
})

async function send(body: unknown, path = '/v1/messages') {
  const n = up.received.length
  const res = await fetch(url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  await res.arrayBuffer()
  return { res, upstream: up.received[n] }
}

describe('prompt-cache', () => {
  it('marks a long string system prompt, converting it to one text block', async () => {
    const { res, upstream } = await send({
      model: 'claude-haiku-4-5',
      max_tokens: 50,
      system: LONG,
      messages: [{ role: 'user', content: 'hi' }],
    })
    expect(res.status).toBe(200)
    expect(upstream!.body.system).toEqual([{ type: 'text', text: LONG, cache_control: { type: 'ephemeral' } }])
  })

  it('marks the last block of a long system array and the last tool of a long tool list', async () => {
    const { upstream } = await send({
      model: 'claude-haiku-4-5',
      max_tokens: 50,
      system: [
        { type: 'text', text: 'Intro.' },
        { type: 'text', text: LONG },
      ],
      tools: tools(40),
      messages: [{ role: 'user', content: 'hi' }],
    })
    const b = upstream!.body
    expect(b.system[0]).toEqual({ type: 'text', text: 'Intro.' })
    expect(b.system[1].cache_control).toEqual({ type: 'ephemeral' })
    expect(b.tools.at(-1).cache_control).toEqual({ type: 'ephemeral' })
    expect(b.tools.slice(0, -1).every((t: any) => !('cache_control' in t))).toBe(true)
  })

  it('leaves short prompts byte-for-byte alone', async () => {
    const body = {
      model: 'claude-haiku-4-5',
      max_tokens: 50,
      system: SHORT,
      tools: tools(1),
      messages: [{ role: 'user', content: 'hi' }],
    }
    const { upstream } = await send(body)
    expect(upstream!.raw).toBe(JSON.stringify(body))
  })

  it('leaves a request alone when the client placed its own cache_control', async () => {
    const body = {
      model: 'claude-haiku-4-5',
      max_tokens: 50,
      system: LONG,
      tools: tools(40),
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hi', cache_control: { type: 'ephemeral' } }] }],
    }
    const { upstream } = await send(body)
    expect(upstream!.raw).toBe(JSON.stringify(body))
  })

  it('does not touch OpenAI-protocol requests or non-Anthropic vendors', async () => {
    const oa = {
      model: 'gpt-4o-mini',
      messages: [
        { role: 'system', content: LONG },
        { role: 'user', content: 'hi' },
      ],
    }
    const { upstream } = await send(oa, '/v1/chat/completions')
    expect(upstream!.raw).toBe(JSON.stringify(oa))
    // the demo vendor answers models no real vendor handles: no breakpoint is added for it
    const n = up.received.length
    const res = await fetch(url + '/v1/messages', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'demo-fast',
        max_tokens: 10,
        system: LONG,
        messages: [{ role: 'user', content: 'hi' }],
      }),
    })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-agentmesh-vendor')).toBe('demo')
    expect(up.received.length).toBe(n)
  })

  it('reports cache read and write tokens from the vendor usage', async () => {
    const before = events.length
    const res = await fetch(url + '/v1/messages', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'claude-cached',
        max_tokens: 10,
        system: LONG,
        messages: [{ role: 'user', content: 'hi' }],
      }),
    })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-agentmesh-cache-read-tokens')).toBe('1500')
    const ev = events.slice(before).find((e) => e.type === 'x-prompt_cache')
    expect(ev?.data).toEqual({ id: expect.any(String), added: ['system'], readTokens: 1500, writeTokens: 0 })
  })

  it('addCacheControl respects minTokens and does not mutate the arrays it was given', () => {
    const count = (t: string) => Math.ceil(t.length / 4)
    const t = tools(3)
    const body: any = { system: [{ type: 'text', text: 'x'.repeat(400) }], tools: t }
    const sys = body.system
    expect(addCacheControl(body, count, { minTokens: 10_000, tools: true, system: true })).toEqual([])
    expect(addCacheControl(body, count, { minTokens: 100, tools: true, system: true })).toEqual(['tools', 'system'])
    expect(t.every((x: any) => !('cache_control' in x))).toBe(true)
    expect(sys[0].cache_control).toBeUndefined()
    expect(body.tools.at(-1).cache_control).toEqual({ type: 'ephemeral' })
    // a second pass sees the breakpoints and adds nothing
    expect(addCacheControl(body, count, { minTokens: 100, tools: true, system: true })).toEqual([])
  })

  it('validates options naming the field', () => {
    expect(() => promptCache({ minTokens: -5 })).toThrow(
      /prompt-cache: minTokens must be a non-negative integer, got -5/,
    )
    expect(() => promptCache({ ttl: '2h' as any })).toThrow(/prompt-cache: ttl must be "5m" or "1h"/)
    expect(() => promptCache({ min: 1 } as any)).toThrow(/prompt-cache: unknown option "min"/)
  })

  it('works with the Anthropic SDK end to end', async () => {
    const client = new Anthropic({ baseURL: url, apiKey: 'k', maxRetries: 0 })
    const n = up.received.length
    const msg = await client.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 20,
      system: LONG,
      messages: [{ role: 'user', content: 'hello' }],
    })
    expect(msg.content[0]!.type).toBe('text')
    expect(up.received[n]!.body.system[0].cache_control).toEqual({ type: 'ephemeral' })
  })
})
