// Writes the generated coding-agent transcripts (gen-*.json) of bench:compression from a seed, so
// the same files come out on every machine: `node bin/run-ts.mjs bench/data/transcripts/generate.ts`.
// A session is a small fictional repository (TypeScript and Python files, configs) that an agent
// explores with the tools real coding agents have (read a file, grep, run the tests, git, JSON
// reports of npm, eslint and gh, edit), re-reading files it read before, as such agents do; then
// it is written in one of the four protocols. See README.md.
import { writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

type Call = { id: string; name: string; args: Record<string, unknown> }
type Step =
  | { role: 'user'; text: string }
  | { role: 'assistant'; text?: string; calls: Call[] }
  | { role: 'tool'; results: Array<{ id: string; name: string; output: string }> }
type Protocol = 'anthropic' | 'openai' | 'responses' | 'gemini'

function rng(seed: number) {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!,
  }
}
type R = ReturnType<typeof rng>

const NOUNS = [
  'invoice',
  'customer',
  'ledger',
  'payment',
  'refund',
  'session',
  'token',
  'retry',
  'webhook',
  'order',
  'tax',
  'currency',
  'report',
  'batch',
  'schema',
  'cursor',
]
const VERBS = [
  'parse',
  'load',
  'validate',
  'compute',
  'apply',
  'build',
  'fetch',
  'normalize',
  'resolve',
  'emit',
  'merge',
  'render',
]
const cap = (s: string) => s[0]!.toUpperCase() + s.slice(1)
const ident = (r: R) => `${r.pick(VERBS)}${cap(r.pick(NOUNS))}${r.next() < 0.3 ? cap(r.pick(NOUNS)) : ''}`

interface File {
  path: string
  lang: 'ts' | 'py' | 'json' | 'yaml'
  lines: string[]
  fns: string[]
}

function tsFile(r: R, path: string): File {
  const fns: string[] = []
  const lines = [`import { z } from 'zod'`, `import { logger } from '../lib/logger'`, '']
  const n = 3 + r.int(6)
  for (let i = 0; i < n; i++) {
    const fn = ident(r)
    fns.push(fn)
    const noun = r.pick(NOUNS)
    lines.push(
      `export async function ${fn}(${noun}: ${cap(noun)}Input, opts: Options = {}): Promise<${cap(noun)}Result> {`,
    )
    lines.push(`  const limit = opts.limit ?? ${10 + r.int(990)}`)
    lines.push(
      `  if (!${noun}.id) {`,
      `    throw new ValidationError('${noun} id is required', { code: 'E_${noun.toUpperCase()}_${100 + r.int(900)}' })`,
      '  }',
    )
    for (let k = 0; k < 2 + r.int(6); k++) {
      lines.push(
        `  for (const item of ${noun}.items ?? []) {`,
        `    if (item.amount > limit) {`,
        `      logger.warn('${fn}: amount over limit', { id: item.id, amount: item.amount })`,
        '      continue',
        '    }',
        `    total += round(item.amount * ${(1 + r.next()).toFixed(2)}, ${r.int(4)})`,
        '  }',
      )
    }
    lines.push(`  return { id: ${noun}.id, total, count: ${noun}.items?.length ?? 0 }`, '}', '')
  }
  return { path, lang: 'ts', lines, fns }
}

function pyFile(r: R, path: string): File {
  const fns: string[] = []
  const lines = ['import logging', 'from dataclasses import dataclass', '', 'log = logging.getLogger(__name__)', '', '']
  for (let i = 0; i < 3 + r.int(5); i++) {
    const fn = `${r.pick(VERBS)}_${r.pick(NOUNS)}`
    fns.push(fn)
    lines.push(
      `def ${fn}(rows, batch_size=${50 + r.int(950)}):`,
      `    """${cap(r.pick(VERBS))} the ${r.pick(NOUNS)} rows in batches."""`,
      '    out = []',
    )
    for (let k = 0; k < 2 + r.int(5); k++)
      lines.push(
        '    for row in rows:',
        `        if row.get("${r.pick(NOUNS)}_id") is None:`,
        `            log.warning("skipping row %s", row)`,
        '            continue',
        `        out.append(row["amount"] * ${(r.next() * 3).toFixed(3)})`,
      )
    lines.push('    return out', '', '')
  }
  return { path, lang: 'py', lines, fns }
}

