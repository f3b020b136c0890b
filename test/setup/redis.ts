// Starts one real redis-server on a free loopback port for the whole run.
// Tests read it with inject('redisUrl') or process.env.AGENTMESH_TEST_REDIS_URL.
// Also gives the run one temporary root (TMPDIR, inherited by test workers and the CLI processes
// they start), removed at the end, so no run leaves data dirs or audit logs behind in /tmp.
import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import type { TestProject } from 'vitest/node'
import { freePort } from '../helpers/ports.ts'

export const NO_REDIS_SERVER =
  'npm test needs redis-server on PATH: install it (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis), then run npm test again'

function onPath(name: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir || '.', name), constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

/**
 * Without redis-server the run cannot start: say so in one line and stop, before anything else
 * is printed. Runs when this module is imported, so vitest.config.ts can import it to check
 * ahead of vitest's own banner.
 */
export function requireRedisServer(): void {
  if (onPath('redis-server')) return
  process.stderr.write(NO_REDIS_SERVER + '\n')
  process.exit(1)
}

requireRedisServer()

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string
  }
}

let child: ChildProcess | undefined

export default async function setup(project: TestProject) {
  const root = mkdtempSync(join(tmpdir(), 'agentmesh-run-'))
  process.env.TMPDIR = root
  const port = await freePort()
  child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error('redis-server did not start within 10 s (is it installed? apt-get install redis-server)')),
      10_000,
    )
    child!.once('error', (err) => {
      clearTimeout(timer)
      reject(new Error(`cannot start redis-server: ${err.message} (apt-get install redis-server)`))
    })
    child!.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('Ready to accept connections')) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
  const url = `redis://127.0.0.1:${port}`
  process.env.AGENTMESH_TEST_REDIS_URL = url
  project.provide('redisUrl', url)
  return async () => {
    child?.kill('SIGTERM')
    rmSync(root, { recursive: true, force: true })
  }
}
