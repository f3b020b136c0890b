// Issue 11, defect 2: one long prompt froze the proxy (the semantic cache embedded all of it on
// the event loop: 100 KB blocked /agentmesh/health for 27 s, 9 MB for minutes). A real proxy with
// the semantic cache gets a flood of long prompts while a client on another thread probes
// /agentmesh/health every 20 ms; the event loop is watched in-process. Also: a prompt cut to its
// head and tail is never served the answer of one that differs in the middle, and a crashed or
// stuck embedding worker makes a miss, not a hung request.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { Worker } from 'node:worker_threads'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { semanticCache, workerEmbedder, type SemanticCachePlugin } from '../plugins/semantic-cache/index.ts'
import type { MeshContext } from '../core/types.ts'
import { postJson, startProxy, type Proxy } from './helpers/core-harness.ts'

// generous against a busy 2-core machine; the target is 50 ms (the measured maximum is printed)
const STALL_BOUND_MS = 200

interface Shot {
  chars: number
  seed: number
}
interface PhaseResult {
  answers: Array<{ chars: number; status: number; cache: string; ms: number }>
  probes: number
  probeMaxMs: number
  probeP99Ms: number
}

/**
 * The load generator runs on its own thread: building and sending multi-megabyte bodies from the
 * proxy's thread would be event-loop time of its own, and a probe sent from a blocked thread
 * cannot see the block. Prompts are made there from (chars, seed), the same text for the same pair.
 */
const CLIENT = `
const { parentPort, workerData } = require('node:worker_threads')
const http = require('node:http')
const url = new URL(workerData.url)
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
const WORDS = 'the service returns an error when the nightly export job runs after the cache was cleared and we need to find out which deploy changed the retry policy for the payments queue in region four'.split(' ')
function prompt(chars, seed) {
  let s = seed >>> 0, out = []
  let n = 0
  while (n < chars) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0
    const w = WORDS[s % WORDS.length] + ((s >> 8) % 17 === 0 ? '.\\n' : ' ')
    out.push(w)
    n += w.length
  }
  return 'Prompt ' + seed + ': ' + out.join('').slice(0, chars)
}
function request(method, path, body) {
  return new Promise((resolve) => {
    const t = performance.now()
    // prompts on connections of their own: a kept-alive socket the server has just closed would fail them
    const req = http.request({ host: url.hostname, port: url.port, path, method, agent: body ? false : agent, headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-agentmesh-team': 'eng' } : {} }, (res) => {
      res.on('data', () => {})
      res.on('end', () => resolve({ status: res.statusCode, cache: String(res.headers['x-agentmesh-cache']), ms: performance.now() - t }))
    })
    req.on('error', (err) => resolve({ status: 0, cache: 'error: ' + err.message, ms: performance.now() - t }))
    req.end(body)
  })
}
parentPort.on('message', async (shots) => {
  let probing = true
  const lat = []
  const prober = (async () => {
    while (probing) {
      lat.push((await request('GET', '/agentmesh/health')).ms)
      await new Promise((r) => setTimeout(r, 20))
    }
  })()
  // all in flight together, started 20 ms apart as independent clients would be
  const answers = await Promise.all(shots.map(async (s, i) => {
    const body = JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 1024, messages: [{ role: 'user', content: prompt(s.chars, s.seed) }] })
    await new Promise((r) => setTimeout(r, 20 * i))
    return { chars: s.chars, ...(await request('POST', '/v1/messages', body)) }
  }))
  // a little more probing after the last answer: stores run off the response path
  await new Promise((r) => setTimeout(r, 300))
  probing = false
  await prober
  lat.sort((a, b) => a - b)
  parentPort.postMessage({ answers, probes: lat.length, probeMaxMs: lat[lat.length - 1] ?? 0, probeP99Ms: lat[Math.floor(lat.length * 0.99)] ?? 0 })
})
`

/** Event-loop delay on this thread, two ways: Node's histogram misses a stall made of one long
 * chain of promise callbacks (tfjs's), which a 10 ms interval's late ticks still show. */
function watchLoop() {
  const h = monitorEventLoopDelay({ resolution: 10 })
  h.enable()
  let last = performance.now()
  let maxGap = 0
  const iv = setInterval(() => {
    const now = performance.now()
    maxGap = Math.max(maxGap, now - last - 10)
    last = now
  }, 10)
  return () => {
    clearInterval(iv)
    h.disable()
    return { histogramMaxMs: h.max / 1e6, intervalMaxLateMs: maxGap }
  }
}

