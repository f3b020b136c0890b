// Compression on bodies whose size is in the blocks of a few messages, not in the number of
// messages (issue 11: no request may hold the others up for more than about 50 ms). npm run fuzz
// seed 17107786 case 3660: one Anthropic message of 110,589 text blocks held the loop ~150 ms in
// dropOldTurns (a turn's tokens were counted in one go), callsById and the view. The passes now
// look at the clock every few dozen parts: the same result as in one go, on random bodies with a
// pacer that yields at almost every step, and blocks of under BLOCK_MS of CPU on 1-10 MB bodies.
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { protocols } from '../core/protocols/index.ts'
import { createTokenCounter } from '../core/tokens.ts'
import type { ProtocolName } from '../core/types.ts'
import { compressBody, compressBodyPaced, createJournal } from '../plugins/compression/compress.ts'
import { resolveOptions } from '../plugins/compression/options.ts'
import { NEVER } from '../plugins/compression/pace.ts'
import { eagerPacer, longestBlock } from './helpers/longest-block.ts'

/**
 * The longest block allowed to compression's own work (the measure, the core's parse and
 * estimate, is not under test here), as CPU time. The slices are 10 ms (issue 11 aims at about 50
 * ms a block); the rest is garbage collection, one native pass over a huge value (a 6 MB string's
 * split into lines) and the machine's load: measured 12-59 ms under a load of 10-11 on 2 cores.
 * Before the passes looked at the clock inside a message and inside a long text (and the journal
 * copied a message whole before its first rewrite), the shapes below held the loop 208-530 ms.
 */
const BLOCK_MS = 75
/**
 * One huge value in a few messages (a 7-8 MB string, a result of 100,000 blocks, a tool input of
 * 5 MB). compressBody knows such a body by its size (the prompt's tokens, or `chars`, the plugin's
 * raw body length) and works it in slices; before, a body of few messages and parts never looked large and was worked
 * in one go: 64-171 ms for the 7-8 MB strings, 91-125 ms for the 5 MB tool input, 60-112 ms for
 * the 5 MB arguments text (loads of 5-7 on 2 cores). Now a block holds at most one flat copy of
 * the rewritten text (a join of 7 MB: 20-30 ms of CPU here), in a slice of its own, or a garbage
 * collection: measured 10-48 ms in this file under a load of 5-6.
 */
const HUGE_BLOCK_MS = 50

// deterministic pseudo-random input, so a failure reproduces
let seed = 7
const rnd = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
  return seed / 4294967296
}
const int = (n: number) => Math.floor(rnd() * n)
const pick = <T>(a: readonly T[]): T => a[int(a.length)]!
const WORDS = 'the worker queue flushed its batch and moved on while a scheduler waited for the lease'.split(' ')
const prose = (n: number) => Array.from({ length: n }, () => pick(WORDS)).join(' ')

// --- random conversations, written in each protocol ------------------------------------------------

type Block =
  | { kind: 'text'; text: string }
  | { kind: 'call'; id: string; name: string; args: Record<string, unknown> }
  | { kind: 'result'; id: string; name: string; text: string; blocks: boolean; many?: boolean }
  | { kind: 'image' }
interface Message {
  role: 'user' | 'assistant'
  blocks: Block[]
}

/** a numbered, indented listing of `n` lines (with runs of blank lines and trailing spaces) */
const listing = (n: number) =>
  Array.from({ length: n }, (_, i) =>
    i % 9 === 4 ? '' : `  ${String(i).padStart(5)}\t    const v${i} = f(${i})  `,
  ).join('\n')
/** pretty-printed JSON of about `rows` rows */
const prettyJson = (rows: number) =>
  JSON.stringify(
    { rows: Array.from({ length: rows }, (_, i) => ({ i, s: `a "quoted" ${prose(2)}\n`, ok: i % 2 === 0 })) },
    null,
    2,
  )

