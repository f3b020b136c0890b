// `agentmesh keys create | list | revoke`: manage virtual keys in the storage the running proxies
// read, so the in-memory driver (which no other process sees) is refused.
import type { PluginCommand } from '../../core/types.ts'
import { createKeyStore, publicRecord, validateNewKey, type KeyStore } from './store.ts'

const MEMORY_STORAGE_ERROR = [
  'keys: storage is the in-memory driver, so a key made by this command would vanish when it exits.',
  "Configure persistent storage in agentmesh.config.ts, e.g. storage: { driver: 'fs' } or { driver: 'redis', url: 'redis://...' }",
  "(or run with --preset solo / --preset team), or manage keys through the running proxy's admin API:",
  '  curl -X POST http://HOST:PORT/agentmesh/admin/keys -H "Authorization: Bearer $AGENTMESH_ADMIN_TOKEN" -d \'{"team":"eng","user":"alice"}\'',
].join('\n')

type Print = (line: string) => void
type Flags = Record<string, any>

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  return rows.map((r) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd(),
  )
}

async function createKey(keys: KeyStore, o: Flags, print: Print): Promise<number> {
  const { value, errors } = validateNewKey({
    team: o.team === undefined ? undefined : String(o.team),
    user: o.user === undefined ? undefined : String(o.user),
    ...(o.tool !== undefined ? { tool: String(o.tool) } : {}),
    ...(o.name !== undefined ? { name: String(o.name) } : {}),
  })
  if (!value) {
    print(
      `keys create: ${errors
        .join('; ')
        .replace(/\bteam\b/, '--team')
        .replace(/\buser\b/, '--user')}`,
    )
    return 1
  }
  const { key, record } = await keys.create(value)
  if (o.json) print(JSON.stringify({ ...publicRecord(record), key }, null, 2))
  else {
    print(
      `created ${record.id} for team ${record.team}, user ${record.user}${record.tool ? `, tool ${record.tool}` : ''}`,
    )
    print('')
    print(`  ${key}`)
    print('')
    print('This key is shown once: store it now. Clients send it as Authorization: Bearer <key> (or x-api-key).')
  }
  return 0
}

async function listKeys(keys: KeyStore, o: Flags, print: Print): Promise<number> {
  const list = await keys.list()
  if (o.json) print(JSON.stringify(list.map(publicRecord), null, 2))
  else if (!list.length) print('no virtual keys yet: agentmesh keys create --team TEAM --user USER')
  else
    for (const line of table([
      ['ID', 'KEY', 'TEAM', 'USER', 'TOOL', 'CREATED', 'STATUS'],
      ...list.map((r) => [
        r.id,
        r.prefix + '…',
        r.team,
        r.user,
        r.tool ?? '-',
        r.created.slice(0, 19) + 'Z',
        r.revoked ? `revoked ${r.revoked.slice(0, 10)}` : 'active',
      ]),
    ]))
      print(line)
  return 0
}

async function revokeKey(keys: KeyStore, id: string | undefined, ttl: number, print: Print): Promise<number> {
  if (!id) {
    print('keys revoke: give the key id, e.g. agentmesh keys revoke key_AbC123 (see agentmesh keys list)')
    return 1
  }
  const record = await keys.revoke(id)
  if (!record) {
    print(`keys revoke: no virtual key with id ${id}`)
    return 1
  }
  print(
    `revoked ${record.id} (team ${record.team}, user ${record.user}); running proxies refuse it within ${ttl / 1000} s`,
  )
  return 0
}

/** `ttl`: the plugin's cacheTtlMs, how long running proxies may still accept a revoked key */
export function keysCommand(ttl: number): PluginCommand {
  return {
    // one command with an action word: cac matches a command by its first word only
    name: 'keys <action> [id]',
    description: 'Virtual keys: keys create --team T --user U [--tool X] [--name N] | keys list | keys revoke ID',
    options: [
      { flags: '--team <team>', description: 'keys create: team that pays for requests made with the key' },
      { flags: '--user <user>', description: 'keys create: user the key belongs to' },
      { flags: '--tool <tool>', description: 'keys create: tool the key is for (optional)' },
      { flags: '--name <name>', description: 'keys create: a label (optional)' },
      { flags: '--json', description: 'print JSON' },
    ],
    async run({ mesh, args, options: o, print }) {
      const [action, id] = args
      if (mesh.config.storage.driver === 'memory') {
        print(MEMORY_STORAGE_ERROR)
        return 1
      }
      const keys = createKeyStore(mesh.storage)
      if (action === 'create') return createKey(keys, o, print)
      if (action === 'list') return listKeys(keys, o, print)
      if (action === 'revoke') return revokeKey(keys, id, ttl, print)
      print(`keys: unknown action "${action ?? ''}"; use keys create --team T --user U, keys list, or keys revoke ID`)
      return 1
    },
  }
}
