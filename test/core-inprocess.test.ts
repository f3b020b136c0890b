// The same requests served in-process (AgentMesh#fetch, no socket: what SDK mode and other
// runtimes use) as over HTTP: one response path writes a web Response there, streams included,
// with the same answers, usage, incomplete-stream events and disconnects.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { definePlugin } from '../core/plugin.ts'
import type { MeshContext } from '../core/types.ts'
import { clearVendorEnv, sseEvents, startCoreMockAndProxy, until, type Proxy } from './helpers/core-harness.ts'
import { mockText, type MockUpstream } from './helpers/mock-upstream.ts'

const settled: Array<Pick<MeshContext, 'id' | 'status' | 'aborted'> & { usage: MeshContext['usage']; text?: string }> =
  []
const recorder = definePlugin({
  name: 'test:settled',
  hooks: {
    afterResponse: (ctx) =>
      void settled.push({
        id: ctx.id,
        status: ctx.status,
        aborted: ctx.aborted,
        usage: { ...ctx.usage },
        text: ctx.answer?.text,
      }),
  },
})

let mock: MockUpstream
let proxy: Proxy
beforeAll(async () => {
  clearVendorEnv()
  ;({ mock, proxy } = await startCoreMockAndProxy({ config: { plugins: [recorder] } }))
})
afterAll(async () => {
  await proxy.close()
  await mock.close()
})

const chat = (content: string, extra: Record<string, unknown> = {}, init: RequestInit = {}) =>
  proxy.instance.fetch(
    new Request('http://localhost/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-client-key' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], ...extra }),
      ...init,
    }),
  )

describe('in-process (no socket)', () => {
  it('a whole answer, with governance headers and usage', async () => {
    mock.behaviour = {}
    const res = await chat('hello in process')
    expect(res.status).toBe(200)
    expect(res.headers.get('x-agentmesh-cache')).toBe('bypass')
    const json = (await res.json()) as any
    expect(json.choices[0].message.content).toBe(mockText('hello in process'))
    expect(Number(res.headers.get('x-agentmesh-tokens'))).toBeGreaterThan(0)
  })

  it('a stream relayed as it comes, read for usage, the usage chunk the client did not ask for hidden', async () => {
    mock.behaviour = { eventGapMs: 5 }
    const res = await chat('stream in process', { stream: true })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toContain('text/event-stream')
    const events = sseEvents(await res.text()).map((e) => e.data)
    expect(events.at(-1)).toBe('[DONE]')
    const chunks = events.slice(0, -1).map((d) => JSON.parse(d))
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe(mockText('stream in process'))
    expect(chunks.every((c) => c.choices.length > 0)).toBe(true)
    const id = res.headers.get('x-agentmesh-request-id')
    await until(() => settled.some((s) => s.id === id), 'the stream to settle')
    const s = settled.find((x) => x.id === id)!
    expect(s.aborted).toBeFalsy()
    expect(s.usage.estimated).toBeFalsy()
    expect(s.usage.outputTokens).toBeGreaterThan(0)
  })

  it('a stream cut mid-way ends with the protocol error event; one dead before its first byte is a 502', async () => {
    mock.behaviour = { cutAfterEvents: 2, eventGapMs: 10 }
    const cut = await chat('cut in process', { stream: true })
    expect(cut.status).toBe(200)
    const text = await cut.text()
    expect(text).toContain('upstream_stream_error')
    mock.behaviour = { cutAfterEvents: 0 }
    const dead = await chat('dead in process', { stream: true })
    expect(dead.status).toBe(502)
    expect(((await dead.json()) as any).error.type).toBe('upstream_stream_error')
  })

  it('a consumer that cancels the body aborts the upstream call and settles the request as aborted', async () => {
    mock.behaviour = { eventGapMs: 100 }
    const before = mock.aborted
    const res = await chat('cancelled in process one two three four five six seven eight', { stream: true })
    const reader = res.body!.getReader()
    await reader.read()
    await reader.cancel()
    const id = res.headers.get('x-agentmesh-request-id')
    await until(() => settled.some((s) => s.id === id), 'the cancelled stream to settle')
    expect(settled.find((s) => s.id === id)!.aborted).toBe(true)
    await until(() => mock.aborted > before, 'the upstream call to be aborted')
  })
})