// outputs long enough for the paced rewrites (16K characters and more), now and then
const LONG_OUTPUTS = [
  () => (rnd() < 0.1 ? listing(400 + int(1500)) : 'ok'),
  () => (rnd() < 0.1 ? prettyJson(200 + int(600)) : 'ok'),
  () => (rnd() < 0.05 ? `${prettyJson(300)} trailing` : 'ok'),
]
const OUTPUTS = [
  () => prose(60 + int(200)),
  () => JSON.stringify({ rows: Array.from({ length: 3 + int(8) }, () => ({ a: prose(3), b: int(99) })) }, null, 2),
  () => `   1\tfunction f() {\n   2\t    return ${int(9)}\n   3\t}\n\n\n\n   4\t// ${prose(30)}   `,
  () => `same output ${prose(40)}`.slice(0, 40) + '#'.repeat(220),
  () => 'short',
]
/** a text part: short, or now and then a message of long fenced code */
const text = (short = false) =>
  pick([
    () => prose(1 + int(30)),
    () =>
      !short && rnd() < 0.05
        ? `long:\n\`\`\`ts\n${listing(700)}\n\`\`\`\n${prose(9)}\n\`\`\`json\n${prettyJson(3)}\n\`\`\``
        : 'x',
    () => `see:\n\`\`\`json\n{\n  "k": [1,  2]\n}\n\`\`\`\n${prose(5)}`,
    // a fenced JSON of 64K characters and more (checked by the sliced parse), now and then not JSON
    () =>
      !short && rnd() < 0.03
        ? `data:\n\`\`\`json\n${prettyJson(700 + int(800))}${rnd() < 0.3 ? ',' : ''}\n\`\`\`\n${prose(3)}`
        : 'y',
    () => 'Hello.',
  ])()

/** one step: an assistant message of calls (and text), the user message of their results (short: none over 16K characters) */
function step(calls: number, n: { id: number }, short = false): Message[] {
  const asked: Block[] = []
  const results: Block[] = []
  for (let i = 0; i < calls; i++) {
    const id = `call_${n.id++}`
    const name = pick(['read_file', 'bash', 'search'])
    const args =
      !short && rnd() < 0.03
        ? // arguments whose JSON text the paced view makes in slices (over 1,024 values or 64K characters)
          {
            path: `src/${pick(['a', 'b'])}.ts`,
            rows: Array.from({ length: 200 + int(800) }, (_, i) => ({ i, s: prose(2) })),
          }
        : name === 'read_file'
          ? { path: `src/${pick(['a', 'b', 'c'])}.ts` }
          : name === 'bash'
            ? { command: pick(['cat src/a.ts', 'ls -la', 'npm test']) }
            : { query: prose(3), opts: { deep: rnd() < 0.5 } }
    asked.push({ kind: 'call', id, name, args })
    if (rnd() < 0.2) asked.push({ kind: 'text', text: text(short) })
    const output = pick(short ? OUTPUTS : [...OUTPUTS, ...LONG_OUTPUTS])()
    results.push({ kind: 'result', id, name, text: output, blocks: rnd() < 0.5, many: !short && rnd() < 0.02 })
    if (rnd() < 0.05) results.push({ kind: 'image' })
  }
  return [
    { role: 'assistant', blocks: asked },
    { role: 'user', blocks: results },
  ]
}

function conversation(maxBlocks: number): Message[] {
  const n = { id: 0 }
  const msgs: Message[] = [{ role: 'user', blocks: [{ kind: 'text', text: prose(20) }] }]
  for (let s = 0; s < 3 + int(6); s++) {
    if (rnd() < 0.3)
      msgs.push(
        {
          role: 'assistant',
          blocks: Array.from({ length: 1 + int(maxBlocks) }, () => ({ kind: 'text', text: text() })),
        },
        { role: 'user', blocks: [{ kind: 'text', text: prose(5) }] },
      )
    else msgs.push(...step(1 + int(maxBlocks / 2), n))
  }
  msgs.push({ role: 'assistant', blocks: [{ kind: 'text', text: prose(10) }] })
  msgs.push({ role: 'user', blocks: [{ kind: 'text', text: 'and now?' }] })
  return msgs
}

const IMAGE = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='

/** a result's content: its text, one text block, or (many) 1,500 blocks of its lines */
const resultContent = (b: { text: string; blocks: boolean; many?: boolean }) =>
  b.many
    ? Array.from({ length: 1500 }, (_, i) =>
        i % 50 === 7 ? { type: 'image', source: {} } : { type: 'text', text: `${i}: ${b.text.slice(0, 30)}` },
      )
    : b.blocks
      ? [{ type: 'text', text: b.text }]
      : b.text

