#!/usr/bin/env node
// After tsc (npm run build): the files the built package reads beside its modules (the semantic
// cache's weights, its worker's plain-JS entry) copied into dist/, where import.meta.url finds them.
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

function copy(dir) {
  for (const name of readdirSync(join(root, dir))) {
    const rel = join(dir, name)
    if (statSync(join(root, rel)).isDirectory()) {
      if (name !== 'train' && name !== 'node_modules') copy(rel)
    } else if (name.endsWith('.json')) {
      writeFileSync(join(root, 'dist', rel), readFileSync(join(root, rel)))
    } else if (name.endsWith('.mjs')) {
      // a plain-JS entry that loads its TypeScript sibling through jiti loads the built one instead
      const text = readFileSync(join(root, rel), 'utf8').replace(/(['"]\.\.?\/[^'"]+)\.ts(['"])/g, '$1.js$2')
      writeFileSync(join(root, 'dist', rel), text)
    }
  }
}
for (const dir of ['core', 'plugins', 'presets']) copy(dir)
