// Shared by the audit suites: sample entries, a log written through the real writer, and the
// edits an attacker would make to stored lines.
import { readFileSync, writeFileSync } from 'node:fs'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  AuditWriter,
  listLogFiles,
  parseLine,
  seal,
  type AuditEntry,
  type AuditStore,
  type Signer,
  type WriterOptions,
} from '../plugins/audit/index.ts'

export function tempDir(prefix = 'agentmesh-audit-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

export function sampleEntry(i: number, over: Partial<AuditEntry> = {}): AuditEntry {
  return {
    v: 1,
    kind: 'request',
    ts: new Date(Date.UTC(2025, 0, 1, 12, 0, i)).toISOString(),
    id: `req-${i}`,
    identity: { team: i % 2 ? 'research' : 'engineering', user: `user${i}`, tool: 'curl' },
    protocol: 'openai',
    operation: 'chat',
    stream: false,
    vendor: 'demo',
    requestedModel: 'gpt-4o-mini',
    model: 'gpt-4o-mini',
    cache: { status: 'miss' },
    tokens: { input: 10 + i, output: 20 + i, cacheRead: 0, cacheWrite: 0 },
    costUsd: (i + 1) / 1e6,
    savedUsd: 0,
    latencyMs: 1.25,
    status: 200,
    promptHash: 'a'.repeat(64),
    ...over,
  }
}

/** Append n sample entries through a writer; close it (final checkpoint) unless `keepOpen`. */
export async function writeEntries(
  store: AuditStore,
  signer: Signer,
  n: number,
  opts: WriterOptions & { keepOpen?: boolean; from?: number } = {},
): Promise<AuditWriter> {
  const w = new AuditWriter(store, signer, { checkpointSeconds: 0, ...opts })
  await w.open()
  for (let i = 0; i < n; i++) {
    const wait = w.append(sampleEntry((opts.from ?? 0) + i))
    if (wait) await wait
  }
  if (opts.keepOpen) await w.flush()
  else await w.close()
  return w
}

/** Lines of the only log file in dir (newline-terminated file). */
export function readSingleLog(dir: string): { path: string; lines: string[] } {
  const files = listLogFiles(dir)
  if (files.length !== 1) throw new Error(`expected one log file in ${dir}, found ${files.length}`)
  const text = readFileSync(files[0]!.path, 'utf8')
  return { path: files[0]!.path, lines: text.split('\n').slice(0, -1) }
}

export function writeLines(path: string, lines: string[]): void {
  writeFileSync(path, lines.map((l) => l + '\n').join(''))
}

export function recordOf(line: string): any {
  const p = parseLine(line)
  if (!p) throw new Error(`not a record: ${line.slice(0, 80)}`)
  return p.record()
}

export function hashOf(line: string): string {
  return parseLine(line)!.hash
}

/** An attacker's re-seal: change a record and recompute its own hash (keeping a signature if any). */
export function reseal(line: string, change: (r: any) => void = () => {}): string {
  const p = parseLine(line)!
  const r: any = p.record()
  change(r)
  const sealed = seal(r, p.sig ? () => p.sig! : undefined)
  return sealed.line
}