function anthropicBody(msgs: Message[]) {
  const block = (b: Block) =>
    b.kind === 'text'
      ? { type: 'text', text: b.text }
      : b.kind === 'call'
        ? { type: 'tool_use', id: b.id, name: b.name, input: b.args }
        : b.kind === 'result'
          ? { type: 'tool_result', tool_use_id: b.id, content: resultContent(b) }
          : { type: 'image', source: { type: 'base64', media_type: 'image/png', data: IMAGE } }
  return {
    model: 'claude-sonnet-4-5',
    max_tokens: 256,
    system: prose(30),
    messages: msgs.map((m) => ({ role: m.role, content: m.blocks.map(block) })),
  }
}

function openaiBody(msgs: Message[]) {
  const out: any[] = [{ role: 'system', content: prose(30) }]
  for (const m of msgs) {
    const results = m.blocks.filter((b) => b.kind === 'result')
    for (const r of results) out.push({ role: 'tool', tool_call_id: r.id, content: resultContent(r) })
    const calls = m.blocks.flatMap((b) => (b.kind === 'call' ? [b] : []))
    const parts = m.blocks.flatMap((b): any[] =>
      b.kind === 'text'
        ? [{ type: 'text', text: b.text }]
        : b.kind === 'image' && m.role === 'user'
          ? [{ type: 'image_url', image_url: { url: `data:image/png;base64,${IMAGE}` } }]
          : [],
    )
    if (!parts.length && !calls.length) continue
    out.push({
      role: m.role,
      content: parts.length ? parts : null,
      ...(calls.length
        ? {
            tool_calls: calls.map((c) => ({
              id: c.id,
              type: 'function',
              function: { name: c.name, arguments: JSON.stringify(c.args, null, rnd() < 0.5 ? 2 : 0) },
            })),
          }
        : {}),
    })
  }
  return { model: 'gpt-4o', messages: out }
}

/** a function's response: its output, or (many) 1,500 keys around it */
const geminiResponse = (b: { text: string; many?: boolean }) =>
  b.many
    ? Object.fromEntries(Array.from({ length: 1500 }, (_, i) => [`k${i}`, i === 700 ? { deep: b.text } : `v${i}`]))
    : { output: b.text, meta: { n: int(9) } }

function geminiBody(msgs: Message[]) {
  const part = (b: Block) =>
    b.kind === 'text'
      ? { text: b.text }
      : b.kind === 'call'
        ? { functionCall: { name: b.name, args: b.args, ...(rnd() < 0.5 ? { id: b.id } : {}) } }
        : b.kind === 'result'
          ? { functionResponse: { name: b.name, id: b.id, response: geminiResponse(b) } }
          : { inlineData: { mimeType: 'image/png', data: IMAGE } }
  return {
    systemInstruction: { parts: [{ text: prose(30) }] },
    contents: msgs.map((m) => ({ role: m.role === 'user' ? 'user' : 'model', parts: m.blocks.map(part) })),
  }
}

function responsesBody(msgs: Message[]) {
  const input: any[] = []
  for (const m of msgs) {
    const content = m.blocks.flatMap((b): any[] =>
      b.kind === 'text'
        ? [{ type: m.role === 'user' ? 'input_text' : 'output_text', text: b.text }]
        : b.kind === 'image' && m.role === 'user'
          ? [{ type: 'input_image', image_url: `data:image/png;base64,${IMAGE}` }]
          : [],
    )
    if (content.length) input.push({ type: 'message', role: m.role, content })
    for (const b of m.blocks) {
      if (b.kind === 'call')
        input.push({ type: 'function_call', call_id: b.id, name: b.name, arguments: JSON.stringify(b.args) })
      if (b.kind === 'result')
        input.push({
          type: 'function_call_output',
          call_id: b.id,
          output: b.many
            ? (resultContent(b) as any[]).map((x: any) =>
                x.type === 'text'
                  ? { ...x, type: 'input_text' }
                  : { type: 'input_image', image_url: `data:image/png;base64,${IMAGE}` },
              )
            : b.text,
        })
    }
  }
  return { model: 'gpt-4o', instructions: prose(30), input }
}

const BODIES: Record<ProtocolName, { model: string; body: (m: Message[]) => any }> = {
  anthropic: { model: 'claude-sonnet-4-5', body: anthropicBody },
  openai: { model: 'gpt-4o', body: openaiBody },
  gemini: { model: 'gemini-2.5-flash', body: geminiBody },
  responses: { model: 'gpt-4o', body: responsesBody },
}

