// Compression through a running proxy, with the official Anthropic and OpenAI SDKs (and plain
// fetch for Gemini) against a mock upstream that checks each body as the vendor would: roles
// alternate (Anthropic, Gemini), every tool_use has its tool_result in the next user turn, every
// OpenAI tool_call id has its tool message, every Responses function_call its output. A body the
// vendor would refuse gets the vendor's 400, so a broken compression fails the call itself.
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { resolveConfig } from '../core/config.ts'
import { audit, listLogFiles, parseLine } from '../plugins/audit/index.ts'
import { compression, type CompressionOptions } from '../plugins/compression/index.ts'
import { minifyCode, minifyFences, minifyJson } from '../plugins/compression/text.ts'
import { exactCache } from '../plugins/exact-cache/index.ts'
import { quota } from '../plugins/quota/index.ts'
import { anthropic } from '../plugins/vendors/anthropic.ts'
import { google } from '../plugins/vendors/google.ts'
import { openai } from '../plugins/vendors/openai.ts'
import {
  capturingFetch,
  clearVendorEnv,
  postJson,
  startProxy,
  tempDir,
  until,
  type Proxy,
} from './helpers/core-harness.ts'

// --- a mock vendor that validates ------------------------------------------------------------------

interface Got {
  path: string
  body: any
  raw: string
}

function anthropicProblem(body: any): string | undefined {
  const msgs: any[] = body.messages
  if (!Array.isArray(msgs) || !msgs.length) return 'messages: at least one message is required'
  if (msgs[0].role !== 'user') return 'messages: first message must use the "user" role'
  for (let i = 0; i < msgs.length; i++) {
    const m = msgs[i]
    if (i > 0 && m.role === msgs[i - 1].role)
      return `messages: roles must alternate between "user" and "assistant" (messages.${i})`
    const blocks = Array.isArray(m.content) ? m.content : []
    const uses = blocks.filter((b: any) => b.type === 'tool_use').map((b: any) => b.id)
    if (uses.length) {
      const next = msgs[i + 1]
      const results = Array.isArray(next?.content)
        ? next.content.filter((b: any) => b.type === 'tool_result').map((b: any) => b.tool_use_id)
        : []
      for (const id of uses)
        if (!results.includes(id))
          return `messages.${i + 1}: tool_use ids were found without tool_result blocks immediately after: ${id}`
      const firstOther = next.content.findIndex((b: any) => b.type !== 'tool_result')
      if (firstOther >= 0 && next.content.slice(firstOther).some((b: any) => b.type === 'tool_result'))
        return `messages.${i + 1}: tool_result blocks must come first`
    }
    for (const b of blocks) {
      if (b.type !== 'tool_result') continue
      const prev = msgs[i - 1]
      const ok =
        Array.isArray(prev?.content) && prev.content.some((u: any) => u.type === 'tool_use' && u.id === b.tool_use_id)
      if (!ok) return `messages.${i}: unexpected tool_use_id found in tool_result blocks: ${b.tool_use_id}`
    }
  }
  return undefined
}

function openaiProblem(body: any): string | undefined {
  const msgs: any[] = body.messages
  for (let i = 0; i < msgs.length; i++) {
    const m = msgs[i]
    if (m.role === 'assistant' && Array.isArray(m.tool_calls)) {
      const ids = new Set<string>()
      for (let j = i + 1; j < msgs.length && msgs[j].role === 'tool'; j++) ids.add(msgs[j].tool_call_id)
      for (const c of m.tool_calls)
        if (!ids.has(c.id))
          return `An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${c.id}`
    }
    if (m.role === 'tool') {
      let j = i - 1
      while (j >= 0 && msgs[j].role === 'tool') j--
      if (!msgs[j]?.tool_calls?.some((c: any) => c.id === m.tool_call_id))
        return `messages.[${i}].role: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.`
    }
  }
  return undefined
}

function responsesProblem(body: any): string | undefined {
  const items: any[] = Array.isArray(body.input) ? body.input : []
  const calls = new Set(items.filter((x) => x.type === 'function_call').map((x) => x.call_id))
  const outs = new Set(items.filter((x) => x.type === 'function_call_output').map((x) => x.call_id))
  for (const id of outs) if (!calls.has(id)) return `No tool call found for function call output with call_id ${id}.`
  for (const id of calls) if (!outs.has(id)) return `No tool output found for function call ${id}.`
  return undefined
}

