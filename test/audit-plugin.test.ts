// The audit plugin inside a real proxy: one entry per request decision with the fields the
// context holds, no secrets, the public key endpoint, and the verify / export commands.
import { readFileSync, rmSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { createAgentMesh, type AgentMesh } from '../core/app.ts'
import { definePlugin } from '../core/plugin.ts'
import type { MeshConfig, PluginCommand } from '../core/types.ts'
import { demo } from '../plugins/vendors/demo.ts'
import {
  audit,
  canonicalJson,
  fsLogSource,
  listLogFiles,
  makeSigner,
  parseLine,
  parsePrivateKey,
  parsePublicKey,
  publicKeyInfo,
  sha256Hex,
  verifyLog,
  type AuditOptions,
} from '../plugins/audit/index.ts'
import { startMockAndProxy } from './helpers/core-harness.ts'
import { tempDir } from './audit-helpers.ts'

const cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn()
})

async function proxy(options: AuditOptions = {}, extra: MeshConfig = {}) {
  const dataDir = tempDir()
  // no preset, so no quota plugin: these tests set the quota decision themselves
  const instance = await createAgentMesh({
    storage: { driver: 'memory' },
    log: { level: 'silent' },
    dataDir,
    ...extra,
    plugins: [audit(options), demo({ latencyMs: 0, chunkDelayMs: 0 }), ...(extra.plugins ?? [])],
  })
  const server = await instance.listen({ port: 0, host: '127.0.0.1' })
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    await server.close()
    await instance.close()
  }
  cleanup.push(async () => {
    await close()
    rmSync(dataDir, { recursive: true, force: true })
  })
  return { url: server.url, instance, dataDir, auditDir: join(dataDir, 'audit'), close }
}

function records(auditDir: string): any[] {
  return listLogFiles(auditDir)
    .flatMap((f) => readFileSync(f.path, 'utf8').split('\n').filter(Boolean))
    .map((l) => parseLine(l)!.record())
}

const chat = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })

function auditCommand(instance: AgentMesh): PluginCommand {
  const c = instance.plugins.find((p) => p.name === 'audit')!.commands!.find((x) => x.name === 'audit <action>')
  if (!c) throw new Error('no audit command')
  return c
}

/** Run a plugin command the way the CLI does: a mesh in command mode on the same data dir. */
async function runCommand(options: AuditOptions, dataDir: string, name: string, opts: Record<string, unknown> = {}) {
  const cmdMesh = await createAgentMesh(
    { storage: { driver: 'memory' }, log: { level: 'silent' }, dataDir, plugins: [audit(options)] },
    { mode: 'command' },
  )
  const out: string[] = []
  try {
    // `audit verify` reaches the command as action "verify"
    const code = await auditCommand(cmdMesh).run({
      mesh: cmdMesh.mesh,
      args: name.split(' ').slice(1),
      options: opts,
      print: (l) => out.push(l),
    })
    return { code: code ?? 0, out }
  } finally {
    await cmdMesh.close()
  }
}

