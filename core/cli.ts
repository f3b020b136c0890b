// agentmesh CLI (cac): dev (reloads on config change), serve, config, and plugin commands.
import { watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import { cac, type CAC } from 'cac'
import { serve } from 'srvx'
import { createAgentMesh, VERSION, type AgentMesh } from './app.ts'
import { warmTokenizer } from './tokens.ts'
import { ConfigError, loadMeshConfig, maskedConfig, type LoadOptions } from './config.ts'
import type { MeshConfig, ResolvedMeshConfig } from './types.ts'

interface GlobalFlags {
  config?: string
  preset?: string
  dataDir?: string
  port?: number | string
  host?: string
  teamLimit?: string | string[]
  warnAt?: number | string
  hardStopAt?: number | string
  help?: boolean
}

const print = (line: string) => process.stdout.write(line + '\n')
const printErr = (line: string) => process.stderr.write(line + '\n')

function overridesFrom(flags: GlobalFlags): MeshConfig {
  const o: MeshConfig & { quota?: any } = {}
  if (flags.port !== undefined) {
    const port = Number(flags.port)
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`--port must be an integer from 0 to 65535, got "${flags.port}"`)
    o.port = port
  }
  if (flags.host !== undefined) o.host = String(flags.host)
  if (flags.dataDir !== undefined) o.dataDir = String(flags.dataDir)
  const limits = flags.teamLimit === undefined ? [] : [flags.teamLimit].flat()
  if (limits.length || flags.warnAt !== undefined || flags.hardStopAt !== undefined) {
    const teamDailyTokens: Record<string, number> = {}
    for (const l of limits) {
      const m = /^([^=]+)=(\d+)$/.exec(String(l))
      if (!m) throw new ConfigError(`--team-limit must look like TEAM=TOKENS (e.g. engineering=2000000), got "${l}"`)
      teamDailyTokens[m[1]!] = Number(m[2])
    }
    const pct = (name: string, v: unknown) => {
      const n = Number(v)
      if (!Number.isFinite(n) || n <= 0) throw new ConfigError(`--${name} must be a positive percentage, got "${v}"`)
      return n
    }
    o.quota = { teamDailyTokens, ...(flags.warnAt !== undefined ? { warnAt: pct('warn-at', flags.warnAt) } : {}), ...(flags.hardStopAt !== undefined ? { hardStopAt: pct('hard-stop-at', flags.hardStopAt) } : {}) }
  }
  return o
}

function withGlobalOptions(cli: CAC) {
  cli
    .option('--config <file>', 'Config file (default: agentmesh.config.ts in the working directory)')
    .option('--preset <name>', 'Preset layered under the config: demo, solo, team')
    .option('--data-dir <dir>', 'Where fs storage, keys and logs live (default: .agentmesh)')
}

function loadOptions(flags: GlobalFlags, jiti: unknown, envName?: string): LoadOptions {
  return { configFile: flags.config, preset: flags.preset, overrides: overridesFrom(flags), jiti, envName }
}

function banner(mode: string, url: string, mesh: AgentMesh, config: ResolvedMeshConfig) {
  const storage = config.storage.driver === 'redis' ? 'redis' : config.storage.driver === 'fs' ? `fs (${mesh.mesh.dataDir})` : 'memory'
  print(`AgentMesh ${VERSION} (${mode})`)
  print(`  listening on ${url}`)
  print(`  preset    ${config.preset}`)
  print(`  plugins   ${mesh.plugins.map((p) => p.name).join(' -> ') || '(none)'}`)
  print(`  storage   ${storage}`)
  print(`  config    ${config.sources.length ? config.sources.join(', ') : '(none: embedded defaults)'}`)
  print(`  data dir  ${mesh.mesh.dataDir}`)
}

