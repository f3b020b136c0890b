// A cache hit replays the answer exactly as the vendor gave it (issue 12): thinking blocks and
// their signatures, redacted thinking, citations, server tool blocks, OpenAI annotations and
// reasoning fields, Gemini thought parts and thoughtSignature, and the usage of the call. Clients
// build their next turn from the answer, and the vendor rejects a turn that lost them.
// The vendor here is a scripted server that answers one canned body per protocol, whole or as a
// stream written by hand (not by the adapters under test).
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { exactCache } from '../plugins/exact-cache/index.ts'
import { anthropicClient, clearVendorEnv, sseEvents, startProxy, type Proxy } from './helpers/core-harness.ts'

const ANTHROPIC = {
  id: 'msg_vendor_01',
  type: 'message',
  role: 'assistant',
  model: 'claude-sonnet-4-5-20250929',
  content: [
    {
      type: 'thinking',
      thinking: 'The user asks about the weather in Paris. I will search, then call the tool.',
      signature: 'EqQBCkYIBxgCKkBvendor+signature/with==padding',
    },
    { type: 'redacted_thinking', data: 'EmwKAhgBEgy3vendorRedactedBlob==' },
    { type: 'server_tool_use', id: 'srvtoolu_01', name: 'web_search', input: { query: 'paris weather today' } },
    {
      type: 'web_search_tool_result',
      tool_use_id: 'srvtoolu_01',
      content: [
        {
          type: 'web_search_result',
          url: 'https://weather.example/paris',
          title: 'Paris weather',
          encrypted_content: 'Eo8BencryptedPage',
          page_age: null,
        },
      ],
    },
    {
      type: 'text',
      text: 'It is sunny in Paris today.',
      citations: [
        {
          type: 'web_search_result_location',
          url: 'https://weather.example/paris',
          title: 'Paris weather',
          encrypted_index: 'Eo8index',
          cited_text: 'Sunny, 24°C',
        },
      ],
    },
    {
      type: 'tool_use',
      id: 'toolu_01',
      name: 'get_weather',
      input: { city: 'Paris', days: [1, 2], units: { temp: 'C' } },
    },
  ],
  stop_reason: 'tool_use',
  stop_sequence: null,
  usage: {
    input_tokens: 1200,
    output_tokens: 345,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 1024,
    server_tool_use: { web_search_requests: 1 },
    service_tier: 'standard',
  },
}