describe('long prompts and the semantic cache', () => {
  let proxy: Proxy
  let plugin: SemanticCachePlugin
  let client: Worker
  // event-loop time of the plugin's hooks up to their first await, per prompt length
  const hookMs: Array<{ chars: number; ms: number }> = []
  const phase = (shots: Shot[]) =>
    new Promise<PhaseResult>((resolve, reject) => {
      client.once('message', resolve)
      client.once('error', reject)
      client.postMessage(shots)
    })

  beforeAll(async () => {
    plugin = semanticCache()
    for (const name of ['cacheLookup', 'afterResponse'] as const) {
      const fn = plugin.hooks![name]!
      plugin.hooks![name] = (ctx) => {
        const t = performance.now()
        const r = fn(ctx)
        hookMs.push({ chars: ctx.prompt.messages.at(-1)?.text.length ?? 0, ms: performance.now() - t })
        return r
      }
    }
    proxy = await startProxy({ plugins: [plugin] })
    await plugin.semantic.embedder.load()
    client = new Worker(CLIENT, { eval: true, workerData: { url: proxy.url } })
    // first requests load the tokenizer and warm the code paths up: not what is measured here
    await phase([{ chars: 200, seed: 0 }])
    await plugin.semantic.flush()
  })
  afterAll(async () => {
    await client?.terminate()
    await proxy?.close()
  })

  // The flood's requests start 20 ms apart: bodies that all complete in one turn of the loop
  // would measure the core's own work per long prompt (parse, bounded token estimate, the demo
  // vendor: ~40 ms per 100 KB prompt here) nine times over in one go, with no semantic cache at
  // all (probes up to 0.3 s measured that way); that is the core's to bound, not this plugin's.
  it('one 100 KB prompt, then a flood of them, never hold the event loop, and every prompt is answered', async () => {
    const stop = watchLoop()
    const one = await phase([{ chars: 100_000, seed: 1 }])
    const flood = await phase([
      ...[2, 3, 4, 5, 6, 7].map((seed) => ({ chars: 100_000, seed })),
      ...[8, 9, 10].map((seed) => ({ chars: 30_000, seed })),
    ])
    await plugin.semantic.flush()
    const loop = stop()
    console.log(
      `100 KB prompts: health probe max ${one.probeMaxMs.toFixed(1)} ms (one prompt), ${flood.probeMaxMs.toFixed(1)} ms (flood of 9, p99 ${flood.probeP99Ms.toFixed(1)} ms, ${flood.probes} probes); event loop: histogram max ${loop.histogramMaxMs.toFixed(1)} ms, 10 ms interval late by at most ${loop.intervalMaxLateMs.toFixed(1)} ms; answered in ${flood.answers.map((a) => a.ms.toFixed(0)).join(', ')} ms`,
    )
    for (const a of [...one.answers, ...flood.answers]) expect(a).toMatchObject({ status: 200, cache: 'bypass' })
    expect(one.probeMaxMs).toBeLessThan(STALL_BOUND_MS)
    expect(flood.probeMaxMs).toBeLessThan(STALL_BOUND_MS)
    expect(loop.histogramMaxMs).toBeLessThan(STALL_BOUND_MS)
    expect(loop.intervalMaxLateMs).toBeLessThan(STALL_BOUND_MS)
    // stored, as windows of at most 4,096 characters
    const keys = await proxy.instance.mesh.storage.getKeys('semantic')
    expect(keys.length).toBe(11)
    for (const k of keys)
      expect(((await proxy.instance.mesh.storage.getItem(k)) as any).text.length).toBeLessThanOrEqual(4096)
  }, 120_000)

  it('multi-megabyte prompts skip the semantic cache at a cost that does not grow with them, and are answered', async () => {
    const before = hookMs.length
    const sizes = [2_000_000, 4_000_000]
    const probeMax: number[] = []
    for (const [i, chars] of sizes.entries()) {
      const r = await phase([{ chars, seed: 20 + i }])
      expect(r.answers[0]).toMatchObject({ status: 200, cache: 'bypass' })
      probeMax.push(r.probeMaxMs)
    }
    await plugin.semantic.flush()
    const own = hookMs.slice(before).filter((h) => h.chars >= 2_000_000)
    console.log(
      `multi-MB prompts: semantic cache hooks ${own.map((h) => `${(h.chars / 1e6).toFixed(0)} MB ${h.ms.toFixed(2)} ms`).join(', ')}; health probe max ${probeMax.map((m, i) => `${sizes[i]! / 1e6} MB ${m.toFixed(0)} ms`).join(', ')}`,
    )
    expect(own.length).toBe(2 * sizes.length)
    for (const h of own) expect(h.ms).toBeLessThan(5)
    // not stored
    expect((await proxy.instance.mesh.storage.getKeys('semantic')).length).toBe(11)
    // The proxy's own handling of such a body (JSON parse, token estimate, the demo vendor, and
    // the collections of the garbage they leave) holds the loop for 0.15-0.55 s per 2 MB on this
    // machine with no semantic cache at all: a defect of its own, outside this plugin. This bound
    // only keeps the one this plugin had (minutes) from coming back.
    for (const m of probeMax) expect(m).toBeLessThan(3000)
  }, 120_000)

  it('a 9 MB prompt costs the semantic cache hooks what a short one does, and ctx.meta says why it was skipped', async () => {
    const text = 'why does the nightly export fail? '.repeat(270_000)
    const ctx = {
      id: 'nine-mb',
      operation: 'chat',
      response: undefined,
      status: 200,
      cache: { status: 'bypass' },
      meta: {},
      mesh: proxy.instance.mesh,
      request: { headers: new Headers() },
      identity: { team: 'eng', user: 'u', tool: 't', source: 'header' },
      prompt: {
        model: 'claude-haiku-4-5',
        system: '',
        messages: [{ role: 'user', text }],
        params: {},
        stream: false,
        hasImages: false,
      },
      answer: {
        id: 'a',
        model: 'claude-haiku-4-5',
        text: 'ok',
        toolCalls: [],
        stopReason: 'stop',
        usage: { inputTokens: 1, outputTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0 },
      },
    } as unknown as MeshContext
    const t = performance.now()
    await plugin.hooks!.cacheLookup!(ctx)
    await plugin.hooks!.afterResponse!(ctx)
    const ms = performance.now() - t
    console.log(`9 MB prompt: semantic cache hooks ${ms.toFixed(2)} ms`)
    expect(text.length).toBeGreaterThan(9_000_000)
    expect(ms).toBeLessThan(5)
    expect(ctx.meta['semantic-cache']).toEqual({ skipped: 'prompt longer than maxPromptChars (200000)' })
    await plugin.semantic.flush()
    expect((await proxy.instance.mesh.storage.getKeys('semantic')).length).toBe(11)
  })

  it('a long prompt asked again is a semantic hit; one over maxPromptChars is not looked up', async () => {
    const again = await phase([
      { chars: 100_000, seed: 3 },
      { chars: 30_000, seed: 9 },
      { chars: 2_000_000, seed: 20 },
    ])
    expect(again.answers.map((a) => [a.status, a.cache])).toEqual([
      [200, 'semantic'],
      [200, 'semantic'],
      [200, 'bypass'],
    ])
  }, 60_000)

  it('a prompt cut to its head and tail is never served the answer of one that differs in the middle', async () => {
    const filler = (word: string) => Array.from({ length: 2500 }, (_, i) => `${word} ${i}`).join(' ')
    const ask = async (middle: string) => {
      const content = `Please summarise this incident report.\n${filler('alpha')}\n${middle}\n${filler('omega')}\nWhat was the root cause?`
      const res = await postJson(
        `${proxy.url}/v1/messages`,
        { model: 'claude-haiku-4-5', max_tokens: 1024, messages: [{ role: 'user', content }] },
        { 'x-agentmesh-team': 'middle' },
      )
      await res.text()
      await plugin.semantic.flush()
      return res.headers.get('x-agentmesh-cache')
    }
    expect(await ask('The database failover was triggered by a full disk.')).toBe('bypass')
    expect(await ask('The load balancer dropped connections after a certificate expired.')).toBe('bypass')
    // control: the same long prompt again is a hit
    expect(await ask('The database failover was triggered by a full disk.')).toBe('semantic')
  })

  it('validates maxPromptChars and lookupTimeoutMs', () => {
    expect(() => semanticCache({ maxPromptChars: 0 })).toThrow(/maxPromptChars must be a positive integer, got 0/)
    expect(() => semanticCache({ maxPromptChars: 1.5 })).toThrow(/maxPromptChars must be a positive integer/)
    expect(() => semanticCache({ maxPromptChars: '100' as any })).toThrow(
      /maxPromptChars must be a positive integer, got "100"/,
    )
    expect(() => semanticCache({ lookupTimeoutMs: 0 })).toThrow(
      /lookupTimeoutMs must be a positive number of milliseconds, got 0/,
    )
    expect(() => semanticCache({ lookupTimeoutMs: 'fast' as any })).toThrow(
      /lookupTimeoutMs must be a positive number of milliseconds, got "fast"/,
    )
  })
})

