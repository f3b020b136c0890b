// Config as code: defineConfig for typing, c12 for loading (agentmesh.config.ts, .agentmeshrc,
// .env, $development/$production), presets as c12 layers under the config (core/presets.ts), then
// validation with messages that name the field. The CLI and createAgentMesh(config) share one
// path: c12 layers the config over what its `preset` and `extends` name, and nothing else.
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { loadConfig, type LoadConfigOptions, type ResolvedConfig } from 'c12'
import { sortPlugins } from './plugin.ts'
import {
  isExtendedLayer,
  mergePresetPlugins,
  PRESET_NAMES,
  PresetError,
  presetNameOf,
  resolvePreset,
  type LayerConfig,
} from './presets.ts'
import type { MeshConfig, Plugin, ResolvedMeshConfig, ResolvedRoutingConfig } from './types.ts'

export { definePreset, PRESET_NAMES, type PresetName } from './presets.ts'

/** Typed config with editor completion; c12 layer keys ($development, extends) allowed. */
export function defineConfig(config: LayerConfig): LayerConfig {
  return config
}

export interface LoadOptions {
  cwd?: string
  /** path to a config file; default: agentmesh.config.{ts,mts,js,mjs,json} in cwd */
  configFile?: string
  /** preset layered under the config; replaces the config's `preset` (not its `extends`), as --preset does */
  preset?: string
  /** the preset when neither the config nor `preset` names one (the CLI's is demo) */
  defaultPreset?: string
  /** highest-priority values (CLI flags) */
  overrides?: MeshConfig
  envName?: string
  jiti?: LoadConfigOptions['jiti']
}

export interface LoadedConfig {
  config: ResolvedMeshConfig
  /** files to watch for reload */
  files: string[]
}

export class ConfigError extends Error {}

type Layers = ResolvedConfig<LayerConfig>

/** c12 with presets as layers: `extends` and `preset` are both its extend keys, as in Nitro. */
async function loadLayers(
  options: LoadConfigOptions<LayerConfig>,
  from: { file: boolean; what: string },
): Promise<Layers> {
  const cwd = resolve(options.cwd ?? process.cwd())
  return loadConfig<LayerConfig>({
    name: 'agentmesh',
    globalRc: false,
    packageJson: false,
    giget: false,
    ...options,
    cwd,
    extend: { extendKey: ['extends', 'preset'] },
    // in-process there is no file: the config object (as `overrides`) is the top layer
    resolve: (id, o) => (!from.file && id === '.' ? { config: {} } : resolvePreset(id, o.cwd ?? cwd)),
  }).catch((err: Error) => {
    if (err instanceof PresetError || err instanceof ConfigError) throw new ConfigError(err.message)
    throw new ConfigError(`cannot load config${from.what}: ${err.message}`)
  })
}

/** How the CLI loads: the config file, .agentmeshrc and .env, flags over them, the default preset. */
export async function loadMeshConfig(opts: LoadOptions = {}): Promise<LoadedConfig> {
  const cwd = resolve(opts.cwd ?? process.cwd())
  if (opts.configFile && !existsSync(resolve(cwd, opts.configFile))) {
    throw new ConfigError(`config file not found: ${opts.configFile}`)
  }
  const loaded = await loadLayers(
    {
      cwd,
      configFile: opts.configFile,
      rcFile: '.agentmeshrc',
      dotenv: true,
      envName: opts.envName ?? (process.env.NODE_ENV === 'production' ? 'production' : 'development'),
      jiti: opts.jiti,
      overrides: ({ rawConfigs }) => {
        const own = [rawConfigs.main, rawConfigs.rc] as Array<LayerConfig | undefined>
        for (const c of own) if (c) checkLayerKeys(c)
        // the default only when nothing asks for a layer: a config's `extends` is its own choice
        const asked = own.some((c) => c?.preset !== undefined || c?.extends !== undefined)
        const preset = opts.preset ?? (asked ? undefined : opts.defaultPreset)
        return { ...opts.overrides, ...(preset ? { preset } : {}) }
      },
    },
    { file: true, what: opts.configFile ? ` ${opts.configFile}` : '' },
  )
  // a preset of the user's own is watched too; the built-in ones have no configFile
  const layerFiles = (loaded.layers ?? []).filter(isExtendedLayer).map((l) => l.configFile)
  const candidates = [loaded.configFile, resolve(cwd, '.agentmeshrc'), resolve(cwd, '.env'), ...layerFiles]
  const files = [...new Set(candidates.filter((f): f is string => !!f && existsSync(f)))]
  const sources = files.map((f) => f.replace(cwd + '/', ''))
  return { config: await resolveLayers(loaded, sources), files }
}