function geminiProblem(body: any): string | undefined {
  const cs: any[] = body.contents
  for (let i = 0; i < cs.length; i++) {
    if (i > 0 && (cs[i].role ?? 'user') === (cs[i - 1].role ?? 'user')) return `contents[${i}]: roles must alternate`
    const calls = (cs[i].parts ?? []).filter((p: any) => p.functionCall).length
    if (calls) {
      const res = (cs[i + 1]?.parts ?? []).filter((p: any) => p.functionResponse).length
      if (res !== calls)
        return `Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn (contents[${i}]).`
    }
  }
  return undefined
}

function streamAnthropic(res: import('node:http').ServerResponse, model: string, input: number) {
  const ev = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`
  res.writeHead(200, { 'content-type': 'text/event-stream' })
  res.end(
    [
      ev('message_start', {
        message: {
          id: 'msg_s',
          type: 'message',
          role: 'assistant',
          model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: input, output_tokens: 1 },
        },
      }),
      ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
      ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'streamed ok' } }),
      ev('content_block_stop', { index: 0 }),
      ev('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 3 } }),
      ev('message_stop', {}),
    ].join(''),
  )
}

interface ValidatingMock {
  url: string
  got: Got[]
  reportInput: number
  close(): Promise<void>
}

async function startValidatingMock(): Promise<ValidatingMock> {
  const got: Got[] = []
  const mock: ValidatingMock = { url: '', got, reportInput: 0, close: async () => {} }
  const server: Server = createServer((req, res) => {
    let raw = ''
    req.on('data', (c) => {
      raw += c
    })
    req.on('end', () => {
      const body = JSON.parse(raw)
      const path = req.url ?? ''
      got.push({ path, body, raw })
      const send = (status: number, json: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' })
        res.end(JSON.stringify(json))
      }
      const input = mock.reportInput || Math.ceil(raw.length / 4)
      if (path.startsWith('/v1/messages')) {
        const p = anthropicProblem(body)
        if (p) return send(400, { type: 'error', error: { type: 'invalid_request_error', message: p } })
        if (body.stream) return streamAnthropic(res, body.model, input)
        return send(200, {
          id: 'msg_1',
          type: 'message',
          role: 'assistant',
          model: body.model,
          content: [{ type: 'text', text: `ok ${got.length}` }],
          stop_reason: 'end_turn',
          stop_sequence: null,
          usage: { input_tokens: input, output_tokens: 5 },
        })
      }
      if (path.startsWith('/v1/chat/completions')) {
        const p = openaiProblem(body)
        if (p) return send(400, { error: { type: 'invalid_request_error', message: p } })
        const text =
          body.messages[0]?.role === 'system' && /summarise/.test(body.messages[0].content)
            ? 'SUMMARY: read src/app.ts and src/util.ts; tests failed at line 42.'
            : `ok ${got.length}`
        return send(200, {
          id: 'chatcmpl-1',
          object: 'chat.completion',
          created: 1,
          model: body.model,
          choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
          usage: { prompt_tokens: input, completion_tokens: 5, total_tokens: input + 5 },
        })
      }
      if (path.startsWith('/v1/responses')) {
        const p = responsesProblem(body)
        if (p) return send(400, { error: { type: 'invalid_request_error', message: p } })
        return send(200, {
          id: 'resp_1',
          object: 'response',
          created_at: 1,
          status: 'completed',
          model: body.model,
          output: [
            {
              id: 'msg_1',
              type: 'message',
              role: 'assistant',
              status: 'completed',
              content: [{ type: 'output_text', text: 'ok', annotations: [] }],
            },
          ],
          usage: { input_tokens: input, output_tokens: 5, total_tokens: input + 5 },
        })
      }
      const p = geminiProblem(body)
      if (p) return send(400, { error: { code: 400, status: 'INVALID_ARGUMENT', message: p } })
      return send(200, {
        candidates: [{ content: { role: 'model', parts: [{ text: 'ok' }] }, finishReason: 'STOP' }],
        usageMetadata: { promptTokenCount: input, candidatesTokenCount: 5, totalTokenCount: input + 5 },
      })
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  mock.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  mock.close = () => new Promise((r) => server.close(() => r()))
  return mock
}

// --- transcripts ------------------------------------------------------------------------------------

const SYSTEM = 'You are a careful coding agent. Use the tools. Never push to main.'
const TS_FILE = (n: number) =>
  Array.from(
    { length: 60 },
    (_, i) =>
      `    export function handler${n}_${i}(input: number): number {\n        return input * ${i} + ${n}\n    }`,
  ).join('\n')
const PY_FILE = 'def main():\n    for i in range(3):\n        print(i)\n\n\n\nif __name__ == "__main__":\n    main()'
// a 20-digit id, which JSON.parse would round: minification must keep it as written
const REPORT = {
  tests: Array.from({ length: 40 }, (_, i) => ({
    name: `case ${i}`,
    status: i === 7 ? 'failed' : 'passed',
    durationMs: 12 + i,
    id: 0,
  })),
}
const BIG_ID = (json: string) => json.replace(/"id": ?0/g, (m) => m.replace('0', '12345678901234567890'))
const JSON_OUT = BIG_ID(JSON.stringify(REPORT, null, 2))
const LAST = 'Now fix handler3_7 in src/handlers/h3.ts so that test case 7 passes; the expected value is 4242.'
const IMAGE = {
  type: 'image',
  source: {
    type: 'base64',
    media_type: 'image/png',
    data: 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
  },
} as const

const TOOLS_ANTHROPIC: Anthropic.Tool[] = [
  {
    name: 'Read',
    description: 'Read a file',
    input_schema: { type: 'object', properties: { file_path: { type: 'string' } }, required: ['file_path'] },
  },
  {
    name: 'Bash',
    description: 'Run a command',
    input_schema: { type: 'object', properties: { command: { type: 'string' } }, required: ['command'] },
  },
]

/** An agent session: reads of TypeScript files (h1.ts twice), a Python file and a JSON test report (each twice). */
function anthropicSession(steps: number): Anthropic.MessageParam[] {
  const msgs: Anthropic.MessageParam[] = [
    { role: 'user', content: 'The test suite fails. Find out why; start with src/handlers.' },
  ]
  for (let i = 0; i < steps; i++) {
    const id = `toolu_${String(i).padStart(3, '0')}`
    const kind = i % 4
    const input =
      kind === 2
        ? { command: 'npm test -- --reporter json' }
        : { file_path: kind === 3 ? 'scripts/tool.py' : `src/handlers/h${i === 5 ? 1 : i}.ts` }
    // step 5 reads h1.ts again after it changed
    const out = kind === 2 ? JSON_OUT : kind === 3 ? PY_FILE : TS_FILE(i)
    msgs.push({
      role: 'assistant',
      content: [
        {
          type: 'text',
          text: `Step ${i}: looking at ${JSON.stringify(input)}.\n\n\`\`\`ts\n    const x${i} = 1\n\`\`\``,
        },
        { type: 'tool_use', id, name: kind === 2 ? 'Bash' : 'Read', input },
      ],
    })
    msgs.push({ role: 'user', content: [{ type: 'tool_result', tool_use_id: id, content: out }] })
  }
  msgs.push({ role: 'assistant', content: 'I have read the handlers and the test report.' })
  msgs.push({ role: 'user', content: [{ type: 'text', text: LAST }, IMAGE] })
  return msgs
}