function configFile(r: R, path: string): File {
  const obj = {
    name: `@acme/${r.pick(NOUNS)}-service`,
    version: `${1 + r.int(3)}.${r.int(20)}.${r.int(10)}`,
    scripts: { test: 'vitest run', build: 'tsc -p .', lint: 'eslint src' },
    dependencies: Object.fromEntries(
      ['zod', 'pino', 'undici', 'date-fns', 'decimal.js'].map((d) => [d, `^${1 + r.int(4)}.${r.int(30)}.${r.int(9)}`]),
    ),
  }
  return { path, lang: 'json', lines: JSON.stringify(obj, null, 2).split('\n'), fns: [] }
}

/** Claude Code's Read output: right-aligned line numbers, a tab, the line */
const numbered = (lines: string[]) => lines.map((l, i) => `${String(i + 1).padStart(6)}\t${l}`).join('\n')

function testRun(r: R, files: File[], failing: { file: File; fn: string; line: number }): string {
  const out = [`> vitest run`, '', ` RUN  v3.2.${r.int(9)} /home/dev/repo`, '']
  for (const f of files.filter((x) => x.lang === 'ts'))
    out.push(
      ` ✓ ${f.path.replace('src/', 'test/').replace('.ts', '.test.ts')} (${3 + r.int(20)} tests) ${10 + r.int(900)}ms`,
    )
  out.push(
    ` ❯ ${failing.file.path.replace('src/', 'test/').replace('.ts', '.test.ts')} (${4 + r.int(9)} tests | 1 failed)`,
    '',
    `⎯⎯⎯ Failed Tests 1 ⎯⎯⎯`,
    '',
    ` FAIL  ${failing.fn} > rounds the total to ${r.int(4)} places`,
  )
  out.push(
    `AssertionError: expected ${(r.next() * 1000).toFixed(2)} to be ${(r.next() * 1000).toFixed(2)} // Object.is equality`,
    '',
    ` ❯ ${failing.file.path}:${failing.line}:${5 + r.int(30)}`,
  )
  for (let i = 0; i < 12; i++)
    out.push(
      `    at ${r.pick(['processTicksAndRejections', 'runTest', 'runSuite', 'Object.<anonymous>', 'async Promise.all'])} (node:internal/process/task_queues:${95 + r.int(10)}:${5 + r.int(9)})`,
    )
  out.push(
    '',
    ` Test Files  1 failed | ${files.length} passed (${files.length + 1})`,
    `      Tests  1 failed | ${40 + r.int(200)} passed (${41 + r.int(200)})`,
    `   Duration  ${(1 + r.next() * 9).toFixed(2)}s`,
  )
  return out.join('\n')
}

function grep(files: File[], pattern: string): string {
  const hits: string[] = []
  for (const f of files)
    f.lines.forEach((l, i) => {
      if (l.includes(pattern) && hits.length < 40) hits.push(`${f.path}:${i + 1}:${l}`)
    })
  return hits.length ? hits.join('\n') : `No matches found for "${pattern}"`
}

