// Export of request entries as JSONL (the stored lines, hashes included, so an auditor can
// cross-check them against a verified log) or CSV (flat columns for a spreadsheet).
import { parseLine } from './chain.ts'
import type { LogSource } from './store.ts'

export interface ExportOptions {
  /** entries at or after this time */
  since?: Date
  /** entries before this time */
  until?: Date
  team?: string
  format?: 'jsonl' | 'csv'
}

export const CSV_COLUMNS = [
  'seq',
  'ts',
  'id',
  'team',
  'user',
  'tool',
  'keyId',
  'protocol',
  'operation',
  'stream',
  'vendor',
  'requestedModel',
  'model',
  'cache',
  'similarity',
  'inputTokens',
  'outputTokens',
  'cacheReadTokens',
  'cacheWriteTokens',
  'tokensEstimated',
  'costUsd',
  'savedUsd',
  'quota',
  'route',
  'latencyMs',
  'status',
  'error',
  'aborted',
  'promptHash',
  'answerHash',
  'hash',
  'session',
] as const

function csvCell(v: unknown): string {
  if (v === undefined || v === null) return ''
  if (typeof v !== 'string') return String(v)
  // a leading = + - @ makes spreadsheets evaluate the cell; team and user names come from clients
  const s = /^[=+\-@\t\r]/.test(v) ? `'${v}` : v
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s
}

export async function exportLog(
  source: LogSource,
  options: ExportOptions,
  write: (line: string) => void,
): Promise<{ exported: number; skipped: number }> {
  const format = options.format ?? 'jsonl'
  const since = options.since?.getTime()
  const until = options.until?.getTime()
  let exported = 0
  let skipped = 0
  if (format === 'csv') write(CSV_COLUMNS.join(','))
  for await (const chunk of source.chunks()) {
    for (const l of chunk) {
      const p = parseLine(l.data)
      if (!p) {
        if (l.data.toString().trim()) skipped++
        continue
      }
      if (p.kind !== 'request') continue
      let r: any
      try {
        r = p.record()
      } catch {
        skipped++
        continue
      }
      const t = Date.parse(r.ts)
      if (since !== undefined && !(t >= since)) continue
      if (until !== undefined && !(t < until)) continue
      if (options.team !== undefined && r.identity?.team !== options.team) continue
      exported++
      if (format === 'jsonl') {
        write(l.data.toString('utf8'))
        continue
      }
      const row: Record<(typeof CSV_COLUMNS)[number], unknown> = {
        seq: p.seq,
        ts: r.ts,
        id: r.id,
        team: r.identity?.team,
        user: r.identity?.user,
        tool: r.identity?.tool,
        keyId: r.identity?.keyId,
        protocol: r.protocol,
        operation: r.operation,
        stream: r.stream,
        vendor: r.vendor,
        requestedModel: r.requestedModel,
        model: r.model,
        cache: r.cache?.status,
        similarity: r.cache?.similarity,
        inputTokens: r.tokens?.input,
        outputTokens: r.tokens?.output,
        cacheReadTokens: r.tokens?.cacheRead,
        cacheWriteTokens: r.tokens?.cacheWrite,
        tokensEstimated: r.tokens?.estimated,
        costUsd: r.costUsd,
        savedUsd: r.savedUsd,
        quota: r.quota,
        route: r.route,
        latencyMs: r.latencyMs,
        status: r.status,
        error: r.error,
        aborted: r.aborted,
        promptHash: r.promptHash,
        answerHash: r.answerHash,
        hash: p.hash,
        session: r.session,
      }
      write(CSV_COLUMNS.map((c) => csvCell(row[c])).join(','))
    }
  }
  return { exported, skipped }
}
