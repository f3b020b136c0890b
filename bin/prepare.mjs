#!/usr/bin/env node
// `prepare`: builds dist/ (npm run build) so that a program importing agentmesh/sdk works when
// AgentMesh is installed from git. Not under npx (npm exec): npm prepares the package before
// running its bin, and the CLI runs the sources through jiti, so `npx agentmesh dev` starts without
// waiting for (or failing on) a build it does not use.
import { spawnSync } from 'node:child_process'

if (process.env.npm_command === 'exec') process.exit(0)
const npm = process.env.npm_execpath
const r = npm
  ? spawnSync(process.execPath, [npm, 'run', 'build'], { stdio: 'inherit' })
  : spawnSync('npm', ['run', 'build'], { stdio: 'inherit', shell: process.platform === 'win32' })
process.exit(r.status ?? 1)
