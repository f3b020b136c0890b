// On fs storage nothing AgentMesh writes is readable by other users of the machine: cache entries
// (exact and semantic) hold prompts and answers in the clear, the keys store holds key hashes,
// counters.json the teams' usage. The data dir and every directory below it are 0700, every file
// 0600, and a data dir an older version left 0755 is closed on start.
import { chmodSync, lstatSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAgentMesh } from '../core/app.ts'
import { createLogger } from '../core/log.ts'
import { createMeshStorage } from '../core/storage.ts'
import { virtualKeys } from '../plugins/keys/index.ts'
import { semanticCache, type Embedder } from '../plugins/semantic-cache/index.ts'
import { clearVendorEnv, postJson, tempDir, until } from './helpers/core-harness.ts'
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'

const ADMIN = 'file-modes-admin-token-0123456789'
const dirs: string[] = []
const newDir = () => {
  const d = tempDir('agentmesh-modes-')
  dirs.push(d)
  return d
}

/** a stand-in for the sentence model: letter counts, enough for the cache to store entries */
const letterEmbedder: Embedder = {
  id: 'test-letters-32',
  dimension: 32,
  loaded: true,
  async load() {},
  async embed(texts) {
    return texts.map((t) => {
      const v = new Float32Array(32)
      for (let i = 0; i < t.length; i++) v[t.charCodeAt(i) % 32]! += 1
      const norm = Math.hypot(...v) || 1
      return v.map((x) => x / norm)
    })
  },
}

/** every directory and file under root, with its permission bits */
function walk(root: string): Array<{ path: string; dir: boolean; mode: number }> {
  const out: Array<{ path: string; dir: boolean; mode: number }> = []
  for (const name of readdirSync(root)) {
    const full = join(root, name)
    const st = lstatSync(full)
    out.push({ path: full, dir: st.isDirectory(), mode: st.mode & 0o777 })
    if (st.isDirectory()) out.push(...walk(full))
  }
  return out
}

let mock: MockUpstream
beforeAll(async () => {
  clearVendorEnv()
  mock = await startMockUpstream()
})
afterAll(async () => {
  await mock.close()
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

describe('fs storage file modes', () => {
  it('a solo proxy leaves only 0700 directories and 0600 files in its data dir', async () => {
    const dataDir = join(newDir(), 'data')
    const mesh = await createAgentMesh({
      preset: 'solo',
      dataDir,
      log: { level: 'silent' },
      // the solo preset as it is (fs storage, keys, quota, exact and semantic cache, audit), with a
      // small embedder instead of the 230 MB model and an admin token to make a key with
      disable: ['keys', 'semantic-cache'],
      plugins: [virtualKeys({ adminToken: ADMIN }), semanticCache({ embedder: letterEmbedder, warmup: false })],
      vendors: {
        openai: { baseURL: mock.url, apiKey: 'sk-test-openai-configured' },
        anthropic: { baseURL: mock.url, apiKey: 'sk-ant-test-configured' },
      },
    })
    const server = await mesh.listen({ port: 0, host: '127.0.0.1' })
    try {
      const created = await postJson(
        `${server.url}/agentmesh/admin/keys`,
        { team: 'eng', user: 'alice' },
        { authorization: `Bearer ${ADMIN}` },
      )
      expect(created.status).toBe(201)
      const { key } = (await created.json()) as { key: string }
      for (const content of [
        'what is the capital of france',
        'explain tcp slow start in one line',
        'name three prime numbers',
      ]) {
        const res = await postJson(
          `${server.url}/v1/chat/completions`,
          { model: 'gpt-4o-mini', max_tokens: 32, messages: [{ role: 'user', content }] },
          { authorization: `Bearer ${key}` },
        )
        expect(res.status).toBe(200)
        const an = await postJson(
          `${server.url}/v1/messages`,
          { model: 'claude-haiku-4-5', max_tokens: 32, messages: [{ role: 'user', content }] },
          { 'x-api-key': 'sk-ant-client', 'x-agentmesh-team': 'ops' },
        )
        expect(an.status).toBe(200)
      }
      await until(() => walk(dataDir).some((e) => e.path.endsWith('counters.json')), 'counters.json', 3000)
    } finally {
      await server.close()
      await mesh.close()
    }

    const entries = walk(dataDir)
    const under = (part: string) => entries.filter((e) => relative(dataDir, e.path).split('/')[0] === part)
    // what the proxy wrote: key records, quota scopes, exact and semantic cache entries, the counters
    const files = (pattern: RegExp) => under('storage').filter((e) => !e.dir && pattern.test(relative(dataDir, e.path)))
    expect(files(/^storage\/agentmesh\/keys\/id\//)).toHaveLength(1)
    expect(files(/^storage\/agentmesh\/quota\/scopes\//).length).toBeGreaterThan(0)
    expect(files(/^storage\/cache\/exact\//).length).toBeGreaterThanOrEqual(3)
    expect(files(/^storage\/semantic\//).length).toBeGreaterThanOrEqual(3)
    expect(entries.some((e) => e.path.endsWith('counters.json'))).toBe(true)
    expect(statSync(dataDir).mode & 0o777).toBe(0o700)
    // the audit log is another part's (plugins/audit); everything else must be private
    const open = entries.filter(
      (e) => !relative(dataDir, e.path).startsWith('audit') && e.mode !== (e.dir ? 0o700 : 0o600),
    )
    expect(open.map((e) => `${relative(dataDir, e.path)} ${e.mode.toString(8)}`)).toEqual([])
  })

  it('a data dir and storage dir an older version left 0755 are made 0700 on start, and said so', async () => {
    const dataDir = newDir()
    mkdirSync(join(dataDir, 'storage'))
    chmodSync(dataDir, 0o755)
    chmodSync(join(dataDir, 'storage'), 0o755)
    const lines: string[] = []
    const store = createMeshStorage(
      { driver: 'fs' },
      dataDir,
      createLogger('info', (l) => lines.push(l)),
    )
    try {
      expect(statSync(dataDir).mode & 0o777).toBe(0o700)
      expect(statSync(join(dataDir, 'storage')).mode & 0o777).toBe(0o700)
      expect(lines).toEqual([
        `[agentmesh] storage: ${dataDir} was readable by other users (mode 755); now 700`,
        `[agentmesh] storage: ${join(dataDir, 'storage')} was readable by other users (mode 755); now 700`,
      ])
    } finally {
      await store.close()
    }
  })

  it('memory and redis storage leave a missing data dir alone and close an existing open one', async () => {
    const parent = newDir()
    createMeshStorage({ driver: 'memory' }, join(parent, 'absent'))
    expect(readdirSync(parent)).toEqual([])
    const existing = join(parent, 'existing')
    mkdirSync(existing, { mode: 0o755 })
    chmodSync(existing, 0o755)
    await createMeshStorage({ driver: 'memory' }, existing).close()
    expect(statSync(existing).mode & 0o777).toBe(0o700)
  })
})
