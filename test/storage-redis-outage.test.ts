// Redis dies under load (SIGKILL) and comes back on the same port: requests that need it answer
// 503 storage_unavailable in their own protocol within a second, health and ready say so, the log
// gets one line when the outage starts and one when it ends, and the proxy recovers by itself.
// The suite runs its own redis-server (with an fsync'd append-only file, so the virtual key made
// before the kill survives it) instead of the run's shared one, which other suites are using.
import { spawn, type ChildProcess } from 'node:child_process'
import { rmSync } from 'node:fs'
import { connect, createServer, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { createAgentMesh, type AgentMesh } from '../core/app.ts'
import { isStorageUnavailable } from '../core/errors.ts'
import { createLogger } from '../core/log.ts'
import { createMeshStorage } from '../core/storage.ts'
import { virtualKeys } from '../plugins/keys/index.ts'
import { quota } from '../plugins/quota/index.ts'
import { clearVendorEnv, postJson, presetFeatures, tempDir, until } from './helpers/core-harness.ts'
import { semanticCache, type Embedder } from '../plugins/semantic-cache/index.ts'
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.ts'
import { freePort } from './helpers/ports.ts'

const ADMIN = 'outage-admin-token-0123456789'
const OPENAI_BODY = {
  model: 'gpt-4o-mini',
  max_tokens: 16,
  messages: [{ role: 'user', content: 'hello during an outage' }],
}
const ANTHROPIC_BODY = {
  model: 'claude-haiku-4-5',
  max_tokens: 16,
  messages: [{ role: 'user', content: 'hello during an outage' }],
}

function startRedis(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      'always',
      '--dir',
      dir,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`redis-server did not start on ${port}: ${out}`)), 10_000)
    child.once('error', (err) => reject(err))
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer)
        resolve(child)
      }
    })
  })
}

const killed = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once('exit', () => resolve())
    child.kill('SIGKILL')
  })

interface Outcome {
  status: number
  ms: number
  type?: string
  shape: 'openai' | 'anthropic'
}

