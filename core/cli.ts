// agentmesh CLI (cac): dev (reloads on config change), serve, config, init, and plugin commands.
import { watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import { cac, type CAC } from 'cac'
import type { Jiti } from 'jiti'
import { createAgentMesh, VERSION } from './app.ts'
import { bannerLines } from './cli-banner.ts'
import { runInit } from './cli-init.ts'
import { configJiti } from './cli-jiti.ts'
import { listenDev, listenServe } from './cli-listen.ts'
import { warmTokenizer } from './tokens.ts'
import {
  ConfigError,
  loadMeshConfig,
  maskedConfig,
  PRESET_NAMES,
  type LoadedConfig,
  type LoadOptions,
} from './config.ts'
import type { MeshConfig } from './types.ts'

interface GlobalFlags {
  config?: string
  preset?: string
  dataDir?: string
  port?: number | string
  host?: string
  teamLimit?: string | string[]
  warnAt?: number | string
  hardStopAt?: number | string
  approveOver?: number | string
  open?: boolean
  help?: boolean
}

const print = (line: string) => process.stdout.write(line + '\n')
const printErr = (line: string) => process.stderr.write(line + '\n')

// a server outlives a reader that went away (`agentmesh serve | tee log`); a command does not
let serving = false

/**
 * A reader that closes the pipe (`agentmesh audit export | head -3`) ends a command quietly,
 * exit 0, instead of an unhandled EPIPE with its stack trace; a server keeps serving.
 */
function quietOnClosedPipe() {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err
      if (!serving) process.exit(0)
    })
  }
}

function overridesFrom(flags: GlobalFlags): MeshConfig {
  const o: MeshConfig & { quota?: any; approval?: { approveOverUsd: number } } = {}
  if (flags.port !== undefined) {
    const port = Number(flags.port)
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw new ConfigError(`--port must be an integer from 0 to 65535, got "${flags.port}"`)
    o.port = port
  }
  if (flags.host !== undefined) o.host = String(flags.host)
  if (flags.dataDir !== undefined) o.dataDir = String(flags.dataDir)
  if (flags.approveOver !== undefined) {
    const usd = Number(flags.approveOver)
    if (!Number.isFinite(usd) || usd < 0)
      throw new ConfigError(`--approve-over must be an amount of USD >= 0, got "${flags.approveOver}"`)
    // read by the approval plugin: an ask rule for requests estimated above this cost
    o.approval = { approveOverUsd: usd }
  }
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
    o.quota = {
      teamDailyTokens,
      ...(flags.warnAt !== undefined ? { warnAt: pct('warn-at', flags.warnAt) } : {}),
      ...(flags.hardStopAt !== undefined ? { hardStopAt: pct('hard-stop-at', flags.hardStopAt) } : {}),
    }
  }
  return o
}

function withGlobalOptions(cli: CAC) {
  cli
    .option('--config <file>', 'Config file (default: agentmesh.config.ts in the working directory)')
    .option(
      '--preset <name>',
      `Preset layered under the config, in place of its \`preset\`: ${PRESET_NAMES.join(', ')} or a preset file (default: the config's, else demo)`,
    )
    .option('--data-dir <dir>', 'Where fs storage, keys and logs live (default: .agentmesh)')
}

/** What `agentmesh dev` runs when neither the config nor --preset names a preset: no keys needed. */
const CLI_DEFAULT_PRESET = 'demo'

function loadOptions(flags: GlobalFlags, jiti: Jiti, envName?: string): LoadOptions {
  return {
    configFile: flags.config,
    preset: flags.preset,
    defaultPreset: CLI_DEFAULT_PRESET,
    overrides: overridesFrom(flags),
    jiti,
    envName,
  }
}

interface Serving {
  loaded: LoadedConfig
  current: Awaited<ReturnType<typeof createAgentMesh>>
}

/**
 * Dev's reload: a change to a config file builds a new instance; new requests go to it at once,
 * and the old one finishes what it has in flight. Returns the function that stops watching.
 */
function watchConfig(opts: LoadOptions, state: Serving): () => void {
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
    const key = state.loaded.files.join('\0')
    if (key === watched) return
    for (const w of watchers) w.close()
    watched = key
    const byDir = new Map<string, Set<string>>()
    for (const f of state.loaded.files) {
      const names = byDir.get(dirname(f)) ?? new Set<string>()
      names.add(basename(f))
      byDir.set(dirname(f), names)
    }
    watchers = [...byDir].map(([dir, names]) =>
      watch(dir, (_e, name) => {
        if (!name || names.has(String(name))) schedule()
      }),
    )
  }
  const reload = async (): Promise<void> => {
    if (reloading) {
      again = true
      return
    }
    reloading = true
    try {
      // a fresh jiti without the module cache, which would hand back the config file as first loaded
      const next = await loadMeshConfig({ ...opts, jiti: configJiti({ moduleCache: false }) })
      if (next.config.port !== state.loaded.config.port || next.config.host !== state.loaded.config.host)
        printErr('[agentmesh] port/host changes need a restart; keeping the current socket')
      const fresh = await createAgentMesh(next.config)
      const old = state.current
      state.current = fresh
      state.loaded = next
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
  rewatch()
  return () => {
    clearTimeout(timer)
    for (const w of watchers) w.close()
  }
}

async function run(mode: 'dev' | 'serve', flags: GlobalFlags, jiti: Jiti): Promise<void> {
  const opts = loadOptions(flags, jiti, mode === 'serve' ? 'production' : 'development')
  const loaded = await loadMeshConfig(opts)
  const state: Serving = { loaded, current: await createAgentMesh(loaded.config) }
  // load the BPE tables now, not during the first request
  warmTokenizer()
  const fetch = (req: Request) => state.current.app.fetch(req)
  const { port, host } = loaded.config
  // in dev the configured port gives way to the next free one when busy (as Vite's does); a port
  // given with --port does not
  const fixedPort = flags.port !== undefined
  const at =
    mode === 'dev'
      ? await listenDev(fetch, { port, host, fixedPort, open: flags.open })
      : await listenServe(fetch, { port, host, fixedPort: true })
  serving = true
  // watch before announcing: a change made right after the banner must not be missed
  const unwatch = mode === 'dev' ? watchConfig(opts, state) : () => {}
  for (const line of bannerLines(mode, at, state.current, state.loaded.config)) print(line)

  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) process.exit(1)
    stopping = true
    print(`[agentmesh] ${signal}: shutting down`)
    unwatch()
    await at.close()
    await state.current.close()
    process.exit(0)
  }
  process.once('SIGINT', () => void stop('SIGINT'))
  process.once('SIGTERM', () => void stop('SIGTERM'))
}

