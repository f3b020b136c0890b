// Reversible personal-data masking (plugins/mask): the detector's checksums, the restorer's
// hold-back, and the whole path through a listening proxy with the official clients: the vendor
// (a mock) never sees the real values and answers with placeholders; the client gets the values
// back, whole and streamed, with a placeholder split across events; caches, the audit log and
// events hold only placeholders.
import Anthropic from '@anthropic-ai/sdk'
import { GoogleGenAI } from '@google/genai'
import OpenAI from 'openai'
import { readFileSync, rmSync } from 'node:fs'
import { createServer, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { resolveConfig } from '../core/config.ts'
import { createAgentMesh, type AgentMesh } from '../core/index.ts'
import type { MeshEvent } from '../core/types.ts'
import { audit, listLogFiles } from '../plugins/audit/index.ts'
import { exactCache } from '../plugins/exact-cache/index.ts'
import {
  bsnValid,
  detectPersonalData,
  ibanValid,
  luhnValid,
  nirValid,
  spanishIdValid,
  steuerIdValid,
} from '../plugins/mask/detect.ts'
import { mask } from '../plugins/mask/index.ts'
import { Restorer } from '../plugins/mask/restore.ts'
import { normalise } from '../plugins/normalise/index.ts'
import { anthropic } from '../plugins/vendors/anthropic.ts'
import { google } from '../plugins/vendors/google.ts'
import { openai } from '../plugins/vendors/openai.ts'
import { tempDir } from './helpers/core-harness.ts'
import { mockText, startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'

const found = (text: string, kinds?: string[]) =>
  detectPersonalData(text, kinds).map((m) => `${m.kind}=${text.slice(m.start, m.end)}`)

describe('detector: checksums and look-alikes', () => {
  it('cards: Luhn, a known network, one kind of separator; public test numbers are not personal data', () => {
    expect(luhnValid('4539148803436467')).toBe(true)
    expect(luhnValid('4539148803436468')).toBe(false)
    expect(found('card 4539 1488 0343 6467 ok')).toEqual(['card=4539 1488 0343 6467'])
    expect(found('card 4539-1488-0343-6467.')).toEqual(['card=4539-1488-0343-6467'])
    expect(found('amex 3714 496353 98431')).toEqual([])
    expect(found('amex 3782 822463 10005 is a Stripe test number')).toEqual([])
    expect(found('bad check 4539 1488 0343 6468')).toEqual([])
    expect(found('mixed 4539 1488-0343 6467')).toEqual([])
    expect(found('docs: use 4242 4242 4242 4242 or 4111111111111111')).toEqual([])
    // Luhn-valid but no network starts with 9; inside a longer number or a hex id it is not a card
    expect(found('id 9999999999999995')).toEqual([])
    expect(found('tx 145391488034364671 and a1234539148803436467f')).toEqual([])
  })

  it('IBANs: the country length and mod-97; a following upper-case word is not swallowed', () => {
    expect(ibanValid('DE89370400440532013000')).toBe(true)
    expect(ibanValid('DE89370400440532013001')).toBe(false)
    expect(ibanValid('DE8937040044053201300')).toBe(false)
    expect(found('pay DE89 3704 0044 0532 0130 00 THANKS')).toEqual(['iban=DE89 3704 0044 0532 0130 00'])
    expect(found('GB82WEST12345698765432')).toEqual(['iban=GB82WEST12345698765432'])
    expect(found('FR14 2004 1010 0505 0001 3M02 606')).toEqual(['iban=FR14 2004 1010 0505 0001 3M02 606'])
    expect(found('GB82WEST12345698765433 and XX82WEST12345698765432')).toEqual([])
  })

  it('national ids: SSN rules, NINO prefixes, DNI/NIE letter, NIR key (Corsica too), Steuer-ID, BSN 11-proof with its name', () => {
    expect(found('SSN 536-22-1234')).toEqual(['national-id=536-22-1234'])
    for (const bad of ['000-22-1234', '666-22-1234', '912-22-1234', '536-00-1234', '536-22-0000', '078-05-1120'])
      expect(found(`SSN ${bad}`)).toEqual([])
    expect(found('released 2024-01-15, ticket 123-45-67890')).toEqual([])
    expect(found('NINO AB 12 34 56 C')).toEqual(['national-id=AB 12 34 56 C'])
    expect(found('NINO GB123456A, DA123456A, AB123456E')).toEqual([])
    expect(spanishIdValid('12345678Z')).toBe(true)
    expect(spanishIdValid('12345678A')).toBe(false)
    expect(found('DNI 12345678-Z, NIE X1234567L, bad 12345678A')).toEqual([
      'national-id=12345678-Z',
      'national-id=X1234567L',
    ])
    expect(nirValid('184127645108946')).toBe(true)
    expect(nirValid('184127645108947')).toBe(false)
    expect(nirValid('269052A00401228')).toBe(true)
    expect(found('NIR 2 69 05 2A 004 012 28')).toEqual(['national-id=2 69 05 2A 004 012 28'])
    expect(steuerIdValid('86095742719')).toBe(true)
    expect(steuerIdValid('86095742718')).toBe(false)
    // every digit once: fails the distribution rule whatever the check digit
    expect(steuerIdValid('12345678903')).toBe(false)
    expect(bsnValid('111222333')).toBe(true)
    expect(bsnValid('111222334')).toBe(false)
    expect(found('BSN: 111222333')).toEqual(['national-id=111222333'])
    expect(found('order 111222333 shipped')).toEqual([])
  })

  it('IPs: v4 and v6 addresses, not versions, loopback, timestamps or C++ names', () => {
    expect(found('from 192.168.1.20 and 2001:db8::8a2e:370:7334', ['ip'])).toEqual([
      'ip=192.168.1.20',
      'ip=2001:db8::8a2e:370:7334',
    ])
    expect(found('version 1.2.3.4, v10.0.0.1, Chrome/120.0.6099.109, build: 10.0.19041.1', ['ip'])).toEqual([])
    expect(found('127.0.0.1, 0.0.0.0, 255.255.255.0, 256.1.1.1, 1.2.3.4.5, ::1', ['ip'])).toEqual([])
    expect(found('at 12:30:45 std::map<a,b> dead:beef', ['ip'])).toEqual([])
  })

  it('emails and phones; overlaps go to the more specific kind; unknown kinds throw', () => {
    expect(found('mail John.Doe+x@mail.example.co.uk.')).toEqual(['email=John.Doe+x@mail.example.co.uk'])
    expect(found('icon@2x.png git@github.com:org/repo.git npm i @scope/pkg@1.2.3')).toEqual([])
    // a URL's user:password@host is a credential (the secrets guard's), not a mailbox; mailto: is one
    expect(
      found(
        'DATABASE_URL=postgres://admin:s3cret@db.internal.example.com:5432/x and https://x-access-token:ghp_abc@github.com/acme',
      ),
    ).toEqual([])
    expect(found('<a href="mailto:john@example.com">')).toEqual(['email=john@example.com'])
    expect(found('call +44 20 7946 0958 or (415) 555-2671 or 06 12 34 56 78')).toEqual([
      'phone=+44 20 7946 0958',
      'phone=(415) 555-2671',
      'phone=06 12 34 56 78',
    ])
    expect(found('date 2024-01-15 12:30, pi 3.14159265, port 8080')).toEqual([])
    expect(found('IBAN DE89 3704 0044 0532 0130 00')).toEqual(['iban=DE89 3704 0044 0532 0130 00'])
    expect(found('a@b.com 4539148803436467', ['card'])).toEqual(['card=4539148803436467'])
    expect(() => detectPersonalData('x', ['passport'])).toThrow(/unknown kind "passport"/)
  })
})

describe('restorer: the answer text gets the values back', () => {
  const values = new Map([
    ['<EMAIL_1>', 'john@example.com'],
    ['<CARD_12>', '4539148803436467'],
  ])
  const longest = 9

  it('restores a placeholder split over any number of deltas, and leaves unknown ones and other "<" alone', () => {
    const text = 'Sent to <EMAIL_1> (card <CARD_12>), not <EMAIL_2>; 1 < 2 and <b>bold</b>.'
    for (const size of [1, 2, 3, 5, 7, 100]) {
      const r = new Restorer(values, longest)
      let out = ''
      for (let i = 0; i < text.length; i += size) out += r.rewrite(text.slice(i, i + size))
      out += r.flush()
      expect(out).toBe('Sent to john@example.com (card 4539148803436467), not <EMAIL_2>; 1 < 2 and <b>bold</b>.')
    }
  })

  it('holds back only what could still become a placeholder, and flushes it at the end', () => {
    const r = new Restorer(values, longest)
    expect(r.rewrite('see <EMA')).toBe('see ')
    expect(r.rewrite('X>')).toBe('<EMAX>')
    expect(r.rewrite('a <')).toBe('a ')
    expect(r.flush()).toBe('<')
    expect(r.rewrite('<div')).toBe('<div')
  })
})

// ---------------------------------------------------------------- through a proxy

const EMAIL = 'john.doe@example.com'
const EMAIL2 = 'jane.roe@example.org'
const CARD = '4539 1488 0343 6467'
const IBAN = 'DE89 3704 0044 0532 0130 00'
const REAL = [EMAIL, EMAIL2, CARD, '4539148803436467', IBAN, 'DE89370400440532013000']

/**
 * A vendor whose streams split the answer into 3-character deltas, so every placeholder is cut
 * across events. It answers with the prompt's text (placeholders included), as text and as a tool
 * call's arguments when the request offers a tool.
 */
interface SplitMock {
  url: string
  bodies: string[]
  close(): Promise<void>
}

const pieces = (s: string) => s.match(/[\s\S]{1,3}/g) ?? []
const sse = (data: unknown, event?: string) =>
  (event ? `event: ${event}\n` : '') + `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`

function lastText(body: any): string {
  if (Array.isArray(body.contents))
    return body.contents
      .at(-1)
      .parts.map((p: any) => p.text ?? '')
      .join('')
  if (typeof body.input === 'string') return body.input
  const m = (body.messages ?? body.input ?? []).at(-1)
  if (!m) return ''
  return typeof m.content === 'string' ? m.content : m.content.map((b: any) => b.text ?? '').join('')
}

function writeEvents(res: ServerResponse, events: string[]) {
  res.writeHead(200, { 'content-type': 'text/event-stream' })
  // every event in two TCP writes, cut in its middle: the proxy's parser sees partial events too
  let i = 0
  const next = () => {
    if (i >= events.length) return void res.end()
    const e = events[i++]!
    const cut = Math.floor(e.length / 2)
    res.write(e.slice(0, cut))
    setTimeout(() => {
      res.write(e.slice(cut))
      setTimeout(next, 1)
    }, 1)
  }
  next()
}

function openaiSplit(body: any, text: string, res: ServerResponse) {
  const base = { id: 'chatcmpl-split', object: 'chat.completion.chunk', created: 1, model: body.model }
  const chunk = (delta: unknown, finish: string | null = null) =>
    sse({ ...base, choices: [{ index: 0, delta, finish_reason: finish }] })
  const events = [chunk({ role: 'assistant', content: '' })]
  if (body.tools) {
    events.push(
      chunk({
        tool_calls: [
          { index: 0, id: 'call_1', type: 'function', function: { name: body.tools[0].function.name, arguments: '' } },
        ],
      }),
    )
    for (const p of pieces(JSON.stringify({ note: text })))
      events.push(chunk({ tool_calls: [{ index: 0, function: { arguments: p } }] }))
  } else for (const p of pieces(`echo: ${text}`)) events.push(chunk({ content: p }))
  events.push(chunk({}, body.tools ? 'tool_calls' : 'stop'))
  if (body.stream_options?.include_usage)
    events.push(sse({ ...base, choices: [], usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 } }))
  events.push(sse('[DONE]'))
  writeEvents(res, events)
}

function anthropicSplit(body: any, text: string, res: ServerResponse) {
  const ev = (e: Record<string, unknown>) => sse(e, String(e.type))
  const events = [
    ev({
      type: 'message_start',
      message: {
        id: 'msg_split',
        type: 'message',
        role: 'assistant',
        model: body.model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: 5, output_tokens: 1 },
      },
    }),
  ]
  events.push(ev({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }))
  for (const p of pieces(`echo: ${text}`))
    events.push(ev({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: p } }))
  events.push(ev({ type: 'content_block_stop', index: 0 }))
  if (body.tools) {
    events.push(
      ev({
        type: 'content_block_start',
        index: 1,
        content_block: { type: 'tool_use', id: 'toolu_1', name: body.tools[0].name, input: {} },
      }),
    )
    for (const p of pieces(JSON.stringify({ note: text })))
      events.push(ev({ type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: p } }))
    events.push(ev({ type: 'content_block_stop', index: 1 }))
  }
  events.push(
    ev({
      type: 'message_delta',
      delta: { stop_reason: body.tools ? 'tool_use' : 'end_turn', stop_sequence: null },
      usage: { output_tokens: 9 },
    }),
  )
  events.push(ev({ type: 'message_stop' }))
  writeEvents(res, events)
}

