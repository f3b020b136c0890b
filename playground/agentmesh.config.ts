// A runnable example project: `npx agentmesh dev --config playground/agentmesh.config.ts`
// (or `cd playground && npx agentmesh dev`).
import { defineConfig } from '../core/index.ts'
import { blockWords } from './plugins/block-words.ts'

export default defineConfig({
  preset: 'demo',
  port: 8080,
  plugins: [blockWords({ words: ['project-atlas', 'password'] })],
})