describe('the embedding worker thread', () => {
  let dir: string
  let module: string
  beforeAll(() => {
    // an embedder that crashes its thread or stops answering when a prompt says so
    dir = mkdtempSync(join(tmpdir(), 'am-embedder-'))
    const file = join(dir, 'faulty.mjs')
    writeFileSync(
      file,
      `
      export function faulty() {
        const vec = (t) => { const v = new Float32Array(8); for (let i = 0; i < t.length; i++) v[i % 8] += t.charCodeAt(i); const n = Math.hypot(...v) || 1; return v.map((x) => x / n) }
        return {
          id: 'faulty', dimension: 8, loaded: true, async load() {},
          async embed(texts) {
            if (texts.some((t) => t.includes('crash now'))) { setImmediate(() => { throw new Error('embedder blew up') }); return new Promise(() => {}) }
            if (texts.some((t) => t.includes('hang now'))) return new Promise(() => {})
            if (texts.some((t) => t.includes('slow now'))) await new Promise((r) => setTimeout(r, 1500))
            return texts.map(vec)
          },
        }
      }
    `,
    )
    module = pathToFileURL(file).href
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  async function start(timeoutMs?: number, lookupTimeoutMs?: number) {
    const embedder = workerEmbedder({
      module,
      export: 'faulty',
      id: 'faulty',
      dimension: 8,
      ...(timeoutMs ? { timeoutMs } : {}),
    })
    const plugin = semanticCache({ embedder, ...(lookupTimeoutMs ? { lookupTimeoutMs } : {}) })
    const proxy = await startProxy({ plugins: [plugin] })
    const ask = async (content: string) => {
      const t = performance.now()
      const res = await postJson(
        `${proxy.url}/v1/messages`,
        { model: 'claude-haiku-4-5', max_tokens: 1024, messages: [{ role: 'user', content }] },
        { 'x-agentmesh-team': 'eng' },
      )
      await res.text()
      await plugin.semantic.flush()
      return { status: res.status, cache: res.headers.get('x-agentmesh-cache'), ms: performance.now() - t }
    }
    return { embedder, plugin, proxy, ask }
  }

  it('a crash fails the lookup in flight as a miss; the next call gets a new worker', async () => {
    const { embedder, proxy, ask } = await start()
    try {
      expect(await ask('what is the capital of france?')).toMatchObject({ status: 200, cache: 'bypass' })
      expect(embedder.loaded).toBe(true)
      expect(await ask('please crash now, thank you')).toMatchObject({ status: 200, cache: 'bypass' })
      // a fresh worker serves the entry stored before the crash
      expect(await ask('what is the capital of france?')).toMatchObject({ status: 200, cache: 'semantic' })
    } finally {
      await proxy.close()
    }
    // closed with the proxy; a later call would start it again
    expect(embedder.loaded).toBe(false)
    expect((await embedder.embed(['again']))[0]).toHaveLength(8)
    await embedder.close?.()
  })

  it('a worker that stops answering is stopped after timeoutMs and the request answered', async () => {
    const { proxy, ask } = await start(500)
    try {
      expect(await ask('warm the worker up')).toMatchObject({ status: 200, cache: 'bypass' })
      const stuck = await ask('hang now, please')
      expect(stuck).toMatchObject({ status: 200, cache: 'bypass' })
      expect(stuck.ms).toBeLessThan(5000)
      expect(await ask('warm the worker up')).toMatchObject({ status: 200, cache: 'semantic' })
    } finally {
      await proxy.close()
    }
  })

  it('a lookup waits at most lookupTimeoutMs for its embedding; the answer is still stored with it', async () => {
    const { plugin, proxy, ask } = await start(undefined, 200)
    try {
      const t = performance.now()
      const res = await postJson(
        `${proxy.url}/v1/messages`,
        {
          model: 'claude-haiku-4-5',
          max_tokens: 1024,
          messages: [{ role: 'user', content: 'slow now: what is a monad?' }],
        },
        { 'x-agentmesh-team': 'eng' },
      )
      await res.text()
      expect(res.status).toBe(200)
      expect(res.headers.get('x-agentmesh-cache')).toBe('bypass')
      expect(performance.now() - t).toBeLessThan(1200)
      await plugin.semantic.flush()
      expect((await proxy.instance.mesh.storage.getKeys('semantic')).length).toBe(1)
      expect(await ask('what is the capital of france?')).toMatchObject({ status: 200, cache: 'bypass' })
    } finally {
      await proxy.close()
    }
  })
})