function geminiSplit(text: string, res: ServerResponse) {
  const ps = pieces(`echo: ${text}`)
  writeEvents(
    res,
    ps.map((p, i) =>
      sse({
        candidates: [
          {
            content: { role: 'model', parts: [{ text: p }] },
            index: 0,
            ...(i === ps.length - 1 ? { finishReason: 'STOP' } : {}),
          },
        ],
        ...(i === ps.length - 1
          ? { usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 5, totalTokenCount: 10 } }
          : {}),
        modelVersion: 'gemini-2.5-flash',
        responseId: 'gem-split',
      }),
    ),
  )
}

/** Gemini's stream without alt=sse: one JSON array of the chunks, the text cut across elements */
function geminiArray(text: string, res: ServerResponse) {
  const ps = pieces(`echo: ${text}`)
  const body = JSON.stringify(
    ps.map((p, i) => ({
      candidates: [
        {
          content: { role: 'model', parts: [{ text: p }] },
          index: 0,
          ...(i === ps.length - 1 ? { finishReason: 'STOP' } : {}),
        },
      ],
      ...(i === ps.length - 1
        ? { usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 5, totalTokenCount: 10 } }
        : {}),
      modelVersion: 'gemini-2.5-flash',
    })),
  )
  res.writeHead(200, { 'content-type': 'application/json' }).end(body)
}

