// Issue 21 items 2 and 4: the secrets guard, through a running proxy, with the official OpenAI and
// Anthropic clients and a mock vendor that records what it received. A redacted secret reaches
// the vendor as [REDACTED:kind] in every protocol, streaming or not; a blocked kind gets a 403
// secret_in_prompt in the client's error shape without the secret; no header, event, audit entry
// or cache key ever holds it.
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { resolveConfig } from '../core/config.ts'
import { definePlugin } from '../core/plugin.ts'
import { audit, listLogFiles, parseLine } from '../plugins/audit/index.ts'
import { exactCache } from '../plugins/exact-cache/index.ts'
import { buildCorpus } from '../bench/data/guard/generate.ts'
import { detectSecrets, guard, maySecret } from '../plugins/guard/index.ts'
import { normalise } from '../plugins/normalise/index.ts'
import {
  anthropicClient,
  clearVendorEnv,
  openaiClient,
  postJson,
  startMockAndProxy,
  tempDir,
  type Proxy,
} from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'

// Fake secrets, built at run time from a seeded generator (no literal token in the repository for
// a secret scanner to trip on): the right prefix, length and alphabet, random otherwise.
let seed = 0x5eed
function rand(n: number): number {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) % n
}
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
const B64 = ALNUM + '+/'
const pick = (alphabet: string, n: number) => Array.from({ length: n }, () => alphabet[rand(alphabet.length)]).join('')
// a mix of cases and a digit, as a random key of that alphabet has
const mixed = (alphabet: string, n: number) =>
  `${pick('ABCDEFGHJKLMNPQRSTUVWXYZ', 1)}${pick('abcdefghijkmnopqrstuvwxyz', 1)}${pick('23456789', 1)}${pick(alphabet, n - 3)}`

const S = {
  awsId: `AKIA${pick(UPPER, 16)}`,
  awsSecret: `${mixed(B64, 38)}/${pick('0123456789', 1)}`,
  github: `ghp_${mixed(ALNUM, 36)}`,
  slack: `xoxb-${pick('0123456789', 12)}-${pick('0123456789', 13)}-${mixed(ALNUM, 24)}`,
  pgPassword: `Pg${mixed(ALNUM, 14)}`,
  anthropic: `sk-ant-api03-${mixed(ALNUM + '_-', 93)}AA`,
  google: `AIza${mixed(ALNUM + '_-', 35)}`,
  stripe: `sk_live_${mixed(ALNUM, 24)}`,
  jwt: `eyJhbGciOiJIUzI1NiJ9.eyJ${mixed(ALNUM, 40)}.${mixed(ALNUM + '_-', 43)}`,
  openai: `sk-proj-${mixed(ALNUM + '_-', 80)}`,
  npm: `npm_${mixed(ALNUM, 36)}`,
}
const pem = () =>
  `-----BEGIN RSA PRIVATE KEY-----\nMIIEow${mixed(B64, 58)}\n${Array.from({ length: 6 }, () => mixed(B64, 64)).join('\n')}\n-----END RSA PRIVATE KEY-----`
const PEM = pem()
const PEM_BODY = PEM.split('\n')[3]!
const ALL_SECRETS = [...Object.values(S), PEM_BODY]

/** what the exact cache's lookup saw, recorded by a probe that runs just before it */
const seenByCache: string[] = []
/** what the guard published on each request, as another plugin reads it */
const guardStates: unknown[] = []
const probe = definePlugin({
  name: 'probe',
  enforce: 'pre',
  hooks: {
    cacheLookup: (ctx) =>
      void seenByCache.push(
        JSON.stringify({ prompt: ctx.prompt, normalised: ctx.normalised, raw: ctx.request.rawBody }),
      ),
    afterResponse: (ctx) => void guardStates.push(ctx.state.guard),
  },
})

let mock: MockUpstream
let proxy: Proxy
let dataDir: string
const last = () => mock.received.at(-1)!
const noSecretIn = (text: string) => {
  for (const s of ALL_SECRETS) expect(text).not.toContain(s)
}