function lastOf<T>(a: T[]): T {
  return a[a.length - 1]!
}

// --- set-up -------------------------------------------------------------------------------------------

let mock: ValidatingMock
let proxy: Proxy
let auditDir: string
const ANTHROPIC_MODEL = 'claude-sonnet-4-5'

async function start(opts: CompressionOptions, limits?: Record<string, number>): Promise<void> {
  await proxy?.close()
  auditDir = tempDir('agentmesh-compression-audit-')
  proxy = await startProxy({
    plugins: [
      quota({ limits: { teams: { tight: { tokensPerDay: limits?.tight ?? 100_000 } } } }),
      exactCache(),
      compression(opts),
      audit({ dir: auditDir, checkpointSeconds: 0 }),
      anthropic({ baseURL: mock.url, apiKey: 'sk-ant-test' }),
      openai({ baseURL: mock.url, apiKey: 'sk-test-openai' }),
      google({ baseURL: mock.url, apiKey: 'AIza-test' }),
    ],
  })
}

const claude = (headers: Record<string, string> = {}) =>
  new Anthropic({ baseURL: proxy.url, apiKey: 'sk-ant-client', maxRetries: 0, defaultHeaders: headers })
const gpt = (headers: Record<string, string> = {}) =>
  new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'sk-client', maxRetries: 0, defaultHeaders: headers })

