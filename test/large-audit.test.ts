// The audit with includeContent and a prompt or an answer of megabytes (issue 11 item 2): the entry
// is scrubbed and printed as canonical JSON in slices before it is queued, and the writer seals it
// (header, bytes, SHA-256) in slices; the stores write its line as bytes. The line must be the
// one-go line (scrub + sealEntry) byte for byte, `audit verify` must pass, and no block of the
// proxy may come near what the one-go path took: a 10 MB answer held the loop 92-118 ms.
import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { canonicalJson } from '../core/canonical.ts'
import { definePlugin } from '../core/plugin.ts'
import type { MeshContext } from '../core/types.ts'
import { Slicer } from '../core/slicer.ts'
import {
  audit,
  fsLogSource,
  loadPublicKeys,
  redisLogSource,
  redisStore,
  sealEntry,
  scrub,
  verifyLog,
  type AuditEntry,
} from '../plugins/audit/index.ts'
import { canonicalPieces, prepareEntry, scrubSliced, sealPrepared } from '../plugins/audit/sliced.ts'
import { sendRaw } from './fuzz/client.ts'
import { startProxy, type Proxy } from './helpers/core-harness.ts'
import { longestBlock } from './helpers/longest-block.ts'
import { wordText } from './helpers/word-text.ts'

// 1- to 4-byte characters, quotes, escapes, a lone surrogate, and words a key pattern's hint is in
const WORDS = ['the', 'café', '€uro', '中文字', '😀🚀', '"q"', 'back\\slash', 'line\nbreak', '\u0001', '\ud800']
const HINTS = ['diagram-x', 'stream-', 'Bearer', 'task-list']
const text = (chars: number, seed: number, words = WORDS): string => wordText(words, chars, seed)
const slicer = () => new Slicer(1)

describe('sliced printing, sealing and scrubbing: the one-go bytes', () => {
  it('canonicalPieces joined is canonicalJson', async () => {
    const values: unknown[] = [
      null,
      1,
      text(200_000, 1),
      [1, undefined, () => 1, Number.NaN, -0, 1e21, 10n, Symbol('s')],
      {
        b: 1,
        a: [{ z: 1, y: [text(100_000, 2)] }],
        c: undefined,
        d: { toJSON: () => ({ q: 2, p: 1 }) },
        e: new Date(0),
      },
      {
        messages: Array.from({ length: 3000 }, (_, i) => ({
          role: i % 2 ? 'user' : 'assistant',
          content: text(50 + i, i),
        })),
      },
      // a surrogate pair across the end of a run of 65,536 characters
      { s: `${'a'.repeat(65_535)}😀${'b'.repeat(70_000)}` },
    ]
    for (const v of values) expect((await canonicalPieces(v, slicer())).join('')).toBe(canonicalJson(v))
  })

  it('a prepared entry seals to the bytes and hash of sealEntry', async () => {
    for (const t of [text(1_500_000, 3), 'short']) {
      const entry = {
        answer: { text: t, toolCalls: [{ id: 'c', name: 'w', arguments: JSON.stringify({ x: text(300_000, 4) }) }] },
        answerHash: 'h',
        cache: { status: 'miss' },
        id: 'id',
        kind: 'request',
        prompt: { messages: [{ role: 'user', content: text(80_000, 5) }], model: 'm' },
        v: 1,
      } as unknown as AuditEntry
      const sealed = await sealPrepared(await prepareEntry(entry, slicer()), 17, 'a'.repeat(64), slicer())
      const oneGo = sealEntry(entry, 17, 'a'.repeat(64))
      expect(sealed.hash).toBe(oneGo.hash)
      expect(sealed.line.equals(Buffer.from(oneGo.line, 'utf8'))).toBe(true)
      expect(entry.kind).toBe('request')
    }
  })

  it('scrubSliced gives what scrub gives (and the same object when nothing is masked)', async () => {
    const secrets = ['sk-secretvalue123456', 'mysecretpassword']
    const plain = text(500_000, 5, [...WORDS, ...HINTS])
    const cases: unknown[] = [
      { a: plain },
      { a: `${plain} sk-abcdefghijklmnopqrstuv ` },
      { a: `${text(300_000, 5)}Bearer abcdefghijklmnop${text(300_000, 6)}` },
      // a secret across the end of the first run
      { a: `${'x'.repeat(65_530)}mysecretpassword${text(300_000, 6)}` },
      { a: `${'x'.repeat(65_533)}AIza${'b'.repeat(40)}${text(100_000, 1)}` },
      {
        m: Array.from({ length: 3000 }, (_, i) => ({ c: i === 2000 ? 'key sk-secretvalue123456 here' : text(100, i) })),
        'sk-secretvalue123456': 1,
      },
    ]
    for (const v of cases) {
      const sliced = await scrubSliced(v, secrets, slicer())
      const oneGo = scrub(v, secrets)
      expect(JSON.stringify(sliced)).toBe(JSON.stringify(oneGo))
      expect(sliced === v).toBe(oneGo === v)
    }
  })
})

/** an OpenAI-shaped vendor answering every call with `body` (bytes made once: no encoding per answer) */
function vendor(): Promise<{ server: Server; url: string; body: { bytes: Buffer } }> {
  const body = { bytes: Buffer.alloc(0) }
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.bytes.length })
      res.end(body.bytes)
    })
  })
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      resolve({ server, url: `http://127.0.0.1:${port}`, body })
    }),
  )
}