function responsesSplit(body: any, text: string, res: ServerResponse) {
  let seq = 0
  const ev = (type: string, data: Record<string, unknown>) => sse({ type, ...data, sequence_number: seq++ }, type)
  const full = `echo: ${text}`
  const item = {
    id: 'msg_1',
    type: 'message',
    status: 'completed',
    role: 'assistant',
    content: [{ type: 'output_text', text: full, annotations: [] }],
  }
  const response = (status: string, output: unknown[]) => ({
    id: 'resp_split',
    object: 'response',
    created_at: 1,
    status,
    model: body.model,
    output,
    usage: status === 'completed' ? { input_tokens: 5, output_tokens: 5, total_tokens: 10 } : null,
  })
  const events = [ev('response.created', { response: response('in_progress', []) })]
  events.push(
    ev('response.output_item.added', { output_index: 0, item: { ...item, status: 'in_progress', content: [] } }),
  )
  events.push(
    ev('response.content_part.added', {
      item_id: 'msg_1',
      output_index: 0,
      content_index: 0,
      part: { type: 'output_text', text: '', annotations: [] },
    }),
  )
  for (const p of pieces(full))
    events.push(ev('response.output_text.delta', { item_id: 'msg_1', output_index: 0, content_index: 0, delta: p }))
  events.push(ev('response.output_text.done', { item_id: 'msg_1', output_index: 0, content_index: 0, text: full }))
  events.push(
    ev('response.content_part.done', { item_id: 'msg_1', output_index: 0, content_index: 0, part: item.content[0] }),
  )
  events.push(ev('response.output_item.done', { output_index: 0, item }))
  events.push(ev('response.completed', { response: response('completed', [item]) }))
  writeEvents(res, events)
}