function jsonTool(r: R, files: File[]): { command: string; output: string } {
  const kind = r.int(3)
  if (kind === 0) {
    const deps = Object.fromEntries(
      ['zod', 'pino', 'undici', 'date-fns', 'decimal.js', 'vitest', 'typescript'].map((d) => [
        d,
        {
          version: `${1 + r.int(4)}.${r.int(30)}.${r.int(9)}`,
          resolved: `https://registry.npmjs.org/${d}/-/${d}-${r.int(9)}.tgz`,
          overridden: false,
        },
      ]),
    )
    return {
      command: 'npm ls --json --depth=0',
      output: JSON.stringify({ name: 'repo', version: '1.0.0', dependencies: deps }, null, 2),
    }
  }
  if (kind === 1) {
    const results = files
      .filter((f) => f.lang === 'ts')
      .slice(0, 4)
      .map((f) => ({
        filePath: `/home/dev/repo/${f.path}`,
        messages: Array.from({ length: 1 + r.int(4) }, () => ({
          ruleId: r.pick(['no-unused-vars', '@typescript-eslint/no-explicit-any', 'prefer-const', 'eqeqeq']),
          severity: 1 + r.int(2),
          message: 'Unexpected any. Specify a different type.',
          line: 1 + r.int(f.lines.length),
          column: 1 + r.int(40),
        })),
        errorCount: r.int(3),
        warningCount: r.int(5),
      }))
    return { command: 'npx eslint src -f json', output: JSON.stringify(results, null, 2) }
  }
  const pr = {
    number: 1000 + r.int(9000),
    title: `Fix ${ident(r)} rounding`,
    state: 'OPEN',
    author: { login: 'dev' },
    files: files.slice(0, 5).map((f) => ({ path: f.path, additions: r.int(80), deletions: r.int(40) })),
    reviews: [
      {
        author: { login: 'reviewer' },
        state: 'CHANGES_REQUESTED',
        body: `Please keep the ${r.pick(NOUNS)} limit at ${r.int(1000)}.`,
      },
    ],
  }
  return { command: 'gh pr view --json number,title,state,author,files,reviews', output: JSON.stringify(pr, null, 2) }
}

/** One session: the agent's steps and the final question naming identifiers, paths and numbers. */
function session(seed: number): { steps: Step[]; title: string } {
  const r = rng(seed)
  const dirs = ['src/billing', 'src/api', 'src/lib', 'src/jobs']
  const files: File[] = []
  for (let i = 0; i < 6 + r.int(5); i++)
    files.push(tsFile(r, `${r.pick(dirs)}/${r.pick(NOUNS)}${cap(r.pick(NOUNS))}.ts`))
  for (let i = 0; i < 2 + r.int(2); i++) files.push(pyFile(r, `etl/${r.pick(NOUNS)}_${r.pick(VERBS)}.py`))
  files.push(configFile(r, 'package.json'))
  const failingFile = r.pick(files.filter((f) => f.lang === 'ts'))
  const failing = { file: failingFile, fn: r.pick(failingFile.fns), line: 5 + r.int(failingFile.lines.length - 5) }
  const task = r.pick([
    `The CI run fails on ${failing.file.path.replace('src/', 'test/').replace('.ts', '.test.ts')}. Find out why and fix it.`,
    `After bumping zod the test suite fails. Please investigate.`,
    `Rounding in ${failing.fn} looks wrong for large invoices; can you check?`,
  ])
  const steps: Step[] = [{ role: 'user', text: task }]
  let n = 0
  const id = () => `call_${seed}_${n++}`
  const read: File[] = []
  const count = 14 + r.int(30)
  for (let s = 0; s < count; s++) {
    const roll = r.next()
    let call: Call
    let output: string
    if (roll < 0.38 || read.length === 0) {
      // re-reading a file read before is common (after an edit, or to look again)
      const f = read.length && r.next() < 0.3 ? r.pick(read) : r.pick(files)
      read.push(f)
      call = { id: id(), name: 'Read', args: { file_path: f.path } }
      output = numbered(f.lines)
    } else if (roll < 0.52) {
      const pattern = r.pick([failing.fn, r.pick(NOUNS), 'logger.warn', 'ValidationError', 'round('])
      call = { id: id(), name: 'Grep', args: { pattern, path: 'src' } }
      output = grep(files, pattern)
    } else if (roll < 0.68) {
      call = { id: id(), name: 'Bash', args: { command: 'npm test' } }
      output = testRun(r, files, failing)
    } else if (roll < 0.8) {
      const j = jsonTool(r, files)
      call = { id: id(), name: 'Bash', args: { command: j.command } }
      output = j.output
    } else if (roll < 0.9) {
      call = { id: id(), name: 'Bash', args: { command: r.pick(['git status', 'git diff --stat', 'ls -la src']) } }
      output = files
        .map((f) => ` M ${f.path} | ${r.int(40)} ${'+'.repeat(r.int(12))}${'-'.repeat(r.int(6))}`)
        .join('\n')
    } else {
      const f = r.pick(files.filter((x) => x.lang === 'ts'))
      const line = 3 + r.int(f.lines.length - 3)
      const old = f.lines[line]!
      f.lines[line] = old.replace(/\d+/, String(r.int(1000)))
      call = {
        id: id(),
        name: 'Edit',
        args: { file_path: f.path, old_string: old.trim(), new_string: f.lines[line]!.trim() },
      }
      output = `The file ${f.path} has been updated. Here's the result of running \`cat -n\` on a snippet:\n${numbered(f.lines.slice(Math.max(0, line - 4), line + 4))}`
    }
    const thought =
      r.next() < 0.5 ? `Let me ${call.name === 'Read' ? 'look at' : 'run'} ${JSON.stringify(call.args)}.` : undefined
    steps.push({ role: 'assistant', text: thought, calls: [call] })
    steps.push({ role: 'tool', results: [{ id: call.id, name: call.name, output }] })
    if (r.next() < 0.08 && s < count - 3) {
      steps.push({
        role: 'assistant',
        text: `So far: ${failing.fn} in ${failing.file.path} rounds before summing. Shall I change it?`,
        calls: [],
      })
      steps.push({
        role: 'user',
        text: r.pick(['Yes, go ahead.', 'Check the Python ETL side first.', 'Also look at the eslint warnings.']),
      })
    }
  }
  steps.push({
    role: 'assistant',
    text: `The failure comes from ${failing.fn} (${failing.file.path}:${failing.line}).`,
    calls: [],
  })
  const other = r.pick(files.filter((f) => f.fns.length))
  steps.push({
    role: 'user',
    text: `Change \`${failing.fn}\` in ${failing.file.path} so the rounding happens after the sum (line ${failing.line}), keep \`${other.fns[0]}\` in ${other.path} as it is, set the limit to ${100 + r.int(900)} and run npm test again.`,
  })
  return { steps, title: task }
}

