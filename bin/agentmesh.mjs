#!/usr/bin/env node
// No build step: the TypeScript CLI runs through jiti.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { createJiti } from 'jiti'

// transpiled files cached next to the package's own dependencies, wherever the CLI runs from
// (jiti would otherwise look beside bin/ and fall back to the system temp dir)
const modules = fileURLToPath(new URL('../node_modules', import.meta.url))
const fsCache = existsSync(modules) ? `${modules}/.cache/jiti` : true
// interopDefault off: with it, jiti hands every importer a Proxy of the module, and transpiled
// code reads each imported binding through it at every call (4-10% of the proxy's CPU per
// request, bench side by side). The core and plugins import no default export from a package; a
// config is loaded by a jiti of its own with interop on (core/cli-jiti.ts).
const jiti = createJiti(import.meta.url, { fsCache, moduleCache: true, interopDefault: false })
const { main } = await jiti.import('../core/cli.ts')
// the CLI loads configs with a jiti of its own that maps 'agentmesh' to this package (core/cli-jiti.ts)
await main(process.argv.slice(2))
