// The fs counters file when the disk fails: the save runs from a timer, so an error there must not
// crash the process (a full disk crash-looped it). Counting goes on in memory, health reports the
// file, the log says so once, saves are retried less and less often, and it recovers by itself.
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createAgentMesh } from '../core/app.ts'
import { createMemoryCounters } from '../core/counters.ts'
import { createLogger } from '../core/log.ts'
import { quota } from '../plugins/quota/index.ts'
import { clearVendorEnv, postJson, presetFeatures, tempDir, until } from './helpers/core-harness.ts'
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'

const dirs: string[] = []
const newDir = () => {
  const d = tempDir('agentmesh-counters-file-')
  dirs.push(d)
  return d
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

// an exception thrown from the flush timer would reach here (and fail the run)
const uncaught: unknown[] = []
const onUncaught = (err: unknown) => uncaught.push(err)
beforeEach(() => {
  uncaught.length = 0
  process.on('uncaughtException', onUncaught)
})
afterEach(() => {
  process.off('uncaughtException', onUncaught)
})

const enospc = () =>
  Object.assign(new Error("ENOSPC: no space left on device, write '/data/counters.json.1.tmp'"), { code: 'ENOSPC' })

describe('counters file that cannot be written', () => {
  it('keeps counting in memory, reports once, retries with backoff and saves when the disk is back', async () => {
    const file = join(newDir(), 'counters.json')
    const lines: string[] = []
    let full = true
    const attempts: number[] = []
    const started = Date.now()
    const c = createMemoryCounters({
      file,
      flushMs: 10,
      log: createLogger('info', (l) => lines.push(l)),
      write(path, data) {
        attempts.push(Date.now() - started)
        if (full) throw enospc()
        writeFileSync(path, data)
      },
    })
    await c.incr('day:team:eng', 100, 3600)
    await until(() => attempts.length >= 1, 'the first save')
    expect(c.availability!.health()).toMatchObject({
      ok: false,
      message: expect.stringContaining('ENOSPC: no space left on device'),
    })
    // the path is not shown: health is public
    expect(c.availability!.health().message).not.toContain('/data/')
    // the counters work meanwhile
    expect(await c.incr('day:team:eng', 50, 3600)).toBe(150)
    expect(await c.reserve(['day:team:eng'], 10, [1000], [3600])).toEqual({ ok: true, values: [160] })

    // backoff: 10, 20, 40, 80, 160 ms ... so 600 ms hold a handful of attempts, not 60
    await new Promise((r) => setTimeout(r, 600))
    expect(attempts.length).toBeGreaterThanOrEqual(4)
    expect(attempts.length).toBeLessThanOrEqual(8)
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(
      /^\[agentmesh\] warn: storage: counters file .*counters\.json unavailable \(ENOSPC: no space left on device\); quota counters are kept in memory/,
    )

    full = false
    await until(() => c.availability!.health().ok, 'the save after the disk is back', 3000)
    expect(JSON.parse(readFileSync(file, 'utf8')).entries).toEqual([['day:team:eng', 160, expect.any(Number)]])
    expect(lines).toHaveLength(2)
    expect(lines[1]).toMatch(/warn: storage: counters file .* available again after \d+\.\d s/)
    await c.close()
    expect(uncaught).toEqual([])
  })

  it('a save that fails at shutdown is logged, not thrown', async () => {
    const lines: string[] = []
    const c = createMemoryCounters({
      file: join(newDir(), 'counters.json'),
      flushMs: 60_000,
      log: createLogger('info', (l) => lines.push(l)),
      write: () => {
        throw enospc()
      },
    })
    await c.incr('k', 1)
    await expect(c.close()).resolves.toBeUndefined()
    expect(lines.at(-1)).toMatch(/error: counters: could not save .*counters\.json at shutdown/)
  })

  it('the default writer creates counters.json 0600 in a 0700 directory', async () => {
    const dir = join(newDir(), 'nested')
    const file = join(dir, 'counters.json')
    const c = createMemoryCounters({ file, flushMs: 5 })
    await c.incr('k', 1)
    await c.close()
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect(statSync(dir).mode & 0o777).toBe(0o700)
  })
})

describe('a proxy on fs storage whose counters file cannot be written', () => {
  let mock: MockUpstream
  beforeEach(async () => {
    clearVendorEnv()
    mock = await startMockUpstream()
  })
  afterEach(async () => {
    await mock.close()
  })

  it('answers on, reports the counters file in health and ready, and recovers by itself', async () => {
    const dataDir = newDir()
    // the temporary file the save writes is a directory: every save fails (EISDIR) until it goes
    const blocker = join(dataDir, `counters.json.${process.pid}.tmp`)
    mkdirSync(blocker)
    const lines: string[] = []
    const plugins = [quota()]
    const mesh = await createAgentMesh(
      {
        preset: 'solo',
        dataDir,
        storage: { driver: 'fs' },
        plugins,
        disable: (await presetFeatures('solo')).filter((n) => n !== 'quota'),
        vendors: { openai: { baseURL: mock.url, apiKey: 'sk-test-openai-configured' } },
      },
      { logger: createLogger('info', (l) => lines.push(l)) },
    )
    const server = await mesh.listen({ port: 0, host: '127.0.0.1' })
    try {
      const ask = () =>
        postJson(
          `${server.url}/v1/chat/completions`,
          { model: 'gpt-4o-mini', max_tokens: 8, messages: [{ role: 'user', content: 'count me' }] },
          { 'x-agentmesh-team': 'eng' },
        )
      expect((await ask()).status).toBe(200)
      // the first save is due a second after the first count
      let health: any
      const end = Date.now() + 3000
      do {
        health = await (await fetch(`${server.url}/agentmesh/health`)).json()
        if (!health.checks.storage.ok) break
        await new Promise((r) => setTimeout(r, 50))
      } while (Date.now() < end)
      expect(health.status).toBe('degraded')
      expect(health.checks.storage).toMatchObject({
        ok: false,
        message: expect.stringMatching(/counters file .*counters\.json unavailable: EISDIR/),
        since: expect.any(Number),
      })
      expect((await fetch(`${server.url}/agentmesh/ready`)).status).toBe(503)
      // requests are still answered and counted in memory
      expect((await ask()).status).toBe(200)
      expect((await ask()).status).toBe(200)

      rmSync(blocker, { recursive: true })
      const back = Date.now() + 5000
      while (Date.now() < back && (await fetch(`${server.url}/agentmesh/ready`)).status !== 200)
        await new Promise((r) => setTimeout(r, 50))
      expect((await fetch(`${server.url}/agentmesh/ready`)).status).toBe(200)
      // what was counted during the outage is in the file: three requests on the global scope
      const requestsSaved = () => {
        const { entries } = JSON.parse(readFileSync(join(dataDir, 'counters.json'), 'utf8')) as {
          entries: Array<[string, number, number]>
        }
        return Math.max(0, ...entries.filter(([k]) => /^u:.*:req$/.test(k)).map(([, v]) => v))
      }
      await until(() => requestsSaved() === 3, 'the three requests in counters.json', 3000)
      expect(statSync(join(dataDir, 'counters.json')).mode & 0o777).toBe(0o600)
      expect(lines.filter((l) => /storage: counters file/.test(l))).toHaveLength(2)
      expect(uncaught).toEqual([])
    } finally {
      await server.close()
      await mesh.close()
    }
  })
})
