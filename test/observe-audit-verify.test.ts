// POST /agentmesh/admin/audit/verify: the dashboard's "verify now". The proxy verifies its own
// log (hashes, links, checkpoint signatures, the signed head in storage) behind the admin token,
// answers OK with the entry and checkpoint counts, and FAIL with the problem once a line is edited.
import { readFileSync, writeFileSync } from 'node:fs'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { audit, listLogFiles } from '../plugins/audit/index.ts'
import { clearVendorEnv, startProxy, type Proxy } from './helpers/core-harness.ts'

const ADMIN = 'audit-verify-admin-token-0123456789'
const verify = (proxy: Proxy, token?: string) =>
  fetch(`${proxy.url}/agentmesh/admin/audit/verify`, {
    method: 'POST',
    headers: token ? { authorization: `Bearer ${token}` } : {},
  })

describe('POST /agentmesh/admin/audit/verify', () => {
  let proxy: Proxy
  beforeAll(async () => {
    clearVendorEnv()
    process.env.AGENTMESH_ADMIN_TOKEN = ADMIN
    proxy = await startProxy({ plugins: [audit({ checkpointSeconds: 0.2 })] })
  })
  afterAll(async () => {
    delete process.env.AGENTMESH_ADMIN_TOKEN
    await proxy?.close()
  })

  it('needs the admin token', async () => {
    expect((await verify(proxy)).status).toBe(401)
    expect((await verify(proxy, 'wrong-token-wrong-token-0000')).status).toBe(401)
  })

  it('answers OK with the entries and checkpoints, then FAIL with the problem after an edit', {
    timeout: 60_000,
  }, async () => {
    const c = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'sk-client', maxRetries: 0 })
    for (const q of ['one', 'two', 'three'])
      await c.chat.completions.create({ model: 'demo-fast', max_tokens: 10, messages: [{ role: 'user', content: q }] })
    // the checkpoint timer signs the three entries within 0.2 s of the last one
    let r: any
    await expect
      .poll(
        async () => {
          r = await (await verify(proxy, ADMIN)).json()
          return r.unsignedTail
        },
        { timeout: 20_000 },
      )
      .toBe(0)
    expect(r).toMatchObject({ ok: true, entries: 3, problem: null })
    expect(r.checkpoints).toBeGreaterThanOrEqual(1)
    expect(r.lastCheckpoint.seq).toBeGreaterThan(3)
    expect(r.lines[0]).toBe(`OK entries=3 checkpoints=${r.checkpoints}`)

    // an insider edits a model name in place: the entry's hash no longer matches
    const file = listLogFiles(`${proxy.dataDir}/audit`)[0]!.path
    const text = readFileSync(file, 'utf8')
    expect(text).toContain('"demo-fast"')
    writeFileSync(file, text.replace('"demo-fast"', '"demo-smart"'))
    const bad = await verify(proxy, ADMIN)
    expect(bad.status).toBe(200)
    const b: any = await bad.json()
    expect(b.ok).toBe(false)
    expect(b.problem.kind).toBe('edited')
    expect(b.problem.seq).toBe(1)
    expect(b.lines[0]).toMatch(/^FAIL edited/)
  })
})