const tokens = createTokenCounter()

/** the core's measure of a body with a counter of its own: a counter's cache changes what a later estimate tokenizes */
const measurer = (protocol: ProtocolName, model: string) => {
  const counter = createTokenCounter()
  return {
    measure: (b: any) => counter.estimateInput(protocols[protocol].parse(b, { pathModel: model }), model),
    count: (s: string) => counter.count(s, model),
  }
}

describe('compression: many blocks in few messages, the paced passes compress as the one-go passes do', () => {
  it.each(Object.keys(BODIES) as ProtocolName[])(
    '%s: random bodies of up to 600 blocks a message, a pacer yielding at almost every step',
    async (protocol) => {
      const { model, body: make } = BODIES[protocol]
      let applied = 0
      let yields = 0
      for (let round = 0; round < 12; round++) {
        const body = make(conversation(600))
        const before = measurer(protocol, model).measure(body)
        const o = resolveOptions(rnd() < 0.3 ? { lossless: { duplicates: true, minify: rnd() < 0.5 } } : {})
        const strategies = { ...o.strategies, summary: { maxChars: 500 + int(30_000) } }
        const target = Math.floor(before * (0.05 + rnd() * 0.6))
        const mustFit = rnd() < 0.5
        const run = async (pace: Parameters<typeof compressBodyPaced>[1]) => {
          const b = structuredClone(body)
          const transcripts: string[] = []
          const result = await compressBodyPaced(
            {
              protocol,
              body: b,
              before,
              target,
              ...measurer(protocol, model),
              strategies,
              mustFit,
              summarise: async (t) => {
                transcripts.push(t)
                return `summary ${createHash('sha256').update(t).digest('hex').slice(0, 12)}`
              },
              journal: createJournal(b),
            },
            pace,
          )
          return { result, body: JSON.stringify(b), transcripts }
        }
        const one = await run(NEVER)
        const pacer = eagerPacer(3)
        const paced = await run(pacer)
        expect(paced, `${protocol} round ${round}`).toEqual(one)
        applied += one.result.applied.length
        yields += pacer.yields
      }
      // the bodies were compressed, and the paced runs gave the loop back
      expect(applied).toBeGreaterThan(12)
      expect(yields).toBeGreaterThan(200)
    },
    120_000,
  )
})

describe('compression: the journal puts a body back as it was when compression fails half way', () => {
  it.each(Object.keys(BODIES) as ProtocolName[])(
    '%s: random bodies, a failure after a random number of strategies',
    async (protocol) => {
      const { model, body: make } = BODIES[protocol]
      let rewritten = 0
      for (let round = 0; round < 12; round++) {
        const body = make(conversation(300))
        const original = JSON.stringify(body)
        const m = measurer(protocol, model)
        const before = m.measure(body)
        const journal = createJournal(body)
        // the failure comes after this many measures (one after each strategy that changed something)
        let left = 1 + int(4)
        let changed = false
        const run = compressBodyPaced(
          {
            protocol,
            body,
            before,
            target: Math.floor(before * 0.1),
            count: m.count,
            measure: (b) => {
              changed ||= JSON.stringify(b) !== original
              if (--left === 0) throw new Error('the measure failed')
              return m.measure(b)
            },
            strategies: {
              ...resolveOptions({ lossless: { duplicates: true, minify: true } }).strategies,
              summary: { maxChars: 2000 },
            },
            mustFit: rnd() < 0.5,
            summarise: async () => 'a summary',
            journal,
          },
          rnd() < 0.5 ? NEVER : eagerPacer(3),
        )
        const failed = await run.then(
          () => false,
          () => true,
        )
        if (failed) journal.restore()
        if (failed) expect(JSON.stringify(body), `${protocol} round ${round}`).toBe(original)
        if (failed && changed) rewritten++
      }
      // the failures came after changes: the journal had something to put back
      expect(rewritten).toBeGreaterThan(3)
    },
    120_000,
  )
})

// --- 1-10 MB of blocks in a few messages: the longest block ------------------------------------------

/** npm run fuzz seed 17107786 case 3660: 110,589 copies of one text block in one assistant message */
const fuzzCase = () => ({
  model: 'claude-sonnet-4-5',
  max_tokens: 128,
  system: [{ type: 'text', text: 'You are terse.', cache_control: { type: 'ephemeral' } }],
  messages: [
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: Array.from({ length: 110_589 }, () => ({ type: 'text', text: 'Hello.' })) },
    { role: 'user', content: 'Again.' },
  ],
})

