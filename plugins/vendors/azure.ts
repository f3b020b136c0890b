// Azure OpenAI: the OpenAI API behind a resource's own host, one deployment per model, the key in
// an `api-key` header. Two URL styles: the classic one (`/openai/deployments/{deployment}/...`
// with a dated `api-version`) and the v1 API (`/openai/v1/...`, the deployment's name as `model`,
// no api-version; Microsoft's "API version lifecycle" page, GA since August 2025).
import type { MeshContext, Plugin } from '../../core/types.ts'
import { defineHttpVendor, noteUnpriced, type CooldownOptions, type Deployment } from '../../core/vendor.ts'

export interface AzureOpenAIOptions {
  /** the vendor's name in routes and headers (default 'azure') */
  name?: string
  /** the resource name: https://{resource}.openai.azure.com */
  resource?: string
  /** the endpoint instead of a resource name (a custom domain, a gateway); default AZURE_OPENAI_ENDPOINT */
  baseURL?: string
  /** default AZURE_OPENAI_API_KEY */
  apiKey?: string
  /** several keys of the resource (equal weights) */
  apiKeys?: string[]
  /** several resources (endpoint and key each, weighted): Azure's quota is per resource and region */
  endpoints?: Deployment[]
  cooldown?: CooldownOptions
  /** the model a client names -> the deployment that serves it: { 'gpt-4o': 'my-gpt4o' } */
  deployments: Record<string, string>
  /** the classic API's version (default '2024-10-21', the data plane's GA version); ignored by the v1 API */
  apiVersion?: string
  /** 'deployments' (default): /openai/deployments/{d}/...?api-version=; 'v1': /openai/v1/... with the deployment as `model` */
  api?: 'deployments' | 'v1'
}

export const AZURE_DEFAULT_API_VERSION = '2024-10-21'

export function azureOpenAI(options: AzureOpenAIOptions): Plugin {
  const name = options?.name ?? 'azure'
  const map = options?.deployments
  if (
    !map ||
    typeof map !== 'object' ||
    Object.keys(map).length === 0 ||
    Object.values(map).some((d) => typeof d !== 'string' || !d)
  ) {
    throw new Error(
      `azureOpenAI(${name}): deployments must map each model to its deployment's name, e.g. { 'gpt-4o': 'my-gpt4o' }`,
    )
  }
  if (options.resource !== undefined && !/^[a-z0-9][a-z0-9-]{1,62}$/i.test(options.resource))
    throw new Error(
      `azureOpenAI(${name}): resource must be the resource's name (letters, digits, '-'), got ${JSON.stringify(options.resource)}`,
    )
  const endpoint =
    options.baseURL ??
    (options.resource ? `https://${options.resource}.openai.azure.com` : process.env.AZURE_OPENAI_ENDPOINT)
  if (!endpoint) throw new Error(`azureOpenAI(${name}): give resource, baseURL or AZURE_OPENAI_ENDPOINT`)
  const version = encodeURIComponent(options.apiVersion ?? AZURE_DEFAULT_API_VERSION)
  const v1 = options.api === 'v1'
  const deploymentNames = new Set(Object.values(map))
  /** the deployment for the routed model: a mapped model, or a deployment named directly */
  const deploymentOf = (ctx: MeshContext) => map[ctx.route.model] ?? ctx.route.model
  const pathOf = (ctx: MeshContext, op: 'chat/completions' | 'embeddings') =>
    v1
      ? `/openai/v1/${op}`
      : `/openai/deployments/${encodeURIComponent(deploymentOf(ctx))}/${op}?api-version=${version}`
  const root = (url: string) => url.replace(/\/+$/, '').replace(/\/openai(\/v1)?$/, '')
  return defineHttpVendor(
    {
      name,
      protocol: 'openai',
      defaultBaseURL: root(endpoint),
      baseAsGiven: true,
      keyEnv: 'AZURE_OPENAI_API_KEY',
      // a client's own Authorization is an OpenAI key (or the proxy's): it must not go to Azure
      withoutKey: 'none',
      handles: (m) => Object.hasOwn(map, m) || deploymentNames.has(m),
      models: Object.keys(map),
      embeddingsPath: (ctx) => pathOf(ctx, 'embeddings'),
      beforeCall: noteUnpriced,
      // the v1 API reads the deployment from the body; the classic one from the path (the body's model is ignored there)
      upstreamModel: v1 ? deploymentOf : undefined,
      request: (ctx, key) => ({
        path: pathOf(ctx, 'chat/completions'),
        // the key goes as `api-key`, never as Authorization (Entra ID tokens are not supported here yet)
        headers: (key ? { 'api-key': key } : {}) as Record<string, string>,
      }),
    },
    {
      baseURL: options.baseURL ? root(options.baseURL) : undefined,
      apiKey: options.apiKey,
      apiKeys: options.apiKeys,
      deployments: options.endpoints?.map((e) => ({ ...e, baseURL: e.baseURL && root(e.baseURL) })),
      cooldown: options.cooldown,
    },
  )
}
