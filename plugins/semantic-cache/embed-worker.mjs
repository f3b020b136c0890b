// Entry of the semantic cache's embedding worker thread (see worker-host.ts). Plain JavaScript, so
// that Node starts it with no loader under the CLI, vitest and scripts alike; it loads the
// TypeScript sources through jiti, as bin/agentmesh.mjs does.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parentPort, workerData } from 'node:worker_threads'
import { createJiti } from 'jiti'

const modules = fileURLToPath(new URL('../../node_modules', import.meta.url))
const jiti = createJiti(import.meta.url, { fsCache: existsSync(modules) ? `${modules}/.cache/jiti` : true })
const { serve } = await jiti.import('./embed-worker.ts')
serve(parentPort, workerData, (specifier) => jiti.import(specifier))