/**
 * createAgentMesh(config) in-process: the config over the presets it names (none named, none
 * loaded), defaults filled in, validated. `cwd` is where relative `extends` paths start.
 */
export async function resolveConfig(input: MeshConfig, opts: { cwd?: string } = {}): Promise<ResolvedMeshConfig> {
  checkLayerKeys(input)
  const loaded = await loadLayers(
    { cwd: opts.cwd, rcFile: false, dotenv: false, envName: false, overrides: input as LayerConfig },
    { file: false, what: '' },
  )
  return resolveLayers(loaded, [])
}

/** The merged layers as the core uses them: the config's plugins first, then the presets'. */
async function resolveLayers(loaded: Layers, sources: string[]): Promise<ResolvedMeshConfig> {
  const c = loaded.config as MeshConfig
  validateInput(c)
  const layers = loaded.layers ?? []
  const presets = layers.filter(isExtendedLayer)
  // checked before merging, so an index names the entry as written in its layer
  const own = layers.filter((l) => !isExtendedLayer(l)).flatMap((l) => validatePlugins(l.config?.plugins ?? []))
  for (const l of presets) validatePlugins(l.config?.plugins ?? [], `preset ${l.meta?.name ?? l.source} `)
  if (c.disable !== undefined && (!Array.isArray(c.disable) || c.disable.some((d) => typeof d !== 'string')))
    fail('disable', 'an array of plugin names', c.disable)
  // `disable` leaves out the presets' plugins; a plugin the config lists itself always stays
  const disable = c.disable ?? []
  const fromPresets = mergePresetPlugins(presets).filter((p) => !disable.includes(p.name))
  const resolved = withDefaults(c, {
    preset: presetNameOf(presets),
    plugins: sortPlugins([...own, ...fromPresets]),
    sources,
  })
  validateResolved(resolved)
  return resolved
}

function withDefaults(
  c: MeshConfig,
  set: Pick<ResolvedMeshConfig, 'preset' | 'plugins' | 'sources'>,
): ResolvedMeshConfig {
  return {
    preset: set.preset,
    port: c.port ?? 8080,
    host: c.host ?? '127.0.0.1',
    dataDir: c.dataDir ?? process.env.AGENTMESH_DATA_DIR ?? '.agentmesh',
    storage: { driver: 'memory', ...c.storage },
    plugins: set.plugins,
    disable: c.disable ?? [],
    vendors: c.vendors ?? {},
    limits: {
      bodyBytes: c.limits?.bodyBytes ?? 10 * 1024 * 1024,
      upstreamTimeoutMs: c.limits?.upstreamTimeoutMs ?? 120_000,
    },
    routing: routingOf(c),
    cors: { origins: c.cors?.origins ?? DEFAULT_ORIGINS },
    allowedHosts: c.allowedHosts ?? [],
    forwardClientKeys: c.forwardClientKeys ?? true,
    events: { access: c.events?.access ?? 'open' },
    trustIdentityHeaders: c.trustIdentityHeaders ?? true,
    defaultIdentity: { team: c.defaultIdentity?.team ?? 'default', user: c.defaultIdentity?.user ?? 'anonymous' },
    log: { level: c.log?.level ?? 'info' },
    hooks: c.hooks ?? {},
    pricing: c.pricing ?? {},
    sources: set.sources,
    ...(c.quota ? { quota: c.quota } : {}),
    // --approve-over, read by the approval plugin (plugins/approval)
    ...(approvalOf(c) ? { approval: approvalOf(c) } : {}),
  }
}

/** the browser extension and pages served from this machine; any other site needs configuring */
export const DEFAULT_ORIGINS = ['chrome-extension://*', 'http://localhost:*', 'http://127.0.0.1:*', 'http://[::1]:*']
/**
 * DEFAULT_ORIGINS and `null`: the extension's opt-in redirect of api.openai.com/api.anthropic.com
 * reaches the proxy with `Origin: null` on the preflight and the request (measured, Chromium 156).
 * A sandboxed frame on any site sends `null` too, so only presets
 * where such a call can spend nothing allow it: demo (its own vendor) and team (a virtual key is
 * required); under solo, whose calls spend the operator's keys, a config opts in.
 */
export const ORIGINS_WITH_NULL = [...DEFAULT_ORIGINS, 'null']

const KNOWN = new Set([
  'preset',
  'port',
  'host',
  'dataDir',
  'storage',
  'plugins',
  'disable',
  'vendors',
  'limits',
  'routing',
  'cors',
  'allowedHosts',
  'forwardClientKeys',
  'events',
  'trustIdentityHeaders',
  'defaultIdentity',
  'log',
  'hooks',
  'pricing',
  'quota',
  'approval',
])

