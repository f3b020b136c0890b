#!/usr/bin/env node
// No build step: the TypeScript CLI runs through jiti.
import { createJiti } from 'jiti'

const jiti = createJiti(import.meta.url, { fsCache: true, moduleCache: true })
const { main } = await jiti.import('../core/cli.ts')
await main(process.argv.slice(2), jiti)
