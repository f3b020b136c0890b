#!/usr/bin/env node
// Runs a TypeScript script (benchmarks) through jiti: node bin/run-ts.mjs bench/proxy.ts
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { createJiti } from 'jiti'

const file = process.argv[2]
if (!file) {
  console.error('usage: node bin/run-ts.mjs FILE.ts [args]')
  process.exit(2)
}
const modules = fileURLToPath(new URL('../node_modules', import.meta.url))
// interopDefault off, as bin/agentmesh.mjs has it (the Proxy per module costs CPU at every call)
const jiti = createJiti(import.meta.url, {
  fsCache: existsSync(modules) ? `${modules}/.cache/jiti` : true,
  interopDefault: false,
})
await jiti.import(pathToFileURL(resolve(file)).href)
