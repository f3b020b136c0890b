// CLI commands: grant, grants, usage. They read and write the storage the running proxies share,
// so they refuse the in-memory driver (which no other process can see).
import type { Mesh, PluginCommand } from '../../core/types.ts'
import { createGrantStore, validateGrant, type Grant } from './grants.ts'
import type { QuotaRuntime } from './plan.ts'
import { printUsage, usageReport } from './report.ts'

function needsSharedStorage(m: Mesh, what: string, print: (l: string) => void): boolean {
  if (m.config.storage.driver !== 'memory') return false
  print(
    `${what}: storage is the in-memory driver, so this command cannot reach the running proxy's ${what === 'usage' ? 'counters' : 'grants'}.`,
  )
  print(
    "Configure storage: { driver: 'fs' } or { driver: 'redis', url } in agentmesh.config.ts, or use the admin API of the running proxy:",
  )
  print(
    what === 'usage'
      ? '  curl http://HOST:PORT/agentmesh/admin/usage -H "Authorization: Bearer $AGENTMESH_ADMIN_TOKEN"'
      : '  curl -X POST http://HOST:PORT/agentmesh/admin/grants -H "Authorization: Bearer $AGENTMESH_ADMIN_TOKEN" -d \'{"team":"eng","tokens":500000,"for":"24h"}\'',
  )
  return true
}

/** cac gives numeric-looking flags as numbers or strings; a malformed one stays a string for validateGrant to name */
const num = (v: unknown) =>
  v === undefined
    ? undefined
    : typeof v === 'number'
      ? v
      : /^\s*\d+(\.\d+)?\s*$/.test(String(v))
        ? Number(v)
        : (String(v) as unknown as number)

/** the grant request the CLI flags describe, in the admin API's body form */
function grantInput(o: Record<string, any>) {
  return {
    ...(o.team !== undefined ? { team: String(o.team) } : {}),
    ...(o.user !== undefined ? { user: String(o.user) } : {}),
    ...(o.tool !== undefined ? { tool: String(o.tool) } : {}),
    ...(o.global ? { global: true } : {}),
    ...(o.tokens !== undefined ? { tokens: num(o.tokens) } : {}),
    ...(o.usd !== undefined ? { usd: num(o.usd) } : {}),
    for: o.for === undefined ? '24h' : String(o.for),
    ...(o.reason !== undefined ? { reason: String(o.reason) } : {}),
  }
}

function grantLine(g: Grant, now: number): string {
  const amounts = [g.tokens ? `+${g.tokens} tokens` : '', g.usd ? `+$${g.usd}` : ''].filter(Boolean).join(' ')
  return `${g.id}  ${g.scope}  ${amounts}  until ${g.expires}${Date.parse(g.expires) <= now ? ' (expired)' : ''}${g.reason ? `  "${g.reason}"` : ''}`
}

/** `runtime` is read when a command runs: setup has filled it in by then */
export function quotaCommands(runtime: () => QuotaRuntime): PluginCommand[] {
  return [
    {
      name: 'grant',
      description:
        'Add temporary headroom: grant --team eng --tokens 500000 --for 24h (also --user, --tool, --global, --usd)',
      options: [
        { flags: '--team <team>', description: 'team to grant to' },
        { flags: '--user <user>', description: 'user to grant to' },
        { flags: '--tool <tool>', description: 'tool to grant to' },
        { flags: '--global', description: 'grant to the global budget' },
        { flags: '--tokens <n>', description: "extra tokens on the scope's token limits" },
        { flags: '--usd <n>', description: "extra USD on the scope's USD limits" },
        { flags: '--for <duration>', description: 'how long the grant lasts: 24h, 30m, 7d', default: '24h' },
        { flags: '--reason <text>', description: 'why (kept with the grant)' },
      ],
      async run({ mesh: m, options: o, print }) {
        if (needsSharedStorage(m, 'grant', print)) return 1
        const { value, errors } = validateGrant(grantInput(o))
        if (!value) {
          print(`grant: ${errors.join('; ')}`)
          return 1
        }
        const g = await createGrantStore(m.storage, 0).create(value)
        const what = [g.tokens ? `${g.tokens.toLocaleString('en-US')} tokens` : '', g.usd ? `$${g.usd}` : '']
          .filter(Boolean)
          .join(' and ')
        print(
          `granted ${what} to ${g.scope} until ${g.expires} (${g.id}); running proxies apply it within ${runtime().opts.grantsCacheMs / 1000} s`,
        )
        return 0
      },
    },
    {
      name: 'grants',
      description: 'List temporary grants (--all includes expired ones)',
      options: [
        { flags: '--all', description: 'include expired grants' },
        { flags: '--json', description: 'print JSON' },
      ],
      async run({ mesh: m, options: o, print }) {
        if (needsSharedStorage(m, 'grants', print)) return 1
        const now = Date.now()
        const list = (await createGrantStore(m.storage, 0).list(now)).filter(
          (g) => o.all || Date.parse(g.expires) > now,
        )
        if (o.json) print(JSON.stringify(list, null, 2))
        else if (!list.length) print(o.all ? 'no grants' : 'no active grants')
        else for (const g of list) print(grantLine(g, now))
        return 0
      },
    },
    {
      name: 'usage',
      description:
        'Usage per team, user and tool today and this month: requests, tokens, USD, cache savings, quota used',
      options: [{ flags: '--json', description: 'print JSON (the same as GET /agentmesh/admin/usage)' }],
      async run({ mesh: m, options: o, print }) {
        if (needsSharedStorage(m, 'usage', print)) return 1
        const report = await usageReport(runtime())
        if (o.json) print(JSON.stringify(report, null, 2))
        else printUsage(report, print)
        return 0
      },
    },
  ]
}
