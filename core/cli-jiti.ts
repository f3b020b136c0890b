// The jiti instances the CLI loads configs with. A config in the user's own folder imports
// 'agentmesh' (and 'agentmesh/plugins/*', 'agentmesh/presets/*'); the package need not be
// installed there, so those names are aliased to the copy of AgentMesh that is running.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { createJiti, type Jiti } from 'jiti'

/** The package root: the folder that holds core/, plugins/ and presets/. */
export const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '')

/**
 * The package's public entry points, as its `exports` map names them. jiti tries the deepest
 * alias first, so 'agentmesh/plugins/x' never falls through to the bare 'agentmesh' entry.
 */
export function packageAliases(root = PACKAGE_ROOT): Record<string, string> {
  return {
    'agentmesh/plugins': `${root}/plugins`,
    'agentmesh/presets': `${root}/presets`,
    agentmesh: `${root}/core/index.ts`,
  }
}

/**
 * A jiti for loading configs. With `moduleCache` it shares Node's module cache with the CLI (a
 * config's `import { definePlugin } from 'agentmesh'` gets the very modules the proxy runs); a
 * reload needs a fresh instance without it, or the edited config file comes back as first loaded.
 */
export function configJiti(opts: { moduleCache: boolean }): Jiti {
  // transpiled files cached next to the package's dependencies, as bin/agentmesh.mjs does
  const modules = `${PACKAGE_ROOT}/node_modules`
  return createJiti(`${PACKAGE_ROOT}/core/cli.ts`, {
    alias: packageAliases(),
    moduleCache: opts.moduleCache,
    fsCache: existsSync(modules) ? `${modules}/.cache/jiti` : true,
    interopDefault: true,
  })
}
