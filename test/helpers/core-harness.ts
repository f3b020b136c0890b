// Shared set-up for the core suites: a real proxy on a real port in front of the mock upstream,
// and SDK clients whose outgoing bodies are captured so tests can compare them with what the mock got.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { createAgentMesh, type AgentMesh } from '../../core/app.ts'
import { resolveConfig } from '../../core/config.ts'
import type { MeshConfig, MeshEvent } from '../../core/types.ts'
import { demo } from '../../plugins/vendors/demo.ts'
import { startMockUpstream, type MockBehaviour, type MockUpstream } from './mock-upstream.ts'
import { freePort } from './ports.ts'

export const VENDOR_ENV = [
  'OPENAI_API_KEY',
  'ANTHROPIC_API_KEY',
  'GEMINI_API_KEY',
  'AGENTMESH_OPENAI_BASE_URL',
  'AGENTMESH_ANTHROPIC_BASE_URL',
  'AGENTMESH_GOOGLE_BASE_URL',
]

/** Keys from the developer's shell must not leak into tests that check which key goes upstream. */
export function clearVendorEnv() {
  for (const k of VENDOR_ENV) delete process.env[k]
}

export function tempDir(prefix = 'agentmesh-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

export interface Proxy {
  url: string
  port: number
  instance: AgentMesh
  events: MeshEvent[]
  dataDir: string
  close(): Promise<void>
}

/**
 * The preset's feature plugins (keys, quota, audit, caches ...): everything but its vendors. The
 * core suites switch them off so they test the core alone; each feature has its own suite.
 */
export async function presetFeatures(preset: string): Promise<string[]> {
  const { plugins } = await resolveConfig({ preset })
  return plugins.map((p) => p.name).filter((n) => !n.startsWith('vendor:'))
}

/**
 * createAgentMesh(config).listen({port: 0}) with quiet logs, memory storage and a temp data dir.
 * Without a preset the mesh has the plugins the test lists, and the demo vendor to answer. With
 * one, the preset's feature plugins are off unless `features: true`: the test gets the plugins it
 * lists itself and the preset's vendors.
 */
export async function startProxy(config: MeshConfig = {}, opts: { features?: boolean } = {}): Promise<Proxy> {
  const dataDir = config.dataDir ?? tempDir()
  const instance = await createAgentMesh({
    storage: { driver: 'memory' },
    log: { level: 'silent' },
    ...(await layered(config, opts.features === true)),
    dataDir,
  })
  const events: MeshEvent[] = []
  instance.mesh.on((e) => events.push(e))
  const server = await instance.listen({ port: 0, host: '127.0.0.1' })
  return {
    url: server.url,
    port: server.port,
    instance,
    events,
    dataDir,
    async close() {
      await server.close()
      await instance.close()
      if (!config.dataDir) rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

async function layered(config: MeshConfig, features: boolean): Promise<MeshConfig> {
  if (!config.preset) return { ...config, plugins: [...(config.plugins ?? []), demo()] }
  if (features) return config
  const own = new Set((config.plugins ?? []).map((p) => p?.name))
  const off = (await presetFeatures(config.preset)).filter((n) => !own.has(n))
  return { ...config, disable: [...off, ...(config.disable ?? [])] }
}

/** The solo preset with the three HTTP vendors pointed at one mock upstream. */
export async function startMockAndProxy(
  opts: { behaviour?: MockBehaviour; keys?: boolean; config?: MeshConfig; features?: boolean } = {},
): Promise<{ mock: MockUpstream; proxy: Proxy }> {
  const mock = await startMockUpstream(opts.behaviour ?? {})
  const keys = opts.keys ?? true
  const proxy = await startProxy(
    {
      preset: 'solo',
      vendors: {
        openai: { baseURL: mock.url, ...(keys ? { apiKey: 'sk-test-openai-configured' } : {}) },
        anthropic: { baseURL: mock.url, ...(keys ? { apiKey: 'sk-ant-test-configured' } : {}) },
        google: { baseURL: mock.url, ...(keys ? { apiKey: 'AIza-test-configured' } : {}) },
      },
      ...opts.config,
    },
    { features: opts.features },
  )
  return { mock, proxy }
}

/** The core suites test the core alone: the presets' feature plugins have their own suites. */
export const startCoreProxy = (config: MeshConfig = {}) => startProxy(config, { features: false })
export const startCoreMockAndProxy = (opts: Parameters<typeof startMockAndProxy>[0] = {}) =>
  startMockAndProxy({ ...opts, features: false })

/** A fetch that records each request body the SDK sends, byte for byte. */
export function capturingFetch(sent: string[]): typeof fetch {
  return (async (input: any, init?: RequestInit) => {
    if (typeof init?.body === 'string') sent.push(init.body)
    return fetch(input, init)
  }) as typeof fetch
}

export function openaiClient(
  proxy: Proxy,
  sent: string[] = [],
  opts: { apiKey?: string; headers?: Record<string, string> } = {},
) {
  return new OpenAI({
    baseURL: proxy.url + '/v1',
    apiKey: opts.apiKey ?? 'sk-client-openai-key',
    maxRetries: 0,
    fetch: capturingFetch(sent),
    defaultHeaders: opts.headers,
  })
}

export function anthropicClient(
  proxy: Proxy,
  sent: string[] = [],
  opts: { apiKey?: string; authToken?: string; headers?: Record<string, string> } = {},
) {
  const auth = opts.authToken
    ? { authToken: opts.authToken, apiKey: null }
    : { apiKey: opts.apiKey ?? 'sk-ant-client-key' }
  return new Anthropic({
    baseURL: proxy.url,
    ...auth,
    maxRetries: 0,
    fetch: capturingFetch(sent),
    defaultHeaders: opts.headers,
  })
}

export const GOVERNANCE_HEADERS = [
  'x-agentmesh-request-id',
  'x-agentmesh-vendor',
  'x-agentmesh-model',
  'x-agentmesh-tokens',
  'x-agentmesh-cost-usd',
  'x-agentmesh-cache',
  'x-agentmesh-latency-ms',
]

/** Every governance header present, with values of the right form. */
export function governanceHeadersOf(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {}
  for (const h of GOVERNANCE_HEADERS) {
    const v = headers.get(h)
    if (v === null) throw new Error(`missing header ${h} (status response headers: ${[...headers.keys()].join(', ')})`)
    out[h] = v
  }
  if (!/^\d+$/.test(out['x-agentmesh-tokens']!))
    throw new Error(`x-agentmesh-tokens is not an integer: ${out['x-agentmesh-tokens']}`)
  if (!/^\d+\.\d{6}$/.test(out['x-agentmesh-cost-usd']!))
    throw new Error(`x-agentmesh-cost-usd is not a USD amount: ${out['x-agentmesh-cost-usd']}`)
  if (!/^\d+(\.\d+)?$/.test(out['x-agentmesh-latency-ms']!))
    throw new Error(`x-agentmesh-latency-ms is not a number: ${out['x-agentmesh-latency-ms']}`)
  if (!['exact', 'semantic', 'miss', 'bypass'].includes(out['x-agentmesh-cache']!))
    throw new Error(`x-agentmesh-cache is ${out['x-agentmesh-cache']}`)
  return out
}

/** A port nothing listens on (a connection to it is refused). */
export const closedPort = freePort

/** Parse an SSE body into its data payloads (and event names). */
export function sseEvents(text: string): Array<{ event?: string; data: string }> {
  const out: Array<{ event?: string; data: string }> = []
  for (const block of text.split(/\r?\n\r?\n/)) {
    if (!block.trim()) continue
    let event: string | undefined
    const data: string[] = []
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith('event:')) event = line.slice(6).trim()
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''))
    }
    if (data.length) out.push({ event, data: data.join('\n') })
  }
  return out
}

export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

/** Wait until cond() holds, polling briefly; fails with what it was waiting for. */
export async function until(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}
