// Presets are c12 layers, as Nitro's are: `preset: 'team'`, `extends: ['team']`, `--preset team`
// and `extends: ['./my-preset.ts']` all resolve here, through c12's `extends`. The built-in names
// live in PRESETS and nowhere else; a preset of your own is a file whose default export is
// definePreset(...).
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { isAbsolute, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ResolvedConfig } from 'c12'
import type { MeshConfig, Plugin } from './types.ts'

/** The built-in presets and what each is for (`agentmesh init` shows these lines). */
export const PRESETS = {
  demo: 'no keys: a demo vendor answers every model (try it out)',
  solo: 'your own vendor keys; cache, budgets and audit log on disk',
  team: 'a shared proxy: virtual keys per person, budgets per team',
} as const

export type PresetName = keyof typeof PRESETS
export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[]

/** A config layer: a config or a preset, with c12's layer keys. */
export type LayerConfig = MeshConfig & {
  $development?: MeshConfig
  $production?: MeshConfig
  $env?: Record<string, MeshConfig>
  /** c12 reads the layer's name from here; it is the `preset` a config built on it reports */
  $meta?: { name?: string }
}

/**
 * A preset of your own, for `extends: ['./my-preset.ts']`. A function is called on each load, so
 * every mesh gets its own plugin instances (they hold state); it may itself extend a preset.
 */
export function definePreset<T extends LayerConfig | (() => LayerConfig)>(preset: T): T {
  return preset
}

export const isPresetName = (id: string): id is PresetName => Object.hasOwn(PRESETS, id)

const PRESETS_DIR = fileURLToPath(new URL('../presets/', import.meta.url))
// 'team', and the package path a config may spell out: 'agentmesh/presets/team(.ts)'
const BUILT_IN = /^(?:agentmesh\/presets\/)?([a-z]+)(?:\.ts)?$/
const FILE_EXTENSIONS = ['', '.ts', '.mts', '.js', '.mjs', '.json']

export class PresetError extends Error {}

/**
 * c12's `resolve` hook for `extends` and `preset`: a built-in name becomes its layer; a file or a
 * package is left to c12, once we know it is there (c12 would only warn and carry on without it).
 */
export async function resolvePreset(id: string, cwd: string): Promise<ResolvedConfig<LayerConfig> | null> {
  const name = BUILT_IN.exec(id)?.[1]
  if (name && isPresetName(name)) return builtInLayer(name)
  if (id.startsWith('.') || isAbsolute(id)) {
    if (!FILE_EXTENSIONS.some((ext) => existsSync(resolve(cwd, id + ext))))
      throw new PresetError(`config: preset file "${id}" not found (looked in ${cwd})`)
    return null
  }
  if (!isPackage(id, cwd)) {
    throw new PresetError(
      `config: preset must be one of ${PRESET_NAMES.join(', ')}, got "${id}" (a preset of your own is a path: extends: ['./my-preset.ts'])`,
    )
  }
  return null
}

async function builtInLayer(name: PresetName): Promise<ResolvedConfig<LayerConfig>> {
  // imported lazily: presets import plugins, and the core imports none
  const mod = await import(`../presets/${name}.ts`)
  const { $meta, ...config } = (typeof mod.default === 'function' ? mod.default() : mod.default) as LayerConfig
  // no configFile: a built-in preset is part of AgentMesh, not a file of the user's to watch
  return { config, cwd: PRESETS_DIR, source: name, meta: { ...$meta, name: $meta?.name ?? name } }
}

function isPackage(id: string, cwd: string): boolean {
  try {
    createRequire(join(cwd, 'noop.js')).resolve(id)
    return true
  } catch {
    return false
  }
}

/** A c12 layer that came through `extends`/`preset` (the config's own layers have no source). */
export const isExtendedLayer = (layer: { source?: string }) => layer.source !== undefined

/**
 * The presets' plugins, merged from the lowest layer up: a layer's plugin replaces a lower
 * layer's of the same name where it stood (team's `audit` keeps solo's place in the order); a
 * new one comes before the lower layers', as a config's plugins come before its preset's.
 */
export function mergePresetPlugins(layers: Array<{ config: LayerConfig | null }>): Plugin[] {
  let merged: Plugin[] = []
  for (const layer of [...layers].reverse()) {
    const fresh: Plugin[] = []
    for (const p of layer.config?.plugins ?? []) {
      const at = merged.findIndex((q) => q.name === p.name)
      if (at >= 0) merged[at] = p
      else fresh.push(p)
    }
    merged = [...fresh, ...merged]
  }
  return merged
}

/** The name a config built on these layers reports: the first named layer (c12's meta.name), else its source. */
export function presetNameOf(layers: Array<{ source?: string; meta?: { name?: string } }>): string {
  return layers.find((l) => l.meta?.name)?.meta?.name ?? layers[0]?.source ?? 'none'
}
