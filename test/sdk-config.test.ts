// createMesh({ configFile }): the config file a proxy would run, loaded as the CLI loads it, its
// `import ... from 'agentmesh'` and 'agentmesh/plugins/...' resolved to this copy of AgentMesh.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import OpenAI from 'openai'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createMesh, governanceOf, wrapOpenAI } from '../core/sdk/index.ts'
import { clearVendorEnv, tempDir } from './helpers/core-harness.ts'
import { mockText, startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'

let mock: MockUpstream
beforeAll(async () => {
  clearVendorEnv()
  mock = await startMockUpstream({})
})
afterAll(() => mock.close())

it('loads agentmesh.config.ts from a folder of its own and answers through it', async () => {
  const dir = tempDir()
  writeFileSync(
    join(dir, 'agentmesh.config.ts'),
    `
import { defineConfig } from 'agentmesh'
import { openai } from 'agentmesh/plugins/vendors/openai.ts'
import { exactCache } from 'agentmesh/plugins/exact-cache/index.ts'
export default defineConfig({ log: { level: 'silent' }, storage: { driver: 'memory' }, plugins: [exactCache(), openai({ baseURL: '${mock.url}', apiKey: 'sk-from-file' })] })
`,
  )
  const mesh = await createMesh({ configFile: 'agentmesh.config.ts', cwd: dir })
  try {
    expect(mesh.config.sources).toEqual(['agentmesh.config.ts'])
    expect(mesh.instance.plugins.map((p) => p.name)).toEqual(['exact-cache', 'vendor:openai'])
    const client = wrapOpenAI(new OpenAI({ apiKey: 'unused', maxRetries: 0 }), { mesh })
    const { data, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'from a config file' }] })
      .withResponse()
    expect(data.choices[0]!.message.content).toBe(mockText('from a config file'))
    expect(governanceOf(response).cache).toBe('miss')
    expect(mock.received.at(-1)!.headers.authorization).toBe('Bearer sk-from-file')
  } finally {
    await mesh.close()
  }
})

it('refuses config and configFile together', async () => {
  await expect(createMesh({ config: {}, configFile: 'x.ts' })).rejects.toThrow(/not both/)
})
