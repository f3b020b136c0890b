// mesh.fetch hands the pipeline a MeshRequest and the client a BufferedResponse (core/sdk/web.ts):
// no body streams for what is already in memory. They must still behave as fetch's Request and
// Response do for anything a client, a plugin or a program does with them.
import OpenAI from 'openai'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { definePlugin } from '../core/plugin.ts'
import { createMesh, wrapOpenAI, type SdkMesh } from '../core/sdk/index.ts'
import { openai } from '../plugins/vendors/openai.ts'
import { clearVendorEnv, tempDir, until } from './helpers/core-harness.ts'
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'

// a plugin route that reads its request through the members the MeshRequest forwards to a real one
const seen: Array<Record<string, unknown>> = []
const probe = definePlugin({
  name: 'test:probe',
  setup(mesh) {
    mesh.addRoute('post', '/probe', async (request) => {
      const copy = request.clone()
      seen.push({
        isRequest: request instanceof Request,
        method: request.method,
        team: request.headers.get('x-agentmesh-team'),
        bytes: new TextDecoder().decode(await request.arrayBuffer()),
        copy: await copy.text(),
        used: request.bodyUsed,
        aborted: request.signal.aborted,
      })
      return new Response('{"ok":true}', { headers: { 'content-type': 'application/json' } })
    })
  },
})

let mock: MockUpstream
let mesh: SdkMesh
beforeAll(async () => {
  clearVendorEnv()
  mock = await startMockUpstream()
  mesh = await createMesh({
    config: {
      log: { level: 'silent' },
      dataDir: tempDir(),
      plugins: [probe, openai({ baseURL: mock.url, apiKey: 'sk' })],
    },
  })
})
afterAll(async () => {
  await mesh.close()
  await mock.close()
})
beforeEach(() => {
  mock.behaviour = {}
  mock.received.length = 0
})

const chat = (content: string) => JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] })
const post = (body: BodyInit, headers: Record<string, string> = { 'content-type': 'application/json' }) => ({
  method: 'post',
  headers,
  body,
})

describe('the answer', () => {
  it('is a Response whose body reads as json, text, bytes, a stream or a clone, once', async () => {
    const res = await mesh.fetch('https://api.openai.com/v1/chat/completions', post(chat('hello there')))
    expect(res).toBeInstanceOf(Response)
    expect(res.status).toBe(200)
    expect(res.headers.get('x-agentmesh-vendor')).toBe('openai')
    const copy = res.clone()
    const other = res.clone()
    expect(res.bodyUsed).toBe(false)
    const json = (await res.json()) as { choices: Array<{ message: { content: string } }> }
    expect(json.choices[0]!.message.content).toBeTypeOf('string')
    expect(res.bodyUsed).toBe(true)
    await expect(res.text()).rejects.toThrow(TypeError)
    expect(JSON.parse(await new Response(copy.body).text())).toEqual(json)
    const bytes = new Uint8Array(await other.arrayBuffer())
    expect(JSON.parse(new TextDecoder().decode(bytes))).toEqual(json)
  })

  it('through the OpenAI client: asResponse() gives the same Response, blob() reads it', async () => {
    const client = wrapOpenAI(new OpenAI({ apiKey: 'unused', maxRetries: 0 }), { mesh, identity: { team: 'web' } })
    const res = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'as a response' }] })
      .asResponse()
    expect(res).toBeInstanceOf(Response)
    const blob = await res.blob()
    expect(JSON.parse(await blob.text()).object).toBe('chat.completion')
  })
})

describe('the request', () => {
  it('reaches the vendor as the client wrote it, a leading BOM dropped as fetch drops it', async () => {
    const body = chat('bytes as sent: é ✓ 😀')
    await mesh.fetch('http://x/v1/chat/completions', post(`\uFEFF${body}`))
    expect(mock.received[0]!.raw).toBe(body)
  })

  it('takes bodies that are not strings and a Request as input', async () => {
    const bytes = new TextEncoder().encode(chat('from bytes'))
    expect((await mesh.fetch('http://x/v1/chat/completions', post(bytes))).status).toBe(200)
    const req = new Request('http://x/v1/chat/completions', post(chat('from a Request')))
    expect((await mesh.fetch(req)).status).toBe(200)
    expect(mock.received.map((r) => r.body.messages[0].content)).toEqual(['from bytes', 'from a Request'])
  })

  it('keeps the whole Request API for a plugin route: clone, arrayBuffer, bodyUsed, signal', async () => {
    seen.length = 0
    const res = await mesh.fetchFor({ identity: { team: 'probe' } })('http://x/probe', post('payload', {}))
    expect(await res.json()).toEqual({ ok: true })
    expect(seen).toEqual([
      { isRequest: true, method: 'POST', team: 'probe', bytes: 'payload', copy: 'payload', used: true, aborted: false },
    ])
  })

  it('a GET without a body answers (the models list)', async () => {
    const res = await mesh.fetch('http://x/v1/models')
    expect(res.status).toBe(200)
    expect(Array.isArray(((await res.json()) as { data: unknown[] }).data)).toBe(true)
  })

  it('a GET with a body is refused as fetch refuses it: a rejected promise', async () => {
    await expect(mesh.fetch('http://x/v1/models', { method: 'GET', body: 'x' })).rejects.toThrow(TypeError)
  })

  it("an abort while the vendor is still answering rejects the call and cuts the vendor's", async () => {
    mock.behaviour = { delayMs: 400 }
    const before = mock.aborted
    const ac = new AbortController()
    const pending = mesh.fetch('http://x/v1/chat/completions', { ...post(chat('slow')), signal: ac.signal })
    await until(() => mock.received.length > 0, 'the vendor call to start', 5000)
    ac.abort()
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' })
    await until(() => mock.aborted > before, 'the vendor call to be cut', 5000)
  })
})