/** a conversation of a few steps of `calls` tool calls each (their results in one message each) */
function manyCalls(protocol: ProtocolName, calls: number) {
  const n = { id: 0 }
  const msgs: Message[] = [{ role: 'user', blocks: [{ kind: 'text', text: prose(20) }] }]
  for (let s = 0; s < 3; s++) msgs.push(...step(calls, n, true))
  msgs.push({ role: 'assistant', blocks: [{ kind: 'text', text: prose(10) }] })
  msgs.push({ role: 'user', blocks: [{ kind: 'text', text: 'and now?' }] })
  return BODIES[protocol].body(msgs)
}

/** `told: 'chars'`: the body's size is told by the raw body's length alone (a prompt of few tokens) */
const SHAPES: Record<string, { protocol: ProtocolName; body: () => any; mustFit: boolean; told?: 'chars' }> = {
  'Anthropic, one message of 110,589 text blocks (fuzz case 3660)': {
    protocol: 'anthropic',
    body: fuzzCase,
    mustFit: true,
  },
  'Anthropic, 3 steps of 5,000 tool calls, results in one message each': {
    protocol: 'anthropic',
    body: () => manyCalls('anthropic', 5_000),
    mustFit: true,
  },
  'Gemini, 3 steps of 5,000 function calls, responses in one content each': {
    protocol: 'gemini',
    body: () => manyCalls('gemini', 5_000),
    mustFit: true,
  },
  'OpenAI, one message of 100,000 content parts': {
    protocol: 'openai',
    body: () => ({
      model: 'gpt-4o',
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: Array.from({ length: 100_000 }, () => ({ type: 'text', text: text(true) })) },
        { role: 'user', content: 'Again.' },
      ],
    }),
    mustFit: true,
  },
  'Responses, one message of 100,000 content parts': {
    protocol: 'responses',
    body: () => ({
      model: 'gpt-4o',
      input: [
        { role: 'user', content: 'Hi' },
        { role: 'user', content: Array.from({ length: 100_000 }, () => ({ type: 'input_text', text: text(true) })) },
        { role: 'assistant', content: 'ok' },
        { role: 'user', content: 'Again.' },
      ],
    }),
    mustFit: true,
  },
}

/** an Anthropic conversation whose one old tool call has this output (and these arguments) */
const oneCall = (content: unknown, input: unknown = { command: 'cat out.txt' }) => ({
  model: 'claude-sonnet-4-5',
  max_tokens: 128,
  messages: [
    { role: 'user', content: 'start' },
    { role: 'assistant', content: [{ type: 'tool_use', id: 'c1', name: 'bash', input }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'c1', content }] },
    { role: 'assistant', content: 'done' },
    { role: 'user', content: 'and now?' },
  ],
})

/**
 * A body as the proxy has it: parsed from its JSON text, so its strings are flat (JSON.stringify
 * with a gap makes a rope, and its first read flattens it: 35-60 ms for 7 MB, which no request's
 * compression pays)
 */
const parsed = <T>(body: T): T => JSON.parse(JSON.stringify(body))

