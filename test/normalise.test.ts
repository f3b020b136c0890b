import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { canonicaliseCode, normalise, normaliseText } from '../plugins/normalise/index.ts'
import { createAgentMesh } from '../core/index.ts'
import { definePlugin } from '../core/plugin.ts'
import type { MeshContext } from '../core/types.ts'
import { demo } from '../plugins/vendors/demo.ts'

const n = (s: string, o = {}) => normaliseText(s, o)

describe('normaliseText: what must survive', () => {
  it.each([
    // the original's normaliser turned this into "" and cached every such prompt under one key
    ['I need you to delete the production database.', 'delete the production database.'],
    ['2*3*4', '2*3*4'],
    ['snake_case', 'snake_case'],
    ['What does __init__ do in my_module?', 'what does __init__ do in my_module?'],
    ['Call getUserById with id 42', 'call getUserById with id 42'],
    ['Could you not delete it?', 'could you not delete it?'],
    ["Please don't delete the prod DB, thanks!", "don't delete the prod DB"],
    ['Translate "Please Help Me" to French', 'translate "Please Help Me" to french'],
    ["Reply with 'Yes Sir' only", "reply with 'Yes Sir' only"],
    ['Tell me about the US economy and IT jobs.', 'tell me about the US economy and IT jobs.'],
    ['Is 1,000,000 more than 999,999?', 'is 1000000 more than 999999?'],
    ['Fetch https://Example.com/Path/To?Q=1 please', 'fetch https://Example.com/Path/To?Q=1 please'],
    ['You are a pirate. Say hello.', 'you are a pirate. say hello.'],
    ['You are not a helpful assistant. Answer.', 'you are not a helpful assistant. answer.'],
    ['Summarise in 3 bullet points', 'summarize in 3 bullet points'],
    ['Write a note to say thank you', 'write a note to say thank you'],
    ['Explain DNS. Thanks!', 'explain DNS.'],
    ['What does f(1,000) return?', 'what does f(1,000) return?'],
  ])('%j -> %j', (input, expected) => {
    expect(n(input)).toBe(expected)
  })

  it('keeps different numbers, negations and languages apart', () => {
    const pairs: Array<[string, string]> = [
      ['Summarise in 3 bullet points', 'Summarise in 5 bullet points'],
      ['Reverse a linked list in Java', 'Reverse a linked list in Python'],
      ['Should I use Redis?', 'Should I not use Redis?'],
      ['Delete the staging database.', 'Delete the production database.'],
      ['What is 2*3*4?', 'What is 2*3+4?'],
      ['Tell me about IT jobs', 'Tell me about it jobs'],
      ['Is "Abc" a palindrome?', 'Is "abc" a palindrome?'],
      ['Meeting on 03/04/2026', 'Meeting on 04/03/2026'],
      ['def f(a, b): return a - b', 'def f(b, a): return a - b'],
      ['def f(x): return self.x', 'def f(y): return self.z'],
    ]
    for (const [a, b] of pairs) expect(n(a), `${a} vs ${b}`).not.toBe(n(b))
  })

  it('never turns non-empty input into empty output', () => {
    for (const s of [
      'Please.',
      'please',
      'You are a helpful assistant.',
      'You are an expert software engineer.',
      'Thanks!',
      'Could you please',
      '**',
      '## ',
      'I need you to',
      'Hi, please, thanks.',
    ]) {
      const out = n(s)
      expect(out.trim(), JSON.stringify(s)).not.toBe('')
    }
  })
})

describe('normaliseText: what must merge', () => {
  it.each([
    ['persona prefix', 'You are a helpful assistant. What is the capital of France?', 'What is the capital of France?'],
    ['persona clause', 'As an expert Python developer, explain decorators.', 'Explain decorators.'],
    ['two personas', 'You are a helpful assistant. You are a senior security engineer. Review this.', 'Review this.'],
    ['filler', 'Could you please explain how DNS works?', 'Explain how DNS works?'],
    ['filler want', 'I want you to write a haiku about autumn.', 'Write a haiku about autumn.'],
    ['markdown emphasis', 'Explain **event sourcing** in _one_ paragraph', 'Explain event sourcing in one paragraph'],
    ['markdown heading and list', '## Task\n\n- list three uses of Redis', 'Task list three uses of Redis'],
    [
      'british spelling',
      'Optimise the colour palette and analyse the behaviour',
      'Optimize the color palette and analyze the behavior',
    ],
    ['dates', 'What happened on June 13, 2026?', 'What happened on 2026-06-13?'],
    ['day-month dates', 'What happened on 13th June 2026?', 'What happened on 13/06/2026?'],
    ['thousands', 'Is 10,000 a lot?', 'Is 10000 a lot?'],
    ['percent', 'Grow by 20 percent', 'Grow by 20%'],
    ['case and spaces', 'What   IS\n the  Answer?', 'what is the answer?'],
    ['capitals for emphasis', 'Do NOT use ALWAYS-ON caching', 'Do not use always-on caching'],
    ['curly quotes', 'Say \u201CHello\u201D', 'Say "Hello"'],
    [
      'code parameter names',
      'def login(user, pwd): return db.q(user)',
      'def login(username, password): return db.q(username)',
    ],
    ['code parameter spacing', 'def add(a,b): return a+b', 'def add(x, y): return x+y'],
  ])('%s', (_name, a, b) => {
    expect(n(a)).toBe(n(b))
  })

  it('persona-only prompts fall back to the lowercased original instead of vanishing', () => {
    expect(n('You are a helpful assistant.')).toBe('you are a helpful assistant.')
    expect(n('  You are a   SENIOR engineer. ')).toBe('you are a senior engineer.')
  })
})