describe('redis outage', () => {
  let redis: ChildProcess
  let port: number
  let redisDir: string
  let mock: MockUpstream
  let mesh: AgentMesh
  let url: string
  let closeServer: () => Promise<void>
  let key: string
  const logLines: string[] = []
  const stderrLines: string[] = []
  const restore: Array<() => void> = []

  beforeAll(async () => {
    clearVendorEnv()
    // ioredis reports an 'error' event nobody listens to with console.error
    const write = process.stderr.write.bind(process.stderr)
    process.stderr.write = ((chunk: any, ...rest: any[]) => {
      stderrLines.push(String(chunk))
      return write(chunk, ...rest)
    }) as typeof process.stderr.write
    const consoleError = console.error
    console.error = (...args: unknown[]) => {
      stderrLines.push(args.map(String).join(' '))
    }
    restore.push(
      () => {
        process.stderr.write = write as typeof process.stderr.write
      },
      () => {
        console.error = consoleError
      },
    )

    port = await freePort()
    redisDir = tempDir('agentmesh-outage-redis-')
    redis = await startRedis(port, redisDir)
    mock = await startMockUpstream()
    const plugins = [
      virtualKeys({ adminToken: ADMIN, cacheTtlMs: 0 }),
      quota({ limits: { global: { tokensPerDay: 1e12 } } }),
    ]
    const own = new Set(plugins.map((p) => p.name))
    mesh = await createAgentMesh(
      {
        preset: 'solo',
        dataDir: tempDir(),
        storage: { driver: 'redis', url: `redis://127.0.0.1:${port}`, prefix: 'outage' },
        plugins,
        disable: (await presetFeatures('solo')).filter((n) => !own.has(n)),
        vendors: {
          openai: { baseURL: mock.url, apiKey: 'sk-test-openai-configured' },
          anthropic: { baseURL: mock.url, apiKey: 'sk-ant-test-configured' },
        },
      },
      { logger: createLogger('info', (line) => logLines.push(line)) },
    )
    const server = await mesh.listen({ port: 0, host: '127.0.0.1' })
    url = server.url
    closeServer = server.close
    const res = await postJson(
      `${url}/agentmesh/admin/keys`,
      { team: 'eng', user: 'alice' },
      { authorization: `Bearer ${ADMIN}` },
    )
    expect(res.status).toBe(201)
    key = ((await res.json()) as { key: string }).key
  })

  afterAll(async () => {
    await closeServer?.()
    await mesh?.close()
    await mock?.close()
    if (redis) await killed(redis)
    rmSync(redisDir, { recursive: true, force: true })
    for (const fn of restore) fn()
  })

  /** one request in each protocol's own shape: OpenAI with the virtual key, Anthropic by identity headers */
  async function send(shape: 'openai' | 'anthropic'): Promise<Outcome> {
    const started = performance.now()
    const res =
      shape === 'openai'
        ? await postJson(`${url}/v1/chat/completions`, OPENAI_BODY, { authorization: `Bearer ${key}` })
        : await postJson(`${url}/v1/messages`, ANTHROPIC_BODY, {
            'x-api-key': 'sk-ant-client',
            'x-agentmesh-team': 'eng',
            'x-agentmesh-user': 'bob',
          })
    const body = (await res.json()) as any
    const ms = performance.now() - started
    if (res.status === 200) return { status: 200, ms, shape }
    // each protocol's own error shape, and nothing else
    const type =
      shape === 'openai'
        ? body?.error?.type
        : body?.type === 'error'
          ? body?.error?.type
          : `not an Anthropic error: ${JSON.stringify(body)}`
    return { status: res.status, ms, type, shape }
  }

  /** `workers` loops sending requests until stop() */
  function load(workers: number) {
    const outcomes: Outcome[] = []
    let running = true
    const loops = Array.from({ length: workers }, async (_, i) => {
      while (running) outcomes.push(await send(i % 2 ? 'anthropic' : 'openai'))
    })
    return {
      outcomes,
      stop: async () => {
        running = false
        await Promise.all(loops)
      },
    }
  }

  const getJson = async (path: string) => {
    const res = await fetch(url + path)
    return { status: res.status, body: (await res.json()) as any }
  }
  const outageLines = () => logLines.filter((l) => /warn: storage: /.test(l))

  it('answers 503 storage_unavailable within a second, says so in health and ready, logs once, and recovers by itself', async () => {
    expect((await send('openai')).status).toBe(200)
    expect((await send('anthropic')).status).toBe(200)
    expect((await getJson('/agentmesh/ready')).status).toBe(200)

    const traffic = load(6)
    await new Promise((r) => setTimeout(r, 300))
    await killed(redis)
    // requests in flight at the kill and the ones after it
    await new Promise((r) => setTimeout(r, 1500))
    await traffic.stop()
    const afterKill = traffic.outcomes.filter((o) => o.status !== 200)
    expect(afterKill.length).toBeGreaterThan(0)
    // every failure, in flight at the kill or sent after it, is a quick 503 (it was a 10 s wait
    // for a 500); a 200 is a request that finished before redis went
    for (const o of afterKill) {
      expect(o).toMatchObject({ status: 503, type: 'storage_unavailable' })
      expect(o.ms, `a ${o.shape} request took ${o.ms.toFixed(0)} ms`).toBeLessThan(1000)
    }

    // a steady outage: every request fails fast, in both shapes, and logs nothing more
    const linesBefore = logLines.length
    for (let i = 0; i < 10; i++) {
      for (const shape of ['openai', 'anthropic'] as const) {
        const o = await send(shape)
        expect(o).toMatchObject({ status: 503, type: 'storage_unavailable' })
        expect(o.ms).toBeLessThan(1000)
      }
    }

    const health = await getJson('/agentmesh/health')
    expect(health.status).toBe(200)
    expect(health.body.status).toBe('degraded')
    expect(health.body.checks.storage).toMatchObject({ ok: false })
    expect(health.body.checks.storage.message).toMatch(/redis/)
    expect(health.body.checks.storage.since).toBeGreaterThan(Date.now() - 60_000)
    const ready = await getJson('/agentmesh/ready')
    expect(ready.status).toBe(503)
    expect(ready.body.ready).toBe(false)

    // one line for the outage, however many requests and reconnect attempts it took
    expect(logLines.slice(linesBefore)).toEqual([])
    expect(outageLines(), logLines.join('\n')).toHaveLength(1)
    expect(outageLines()[0]).toMatch(/warn: storage: redis redis:\/\/127\.0\.0\.1:\d+\/? unavailable/)
    // besides it, at most one line per request that was between its quota check and its
    // settlement at the kill (the pipeline logs afterResponse failures): never one per retry
    expect(logLines.length - 1).toBeLessThanOrEqual(1 + 6)
    expect(stderrLines.filter((l) => /ioredis|Unhandled error/i.test(l))).toEqual([])

    redis = await startRedis(port, redisDir)
    const backBy = Date.now() + 5000
    let last: Outcome | undefined
    while (Date.now() < backBy) {
      last = await send('openai')
      if (last.status === 200) break
      await new Promise((r) => setTimeout(r, 50))
    }
    expect(last?.status, 'the proxy did not recover within 5 s of redis coming back').toBe(200)
    expect((await send('anthropic')).status).toBe(200)
    expect((await getJson('/agentmesh/ready')).status).toBe(200)
    expect((await getJson('/agentmesh/health')).body.checks.storage.ok).toBe(true)
    expect(outageLines()).toHaveLength(2)
    expect(outageLines()[1]).toMatch(
      /warn: storage: redis redis:\/\/127\.0\.0\.1:\d+\/? available again after \d+\.\d s/,
    )
    expect(stderrLines.filter((l) => /ioredis|Unhandled error/i.test(l))).toEqual([])
  })
})