function auditEntries(): any[] {
  const out: any[] = []
  for (const f of listLogFiles(auditDir))
    for (const line of readFileSync(f.path, 'utf8').split('\n')) {
      const rec = line ? parseLine(line)?.record() : undefined
      if (rec?.kind === 'request') out.push(rec)
    }
  return out
}

const sizes = (h: string | null) => {
  const m = /^(\d+)->(\d+)$/.exec(h ?? '')
  if (!m) throw new Error(`X-AgentMesh-Compressed is ${h}`)
  return { before: Number(m[1]), after: Number(m[2]) }
}

describe('compression', () => {
  beforeAll(async () => {
    clearVendorEnv()
    mock = await startValidatingMock()
  })
  afterAll(async () => {
    await proxy?.close()
    await mock.close()
  })
  beforeEach(() => {
    mock.got.length = 0
    mock.reportInput = 0
  })

  it('inactive: a request that fits and has budget goes upstream byte for byte, with no compression headers', async () => {
    await start({})
    const sent: string[] = []
    const client = new Anthropic({
      baseURL: proxy.url,
      apiKey: 'sk-ant-client',
      maxRetries: 0,
      fetch: capturingFetch(sent),
    })
    const { response } = await client.messages
      .create({
        model: ANTHROPIC_MODEL,
        max_tokens: 100,
        system: SYSTEM,
        tools: TOOLS_ANTHROPIC,
        messages: anthropicSession(4),
      })
      .withResponse()
    expect(response.headers.get('x-agentmesh-compressed')).toBeNull()
    expect(response.headers.get('x-agentmesh-compression')).toBeNull()
    expect(mock.got[0]!.raw).toBe(sent[0])
  })

  it('context overflow (Anthropic SDK): compressed under the window, valid for the vendor, the never-changed parts intact', async () => {
    await start({ contextWindows: { [ANTHROPIC_MODEL]: 9000 } })
    const messages = anthropicSession(24)
    const { data, response } = await claude()
      .messages.create({ model: ANTHROPIC_MODEL, max_tokens: 1000, system: SYSTEM, tools: TOOLS_ANTHROPIC, messages })
      .withResponse()
    expect(data.content[0]).toMatchObject({ type: 'text' })
    const { before, after } = sizes(response.headers.get('x-agentmesh-compressed'))
    expect(before).toBeGreaterThan(9000)
    expect(after).toBeLessThanOrEqual(9000 * 0.98 - 1000)
    expect(response.headers.get('x-agentmesh-compression')).toBe('lossless,tool-results,old-turns')
    const sent = mock.got[0]!.body
    expect(anthropicProblem(sent)).toBeUndefined()
    expect(sent.system).toBe(SYSTEM)
    expect(sent.tools).toEqual(TOOLS_ANTHROPIC)
    // the last user message, its image included, and the first user message
    expect(lastOf(sent.messages)).toEqual(lastOf(messages))
    expect(sent.messages[0]).toEqual(messages[0])
    expect(sent.messages.length).toBeLessThan(messages.length)
    const ev = proxy.events.find((e) => e.type === 'compressed')
    expect(ev?.data).toMatchObject({
      before,
      after,
      strategies: ['lossless', 'tool-results', 'old-turns'],
      triggers: ['overflow'],
      met: true,
    })
  })

  it('a prompt of 20,000 turns whose roles never alternate is answered in seconds (the search for an alternating cut was quadratic: minutes)', {
    timeout: 60_000,
  }, async () => {
    await start({ contextWindows: { [ANTHROPIC_MODEL]: 9000 } })
    const turn = { role: 'user', content: [{ type: 'text', text: 'What is this? '.repeat(20) }] }
    const res = await fetch(`${proxy.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': 'sk-ant-client' },
      body: JSON.stringify({ model: ANTHROPIC_MODEL, max_tokens: 100, messages: Array(20_000).fill(turn) }),
      signal: AbortSignal.timeout(45_000),
    })
    // whatever the vendor makes of it: the point is that the proxy answered
    expect(res.status).toBeGreaterThanOrEqual(200)
    await res.arrayBuffer()
  })

  it('a streamed request is compressed the same way, and the stream carries the headers', async () => {
    await start({ contextWindows: { [ANTHROPIC_MODEL]: 9000 } })
    const messages = anthropicSession(24)
    const { data: stream, response } = await claude()
      .messages.create({ model: ANTHROPIC_MODEL, max_tokens: 1000, system: SYSTEM, messages, stream: true })
      .withResponse()
    let text = ''
    for await (const e of stream)
      if (e.type === 'content_block_delta' && e.delta.type === 'text_delta') text += e.delta.text
    expect(text).toBe('streamed ok')
    expect(sizes(response.headers.get('x-agentmesh-compressed')).after).toBeLessThanOrEqual(9000 * 0.98 - 1000)
    expect(mock.got[0]!.body.stream).toBe(true)
    expect(anthropicProblem(mock.got[0]!.body)).toBeUndefined()
    expect(lastOf(mock.got[0]!.body.messages)).toEqual(lastOf(messages))
  })

  it('lossless: JSON minified with its numbers verbatim, TS indentation dropped, Python kept, a file read twice keeps only the latest copy', async () => {
    await start({ rules: [{ team: 'lossless', targetRatio: 1, strategies: { toolResults: false, oldTurns: false } }] })
    const messages = anthropicSession(8)
    const { response } = await claude({ 'X-AgentMesh-Team': 'lossless' })
      .messages.create({ model: ANTHROPIC_MODEL, max_tokens: 100, messages })
      .withResponse()
    expect(response.headers.get('x-agentmesh-compression')).toBe('lossless')
    const sent = mock.got[0]!.body.messages
    const resultOf = (id: string) =>
      sent.flatMap((m: any) => (Array.isArray(m.content) ? m.content : [])).find((b: any) => b.tool_use_id === id)
        ?.content
    // steps 2 and 6 ran the tests: the JSON report (the same twice) kept once, minified, the 20-digit id as written
    expect(resultOf('toolu_006')).toBe(BIG_ID(JSON.stringify(REPORT)))
    expect(resultOf('toolu_006')).toContain('"id":12345678901234567890')
    expect(resultOf('toolu_002')).toMatch(
      /^\[AgentMesh compression: this output was identical to the output of a later tool call \(toolu_006\)/,
    )
    // steps 3 and 7 read a Python file: indentation kept, the blank-line run shortened
    expect(resultOf('toolu_003')).toMatch(
      /^\[AgentMesh compression: scripts\/tool.py was read again later \(toolu_007\)/,
    )
    expect(resultOf('toolu_007')).toBe(
      'def main():\n    for i in range(3):\n        print(i)\n\nif __name__ == "__main__":\n    main()',
    )
    // step 4 read TypeScript: no indentation left, every line still there
    expect(resultOf('toolu_004')).toBe(
      TS_FILE(4)
        .split('\n')
        .map((l) => l.trim())
        .join('\n'),
    )
    // step 1 read src/handlers/h1.ts, step 5 read it again: the earlier copy is a marker
    expect(resultOf('toolu_001')).toMatch(
      /^\[AgentMesh compression: src\/handlers\/h1.ts was read again later \(toolu_005\)/,
    )
    expect(resultOf('toolu_005')).toBe(
      TS_FILE(5)
        .split('\n')
        .map((l) => l.trim())
        .join('\n'),
    )
    // a fenced TS block in the assistant's text lost its indentation; the last user message is as sent
    expect(sent[1].content[0].text).toContain('```ts\nconst x0 = 1\n```')
    expect(lastOf(sent)).toEqual(lastOf(messages))
  })

  it('tool-results: outputs older than the last K turns keep head and tail with a marker of the elided tokens', async () => {
    await start({
      rules: [
        {
          team: 'trim',
          targetRatio: 0.5,
          strategies: {
            lossless: false,
            oldTurns: false,
            toolResults: { keepTurns: 3, maxTokens: 200, headTokens: 60, tailTokens: 40 },
          },
        },
      ],
    })
    const messages = anthropicSession(12)
    const { response } = await claude({ 'X-AgentMesh-Team': 'trim' })
      .messages.create({ model: ANTHROPIC_MODEL, max_tokens: 100, messages })
      .withResponse()
    expect(response.headers.get('x-agentmesh-compression')).toBe('tool-results')
    const sent = mock.got[0]!.body.messages
    expect(sent.length).toBe(messages.length)
    const old = sent[2].content[0].content as string
    const original = TS_FILE(0)
    const m = /\n\[\.\.\. (\d+) tokens elided by AgentMesh compression \.\.\.\]\n/.exec(old)
    expect(m).not.toBeNull()
    expect(Number(m![1])).toBeGreaterThan(500)
    expect(original.startsWith(old.slice(0, m!.index))).toBe(true)
    expect(original.endsWith(old.slice(m!.index + m![0].length))).toBe(true)
    // the last 3 turns (step 11 with its result, the final answer, the last question) keep their outputs whole
    expect(sent[sent.length - 4].content[0].content).toBe((messages[messages.length - 4] as any).content[0].content)
  })

  it('old-turns: the oldest turns after the first user message go, calls with their results, roles still alternate', async () => {
    await start({
      rules: [
        {
          team: 'drop',
          targetRatio: 0.3,
          strategies: { lossless: false, toolResults: false, oldTurns: { keepTurns: 4 } },
        },
      ],
    })
    const messages = anthropicSession(16)
    const { response } = await claude({ 'X-AgentMesh-Team': 'drop' })
      .messages.create({ model: ANTHROPIC_MODEL, max_tokens: 100, system: SYSTEM, messages })
      .withResponse()
    expect(response.headers.get('x-agentmesh-compression')).toBe('old-turns')
    const sent = mock.got[0]!.body
    expect(anthropicProblem(sent)).toBeUndefined()
    expect(sent.messages[0]).toEqual(messages[0])
    // what is left after the first message is the newest turns, unchanged and in order
    expect(messages.slice(-(sent.messages.length - 1))).toEqual(sent.messages.slice(1))
    const { before, after } = sizes(response.headers.get('x-agentmesh-compressed'))
    expect(after).toBeLessThan(before * 0.5)
  })

  it('OpenAI chat (openai SDK): tool_calls and tool messages stay paired; system, tools and the last user message untouched', async () => {
    await start({ contextWindows: { 'gpt-4o-mini': 6000 } })
    const tools: OpenAI.ChatCompletionTool[] = [
      {
        type: 'function',
        function: { name: 'read_file', parameters: { type: 'object', properties: { path: { type: 'string' } } } },
      },
    ]
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: 'system', content: SYSTEM },
      { role: 'user', content: 'Why do the tests fail?' },
    ]
    for (let i = 0; i < 16; i++) {
      // two calls in one assistant message: both results must go or stay together
      messages.push({
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            id: `call_${i}a`,
            type: 'function',
            function: { name: 'read_file', arguments: JSON.stringify({ path: `src/h${i}.ts` }, null, 2) },
          },
          {
            id: `call_${i}b`,
            type: 'function',
            function: { name: 'read_file', arguments: JSON.stringify({ path: `src/g${i}.ts` }) },
          },
        ],
      })
      messages.push({ role: 'tool', tool_call_id: `call_${i}a`, content: TS_FILE(i) })
      messages.push({ role: 'tool', tool_call_id: `call_${i}b`, content: JSON_OUT })
    }
    messages.push({ role: 'user', content: LAST })
    const { response } = await gpt()
      .chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 500, tools, messages })
      .withResponse()
    expect(response.status).toBe(200)
    expect(sizes(response.headers.get('x-agentmesh-compressed')).after).toBeLessThanOrEqual(6000 * 0.98 - 500)
    const sent = mock.got[0]!.body
    expect(openaiProblem(sent)).toBeUndefined()
    expect(sent.messages[0]).toEqual(messages[0])
    expect(lastOf(sent.messages)).toEqual(lastOf(messages))
    expect(sent.tools).toEqual(tools)
  })

  it('OpenAI Responses (openai SDK): function_call and function_call_output items stay paired', async () => {
    await start({ contextWindows: { 'gpt-5-mini': 5000 } })
    const input: OpenAI.Responses.ResponseInputItem[] = [
      { role: 'developer', content: SYSTEM },
      { role: 'user', content: 'Why do the tests fail?' },
    ]
    for (let i = 0; i < 14; i++) {
      input.push({
        type: 'function_call',
        call_id: `fc_${i}`,
        name: 'shell',
        arguments: JSON.stringify({ command: ['cat', `src/h${i}.ts`] }),
      })
      input.push({ type: 'function_call_output', call_id: `fc_${i}`, output: TS_FILE(i) })
    }
    input.push({ role: 'user', content: LAST })
    const { response } = await gpt()
      .responses.create({ model: 'gpt-5-mini', max_output_tokens: 500, input })
      .withResponse()
    expect(response.status).toBe(200)
    expect(response.headers.get('x-agentmesh-compression')).toMatch(/old-turns/)
    const sent = mock.got[0]!.body
    expect(responsesProblem(sent)).toBeUndefined()
    expect(sent.input[0]).toEqual(input[0])
    expect(lastOf(sent.input)).toEqual(lastOf(input))
  })

  it('Gemini: functionCall and functionResponse turns stay paired and roles alternate', async () => {
    await start({ contextWindows: { 'gemini-2.5-flash': 5000 } })
    const contents: any[] = [{ role: 'user', parts: [{ text: 'Why do the tests fail?' }] }]
    for (let i = 0; i < 14; i++) {
      contents.push({ role: 'model', parts: [{ functionCall: { name: 'read_file', args: { path: `src/h${i}.ts` } } }] })
      contents.push({
        role: 'user',
        parts: [{ functionResponse: { name: 'read_file', response: { content: TS_FILE(i) } } }],
      })
    }
    contents.push({ role: 'model', parts: [{ text: 'Read them all.' }] })
    contents.push({ role: 'user', parts: [{ text: LAST }] })
    const res = await postJson(
      `${proxy.url}/v1beta/models/gemini-2.5-flash:generateContent`,
      { systemInstruction: { parts: [{ text: SYSTEM }] }, contents, generationConfig: { maxOutputTokens: 500 } },
      { 'x-goog-api-key': 'AIza-client' },
    )
    expect(res.status).toBe(200)
    expect(res.headers.get('x-agentmesh-compression')).toMatch(/old-turns/)
    const sent = mock.got[0]!.body
    expect(geminiProblem(sent)).toBeUndefined()
    expect(sent.systemInstruction).toEqual({ parts: [{ text: SYSTEM }] })
    expect(lastOf(sent.contents)).toEqual(lastOf(contents))
  })

  it('budget: compresses once the team has spent most of a small quota, not before', async () => {
    await start({ budgetRemainingPct: 30 }, { tight: 100_000 })
    const messages = anthropicSession(10)
    const client = claude({ 'X-AgentMesh-Team': 'tight' })
    // the vendor reports 75,000 input tokens for the first call: three quarters of the day's budget
    mock.reportInput = 75_000
    const first = await client.messages.create({ model: ANTHROPIC_MODEL, max_tokens: 100, messages }).withResponse()
    expect(first.response.headers.get('x-agentmesh-compressed')).toBeNull()
    mock.reportInput = 10
    const second = await client.messages
      .create({
        model: ANTHROPIC_MODEL,
        max_tokens: 100,
        messages: [...messages.slice(0, -1), { role: 'user', content: `${LAST} (again)` }],
      })
      .withResponse()
    expect(Number(second.response.headers.get('x-agentmesh-quota-pct'))).toBeGreaterThan(70)
    const { before, after } = sizes(second.response.headers.get('x-agentmesh-compressed'))
    expect(after).toBeLessThanOrEqual(before * 0.6)
    expect(anthropicProblem(mock.got[1]!.body)).toBeUndefined()
    expect(proxy.events.filter((e) => e.type === 'compressed').map((e) => (e.data as any).triggers)).toEqual([
      ['budget'],
    ])
    // the audit entry keeps both sizes (written after the answer went out)
    await until(() => auditEntries().some((e) => e.compression), 'the audit entry of the compressed request')
    const entries = auditEntries()
    expect(entries.find((e) => e.compression)?.compression).toEqual({
      before,
      after,
      strategies: second.response.headers.get('x-agentmesh-compression'),
    })
  })

  it('the exact cache keys the request as the client sent it, not as it was compressed', async () => {
    await start({ contextWindows: { [ANTHROPIC_MODEL]: 9000 } })
    const messages = anthropicSession(24)
    const req = { model: ANTHROPIC_MODEL, max_tokens: 1000, system: SYSTEM, messages }
    const a = await claude().messages.create(req).withResponse()
    expect(a.response.headers.get('x-agentmesh-cache')).toBe('miss')
    expect(a.response.headers.get('x-agentmesh-compressed')).not.toBeNull()
    // the same long request again: a hit on the original's key, nothing sent upstream
    const b = await claude({ 'X-AgentMesh-User': 'another' }).messages.create(req).withResponse()
    expect(b.response.headers.get('x-agentmesh-cache')).toBe('exact')
    expect(mock.got.length).toBe(1)
    // the compressed body, sent as is, is another question: a miss (it fits, so it is not compressed)
    const compressed = mock.got[0]!.body
    const c = await claude()
      .messages.create({ ...compressed, stream: false })
      .withResponse()
    expect(c.response.headers.get('x-agentmesh-cache')).toBe('miss')
    expect(c.response.headers.get('x-agentmesh-compressed')).toBeNull()
    expect(mock.got.length).toBe(2)
  })

  it('summary: dropped turns are summarised by the configured model through the proxy, billed to the same team, and cached', async () => {
    await start({
      summary: { model: 'gpt-4o-mini' },
      rules: [
        {
          team: 'sum',
          targetRatio: 0.3,
          strategies: { lossless: false, toolResults: false, summary: { model: 'gpt-4o-mini' } },
        },
      ],
    })
    const messages = anthropicSession(16)
    // the first user message is not the last one, so the summary goes at its end
    messages.splice(
      1,
      0,
      { role: 'assistant', content: 'Looking.' },
      { role: 'user', content: 'Start with the handlers.' },
    )
    const client = claude({ 'X-AgentMesh-Team': 'sum' })
    const { response } = await client.messages
      .create({ model: ANTHROPIC_MODEL, max_tokens: 100, messages })
      .withResponse()
    expect(response.headers.get('x-agentmesh-compression')).toBe('old-turns,summary')
    const summaryCalls = mock.got.filter((g) => g.path.startsWith('/v1/chat/completions'))
    expect(summaryCalls).toHaveLength(1)
    expect(summaryCalls[0]!.body.model).toBe('gpt-4o-mini')
    expect(summaryCalls[0]!.body.messages[1].content).toContain('src/handlers/h0.ts')
    const main = mock.got.find((g) => g.path.startsWith('/v1/messages'))!.body
    expect(anthropicProblem(main)).toBeUndefined()
    const first = main.messages[0].content
    expect(JSON.stringify(first)).toContain('SUMMARY: read src/app.ts')
    // the summary call went through the pipeline as the same team
    const responses = proxy.events.filter((e) => e.type === 'response').map((e) => e.data as any)
    expect(responses.find((r) => r.model.startsWith('gpt-4o-mini'))?.identity.team).toBe('sum')
    // the same conversation again: the summary comes from the plugin's cache
    mock.got.length = 0
    await client.messages.create({
      model: ANTHROPIC_MODEL,
      max_tokens: 100,
      messages: [...messages.slice(0, -1), { role: 'user', content: `${LAST} Please.` }],
    })
    expect(mock.got.filter((g) => g.path.startsWith('/v1/chat/completions'))).toHaveLength(0)
    expect(JSON.stringify(mock.got[0]!.body.messages[0].content)).toContain('SUMMARY: read src/app.ts')
  })

  it('the solo and team presets run it, before prompt-cache marks the final body', async () => {
    for (const preset of ['solo', 'team']) {
      const names = (await resolveConfig({ preset })).plugins.map((p) => p.name)
      expect(names).toContain('compression')
      expect(names.indexOf('compression')).toBeLessThan(names.indexOf('prompt-cache'))
    }
  })

  it('lossless rewriting keeps what the language needs', () => {
    // strings keep their spaces, escaped quotes and backslashes; numbers are copied as written
    expect(minifyJson('{ "a b": "x \\" y",\n  "n": [ 1.50, 12345678901234567890 ],\t"p": "C:\\\\dir\\\\" }')).toBe(
      '{"a b":"x \\" y","n":[1.50,12345678901234567890],"p":"C:\\\\dir\\\\"}',
    )
    expect(minifyJson('not json { }')).toBeUndefined()
    // a template literal's indentation is part of the string: kept
    expect(minifyCode('function f() {\n  return `a\n    b`\n}', 'ts')).toBe('function f() {\n  return `a\n    b`\n}')
    expect(minifyCode('function f() {\n  return 1   \n}', 'ts')).toBe('function f() {\nreturn 1\n}')
    expect(minifyCode('all:\n\tcc -o app main.c\n', 'makefile')).toBe('all:\n\tcc -o app main.c\n')
    expect(minifyCode('line one  \nline two', 'md')).toBe('line one  \nline two')
    expect(minifyFences('Run:\n```yaml\nsteps:\n  - run: npm test   \n```\nand\n```js\n    x()\n```')).toBe(
      'Run:\n```yaml\nsteps:\n  - run: npm test\n```\nand\n```js\nx()\n```',
    )
  })

  it('rejects bad options naming the field', () => {
    expect(() => compression({ budgetRemainingPct: 130 })).toThrow(/budgetRemainingPct/)
    expect(() => compression({ rules: [{ targetRatio: 2 }] })).toThrow(/rules\[0\]\.targetRatio/)
    expect(() => compression({ summary: {} as never })).toThrow(/summary/)
    expect(() => compression({ nope: 1 } as never)).toThrow(/unknown option "nope"/)
  })
})
