// Config as code: defineConfig for typing, c12 for loading (agentmesh.config.ts, .agentmeshrc,
// .env, $development/$production, extends), presets as the lowest layer, then validation with
// messages that name the field.
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { loadConfig } from 'c12'
import { defu } from 'defu'
import { sortPlugins } from './plugin.ts'
import type { MeshConfig, Plugin, ResolvedMeshConfig } from './types.ts'

export type PresetName = 'demo' | 'solo' | 'team'
export const PRESETS: PresetName[] = ['demo', 'solo', 'team']

/** Typed config with editor completion; c12 layer keys ($development, extends) allowed. */
export function defineConfig(config: MeshConfig & { extends?: string | string[]; $development?: MeshConfig; $production?: MeshConfig; $env?: Record<string, MeshConfig> }): MeshConfig {
  return config
}

export async function loadPreset(name: PresetName): Promise<MeshConfig> {
  // imported lazily: presets import plugins, which import core modules
  const mod = await import(`../presets/${name}.ts`)
  return (typeof mod.default === 'function' ? mod.default() : mod.default) as MeshConfig
}

export interface LoadOptions {
  cwd?: string
  /** path to a config file; default: agentmesh.config.{ts,mts,js,mjs,json} in cwd */
  configFile?: string
  /** preset layered under the config (CLI --preset wins over the config's `preset`) */
  preset?: string
  /** highest-priority values (CLI flags) */
  overrides?: MeshConfig
  envName?: string
  jiti?: any
}

export interface LoadedConfig {
  config: ResolvedMeshConfig
  /** files to watch for reload */
  files: string[]
}

const presetAlias = /^(?:agentmesh\/presets\/|\.{0,2}\/?presets\/)?(demo|solo|team)(?:\.ts)?$/

export async function loadMeshConfig(opts: LoadOptions = {}): Promise<LoadedConfig> {
  const cwd = resolve(opts.cwd ?? process.cwd())
  if (opts.configFile && !existsSync(resolve(cwd, opts.configFile))) {
    throw new ConfigError(`config file not found: ${opts.configFile}`)
  }
  let usedPreset: string | undefined
  const loaded = await loadConfig<MeshConfig & Record<string, unknown>>({
    name: 'agentmesh',
    cwd,
    configFile: opts.configFile,
    rcFile: '.agentmeshrc',
    dotenv: true,
    globalRc: false,
    packageJson: false,
    envName: opts.envName ?? (process.env.NODE_ENV === 'production' ? 'production' : 'development'),
    jiti: opts.jiti,
    giget: false,
    // `extends: ['team']` (or 'agentmesh/presets/team') layers a preset
    resolve: async (id) => {
      const m = presetAlias.exec(id)
      if (!m) return null
      usedPreset = m[1]
      return { config: (await loadPreset(m[1] as PresetName)) as any, configFile: `presets/${m[1]}.ts`, source: `preset:${m[1]}` }
    },
  }).catch((err: Error) => {
    throw new ConfigError(`cannot load config${opts.configFile ? ` ${opts.configFile}` : ''}: ${err.message}`)
  })
  // c12 reports layers by name without extension; the main file comes resolved
  const candidates = [loaded.configFile, resolve(cwd, '.agentmeshrc'), resolve(cwd, '.env')]
  const files = [...new Set(candidates.filter((f): f is string => !!f && existsSync(f)))]
  const user = { ...(loaded.config as MeshConfig) }
  const sources = files.map((f) => f.replace(cwd + '/', ''))
  const config = await resolveConfig(defu(opts.overrides ?? {}, user), { preset: opts.preset, extendedPreset: usedPreset, sources })
  return { config, files }
}

export class ConfigError extends Error {}

/**
 * Apply the preset layer and defaults, then validate. Used by the CLI (after c12) and by
 * createAgentMesh(config) in-process.
 */
