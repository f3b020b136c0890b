// An SDK-mode program in a process of its own (run by test/sdk-shared-budget.test.ts through
// bin/run-ts.mjs): createMesh on the redis the parent names, then, on "go" from stdin, N
// concurrent calls through wrapOpenAI. Prints one JSON line of outcomes.
import OpenAI from 'openai'
import { createMesh, withIdentity, wrapOpenAI } from '../../core/sdk/index.ts'
import { audit } from '../../plugins/audit/index.ts'
import { exactCache } from '../../plugins/exact-cache/index.ts'
import { quota } from '../../plugins/quota/index.ts'
import { openai } from '../../plugins/vendors/openai.ts'

const args = JSON.parse(process.argv[3]!) as {
  redis: string
  prefix: string
  vendor: string
  limit: number
  n: number
  prompt: string
  maxTokens: number
  dataDir: string
  auditDir: string
  cache: boolean
  team: string
  gapMs: number
}
const storage = { driver: 'redis' as const, url: args.redis, prefix: args.prefix }
const mesh = await createMesh({
  config: {
    log: { level: 'silent' },
    dataDir: args.dataDir,
    storage,
    plugins: [
      quota({ limits: { teams: { eng: { tokensPerDay: args.limit } } } }),
      ...(args.cache ? [exactCache({ retryWindowSeconds: 0 })] : []),
      audit({ store: 'redis', redis: storage, dir: args.auditDir }),
      openai({ baseURL: args.vendor, apiKey: 'sk-test' }),
    ],
  },
})
const client = wrapOpenAI(new OpenAI({ apiKey: 'unused', maxRetries: 0, timeout: 30_000 }), {
  mesh,
  identity: { team: args.team, user: 'sdk-process' },
})

const call = (content: string, maxTokens: number) =>
  client.chat.completions
    .create({ model: 'gpt-4o-mini', max_tokens: maxTokens, messages: [{ role: 'user', content }] })
    .withResponse()

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
// the first call through a fresh process loads what the request path imports lazily: not in the race
await withIdentity({ team: 'warm-up' }, () => call('warm up', 1))
process.stdout.write('ready\n')
process.stdin.once('data', async (line) => {
  const cmd = String(line).trim()
  if (cmd.startsWith('cache ')) {
    // a prompt the proxy answered: served from the shared cache?
    const { response } = await call(cmd.slice(6), 5)
    process.stdout.write(JSON.stringify({ cache: response.headers.get('x-agentmesh-cache') }) + '\n')
  } else {
    // calls spread over time (gapMs apart), so they interleave with the proxy's instead of all landing first
    const results = await Promise.all(
      Array.from({ length: args.n }, (_, i) =>
        sleep(i * args.gapMs)
          .then(() => call(args.prompt, args.maxTokens))
          .then(
            () => 'ok',
            (e) => (e instanceof OpenAI.RateLimitError ? 'blocked' : `other: ${e?.status} ${e?.message}`),
          ),
      ),
    )
    process.stdout.write(
      JSON.stringify({
        ok: results.filter((r) => r === 'ok').length,
        blocked: results.filter((r) => r === 'blocked').length,
        other: results.filter((r) => r.startsWith('other')),
      }) + '\n',
    )
  }
  await mesh.close()
  process.exit(0)
})