async function startSplitMock(): Promise<SplitMock> {
  const bodies: string[] = []
  const server: Server = createServer((req, res) => {
    let raw = ''
    req.on('data', (c) => (raw += c))
    req.on('end', () => {
      bodies.push(raw)
      const body = JSON.parse(raw)
      const text = lastText(body)
      const path = req.url ?? ''
      if (path.startsWith('/v1/chat/completions')) return openaiSplit(body, text, res)
      if (path.startsWith('/v1/messages')) return anthropicSplit(body, text, res)
      if (path.startsWith('/v1/responses')) return responsesSplit(body, text, res)
      if (path.includes(':streamGenerateContent') && !path.includes('alt=sse')) return geminiArray(text, res)
      if (path.includes(':streamGenerateContent')) return geminiSplit(text, res)
      res.writeHead(404).end()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bodies,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections()
        server.close(() => r())
      }),
  }
}

function expectNoRealValues(where: string, text: string) {
  for (const v of REAL) expect(text.includes(v), `${where} holds ${v}`).toBe(false)
}

async function startMesh(
  upstreamUrl: string,
  dataDir: string,
  events: MeshEvent[],
): Promise<{ app: AgentMesh; url: string; close(): Promise<void> }> {
  const vendors = [
    anthropic({ baseURL: upstreamUrl, apiKey: 'test-key' }),
    openai({ baseURL: upstreamUrl, apiKey: 'test-key' }),
    google({ baseURL: upstreamUrl, apiKey: 'test-key' }),
  ]
  const app = await createAgentMesh({
    dataDir,
    // every log line is captured (process.stderr) and checked for the values
    log: { level: 'debug' },
    plugins: [
      // every kind for everyone; "billing" masks emails only; "open" masks nothing
      mask({
        kinds: ['email', 'phone', 'card', 'iban', 'national-id', 'ip'],
        teams: { billing: ['email'], open: false },
      }),
      normalise(),
      // global scope: only the masking tells two teams' keys apart
      exactCache({ scope: 'global', retryWindowSeconds: 0, persist: true }),
      audit({ includeContent: true, checkpointSeconds: 0 }),
      ...vendors,
    ],
  })
  app.mesh.on((e) => void events.push(e))
  const server = await app.listen({ port: 0, host: '127.0.0.1' })
  return {
    app,
    url: server.url,
    close: async () => {
      await server.close()
      await app.close()
    },
  }
}

describe('masking through the proxy', () => {
  let mock: MockUpstream
  let split: SplitMock
  let main: Awaited<ReturnType<typeof startMesh>>
  let splitMesh: Awaited<ReturnType<typeof startMesh>>
  const events: MeshEvent[] = []
  const dirs = [tempDir('am-mask-'), tempDir('am-mask-split-')]
  const team = (t: string) => ({ 'x-agentmesh-team': t })
  const gpt = (url: string, t = 'eng') =>
    new OpenAI({ baseURL: `${url}/v1`, apiKey: 'client-key', maxRetries: 0, defaultHeaders: team(t) })
  const claude = (url: string, t = 'eng') =>
    new Anthropic({ baseURL: url, apiKey: 'client-key', maxRetries: 0, defaultHeaders: team(t) })
  const gemini = (url: string, t = 'eng') =>
    new GoogleGenAI({
      apiKey: 'AIza-client-key',
      httpOptions: { baseUrl: url, apiVersion: 'v1beta', headers: team(t), retryOptions: { attempts: 1 } },
    })

  const logLines: string[] = []
  const stderrWrite = process.stderr.write.bind(process.stderr)

  beforeAll(async () => {
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: any[]) => {
      logLines.push(String(chunk))
      return stderrWrite(chunk, ...rest)
    }) as typeof process.stderr.write
    mock = await startMockUpstream()
    split = await startSplitMock()
    main = await startMesh(mock.url, dirs[0]!, events)
    splitMesh = await startMesh(split.url, dirs[1]!, events)
  })

  afterAll(async () => {
    process.stderr.write = stderrWrite
    await main.close()
    await splitMesh.close()
    await mock.close()
    await split.close()
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })

  const prompt = `Write to ${EMAIL} that card ${CARD} and IBAN ${IBAN} are on file; cc ${EMAIL}.`
  const masked = 'Write to <EMAIL_1> that card <CARD_1> and IBAN <IBAN_1> are on file; cc <EMAIL_1>.'

  it('OpenAI, not streamed: upstream gets placeholders, the client the values, with X-AgentMesh-Masked and a pii_masked event', async () => {
    const n = mock.received.length
    const { data, response } = await gpt(main.url)
      .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: prompt }] })
      .withResponse()
    const sent = mock.received.slice(n)
    expect(sent).toHaveLength(1)
    expectNoRealValues('upstream body', sent[0]!.raw)
    expect(sent[0]!.body.messages[0].content).toBe(masked)
    expect(data.choices[0]!.message.content).toBe(mockText(prompt))
    expect(response.headers.get('x-agentmesh-masked')).toBe('email:1,card:1,iban:1')
    const id = response.headers.get('x-agentmesh-request-id')
    const ev = events.find((e) => e.type === 'pii_masked' && (e.data as any).id === id)
    expect(ev?.data).toEqual({ id, team: 'eng', counts: { email: 1, card: 1, iban: 1 } })
  })

  it('Anthropic, not streamed, and a whole answer whose placeholder needs JSON escaping around it', async () => {
    const text = `He said "mail ${EMAIL}"\n\tthen left`
    const msg = await claude(main.url).messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 64,
      messages: [{ role: 'user', content: text }],
    })
    expect(msg.content[0]).toMatchObject({ type: 'text', text: mockText(text) })
    expectNoRealValues('upstream body', mock.received.at(-1)!.raw)
  })

  it('OpenAI streamed, every placeholder split across events (and TCP writes): text and tool arguments restored', async () => {
    const stream = gpt(splitMesh.url).chat.completions.stream({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: prompt }],
      stream: true,
    })
    const deltas: string[] = []
    stream.on('content', (d) => void deltas.push(d))
    const final = await stream.finalChatCompletion()
    expect(final.choices[0]!.message.content).toBe(`echo: ${prompt}`)
    expect(deltas.join('')).toBe(`echo: ${prompt}`)
    const tools = [
      {
        type: 'function' as const,
        function: { name: 'send_note', parameters: { type: 'object', properties: { note: { type: 'string' } } } },
      },
    ]
    const withTool = await gpt(splitMesh.url)
      .chat.completions.stream({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: prompt }],
        tools,
        stream: true,
      })
      .finalChatCompletion()
    expect(JSON.parse(withTool.choices[0]!.message.tool_calls![0]!.function.arguments)).toEqual({ note: prompt })
    for (const b of split.bodies) expectNoRealValues('upstream body', b)
  })

  it('Anthropic streamed: split text and input_json deltas restored; the final message agrees', async () => {
    const tools = [
      { name: 'send_note', input_schema: { type: 'object' as const, properties: { note: { type: 'string' } } } },
    ]
    const stream = claude(splitMesh.url).messages.stream({
      model: 'claude-haiku-4-5',
      max_tokens: 64,
      messages: [{ role: 'user', content: prompt }],
      tools,
    })
    let streamed = ''
    stream.on('text', (t) => void (streamed += t))
    const msg = await stream.finalMessage()
    expect(streamed).toBe(`echo: ${prompt}`)
    expect(msg.content[0]).toMatchObject({ type: 'text', text: `echo: ${prompt}` })
    expect(msg.content[1]).toMatchObject({ type: 'tool_use', input: { note: prompt } })
    expectNoRealValues('upstream body', split.bodies.at(-1)!)
  })

  it('Gemini: generateContent and a split streamGenerateContent', async () => {
    const whole = await gemini(main.url).models.generateContent({ model: 'gemini-2.5-flash', contents: prompt })
    expect(whole.text).toBe(mockText(prompt))
    expectNoRealValues('upstream body', mock.received.at(-1)!.raw)
    let streamed = ''
    for await (const c of await gemini(splitMesh.url).models.generateContentStream({
      model: 'gemini-2.5-flash',
      contents: prompt,
    }))
      streamed += c.text ?? ''
    expect(streamed).toBe(`echo: ${prompt}`)
    expectNoRealValues('upstream body', split.bodies.at(-1)!)
    // without alt=sse the stream is one JSON array: the same question is an exact-cache hit rendered
    // as one; another goes to the vendor, whose text continues from one element to the next
    const asArray = async (text: string) => {
      const res = await fetch(`${splitMesh.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-goog-api-key': 'AIza-client-key', ...team('eng') },
        body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text }] }] }),
      })
      expect(res.status).toBe(200)
      const chunks = (await res.json()) as any[]
      return {
        cache: res.headers.get('x-agentmesh-cache'),
        chunks: chunks.length,
        text: chunks.map((c) => c.candidates[0].content.parts.map((p: any) => p.text).join('')).join(''),
      }
    }
    expect(await asArray(prompt)).toMatchObject({ cache: 'exact', text: `echo: ${prompt}` })
    const other = `${prompt} As an array.`
    const array = await asArray(other)
    expect(array).toMatchObject({ cache: 'miss', text: `echo: ${other}` })
    expect(array.chunks).toBeGreaterThan(10)
    expectNoRealValues('upstream body', split.bodies.at(-1)!)
  })

  it('Responses: whole and split stream, the done events and the final response restored too', async () => {
    const whole = await gpt(main.url).responses.create({ model: 'gpt-4o-mini', input: prompt })
    expect(whole.output_text).toBe(mockText(prompt))
    expectNoRealValues('upstream body', mock.received.at(-1)!.raw)
    const stream = gpt(splitMesh.url).responses.stream({ model: 'gpt-4o-mini', input: prompt })
    let deltas = ''
    const seqs: number[] = []
    for await (const e of stream) {
      seqs.push(e.sequence_number)
      if (e.type === 'response.output_text.delta') deltas += e.delta
      if (e.type === 'response.output_text.done') expect(e.text).toBe(`echo: ${prompt}`)
    }
    expect(deltas).toBe(`echo: ${prompt}`)
    expect((await stream.finalResponse()).output_text).toBe(`echo: ${prompt}`)
    expect(seqs).toEqual(seqs.map((_, i) => i))
    expectNoRealValues('upstream body', split.bodies.at(-1)!)
  })

  it('a translated answer, whole and streamed (an OpenAI client asking a Claude model), is restored as well', async () => {
    const whole = await gpt(main.url).chat.completions.create({
      model: 'claude-haiku-4-5',
      messages: [{ role: 'user', content: prompt }],
    })
    expect(whole.choices[0]!.message.content).toBe(mockText(prompt))
    expect(mock.received.at(-1)!.path).toMatch(/^\/v1\/messages/)
    expectNoRealValues('upstream body', mock.received.at(-1)!.raw)
    const stream = gpt(splitMesh.url).chat.completions.stream({
      model: 'claude-haiku-4-5',
      messages: [{ role: 'user', content: prompt }],
      stream: true,
    })
    const final = await stream.finalChatCompletion()
    expect(final.choices[0]!.message.content).toBe(`echo: ${prompt}`)
    expectNoRealValues('upstream body', split.bodies.at(-1)!)
  })

  it("exact cache: stored with placeholders, replayed with each request's own values; an unmasked request has another key", async () => {
    const ask = (email: string, t = 'eng') =>
      gpt(main.url, t)
        .chat.completions.create({
          model: 'gpt-4o',
          messages: [{ role: 'user', content: `Remind ${email} about the meeting.` }],
        })
        .withResponse()
    const n = mock.received.length
    const first = await ask(EMAIL)
    expect(first.response.headers.get('x-agentmesh-cache')).toBe('miss')
    expect(first.data.choices[0]!.message.content).toBe(mockText(`Remind ${EMAIL} about the meeting.`))
    // another address masks to the same prompt: the cached answer, restored with this request's value
    const second = await ask(EMAIL2)
    expect(second.response.headers.get('x-agentmesh-cache')).toBe('exact')
    expect(second.data.choices[0]!.message.content).toBe(mockText(`Remind ${EMAIL2} about the meeting.`))
    // streamed replay of the same entry
    let streamed = ''
    for await (const c of await gpt(main.url).chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: `Remind ${EMAIL2} about the meeting.` }],
      stream: true,
    }))
      streamed += c.choices[0]?.delta?.content ?? ''
    expect(streamed).toBe(mockText(`Remind ${EMAIL2} about the meeting.`))
    expect(mock.received.length).toBe(n + 1)
    // team "open" masks nothing: its real address goes upstream, under a key of its own
    const open = await ask(EMAIL, 'open')
    expect(open.response.headers.get('x-agentmesh-cache')).toBe('miss')
    expect(open.response.headers.get('x-agentmesh-masked')).toBeNull()
    expect(mock.received.at(-1)!.raw).toContain(EMAIL)
    // nor does it get the masked entry by sending the placeholder's text itself
    const literal = await gpt(main.url, 'open')
      .chat.completions.create({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'Remind <EMAIL_1> about the meeting.' }],
      })
      .withResponse()
    expect(literal.response.headers.get('x-agentmesh-cache')).toBe('miss')
  })

  it('per team: "billing" masks emails only, so its card goes upstream as it is', async () => {
    const { response } = await gpt(main.url, 'billing')
      .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: prompt }] })
      .withResponse()
    expect(response.headers.get('x-agentmesh-masked')).toBe('email:1')
    const raw = mock.received.at(-1)!.raw
    expect(raw).not.toContain(EMAIL)
    expect(raw).toContain(CARD)
  })

  it('nothing unmasked in the cache store, the audit log (with content kept) or the events', async () => {
    // the open team's own requests hold its real values by design: only masked requests are checked
    // (and "billing" keeps its card by its own config: only its emails are checked)
    const masked = (t: string) =>
      new Set(
        events.filter((e) => e.type === 'pii_masked' && (e.data as any).team === t).map((e) => (e.data as any).id),
      )
    const maskedIds = masked('eng')
    const billing = masked('billing')
    expect(maskedIds.size).toBeGreaterThan(5)
    expect(billing.size).toBe(1)
    // the cached answers are there, with placeholders, and without the values
    let cached = 0
    for (const app of [main.app, splitMesh.app]) {
      for (const key of await app.mesh.storage.getKeys()) {
        const v = JSON.stringify(await app.mesh.storage.getItem(key))
        if (!v.includes('<EMAIL_1>')) continue
        cached++
        // (an entry of "billing", which keeps its card, holds <EMAIL_1> but no <CARD_1>)
        for (const [placeholder, values] of [
          ['<EMAIL_1>', [EMAIL, EMAIL2]],
          ['<CARD_1>', [CARD, '4539148803436467']],
          ['<IBAN_1>', [IBAN]],
        ] as const) {
          if (v.includes(placeholder))
            for (const value of values) expect(v.includes(value), `storage ${key} holds ${value}`).toBe(false)
        }
      }
    }
    expect(cached).toBeGreaterThan(0)
    // closed, so every audit entry is written
    await main.app.close().catch(() => {})
    await splitMesh.app.close().catch(() => {})
    let audited = 0
    for (const dir of dirs) {
      for (const f of listLogFiles(join(dir, 'audit'))) {
        for (const line of readFileSync(f.path, 'utf8').split('\n').filter(Boolean)) {
          if ([...billing].some((id) => line.includes(id))) {
            expect(line).not.toContain(EMAIL)
            expect(line).toContain(CARD)
          }
          if (![...maskedIds].some((id) => line.includes(id))) continue
          audited++
          expectNoRealValues('audit entry', line)
          expect(line).toContain('<EMAIL_1>')
        }
      }
    }
    expect(audited).toBeGreaterThanOrEqual(maskedIds.size)
    for (const e of events)
      if (maskedIds.has((e.data as any).id)) expectNoRealValues(`event ${e.type}`, JSON.stringify(e))
    // (these requests log little or nothing even at debug: whatever is logged is checked)
    for (const line of logLines) expectNoRealValues('log line', line)
  })
})

describe('presets', () => {
  it('solo and team mask emails, cards and IBANs; demo masks nothing (no hook at all) unless configured', async () => {
    for (const preset of ['solo', 'team']) {
      const m = (await resolveConfig({ preset })).plugins.find((p) => p.name === 'mask')
      expect(m?.options).toEqual({ kinds: ['email', 'card', 'iban'], teams: {} })
      expect(m?.hooks?.beforeRequest).toBeTypeOf('function')
    }
    const demo = (await resolveConfig({ preset: 'demo' })).plugins.find((p) => p.name === 'mask')
    expect(demo?.hooks).toBeUndefined()
    const configured = (await resolveConfig({ preset: 'demo', plugins: [mask({ kinds: ['email'] })] })).plugins.filter(
      (p) => p.name === 'mask',
    )
    expect(configured.map((p) => p.options)).toEqual([{ kinds: ['email'], teams: {} }])
  })

  it('options are checked: unknown kinds and options fail at config time', () => {
    expect(() => mask({ kinds: ['passport' as never] })).toThrow(/kinds must be an array of/)
    expect(() => mask({ teams: { eng: ['mail' as never] } })).toThrow(/teams\.eng/)
    expect(() => mask({ kind: ['email'] } as never)).toThrow(/unknown option "kind"/)
  })
})
