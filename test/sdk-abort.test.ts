// A program that stops reading a governed stream (break, or an AbortSignal) stops the vendor's
// too, as a client disconnecting from the proxy does.
import OpenAI from 'openai'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createMesh, wrapOpenAI, type SdkMesh } from '../core/sdk/index.ts'
import { openai } from '../plugins/vendors/openai.ts'
import { clearVendorEnv, tempDir, until } from './helpers/core-harness.ts'
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'

let mock: MockUpstream
let mesh: SdkMesh
beforeAll(async () => {
  clearVendorEnv()
  mock = await startMockUpstream({ eventGapMs: 50 })
  mesh = await createMesh({
    config: { log: { level: 'silent' }, dataDir: tempDir(), plugins: [openai({ baseURL: mock.url, apiKey: 'sk' })] },
  })
})
afterAll(async () => {
  await mesh.close()
  await mock.close()
})

const client = () => wrapOpenAI(new OpenAI({ apiKey: 'unused', maxRetries: 0 }), { mesh })
const long = 'a long prompt so that the mock streams many events one by one for a while'

it('breaking out of a stream cancels the upstream call', async () => {
  const before = mock.aborted
  const stream = await client().chat.completions.create({
    model: 'gpt-4o-mini',
    stream: true,
    messages: [{ role: 'user', content: long }],
  })
  for await (const _ of stream) break
  await until(() => mock.aborted > before, 'the upstream stream to be cut', 5000)
})

it('an AbortSignal before the answer rejects the call', async () => {
  const ac = new AbortController()
  ac.abort()
  const err = await client()
    .chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'never' }] },
      { signal: ac.signal },
    )
    .catch((e) => e)
  expect(err).toBeInstanceOf(OpenAI.APIUserAbortError)
})

it('an AbortSignal cancels the upstream call', async () => {
  const before = mock.aborted
  const ac = new AbortController()
  const stream = await client().chat.completions.create(
    { model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: long }] },
    { signal: ac.signal },
  )
  const it = stream[Symbol.asyncIterator]()
  await it.next()
  ac.abort()
  // the OpenAI SDK ends an aborted stream quietly (its iterator is done), as with its own fetch
  expect(await it.next().catch(() => ({ done: true }))).toMatchObject({ done: true })
  await until(() => mock.aborted > before, 'the upstream stream to be cut', 5000)
})