async function run(mode: 'dev' | 'serve', flags: GlobalFlags, jiti: unknown): Promise<void> {
  const opts = loadOptions(flags, jiti, mode === 'serve' ? 'production' : 'development')
  let loaded = await loadMeshConfig(opts)
  let current = await createAgentMesh(loaded.config)
  // load the BPE tables now, not during the first request
  warmTokenizer()
  const server = serve({ fetch: (req: Request) => current.app.fetch(req), port: loaded.config.port, hostname: loaded.config.host, silent: true, gracefulShutdown: false })
  try {
    await server.ready()
  } catch (err) {
    throw new ConfigError(`cannot listen on ${loaded.config.host}:${loaded.config.port}: ${(err as Error).message}`)
  }
  const port = new URL(server.url!).port
  const host = loaded.config.host === '0.0.0.0' || loaded.config.host === '::' ? '127.0.0.1' : loaded.config.host

  // Watch the folders, not the files: editors replace files (a new inode), and a write that lands
  // while a reload runs must trigger one more reload, never be lost.
  let watchers: FSWatcher[] = []
  let watched = ''
  let timer: NodeJS.Timeout | undefined
  let reloading = false
  let again = false
  const schedule = () => {
    clearTimeout(timer)
    timer = setTimeout(reload, 150)
  }
  const rewatch = () => {
    const key = loaded.files.join('\0')
    if (key === watched) return
    for (const w of watchers) w.close()
    watched = key
    const byDir = new Map<string, Set<string>>()
    for (const f of loaded.files) {
      const names = byDir.get(dirname(f)) ?? new Set<string>()
      names.add(basename(f))
      byDir.set(dirname(f), names)
    }
    watchers = [...byDir].map(([dir, names]) => watch(dir, (_e, name) => {
      if (!name || names.has(String(name))) schedule()
    }))
  }
  const reload = async (): Promise<void> => {
    if (reloading) {
      again = true
      return
    }
    reloading = true
    try {
      // not the CLI's jiti: its module cache would hand back the config file as first loaded
      const next = await loadMeshConfig({ ...opts, jiti: undefined })
      if (next.config.port !== loaded.config.port || next.config.host !== loaded.config.host) printErr('[agentmesh] port/host changes need a restart; keeping the current socket')
      const fresh = await createAgentMesh(next.config)
      const old = current
      // new requests go to the new instance at once; the old one finishes what it has in flight
      current = fresh
      loaded = next
      rewatch()
      print(`[agentmesh] config reloaded: plugins ${fresh.plugins.map((p) => p.name).join(' -> ')}`)
      fresh.mesh.emit('config_reload', { plugins: fresh.plugins.map((p) => p.name) })
      void old.close()
    } catch (err) {
      printErr(`[agentmesh] config reload failed, still serving the previous config: ${(err as Error).message}`)
    } finally {
      reloading = false
      if (again) {
        again = false
        schedule()
      }
    }
  }
  // watch before announcing: a change made right after the banner must not be missed
  if (mode === 'dev') rewatch()
  banner(mode, `http://${host.includes(':') ? `[${host}]` : host}:${port}`, current, loaded.config)

  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) process.exit(1)
    stopping = true
    print(`[agentmesh] ${signal}: shutting down`)
    for (const w of watchers) w.close()
    await server.close(false)
    await current.close()
    process.exit(0)
  }
  process.once('SIGINT', () => void stop('SIGINT'))
  process.once('SIGTERM', () => void stop('SIGTERM'))
}

export async function main(argv: string[], jiti?: unknown): Promise<void> {
  // a first pass for the flags that decide which config (and so which plugin commands) to load
  const pre = cac('agentmesh')
  withGlobalOptions(pre)
  pre.option('--port <port>', '').option('--host <host>', '').option('--team-limit <spec>', '').option('--warn-at <pct>', '').option('--hard-stop-at <pct>', '')
  const parsed = pre.parse(['node', 'agentmesh', ...argv], { run: false })
  const flags = parsed.options as GlobalFlags
  const command = parsed.args[0]

  const cli = cac('agentmesh')
  withGlobalOptions(cli)
  cli.version(VERSION)
  cli.help()

  const serverCommand = (name: 'dev' | 'serve' | '', description: string) =>
    cli
      .command(name, description)
      .option('--port <port>', 'Port to listen on (default 8080)')
      .option('--host <host>', 'Address to bind (default 127.0.0.1)')
      .option('--team-limit <team=tokens>', 'Daily token limit for a team; repeat for several teams')
      .option('--warn-at <pct>', 'Warn when a budget reaches this percentage (default 80)')
      .option('--hard-stop-at <pct>', 'Block when a budget reaches this percentage (default 100)')
      .action((f: GlobalFlags) => run(name || 'dev', f, jiti))

  serverCommand('dev', 'Run the proxy for development; reloads when the config changes')
  // no command is dev, with the same options (listed by the top-level --help)
  serverCommand('', '(no command) the same as dev').usage('[command] [options]')
  serverCommand('serve', 'Run the proxy for production (no reload, $production config)')
  cli.command('config', 'Print the resolved config, secrets masked').action(async (f: GlobalFlags) => {
    const { config } = await loadMeshConfig(loadOptions(f, jiti))
    print(JSON.stringify(maskedConfig(config), null, 2))
  })

  // plugins contribute commands (keys, grant, usage, audit ...); they need the config's plugins
  const wantsPluginCommands = command !== undefined && !['dev', 'serve', 'config'].includes(command)
  if (wantsPluginCommands || flags.help) {
    const { config } = await loadMeshConfig(loadOptions(flags, jiti))
    for (const plugin of config.plugins) {
      for (const pc of plugin.commands ?? []) {
        const c = cli.command(pc.name, pc.description)
        for (const o of pc.options ?? []) c.option(o.flags, o.description, o.default !== undefined ? { default: o.default } : undefined)
        c.action(async (...args: any[]) => {
          const options = args.pop() as Record<string, any>
          const mesh = await createAgentMesh(config, { mode: 'command' })
          let code: number | void = 0
          try {
            code = await pc.run({ mesh: mesh.mesh, args: args.flat().map(String), options, print })
          } finally {
            await mesh.close()
          }
          process.exitCode = typeof code === 'number' ? code : 0
        })
      }
    }
  }

  try {
    cli.parse(['node', 'agentmesh', ...argv], { run: false })
    if (cli.options.help || cli.options.version) return
    if (cli.matchedCommand === undefined && command !== undefined) {
      printErr(`agentmesh: unknown command "${command}". Run agentmesh --help for the list.`)
      process.exitCode = 2
      return
    }
    await cli.runMatchedCommand()
  } catch (err) {
    printErr(`agentmesh: ${(err as Error).message}`)
    process.exitCode = 1
    if (!(err instanceof ConfigError) && process.env.AGENTMESH_DEBUG) printErr((err as Error).stack ?? '')
    process.exit(1)
  }
}
