// Compression through a proxy on one huge value in an old turn (issue 11: no request may hold the
// others up for more than about 50 ms). A body of a few messages never looked large to
// compressBody, so its passes ran in one go however many megabytes one tool output held; the
// plugin now hands it the raw body's length. Each case: the request is compressed upstream, and
// the compression hook's longest block (its own passes, and the core's sliced parse and estimate
// it measures with) stays under PROXY_BLOCK_MS of CPU.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { definePlugin } from '../core/plugin.ts'
import { compression } from '../plugins/compression/index.ts'
import { startCoreMockAndProxy, type Proxy } from './helpers/core-harness.ts'
import type { MockUpstream } from './helpers/mock-upstream.ts'

/**
 * The hook's longest block, as CPU time. Measured 19-32 ms under a load of 3-5 on 2 cores (a flat
 * copy of the rewritten output, 20-30 ms here, is the largest piece of work left); before, with
 * the passes in one go: 89-121 ms.
 */
const PROXY_BLOCK_MS = 60

/** a numbered, indented listing of `n` lines (with runs of blank lines and trailing spaces) */
const listing = (n: number) =>
  Array.from({ length: n }, (_, i) =>
    i % 9 === 4 ? '' : `  ${String(i).padStart(5)}\t    const v${i} = f(${i})  `,
  ).join('\n')
/** pretty-printed JSON of `rows` rows */
const prettyJson = (rows: number) =>
  JSON.stringify(
    { rows: Array.from({ length: rows }, (_, i) => ({ i, s: `a "quoted" word ${i % 7}\n`, ok: i % 2 === 0 })) },
    null,
    2,
  )

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

const SHAPES: Record<string, () => unknown> = {
  'an old tool output of one 7 MB string': () => oneCall(listing(200_000)),
  'an old tool output of 8 MB of pretty-printed JSON': () => oneCall(prettyJson(80_000)),
  'an old tool call whose input is 5 MB of JSON': () =>
    oneCall('ok', { path: 'src/a.ts', rows: JSON.parse(prettyJson(100_000)).rows }),
}

describe('one huge value in an old turn, compressed through a proxy', () => {
  let mock: MockUpstream
  let proxy: Proxy
  const marks = new Map<string, number>()
  // a mark before and after the plugin's hook, each giving the loop a turn, so no block spans more
  const mark = (name: string) =>
    definePlugin({
      name: `mark-${name}`,
      enforce: 'post',
      hooks: {
        async route() {
          marks.set(name, performance.now())
          await new Promise((r) => setImmediate(r))
          marks.set(`${name}+`, performance.now())
        },
      },
    })
  beforeAll(async () => {
    ;({ mock, proxy } = await startCoreMockAndProxy({
      config: {
        limits: { bodyBytes: 32 * 1024 * 1024 },
        // a rule with no conditions: every request is compressed to a third of its size
        plugins: [mark('start'), compression({ rules: [{ targetRatio: 0.3 }] }), mark('end')],
      },
    }))
  })
  afterAll(async () => {
    await proxy?.close()
    await mock?.close()
  })

  it.each(Object.keys(SHAPES))(
    '%s: compressed upstream; the hook in blocks under PROXY_BLOCK_MS',
    async (name) => {
      const raw = JSON.stringify(SHAPES[name]!())
      // the first request compiles the paths; a block over the bound is measured once more (the
      // garbage collector's share varies with the machine's load)
      let best = Number.POSITIVE_INFINITY
      for (let run = 0; run < 4 && !(best < PROXY_BLOCK_MS); run++) {
        const gaps: Array<[number, number, number]> = []
        let last = performance.now()
        let lastCpu = process.cpuUsage()
        let on = true
        const tick = () => {
          const now = performance.now()
          const cpu = process.cpuUsage(lastCpu)
          if (now - last > 2) gaps.push([last, now, Math.min(now - last, (cpu.user + cpu.system) / 1000)])
          last = now
          lastCpu = process.cpuUsage()
          if (on) setImmediate(tick)
        }
        marks.clear()
        mock.received.length = 0
        setImmediate(tick)
        const r = await fetch(`${proxy.url}/v1/messages`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-api-key': 'k', 'anthropic-version': '2023-06-01' },
          body: raw,
        })
        await r.text()
        on = false
        expect(r.status).toBe(200)
        expect(r.headers.get('x-agentmesh-compressed')).toMatch(/^\d+->\d+$/)
        // the old tool output (or call) is gone or cut upstream
        expect(mock.received.at(-1)!.raw.length).toBeLessThan(raw.length / 10)
        // the longest gap between ticks that overlaps the hook's run
        const from = marks.get('start+')!
        const to = marks.get('end')!
        let longest = 0
        for (const [a, b, cpu] of gaps) if (Math.min(b, to) - Math.max(a, from) > 0) longest = Math.max(longest, cpu)
        if (run === 0) continue
        console.log(
          `${name} (${(raw.length / 1e6).toFixed(1)} MB) through the proxy: longest block of compression ${longest.toFixed(0)} ms (CPU), ${r.headers.get('x-agentmesh-compression')}`,
        )
        best = Math.min(best, longest)
      }
      expect(best).toBeLessThan(PROXY_BLOCK_MS)
    },
    120_000,
  )
})