const BUILT_IN = ['dev', 'serve', 'config', 'init']

/** The built-in commands: dev (also with no command), serve, config, init. */
function builtInCommands(cli: CAC, jiti: Jiti) {
  const serverCommand = (name: 'dev' | 'serve' | '', description: string) => {
    const c = cli
      .command(name, description)
      .option(
        '--port <port>',
        "Port to listen on, this one or fail (default 8080, or the config's; dev takes the next free one when that is busy)",
      )
      .option('--host <host>', 'Address to bind (default 127.0.0.1)')
      .option('--team-limit <team=tokens>', 'Daily token limit for a team; repeat for several teams')
      .option('--warn-at <pct>', 'Warn when a budget reaches this percentage (default 80)')
      .option('--hard-stop-at <pct>', 'Block when a budget reaches this percentage (default 100)')
      .option(
        '--approve-over <usd>',
        'Ask a person to approve requests estimated above this cost (approval plugin: agentmesh approve ID)',
      )
    if (name !== 'serve') c.option('--open', 'Open the live event stream in the browser')
    return c.action((f: GlobalFlags) => run(name || 'dev', f, jiti))
  }
  serverCommand('dev', 'Run the proxy for development; reloads when the config changes')
  // no command is dev, with the same options (listed by the top-level --help)
  serverCommand('', '(no command) the same as dev').usage('[command] [options]')
  serverCommand('serve', 'Run the proxy for production (no reload, $production config)')
  cli.command('config', 'Print the resolved config, secrets masked').action(async (f: GlobalFlags) => {
    const { config } = await loadMeshConfig(loadOptions(f, jiti))
    print(JSON.stringify(maskedConfig(config), null, 2))
  })
  cli
    .command('init', 'Write agentmesh.config.ts here (--preset, else asked) and add the data dir to .gitignore')
    .action((f: GlobalFlags) =>
      runInit({ cwd: process.cwd(), preset: f.preset, dataDir: f.dataDir, configFile: f.config, print }),
    )
}

/** Plugins contribute commands (keys, grant, usage, audit ...): they need the config's plugins. */
async function pluginCommands(cli: CAC, flags: GlobalFlags, jiti: Jiti) {
  const { config } = await loadMeshConfig(loadOptions(flags, jiti))
  for (const plugin of config.plugins) {
    for (const pc of plugin.commands ?? []) {
      const c = cli.command(pc.name, pc.description)
      for (const o of pc.options ?? [])
        c.option(o.flags, o.description, o.default !== undefined ? { default: o.default } : undefined)
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

/** The command list, for a command nobody registered (cac would hand it to dev as an argument). */
function unknownCommand(cli: CAC, command: string) {
  printErr(`agentmesh: unknown command "${command}"`)
  printErr('Commands:')
  const listed = cli.commands.filter((c) => !c.isDefaultCommand)
  const width = Math.max(...listed.map((c) => c.rawName.length))
  for (const c of listed) printErr(`  ${c.rawName.padEnd(width)}  ${c.description}`)
  printErr('Run agentmesh --help for the options.')
  process.exitCode = 2
}

export async function main(argv: string[]): Promise<void> {
  quietOnClosedPipe()
  // a first pass for the flags that decide which config (and so which plugin commands) to load
  const pre = cac('agentmesh')
  withGlobalOptions(pre)
  pre
    .option('--port <port>', '')
    .option('--host <host>', '')
    .option('--team-limit <spec>', '')
    .option('--warn-at <pct>', '')
    .option('--hard-stop-at <pct>', '')
    .option('--approve-over <usd>', '')
  const parsed = pre.parse(['node', 'agentmesh', ...argv], { run: false })
  const flags = parsed.options as GlobalFlags
  const command = parsed.args[0]

  // configs import 'agentmesh' whether or not the package is installed beside them
  const jiti = configJiti({ moduleCache: true })
  const cli = cac('agentmesh')
  withGlobalOptions(cli)
  cli.version(VERSION)
  cli.help()
  builtInCommands(cli, jiti)

  try {
    if ((command !== undefined && !BUILT_IN.includes(command)) || flags.help) await pluginCommands(cli, flags, jiti)
    cli.parse(['node', 'agentmesh', ...argv], { run: false })
    if (cli.options.help || cli.options.version) return
    if (command !== undefined && !cli.commands.some((c) => !c.isDefaultCommand && c.isMatched(command)))
      return unknownCommand(cli, command)
    await cli.runMatchedCommand()
  } catch (err) {
    printErr(`agentmesh: ${(err as Error).message}`)
    process.exitCode = 1
    if (!(err instanceof ConfigError) && process.env.AGENTMESH_DEBUG) printErr((err as Error).stack ?? '')
    process.exit(1)
  }
}
