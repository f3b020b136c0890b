// The fuzzer's proxy child (test/fuzz/server.ts) in front of a mock upstream of its own, with a
// data dir of its own: what the large-body and large-answer tests measure the longest block of.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startChild, type ProxyChild } from '../fuzz/child.ts'
import { sendRaw } from '../fuzz/client.ts'
import { type MockBehaviour, startMockUpstream, type MockUpstream } from './mock-upstream.ts'

export interface ChildAndMock {
  mock: MockUpstream
  child: ProxyChild
  /** the solo proxy's port (vendors at the mock) */
  port: number
  dataDir: string
}

/** `behaviour`: the mock's from the start (e.g. `{ status: 503 }`: it answers at once, whatever the size) */
export async function startChildAndMock(
  name: string,
  env?: Record<string, string>,
  behaviour: MockBehaviour = {},
): Promise<ChildAndMock> {
  const dataDir = mkdtempSync(join(tmpdir(), `agentmesh-${name}-`))
  const mock = await startMockUpstream(behaviour, { record: false })
  const child = await startChild({ upstream: mock.url, dataDir, ...(env ? { env } : {}) })
  return { mock, child, port: child.ports.mock!, dataDir }
}

export async function stopChildAndMock(s: Partial<ChildAndMock>): Promise<void> {
  await s.child?.stop()
  await s.mock?.close()
  if (s.dataDir) rmSync(s.dataDir, { recursive: true, force: true })
}

/**
 * POST `body` (JSON) to the child's `path` as one request of its own (no-store: the exact cache's
 * store of an answer of megabytes is its own path, with its own tests), with the child's figures
 * reset first (a collection too); the answer, and the figures once afterResponse's work is done.
 */
export async function postMeasured(c: Pick<ChildAndMock, 'child' | 'port'>, path: string, body: unknown) {
  const bytes = Buffer.from(JSON.stringify(body))
  const head =
    `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1:${c.port}\r\ncontent-type: application/json\r\n` +
    `anthropic-version: 2023-06-01\r\ncache-control: no-store\r\ncontent-length: ${bytes.length}\r\nconnection: close\r\n\r\n`
  await c.child.stats({ gc: true, reset: true })
  const r = await sendRaw(c.port, Buffer.concat([Buffer.from(head), bytes]), { timeoutMs: 60_000 })
  await new Promise((res) => setTimeout(res, 500))
  return { r, s: await c.child.stats() }
}
