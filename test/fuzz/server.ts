// The process under test: two proxies (solo preset in front of the runner's mock upstream, and
// the demo preset with its built-in vendor), nothing else, so the event-loop delay and memory it
// reports are the proxy's own. Started by the fuzzer and the soak as a child: a crash is a child
// exit, not a dead runner. Talks over IPC: 'ready' with the ports, then answers 'stats'.
//   node --expose-gc bin/run-ts.mjs test/fuzz/server.ts   (env FUZZ_UPSTREAM=http://127.0.0.1:PORT)
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createAgentMesh, type AgentMesh } from '../../core/app.ts'
import { createTokenCounter, warmTokenizer } from '../../core/tokens.ts'
import type { Plugin } from '../../core/types.ts'
import { exactCache } from '../../plugins/exact-cache/index.ts'
import { quota } from '../../plugins/quota/index.ts'
import { demo } from '../../plugins/vendors/demo.ts'
import { stallProbe } from './probe.ts'
import { sendReady, serveStats } from './stats.ts'

/** What both proxies share: a small team budget so 429s occur, and caps that bound the caches. */
export function fuzzFeatures(): Plugin[] {
  return [
    // the stall oracle's own test makes the proxy stall on request
    ...(process.env.FUZZ_STALL_PROBE === '1' ? [stallProbe()] : []),
    // 'tiny' runs out after a few requests; every other team is unlimited
    quota({ limits: { teams: { tiny: { tokensPerDay: 3000 } } } }),
    // capped so the memory bound can be tight: 2 MB of cached answers at most
    exactCache({ maxBytes: 2 * 1024 * 1024 }),
  ]
}

async function main() {
  const upstream = process.env.FUZZ_UPSTREAM
  if (!upstream || !process.send)
    throw new Error('test/fuzz/server.ts runs as a child with FUZZ_UPSTREAM and an IPC channel')
  const semantic = process.env.FUZZ_SEMANTIC === '1'
  const level = (process.env.FUZZ_LOG ?? 'error') as 'error'
  // the parent owns the data dir, so a crashed child leaves nothing behind
  const root = process.env.FUZZ_DATA_DIR ?? mkdtempSync(join(tmpdir(), 'agentmesh-fuzz-'))
  const disable = semantic ? [] : ['semantic-cache']
  const timeouts = { upstreamTimeoutMs: Number(process.env.FUZZ_UPSTREAM_TIMEOUT_MS ?? 1500) }
  const vendor = { baseURL: upstream, apiKey: 'sk-fuzz-configured-key' }
  const solo = await createAgentMesh({
    preset: 'solo',
    storage: { driver: 'fs' },
    dataDir: join(root, 'solo'),
    log: { level },
    limits: timeouts,
    disable,
    vendors: { openai: vendor, anthropic: vendor, google: vendor },
    plugins: fuzzFeatures(),
  })
  const demoMesh = await createAgentMesh({
    preset: 'demo',
    storage: { driver: 'memory' },
    dataDir: join(root, 'demo'),
    log: { level },
    limits: timeouts,
    disable,
    plugins: [...fuzzFeatures(), demo({ latencyMs: 0, chunkDelayMs: 0 })],
  })
  // the token counter's caches hold 8M characters per tokenizer family by default, more than the
  // memory bound; the same counter with small caches keeps their fill out of the leak figures
  for (const m of [solo, demoMesh]) m.mesh.tokens = createTokenCounter({ cacheChars: 500_000 })
  // as `agentmesh dev` does before it listens: the BPE tables load once at start, not in a request
  warmTokenizer()
  const servers = await Promise.all([solo, demoMesh].map((m: AgentMesh) => m.listen({ port: 0, host: '127.0.0.1' })))
  serveStats()
  const stop = async () => {
    await Promise.allSettled(servers.map((s) => s.close()))
    await Promise.allSettled([solo.close(), demoMesh.close()])
    if (!process.env.FUZZ_DATA_DIR) rmSync(root, { recursive: true, force: true })
    process.exit(0)
  }
  process.on('disconnect', stop)
  process.on('SIGTERM', stop)
  sendReady({ mock: servers[0]!.port, demo: servers[1]!.port })
}

await main()