beforeAll(async () => {
  clearVendorEnv()
  dataDir = tempDir()
  ;({ mock, proxy } = await startMockAndProxy({
    config: {
      dataDir,
      plugins: [
        guard({ block: ['private-key'] }),
        probe,
        normalise(),
        exactCache(),
        audit({ includeContent: true, checkpointSeconds: 0 }),
      ],
    },
  }))
})
afterAll(async () => {
  // the audit test closed the instance already, to read a flushed log
  await proxy.close().catch(() => {})
  await mock.close()
  rmSync(dataDir, { recursive: true, force: true })
})

describe('redaction reaches the vendor', () => {
  it('OpenAI Chat Completions: system, user, tool-call arguments and tool results; the header counts each kind', async () => {
    const client = openaiClient(proxy)
    const { data, response } = await client.chat.completions
      .create({
        model: 'gpt-4o-mini',
        messages: [
          { role: 'system', content: `Our database is postgres://app:${S.pgPassword}@db.internal:5432/prod` },
          {
            role: 'user',
            content: `My creds:\naws_access_key_id = ${S.awsId}\naws_secret_access_key = ${S.awsSecret}\nwhy does boto3 fail?`,
          },
          {
            role: 'assistant',
            content: null,
            tool_calls: [
              {
                id: 'call_1',
                type: 'function',
                function: { name: 'clone', arguments: JSON.stringify({ token: S.github }) },
              },
            ],
          },
          { role: 'tool', tool_call_id: 'call_1', content: `cloned; SLACK_BOT_TOKEN=${S.slack} found in .env` },
        ],
      })
      .withResponse()
    const raw = last().raw
    noSecretIn(raw)
    expect(last().body.messages[0].content).toBe(
      'Our database is postgres://app:[REDACTED:connection-string]@db.internal:5432/prod',
    )
    expect(last().body.messages[1].content).toContain(
      'aws_access_key_id = [REDACTED:aws-access-key]\naws_secret_access_key = [REDACTED:aws-secret-key]',
    )
    // the arguments stay valid JSON
    expect(JSON.parse(last().body.messages[2].tool_calls[0].function.arguments)).toEqual({
      token: '[REDACTED:github-token]',
    })
    expect(last().body.messages[3].content).toBe('cloned; SLACK_BOT_TOKEN=[REDACTED:slack-token] found in .env')
    expect(response.headers.get('x-agentmesh-redacted')).toBe(
      'connection-string:1,aws-access-key:1,aws-secret-key:1,github-token:1,slack-token:1',
    )
    noSecretIn(JSON.stringify([...response.headers]))
    // the mock echoes the tool result: the answer never held the secret either
    expect(data.choices[0]!.message.content).toContain('[REDACTED:slack-token]')
  })

  it('OpenAI streaming', async () => {
    const client = openaiClient(proxy)
    const { data: stream, response } = await client.chat.completions
      .create({
        model: 'gpt-4o-mini',
        stream: true,
        messages: [{ role: 'user', content: `export OPENAI_API_KEY=${S.openai} then run it` }],
      })
      .withResponse()
    let text = ''
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ''
    expect(last().body.stream).toBe(true)
    expect(last().body.messages[0].content).toBe('export OPENAI_API_KEY=[REDACTED:openai-key] then run it')
    noSecretIn(last().raw)
    expect(text).toBe('mock answer to: export OPENAI_API_KEY=[REDACTED:openai-key] then run it')
    expect(response.headers.get('x-agentmesh-redacted')).toBe('openai-key:1')
  })

  it('Anthropic Messages, whole and streamed: system blocks, tool_use input, tool_result content', async () => {
    const client = anthropicClient(proxy)
    // the streamed request differs (the exact cache would answer the same one)
    const params = (stream: boolean) => ({
      model: 'claude-haiku-4-5',
      max_tokens: 100,
      system: [{ type: 'text' as const, text: `You deploy with ANTHROPIC_API_KEY=${S.anthropic}` }],
      messages: [
        { role: 'user' as const, content: [{ type: 'text' as const, text: `decode this session: ${S.jwt}` }] },
        {
          role: 'assistant' as const,
          content: [{ type: 'tool_use' as const, id: 'toolu_1', name: 'maps', input: { key: S.google } }],
        },
        {
          role: 'user' as const,
          content: [
            {
              type: 'tool_result' as const,
              tool_use_id: 'toolu_1',
              content: `{"stripe":"${S.stripe}","ok":${stream}}`,
            },
          ],
        },
      ],
    })
    const { response } = await client.messages.create(params(false)).withResponse()
    const check = () => {
      const body = last().body
      noSecretIn(last().raw)
      expect(body.system[0].text).toBe('You deploy with ANTHROPIC_API_KEY=[REDACTED:anthropic-key]')
      expect(body.messages[0].content[0].text).toBe('decode this session: [REDACTED:jwt]')
      expect(body.messages[1].content[0].input).toEqual({ key: '[REDACTED:google-api-key]' })
      expect(body.messages[2].content[0].content).toBe(
        `{"stripe":"[REDACTED:stripe-key]","ok":${body.stream === true}}`,
      )
    }
    check()
    expect(response.headers.get('x-agentmesh-redacted')).toBe('anthropic-key:1,jwt:1,google-api-key:1,stripe-key:1')
    const stream = client.messages.stream(params(true))
    await stream.finalMessage()
    expect(last().body.stream).toBe(true)
    check()
  })

  it('OpenAI Responses: instructions and function_call_output', async () => {
    const client = openaiClient(proxy)
    const { response } = await client.responses
      .create({
        model: 'gpt-4o-mini',
        instructions: `npm publish uses ${S.npm}`,
        input: [
          { type: 'function_call', call_id: 'c1', name: 'env', arguments: '{}' },
          { type: 'function_call_output', call_id: 'c1', output: `GITHUB_TOKEN=${S.github}` },
          { role: 'user', content: 'what did the tool print?' },
        ],
      })
      .withResponse()
    expect(last().path).toBe('/v1/responses')
    noSecretIn(last().raw)
    expect(last().body.instructions).toBe('npm publish uses [REDACTED:npm-token]')
    expect(last().body.input[1].output).toBe('GITHUB_TOKEN=[REDACTED:github-token]')
    expect(response.headers.get('x-agentmesh-redacted')).toBe('npm-token:1,github-token:1')
  })

  it('Gemini generateContent and streamGenerateContent', async () => {
    for (const method of ['generateContent', 'streamGenerateContent?alt=sse']) {
      const res = await postJson(`${proxy.url}/v1beta/models/gemini-2.5-flash:${method}`, {
        systemInstruction: { parts: [{ text: `AWS key ${S.awsId}` }] },
        contents: [{ role: 'user', parts: [{ text: `token: ${S.slack}` }, { text: method }] }],
      })
      expect(res.status).toBe(200)
      await res.text()
      expect(last().path).toContain(method.split('?')[0])
      noSecretIn(last().raw)
      expect(last().body.systemInstruction.parts[0].text).toBe('AWS key [REDACTED:aws-access-key]')
      expect(last().body.contents[0].parts[0].text).toBe('token: [REDACTED:slack-token]')
      expect(res.headers.get('x-agentmesh-redacted')).toBe('aws-access-key:1,slack-token:1')
    }
  })

  it('a body over 64 KB (read string by string, its image left alone): the secret is still found', async () => {
    const image = `data:image/png;base64,${'iVBORw0KGgoAAAANSUhEUgAA'.repeat(4000)}`
    const log = `${'2025-06-02T10:11:12Z INFO request ok\n'.repeat(2000)}SENDGRID_API_KEY=SG.${mixed(ALNUM, 22)}.${mixed(ALNUM, 43)}\n`
    const res = await postJson(`${proxy.url}/v1/chat/completions`, {
      model: 'gpt-4o-mini',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: { url: image } },
            { type: 'text', text: log },
          ],
        },
      ],
    })
    expect(res.status).toBe(200)
    expect(last().raw.length).toBeGreaterThan(64 * 1024)
    expect(last().body.messages[0].content[0].image_url.url).toBe(image)
    expect(last().body.messages[0].content[1].text.endsWith('SENDGRID_API_KEY=[REDACTED:sendgrid-key]\n')).toBe(true)
    expect(res.headers.get('x-agentmesh-redacted')).toBe('sendgrid-key:1')
  })

  it('a token at the start of a line or after a tab (in the JSON text: after the escape \\n or \\t)', async () => {
    const content = `here is what the CI printed:\n${S.npm}\n\t${S.github}`
    const res = await postJson(`${proxy.url}/v1/chat/completions`, {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content }],
    })
    expect(res.status).toBe(200)
    expect(last().body.messages[0].content).toBe(
      'here is what the CI printed:\n[REDACTED:npm-token]\n\t[REDACTED:github-token]',
    )
  })

  it('embeddings input', async () => {
    const res = await postJson(`${proxy.url}/v1/embeddings`, {
      model: 'text-embedding-3-small',
      input: ['plain text', `config: GITLAB_TOKEN=${S.github}`],
    })
    expect(res.status).toBe(200)
    expect(last().path).toBe('/v1/embeddings')
    expect(last().body.input).toEqual(['plain text', 'config: GITLAB_TOKEN=[REDACTED:github-token]'])
    expect(res.headers.get('x-agentmesh-redacted')).toBe('github-token:1')
  })

  it('a prompt without secrets goes upstream byte for byte, with no header', async () => {
    const body = JSON.stringify({
      model: 'gpt-4o-mini',
      messages: [
        {
          role: 'user',
          content:
            'commit 3f786850e387550fdab836ed7e6dc881de23001b, request 550e8400-e29b-41d4-a716-446655440000, max_tokens: 4096',
        },
      ],
    })
    const res = await postJson(`${proxy.url}/v1/chat/completions`, body)
    expect(res.status).toBe(200)
    expect(res.headers.get('x-agentmesh-redacted')).toBeNull()
    expect(last().raw).toBe(body)
  })
})

