// Unit tests of the exact-cache key: what is in it and what is not.
import { describe, expect, it } from 'vitest'
import { cacheKey, canonicalRequest, type CacheScope } from '../plugins/exact-cache/key.ts'
import { canonicalJson } from '../core/canonical.ts'
import { cacheControl, exactCache } from '../plugins/exact-cache/index.ts'
import { normaliseText } from '../plugins/normalise/text.ts'
import { protocols } from '../core/protocols/index.ts'
import type { MeshContext, ProtocolName } from '../core/types.ts'

interface Opts {
  protocol?: ProtocolName
  team?: string
  user?: string
  headers?: Record<string, string>
  normalise?: boolean
}

/** a context as the core builds it: the real protocol parser, plus the normalise plugin's view */
function ctxFor(body: any, o: Opts = {}): MeshContext {
  const protocol = o.protocol ?? 'anthropic'
  const prompt = protocols[protocol].parse(structuredClone(body), {})
  const ctx = {
    protocol,
    prompt,
    identity: { team: o.team ?? 'eng', user: o.user ?? 'alice', tool: 'test', source: 'header' },
    request: { headers: new Headers(o.headers ?? {}) },
  } as unknown as MeshContext
  if (o.normalise !== false) {
    ctx.normalised = {
      system: normaliseText(prompt.system),
      messages: prompt.messages.map((m) => (m.role === 'user' ? { ...m, text: normaliseText(m.text) } : m)),
    }
  }
  return ctx
}

const key = (body: any, o: Opts = {}, scope: CacheScope = 'team') => cacheKey(ctxFor(body, o), scope)

const base = {
  model: 'claude-haiku-4-5',
  max_tokens: 256,
  system: 'Answer briefly.',
  temperature: 0.2,
  tools: [
    {
      name: 'get_weather',
      description: 'weather for a city',
      input_schema: { type: 'object', properties: { city: { type: 'string' } } },
    },
  ],
  messages: [
    { role: 'user', content: 'What is the weather in Paris?' },
    { role: 'assistant', content: 'Let me check.' },
    { role: 'user', content: 'And tomorrow?' },
  ],
}

