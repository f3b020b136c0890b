// npm run bench:proxy — throughput, CPU per request and added latency of the proxy, against a
// zero-delay mock upstream, with Debian's wrk as the one load generator. The last lines compare two
// configurations side by side (bench/lib/side-by-side.ts: two fresh proxies loaded at once, pinned
// together on the last CPU, wrk, the mock and helpers on CPU 0; medians of per-window figures).
// Switches (environment):
//   BENCH_SECONDS=N      seconds per wrk run and per side-by-side window (default 5)
//   BENCH_DISABLE=a,b    more preset plugins switched off, in every proxy the bench starts
//   BENCH_GUARDS=1       the breaker and the approval gate in the measured proxy (the first lines)
//   BENCH_ROUTER=0       leaves out the router line (issue 16)
//   BENCH_TRANSLATE=0    leaves out the translated stream line (issue 16)
//   BENCH_OBSERVE=0      leaves out the metrics+tracing and dashboard lines (issue 18);
//                        BENCH_OBSERVE_WINDOWS=N their windows (default 7); BENCH_CALIBRATE=0
//                        leaves out the side-by-side calibration (a known 0.01 ms of busy CPU
//                        per request, measured as metrics+tracing is)
//   BENCH_GUARDS_LINE=0  leaves out the breaker+approval line (issue 17)
//   BENCH_CONTROL=1      each side-by-side line also gives its A/A control: a third proxy with the
//                        baseline's config, against the baseline in interleaved windows (the noise);
//                        the dashboard line always has it, and its verdict on "beyond noise"
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { type BenchDeps, chatBody, cpuMs, openaiVendor, writeConfig } from './lib/side-by-side.ts'
import { GUARD_IMPORTS, GUARD_PLUGINS } from './lib/guards-gains.ts'

const root = resolve(import.meta.dirname, '..')
const seconds = Number(process.env.BENCH_SECONDS ?? 5)
const connections = 50

function need(cmd: string) {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
  } catch {
    console.error(`bench:proxy needs ${cmd} (apt-get install -y ${cmd})`)
    process.exit(2)
  }
}

function freePort(): Promise<number> {
  return new Promise((r) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as any).port
      s.close(() => r(p))
    })
  })
}

function start(args: string[], ready: RegExp, env: NodeJS.ProcessEnv = {}): Promise<ChildProcess> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, args, {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    // a child that never said it was ready is not in `children` yet: stopped here, not left running
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      rej(new Error(`did not start: ${args.join(' ')}\n${out}`))
    }, 30_000)
    const on = (d: Buffer) => {
      out += d.toString()
      if (ready.test(out)) {
        clearTimeout(timer)
        res(child)
      }
    }
    child.stdout!.on('data', on)
    child.stderr!.on('data', on)
    child.once('exit', (code) => rej(new Error(`exited ${code}: ${out}`)))
  })
}

const luaFor = (stream: boolean) =>
  `wrk.method = "POST"\nwrk.body = [[${chatBody(stream)}]]\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-AgentMesh-Team"] = "bench"\n`

const responsesLuaFor = (stream: boolean) => {
  const body = JSON.stringify({
    model: 'gpt-4o-mini',
    stream,
    max_output_tokens: 64,
    input: [{ role: 'user', content: 'Say something short about foxes.' }],
  })
  return `wrk.method = "POST"\nwrk.body = [[${body}]]\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-AgentMesh-Team"] = "bench"\n`
}

interface WrkResult {
  rps: number
  requests: number
  p50: number
  p99: number
  errors: number
}

function toMs(v: string): number {
  const m = /([\d.]+)(us|ms|s)/.exec(v)
  if (!m) return NaN
  const n = Number(m[1])
  return m[2] === 'us' ? n / 1000 : m[2] === 's' ? n * 1000 : n
}

function wrk(url: string, conns: number, secs: number, script: string): WrkResult {
  const out = execFileSync(
    'wrk',
    ['-t', conns > 1 ? '2' : '1', '-c', String(conns), '-d', `${secs}s`, '--latency', '-s', script, url],
    { encoding: 'utf8' },
  )
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0)
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0)
  const p50 = toMs(/\s50%\s+(\S+)/.exec(out)?.[1] ?? '')
  const p99 = toMs(/\s99%\s+(\S+)/.exec(out)?.[1] ?? '')
  const errs = /Non-2xx or 3xx responses: (\d+)/.exec(out)
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const errors =
    Number(errs?.[1] ?? 0) + (sock ? Number(sock[1]) + Number(sock[2]) + Number(sock[3]) + Number(sock[4]) : 0)
  return { rps, requests, p50, p99, errors }
}

