// The fuzzer's proxy child (test/fuzz/server.ts) in front of a mock upstream of its own, with a
// data dir of its own: what the large-body and large-answer tests measure the longest block of.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startChild, type ProxyChild } from '../fuzz/child.ts'
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
