// Each test file gets its own data dir, so suites running in parallel never share an audit log
// or fs storage (the audit writer locks its directory per process).
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

process.env.AGENTMESH_DATA_DIR = mkdtempSync(join(tmpdir(), 'agentmesh-test-'))