/** `approval: { approveOverUsd }`, what --approve-over sets; validated here so a bad value names the field */
function approvalOf(c: MeshConfig): { approveOverUsd?: number } | undefined {
  const a = (c as { approval?: { approveOverUsd?: unknown } }).approval
  if (a === undefined) return undefined
  if (!a || typeof a !== 'object' || Array.isArray(a)) fail('approval', 'an object such as { approveOverUsd: 5 }', a)
  for (const k of Object.keys(a)) if (k !== 'approveOverUsd') fail(`approval.${k}`, 'approveOverUsd (unknown field)', k)
  if (a.approveOverUsd !== undefined && !(typeof a.approveOverUsd === 'number' && a.approveOverUsd >= 0))
    fail('approval.approveOverUsd', 'a number of USD >= 0', a.approveOverUsd)
  return a as { approveOverUsd?: number }
}

/** `routing` with its defaults (docs/routing.md), each field checked where it is read so a bad value names it */
export function routingOf(c: MeshConfig): ResolvedRoutingConfig {
  const r = c.routing ?? {}
  if (!r || typeof r !== 'object' || Array.isArray(r)) fail('routing', 'an object such as { retries: 2 }', r)
  const cd = r.cooldown ?? {}
  if (!cd || typeof cd !== 'object' || Array.isArray(cd))
    fail('routing.cooldown', 'an object such as { failures: 3, windowMs: 60000, cooldownMs: 30000 }', cd)
  for (const k of Object.keys(r))
    if (!['retries', 'backoffMs', 'maxBackoffMs', 'retryAfterCapMs', 'cooldown'].includes(k))
      fail(`routing.${k}`, 'one of retries, backoffMs, maxBackoffMs, retryAfterCapMs, cooldown (unknown field)', k)
  for (const k of Object.keys(cd))
    if (!['failures', 'windowMs', 'cooldownMs', 'syncMs'].includes(k))
      fail(`routing.cooldown.${k}`, 'one of failures, windowMs, cooldownMs, syncMs (unknown field)', k)
  // a day at most: a longer wait is a typo, not a policy
  const int = (field: string, v: unknown, dflt: number, min: number, what: string, max = 86_400_000): number => {
    if (v === undefined) return dflt
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(field, what, v)
    return v
  }
  return {
    retries: int('routing.retries', r.retries, 0, 0, 'an integer from 0 to 10', 10),
    backoffMs: int('routing.backoffMs', r.backoffMs, 250, 0, 'a whole number of ms from 0 to 86400000'),
    maxBackoffMs: int('routing.maxBackoffMs', r.maxBackoffMs, 5000, 0, 'a whole number of ms from 0 to 86400000'),
    retryAfterCapMs: int(
      'routing.retryAfterCapMs',
      r.retryAfterCapMs,
      10_000,
      0,
      'a whole number of ms from 0 to 86400000',
    ),
    cooldown: {
      failures: int('routing.cooldown.failures', cd.failures, 3, 1, 'an integer >= 1'),
      windowMs: int('routing.cooldown.windowMs', cd.windowMs, 60_000, 1, 'a whole number of ms from 1 to 86400000'),
      cooldownMs: int(
        'routing.cooldown.cooldownMs',
        cd.cooldownMs,
        30_000,
        1,
        'a whole number of ms from 1 to 86400000',
      ),
      syncMs: int('routing.cooldown.syncMs', cd.syncMs, 1000, 1, 'a whole number of ms from 1 to 86400000'),
    },
  }
}

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

/** One layer's plugins; `layer` names a preset's ("preset team "), so the message says whose entry it is. */
function validatePlugins(plugins: unknown, layer = ''): Plugin[] {
  if (!Array.isArray(plugins)) fail(`${layer}plugins`, 'an array of plugins', plugins)
  plugins.forEach((p: Plugin, i) => {
    const at = `${layer}plugins[${i}]`
    if (!p || typeof p !== 'object') fail(at, 'a plugin object (did you forget to call the plugin factory?)', p)
    if (typeof p.name !== 'string' || !p.name) fail(`${at}.name`, 'a non-empty string', p.name)
    if (p.enforce !== undefined && p.enforce !== 'pre' && p.enforce !== 'post')
      fail(`${at} (${p.name}).enforce`, '"pre", "post" or absent', p.enforce)
    if (p.setup !== undefined && typeof p.setup !== 'function') fail(`${at} (${p.name}).setup`, 'a function', p.setup)
    for (const [h, fn] of Object.entries(p.hooks ?? {})) {
      if (!['beforeRequest', 'cacheLookup', 'route', 'afterResponse'].includes(h))
        fail(`${at} (${p.name}).hooks.${h}`, 'one of beforeRequest, cacheLookup, route, afterResponse', h)
      if (typeof fn !== 'function') fail(`${at} (${p.name}).hooks.${h}`, 'a function', fn)
    }
  })
  return plugins
}