export async function resolveConfig(input: MeshConfig, opts: { preset?: string; extendedPreset?: string; sources?: string[] } = {}): Promise<ResolvedMeshConfig> {
  const presetName = opts.preset ?? input.preset ?? opts.extendedPreset ?? 'demo'
  if (!PRESETS.includes(presetName as PresetName)) throw new ConfigError(`preset must be one of ${PRESETS.join(', ')}, got "${presetName}"`)
  validateInput(input)
  // a preset already layered through `extends` is not layered twice
  validatePlugins(input.plugins ?? [])
  const disable = input.disable ?? []
  let layered: MeshConfig
  if (opts.extendedPreset === presetName) layered = input
  else {
    // `disable` leaves out the preset's plugins; a plugin the config lists itself always stays
    const preset = await loadPreset(presetName as PresetName)
    layered = defu(input, { ...preset, plugins: (preset.plugins ?? []).filter((p) => !disable.includes(p.name)) }) as MeshConfig
  }
  const c = layered as MeshConfig
  const dataDir = c.dataDir ?? process.env.AGENTMESH_DATA_DIR ?? '.agentmesh'
  const resolved: ResolvedMeshConfig = {
    preset: presetName as PresetName,
    port: c.port ?? 8080,
    host: c.host ?? '127.0.0.1',
    dataDir,
    storage: { driver: 'memory', ...c.storage },
    // through `extends` the preset's plugins are already merged in, so `disable` applies to all
    plugins: sortPlugins(c.plugins ?? [], opts.extendedPreset === presetName ? disable : []),
    disable: c.disable ?? [],
    vendors: c.vendors ?? {},
    limits: { bodyBytes: c.limits?.bodyBytes ?? 10 * 1024 * 1024, upstreamTimeoutMs: c.limits?.upstreamTimeoutMs ?? 120_000 },
    cors: { origins: c.cors?.origins ?? DEFAULT_ORIGINS },
    allowedHosts: c.allowedHosts ?? [],
    forwardClientKeys: c.forwardClientKeys ?? true,
    events: { access: c.events?.access ?? 'open' },
    trustIdentityHeaders: c.trustIdentityHeaders ?? true,
    defaultIdentity: { team: c.defaultIdentity?.team ?? 'default', user: c.defaultIdentity?.user ?? 'anonymous' },
    log: { level: c.log?.level ?? 'info' },
    hooks: c.hooks ?? {},
    pricing: c.pricing ?? {},
    sources: opts.sources ?? [],
    ...(c.quota ? { quota: c.quota } : {}),
  }
  validateResolved(resolved)
  return resolved
}

/** the browser extension and pages served from this machine; any other site needs configuring */
export const DEFAULT_ORIGINS = ['chrome-extension://*', 'http://localhost:*', 'http://127.0.0.1:*', 'http://[::1]:*']

const KNOWN = new Set(['preset', 'port', 'host', 'dataDir', 'storage', 'plugins', 'disable', 'vendors', 'limits', 'cors', 'allowedHosts', 'forwardClientKeys', 'events', 'trustIdentityHeaders', 'defaultIdentity', 'log', 'hooks', 'pricing', 'quota'])

function fail(field: string, expected: string, got: unknown): never {
  const shown = typeof got === 'string' ? `"${got}"` : typeof got === 'function' ? 'a function' : JSON.stringify(got)
  throw new ConfigError(`config: \`${field}\` must be ${expected}, got ${shown}`)
}

function validateInput(c: MeshConfig) {
  for (const key of Object.keys(c)) {
    if (!KNOWN.has(key) && !key.startsWith('$') && key !== 'extends') {
      throw new ConfigError(`config: unknown field \`${key}\`; known fields are ${[...KNOWN].join(', ')}`)
    }
  }
}

/** Checked before sorting, so an index names the entry as written (the user's plugins come before the preset's). */
function validatePlugins(plugins: unknown) {
  if (!Array.isArray(plugins)) fail('plugins', 'an array of plugins', plugins)
  plugins.forEach((p: Plugin, i) => {
    if (!p || typeof p !== 'object') fail(`plugins[${i}]`, 'a plugin object (did you forget to call the plugin factory?)', p)
    if (typeof p.name !== 'string' || !p.name) fail(`plugins[${i}].name`, 'a non-empty string', p.name)
    if (p.enforce !== undefined && p.enforce !== 'pre' && p.enforce !== 'post') fail(`plugins[${i}] (${p.name}).enforce`, '"pre", "post" or absent', p.enforce)
    if (p.setup !== undefined && typeof p.setup !== 'function') fail(`plugins[${i}] (${p.name}).setup`, 'a function', p.setup)
    for (const [h, fn] of Object.entries(p.hooks ?? {})) {
      if (!['beforeRequest', 'cacheLookup', 'route', 'afterResponse'].includes(h)) fail(`plugins[${i}] (${p.name}).hooks.${h}`, 'one of beforeRequest, cacheLookup, route, afterResponse', h)
      if (typeof fn !== 'function') fail(`plugins[${i}] (${p.name}).hooks.${h}`, 'a function', fn)
    }
  })
}