describe('normaliseText: each step can be switched off', () => {
  it.each([
    ['persona', 'You are a helpful assistant. Hi there', 'you are a helpful assistant. hi there'],
    ['filler', 'Please explain DNS', 'please explain DNS'],
    ['markdown', '**bold** text', '**bold** text'],
    ['dates', 'On June 13, 2026', 'on june 13, 2026'],
    ['numbers', 'About 1,000 people', 'about 1,000 people'],
    ['spelling', 'The colour', 'the colour'],
    ['lowercase', 'Hello World', 'Hello World'],
    ['code', 'def f(x): return x', 'def f(x): return x'],
  ])('%s: false', (step, input, expected) => {
    expect(n(input, { [step]: false })).toBe(expected)
  })

  it('whitespace: false keeps the spacing', () => {
    expect(n('a  b', { whitespace: false })).toBe('a  b')
  })
})

describe('canonicaliseCode', () => {
  it('renames parameters consistently, outside strings, not attributes or keyword names', () => {
    expect(canonicaliseCode("def f(name): return self.name + g(name=name) + f'{name}' + 'name'")).toBe(
      "def f(arg0): return self.name + g(name=arg0) + f'{arg0}' + 'name'",
    )
    expect(canonicaliseCode('function add(a, b) { return `${a}+b` + a + b }')).toBe(
      'function add(arg0, arg1) { return `${arg0}+b` + arg0 + arg1 }',
    )
  })
  it('leaves code that already uses argN names alone (renaming could merge two programs)', () => {
    expect(canonicaliseCode('def f(x, arg0): return x')).toBe('def f(x, arg0): return x')
  })
  it('keeps indentation of fenced code: indentation is meaning in Python', () => {
    const a = '```python\nif x:\n    a()\nb()\n```'
    const b = '```python\nif x:\n    a()\n    b()\n```'
    expect(n(a)).not.toBe(n(b))
  })
  it('keeps indentation of unfenced code too', () => {
    expect(n('if x:\n    a()\nb()')).not.toBe(n('if x:\n    a()\n    b()'))
  })
})

describe('normaliseText on hostile input', () => {
  // these took minutes with unbounded patterns (quadratic backtracking); bounded spans keep them linear
  it('finishes on pathological markdown, identifiers and code', { timeout: 20_000 }, () => {
    const inputs = [
      '**a '.repeat(20000),
      '[a]('.repeat(30000),
      '``x'.repeat(30000),
      'a-'.repeat(100000),
      '# ' + ' #'.repeat(50000) + 'x',
      'def f(x): x '.repeat(5000),
      "'a ".repeat(50000),
    ]
    for (const s of inputs) expect(normaliseText(s, { maxChars: 1e7 }).length).toBeGreaterThan(0)
  })
  it('texts over maxChars only get lowercase and whitespace collapse', () => {
    expect(normaliseText('Please  SUMMARISE **this**', { maxChars: 10 })).toBe('please summarise **this**')
  })
})

describe('normalise plugin', () => {
  it('rejects bad options naming the field', () => {
    expect(() => normalise({ lowercase: 'yes' as any })).toThrow(/normalise: lowercase must be a boolean, got "yes"/)
    expect(() => normalise({ lowercse: true } as any)).toThrow(/unknown option "lowercse"/)
    expect(() => normalise({ roles: ['bot'] as any })).toThrow(/normalise: roles must be an array/)
    expect(() => normalise({ maxChars: -1 })).toThrow(/maxChars must be a non-negative number/)
  })

  it('sets ctx.normalised (system and user turns) and leaves what goes upstream untouched', async () => {
    let seen: MeshContext | undefined
    let upstreamBody = ''
    const dataDir = mkdtempSync(join(tmpdir(), 'am-norm-'))
    const mesh = await createAgentMesh({
      dataDir,
      log: { level: 'silent' },
      plugins: [
        normalise(),
        definePlugin({
          name: 'spy',
          hooks: {
            cacheLookup(ctx) {
              seen = ctx
            },
            route(ctx) {
              upstreamBody = ctx.request.dirty ? JSON.stringify(ctx.request.body) : ctx.request.rawBody
            },
          },
        }),
        demo(),
      ],
    })
    const body = {
      model: 'claude-haiku-4-5',
      max_tokens: 50,
      system: 'You are a helpful assistant. Answer in BRITISH English.',
      messages: [
        { role: 'user', content: 'Please summarise the **colour** theory.' },
        { role: 'assistant', content: 'Colour Theory Is...' },
        { role: 'user', content: 'I need you to delete the production database.' },
      ],
    }
    const raw = JSON.stringify(body)
    const res = await mesh.fetch(
      new Request('http://x/v1/messages', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: raw,
      }),
    )
    expect(res.status).toBe(200)
    expect(seen!.normalised).toEqual({
      system: 'answer in british english.',
      messages: [
        { role: 'user', text: 'summarize the color theory.' },
        { role: 'assistant', text: 'Colour Theory Is...' },
        { role: 'user', text: 'delete the production database.' },
      ],
    })
    expect(seen!.prompt.messages[0]!.text).toBe('Please summarise the **colour** theory.')
    expect(seen!.request.dirty).toBe(false)
    expect(upstreamBody).toBe(raw)
    await mesh.close()
    rmSync(dataDir, { recursive: true, force: true })
  })
})
