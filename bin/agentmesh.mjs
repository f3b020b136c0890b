#!/usr/bin/env node
// No build step: the TypeScript CLI runs through jiti.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { createJiti } from 'jiti'

// transpiled files cached next to the package's own dependencies, wherever the CLI runs from
// (jiti would otherwise look beside bin/ and fall back to the system temp dir)
const modules = fileURLToPath(new URL('../node_modules', import.meta.url))
const fsCache = existsSync(modules) ? `${modules}/.cache/jiti` : true
const jiti = createJiti(import.meta.url, { fsCache, moduleCache: true })
const { main } = await jiti.import('../core/cli.ts')
// the CLI loads configs with a jiti of its own that maps 'agentmesh' to this package (core/cli-jiti.ts)
await main(process.argv.slice(2))