// --- the four protocols ---------------------------------------------------------------------------

const SYSTEM =
  'You are an interactive coding agent working in /home/dev/repo. Use the tools to read, search and edit files and to run commands. Keep answers short; never commit without being asked.'
const TOOL_DEFS = [
  {
    name: 'Read',
    description: 'Read a file from the local filesystem.',
    schema: { type: 'object', properties: { file_path: { type: 'string' } }, required: ['file_path'] },
  },
  {
    name: 'Grep',
    description: 'Search file contents with a regular expression.',
    schema: {
      type: 'object',
      properties: { pattern: { type: 'string' }, path: { type: 'string' } },
      required: ['pattern'],
    },
  },
  {
    name: 'Bash',
    description: 'Run a shell command.',
    schema: { type: 'object', properties: { command: { type: 'string' } }, required: ['command'] },
  },
  {
    name: 'Edit',
    description: 'Replace a string in a file.',
    schema: {
      type: 'object',
      properties: { file_path: { type: 'string' }, old_string: { type: 'string' }, new_string: { type: 'string' } },
      required: ['file_path', 'old_string', 'new_string'],
    },
  },
]

function toAnthropic(steps: Step[]): any {
  const messages: any[] = []
  for (const s of steps) {
    if (s.role === 'user') messages.push({ role: 'user', content: s.text })
    else if (s.role === 'assistant')
      messages.push({
        role: 'assistant',
        content: [
          ...(s.text ? [{ type: 'text', text: s.text }] : []),
          ...s.calls.map((c) => ({ type: 'tool_use', id: c.id, name: c.name, input: c.args })),
        ],
      })
    else
      messages.push({
        role: 'user',
        content: s.results.map((x) => ({ type: 'tool_result', tool_use_id: x.id, content: x.output })),
      })
  }
  return {
    model: 'claude-sonnet-4-5',
    max_tokens: 8192,
    system: SYSTEM,
    tools: TOOL_DEFS.map((t) => ({ name: t.name, description: t.description, input_schema: t.schema })),
    messages,
  }
}

