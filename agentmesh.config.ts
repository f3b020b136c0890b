// The repo's own config: the demo preset (no keys needed). Copy this file into your project and
// switch `preset` to 'solo' (your own keys) or 'team' (virtual keys, budgets).
import { defineConfig } from './core/index.ts'

export default defineConfig({
  preset: 'demo',
  port: 8080,
})