describe('blocked kinds', () => {
  const sentSoFar = () => mock.received.length

  it('OpenAI: 403 secret_in_prompt in the OpenAI error shape, naming the kind and the place, without the key', async () => {
    const n = sentSoFar()
    const client = openaiClient(proxy)
    const err: any = await client.chat.completions
      .create({
        model: 'gpt-4o-mini',
        messages: [
          { role: 'system', content: 'be brief' },
          { role: 'user', content: `why is this key rejected?\n${PEM}` },
        ],
      })
      .catch((e) => e)
    expect(err.status).toBe(403)
    expect(err.error).toMatchObject({ type: 'secret_in_prompt', code: 'secret_in_prompt' })
    expect(err.error.message).toMatch(/private-key in messages\[1\] \(user\)/)
    noSecretIn(JSON.stringify(err.error))
    noSecretIn(JSON.stringify(Object.fromEntries(err.headers ?? [])))
    expect(mock.received.length).toBe(n)
  })

  it('Anthropic: 403 in the Anthropic error shape, streaming too', async () => {
    const n = sentSoFar()
    const client = anthropicClient(proxy)
    const params = {
      model: 'claude-haiku-4-5',
      max_tokens: 50,
      messages: [
        { role: 'user' as const, content: 'hi' },
        { role: 'assistant' as const, content: 'hello' },
        { role: 'user' as const, content: [{ type: 'tool_result' as const, tool_use_id: 't', content: PEM }] },
      ],
    }
    const err: any = await client.messages.create(params).catch((e) => e)
    expect(err.status).toBe(403)
    expect(err.error).toEqual({
      type: 'error',
      error: { type: 'secret_in_prompt', message: expect.stringMatching(/private-key in messages\[2\] \(user\)/) },
    })
    noSecretIn(JSON.stringify(err.error))
    const streamed: any = await client.messages.create({ ...params, stream: true }).catch((e) => e)
    expect(streamed.status).toBe(403)
    expect(streamed.error.error.type).toBe('secret_in_prompt')
    expect(mock.received.length).toBe(n)
  })

  it('Gemini and Responses: 403 in their shapes', async () => {
    const n = sentSoFar()
    const g = await postJson(`${proxy.url}/v1beta/models/gemini-2.5-flash:generateContent`, {
      contents: [{ role: 'user', parts: [{ text: PEM }] }],
    })
    expect(g.status).toBe(403)
    const gText = await g.text()
    noSecretIn(gText)
    expect(JSON.parse(gText).error).toMatchObject({
      code: 403,
      message: expect.stringContaining('private-key in contents[0] (user)'),
    })
    const r = await postJson(`${proxy.url}/v1/responses`, { model: 'gpt-4o-mini', instructions: PEM, input: 'hi' })
    expect(r.status).toBe(403)
    const rBody = await r.json()
    expect(rBody.error).toMatchObject({
      code: 'secret_in_prompt',
      message: expect.stringContaining('private-key in instructions'),
    })
    noSecretIn(JSON.stringify(rBody))
    expect(mock.received.length).toBe(n)
  })
})

