// `agentmesh init`: scaffold agentmesh.config.ts in the user's project and keep the data dir
// (keys, audit log, cache) out of git. Never overwrites a config.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { isAbsolute, join, relative, resolve } from 'node:path'
import { createInterface } from 'node:readline/promises'
import { ConfigError } from './config.ts'
import { PRESET_NAMES as PRESETS, PRESETS as PRESET_HELP, isPresetName, type PresetName } from './presets.ts'

const CONFIG_FILES = ['ts', 'mts', 'cts', 'js', 'mjs', 'cjs', 'json'].map((ext) => `agentmesh.config.${ext}`)

const PRESET_LINES: Record<PresetName, string[]> = {
  demo: [
    "  // demo: no keys needed, the demo vendor answers every model. Switch to 'solo' (your own",
    "  // vendor keys) or 'team' (virtual keys, budgets per team) when you are ready.",
  ],
  solo: [
    '  // solo: vendor keys from ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY (or .env), else',
    "  // the client's own key is passed through.",
  ],
  team: [
    '  // team: every client needs a virtual key (npx agentmesh keys create --team eng --user alice);',
    '  // vendor keys come from the environment or `vendors` only. Set AGENTMESH_ADMIN_TOKEN for the',
    '  // admin API and the event stream; point storage at redis to run several instances.',
  ],
}

export function configTemplate(preset: PresetName, dataDir?: string): string {
  return [
    '// AgentMesh config, loaded by `npx agentmesh dev` (and `serve`) from this folder.',
    "import { defineConfig } from 'agentmesh'",
    '',
    'export default defineConfig({',
    ...PRESET_LINES[preset],
    `  preset: '${preset}',`,
    ...(dataDir ? [`  dataDir: ${JSON.stringify(dataDir)},`] : []),
    '  // port: 8080,',
    "  // storage: { driver: 'redis', url: 'redis://127.0.0.1:6379' },",
    "  // plugins: [],               // your own plugins (definePlugin from 'agentmesh') run before the preset's",
    "  // disable: ['semantic-cache'], // leave out one of the preset's plugins",
    "  // extends: ['./my-preset.ts'],  // your own preset (definePreset from 'agentmesh'), layered under this file",
    '})',
    '',
  ].join('\n')
}

/** Ask for a preset on a terminal; an empty answer is demo. */
async function askPreset(print: (line: string) => void): Promise<PresetName> {
  print('Which preset?')
  for (const p of PRESETS) print(`  ${p.padEnd(5)} ${PRESET_HELP[p]}`)
  const rl = createInterface({ input: process.stdin, output: process.stdout })
  // readline takes Ctrl-C from the terminal and would only pause: make it end the question
  rl.once('SIGINT', () => rl.close())
  rl.setPrompt(`preset (${PRESETS.join(', ')}) [demo]: `)
  rl.prompt()
  try {
    // the iterator keeps lines typed ahead (rl.question drops a line that arrives between two
    // questions) and ends on Ctrl-D
    for await (const line of rl) {
      const answer = line.trim().toLowerCase()
      if (!answer) return 'demo'
      if (isPresetName(answer)) return answer
      print(`  "${answer}" is not a preset`)
      rl.prompt()
    }
  } finally {
    rl.close()
  }
  throw new ConfigError('init: no preset chosen')
}

/** Add the data dir to .gitignore unless a line already names it; the line added, or undefined (already there, or outside the project). */
function ignoreDataDir(cwd: string, dataDir: string): string | undefined {
  const rel = relative(cwd, resolve(cwd, dataDir))
  if (!rel || rel.startsWith('..') || isAbsolute(rel)) return undefined
  const entry = `/${rel.split('\\').join('/')}/`
  const file = join(cwd, '.gitignore')
  const text = existsSync(file) ? readFileSync(file, 'utf8') : ''
  const same = (line: string) => line.trim().replace(/^\//, '').replace(/\/$/, '') === entry.slice(1, -1)
  if (text.split(/\r?\n/).some(same)) return undefined
  const sep = text && !text.endsWith('\n') ? '\n' : ''
  writeFileSync(file, `${text}${sep}# AgentMesh data: keys, audit log, cache\n${entry}\n`)
  return entry
}

export interface InitOptions {
  cwd: string
  preset?: string
  dataDir?: string
  configFile?: string
  print: (line: string) => void
}

export async function runInit(o: InitOptions): Promise<void> {
  const target = o.configFile ?? 'agentmesh.config.ts'
  const existing = [target, ...CONFIG_FILES].find((f) => existsSync(resolve(o.cwd, f)))
  if (existing) throw new ConfigError(`init: ${existing} already exists; not overwriting it`)
  let preset: PresetName
  if (o.preset !== undefined) {
    if (!isPresetName(o.preset))
      throw new ConfigError(`--preset must be one of ${PRESETS.join(', ')}, got "${o.preset}"`)
    preset = o.preset
  } else if (process.stdin.isTTY && process.stdout.isTTY) {
    preset = await askPreset(o.print)
  } else {
    preset = 'demo'
    o.print(`no --preset given and no terminal to ask on: using demo (--preset ${PRESETS.join('|')})`)
  }
  // 'wx': a config that appeared meanwhile is still not overwritten
  writeFileSync(resolve(o.cwd, target), configTemplate(preset, o.dataDir), { flag: 'wx' })
  o.print(`wrote ${target} (preset ${preset})`)
  const ignored = ignoreDataDir(o.cwd, o.dataDir ?? '.agentmesh')
  if (ignored) o.print(`added ${ignored} to .gitignore`)
  o.print('next: npx agentmesh dev')
}
