// Training stays out of the runtime (issue 15): what the proxy loads for the semantic cache,
// followed through every relative import, reaches no file of tools/ (the trainers, the data
// readers, the augmentation), and no file of core/ or plugins/ imports from tools/ at all.
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

const root = resolve(import.meta.dirname, '..')
const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)'(\.{1,2}\/[^']+)'/g

function importsOf(file: string): string[] {
  const src = readFileSync(file, 'utf8')
  return [...src.matchAll(IMPORT)].map((m) => resolve(dirname(file), m[1]!))
}

/** every module reachable from entry through relative imports, as paths relative to the repo */
function closure(entry: string): Set<string> {
  const seen = new Set<string>()
  const todo = [resolve(root, entry)]
  while (todo.length) {
    const file = todo.pop()!
    const rel = relative(root, file)
    if (seen.has(rel)) continue
    seen.add(rel)
    if (/\.(ts|mjs)$/.test(file)) todo.push(...importsOf(file))
  }
  return seen
}

function sources(dir: string): string[] {
  return readdirSync(resolve(root, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.(ts|mjs)$/.test(f))
    .map((f) => join(dir, f))
}

describe('the semantic cache at run time', () => {
  it('imports no training code: its modules reach nothing under tools/', () => {
    const loaded = closure('plugins/semantic-cache/index.ts')
    // the walk follows the plugin into its inference code and the core (so it can see an import)
    expect(loaded).toContain('plugins/semantic-cache/judge.ts')
    expect(loaded).toContain('plugins/semantic-cache/mlp.ts')
    expect(loaded).toContain('plugins/semantic-cache/gbdt.ts')
    expect(loaded).toContain('core/plugin.ts')
    expect([...loaded].filter((f) => f.startsWith('tools/'))).toEqual([])
  })

  it('no file of core/ or plugins/ imports from tools/, while the trainers import the plugin', () => {
    const offenders = [...sources('core'), ...sources('plugins')].filter((f) =>
      importsOf(resolve(root, f)).some((t) => relative(root, t).startsWith('tools/')),
    )
    expect(offenders).toEqual([])
    expect(importsOf(resolve(root, 'tools/semantic-train/mlp-train.ts')).map((t) => relative(root, t))).toContain(
      'plugins/semantic-cache/mlp.ts',
    )
  })
})