/** time to the first body byte of a streamed answer, sequential requests; returns sorted ms */
async function firstChunk(port: number, n: number): Promise<number[]> {
  const body = JSON.stringify({
    model: 'gpt-4o-mini',
    stream: true,
    messages: [{ role: 'user', content: 'Say something short about foxes.' }],
  })
  const times: number[] = []
  for (let i = 0; i < n; i++) {
    times.push(
      await new Promise<number>((res, rej) => {
        const t0 = performance.now()
        const req = request(
          {
            host: '127.0.0.1',
            port,
            path: '/v1/chat/completions',
            method: 'POST',
            headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
          },
          (r) => {
            let first = 0
            r.on('data', () => {
              first ||= performance.now() - t0
            })
            r.on('end', () => res(first))
          },
        )
        req.on('error', rej)
        req.end(body)
      }),
    )
  }
  return times.sort((a, b) => a - b)
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!

async function main() {
  need('wrk')
  const dir = mkdtempSync(join(tmpdir(), 'agentmesh-bench-'))
  const children: ChildProcess[] = []
  const stop = () => {
    for (const c of children) c.kill('SIGKILL')
  }
  process.on('exit', stop)
  try {
    const mockPort = await freePort()
    const proxyPort = await freePort()
    const mock = await start(['bin/run-ts.mjs', 'bench/lib/fast-mock.ts', String(mockPort)], /fast-mock listening/)
    children.push(mock)
    const plainLua = join(dir, 'plain.lua')
    const deps: BenchDeps = { root, dir, mockPort, mockPid: mock.pid, seconds, connections, plainLua, freePort, start }
    // BENCH_GUARDS=1: the breaker (every check made, limits out of reach: wrk repeats one body) and
    // an approval gate whose rules never fire (as in issue 17's line); the preset's own breaker is
    // off: wrk sends one body over and over, which it rightly calls a loop
    const guards = process.env.BENCH_GUARDS === '1'
    const config = writeConfig(deps, {
      name: 'main',
      imports: guards ? GUARD_IMPORTS : {},
      plugins: [openaiVendor(deps), ...(guards ? GUARD_PLUGINS : [])],
    })
    const proxy = await start(
      ['bin/agentmesh.mjs', 'serve', '--config', config, '--port', String(proxyPort), '--data-dir', join(dir, 'data')],
      /listening on/,
      { NODE_ENV: 'production' },
    )
    children.push(proxy)
    const streamLua = join(dir, 'stream.lua')
    writeFileSync(plainLua, luaFor(false))
    writeFileSync(streamLua, luaFor(true))
    const rPlainLua = join(dir, 'responses-plain.lua')
    const rStreamLua = join(dir, 'responses-stream.lua')
    writeFileSync(rPlainLua, responsesLuaFor(false))
    writeFileSync(rStreamLua, responsesLuaFor(true))
    const direct = `http://127.0.0.1:${mockPort}/v1/chat/completions`
    const proxied = `http://127.0.0.1:${proxyPort}/v1/chat/completions`

    // warm up JIT and connection pools
    wrk(proxied, connections, 2, plainLua)
    wrk(proxied, connections, 1, streamLua)

    const directPlain = wrk(direct, connections, seconds, plainLua)
    let cpu0 = cpuMs(proxy.pid!)
    const proxyPlain = wrk(proxied, connections, seconds, plainLua)
    const cpuPlain = (cpuMs(proxy.pid!) - cpu0) / Math.max(1, proxyPlain.requests)
    deps.standaloneMs = cpuPlain
    const directStream = wrk(direct, connections, seconds, streamLua)
    cpu0 = cpuMs(proxy.pid!)
    const proxyStream = wrk(proxied, connections, seconds, streamLua)
    const cpuStream = (cpuMs(proxy.pid!) - cpu0) / Math.max(1, proxyStream.requests)

    // the Responses API, same answer, same proxy: its cost against the Chat Completions path
    const rProxied = `http://127.0.0.1:${proxyPort}/v1/responses`
    wrk(rProxied, connections, 1, rPlainLua)
    wrk(rProxied, connections, 1, rStreamLua)
    cpu0 = cpuMs(proxy.pid!)
    const rPlain = wrk(rProxied, connections, seconds, rPlainLua)
    const rCpuPlain = (cpuMs(proxy.pid!) - cpu0) / Math.max(1, rPlain.requests)
    cpu0 = cpuMs(proxy.pid!)
    const rStream = wrk(rProxied, connections, seconds, rStreamLua)
    const rCpuStream = (cpuMs(proxy.pid!) - cpu0) / Math.max(1, rStream.requests)

    const direct1 = wrk(direct, 1, 3, plainLua)
    const proxy1 = wrk(proxied, 1, 3, plainLua)
    const direct50 = directPlain
    const fcDirect = await firstChunk(mockPort, 300)
    const fcProxy = await firstChunk(proxyPort, 300)
    const firstAdded = pct(fcProxy, 50) - pct(fcDirect, 50)
    // issue 16's router line, after every other measure (BENCH_ROUTER=0 leaves it out)
    const routerLine =
      process.env.BENCH_ROUTER === '0'
        ? undefined
        : await (await import('./lib/router-gains.ts')).routerGainsLine(deps, children)
    // issue 16's translated streaming line, after the router's (BENCH_TRANSLATE=0 leaves it out)
    const translateLine =
      process.env.BENCH_TRANSLATE === '0'
        ? undefined
        : await (await import('./lib/translated-stream.ts')).translatedStreamLine(deps, children)
    // issue 18's observability lines, after the translated one (BENCH_OBSERVE=0 leaves them out)
    const observeLines =
      process.env.BENCH_OBSERVE === '0'
        ? []
        : await (await import('./lib/observability-gains.ts')).observabilityGainsLines(deps, children)
    // issue 17's breaker+approval line, after the observability ones (BENCH_GUARDS_LINE=0 leaves it out)
    const guardsLine =
      process.env.BENCH_GUARDS_LINE === '0'
        ? undefined
        : await (await import('./lib/guards-gains.ts')).guardsGainsLine(deps, children)

    const f = (n: number, d = 2) => n.toFixed(d)
    console.log(
      `wrk, ${connections} connections, ${seconds}s per run, zero-delay mock upstream; proxy: solo preset, caching off, demo identity`,
    )
    console.log(
      `non-streaming  direct ${f(directPlain.rps, 0)} rps | through proxy ${f(proxyPlain.rps, 0)} rps, proxy CPU ${f(cpuPlain, 3)} ms/req, errors ${proxyPlain.errors}`,
    )
    console.log(
      `streaming      direct ${f(directStream.rps, 0)} rps | through proxy ${f(proxyStream.rps, 0)} rps, proxy CPU ${f(cpuStream, 3)} ms/req, errors ${proxyStream.errors}`,
    )
    console.log(
      `responses      non-streaming ${f(rPlain.rps, 0)} rps, proxy CPU ${f(rCpuPlain, 3)} ms/req, errors ${rPlain.errors} | streaming ${f(rStream.rps, 0)} rps, proxy CPU ${f(rCpuStream, 3)} ms/req, errors ${rStream.errors}`,
    )
    console.log(
      `latency @1 conn   direct p50 ${f(direct1.p50, 3)} ms p99 ${f(direct1.p99, 3)} ms | proxy p50 ${f(proxy1.p50, 3)} ms p99 ${f(proxy1.p99, 3)} ms | added p50 ${f(proxy1.p50 - direct1.p50, 3)} ms p99 ${f(proxy1.p99 - direct1.p99, 3)} ms`,
    )
    console.log(
      `latency @${connections} conn  direct p50 ${f(direct50.p50, 3)} ms p99 ${f(direct50.p99, 3)} ms | proxy p50 ${f(proxyPlain.p50, 3)} ms p99 ${f(proxyPlain.p99, 3)} ms | added p50 ${f(proxyPlain.p50 - direct50.p50, 3)} ms p99 ${f(proxyPlain.p99 - direct50.p99, 3)} ms`,
    )
    console.log(
      `first streamed chunk (300 sequential)  direct p50 ${f(pct(fcDirect, 50), 3)} ms | proxy p50 ${f(pct(fcProxy, 50), 3)} ms p99 ${f(pct(fcProxy, 99), 3)} ms | added ${f(firstAdded, 3)} ms`,
    )
    if (routerLine) console.log(routerLine)
    if (translateLine) console.log(translateLine)
    for (const line of observeLines) console.log(line)
    if (guardsLine) console.log(guardsLine)
    console.log(
      `bench:proxy rps=${f(proxyPlain.rps, 0)} cpu_ms_per_req=${f(cpuPlain, 3)} added_p50_ms=${f(proxy1.p50 - direct1.p50, 3)} added_p99_ms=${f(proxy1.p99 - direct1.p99, 3)} first_chunk_added_ms=${f(firstAdded, 3)}`,
    )
  } finally {
    stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