/** The same message as Anthropic streams it: deltas for thinking, signature, citations, JSON input. */
function anthropicStream(): string {
  const ev = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`
  const c = ANTHROPIC.content as any[]
  let out = ev('message_start', {
    message: { ...ANTHROPIC, content: [], stop_reason: null, usage: { ...ANTHROPIC.usage, output_tokens: 2 } },
  })
  out += ev('ping', {})
  out += ev('content_block_start', { index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } })
  out += ev('content_block_delta', {
    index: 0,
    delta: { type: 'thinking_delta', thinking: c[0].thinking.slice(0, 30) },
  })
  out += ev('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: c[0].thinking.slice(30) } })
  out += ev('content_block_delta', { index: 0, delta: { type: 'signature_delta', signature: c[0].signature } })
  out += ev('content_block_stop', { index: 0 })
  out += ev('content_block_start', { index: 1, content_block: c[1] }) + ev('content_block_stop', { index: 1 })
  out += ev('content_block_start', { index: 2, content_block: { ...c[2], input: {} } })
  out += ev('content_block_delta', { index: 2, delta: { type: 'input_json_delta', partial_json: '{"query": "paris ' } })
  out += ev('content_block_delta', { index: 2, delta: { type: 'input_json_delta', partial_json: 'weather today"}' } })
  out += ev('content_block_stop', { index: 2 })
  out += ev('content_block_start', { index: 3, content_block: c[3] }) + ev('content_block_stop', { index: 3 })
  out += ev('content_block_start', { index: 4, content_block: { type: 'text', text: '', citations: [] } })
  out += ev('content_block_delta', { index: 4, delta: { type: 'citations_delta', citation: c[4].citations[0] } })
  out += ev('content_block_delta', { index: 4, delta: { type: 'text_delta', text: 'It is sunny ' } })
  out += ev('content_block_delta', { index: 4, delta: { type: 'text_delta', text: 'in Paris today.' } })
  out += ev('content_block_stop', { index: 4 })
  out += ev('content_block_start', { index: 5, content_block: { ...c[5], input: {} } })
  out += ev('content_block_delta', {
    index: 5,
    delta: { type: 'input_json_delta', partial_json: '{"city":"Paris","days":[1,' },
  })
  out += ev('content_block_delta', {
    index: 5,
    delta: { type: 'input_json_delta', partial_json: '2],"units":{"temp":"C"}}' },
  })
  out += ev('content_block_stop', { index: 5 })
  out += ev('message_delta', {
    delta: { stop_reason: 'tool_use', stop_sequence: null },
    usage: {
      input_tokens: 1200,
      output_tokens: 345,
      cache_read_input_tokens: 1024,
      cache_creation_input_tokens: 0,
      server_tool_use: { web_search_requests: 1 },
    },
  })
  return out + ev('message_stop', {})
}

const OPENAI = {
  id: 'chatcmpl-vendor01',
  object: 'chat.completion',
  created: 1764900000,
  model: 'gpt-5-mini-2025-08-07',
  system_fingerprint: 'fp_vendor',
  service_tier: 'default',
  choices: [
    {
      index: 0,
      message: {
        role: 'assistant',
        content: 'It is sunny in Paris [1].',
        refusal: null,
        annotations: [
          {
            type: 'url_citation',
            url_citation: {
              url: 'https://weather.example/paris',
              title: 'Paris weather',
              start_index: 0,
              end_index: 25,
            },
          },
        ],
        reasoning_content: 'A compatible server streams its reasoning in this field.',
      },
      logprobs: null,
      finish_reason: 'stop',
    },
  ],
  usage: {
    prompt_tokens: 50,
    completion_tokens: 20,
    total_tokens: 70,
    prompt_tokens_details: { cached_tokens: 32, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 12,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  },
}

function openaiStream(): string {
  const { choices, usage, object: _o, ...head } = OPENAI
  const m = choices[0]!.message
  const chunk = (delta: object, finish: string | null = null) =>
    `data: ${JSON.stringify({ ...head, object: 'chat.completion.chunk', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`
  let out = chunk({ role: 'assistant', content: '', refusal: null })
  out +=
    chunk({ reasoning_content: m.reasoning_content.slice(0, 20) }) +
    chunk({ reasoning_content: m.reasoning_content.slice(20) })
  out += chunk({ content: 'It is sunny ' }) + chunk({ content: 'in Paris [1].' })
  out += chunk({ annotations: m.annotations })
  out += chunk({}, 'stop')
  out += `data: ${JSON.stringify({ ...head, object: 'chat.completion.chunk', choices: [], usage })}\n\n`
  return out + 'data: [DONE]\n\n'
}

const GEMINI = {
  candidates: [
    {
      content: {
        role: 'model',
        parts: [
          { text: 'Weighing which tool answers this.', thought: true },
          {
            functionCall: { name: 'get_weather', args: { city: 'Paris' } },
            thoughtSignature: 'CiQBVKhc7vendorSignature==',
          },
        ],
      },
      finishReason: 'STOP',
      index: 0,
      safetyRatings: [{ category: 'HARM_CATEGORY_DANGEROUS_CONTENT', probability: 'NEGLIGIBLE' }],
    },
  ],
  usageMetadata: {
    promptTokenCount: 30,
    candidatesTokenCount: 8,
    thoughtsTokenCount: 20,
    totalTokenCount: 58,
    promptTokensDetails: [{ modality: 'TEXT', tokenCount: 30 }],
  },
  modelVersion: 'gemini-3-pro-preview',
  responseId: 'vendor-resp-01',
}

function geminiChunks(): object[] {
  const { candidates, usageMetadata, ...head } = GEMINI
  const parts = candidates[0]!.content.parts
  const { content: _c, ...rest } = candidates[0]!
  return [
    {
      candidates: [{ content: { role: 'model', parts: [{ text: 'Weighing which tool ', thought: true }] }, index: 0 }],
      ...head,
    },
    {
      candidates: [{ content: { role: 'model', parts: [{ text: 'answers this.', thought: true }] }, index: 0 }],
      ...head,
    },
    { candidates: [{ content: { role: 'model', parts: [parts[1]] }, ...rest }], usageMetadata, ...head },
  ]
}

let vendor: Server
let proxy: Proxy
let calls = 0

beforeAll(async () => {
  clearVendorEnv()
  vendor = createServer((req, res) => {
    let raw = ''
    req.on('data', (d) => (raw += d))
    req.on('end', () => {
      calls++
      const body = JSON.parse(raw || '{}')
      const url = req.url ?? ''
      const sse = (text: string) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.end(text)
      }
      const json = (value: unknown) => {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify(value))
      }
      if (url.startsWith('/v1/messages')) return body.stream ? sse(anthropicStream()) : json(ANTHROPIC)
      if (url.startsWith('/v1/chat/completions')) return body.stream ? sse(openaiStream()) : json(OPENAI)
      if (url.includes(':streamGenerateContent'))
        return url.includes('alt=sse')
          ? sse(
              geminiChunks()
                .map((c) => `data: ${JSON.stringify(c)}\n\n`)
                .join(''),
            )
          : json(geminiChunks())
      if (url.includes(':generateContent')) return json(GEMINI)
      res.writeHead(404).end()
    })
  })
  await new Promise<void>((r) => vendor.listen(0, '127.0.0.1', r))
  const base = `http://127.0.0.1:${(vendor.address() as AddressInfo).port}`
  proxy = await startProxy({
    preset: 'solo',
    plugins: [exactCache({ retryWindowSeconds: 0 })], // replays the same request on purpose: not retries
    vendors: {
      anthropic: { baseURL: base, apiKey: 'sk-ant-test-configured' },
      openai: { baseURL: base, apiKey: 'sk-test-openai-configured' },
      google: { baseURL: base, apiKey: 'AIza-test-configured' },
    },
  })
})
afterAll(async () => {
  await proxy?.close()
  await new Promise((r) => vendor?.close(r))
})

let n = 0
/** a question no other test asked, so each test starts with a miss */
const fresh = (what: string) => `${what} #${++n}`

async function post(path: string, body: unknown): Promise<{ res: Response; text: string }> {
  const res = await fetch(proxy.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': 'sk-client' },
    body: JSON.stringify(body),
  })
  return { res, text: await res.text() }
}

const withoutId = ({ id: _id, ...rest }: any) => rest

describe('Anthropic: a hit replays every block, signature and the usage', () => {
  const params = (q: string) => ({
    model: 'claude-sonnet-4-5',
    max_tokens: 1024,
    thinking: { type: 'enabled', budget_tokens: 512 },
    messages: [{ role: 'user', content: q }],
  })

  it('whole answer, then a whole hit and a streamed hit through messages.stream()', async () => {
    const p = params(fresh('weather in Paris'))
    const first = await post('/v1/messages', p)
    expect(first.res.headers.get('x-agentmesh-cache')).toBe('miss')
    const before = calls
    const hit = await post('/v1/messages', p)
    expect(hit.res.headers.get('x-agentmesh-cache')).toBe('exact')
    expect(hit.res.headers.get('x-agentmesh-tokens')).toBe('0')
    const body = JSON.parse(hit.text)
    expect(body.id).not.toBe(ANTHROPIC.id)
    expect(withoutId(body)).toEqual(withoutId(ANTHROPIC))

    const sdk = anthropicClient(proxy)
    const stream = sdk.messages.stream(p as any)
    const deltas = new Set<string>()
    stream.on('streamEvent', (e: any) => {
      if (e.type === 'content_block_delta') deltas.add(e.delta.type)
    })
    const msg = await stream.finalMessage()
    expect((await stream.withResponse()).response.headers.get('x-agentmesh-cache')).toBe('exact')
    expect(msg.content).toEqual(ANTHROPIC.content)
    expect(msg.usage).toMatchObject({ input_tokens: 1200, output_tokens: 345, cache_read_input_tokens: 1024 })
    expect(msg.stop_reason).toBe('tool_use')
    expect([...deltas].sort()).toEqual([
      'citations_delta',
      'input_json_delta',
      'signature_delta',
      'text_delta',
      'thinking_delta',
    ])
    expect(calls).toBe(before)
  })

  it('streamed answer (deltas rebuilt), then a whole hit equal to what the vendor would have sent', async () => {
    const p = { ...params(fresh('weather in Paris, streamed')), stream: true }
    const first = await post('/v1/messages', p)
    expect(first.res.headers.get('x-agentmesh-cache')).toBe('miss')
    // the client got the vendor's stream as it was
    expect(first.text).toBe(anthropicStream())
    await new Promise((r) => setTimeout(r, 50))
    const { stream: _s, ...plain } = p
    const hit = await post('/v1/messages', plain)
    expect(hit.res.headers.get('x-agentmesh-cache')).toBe('exact')
    expect(withoutId(JSON.parse(hit.text))).toEqual(withoutId(ANTHROPIC))
  })
})

describe('OpenAI Chat Completions: annotations, reasoning fields and usage details survive', () => {
  const params = (q: string) => ({ model: 'gpt-5-mini', messages: [{ role: 'user', content: q }] })

  it('whole answer, then a whole hit and a streamed hit with the usage chunk', async () => {
    const p = params(fresh('weather in Paris'))
    await post('/v1/chat/completions', p)
    const hit = await post('/v1/chat/completions', p)
    expect(hit.res.headers.get('x-agentmesh-cache')).toBe('exact')
    expect(withoutId(JSON.parse(hit.text))).toEqual(withoutId(OPENAI))

    const streamedHit = await post('/v1/chat/completions', {
      ...p,
      stream: true,
      stream_options: { include_usage: true },
    })
    expect(streamedHit.res.headers.get('x-agentmesh-cache')).toBe('exact')
    const chunks = sseEvents(streamedHit.text)
      .map((e) => e.data)
      .filter((d) => d !== '[DONE]')
      .map((d) => JSON.parse(d))
    // fold the chunks as a client does
    const m: Record<string, any> = {}
    for (const c of chunks)
      for (const ch of c.choices)
        for (const [k, v] of Object.entries(ch.delta))
          m[k] = typeof v === 'string' && k !== 'role' ? (m[k] ?? '') + v : v
    expect(m).toMatchObject({
      role: 'assistant',
      content: OPENAI.choices[0]!.message.content,
      reasoning_content: OPENAI.choices[0]!.message.reasoning_content,
      annotations: OPENAI.choices[0]!.message.annotations,
    })
    expect(chunks.at(-1).usage).toEqual(OPENAI.usage)
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.system_fingerprint === 'fp_vendor')).toBe(true)
  })

  it("streamed answer, then a whole hit equal to the vendor's whole answer", async () => {
    const p = params(fresh('weather in Paris, streamed'))
    const first = await post('/v1/chat/completions', { ...p, stream: true, stream_options: { include_usage: true } })
    expect(first.text).toBe(openaiStream())
    await new Promise((r) => setTimeout(r, 50))
    const hit = await post('/v1/chat/completions', p)
    expect(hit.res.headers.get('x-agentmesh-cache')).toBe('exact')
    expect(withoutId(JSON.parse(hit.text))).toEqual(withoutId(OPENAI))
  })
})