function validateResolved(c: ResolvedMeshConfig) {
  if (!Number.isInteger(c.port) || c.port < 0 || c.port > 65535) fail('port', 'an integer from 0 to 65535', c.port)
  if (typeof c.host !== 'string' || !c.host) fail('host', 'a host name or address', c.host)
  if (typeof c.dataDir !== 'string' || !c.dataDir) fail('dataDir', 'a directory path', c.dataDir)
  if (!['memory', 'fs', 'redis'].includes(c.storage.driver)) fail('storage.driver', 'one of memory, fs, redis', c.storage.driver)
  if (c.storage.driver === 'redis' && (typeof c.storage.url !== 'string' || !/^rediss?:\/\//.test(c.storage.url))) fail('storage.url', 'a redis:// URL when storage.driver is redis', c.storage.url)
  if (!Array.isArray(c.disable) || c.disable.some((d) => typeof d !== 'string')) fail('disable', 'an array of plugin names', c.disable)
  for (const [k, v] of Object.entries(c.limits)) if (typeof v !== 'number' || !(v > 0)) fail(`limits.${k}`, 'a positive number', v)
  if (c.cors.origins !== '*' && (!Array.isArray(c.cors.origins) || c.cors.origins.some((o) => typeof o !== 'string'))) fail('cors.origins', '"*" or an array of origins', c.cors.origins)
  if (typeof c.trustIdentityHeaders !== 'boolean') fail('trustIdentityHeaders', 'true or false', c.trustIdentityHeaders)
  if (c.allowedHosts !== true && (!Array.isArray(c.allowedHosts) || c.allowedHosts.some((h) => typeof h !== 'string' || !h))) fail('allowedHosts', 'true or an array of host names', c.allowedHosts)
  if (typeof c.forwardClientKeys !== 'boolean') fail('forwardClientKeys', 'true or false', c.forwardClientKeys)
  if (c.events.access !== 'open' && c.events.access !== 'authenticated') fail('events.access', '"open" or "authenticated"', c.events.access)
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(c.log.level)) fail('log.level', 'one of debug, info, warn, error, silent', c.log.level)
  for (const [name, v] of Object.entries(c.vendors)) {
    if (!['openai', 'anthropic', 'google'].includes(name)) fail(`vendors.${name}`, 'one of vendors.openai, vendors.anthropic, vendors.google', name)
    if (v?.baseURL !== undefined && (typeof v.baseURL !== 'string' || !/^https?:\/\//.test(v.baseURL))) fail(`vendors.${name}.baseURL`, 'an http(s) URL', v.baseURL)
    if (v?.apiKey !== undefined && typeof v.apiKey !== 'string') fail(`vendors.${name}.apiKey`, 'a string', '(hidden)')
  }
  for (const [model, p] of Object.entries(c.pricing)) {
    for (const k of ['input', 'output', 'cacheRead', 'cacheWrite'] as const) {
      const v = (p as any)?.[k]
      if ((k === 'input' || k === 'output' || v !== undefined) && (typeof v !== 'number' || !(v >= 0))) fail(`pricing.${model}.${k}`, 'a non-negative number (USD per million tokens)', v)
    }
  }
  for (const [h, fn] of Object.entries(c.hooks)) if (typeof fn !== 'function') fail(`hooks.${h}`, 'a function', fn)
}

/** The resolved config with secrets masked, for `agentmesh config`. */
export function maskedConfig(c: ResolvedMeshConfig): unknown {
  const SECRET_KEY = /key|token|secret|password/i
  const walk = (v: unknown, key = ''): unknown => {
    if (typeof v === 'function') return `[function ${(v as Function).name || 'anonymous'}]`
    if (typeof v === 'string') return SECRET_KEY.test(key) && v ? v.slice(0, 3) + '…(masked)' : v.replace(/(redis[s]?:\/\/[^:]*:)[^@]*@/, '$1***@')
    if (Array.isArray(v)) return v.map((x) => walk(x, key))
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, k)]))
    return v
  }
  return walk({ ...c, plugins: c.plugins.map((p) => ({ name: p.name, enforce: p.enforce, options: p.options })) })
}