describe('nothing leaks around the guard', () => {
  it('the exact cache keys the redacted prompt: another secret in the same place is a hit, and the lookup never saw a secret', async () => {
    const client = openaiClient(proxy)
    const ask = (token: string) =>
      client.chat.completions
        .create({
          model: 'gpt-4o-mini',
          temperature: 0,
          messages: [{ role: 'user', content: `git push fails with GH_TOKEN=${token}, why?` }],
        })
        .withResponse()
    const n = mock.received.length
    const first = await ask(S.github)
    expect(first.response.headers.get('x-agentmesh-cache')).toBe('miss')
    const other = `ghp_${mixed(ALNUM, 36)}`
    const second = await ask(other)
    expect(second.response.headers.get('x-agentmesh-cache')).toBe('exact')
    expect(mock.received.length).toBe(n + 1)
    expect(seenByCache.length).toBeGreaterThan(5)
    for (const seen of seenByCache) {
      noSecretIn(seen)
      expect(seen).not.toContain(other)
    }
  })

  it('events carry kinds and places, never a value; the audit log (with content) holds only the redacted prompt', async () => {
    const events = JSON.stringify(proxy.events)
    noSecretIn(events)
    const redacted = proxy.events.filter((e) => e.type === 'secret_redacted')
    const blocked = proxy.events.filter((e) => e.type === 'secret_blocked')
    expect(redacted.length).toBeGreaterThanOrEqual(8)
    expect(blocked.length).toBe(5)
    expect(redacted[0]!.data).toMatchObject({
      counts: { 'connection-string': 1, 'aws-access-key': 1, 'aws-secret-key': 1, 'github-token': 1, 'slack-token': 1 },
      where: ['messages[0] (system)', 'messages[1] (user)', 'messages[2] (assistant)', 'messages[3] (tool)'],
    })
    expect(blocked[0]!.data).toMatchObject({ counts: { 'private-key': 1 }, where: ['messages[1] (user)'] })
    // ctx.state.guard, as a plugin after the guard reads it: counts and places, no values
    expect(guardStates[0]).toEqual({
      counts: { 'connection-string': 1, 'aws-access-key': 1, 'aws-secret-key': 1, 'github-token': 1, 'slack-token': 1 },
      findings: [
        { kind: 'connection-string', where: 'messages[0] (system)', action: 'redact' },
        { kind: 'aws-access-key', where: 'messages[1] (user)', action: 'redact' },
        { kind: 'aws-secret-key', where: 'messages[1] (user)', action: 'redact' },
        { kind: 'github-token', where: 'messages[2] (assistant)', action: 'redact' },
        { kind: 'slack-token', where: 'messages[3] (tool)', action: 'redact' },
      ],
      outcome: 'redacted',
    })
    expect(guardStates.filter((g: any) => g?.outcome === 'blocked').length).toBe(5)
    noSecretIn(JSON.stringify(guardStates))
    const errors = proxy.events.filter((e) => e.type === 'error' && (e.data as any).type === 'secret_in_prompt')
    expect(errors.length).toBe(5)

    await proxy.instance.close()
    const text = listLogFiles(join(dataDir, 'audit'))
      .map((f) => readFileSync(f.path, 'utf8'))
      .join('')
    noSecretIn(text)
    const entries: any[] = text
      .split('\n')
      .filter(Boolean)
      .map((l) => parseLine(l)!.record())
      .filter((r) => r.kind === 'request')
    const withRedaction = entries.filter((e) => JSON.stringify(e.prompt ?? '').includes('[REDACTED:'))
    expect(withRedaction.length).toBeGreaterThanOrEqual(10)
    expect(entries.filter((e) => e.error === 'secret_in_prompt' && e.status === 403).length).toBe(5)
    // the blocked requests' prompts were redacted too before the audit read them
    for (const e of entries.filter((x) => x.error === 'secret_in_prompt'))
      expect(JSON.stringify(e.prompt)).toContain('[REDACTED:private-key]')
  })
})