/** `preset` and `extends` as c12 needs them (it would skip anything else with a warning). */
function checkLayerKeys(c: LayerConfig) {
  if (c.preset !== undefined && (typeof c.preset !== 'string' || !c.preset))
    fail('preset', `one of ${PRESET_NAMES.join(', ')} or a path to a preset file`, c.preset)
  const ext = c.extends
  if (
    ext !== undefined &&
    typeof ext !== 'string' &&
    !(Array.isArray(ext) && ext.every((e) => typeof e === 'string' && e))
  )
    fail('extends', 'a preset name or path, or an array of them', ext)
}

function validateResolved(c: ResolvedMeshConfig) {
  if (!Number.isInteger(c.port) || c.port < 0 || c.port > 65535) fail('port', 'an integer from 0 to 65535', c.port)
  if (typeof c.host !== 'string' || !c.host) fail('host', 'a host name or address', c.host)
  if (typeof c.dataDir !== 'string' || !c.dataDir) fail('dataDir', 'a directory path', c.dataDir)
  if (!['memory', 'fs', 'redis'].includes(c.storage.driver))
    fail('storage.driver', 'one of memory, fs, redis', c.storage.driver)
  if (c.storage.driver === 'redis' && (typeof c.storage.url !== 'string' || !/^rediss?:\/\//.test(c.storage.url)))
    fail('storage.url', 'a redis:// URL when storage.driver is redis', c.storage.url)
  for (const [k, v] of Object.entries(c.limits))
    if (typeof v !== 'number' || !(v > 0)) fail(`limits.${k}`, 'a positive number', v)
  if (c.cors.origins !== '*' && (!Array.isArray(c.cors.origins) || c.cors.origins.some((o) => typeof o !== 'string')))
    fail('cors.origins', '"*" or an array of origins', c.cors.origins)
  if (typeof c.trustIdentityHeaders !== 'boolean') fail('trustIdentityHeaders', 'true or false', c.trustIdentityHeaders)
  if (
    c.allowedHosts !== true &&
    (!Array.isArray(c.allowedHosts) || c.allowedHosts.some((h) => typeof h !== 'string' || !h))
  )
    fail('allowedHosts', 'true or an array of host names', c.allowedHosts)
  if (typeof c.forwardClientKeys !== 'boolean') fail('forwardClientKeys', 'true or false', c.forwardClientKeys)
  if (c.events.access !== 'open' && c.events.access !== 'authenticated')
    fail('events.access', '"open" or "authenticated"', c.events.access)
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(c.log.level))
    fail('log.level', 'one of debug, info, warn, error, silent', c.log.level)
  for (const [name, v] of Object.entries(c.vendors)) {
    if (!['openai', 'anthropic', 'google'].includes(name))
      fail(`vendors.${name}`, 'one of vendors.openai, vendors.anthropic, vendors.google', name)
    if (v?.baseURL !== undefined && (typeof v.baseURL !== 'string' || !/^https?:\/\//.test(v.baseURL)))
      fail(`vendors.${name}.baseURL`, 'an http(s) URL', v.baseURL)
    if (v?.apiKey !== undefined && typeof v.apiKey !== 'string') fail(`vendors.${name}.apiKey`, 'a string', '(hidden)')
  }
  for (const [model, p] of Object.entries(c.pricing)) {
    for (const k of ['input', 'output', 'cacheRead', 'cacheWrite'] as const) {
      const v = (p as any)?.[k]
      if ((k === 'input' || k === 'output' || v !== undefined) && (typeof v !== 'number' || !(v >= 0)))
        fail(`pricing.${model}.${k}`, 'a non-negative number (USD per million tokens)', v)
    }
  }
  for (const [h, fn] of Object.entries(c.hooks)) if (typeof fn !== 'function') fail(`hooks.${h}`, 'a function', fn)
}

/** The resolved config with secrets masked, for `agentmesh config`. */
export function maskedConfig(c: ResolvedMeshConfig): unknown {
  const SECRET_KEY = /key|token|secret|password/i
  const walk = (v: unknown, key = ''): unknown => {
    if (typeof v === 'function') return `[function ${(v as Function).name || 'anonymous'}]`
    if (typeof v === 'string')
      return SECRET_KEY.test(key) && v
        ? v.slice(0, 3) + '…(masked)'
        : v.replace(/(redis[s]?:\/\/[^:]*:)[^@]*@/, '$1***@')
    if (Array.isArray(v)) return v.map((x) => walk(x, key))
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, k)]))
    return v
  }
  return walk({ ...c, plugins: c.plugins.map((p) => ({ name: p.name, enforce: p.enforce, options: p.options })) })
}
