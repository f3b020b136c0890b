// The dashboard's files: its own (ui/) and the ESM builds of Preact, htm and uPlot straight from
// node_modules, so nothing is built at run time. Read once, on first request, and kept in memory.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)
const pkgDir = (name: string) => {
  // resolve the package's entry, then climb to its folder: not every package exports package.json
  let dir = dirname(require.resolve(name))
  while (!dir.endsWith(`node_modules/${name}`) && dirname(dir) !== dir) dir = dirname(dir)
  return dir
}

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
}

/** URL name under /agentmesh/ui/ -> file on disk */
function files(): Record<string, () => string> {
  return {
    'app.js': () => join(here, 'ui/app.js'),
    'app.css': () => join(here, 'ui/app.css'),
    'index.html': () => join(here, 'ui/index.html'),
    'vendor/preact.js': () => join(pkgDir('preact'), 'dist/preact.mjs'),
    'vendor/hooks.js': () => join(pkgDir('preact'), 'hooks/dist/hooks.mjs'),
    'vendor/htm.js': () => join(pkgDir('htm'), 'dist/htm.module.js'),
    'vendor/uplot.js': () => join(pkgDir('uplot'), 'dist/uPlot.esm.js'),
    'vendor/uplot.css': () => join(pkgDir('uplot'), 'dist/uPlot.min.css'),
  }
}

export interface Asset {
  body: Buffer
  type: string
}

export function createAssets(): (name: string) => Asset | undefined {
  const known = files()
  const cache = new Map<string, Asset>()
  return (name) => {
    const hit = cache.get(name)
    if (hit) return hit
    const path = known[name]?.()
    if (!path) return undefined
    const asset = {
      body: readFileSync(path),
      type: TYPES[path.slice(path.lastIndexOf('.'))] ?? 'application/octet-stream',
    }
    cache.set(name, asset)
    return asset
  }
}