const answerOf = (t: string) =>
  Buffer.from(
    JSON.stringify({
      id: 'chatcmpl-large',
      object: 'chat.completion',
      created: 1,
      model: 'gpt-4o-mini',
      choices: [{ index: 0, message: { role: 'assistant', content: t }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 10, completion_tokens: 1000, total_tokens: 1010 },
    }),
  )

function request(port: number, prompt: string): Buffer {
  const body = Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: prompt }] }))
  const head =
    `POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\n` +
    `content-length: ${body.length}\r\nconnection: close\r\n\r\n`
  return Buffer.concat([Buffer.from(head), body])
}

/**
 * The audit's own work on one entry: a real request's context (5 MB prompt, 10 MB answer) is
 * handed to the audit's afterResponse hook again, and the longest block is measured from there
 * until the entry is in the log (the proxy's other work on the request, 20-47 ms in this process,
 * is not counted). Before: 186-322 ms here (the entry scrubbed, printed, hashed and written in one
 * go); after: 21-31, slices of 10 ms and the scavenges of their garbage. A block over the bound is
 * measured again, up to TRIES times.
 */
const AUDIT_BLOCK_MS = 40
const TRIES = 3

describe('a proxy with audit includeContent, a prompt of 5 MB and an answer of 10 MB', () => {
  let up: Awaited<ReturnType<typeof vendor>>
  let proxy: Proxy
  const plugin = audit({ includeContent: true, checkpointSeconds: 0 })
  let captured: MeshContext | undefined
  const written = new Map<string, number>()
  beforeAll(async () => {
    up = await vendor()
    proxy = await startProxy(
      {
        preset: 'solo',
        storage: { driver: 'memory' },
        vendors: { openai: { baseURL: up.url, apiKey: 'sk-test-openai-configured' } },
        plugins: [plugin, definePlugin({ name: 'capture', hooks: { afterResponse: (ctx) => void (captured = ctx) } })],
      },
      { features: false },
    )
    proxy.instance.mesh.on((e) => {
      if (e.type === 'audit_entry') written.set((e.data as { id: string }).id, (e.data as { seq: number }).seq)
    })
  }, 60_000)
  afterAll(async () => {
    await proxy?.close()
    up?.server.close()
  })

  async function entryWritten(id: string) {
    const until = Date.now() + 60_000
    while (!written.has(id) && Date.now() < until) await new Promise((r) => setTimeout(r, 10))
    expect(written.has(id)).toBe(true)
  }

  it(`no block over ${AUDIT_BLOCK_MS} ms; the line is the one-go line and audit verify passes`, async () => {
    const answer = text(10_000_000, 10)
    up.body.bytes = answerOf(answer)
    const res = await sendRaw(proxy.port, request(proxy.port, `${text(5_000_000, 20)} sk-test-openai-configured`), {
      timeoutMs: 120_000,
    })
    expect(res.status).toBe(200)
    await entryWritten(res.headers.get('x-agentmesh-request-id')!)
    const ctx = captured!
    const blocks: number[] = []
    let id = ''
    for (let i = 0; i < TRIES && !(blocks.at(-1)! <= AUDIT_BLOCK_MS); i++) {
      id = `replay-${i}`
      ctx.id = id
      await new Promise((r) => setTimeout(r, 50))
      const r = await longestBlock(async () => {
        await plugin.hooks!.afterResponse!(ctx)
        await entryWritten(id)
      })
      blocks.push(Math.round(r.maxMs))
    }
    console.log(
      `audit includeContent, 5 MB prompt and 10 MB answer: ${blocks.join(', ')} ms of CPU in the longest block`,
    )
    expect(Math.min(...blocks)).toBeLessThanOrEqual(AUDIT_BLOCK_MS)

    const dir = join(proxy.dataDir, 'audit')
    // entries of 15 MB fill a file (64 MB) in a few: the line is in one of them
    const lines = readdirSync(dir)
      .filter((f) => f.endsWith('.jsonl'))
      .flatMap((f) => readFileSync(join(dir, f)).toString('utf8').split('\n'))
    const line = lines.find((l) => l.includes(`"id":"${id}"`))!
    const record = JSON.parse(line)
    expect(record.answer.text).toBe(scrub(answer, []))
    // the configured key the prompt carried is masked, as in any entry
    expect(line.includes('sk-test-openai-configured')).toBe(false)
    expect(line.includes(' [redacted]')).toBe(true)
    const { seq, prev, hash, ...entry } = record
    expect(sealEntry(entry, seq, prev)).toEqual({ line, hash })
    const result = await verifyLog(fsLogSource(dir), { publicKeys: loadPublicKeys(undefined, dir), deep: true })
    expect(result.ok).toBe(true)
    expect(result.entries).toBe(written.size)
  }, 400_000)
})

describe('the redis store takes a line sealed as bytes', () => {
  it('appends it whole, and the log verifies', async () => {
    const url = inject('redisUrl')
    const prefix = `amaudit-${randomUUID().slice(0, 8)}:`
    const store = redisStore({ url, prefix })
    const head = await store.open()
    const entry = {
      answer: { text: text(2_000_000, 3), toolCalls: [] },
      id: 'big',
      kind: 'request',
      v: 1,
    } as unknown as AuditEntry
    const sealed = await sealPrepared(await prepareEntry(entry, slicer()), head.seq + 1, head.hash, slicer())
    const res = await store.append(
      [sealed.line],
      head,
      { seq: head.seq + 1, hash: sealed.hash, kind: 'request' },
      {
        checkpoint: false,
      },
    )
    expect(res.ok).toBe(true)
    const stored: Buffer[] = []
    for await (const l of store.linesBackward()) stored.push(l)
    expect(stored[0]!.equals(Buffer.from(sealEntry(entry, head.seq + 1, head.hash).line))).toBe(true)
    await store.close()
    const r = await verifyLog(redisLogSource({ url, prefix }), { publicKeys: [] })
    expect(r.problem).toBeUndefined()
    expect(r.entries).toBe(1)
  }, 60_000)
})