/** one huge value: a string of megabytes, a result of 100,000 blocks, a tool input of megabytes */
const HUGE: typeof SHAPES = {
  'Anthropic, an old tool output of one 7 MB string (200,000 lines)': {
    protocol: 'anthropic',
    body: () => oneCall(listing(200_000)),
    mustFit: true,
  },
  'Anthropic, an old tool output of one 7 MB string, its size told by the raw body alone': {
    protocol: 'anthropic',
    body: () => oneCall(listing(200_000)),
    mustFit: true,
    told: 'chars',
  },
  'Anthropic, an old tool output of 8 MB of pretty-printed JSON': {
    protocol: 'anthropic',
    body: () => parsed(oneCall(prettyJson(80_000))),
    mustFit: true,
  },
  'Anthropic, an old tool call whose input is 5 MB of JSON (100,000 rows)': {
    protocol: 'anthropic',
    body: () => parsed(oneCall('ok', { rows: JSON.parse(prettyJson(100_000)).rows, path: 'src/a.ts' })),
    mustFit: true,
  },
  'OpenAI, an old tool call whose arguments are 5 MB of JSON text (100,000 rows)': {
    protocol: 'openai',
    body: () => ({
      model: 'gpt-4o',
      messages: [
        { role: 'user', content: 'start' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'c1',
              type: 'function',
              function: {
                name: 'read_file',
                arguments: JSON.stringify({ path: 'src/a.ts', rows: JSON.parse(prettyJson(100_000)).rows }),
              },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'c1', content: 'ok' },
        { role: 'assistant', content: 'done' },
        { role: 'user', content: 'and now?' },
      ],
    }),
    mustFit: true,
  },
  'Anthropic, an old assistant message of 5 MB of fenced JSON and 2 MB of fenced code': {
    protocol: 'anthropic',
    body: () =>
      parsed({
        model: 'claude-sonnet-4-5',
        max_tokens: 128,
        messages: [
          { role: 'user', content: 'start' },
          {
            role: 'assistant',
            content: `here:\n\`\`\`json\n${prettyJson(50_000)}\n\`\`\`\nand\n\`\`\`ts\n${listing(60_000)}\n\`\`\`\n`,
          },
          { role: 'user', content: 'ok' },
          { role: 'assistant', content: 'done' },
          { role: 'user', content: 'and now?' },
        ],
      }),
    mustFit: true,
  },
  'Anthropic, an old tool result of 100,000 text blocks': {
    protocol: 'anthropic',
    body: () => oneCall(Array.from({ length: 100_000 }, (_, i) => ({ type: 'text', text: `line ${i} of the output` }))),
    mustFit: true,
  },
}

describe('1-10 MB in a few messages: compression works in blocks of under BLOCK_MS (HUGE_BLOCK_MS) of CPU', () => {
  it.each(Object.keys({ ...SHAPES, ...HUGE }))(
    '%s',
    async (name) => {
      const { protocol, body: make, mustFit, told } = SHAPES[name] ?? HUGE[name]!
      const bound = SHAPES[name] ? BLOCK_MS : HUGE_BLOCK_MS
      const model = BODIES[protocol].model
      // the first run of each path compiles it; a block over the bound is measured once more, as
      // the fuzzer replays a stall alone: the garbage collector's share varies with the machine's
      // load (a CI run of the whole suite read 166 ms once for the 7 MB string, 47-56 alone)
      // (a huge value's: twice more, its flat copy of megabytes costs 2x more on a loaded machine,
      // 12-16 ms of CPU here alone, 40-60 under a load of 8, while the one-go passes never go under 64)
      let best = Number.POSITIVE_INFINITY
      for (let run = 0; run < (SHAPES[name] ? 3 : 5) && !(best < bound); run++) {
        const body = make()
        const bytes = JSON.stringify(body).length
        // the size of the prompt in tokens tells compressBody the body is large, or (told) the
        // plugin's raw body length: a prompt of few tokens (under 65,536), as if mostly images
        const input = (b: any) => ({
          protocol,
          body: b,
          before: told ? 50_000 : 2_000_000,
          target: told ? 10_000 : 100_000,
          // the core's parse and estimate are not under test here: a fixed size after each strategy
          measure: () => (told ? 40_000 : 1_000_000),
          count: (t: string) => tokens.count(t, model),
          strategies: resolveOptions({}).strategies,
          mustFit,
          journal: createJournal(b),
          ...(told ? { chars: bytes } : {}),
        })
        // the first run (it compiles the paths) is checked against the one-go passes
        const one = run === 0 ? structuredClone(body) : undefined
        const { value, maxMs } = await longestBlock(() => compressBody(input(body)))
        if (one) {
          expect(await compressBodyPaced(input(one), NEVER)).toEqual(value)
          expect(JSON.stringify(body) === JSON.stringify(one), 'the same body as in one go').toBe(true)
          // the garbage of two runs on bodies of megabytes collected before the runs measured
          await new Promise((r) => setTimeout(r, 50))
          continue
        }
        console.log(
          `${name} (${(bytes / 1e6).toFixed(1)} MB): longest block ${maxMs.toFixed(0)} ms (CPU), ${value.applied.join(',') || 'nothing applied'}`,
        )
        expect(bytes).toBeGreaterThan(1_000_000)
        best = Math.min(best, maxMs)
      }
      expect(best).toBeLessThan(bound)
    },
    120_000,
  )
})
