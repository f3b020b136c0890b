// The approval gate with the official OpenAI SDK: ask (403 with an id, approve, re-send with the
// id, once), an id bound to its request, a hold released from the real CLI while the request
// waits, pending approvals surviving a restart on fs and shared by two proxies on redis, a dry run.
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import type { MeshConfig } from '../core/types.ts'
import { approval, type ApprovalOptions } from '../plugins/approval/index.ts'
import { dryRun } from '../plugins/dry-run/index.ts'
import { openai } from '../plugins/vendors/openai.ts'
import { clearVendorEnv, startProxy, tempDir, until, VENDOR_ENV, type Proxy } from './helpers/core-harness.ts'
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'

const ADMIN = 'approval-admin-token-0123456'
const ROOT = resolve(import.meta.dirname, '..')
const RULE: ApprovalOptions['rules'] = [{ name: 'expensive-models', models: ['*expensive*'] }]
const ask = (content: string) => ({ model: 'gpt-expensive', messages: [{ role: 'user' as const, content }] })

let mock: MockUpstream

function proxyFor(opts: ApprovalOptions, config: MeshConfig = {}): Promise<Proxy> {
  return startProxy({
    storage: { driver: 'memory' },
    ...config,
    plugins: [
      dryRun(),
      approval({ adminToken: ADMIN, rules: RULE, ...opts }),
      openai({ baseURL: mock.url, apiKey: 'sk-test-openai' }),
    ],
  })
}

const client = (p: Proxy, headers: Record<string, string> = {}) =>
  new OpenAI({ baseURL: `${p.url}/v1`, apiKey: 'sk-client', maxRetries: 0, defaultHeaders: headers })