describe('presets and options', () => {
  it('every preset redacts by default; team blocks private keys and cloud credentials', async () => {
    for (const preset of ['demo', 'solo']) {
      const g = (await resolveConfig({ preset })).plugins.find((p) => p.name === 'guard')
      expect(g?.options).toEqual({})
    }
    const team = (await resolveConfig({ preset: 'team' })).plugins.find((p) => p.name === 'guard')!
    expect(team.options).toEqual({ block: ['private-key', 'cloud'] })
    // the team preset's own instance, run: an AWS key is refused, a GitHub token redacted
    const { mock: m2, proxy: p2 } = await startMockAndProxy({ config: { plugins: [team] } })
    try {
      const client = openaiClient(p2)
      const err: any = await client.chat.completions
        .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `key ${S.awsId}` }] })
        .catch((e) => e)
      expect(err.status).toBe(403)
      expect(err.error.message).toContain('aws-access-key in messages[0] (user)')
      const ok = await client.chat.completions
        .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `token ${S.github}` }] })
        .withResponse()
      expect(ok.response.headers.get('x-agentmesh-redacted')).toBe('github-token:1')
      expect(m2.received.length).toBe(1)
      noSecretIn(m2.received[0]!.raw)
    } finally {
      await p2.close()
      await m2.close()
    }
  })

  it('off and allow: those values go upstream as they are', async () => {
    const { mock: m3, proxy: p3 } = await startMockAndProxy({
      config: { plugins: [guard({ off: ['jwt'], allow: [S.github] })] },
    })
    try {
      const content = `session ${S.jwt}, token ${S.github}, npm ${S.npm}`
      const res = await openaiClient(p3)
        .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] })
        .withResponse()
      expect(m3.received[0]!.body.messages[0].content).toBe(
        `session ${S.jwt}, token ${S.github}, npm [REDACTED:npm-token]`,
      )
      expect(res.response.headers.get('x-agentmesh-redacted')).toBe('npm-token:1')
    } finally {
      await p3.close()
      await m3.close()
    }
  })

  it('the one pass over the JSON body misses nothing the detector finds in its strings (the bench corpus, with tabs and quotes escaped)', () => {
    let found = 0
    for (const item of buildCorpus()) {
      for (const text of [item.text, item.text.replace(/ /g, '\t')]) {
        if (!detectSecrets(text).length) continue
        found++
        expect(maySecret(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: text }] })), item.id).toBe(
          true,
        )
      }
    }
    expect(found).toBeGreaterThan(900)
  })

  it('refuses unknown kinds and options; detectSecrets reports only the kinds asked for', () => {
    expect(() => guard({ block: ['aws'] })).toThrow(/unknown kind "aws"/)
    expect(() => guard({ bogus: 1 } as any)).toThrow(/unknown option "bogus"/)
    expect(() => guard({ action: 'drop' as any })).toThrow(/action/)
    expect(detectSecrets(`id ${S.awsId} and ${S.github}`, ['github-token']).map((f) => f.kind)).toEqual([
      'github-token',
    ])
    // a quoted value is taken to its closing quote, brackets and all: no tail is left behind
    const django = `django-insecure-${mixed(ALNUM, 12)}(u)v+w=y_${mixed(ALNUM, 10)}`
    const text = `SECRET_KEY = '${django}'\nDEBUG = False`
    expect(detectSecrets(text).map((f) => text.slice(f.start, f.end))).toEqual([django])
  })
})