/** a TCP relay to redis that can go silent: connections stay open, nothing passes (a partition) */
async function silentableRelay(target: URL) {
  let silent = false
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('error', () => {})
      s.on('close', () => {
        client.destroy()
        upstream.destroy()
      })
    }
    client.on('data', (d) => {
      if (!silent) upstream.write(d)
    })
    upstream.on('data', (d) => {
      if (!silent) client.write(d)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `redis://127.0.0.1:${(server.address() as { port: number }).port}`,
    silence: (on: boolean) => {
      silent = on
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      }),
  }
}

describe('redis that stops answering without closing the connection', () => {
  it('is declared down within about two seconds, calls then fail at once, and it recovers when it answers again', async () => {
    const relay = await silentableRelay(new URL(inject('redisUrl')))
    const lines: string[] = []
    const store = createMeshStorage(
      { driver: 'redis', url: relay.url, prefix: `silent-${process.pid}` },
      tempDir(),
      createLogger('info', (l) => lines.push(l)),
    )
    try {
      await store.storage.setItem('k', 'v')
      expect(await store.storage.getItem('k')).toBe('v')
      relay.silence(true)
      const started = performance.now()
      const err = await store.storage.getItem('k').then(
        () => undefined,
        (e: unknown) => e,
      )
      const waited = performance.now() - started
      expect(isStorageUnavailable(err)).toBe(true)
      // the heartbeat: a PING every 500 ms, given 1.5 s to answer
      expect(waited).toBeLessThan(2600)
      expect(store.health()).toMatchObject({ ok: false, message: expect.stringMatching(/no answer to PING/) })
      const fast = performance.now()
      await expect(store.counters.incr('n', 1)).rejects.toMatchObject({ type: 'storage_unavailable' })
      expect(performance.now() - fast).toBeLessThan(50)

      // reconnecting into the silence: the new connection's handshake goes unanswered, and that
      // connection is dropped too (else it would wait forever and never recover)
      const handshakeBy = Date.now() + 4000
      while (!/handshake/.test(store.health().message ?? '') && Date.now() < handshakeBy)
        await new Promise((r) => setTimeout(r, 20))
      expect(store.health().message).toMatch(/no answer to the connection handshake within 1500 ms/)
      relay.silence(false)
      const end = Date.now() + 5000
      while (!store.health().ok && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
      expect(store.health().ok).toBe(true)
      expect(await store.storage.getItem('k')).toBe('v')
      expect(lines).toHaveLength(2)
      expect(lines[0]).toMatch(/warn: storage: redis .* unavailable \(no answer to PING within 1500 ms\)/)
      expect(lines[1]).toMatch(/available again/)
      await store.storage.removeItem('k')
    } finally {
      await store.close()
      await relay.close()
    }
  })
})

describe('redis that is down when the proxy starts', () => {
  it('fails the first calls quickly, reports it, and connects by itself once redis is up', async () => {
    const port = await freePort()
    const dir = tempDir('agentmesh-late-redis-')
    const lines: string[] = []
    const store = createMeshStorage(
      { driver: 'redis', url: `redis://127.0.0.1:${port}`, prefix: 'late' },
      tempDir(),
      createLogger('info', (l) => lines.push(l)),
    )
    let redis: ChildProcess | undefined
    try {
      const started = performance.now()
      // the first call waits for the first connection attempt, which is refused at once
      await expect(store.storage.getItem('k')).rejects.toMatchObject({
        type: 'storage_unavailable',
        message: expect.stringMatching(/ECONNREFUSED/),
      })
      expect(performance.now() - started).toBeLessThan(1000)
      const fast = performance.now()
      await expect(store.counters.reserve(['q'], 1, [10], [60])).rejects.toMatchObject({ type: 'storage_unavailable' })
      expect(performance.now() - fast).toBeLessThan(50)
      expect(store.health()).toMatchObject({
        ok: false,
        message: expect.stringMatching(/redis .* unavailable: connect ECONNREFUSED/),
      })

      redis = await startRedis(port, dir)
      const end = Date.now() + 3000
      while (!store.health().ok && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
      expect(store.health().ok).toBe(true)
      expect(await store.counters.reserve(['q'], 1, [10], [60])).toEqual({ ok: true, values: [1] })
      expect(lines.map((l) => l.replace(/:\d+/, ':PORT'))).toEqual([
        expect.stringMatching(
          /^\[agentmesh\] warn: storage: redis redis:\/\/127\.0\.0\.1:PORT\/? unavailable \(connect ECONNREFUSED [\d.:]+\); requests that need it answer 503/,
        ),
        expect.stringMatching(/available again after/),
      ])
    } finally {
      await store.close()
      if (redis) await killed(redis)
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('a proxy with the semantic cache, started while redis is down', () => {
  it('starts (the index is rebuilt once redis is up) instead of failing at start', async () => {
    const port = await freePort()
    const dir = tempDir('agentmesh-late-semantic-')
    // a stand-in for the sentence model: letter counts
    const letters: Embedder = {
      id: 'test-letters-16',
      dimension: 16,
      loaded: true,
      async load() {},
      async embed(texts) {
        return texts.map((t) => {
          const v = new Float32Array(16)
          for (let i = 0; i < t.length; i++) v[t.charCodeAt(i) % 16]! += 1
          const norm = Math.hypot(...v) || 1
          return v.map((x) => x / norm)
        })
      },
    }
    const lines: string[] = []
    const mesh = await createAgentMesh(
      {
        preset: 'demo',
        dataDir: tempDir(),
        storage: { driver: 'redis', url: `redis://127.0.0.1:${port}`, prefix: 'late-sem' },
        disable: ['audit', 'quota', 'keys', 'exact-cache'],
        plugins: [semanticCache({ embedder: letters, warmup: false })],
      },
      { logger: createLogger('info', (l) => lines.push(l)) },
    )
    let redis: ChildProcess | undefined
    try {
      expect(lines.some((l) => l.includes('semantic-cache: storage unavailable at start'))).toBe(true)
      redis = await startRedis(port, dir)
      await until(() => lines.some((l) => l.includes('available again')), 'redis reconnect', 5000)
      const res = await mesh.fetch(
        new Request('http://127.0.0.1/v1/chat/completions', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'gpt-4o-mini',
            messages: [{ role: 'user', content: 'hello after the outage' }],
          }),
        }),
      )
      expect(res.status).toBe(200)
    } finally {
      await mesh.close()
      if (redis) await killed(redis)
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
