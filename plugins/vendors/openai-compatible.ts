// Any server that speaks OpenAI Chat Completions: Ollama, vLLM, llama.cpp's server, LM Studio,
// Groq, Mistral, OpenRouter, Together, DeepSeek... Several can be configured at once, each under
// its own name (the name is ctx.route.vendor and X-AgentMesh-Vendor).
import { createPricing } from '../../core/pricing.ts'
import type { Mesh, ModelPrice, Plugin } from '../../core/types.ts'
import {
  defineHttpVendor,
  forwardedQuery,
  noteUnpriced,
  type CooldownOptions,
  type Deployment,
} from '../../core/vendor.ts'

export interface OpenAICompatibleOptions {
  /** the vendor's name in routes, headers, events and the audit log: 'groq', 'ollama', 'vllm-gpu1' */
  name: string
  /** the base URL as the OpenAI SDK takes it, version included: 'https://api.groq.com/openai/v1', 'http://localhost:11434/v1' */
  baseURL: string
  /** the server's key; none for a local server that asks for none */
  apiKey?: string
  /** several keys for the one base URL (equal weights) */
  apiKeys?: string[]
  /** several keys and/or base URLs with weights (e.g. two vLLM boxes) */
  deployments?: Deployment[]
  cooldown?: CooldownOptions
  /** the model ids it serves (listed in /v1/models); an id ending in `*` is a prefix: 'llama-*' */
  models: string[]
  /** more models it serves, decided per id (not listed) */
  match?: (model: string) => boolean
  /** USD per million tokens for its models; a model without a price is counted as $0 and says so in `X-AgentMesh-Price` */
  pricing?: Record<string, ModelPrice>
  /** the server has /embeddings (default true) */
  embeddings?: boolean
  /** the server accepts `stream_options` (default true); false strips it, and the core counts the stream instead */
  streamOptions?: boolean
}

const BUILT_IN = new Set(['openai', 'anthropic', 'google', 'demo', 'none'])

export function openaiCompatible(options: OpenAICompatibleOptions): Plugin {
  const { name, baseURL } = options ?? ({} as OpenAICompatibleOptions)
  if (typeof name !== 'string' || !/^[a-z0-9][a-z0-9_.-]{0,63}$/i.test(name))
    throw new Error(
      `openaiCompatible: name must be letters, digits, '.', '_' or '-' (it names the vendor in routes and headers), got ${JSON.stringify(name)}`,
    )
  if (BUILT_IN.has(name.toLowerCase()))
    throw new Error(
      `openaiCompatible: "${name}" is a built-in vendor's name; pick another (or use ${name}({ baseURL }))`,
    )
  if (typeof baseURL !== 'string' || !/^https?:\/\//.test(baseURL))
    throw new Error(
      `openaiCompatible(${name}): baseURL must be an http(s) URL such as http://localhost:11434/v1, got ${JSON.stringify(baseURL)}`,
    )
  if (!Array.isArray(options.models) || options.models.some((m) => typeof m !== 'string' || !m))
    throw new Error(`openaiCompatible(${name}): models must be an array of model ids ('prefix*' for a prefix)`)
  const exact = options.models.filter((m) => !m.endsWith('*'))
  const prefixes = options.models.filter((m) => m.endsWith('*')).map((m) => m.slice(0, -1))
  const match = options.match
  const stripStreamOptions = options.streamOptions === false
  const plugin = defineHttpVendor(
    {
      name,
      protocol: 'openai',
      defaultBaseURL: baseURL,
      baseAsGiven: true,
      // a client's own key belongs to OpenAI (or whoever it came for), never to this server
      withoutKey: 'none',
      handles: (m) => exact.includes(m) || prefixes.some((p) => m.startsWith(p)) || (match?.(m) ?? false),
      models: exact,
      embeddingsPath: options.embeddings === false ? undefined : '/embeddings',
      beforeCall: (ctx) => {
        if (stripStreamOptions && ctx.request.body?.stream_options !== undefined) {
          delete ctx.request.body.stream_options
          ctx.request.dirty = true
        }
        noteUnpriced(ctx)
      },
      request: (ctx, key) => ({
        path: '/chat/completions' + (ctx.protocol === 'openai' ? forwardedQuery(ctx) : ''),
        headers: (key ? { authorization: `Bearer ${key}` } : {}) as Record<string, string>,
      }),
    },
    {
      baseURL,
      apiKey: options.apiKey,
      apiKeys: options.apiKeys,
      deployments: options.deployments,
      cooldown: options.cooldown,
    },
  )
  if (options.pricing) withPrices(plugin, name, options.pricing)
  return plugin
}

/**
 * The vendor's own prices, consulted before the shared table for exactly these model ids. The
 * mesh's pricing object is patched in place, so every plugin holding it sees them.
 */
function withPrices(plugin: Plugin, vendor: string, prices: Record<string, ModelPrice>): void {
  // validates the entries (same message as `pricing` in config) and does the pricing arithmetic
  const own = createPricing(prices)
  const ids = new Set(Object.keys(prices).map((k) => k.toLowerCase()))
  const setup = plugin.setup
  plugin.setup = (mesh: Mesh) => {
    const { price, cost } = mesh.pricing
    const mine = (m: string) => ids.has(m.toLowerCase())
    mesh.pricing.price = (m) => (mine(m) ? own.price(m) : price(m))
    mesh.pricing.cost = (m, usage) => (mine(m) ? own.cost(m, usage) : cost(m, usage))
    mesh.log.debug(`${vendor}: prices for ${[...ids].join(', ')}`)
    return setup?.(mesh)
  }
  plugin.options = { ...plugin.options, pricing: prices }
}
