// Config as code: validation messages that name the field, presets as c12 layers (extends and
// preset), .env, .agentmeshrc, $development/$production, CLI overrides, secrets masked.
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createAgentMesh } from '../core/app.ts'
import { ConfigError, loadMeshConfig, maskedConfig, resolveConfig } from '../core/config.ts'
import type { MeshConfig } from '../core/types.ts'
import { openai } from '../plugins/vendors/openai.ts'
import { blockWords } from '../playground/plugins/block-words.ts'
import { clearVendorEnv, postJson, tempDir } from './helpers/core-harness.ts'
import { startMockUpstream } from './helpers/mock-upstream.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** the vendor plugins, in order: presets also bring feature plugins (keys, quota, audit ...) that have their own suites */
const vendors = (plugins: Array<{ name: string }>) => plugins.map((p) => p.name).filter((n) => n.startsWith('vendor:'))
const dirs: string[] = []
function project(files: Record<string, string>): string {
  const dir = tempDir('agentmesh-config-')
  dirs.push(dir)
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
  return dir
}

beforeAll(() => clearVendorEnv())
afterEach(() => {
  clearVendorEnv()
  delete process.env.AGENTMESH_TEST_PORT
})
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

describe('validation names the field', () => {
  const bad: Array<[string, unknown, RegExp]> = [
    ['wrong type: port', { port: 'eighty' }, /`port` must be an integer from 0 to 65535, got "eighty"/],
    ['unknown field', { prot: 8080 }, /unknown field `prot`/],
    ['unknown preset', { preset: 'enterprise' }, /preset must be one of demo, solo, team, got "enterprise"/],
    ['negative limit', { limits: { bodyBytes: -1 } }, /`limits\.bodyBytes` must be a positive number, got -1/],
    ['zero timeout', { limits: { upstreamTimeoutMs: 0 } }, /`limits\.upstreamTimeoutMs` must be a positive number/],
    ['wrong type: limit', { limits: { bodyBytes: '10mb' } }, /`limits\.bodyBytes`/],
    [
      'storage driver',
      { storage: { driver: 'mongo' } },
      /`storage\.driver` must be one of memory, fs, redis, got "mongo"/,
    ],
    ['redis without url', { storage: { driver: 'redis' } }, /`storage\.url` must be a redis:\/\/ URL/],
    [
      'an uncalled plugin factory',
      { plugins: [blockWords] },
      /`plugins\[0\]` must be a plugin object \(did you forget to call the plugin factory\?\)/,
    ],
    ['a plugin without a name', { plugins: [{ hooks: {} }] }, /`plugins\[0\]\.name` must be a non-empty string/],
    ['plugins not an array', { plugins: { name: 'mine' } }, /`plugins` must be an array of plugins/],
    [
      'the index of the entry as written',
      { plugins: [{ name: 'ok' }, { name: 'bad', enforce: 'last' }] },
      /plugins\[1\] \(bad\)\.enforce/,
    ],
    [
      'an unknown hook',
      { plugins: [{ name: 'mine', hooks: { onRequest() {} } }] },
      /plugins\[0\] \(mine\)\.hooks\.onRequest/,
    ],
    ['a bad enforce', { plugins: [{ name: 'mine', enforce: 'first' }] }, /plugins\[0\] \(mine\)\.enforce/],
    ['an unknown vendor', { vendors: { mistral: { apiKey: 'x' } } }, /`vendors\.mistral`/],
    [
      'a vendor baseURL',
      { vendors: { openai: { baseURL: 'api.openai.com' } } },
      /`vendors\.openai\.baseURL` must be an http\(s\) URL/,
    ],
    ['a log level', { log: { level: 'loud' } }, /`log\.level` must be one of debug, info, warn, error, silent/],
    ['cors origins', { cors: { origins: 'everyone' } }, /`cors\.origins`/],
    ['trustIdentityHeaders', { trustIdentityHeaders: 'yes' }, /`trustIdentityHeaders` must be true or false/],
    [
      'a negative price',
      { pricing: { 'my-model': { input: -1, output: 1 } } },
      /`pricing\.my-model\.input` must be a non-negative number/,
    ],
  ]
  it.each(bad)('%s', async (_what, config, message) => {
    const err = await resolveConfig(config as MeshConfig).catch((e) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect(err.message).toMatch(message)
  })

  it('createAgentMesh refuses an invalid config the same way', async () => {
    await expect(createAgentMesh({ limits: { bodyBytes: -100 } })).rejects.toThrow(/limits\.bodyBytes/)
  })

  it('never echoes a wrongly typed apiKey', async () => {
    const err = await resolveConfig({ vendors: { openai: { apiKey: 1234567890 as any } } }).catch((e) => e)
    expect(err.message).toMatch(/`vendors\.openai\.apiKey` must be a string/)
    expect(err.message).not.toContain('1234567890')
  })

  it('plugin factories validate their options at creation, naming the field', () => {
    expect(() => openai({ baseURL: 'localhost:9999' })).toThrow(
      /baseURL must be an http\(s\) URL, got "localhost:9999"/,
    )
    expect(() => blockWords({ words: [42 as any] })).toThrow(/words must be an array of non-empty strings/)
  })

  // no preset is the core's default: the CLI's demo default is tested under 'presets and layers'
  it('fills defaults: port 8080, 10 MB body limit, .agentmesh data dir (or AGENTMESH_DATA_DIR), no preset', async () => {
    const saved = process.env.AGENTMESH_DATA_DIR
    try {
      delete process.env.AGENTMESH_DATA_DIR
      const c = await resolveConfig({})
      expect(c).toMatchObject({
        preset: 'none',
        port: 8080,
        host: '127.0.0.1',
        dataDir: '.agentmesh',
        storage: { driver: 'memory' },
        limits: { bodyBytes: 10 * 1024 * 1024 },
      })
      expect(c.plugins).toEqual([])
      process.env.AGENTMESH_DATA_DIR = '/tmp/agentmesh-env-data'
      expect((await resolveConfig({})).dataDir).toBe('/tmp/agentmesh-env-data')
      expect((await resolveConfig({ dataDir: '/tmp/from-config' })).dataDir).toBe('/tmp/from-config')
    } finally {
      if (saved === undefined) delete process.env.AGENTMESH_DATA_DIR
      else process.env.AGENTMESH_DATA_DIR = saved
    }
  })
})

describe('presets and layers', () => {
  it("`extends: ['team']` layers the team preset under the file", async () => {
    const dir = project({ 'agentmesh.config.ts': `export default { extends: ['team'], port: 9999 }\n` })
    const { config } = await loadMeshConfig({ cwd: dir })
    expect(config.preset).toBe('team')
    expect(config.port).toBe(9999)
    expect(config.trustIdentityHeaders).toBe(false)
    expect(config.storage.driver).toBe('fs')
    expect(vendors(config.plugins)).toEqual(['vendor:anthropic', 'vendor:openai', 'vendor:google'])
    expect(config.sources).toEqual(['agentmesh.config.ts'])
  })

  it("`extends: 'agentmesh/presets/solo'` works too", async () => {
    const dir = project({ 'agentmesh.config.ts': `export default { extends: 'agentmesh/presets/solo' }\n` })
    const { config } = await loadMeshConfig({ cwd: dir })
    expect(config.preset).toBe('solo')
    expect(config.trustIdentityHeaders).toBe(true)
  })

  it("`preset: 'solo'` layers solo; the file's fields win", async () => {
    const dir = project({
      'agentmesh.config.ts': `export default { preset: 'solo', storage: { driver: 'memory' }, limits: { bodyBytes: 1234 } }\n`,
    })
    const { config } = await loadMeshConfig({ cwd: dir })
    expect(config.preset).toBe('solo')
    expect(config.storage.driver).toBe('memory')
    expect(config.limits).toEqual({ bodyBytes: 1234, upstreamTimeoutMs: 120_000 })
    expect(vendors(config.plugins)).toEqual(['vendor:anthropic', 'vendor:openai', 'vendor:google'])
  })

  it('a plugin in the file replaces the preset plugin of the same name; `disable` drops one', async () => {
    const dir = project({
      'agentmesh.config.ts': `import { openai } from ${JSON.stringify(join(ROOT, 'plugins/vendors/openai.ts'))}
export default { preset: 'solo', plugins: [openai({ baseURL: 'http://127.0.0.1:9/v1', models: ['my-finetune'] })], disable: ['vendor:google'] }
`,
    })
    const { config } = await loadMeshConfig({ cwd: dir })
    expect(vendors(config.plugins)).toEqual(['vendor:openai', 'vendor:anthropic'])
    expect(config.plugins.filter((p) => p.name === 'vendor:openai')).toHaveLength(1)
    expect(config.plugins.find((p) => p.name === 'vendor:openai')!.options).toMatchObject({
      baseURL: 'http://127.0.0.1:9/v1',
      models: ['my-finetune'],
    })
  })

  it('CLI-style overrides and --preset win over the file', async () => {
    const dir = project({ 'agentmesh.config.ts': `export default { preset: 'solo', port: 9999 }\n` })
    const { config } = await loadMeshConfig({
      cwd: dir,
      preset: 'demo',
      overrides: { port: 1234, dataDir: '/tmp/elsewhere' },
    })
    expect(config.preset).toBe('demo')
    expect(config.port).toBe(1234)
    expect(config.dataDir).toBe('/tmp/elsewhere')
  })

  it('$development and $production pick per environment', async () => {
    const dir = project({
      'agentmesh.config.ts': `export default { port: 1000, $development: { port: 2000, log: { level: 'debug' } }, $production: { port: 3000, host: '0.0.0.0' } }\n`,
    })
    const dev = (await loadMeshConfig({ cwd: dir, envName: 'development' })).config
    expect(dev.port).toBe(2000)
    expect(dev.log.level).toBe('debug')
    const prod = (await loadMeshConfig({ cwd: dir, envName: 'production' })).config
    expect(prod.port).toBe(3000)
    expect(prod.host).toBe('0.0.0.0')
    expect(prod.log.level).toBe('info')
  })

  it('loads .agentmeshrc', async () => {
    const dir = project({ '.agentmeshrc': 'port=7777\nlog.level=warn\n' })
    const { config, files } = await loadMeshConfig({ cwd: dir })
    expect(config.port).toBe(7777)
    expect(config.log.level).toBe('warn')
    expect(files).toContain(join(dir, '.agentmeshrc'))
  })

  it('loads .env before the config file', async () => {
    const dir = project({
      '.env': 'AGENTMESH_TEST_PORT=4321\n',
      'agentmesh.config.ts': 'export default { port: Number(process.env.AGENTMESH_TEST_PORT) }\n',
    })
    const { config } = await loadMeshConfig({ cwd: dir })
    expect(config.port).toBe(4321)
  })

  it('a vendor key from .env reaches the vendor', async () => {
    const mock = await startMockUpstream()
    const dir = project({
      '.env': 'OPENAI_API_KEY=sk-from-dotenv-file\n',
      'agentmesh.config.ts': `export default { preset: 'solo', storage: { driver: 'memory' }, log: { level: 'silent' }, vendors: { openai: { baseURL: ${JSON.stringify(mock.url)} } } }\n`,
    })
    const { config } = await loadMeshConfig({ cwd: dir, overrides: { dataDir: join(dir, '.agentmesh') } })
    const mesh = await createAgentMesh(config)
    const server = await mesh.listen({ port: 0, host: '127.0.0.1' })
    try {
      const res = await postJson(server.url + '/v1/chat/completions', {
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hi' }],
      })
      expect(res.status).toBe(200)
      expect(mock.received[0]!.headers.authorization).toBe('Bearer sk-from-dotenv-file')
    } finally {
      await server.close()
      await mesh.close()
      await mock.close()
    }
  })

  it('a bad config file fails with the field named', async () => {
    const dir = project({
      'agentmesh.config.ts': `export default { preset: 'solo', limits: { upstreamTimeoutMs: -5 } }\n`,
    })
    await expect(loadMeshConfig({ cwd: dir })).rejects.toThrow(/limits\.upstreamTimeoutMs/)
  })

  it('a missing --config file is an error, not silently the defaults', async () => {
    const dir = project({})
    await expect(loadMeshConfig({ cwd: dir, configFile: 'nope.config.ts' })).rejects.toThrow(
      /config file not found: nope\.config\.ts/,
    )
  })

  it("no config file at all: the demo preset (the CLI's default)", async () => {
    const dir = project({})
    const { config } = await loadMeshConfig({ cwd: dir, defaultPreset: 'demo' })
    expect(config.preset).toBe('demo')
    expect(vendors(config.plugins)).toEqual(['vendor:demo'])
    expect(config.sources).toEqual([])
  })
})

describe('presets are layers, one mechanism', () => {
  const names = (c: { plugins: Array<{ name: string }> }) => c.plugins.map((p) => p.name)
  const CORE = JSON.stringify(join(ROOT, 'core/index.ts'))
  const QUOTA = JSON.stringify(join(ROOT, 'plugins/quota/index.ts'))

  it("`preset: 'team'`, `extends: ['team']`, --preset team and createAgentMesh({ preset: 'team' }) resolve alike", async () => {
    const shown = (c: Parameters<typeof maskedConfig>[0]) => JSON.stringify(maskedConfig({ ...c, sources: [] }))
    const inProcess = shown(await resolveConfig({ preset: 'team' }))
    for (const file of [`export default { preset: 'team' }\n`, `export default { extends: ['team'] }\n`]) {
      expect(shown((await loadMeshConfig({ cwd: project({ 'agentmesh.config.ts': file }) })).config)).toBe(inProcess)
    }
    expect(shown((await loadMeshConfig({ cwd: project({}), preset: 'team', defaultPreset: 'demo' })).config)).toBe(
      inProcess,
    )
  })

  it('team is solo with its own keys and audit options, in the same order as solo', async () => {
    const solo = await resolveConfig({ preset: 'solo' })
    const team = await resolveConfig({ preset: 'team' })
    expect(names(team)).toEqual(names(solo))
    expect(team.plugins.find((p) => p.name === 'keys')!.options).toMatchObject({ required: true })
    expect(team.plugins.find((p) => p.name === 'audit')!.options).toMatchObject({ onFailure: 'refuse' })
    expect(team).toMatchObject({
      preset: 'team',
      trustIdentityHeaders: false,
      forwardClientKeys: false,
      events: { access: 'authenticated' },
    })
  })

  it('nothing named, nothing loaded: createAgentMesh({}) and a config without a preset get no preset plugins', async () => {
    expect((await resolveConfig({ plugins: [blockWords({ words: ['x'] })] })).plugins.map((p) => p.name)).toEqual([
      'block-words',
    ])
    const { config } = await loadMeshConfig({
      cwd: project({ 'agentmesh.config.ts': 'export default { port: 9001 }\n' }),
    })
    expect(config).toMatchObject({ preset: 'none', plugins: [] })
    // the CLI's default yields to a config that names its own layers, even none
    const chosen = await loadMeshConfig({
      cwd: project({ 'agentmesh.config.ts': 'export default { extends: [] }\n' }),
      defaultPreset: 'demo',
    })
    expect(chosen.config).toMatchObject({ preset: 'none', plugins: [] })
  })

  it("definePreset: a preset of your own in `extends: ['./my-preset.ts']`, itself extending team", async () => {
    const dir = project({
      'my-preset.ts': `import { definePreset } from ${CORE}
import { quota } from ${QUOTA}
export default definePreset(() => ({ $meta: { name: 'acme' }, extends: ['team'], port: 9100, plugins: [quota({ limits: { defaultTeam: { tokensPerDay: 1000 } } })] }))
`,
      'agentmesh.config.ts': `export default { extends: ['./my-preset.ts'], port: 9200 }\n`,
    })
    const { config, files } = await loadMeshConfig({ cwd: dir, defaultPreset: 'demo' })
    expect(config).toMatchObject({ preset: 'acme', port: 9200, trustIdentityHeaders: false })
    expect(names(config)).toEqual(names(await resolveConfig({ preset: 'team' })))
    expect(config.plugins.find((p) => p.name === 'quota')!.options).toMatchObject({
      limits: { defaultTeam: { tokensPerDay: 1000 } },
    })
    // the preset file is watched for reload like the config
    expect(files).toContain(join(dir, 'my-preset.ts'))
    // in-process too, relative to cwd; a fresh plugin instance per mesh
    const a = await resolveConfig({ extends: ['./my-preset.ts'] }, { cwd: dir })
    const b = await resolveConfig({ preset: './my-preset.ts' }, { cwd: dir })
    expect(a).toMatchObject({ preset: 'acme', port: 9100 })
    expect(a.plugins.find((p) => p.name === 'quota')).not.toBe(b.plugins.find((p) => p.name === 'quota'))
  })

  it("--preset replaces the file's `preset`; `disable` drops a preset plugin, never one the config lists", async () => {
    const dir = project({
      'agentmesh.config.ts': `export default { preset: 'team', disable: ['semantic-cache', 'block-words'] }\n`,
    })
    const { config } = await loadMeshConfig({ cwd: dir, preset: 'solo' })
    expect(config).toMatchObject({ preset: 'solo', trustIdentityHeaders: true })
    expect(names(config)).not.toContain('semantic-cache')
    const own = await resolveConfig({
      preset: 'demo',
      disable: ['block-words', 'audit'],
      plugins: [blockWords({ words: ['x'] })],
    })
    expect(names(own)).toContain('block-words')
    expect(names(own)).not.toContain('audit')
  })

  const bad: Array<[string, MeshConfig & Record<string, unknown>, RegExp]> = [
    [
      'an unknown preset in extends',
      { extends: ['enterprise'] },
      /preset must be one of demo, solo, team, got "enterprise"/,
    ],
    ['a missing preset file', { extends: ['./nope.ts'] }, /preset file "\.\/nope\.ts" not found/],
    [
      'a preset that is not a string',
      { preset: 42 as any },
      /`preset` must be one of demo, solo, team or a path to a preset file, got 42/,
    ],
    [
      'extends not a list of strings',
      { extends: [1] as any },
      /`extends` must be a preset name or path, or an array of them/,
    ],
  ]
  it.each(bad)('%s fails naming it', async (_what, config, message) => {
    const err = await resolveConfig(config).catch((e) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect(err.message).toMatch(message)
  })

  it('a bad plugin in a preset file names the preset', async () => {
    const dir = project({
      'bad-preset.ts': `export default { $meta: { name: 'bad' }, plugins: [{ name: 'x', enforce: 'first' }] }\n`,
    })
    await expect(resolveConfig({ extends: ['./bad-preset.ts'] }, { cwd: dir })).rejects.toThrow(
      /`preset bad plugins\[0\] \(x\)\.enforce`/,
    )
  })
})

describe('masked config', () => {
  it('hides keys and redis passwords', async () => {
    const c = await resolveConfig({
      preset: 'solo',
      vendors: { openai: { apiKey: 'sk-live-supersecret-123' } },
      storage: { driver: 'redis', url: 'redis://user:hunter2@10.0.0.1:6379/0' },
      plugins: [openai({ apiKey: 'sk-plugin-secret-456' })],
    })
    const text = JSON.stringify(maskedConfig(c))
    expect(text).not.toContain('supersecret')
    expect(text).not.toContain('hunter2')
    expect(text).not.toContain('sk-plugin-secret-456')
    expect(text).toContain('10.0.0.1:6379')
    expect(text).toContain('vendor:openai')
  })
})
