// Issue 11 item 2, the shapes npm run fuzz still found: one huge array handled in one go (seed
// 17107786: case 613, 23,718 tool_use blocks in one message, 240 ms; case 2867, 26,327 OpenAI
// tools, 201 ms). The sliced steps must give what the one-go path gives, and the proxy must not
// hold its event loop long on these bodies.
import { formatFunctionDefinitions } from 'gpt-tokenizer/functionCalling'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { canonicalJson } from '../core/canonical.ts'
import { protocols } from '../core/protocols/index.ts'
import { Slicer } from '../core/slicer.ts'
import { createTokenCounter, imageCount, stripBase64Blobs, toolText } from '../core/tokens.ts'
import type { MeshContext, Prompt } from '../core/types.ts'
import { assistantTurns, assistantTurnsSliced } from '../plugins/breaker/loops.ts'
import { demoAnswer, demoAnswerAsync } from '../plugins/vendors/demo-answer.ts'
import type { ProxyChild } from './fuzz/child.ts'
import { sendRaw } from './fuzz/client.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'
import { startChildAndMock, stopChildAndMock } from './helpers/proxy-child.ts'

function rng(seed: number) {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}
const WORDS = ['fox', 'dog', 'ünïcode', '東京', 'a"quote', 'line\nbreak', 'z', 'weather']

