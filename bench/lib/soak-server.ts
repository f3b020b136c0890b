// The proxy the soak measures, alone in its process (run with --expose-gc so heap-after-GC is
// real): the solo preset over the parent's mock upstream, with keys, quota (a small team that
// runs out, so blocked requests are part of the mix), the exact cache and the audit log on disk.
//   node --expose-gc bin/run-ts.mjs bench/lib/soak-server.ts   (env FUZZ_UPSTREAM, FUZZ_DATA_DIR)
import { createAgentMesh } from '../../core/app.ts'
import { quota } from '../../plugins/quota/index.ts'
import { sendReady, serveStats } from '../../test/fuzz/stats.ts'
import { SMALL_TEAM } from './soak-traffic.ts'

async function main() {
  const upstream = process.env.FUZZ_UPSTREAM
  const dataDir = process.env.FUZZ_DATA_DIR
  if (!upstream || !dataDir || !process.send)
    throw new Error('bench/lib/soak-server.ts runs as a child of bench/soak.ts')
  const vendor = { baseURL: upstream, apiKey: 'sk-soak-configured-key' }
  const mesh = await createAgentMesh({
    preset: 'solo',
    storage: { driver: 'fs' },
    dataDir,
    log: { level: 'warn' },
    // the semantic cache holds a 230 MB model: measured only when asked for
    disable: process.env.FUZZ_SEMANTIC === '1' ? [] : ['semantic-cache'],
    vendors: { openai: vendor, anthropic: vendor, google: vendor },
    // about twenty answers, then every request of this team is a 429
    plugins: [quota({ limits: { teams: { [SMALL_TEAM]: { tokensPerDay: 2000 } } } })],
  })
  const server = await mesh.listen({ port: 0, host: '127.0.0.1' })
  serveStats()
  const stop = async () => {
    await server.close()
    await mesh.close()
    process.exit(0)
  }
  process.on('disconnect', stop)
  process.on('SIGTERM', stop)
  sendReady({ proxy: server.port })
}

await main()
