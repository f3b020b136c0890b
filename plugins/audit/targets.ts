// Where a signed head goes besides the log's own slot: mesh storage (memory, fs or redis, as
// configured) and witnesses that keep it out of reach of whoever can cut the log: a webhook
// POSTed the head, or a command given it on stdin. A head holds no secret.
import { spawn } from 'node:child_process'
import type { Storage } from 'unstorage'
import type { SignedHead } from './head.ts'
import type { HeadTarget } from './publish.ts'

export interface WitnessOptions {
  /** POST the signed head as JSON to this http(s) URL (a non-2xx answer is a failure) */
  url?: string
  /** run this shell command with the signed head as one JSON line on stdin (a non-zero exit is a failure) */
  command?: string
}

/** A witness is told at most once a second; the head it gets is the newest. */
const WITNESS_INTERVAL_MS = 1000

/** The head under `key` in mesh storage; `storage()` is the current mesh's (a config reload swaps it). */
export function storageTarget(storage: () => Storage | undefined, key: string): HeadTarget {
  return {
    name: `storage key ${key}`,
    async write(head) {
      await storage()?.setItem(key, head)
    },
    async read() {
      return (await storage()?.getItem(key)) as object | null | undefined
    },
  }
}

export function webhookTarget(url: string): HeadTarget {
  // the path or query may carry a token: name the origin only
  const name = `witness ${new URL(url).origin}`
  return {
    name,
    minIntervalMs: WITNESS_INTERVAL_MS,
    async write(head: SignedHead) {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(head),
        signal: AbortSignal.timeout(5000),
      })
      await res.body?.cancel()
      if (!res.ok) throw new Error(`HTTP ${res.status}`)
    },
  }
}

export function commandTarget(command: string): HeadTarget {
  return {
    name: 'witness command',
    minIntervalMs: WITNESS_INTERVAL_MS,
    timeoutMs: 10_000,
    write: (head) => runWithStdin(command, JSON.stringify(head) + '\n', 10_000),
  }
}

function runWithStdin(command: string, input: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], {
      stdio: ['pipe', 'ignore', 'pipe'],
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
    })
    let stderr = ''
    child.stderr!.on('data', (d: Buffer) => {
      if (stderr.length < 500) stderr += d.toString()
    })
    // a command that exits without reading stdin: EPIPE is its answer, not ours to throw
    child.stdin!.on('error', () => {})
    child.stdin!.end(input)
    child.once('error', reject)
    child.once('close', (code, signal) => {
      if (code === 0) resolve()
      else
        reject(
          new Error(
            `${signal ? `killed by ${signal}` : `exit code ${code}`}${stderr.trim() ? `: ${stderr.trim().split('\n')[0]!.slice(0, 200)}` : ''}`,
          ),
        )
    })
  })
}