function toOpenAI(steps: Step[]): any {
  const messages: any[] = [{ role: 'system', content: SYSTEM }]
  for (const s of steps) {
    if (s.role === 'user') messages.push({ role: 'user', content: s.text })
    else if (s.role === 'assistant')
      messages.push({
        role: 'assistant',
        content: s.text ?? null,
        ...(s.calls.length
          ? {
              tool_calls: s.calls.map((c) => ({
                id: c.id,
                type: 'function',
                function: { name: c.name, arguments: JSON.stringify(c.args) },
              })),
            }
          : {}),
      })
    else for (const x of s.results) messages.push({ role: 'tool', tool_call_id: x.id, content: x.output })
  }
  return {
    model: 'gpt-4.1',
    max_tokens: 4096,
    tools: TOOL_DEFS.map((t) => ({
      type: 'function',
      function: { name: t.name, description: t.description, parameters: t.schema },
    })),
    messages,
  }
}

function toResponses(steps: Step[]): any {
  const input: any[] = []
  for (const s of steps) {
    if (s.role === 'user') input.push({ role: 'user', content: [{ type: 'input_text', text: s.text }] })
    else if (s.role === 'assistant') {
      if (s.text) input.push({ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: s.text }] })
      for (const c of s.calls)
        input.push({ type: 'function_call', call_id: c.id, name: c.name, arguments: JSON.stringify(c.args) })
    } else for (const x of s.results) input.push({ type: 'function_call_output', call_id: x.id, output: x.output })
  }
  return {
    model: 'gpt-5-codex',
    instructions: SYSTEM,
    max_output_tokens: 8192,
    tools: TOOL_DEFS.map((t) => ({ type: 'function', name: t.name, description: t.description, parameters: t.schema })),
    input,
  }
}

function toGemini(steps: Step[]): any {
  const contents: any[] = []
  for (const s of steps) {
    if (s.role === 'user') contents.push({ role: 'user', parts: [{ text: s.text }] })
    else if (s.role === 'assistant')
      contents.push({
        role: 'model',
        parts: [
          ...(s.text ? [{ text: s.text }] : []),
          ...s.calls.map((c) => ({ functionCall: { name: c.name, args: c.args } })),
        ],
      })
    else
      contents.push({
        role: 'user',
        parts: s.results.map((x) => ({ functionResponse: { name: x.name, response: { output: x.output } } })),
      })
  }
  return {
    systemInstruction: { parts: [{ text: SYSTEM }] },
    tools: [
      {
        functionDeclarations: TOOL_DEFS.map((t) => ({
          name: t.name,
          description: t.description,
          parameters: t.schema,
        })),
      },
    ],
    generationConfig: { maxOutputTokens: 8192 },
    contents,
  }
}

const writers: Record<Protocol, (s: Step[]) => any> = {
  anthropic: toAnthropic,
  openai: toOpenAI,
  responses: toResponses,
  gemini: toGemini,
}
const PROTOCOLS: Protocol[] = ['anthropic', 'openai', 'responses', 'gemini']

const GENERATED = 20

{
  const dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < GENERATED; i++) {
    const seed = 2100 + i
    const protocol = PROTOCOLS[i % PROTOCOLS.length]!
    const { steps, title } = session(seed)
    const body = writers[protocol](steps)
    const model = protocol === 'gemini' ? 'gemini-2.5-pro' : body.model
    const file = { source: `generated: bench/data/transcripts/generate.ts seed ${seed}`, title, protocol, model, body }
    writeFileSync(join(dir, `gen-${String(i + 1).padStart(2, '0')}-${protocol}.json`), `${JSON.stringify(file)}\n`)
  }
  console.log(`wrote ${GENERATED} transcripts to ${dir}`)
}