function randomBlock(r: () => number, i: number): Record<string, unknown> {
  const w = () => WORDS[Math.floor(r() * WORDS.length)]!
  const k = r()
  const cc = r() < 0.3 ? { cache_control: { type: 'ephemeral' } } : {}
  if (k < 0.3) return { type: 'text', text: `${w()} ${i}`, ...cc }
  if (k < 0.6) return { ...cc, type: 'tool_use', id: `t${i}`, name: w(), input: { z: i, a: [w(), { y: 1, b: w() }] } }
  if (k < 0.8) return { type: 'tool_result', tool_use_id: `t${i}`, content: [{ type: 'text', text: w() }], ...cc }
  return { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo' }, ...cc }
}

function randomTool(r: () => number, i: number, wrapped: boolean): Record<string, unknown> {
  const w = () => WORDS[Math.floor(r() * WORDS.length)]!
  const props: Record<string, unknown> = {}
  for (let p = 0; p < 1 + Math.floor(r() * 3); p++)
    props[`${w().replace(/\W/g, '')}${p}`] =
      r() < 0.5 ? { type: 'string', description: w() } : { type: 'object', properties: { n: { type: 'number' } } }
  const fn = {
    name: `f${i}`,
    ...(r() < 0.7 ? { description: w() } : {}),
    ...(r() < 0.8
      ? { parameters: { type: 'object', properties: props, required: Object.keys(props).slice(0, 1) } }
      : {}),
  }
  return wrapped ? { type: 'function', function: fn } : fn
}

/** the extra the adapter gave before the blocks were read in steps: one canonicalJson of the copies */
function oneGoExtra(content: Record<string, unknown>[]): string {
  const extras = content.filter((b) => b.type !== 'text').map(({ cache_control: _cc, ...rest }) => rest)
  return extras.length ? canonicalJson(extras) : ''
}

describe('huge arrays read in steps give what the one-go path gives', () => {
  it('Anthropic: a message of thousands of content blocks (parse, parseSliced, the extra as before)', async () => {
    for (const seed of [1, 2, 3]) {
      const r = rng(seed)
      const n = 300 + Math.floor(r() * 3000)
      const content = Array.from({ length: n }, (_, i) => randomBlock(r, i))
      const body = { model: 'claude-3-5-haiku-latest', max_tokens: 5, messages: [{ role: 'user', content }] }
      const one = protocols.anthropic.parse(body, {})
      const sliced = await protocols.anthropic.parseSliced(body, {}, new Slicer(0))
      expect(sliced).toEqual(one)
      expect(one.messages[0]!.extra ?? '').toBe(oneGoExtra(content))
      expect(one.messages[0]!.text).toBe(
        content
          .filter((b) => b.type === 'text')
          .map((b) => b.text)
          .join('\n'),
      )
    }
  })

  it('Gemini: a content of thousands of parts (parse, parseSliced, the extra as before)', async () => {
    for (const seed of [11, 12]) {
      const r = rng(seed)
      const parts = Array.from({ length: 300 + Math.floor(r() * 3000) }, (_, i) =>
        r() < 0.5
          ? { text: `${WORDS[i % WORDS.length]} ${i}` }
          : r() < 0.5
            ? { functionCall: { name: `f${i}`, args: { z: 1, a: WORDS[i % WORDS.length] } } }
            : { inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo' } },
      )
      const body = { contents: [{ role: 'user', parts }] }
      const opts = { pathModel: 'gemini-2.0-flash' }
      const one = protocols.gemini.parse(body, opts)
      expect(await protocols.gemini.parseSliced(body, opts, new Slicer(0))).toEqual(one)
      const extras = parts.filter((p) => !('text' in p))
      expect(one.messages[0]!.extra ?? '').toBe(extras.length ? canonicalJson(extras) : '')
      expect(one.hasImages).toBe(parts.some((p) => 'inlineData' in p))
    }
  })

  it('OpenAI: thousands of content parts and tool calls (parse, parseSliced, the extra as before)', async () => {
    for (const seed of [13, 14]) {
      const r = rng(seed)
      const content = Array.from({ length: 300 + Math.floor(r() * 3000) }, (_, i) =>
        r() < 0.5
          ? { type: 'text', text: `${WORDS[i % WORDS.length]} ${i}` }
          : { type: 'image_url', image_url: { url: `https://x/${i}.png`, detail: 'low' } },
      )
      const tool_calls = Array.from({ length: 300 + Math.floor(r() * 2000) }, (_, i) => ({
        type: 'function',
        id: `call_${i}`,
        function: { name: 'f', arguments: `{"i":${i}}` },
      }))
      const body = {
        model: 'gpt-4o-mini',
        messages: [
          { role: 'user', content },
          { role: 'assistant', content: null, tool_calls },
        ],
      }
      const one = protocols.openai.parse(body, {})
      expect(await protocols.openai.parseSliced(body, {}, new Slicer(0))).toEqual(one)
      const extras = content.filter((p) => p.type !== 'text')
      expect(one.messages[0]!.extra ?? '').toBe(extras.length ? canonicalJson(extras) : '')
      expect(one.messages[1]!.extra).toBe(canonicalJson(tool_calls))
    }
  })

  it('a bad block deep in a long content array is the same error either way', async () => {
    const content: unknown[] = Array.from({ length: 1000 }, (_, i) => ({ type: 'text', text: `t${i}` }))
    content[777] = { type: 'text', text: 5 }
    const body = { model: 'claude-3-5-haiku-latest', max_tokens: 5, messages: [{ role: 'user', content }] }
    expect(() => protocols.anthropic.parse(body, {})).toThrow('messages[0].content: a text block needs a string `text`')
    await expect(protocols.anthropic.parseSliced(body, {}, new Slicer(0))).rejects.toThrow(
      'messages[0].content: a text block needs a string `text`',
    )
  })

  it("tools: OpenAI's rendering one tool at a time is formatFunctionDefinitions of all; others their JSON", () => {
    for (const seed of [4, 5, 6]) {
      const r = rng(seed)
      const wrapped = seed !== 5
      const tools = Array.from({ length: 1 + Math.floor(r() * 2000) }, (_, i) => randomTool(r, i, wrapped))
      const prompt = { tools } as unknown as Prompt
      const fns = tools.map((t: any) => (wrapped ? t.function : t))
      expect(toolText(prompt, 'o200k')).toEqual({ text: formatFunctionDefinitions(fns), framing: 9 })
      expect(toolText(prompt, 'anthropic')).toEqual({ text: JSON.stringify(tools), framing: 0 })
      expect(toolText(prompt, 'gemini')).toEqual({ text: JSON.stringify(tools), framing: 0 })
    }
    // a tool without a name, or a schema the renderer cannot read: the tools' JSON, as before
    const noName = [
      { type: 'function', function: { name: 'a' } },
      { type: 'function', function: {} },
    ]
    expect(toolText({ tools: noName } as unknown as Prompt, 'o200k')).toEqual({
      text: JSON.stringify(noName),
      framing: 0,
    })
    const nullProp = [{ name: 'a', parameters: { type: 'object', properties: { x: null } } }]
    expect(toolText({ tools: nullProp } as unknown as Prompt, 'o200k')).toEqual({
      text: JSON.stringify(nullProp),
      framing: 0,
    })
    expect(toolText({ tools: [] } as unknown as Prompt, 'o200k')).toBeNull()
    expect(toolText({} as Prompt, 'gemini')).toBeNull()
  })

  it('the estimate in slices equals the estimate in one go, with thousands of tools and blocks', async () => {
    const counter = createTokenCounter()
    for (const seed of [7, 8]) {
      const r = rng(seed)
      const content = Array.from({ length: 2000 }, (_, i) => randomBlock(r, i))
      const body = { model: 'claude-3-5-haiku-latest', max_tokens: 5, messages: [{ role: 'user', content }] }
      const tools = Array.from({ length: 3000 }, (_, i) => randomTool(r, i, true))
      const prompt = { ...protocols.anthropic.parse(body, {}), tools, system: 'be brief' }
      for (const model of ['gpt-4o-mini', 'gpt-4', 'claude-3-5-haiku-latest', 'gemini-2.0-flash']) {
        const fresh = createTokenCounter()
        expect(await fresh.estimateInputAsync(prompt, model)).toBe(counter.estimateInput(prompt, model))
      }
    }
  })

  it('the estimate in slices equals the estimate in one go, over thousands of messages', async () => {
    const r = rng(9)
    const messages = Array.from({ length: 5000 }, (_, i) => ({
      role: i % 2 ? 'assistant' : 'user',
      content: `${WORDS[Math.floor(r() * WORDS.length)]} ${'x'.repeat(Math.floor(r() * 60))} ${i}`,
    }))
    const prompt = protocols.openai.parse({ model: 'gpt-4o-mini', messages }, {})
    // a small budget: most texts are estimated from their characters, as on a huge request
    for (const requestBudgetChars of [131_072, 2_000])
      for (const model of ['gpt-4o-mini', 'claude-3-5-haiku-latest', 'gemini-2.0-flash']) {
        const one = createTokenCounter({ requestBudgetChars }).estimateInput(prompt, model)
        expect(await createTokenCounter({ requestBudgetChars }).estimateInputAsync(prompt, model)).toBe(one)
      }
  })
})

/** the one-go strip this file's steps replaced: base64 runs of 512+ and their padding left out */
function stripReference(s: string): string {
  return s.replace(/[A-Za-z0-9+/_-]{512,}={0,2}/g, (m, at: number) =>
    at > 0 && /[A-Za-z0-9+/_-]/.test(s[at - 1]!) ? m : '',
  )
}

describe('a long extra scanned in steps', () => {
  const IMAGE_PART =
    /"type"\s*:\s*"(?:image_url|input_image|image|document)"|"(?:inlineData|inline_data|fileData|file_data)"\s*:/g
  const pieces = [
    '"type":"image"',
    '"type" : \n "image_url"',
    '"type":"imag"',
    '"type":"document"x',
    '"inlineData":',
    '"file_data" \t:',
    '"fileData"x:',
    '"type""image"',
    '"type":"input_image"',
    '""type":"image"',
    '"',
    ' ',
    '\u00a0',
    'abc',
    'A'.repeat(600),
    '==',
    'iVBORw0KGgo'.repeat(80),
  ]
  it('counts the images IMAGE_PART matches, and strips what the regex strips, across step boundaries', () => {
    for (const seed of [21, 22, 23]) {
      const r = rng(seed)
      let s = ''
      while (s.length < 700_000) s += pieces[Math.floor(r() * pieces.length)]
      expect(imageCount(s)).toBe((s.match(IMAGE_PART) ?? []).length)
      expect(stripBase64Blobs(s)).toBe(stripReference(s))
    }
  })

  it('the estimate of a message with a long extra is the same in slices', async () => {
    const r = rng(24)
    const content = Array.from({ length: 12_000 }, (_, i) =>
      i % 500 === 7
        ? { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo'.repeat(100) } }
        : randomBlock(r, i),
    )
    const prompt = protocols.anthropic.parse(
      { model: 'claude-3-5-haiku-latest', max_tokens: 5, messages: [{ role: 'user', content }] },
      {},
    )
    expect(prompt.messages[0]!.extra!.length).toBeGreaterThan(256 * 1024)
    for (const model of ['gpt-4o-mini', 'claude-3-5-haiku-latest', 'gemini-2.0-flash']) {
      const one = createTokenCounter().estimateInput(prompt, model)
      expect(await createTokenCounter().estimateInputAsync(prompt, model)).toBe(one)
    }
  })
})

describe("the breaker's turns in slices", () => {
  it('are the turns read in one go, in each protocol, with thousands of calls', async () => {
    const r = rng(31)
    const call = (i: number) => ({ city: WORDS[i % 3], n: i % 7 })
    const n = 3000
    const bodies = {
      openai: {
        messages: Array.from({ length: 40 }, (_, m) =>
          m % 2
            ? {
                role: 'assistant',
                content: `a${m % 4}`,
                tool_calls: Array.from({ length: n / 40 }, (_, i) => ({
                  type: 'function',
                  function: { name: 'w', arguments: JSON.stringify(call(i + m)) },
                })),
              }
            : { role: 'user', content: 'go' },
        ),
      },
      anthropic: {
        messages: [
          { role: 'user', content: 'go' },
          {
            role: 'assistant',
            content: Array.from({ length: n }, (_, i) =>
              r() < 0.2
                ? { type: 'text', text: `t${i}` }
                : { type: 'tool_use', id: `t${i}`, name: 'w', input: call(i) },
            ),
          },
        ],
      },
      gemini: {
        contents: [
          { role: 'user', parts: [{ text: 'go' }] },
          {
            role: 'model',
            parts: Array.from({ length: n }, (_, i) =>
              r() < 0.2 ? { text: `t${i}` } : { functionCall: { name: 'w', args: call(i) } },
            ),
          },
        ],
      },
      responses: {
        input: Array.from({ length: n }, (_, i) =>
          r() < 0.3
            ? { role: 'user', content: 'go' }
            : r() < 0.5
              ? { role: 'assistant', content: `a${i % 3}` }
              : { type: 'function_call', name: 'w', arguments: JSON.stringify(call(i)) },
        ),
      },
    }
    for (const [protocol, body] of Object.entries(bodies)) {
      const ctx = { protocol, request: { body } } as unknown as MeshContext
      const one = assistantTurns(ctx)
      expect(one.flatMap((t) => t.calls).length).toBeGreaterThan(500)
      expect(await assistantTurnsSliced(ctx)).toEqual(one)
    }
  })
})

describe("the demo vendor's answer in slices", () => {
  it('is the answer made in one go: the same digest over non-ASCII pieces, the same estimate', async () => {
    const tokens = createTokenCounter()
    // "Ā ā Ă ă " (case 5386) and astral characters, so that pieces end next to surrogate pairs
    const huge = 'Ā ā Ă ă 😀'.repeat(100_003)
    for (const content of [huge, `x${huge}`, 'short question']) {
      const body = {
        model: 'demo-fast',
        messages: [
          { role: 'user', content },
          ...Array.from({ length: 600 }, (_, i) => ({ role: i % 2 ? 'user' : 'assistant', content: `turn ${i}` })),
        ],
      }
      const prompt = protocols.openai.parse(body, {})
      const ctx = {
        prompt,
        protocol: 'openai',
        route: { model: 'demo-fast' },
        request: { body },
        mesh: { tokens },
      } as unknown as MeshContext
      const one = demoAnswer(ctx)
      expect(await demoAnswerAsync(ctx)).toEqual(one)
      // the digest is sha256 over the messages' JSON in one piece, as before
      const hex = (await import('node:crypto'))
        .createHash('sha256')
        .update(`demo-fast\0\0${JSON.stringify(prompt.messages)}`)
        .digest('hex')
      expect(one.id).toBe(`demo-${hex.slice(0, 24)}`)
    }
  })
})

describe('huge arrays through the proxy', () => {
  let mock: MockUpstream
  let child: ProxyChild
  let dataDir: string
  let port: number

  const http = (path: string, body: unknown) => {
    const bytes = Buffer.from(JSON.stringify(body))
    const head = `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\ncontent-length: ${bytes.length}\r\nx-agentmesh-team: large-arrays\r\nconnection: close\r\n\r\n`
    return Buffer.concat([Buffer.from(head), bytes])
  }
  // count_tokens: the parse and the local estimate (the vendor's count fails), without compression,
  // whose own blocks on transcripts this long are another matter
  const toolUses = (n: number) =>
    http('/v1/messages/count_tokens', {
      model: 'claude-3-5-haiku-latest',
      messages: [
        { role: 'user', content: 'go' },
        {
          role: 'assistant',
          content: Array.from({ length: n }, (_, i) => ({
            type: 'tool_use',
            id: `toolu_${i}`,
            name: 'get_weather',
            input: { city: 'Paris', unit: 'c' },
          })),
        },
        { role: 'user', content: 'and?' },
      ],
    })
  const anthropicTools = (n: number) =>
    http('/v1/messages/count_tokens', {
      model: 'claude-3-5-haiku-latest',
      messages: [{ role: 'user', content: 'weather?' }],
      tools: Array.from({ length: n }, (_, i) => ({
        name: `get_weather_${i}`,
        description: 'Current weather for a city',
        input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      })),
    })
  const openaiTools = (n: number) =>
    http('/v1/chat/completions', {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'weather?' }],
      tools: Array.from({ length: n }, (_, i) => ({
        type: 'function',
        function: {
          name: `get_weather_${i}`,
          description: 'Current weather for a city',
          parameters: {
            type: 'object',
            properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['c', 'f'] } },
            required: ['city'],
          },
        },
      })),
    })

  beforeAll(async () => {
    ;({ mock, child, port, dataDir } = await startChildAndMock('arrays', undefined, { status: 503 }))
    // the first request of each kind compiles the code
    await sendRaw(port, toolUses(2000), { timeoutMs: 30_000 })
    await sendRaw(port, openaiTools(2000), { timeoutMs: 30_000 })
    await sendRaw(port, anthropicTools(2000), { timeoutMs: 30_000 })
  }, 120_000)

  afterAll(() => stopChildAndMock({ mock, child, dataDir }))

  // before: 240 ms (case 613, 23,718 blocks) and 201 ms (case 2867, 26,327 tools) of CPU in one block
  it.each([
    { what: '25,000 tool_use blocks in one Anthropic message', make: () => toolUses(25_000) },
    { what: '90,000 tool_use blocks (7 MB) in one Anthropic message', make: () => toolUses(90_000) },
    { what: '26,000 OpenAI tools', make: () => openaiTools(26_000) },
    { what: '40,000 Anthropic tools', make: () => anthropicTools(40_000) },
  ])(
    '$what: answered, no long block',
    async ({ what, make }) => {
      await child.stats({ gc: true, reset: true })
      const r = await sendRaw(port, make(), { timeoutMs: 60_000 })
      await new Promise((res) => setTimeout(res, 300))
      const s = await child.stats()
      console.log(`${what}: longest block ${s.elMaxMs.toFixed(0)} ms, ${s.blockCpuMs.toFixed(0)} ms of CPU in it`)
      // the mock's 503 relayed; count_tokens answers with the local estimate when the vendor's count fails
      const count = what.includes('Anthropic')
      expect(r.status, r.body.toString().slice(0, 300)).toBe(count ? 200 : 503)
      if (count) expect(JSON.parse(r.body.toString()).input_tokens).toBeGreaterThan(100_000)
      // the same bound as the large bodies' (test/large-bodies.test.ts): what is left is mostly GC
      expect(s.blockCpuMs).toBeLessThan(90)
    },
    90_000,
  )
})