describe('exact-cache key', () => {
  it('is a SHA-256 hex digest, stable for the same request', () => {
    const k = key(base)
    expect(k).toMatch(/^[0-9a-f]{64}$/)
    expect(key(structuredClone(base))).toBe(k)
  })

  it('ignores JSON key order and the stream flag', () => {
    const reordered = {
      messages: base.messages,
      tools: base.tools,
      temperature: 0.2,
      system: base.system,
      max_tokens: 256,
      model: base.model,
    }
    expect(key(reordered)).toBe(key(base))
    expect(key({ ...base, stream: true })).toBe(key(base))
  })

  it('merges prompts the normaliser makes equal', () => {
    const polite = {
      ...base,
      messages: [...base.messages.slice(0, 2), { role: 'user', content: 'Please, and   TOMORROW?' }],
    }
    expect(key(polite)).toBe(key(base))
    // and not without it
    expect(key(polite, { normalise: false })).not.toBe(key(base, { normalise: false }))
  })

  it.each([
    ['model', { model: 'claude-sonnet-4-5' }],
    ['system prompt', { system: 'Answer at length.' }],
    ['no system prompt', { system: undefined }],
    ['temperature', { temperature: 0.9 }],
    ['top_p', { top_p: 0.5 }],
    ['stop sequences', { stop_sequences: ['END'] }],
    ['max tokens', { max_tokens: 512 }],
    ['tool list', { tools: [{ ...base.tools[0], name: 'get_forecast' }] }],
    [
      'tool schema',
      { tools: [{ ...base.tools[0], input_schema: { type: 'object', properties: { town: { type: 'string' } } } }] },
    ],
    ['no tools', { tools: undefined }],
    ['tool choice', { tool_choice: { type: 'any' } }],
    [
      'earlier user turn',
      { messages: [{ role: 'user', content: 'What is the weather in Rome?' }, ...base.messages.slice(1)] },
    ],
    [
      'earlier assistant turn',
      { messages: [base.messages[0], { role: 'assistant', content: 'Checking now.' }, base.messages[2]] },
    ],
    ['turn order', { messages: [base.messages[2], base.messages[1], base.messages[0]] }],
    [
      'a tool result',
      {
        messages: [
          ...base.messages.slice(0, 2),
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: '18C' }] },
        ],
      },
    ],
    [
      'an image',
      {
        messages: [
          ...base.messages.slice(0, 2),
          {
            role: 'user',
            content: [
              { type: 'text', text: 'And tomorrow?' },
              { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } },
            ],
          },
        ],
      },
    ],
  ])('changes with the %s', (_name, change) => {
    expect(key({ ...base, ...change })).not.toBe(key(base))
  })

  it('changes with the protocol (vendor family)', () => {
    const openaiBody = {
      model: 'claude-haiku-4-5',
      max_tokens: 256,
      temperature: 0.2,
      messages: [{ role: 'system', content: base.system }, ...base.messages],
    }
    const a = cacheKey(ctxFor(openaiBody, { protocol: 'openai' }), 'team')
    expect(a).not.toBe(key({ ...base, tools: undefined }))
  })

  it('response format is in the key (OpenAI)', () => {
    const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'List three colours' }] }
    const a = cacheKey(ctxFor(body, { protocol: 'openai' }), 'team')
    const b = cacheKey(ctxFor({ ...body, response_format: { type: 'json_object' } }, { protocol: 'openai' }), 'team')
    const c = cacheKey(ctxFor({ ...body, seed: 7 }, { protocol: 'openai' }), 'team')
    expect(new Set([a, b, c]).size).toBe(3)
  })

  it('scope: team by default, user, global', () => {
    expect(key(base, { team: 'eng' })).not.toBe(key(base, { team: 'sales' }))
    expect(key(base, { team: 'eng', user: 'alice' })).toBe(key(base, { team: 'eng', user: 'bob' }))
    expect(key(base, { user: 'alice' }, 'user')).not.toBe(key(base, { user: 'bob' }, 'user'))
    expect(key(base, { team: 'eng' }, 'global')).toBe(key(base, { team: 'sales' }, 'global'))
  })

  it('namespace header separates entries', () => {
    expect(key(base, { headers: { 'x-agentmesh-cache-namespace': 'exp-1' } })).not.toBe(key(base))
    expect(key(base, { headers: { 'x-agentmesh-cache-namespace': 'exp-1' } })).not.toBe(
      key(base, { headers: { 'x-agentmesh-cache-namespace': 'exp-2' } }),
    )
  })

  it('holds no key or secret, and cache_control hints do not change it', () => {
    const secretHeaders = { 'x-api-key': 'sk-ant-secret-123456', authorization: 'Bearer sk-secret-abcdef' }
    const canonical = canonicalJson(canonicalRequest(ctxFor(base, { headers: secretHeaders }), 'team'))
    expect(canonical).not.toContain('sk-')
    expect(key(base, { headers: secretHeaders })).toBe(key(base))
    const hinted = {
      ...base,
      tools: [{ ...base.tools[0], cache_control: { type: 'ephemeral' } }],
      system: [{ type: 'text', text: base.system, cache_control: { type: 'ephemeral' } }],
    }
    expect(key(hinted)).toBe(key(base))
  })
})

describe('exact-cache options and Cache-Control', () => {
  it('validates options naming the field', () => {
    expect(() => exactCache({ scope: 'org' as any })).toThrow(
      /exact-cache: scope must be "global", "team" or "user", got "org"/,
    )
    expect(() => exactCache({ ttlSeconds: 0 })).toThrow(/exact-cache: ttlSeconds must be a positive number, got 0/)
    expect(() => exactCache({ maxEntries: 1.5 })).toThrow(/exact-cache: maxEntries must be a positive integer/)
    expect(() => exactCache({ ttl: 5 } as any)).toThrow(/exact-cache: unknown option "ttl"/)
  })

  it('parses request Cache-Control directives', () => {
    expect(cacheControl(new Headers({ 'cache-control': 'no-cache' }))).toEqual({ noCache: true, noStore: false })
    expect(cacheControl(new Headers({ 'cache-control': 'max-age=0, No-Store' }))).toEqual({
      noCache: false,
      noStore: true,
    })
    expect(cacheControl(new Headers({}))).toEqual({ noCache: false, noStore: false })
    expect(cacheControl(new Headers({ 'cache-control': 'no-cache-please' }))).toEqual({
      noCache: false,
      noStore: false,
    })
  })
})
