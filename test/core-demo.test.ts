// The demo vendor: no keys, deterministic per prompt, visibly a demo, quoting the prompt, in every
// protocol, streaming and not, with realistic usage.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { demo } from '../plugins/vendors/demo.ts'
import {
  anthropicClient,
  clearVendorEnv,
  governanceHeadersOf,
  openaiClient,
  postJson,
  sseEvents,
  startCoreProxy,
  type Proxy,
} from './helpers/core-harness.ts'

let proxy: Proxy
beforeAll(async () => {
  clearVendorEnv()
  proxy = await startCoreProxy({ preset: 'demo', plugins: [demo({ latencyMs: 0, chunkDelayMs: 0 })] })
})
afterAll(() => proxy.close())

const ask = async (prompt: string, model = 'gpt-4o-mini') =>
  (
    await openaiClient(proxy, [], { apiKey: 'unused' }).chat.completions.create({
      model,
      messages: [{ role: 'user', content: prompt }],
    })
  ).choices[0]!.message.content!

describe('demo vendor', () => {
  it('is deterministic for a prompt, differs between prompts, quotes the prompt and says it is a demo', async () => {
    const a1 = await ask('How do I reverse a linked list in Java?')
    const a2 = await ask('How do I reverse a linked list in Java?')
    const b = await ask('How do I reverse a linked list in Python?')
    expect(a1).toBe(a2)
    expect(b).not.toBe(a1)
    expect(a1).toContain('"How do I reverse a linked list in Java?"')
    expect(b).toContain('"How do I reverse a linked list in Python?"')
    expect(a1).toMatch(/^\[AgentMesh demo answer [0-9a-f]{8}\]/)
    // the model is part of the request, so part of the answer
    expect(await ask('How do I reverse a linked list in Java?', 'claude-haiku-4-5')).not.toBe(a1)
  })

  it('OpenAI: realistic usage and governance headers, non-streaming', async () => {
    const { data, response } = await openaiClient(proxy)
      .chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Explain TCP slow start in two sentences.' },
        ],
      })
      .withResponse()
    expect(data.usage!.prompt_tokens).toBeGreaterThan(5)
    expect(data.usage!.prompt_tokens).toBeLessThan(60)
    expect(data.usage!.completion_tokens).toBeGreaterThan(20)
    expect(data.choices[0]!.finish_reason).toBe('stop')
    const h = governanceHeadersOf(response.headers)
    expect(h['x-agentmesh-vendor']).toBe('demo')
    expect(Number(h['x-agentmesh-tokens'])).toBe(data.usage!.total_tokens)
  })

  it('OpenAI: streams the same text as the non-streamed answer; the usage chunk only when asked, like the real API', async () => {
    const prompt = 'Stream the demo answer'
    const whole = await ask(prompt)
    const run = async (includeUsage: boolean) => {
      let text = ''
      const usage: unknown[] = []
      const stream = await openaiClient(proxy).chat.completions.create({
        model: 'gpt-4o-mini',
        stream: true,
        messages: [{ role: 'user', content: prompt }],
        ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
      })
      for await (const c of stream) {
        text += c.choices[0]?.delta.content ?? ''
        if (c.usage) usage.push(c.usage)
        if (!includeUsage) expect(c.choices.length).toBeGreaterThan(0)
      }
      return { text, usage }
    }
    const plain = await run(false)
    expect(plain.text).toBe(whole)
    expect(plain.usage).toEqual([])
    const withUsage = await run(true)
    expect(withUsage.text).toBe(whole)
    expect(withUsage.usage).toHaveLength(1)
    expect((withUsage.usage[0] as any).completion_tokens).toBeGreaterThan(20)
  })

  it('Anthropic: answers and streams, with usage', async () => {
    const an = anthropicClient(proxy)
    const prompt = 'Say something about caching'
    const msg = await an.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 200,
      messages: [{ role: 'user', content: prompt }],
    })
    const text = (msg.content[0] as any).text as string
    expect(text).toContain(`"${prompt}"`)
    expect(msg.usage.input_tokens).toBeGreaterThan(0)
    expect(msg.usage.output_tokens).toBeGreaterThan(20)
    const streamed = await an.messages
      .stream({ model: 'claude-haiku-4-5', max_tokens: 200, messages: [{ role: 'user', content: prompt }] })
      .finalMessage()
    expect((streamed.content[0] as any).text).toBe(text)
    expect(streamed.usage.output_tokens).toBe(msg.usage.output_tokens)
  })

  it('Gemini: generateContent and streamGenerateContent?alt=sse', async () => {
    const prompt = 'What does a governance proxy do?'
    const body = { contents: [{ role: 'user', parts: [{ text: prompt }] }] }
    const res = await postJson(proxy.url + '/v1beta/models/gemini-2.5-flash:generateContent', body)
    const json = await res.json()
    const text = json.candidates[0].content.parts[0].text as string
    expect(text).toContain(`"${prompt}"`)
    expect(json.usageMetadata.candidatesTokenCount).toBeGreaterThan(20)
    const sres = await postJson(proxy.url + '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse', body)
    expect(sres.headers.get('content-type')).toContain('text/event-stream')
    const chunks = sseEvents(await sres.text()).map((e) => JSON.parse(e.data))
    expect(chunks.map((c) => c.candidates[0].content.parts.map((p: any) => p.text ?? '').join('')).join('')).toBe(text)
    expect(chunks.at(-1).candidates[0].finishReason).toBe('STOP')
  })

  it('lists its models and serves embeddings of the right shape, deterministic per input', async () => {
    const oa = openaiClient(proxy)
    const ids: string[] = []
    for await (const m of oa.models.list()) ids.push(m.id)
    expect(ids).toEqual(expect.arrayContaining(['demo-fast', 'gpt-4o-mini', 'claude-haiku-4-5', 'gemini-2.5-flash']))
    const e = await oa.embeddings.create({
      model: 'text-embedding-3-small',
      input: ['alpha', 'beta', 'alpha'],
      encoding_format: 'float',
    })
    expect(e.data).toHaveLength(3)
    const [a, b, a2] = e.data.map((d) => d.embedding)
    expect(a).toEqual(a2)
    expect(a).not.toEqual(b)
    expect(Math.hypot(...a!)).toBeCloseTo(1, 6)
    expect(e.usage.prompt_tokens).toBeGreaterThan(0)
  })

  it('waits latencyMs before answering', async () => {
    const slow = await startCoreProxy({ preset: 'demo', plugins: [demo({ latencyMs: 150, chunkDelayMs: 0 })] })
    try {
      const t0 = performance.now()
      const res = await postJson(slow.url + '/v1/chat/completions', {
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'slow' }],
      })
      await res.json()
      expect(performance.now() - t0).toBeGreaterThanOrEqual(140)
    } finally {
      await slow.close()
    }
  })

  it('rejects bad options naming the field', () => {
    expect(() => demo({ latencyMs: -1 })).toThrow(/latencyMs/)
    expect(() => demo({ chunkDelayMs: 'fast' as any })).toThrow(/chunkDelayMs/)
  })
})