const admin = (p: Proxy, path: string, body?: unknown) =>
  fetch(`${p.url}/agentmesh/admin/approvals${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })

/** the approval id of a 403 approval_required */
async function askFor(p: Proxy, content: string): Promise<string> {
  const err = await client(p)
    .chat.completions.create(ask(content))
    .catch((e) => e)
  expect(err.status).toBe(403)
  expect(err.error.type).toBe('approval_required')
  const id = err.headers.get('x-agentmesh-approval-id')
  expect(id).toMatch(/^apr_[0-9a-f]{16}$/)
  expect(err.message).toContain(`agentmesh approve ${id}`)
  return id
}

/** the real CLI, against the proxy's fs storage */
function cli(args: string[], dataDir: string): Promise<{ code: number | null; out: string }> {
  const config = join(dataDir, 'agentmesh.config.ts')
  writeFileSync(
    config,
    `import { approval } from ${JSON.stringify(join(ROOT, 'plugins/approval/index.ts'))}
export default { extends: [], storage: { driver: 'fs' }, plugins: [approval({ rules: [{ models: ['*expensive*'] }] })] }
`,
  )
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' }
  for (const k of VENDOR_ENV) delete env[k]
  const child = spawn(
    process.execPath,
    [join(ROOT, 'bin/agentmesh.mjs'), ...args, '--config', config, '--data-dir', dataDir],
    { cwd: dataDir, env, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (out += d))
  return new Promise((r) => child.once('close', (code) => r({ code, out })))
}

describe('approval', () => {
  beforeAll(async () => {
    clearVendorEnv()
    mock = await startMockUpstream()
  })
  afterAll(async () => {
    await mock.close()
  })

  it('ask: 403 with an id and how to approve; approved, the same request goes through once', async () => {
    const p = await proxyFor({})
    try {
      const calls = mock.received.length
      const id = await askFor(p, 'Summarise the repo.')
      expect(mock.received.length).toBe(calls)
      expect(p.events.find((e) => e.type === 'approval_requested')?.data).toMatchObject({
        approval: id,
        rule: 'expensive-models',
        model: 'gpt-expensive',
        mode: 'ask',
      })
      // requests no rule fires on are not touched
      await client(p).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'cheap' }] })

      const pending = await (await admin(p, '')).json()
      expect(pending.approvals.map((a: any) => a.id)).toEqual([id])
      const decided = await admin(p, `/${id}/approve`, { note: 'fine for the release', by: 'alice' })
      expect(decided.status).toBe(200)
      expect(p.events.find((e) => e.type === 'approval_granted')?.data).toMatchObject({
        approval: id,
        by: 'alice',
        note: 'fine for the release',
      })

      const ok = await client(p, { 'X-AgentMesh-Approval': id }).chat.completions.create(ask('Summarise the repo.'))
      expect(ok.choices[0]!.message.content).toMatch(/^mock answer to: Summarise the repo\./)
      expect(mock.received.length).toBe(calls + 2)
      // single use
      const again = await client(p, { 'X-AgentMesh-Approval': id })
        .chat.completions.create(ask('Summarise the repo.'))
        .catch((e) => e)
      expect(again.status).toBe(403)
      expect(again.error.type).toBe('approval_used')
      expect(mock.received.length).toBe(calls + 2)
      // denied ones say so
      const id2 = await askFor(p, 'Delete the branch.')
      expect((await admin(p, `/${id2}/deny`, {})).status).toBe(200)
      const denied = await client(p, { 'X-AgentMesh-Approval': id2 })
        .chat.completions.create(ask('Delete the branch.'))
        .catch((e) => e)
      expect(denied.error.type).toBe('approval_denied')
      const bad = await client(p, { 'X-AgentMesh-Approval': 'apr_../../x' })
        .chat.completions.create(ask('x'))
        .catch((e) => e)
      expect(bad.status).toBe(400)
    } finally {
      await p.close()
    }
  })

  it('refuses a granted id replayed for another body, and still lets its own request through', async () => {
    const p = await proxyFor({})
    try {
      const id = await askFor(p, 'Plan the migration.')
      await admin(p, `/${id}/approve`, {})
      const calls = mock.received.length
      const other = await client(p, { 'X-AgentMesh-Approval': id })
        .chat.completions.create(ask('Plan the migration, and drop the old tables.'))
        .catch((e) => e)
      expect(other.status).toBe(403)
      expect(other.error.type).toBe('approval_mismatch')
      const otherUser = await client(p, { 'X-AgentMesh-Approval': id, 'X-AgentMesh-User': 'mallory' })
        .chat.completions.create(ask('Plan the migration.'))
        .catch((e) => e)
      expect(otherUser.error.type).toBe('approval_mismatch')
      expect(mock.received.length).toBe(calls)
      await client(p, { 'X-AgentMesh-Approval': id }).chat.completions.create(ask('Plan the migration.'))
      expect(mock.received.length).toBe(calls + 1)
    } finally {
      await p.close()
    }
  })

  it('hold: the request waits and goes on when `agentmesh approve ID` is run', async () => {
    const dataDir = tempDir('agentmesh-approval-')
    const p = await proxyFor({ mode: 'hold', holdSeconds: 60, pollMs: 100 }, { storage: { driver: 'fs' }, dataDir })
    try {
      const calls = mock.received.length
      const started = Date.now()
      const held = client(p).chat.completions.create(ask('Rewrite the parser.')).withResponse()
      await until(() => p.events.some((e) => e.type === 'approval_requested'), 'the approval request', 10_000)
      const id = (p.events.find((e) => e.type === 'approval_requested')!.data as any).approval
      const listed = await cli(['approvals'], dataDir)
      expect(listed.out).toContain(`${id}  PENDING`)
      expect(mock.received.length).toBe(calls)
      const approved = await cli(['approve', id, '--note', 'go ahead'], dataDir)
      expect(approved.code).toBe(0)
      const { data, response } = await held
      expect(response.status).toBe(200)
      expect(data.choices[0]!.message.content).toMatch(/Rewrite the parser/)
      expect(mock.received.length).toBe(calls + 1)
      expect(Date.now() - started).toBeLessThan(60_000)
      expect(p.events.find((e) => e.type === 'approval_granted')?.data).toMatchObject({
        approval: id,
        note: 'go ahead',
        by: expect.stringMatching(/^cli:/),
      })
    } finally {
      await p.close()
    }
  }, 120_000)

  it('hold: nobody decides within holdSeconds: 403 approval_timeout with the id to approve later', async () => {
    const p = await proxyFor({ mode: 'hold', holdSeconds: 0.3, pollMs: 50 })
    try {
      const err = await client(p)
        .chat.completions.create(ask('Wait for me.'))
        .catch((e) => e)
      expect(err.status).toBe(403)
      expect(err.error.type).toBe('approval_timeout')
      expect(err.headers.get('x-agentmesh-approval-id')).toMatch(/^apr_/)
    } finally {
      await p.close()
    }
  })

  it('pending approvals survive a restart on fs storage', async () => {
    const dataDir = tempDir('agentmesh-approval-')
    const first = await proxyFor({}, { storage: { driver: 'fs' }, dataDir })
    const id = await askFor(first, 'Ship it.')
    await first.close()
    const second = await proxyFor({}, { storage: { driver: 'fs' }, dataDir })
    try {
      const listed = await (await admin(second, '')).json()
      expect(listed.approvals).toMatchObject([{ id, status: 'pending', rule: 'expensive-models' }])
      await admin(second, `/${id}/approve`, {})
      await client(second, { 'X-AgentMesh-Approval': id }).chat.completions.create(ask('Ship it.'))
    } finally {
      await second.close()
    }
  })

  it('two proxies on one redis-server: asked on one, approved and used on the other, once', async () => {
    const storage = {
      driver: 'redis' as const,
      url: inject('redisUrl'),
      prefix: `approval-${process.pid}-${Date.now()}`,
    }
    const a = await proxyFor({}, { storage })
    const b = await proxyFor({}, { storage })
    try {
      const id = await askFor(a, 'Refactor everything.')
      expect((await (await admin(b, '')).json()).approvals.map((x: any) => x.id)).toEqual([id])
      await admin(b, `/${id}/approve`, {})
      await client(b, { 'X-AgentMesh-Approval': id }).chat.completions.create(ask('Refactor everything.'))
      const again = await client(a, { 'X-AgentMesh-Approval': id })
        .chat.completions.create(ask('Refactor everything.'))
        .catch((e) => e)
      expect(again.error.type).toBe('approval_used')
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('approval.approveOverUsd (what --approve-over sets) adds an ask rule on the estimated cost', async () => {
    const p = await startProxy({
      approval: { approveOverUsd: 0.001 },
      plugins: [approval({ adminToken: ADMIN }), openai({ baseURL: mock.url, apiKey: 'sk-test-openai' })],
    } as MeshConfig)
    try {
      const cheap = await client(p).chat.completions.create({
        model: 'gpt-4o-mini',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'hi' }],
      })
      expect(cheap.choices[0]!.message.content).toMatch(/^mock answer/)
      const err = await client(p)
        .chat.completions.create({
          model: 'gpt-4o',
          max_tokens: 4000,
          messages: [{ role: 'user', content: 'a long essay' }],
        })
        .catch((e) => e)
      expect(err.error.type).toBe('approval_required')
      expect(err.message).toMatch(/rule "approve-over-0.001" \(estimated cost up to \$0\.04\d+ is over \$0\.001\)/)
    } finally {
      await p.close()
    }
  })

  it("the estimated cost is priced for a rule that fires on names alone and for a rule's own predicate", async () => {
    const seen: number[] = []
    const p = await startProxy({
      plugins: [
        approval({
          adminToken: ADMIN,
          rules: [
            { name: 'never', models: ['never-*'] },
            { name: 'by-name', models: ['gpt-4o'] },
            {
              name: 'by-predicate',
              when: (r) => {
                seen.push(r.estimatedUsd)
                return r.estimatedUsd > 0.01
              },
            },
          ],
        }),
        openai({ baseURL: mock.url, apiKey: 'sk-test-openai' }),
      ],
    })
    try {
      const long = { max_tokens: 4000, messages: [{ role: 'user' as const, content: 'a long essay' }] }
      const named = await client(p)
        .chat.completions.create({ model: 'gpt-4o', ...long })
        .catch((e) => e)
      expect(named.error.type).toBe('approval_required')
      expect(named.message).toMatch(
        /\(gpt-4o, estimated up to \$0\.04\d+\) needs a person's approval under rule "by-name"/,
      )
      const requested = p.events.find((e) => e.type === 'approval_requested')?.data as { estimatedUsd: number }
      expect(requested.estimatedUsd).toBeGreaterThan(0.04)
      expect(seen).toEqual([])
      // the predicate sees the price: 10 output tokens of gpt-4o-mini pass, 4000 of gpt-4.1 do not
      const cheap = await client(p).chat.completions.create({
        model: 'gpt-4o-mini',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'hi' }],
      })
      expect(cheap.choices[0]!.message.content).toMatch(/^mock answer/)
      expect(seen).toHaveLength(1)
      expect(seen[0]).toBeGreaterThan(0)
      expect(seen[0]).toBeLessThan(0.01)
      const err = await client(p)
        .chat.completions.create({ model: 'gpt-4.1', ...long })
        .catch((e) => e)
      expect(err.error.type).toBe('approval_required')
      expect(err.message).toContain('under rule "by-predicate" (its condition holds)')
      expect(seen[1]).toBeGreaterThan(0.01)
    } finally {
      await p.close()
    }
  })

  it('a dry run says the rule would hold it, and asks nobody', async () => {
    const p = await proxyFor({ mode: 'hold' })
    try {
      const { data, response } = await client(p, { 'X-AgentMesh-Dry-Run': 'true' })
        .chat.completions.create(ask('Just looking.'))
        .withResponse()
      expect(response.headers.get('x-agentmesh-would-hold')).toBe('approval approval_required')
      expect(data.choices[0]!.message.content).toMatch(
        /^Preview: this request would be held by approval .*rule "expensive-models"/,
      )
      expect((await (await admin(p, '?all=1')).json()).approvals).toEqual([])
      expect(p.events.some((e) => e.type === 'approval_requested')).toBe(false)
    } finally {
      await p.close()
    }
  })
})