describe('audit plugin in the proxy', () => {
  it('writes one entry per request with what the context decided', async () => {
    const p = await proxy()
    const ids = { 'x-agentmesh-team': 'eng', 'x-agentmesh-user': 'alice', 'x-agentmesh-tool': 'cli' }
    const res1 = await chat(p.url, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi 1' }] }, ids)
    const body1 = await res1.json()
    expect(res1.status).toBe(200)
    const res2 = await fetch(`${p.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-agentmesh-team': 'research' },
      body: JSON.stringify({
        model: 'claude-haiku-4-5',
        max_tokens: 50,
        stream: true,
        messages: [{ role: 'user', content: 'hi 2' }],
      }),
    })
    await res2.text()
    const res3 = await chat(p.url, '{"model": "gpt-4o-mini", "messages": [', ids)
    expect(res3.status).toBe(400)
    await p.close()

    const recs = records(p.auditDir)
    const entries = recs.filter((r) => r.kind === 'request')
    expect(entries).toHaveLength(3)
    expect(recs.at(-1)).toMatchObject({ kind: 'checkpoint', count: 3 })
    const [e1, e2, e3] = entries
    expect(e1).toMatchObject({
      kind: 'request',
      id: res1.headers.get('x-agentmesh-request-id'),
      identity: { team: 'eng', user: 'alice', tool: 'cli' },
      protocol: 'openai',
      operation: 'chat',
      stream: false,
      vendor: 'demo',
      requestedModel: 'gpt-4o-mini',
      model: 'gpt-4o-mini',
      cache: { status: 'bypass' },
      status: 200,
    })
    expect(Date.parse(e1.ts)).toBeGreaterThan(Date.now() - 60_000)
    expect(e1.tokens.input + e1.tokens.output).toBe(Number(res1.headers.get('x-agentmesh-tokens')))
    expect(e1.costUsd.toFixed(6)).toBe(res1.headers.get('x-agentmesh-cost-usd'))
    expect(e1.latencyMs).toBeGreaterThan(0)
    expect(e1.quota).toBeUndefined()
    // hashes, not content
    expect(e1.prompt).toBeUndefined()
    expect(e1.promptHash).toMatch(/^[0-9a-f]{64}$/)
    expect(e1.answerHash).toBe(sha256Hex(canonicalJson({ text: body1.choices[0].message.content, toolCalls: [] })))
    expect(JSON.stringify(recs)).not.toContain('hi 1')
    expect(e2).toMatchObject({
      protocol: 'anthropic',
      stream: true,
      identity: { team: 'research' },
      requestedModel: 'claude-haiku-4-5',
      status: 200,
    })
    expect(e2.answerHash).toMatch(/^[0-9a-f]{64}$/)
    expect(e2.promptHash).not.toBe(e1.promptHash)
    expect(e3).toMatchObject({ status: 400, error: 'invalid_request_error' })
    expect(e3.answerHash).toBeUndefined()

    expect(await verifyLog(fsLogSource(p.auditDir), { publicKeys: [] }).then((r) => r.problem?.kind)).toBe(
      'bad-signature',
    )
  })

  it('the same prompt hashes the same; the public key endpoint verifies the log', async () => {
    // checkpoints by count only (the 1 s timer would add one on a slow machine): the test counts them
    const p = await proxy({ checkpointEvery: 2, checkpointSeconds: 0 })
    for (let i = 0; i < 3; i++)
      await (await chat(p.url, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'same' }] })).text()
    const res = await fetch(`${p.url}/agentmesh/audit/public-key`)
    const key = await res.json()
    expect(key).toMatchObject({ algorithm: 'Ed25519', keyId: expect.stringMatching(/^[0-9a-f]{16}$/) })
    expect(key.pem).toBe(readFileSync(join(p.auditDir, 'public-key.pem'), 'utf8'))
    expect(publicKeyInfo(parsePublicKey(key.raw)).keyId).toBe(key.keyId)
    await p.close()
    const entries = records(p.auditDir).filter((r) => r.kind === 'request')
    expect(new Set(entries.map((e) => e.promptHash)).size).toBe(1)
    const r = await verifyLog(fsLogSource(p.auditDir), { publicKeys: [publicKeyInfo(parsePublicKey(key.pem))] })
    expect(r).toMatchObject({ ok: true, entries: 3, checkpoints: 2, unsignedTail: 0 })
  })

  it('records the quota decision another plugin set', async () => {
    const quotaLike = definePlugin({
      name: 'test-quota',
      hooks: {
        beforeRequest(ctx) {
          const blocked = ctx.identity.team === 'broke'
          ctx.state.quota = { decision: blocked ? 'block' : 'warn' }
          if (blocked)
            ctx.response = { kind: 'error', status: 429, type: 'rate_limit_error', message: 'team budget exhausted' }
        },
      },
    })
    const p = await proxy({}, { plugins: [quotaLike] })
    await (await chat(p.url, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'a' }] })).text()
    const blocked = await chat(
      p.url,
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'b' }] },
      { 'x-agentmesh-team': 'broke' },
    )
    expect(blocked.status).toBe(429)
    await p.close()
    const entries = records(p.auditDir).filter((r) => r.kind === 'request')
    expect(entries.map((e) => [e.quota, e.status, e.error])).toEqual([
      ['warn', 200, undefined],
      ['block', 429, 'rate_limit_error'],
    ])
  })

  it('records what the guards did (kinds and counts, never a value) and every target tried', async () => {
    // stands in for the guard, mask and attempt loop: what each publishes, in the shapes they declare
    const publisher = definePlugin({
      name: 'test-guards',
      hooks: {
        beforeRequest(ctx) {
          ctx.state.guard = { counts: { 'aws-access-key': 1, jwt: 2 }, findings: [], outcome: 'redacted' }
          ctx.state.mask = { counts: { email: 2, card: 0 } }
        },
        afterResponse(ctx) {
          ctx.attempts = [
            { vendor: 'openai', model: 'gpt-4o', status: 500, outcome: '500 from the vendor', ms: 3, called: true },
            { vendor: 'demo', model: 'gpt-4o-mini', status: 200, outcome: 'ok', ms: 1, called: true },
          ]
        },
      },
      enforce: 'pre',
    })
    const p = await proxy({}, { plugins: [publisher] })
    await (await chat(p.url, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'a' }] })).text()
    await p.close()
    const [e] = records(p.auditDir).filter((r) => r.kind === 'request')
    expect(e).toMatchObject({ redacted: 'aws-access-key:1,jwt:2', masked: 'email:2' })
    expect(e.attempts).toEqual([
      { target: 'openai/gpt-4o', status: 500, outcome: '500 from the vendor' },
      { target: 'demo/gpt-4o-mini', status: 200, outcome: 'ok' },
    ])
  })

  it('full content only when asked, through the redact hook', async () => {
    const p = await proxy({
      includeContent: true,
      redact: (e) => ({ ...e, answer: e.answer ? { ...e.answer, text: e.answer.text.slice(0, 10) } : undefined }),
    })
    await (
      await chat(p.url, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'tell me about audit logs' }] })
    ).text()
    await p.close()
    const [e] = records(p.auditDir).filter((r) => r.kind === 'request')
    expect(e.prompt.messages[0].text).toBe('tell me about audit logs')
    expect(e.answer.text).toHaveLength(10)
    expect(
      (
        await verifyLog(fsLogSource(p.auditDir), {
          publicKeys: [publicKeyInfo(parsePublicKey(readFileSync(join(p.auditDir, 'public-key.pem'), 'utf8')))],
        })
      ).ok,
    ).toBe(true)
  })

  it('a redact hook that throws still leaves an entry, without content', async () => {
    const p = await proxy({
      includeContent: true,
      redact: () => {
        throw new Error('boom')
      },
    })
    await (await chat(p.url, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'private' }] })).text()
    await p.close()
    const [e] = records(p.auditDir).filter((r) => r.kind === 'request')
    expect(e.status).toBe(200)
    expect(e.prompt).toBeUndefined()
    expect(JSON.stringify(e)).not.toContain('private')
  })

  it('no API key, virtual key or admin token reaches the log, even with full content and an upstream error', async () => {
    const dataDir = tempDir()
    const clientKey = 'sk-client-openai-key-0123456789abcdef'
    const virtualKey = 'am-' + 'Z'.repeat(43)
    const { mock, proxy: px } = await startMockAndProxy({
      config: { dataDir, plugins: [audit({ includeContent: true })] },
    })
    cleanup.push(async () => {
      await px.close()
      await mock.close()
      rmSync(dataDir, { recursive: true, force: true })
    })
    const send = () =>
      fetch(`${px.url}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${clientKey}`,
          'x-agentmesh-admin-token': 'admin-token-value-xyz',
        },
        body: JSON.stringify({
          model: 'gpt-4o-mini',
          messages: [
            {
              role: 'user',
              content: `my key is ${clientKey}, the vk is ${virtualKey}, admin admin-token-value-xyz, and sk-test-openai-configured`,
            },
          ],
        }),
      })
    expect((await send()).status).toBe(200)
    mock.behaviour.status = 401
    expect((await send()).status).toBe(401)
    await px.close()
    const text = listLogFiles(join(dataDir, 'audit'))
      .map((f) => readFileSync(f.path, 'utf8'))
      .join('')
    const entries: any[] = text
      .split('\n')
      .filter(Boolean)
      .map((l) => parseLine(l)!.record())
      .filter((r) => r.kind === 'request')
    expect(entries.map((e) => e.status)).toEqual([200, 401])
    expect(entries[0].prompt.messages[0].text).toContain('[redacted]')
    for (const secret of [
      clientKey,
      virtualKey,
      'admin-token-value-xyz',
      'sk-test-openai-configured',
      'sk-ant-test-configured',
    ])
      expect(text).not.toContain(secret)
  })

  it('audit verify and audit export commands', async () => {
    // checkpoints by count only (the 1 s timer would add one on a slow machine): the test counts them
    const p = await proxy({ checkpointEvery: 2, checkpointSeconds: 0 })
    for (const [team, n] of [
      ['eng', 3],
      ['ops', 2],
    ] as const) {
      for (let i = 0; i < n; i++)
        await (
          await chat(
            p.url,
            { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `q${i}` }] },
            { 'x-agentmesh-team': team, 'x-agentmesh-user': '@cmd' },
          )
        ).text()
    }
    await p.close()

    let r = await runCommand({}, p.dataDir, 'audit verify')
    expect(r).toEqual({ code: 0, out: ['OK entries=5 checkpoints=3'] })

    const csv = await runCommand({}, p.dataDir, 'audit export', { format: 'csv', team: 'eng' })
    expect(csv.code).toBe(0)
    expect(csv.out[0]!.split(',').slice(0, 4)).toEqual(['seq', 'ts', 'id', 'team'])
    expect(csv.out).toHaveLength(4)
    // a user name that a spreadsheet would run as a formula is defused
    expect(csv.out[1]).toContain(",'@cmd,")
    const jsonl = await runCommand({}, p.dataDir, 'audit export', {
      since: new Date(Date.now() - 3600_000).toISOString(),
    })
    expect(jsonl.out).toHaveLength(5)
    expect(jsonl.out.every((l) => parseLine(l)?.kind === 'request')).toBe(true)
    expect((await runCommand({}, p.dataDir, 'audit export', { since: '2999-01-01' })).out).toHaveLength(0)

    // tamper: verify names the entry and fails
    const f = listLogFiles(p.auditDir)[0]!
    const lines = readFileSync(f.path, 'utf8').split('\n')
    lines[3] = lines[3]!.replace('"team":"eng"', '"team":"ops"')
    const { writeFileSync } = await import('node:fs')
    writeFileSync(f.path, lines.join('\n'))
    r = await runCommand({}, p.dataDir, 'audit verify')
    expect(r.code).toBe(1)
    expect(r.out[0]).toMatch(/^FAIL edited at audit-000001-\d{8}\.jsonl:4 \(seq 4\)/)
    // --dir and --pubkey
    r = await runCommand({}, tempDir(), 'audit verify', { dir: p.auditDir, pubkey: join(p.auditDir, 'public-key.pem') })
    expect(r.code).toBe(1)
    r = await runCommand({}, tempDir(), 'audit verify', { dir: tempDir() })
    expect(r.code).toBe(2)
    expect(r.out[0]).toMatch(/no public key/)
    expect((await runCommand({}, p.dataDir, 'audit verfy')).code).toBe(2)
  })

  it('takes the signing key from AGENTMESH_AUDIT_PRIVATE_KEY and writes no private key file', async () => {
    const seed = Buffer.alloc(32, 9).toString('base64')
    const expected = makeSigner(parsePrivateKey(seed)).keyId
    process.env.AGENTMESH_AUDIT_PRIVATE_KEY = seed
    cleanup.push(() => void delete process.env.AGENTMESH_AUDIT_PRIVATE_KEY)
    const p = await proxy()
    const key = await (await fetch(`${p.url}/agentmesh/audit/public-key`)).json()
    expect(key.keyId).toBe(expected)
    expect(existsSync(join(p.auditDir, 'private-key.pem'))).toBe(false)
    process.env.AGENTMESH_AUDIT_PRIVATE_KEY = 'garbage'
    await expect(
      createAgentMesh({ log: { level: 'silent' }, dataDir: p.dataDir + '-x', plugins: [audit()] }),
    ).rejects.toThrow(/AGENTMESH_AUDIT_PRIVATE_KEY must be an Ed25519 private key/)
    cleanup.push(() => rmSync(p.dataDir + '-x', { recursive: true, force: true }))
  })

  it('a config reload (a second mesh on the same log, then the old one closed) keeps one chain', async () => {
    const dataDir = tempDir()
    cleanup.push(() => rmSync(dataDir, { recursive: true, force: true }))
    // checkpoints by count only (the 1 s timer would add one on a slow machine): the test counts them
    const plugin = audit({ checkpointEvery: 100, checkpointSeconds: 0 })
    const config = {
      storage: { driver: 'memory' as const },
      log: { level: 'silent' as const },
      dataDir,
      plugins: [plugin, demo({ latencyMs: 0 })],
    }
    const send = (m: AgentMesh, i: number) =>
      m.fetch(
        new Request('http://proxy/v1/chat/completions', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `m${i}` }] }),
        }),
      )
    const old = await createAgentMesh(config)
    expect((await send(old, 1)).status).toBe(200)
    const fresh = await createAgentMesh(config)
    expect((await send(old, 2)).status).toBe(200)
    await old.close()
    expect((await send(fresh, 3)).status).toBe(200)
    await fresh.close()
    const r = await verifyLog(fsLogSource(join(dataDir, 'audit')), {
      publicKeys: [publicKeyInfo(parsePublicKey(readFileSync(join(dataDir, 'audit', 'public-key.pem'), 'utf8')))],
    })
    expect(r).toMatchObject({ ok: true, entries: 3, checkpoints: 1, unsignedTail: 0 })
  })

  it('does no start-up work in command mode', async () => {
    const dataDir = tempDir()
    cleanup.push(() => rmSync(dataDir, { recursive: true, force: true }))
    const m = await createAgentMesh(
      { storage: { driver: 'memory' }, log: { level: 'silent' }, dataDir, plugins: [audit()] },
      { mode: 'command' },
    )
    await m.close()
    expect(existsSync(join(dataDir, 'audit'))).toBe(false)
  })

  it('validates its options with messages that name the field', () => {
    expect(() => audit({ checkpointEvery: 0 })).toThrow('audit: checkpointEvery must be an integer >= 1, got 0')
    expect(() => audit({ fsync: 'sometimes' as any })).toThrow(
      'audit: fsync must be "always", "checkpoint" or "never", got "sometimes"',
    )
    expect(() => audit({ store: 'mongo' as any })).toThrow('audit: store must be "fs" or "redis", got "mongo"')
    expect(() => audit({ redis: { url: 'http://x' } })).toThrow('audit: redis.url must be a redis:// or rediss:// URL')
    expect(() => audit({ checkpointSeconds: -1 })).toThrow(
      'audit: checkpointSeconds must be a non-negative number, got -1',
    )
    expect(() => audit({ redact: 'x' as any })).toThrow('audit: redact must be a function')
    expect(() => audit({ privateKey: 'abc' })).toThrow(/audit: privateKey must be an Ed25519 private key/)
    expect(() => audit({ checkpointevery: 5 } as any)).toThrow(/audit: unknown option "checkpointevery"/)
    expect(audit({ privateKey: Buffer.alloc(32, 3).toString('base64') }).options).toMatchObject({ privateKey: '***' })
  })
})
