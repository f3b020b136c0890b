// Claude Code as it ships on npm (`claude -p`), through the proxy: its first request carries a
// mid-conversation `system` message, betas, `?beta=true` and 20k tokens of tools and system
// prompt. Issue 12: it got a 400 from the Anthropic parser.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { definePlugin } from '../core/plugin.ts'
import { clearVendorEnv, startMockAndProxy, startProxy, type Proxy } from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'
import { runClaude } from './helpers/agents.ts'

beforeAll(() => clearVendorEnv())

describe('claude -p through AgentMesh', () => {
  it('demo preset: answers, billed to tool claude-code', async () => {
    const proxy = await startProxy({ preset: 'demo' }, { features: true })
    try {
      const run = await runClaude(proxy.url, 'What is the capital of France?')
      expect(run.stderr).toBe('')
      expect(run.code).toBe(0)
      expect(run.stdout).toContain('AgentMesh demo answer')
      const requests = proxy.events.filter((e) => e.type === 'request')
      expect(requests.length).toBeGreaterThan(0)
      for (const r of requests) expect((r.data as any).identity.tool).toBe('claude-code')
      const responses = proxy.events.filter((e) => e.type === 'response')
      expect(responses.every((r) => (r.data as any).status === 200)).toBe(true)
    } finally {
      await proxy.close()
    }
  })

  describe('solo against a mock Anthropic', () => {
    let mock: MockUpstream
    let proxy: Proxy
    const got: Array<{ raw: string; search: string }> = []
    beforeAll(async () => {
      // what the proxy received, to compare with what the vendor received
      const capture = definePlugin({
        name: 'capture',
        hooks: {
          beforeRequest: (ctx) => {
            got.push({ raw: ctx.request.rawBody, search: ctx.request.search })
          },
        },
      })
      ;({ mock, proxy } = await startMockAndProxy({ keys: false, config: { plugins: [capture] } }))
    })
    afterAll(async () => {
      await proxy.close()
      await mock.close()
    })

    it("the vendor gets Claude Code's body byte for byte, its query, betas and session header, and its own key", async () => {
      const run = await runClaude(proxy.url, 'Say hello.')
      expect(run.code).toBe(0)
      // the mock calls the first tool offered; Claude Code runs it and the mock answers the result
      expect(run.stdout).toMatch(/mock answer to|tool said/)
      expect(proxy.events.filter((e) => e.type === 'response').every((e) => (e.data as any).status === 200)).toBe(true)
      const calls = mock.received.filter((r) => r.path.startsWith('/v1/messages'))
      expect(calls.length).toBeGreaterThan(0)
      expect(calls.length).toBe(got.length)
      // a request with a mid-conversation system message was among them (the 400 of issue 12)
      expect(calls.some((c) => c.body.messages.some((m: any) => m.role === 'system'))).toBe(true)
      for (const [i, c] of calls.entries()) {
        expect(c.raw).toBe(got[i]!.raw)
        expect(c.path).toBe('/v1/messages' + got[i]!.search)
        expect(c.headers['anthropic-beta']).toBeTruthy()
        expect(c.headers['user-agent']).toMatch(/claude-cli/)
        expect(c.headers['x-claude-code-session-id']).toBeTruthy()
        expect(c.headers['x-api-key'] ?? c.headers.authorization).toContain('sk-ant-cli-test-key')
      }
      expect(calls.some((c) => c.path.includes('beta=true'))).toBe(true)
    })
  })

  describe('two identical runs with a tool call, caches on, against a vendor that enforces thinking', () => {
    it('the second run starts from a cache hit that kept the thinking block and its signature; both succeed', async () => {
      const home = mkdtempSync(join(tmpdir(), 'claude-home-'))
      const vendor = await thinkingVendor(join(home, 'note.txt'))
      const dataDir = mkdtempSync(join(tmpdir(), 'claude-proxy-'))
      const proxy = await startProxy(
        { preset: 'solo', dataDir, vendors: { anthropic: { baseURL: vendor.url } } },
        { features: true },
      )
      try {
        writeFileSync(join(home, 'note.txt'), 'the first note')
        const first = await runClaude(proxy.url, 'What does note.txt say?', { home })
        expect(first.code, first.stderr).toBe(0)
        expect(first.stdout).toContain('the first note')
        expect(vendor.rejected).toEqual([])

        // same question, same tools, same folder: the first call is an exact hit; the file changed,
        // so the turn after the tool call goes to the vendor carrying the replayed assistant turn
        writeFileSync(join(home, 'note.txt'), 'the second note')
        const seenBefore = vendor.received.length
        const second = await runClaude(proxy.url, 'What does note.txt say?', { home })
        expect(second.code, second.stderr).toBe(0)
        expect(second.stdout).toContain('the second note')
        expect(vendor.rejected).toEqual([])
        expect(proxy.events.some((e) => e.type === 'cache_hit' && (e.data as any).kind === 'exact')).toBe(true)
        const afterTool = vendor.received
          .slice(seenBefore)
          .filter((b) => lastToolResult(b)?.includes('the second note'))
        expect(afterTool.length).toBeGreaterThan(0)
        for (const b of afterTool) {
          const turn = b.messages.findLast(
            (m: any) =>
              m.role === 'assistant' && Array.isArray(m.content) && m.content.some((c: any) => c.type === 'tool_use'),
          )
          expect(turn.content[0]).toMatchObject({ type: 'thinking', signature: expect.stringMatching(/^sig-/) })
        }
      } finally {
        await proxy.close()
        await vendor.close()
      }
      // the audit entries name Claude Code's session
      const sessions = vendor.sessions
      expect(sessions.size).toBe(2)
      const log = readdirSync(join(dataDir, 'audit'))
        .filter((f) => f.endsWith('.jsonl'))
        .map((f) => readFileSync(join(dataDir, 'audit', f), 'utf8'))
        .join('')
      for (const id of sessions) expect(log).toContain(`"session":"${id}"`)
    })
  })
})

