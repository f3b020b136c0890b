import './test/setup/redis.ts'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/redis.ts'],
    setupFiles: ['test/setup/data-dir.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // suites start real servers on free ports; forks keep their sockets and env apart
    pool: 'forks',
  },
})