describe('Gemini: thought parts and thoughtSignature survive; a stream without alt=sse stays a JSON array', () => {
  const params = (q: string) => ({
    contents: [{ role: 'user', parts: [{ text: q }] }],
    tools: [
      {
        functionDeclarations: [
          { name: 'get_weather', parameters: { type: 'OBJECT', properties: { city: { type: 'STRING' } } } },
        ],
      },
    ],
  })
  const path = (action: string, query = '') => `/v1beta/models/gemini-3-pro-preview:${action}${query}`
  const withoutResponseId = ({ responseId: _r, ...rest }: any) => rest
  /** merge a stream's chunks the way a client does: parts in order, text pieces joined */
  const merge = (chunks: any[]) => {
    const parts: any[] = []
    for (const c of chunks) {
      for (const p of c.candidates?.[0]?.content?.parts ?? []) {
        const last = parts.at(-1)
        if (
          last &&
          typeof p.text === 'string' &&
          typeof last.text === 'string' &&
          !last.thoughtSignature &&
          !!last.thought === !!p.thought
        )
          Object.assign(last, { ...p, text: last.text + p.text })
        else parts.push({ ...p })
      }
    }
    return parts
  }

  it('whole answer, then hits as a whole answer, as an SSE stream and as a JSON array', async () => {
    const p = params(fresh('weather in Paris'))
    await post(path('generateContent'), p)
    const hit = await post(path('generateContent'), p)
    expect(hit.res.headers.get('x-agentmesh-cache')).toBe('exact')
    expect(withoutResponseId(JSON.parse(hit.text))).toEqual(withoutResponseId(GEMINI))

    const array = await post(path('streamGenerateContent'), p)
    expect(array.res.headers.get('x-agentmesh-cache')).toBe('exact')
    expect(array.res.headers.get('content-type')).toContain('application/json')
    const chunks = JSON.parse(array.text)
    expect(Array.isArray(chunks)).toBe(true)
    expect(merge(chunks)).toEqual(GEMINI.candidates[0]!.content.parts)
    expect(chunks.at(-1).usageMetadata).toEqual(GEMINI.usageMetadata)
    expect(chunks.at(-1).candidates[0].finishReason).toBe('STOP')

    const sse = await post(path('streamGenerateContent', '?alt=sse'), p)
    expect(sse.res.headers.get('content-type')).toContain('text/event-stream')
    const events = sseEvents(sse.text).map((e) => JSON.parse(e.data))
    expect(merge(events)).toEqual(GEMINI.candidates[0]!.content.parts)
    expect(events.at(-1).usageMetadata).toEqual(GEMINI.usageMetadata)
  })

  it('a streamed miss (SSE and JSON array) is rebuilt into the whole answer', async () => {
    for (const query of ['?alt=sse', '']) {
      const p = params(fresh(`weather in Paris, streamed ${query}`))
      const first = await post(path('streamGenerateContent', query), p)
      expect(first.res.headers.get('x-agentmesh-cache')).toBe('miss')
      await new Promise((r) => setTimeout(r, 50))
      const hit = await post(path('generateContent'), p)
      expect(hit.res.headers.get('x-agentmesh-cache')).toBe('exact')
      expect(withoutResponseId(JSON.parse(hit.text))).toEqual(withoutResponseId(GEMINI))
    }
  })
})