function lastToolResult(body: any): string | undefined {
  const last = body.messages?.at(-1)
  const block = Array.isArray(last?.content) ? last.content.find((c: any) => c.type === 'tool_result') : undefined
  if (!block) return undefined
  return typeof block.content === 'string' ? block.content : JSON.stringify(block.content)
}

/**
 * An Anthropic vendor with thinking on, as strict as the real one: an assistant turn with a
 * tool_use must start with a thinking block carrying a signature this vendor issued, or the call
 * is a 400. It asks to Read the note, then answers with what the tool returned.
 */
async function thinkingVendor(
  notePath: string,
): Promise<{ url: string; received: any[]; rejected: string[]; sessions: Set<string>; close(): Promise<void> }> {
  const received: any[] = []
  const rejected: string[] = []
  const sessions = new Set<string>()
  const issued = new Set<string>()
  let n = 0
  const server: Server = createServer((req, res) => {
    let raw = ''
    req.on('data', (d) => (raw += d))
    req.on('end', () => {
      const json = (status: number, value: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' })
        res.end(JSON.stringify(value))
      }
      if (!req.url?.startsWith('/v1/messages'))
        return json(404, { type: 'error', error: { type: 'not_found_error', message: 'not found' } })
      const body = JSON.parse(raw)
      if (req.url.includes('count_tokens')) return json(200, { input_tokens: 100 })
      received.push(body)
      const session = req.headers['x-claude-code-session-id']
      if (typeof session === 'string') sessions.add(session)
      for (const [i, m] of (body.messages ?? []).entries()) {
        if (m.role !== 'assistant' || !Array.isArray(m.content) || !m.content.some((c: any) => c.type === 'tool_use'))
          continue
        const first = m.content[0]
        if (first?.type !== 'thinking' || !issued.has(first.signature)) {
          const message = `messages.${i}.content.0.type: Expected \`thinking\` or \`redacted_thinking\`, but found \`${first?.type}\`. When \`thinking\` is enabled, a final \`assistant\` message must start with a thinking block.`
          rejected.push(message)
          return json(400, { type: 'error', error: { type: 'invalid_request_error', message } })
        }
      }
      const signature = `sig-${++n}-${'x'.repeat(40)}`
      issued.add(signature)
      const thinking = { type: 'thinking', thinking: 'Let me look at the file before answering.', signature }
      const result = lastToolResult(body)
      const wantsRead = result === undefined && (body.tools ?? []).some((t: any) => t.name === 'Read')
      const content = wantsRead
        ? [thinking, { type: 'tool_use', id: `toolu_${n}`, name: 'Read', input: { file_path: notePath } }]
        : result !== undefined
          ? [thinking, { type: 'text', text: `The file says: ${result}` }]
          : [{ type: 'text', text: 'ok' }]
      const message = {
        id: `msg_${n}`,
        type: 'message',
        role: 'assistant',
        model: body.model,
        content,
        stop_reason: wantsRead ? 'tool_use' : 'end_turn',
        stop_sequence: null,
        usage: { input_tokens: 200, output_tokens: 30, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
      }
      if (!body.stream) return json(200, message)
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      const ev = (type: string, data: object) =>
        res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`)
      ev('message_start', {
        message: { ...message, content: [], stop_reason: null, usage: { ...message.usage, output_tokens: 1 } },
      })
      content.forEach((block: any, index) => {
        if (block.type === 'thinking') {
          ev('content_block_start', { index, content_block: { type: 'thinking', thinking: '', signature: '' } })
          ev('content_block_delta', { index, delta: { type: 'thinking_delta', thinking: block.thinking } })
          ev('content_block_delta', { index, delta: { type: 'signature_delta', signature: block.signature } })
        } else if (block.type === 'tool_use') {
          ev('content_block_start', { index, content_block: { ...block, input: {} } })
          ev('content_block_delta', {
            index,
            delta: { type: 'input_json_delta', partial_json: JSON.stringify(block.input) },
          })
        } else {
          ev('content_block_start', { index, content_block: { type: 'text', text: '' } })
          ev('content_block_delta', { index, delta: { type: 'text_delta', text: block.text } })
        }
        ev('content_block_stop', { index })
      })
      ev('message_delta', {
        delta: { stop_reason: message.stop_reason, stop_sequence: null },
        usage: { output_tokens: 30 },
      })
      ev('message_stop', {})
      res.end()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    rejected,
    sessions,
    close: () => new Promise((r) => server.close(() => r())),
  }
}
