import { defineHttpVendor, forwardedQuery, type HttpVendorOptions } from '../../core/vendor.ts'

/** OpenAI Chat Completions, the Responses API and embeddings. Key: option, config `vendors.openai.apiKey`, OPENAI_API_KEY, or the client's own. */
export function openai(options: HttpVendorOptions = {}) {
  return defineHttpVendor(
    {
      name: 'openai',
      protocol: 'openai',
      protocols: ['responses'],
      forwardState: true,
      // the Responses API counts input exactly; Chat Completions has no such endpoint
      countTokensPath: '/v1/responses/input_tokens',
      defaultBaseURL: 'https://api.openai.com',
      keyEnv: 'OPENAI_API_KEY',
      handles: (m) => /^(gpt-|o\d|chatgpt-|text-embedding-|ft:gpt|omni-|codex-)/.test(m),
      models: [
        'gpt-5',
        'gpt-5-mini',
        'gpt-5-nano',
        'gpt-4.1',
        'gpt-4.1-mini',
        'gpt-4.1-nano',
        'gpt-4o',
        'gpt-4o-mini',
        'o3',
        'o4-mini',
        'text-embedding-3-small',
        'text-embedding-3-large',
      ],
      embeddingsPath: '/v1/embeddings',
      request: (ctx, key) => ({
        // a translated request (another protocol's client) does not carry its client's query along
        path:
          (ctx.protocol === 'responses' ? '/v1/responses' : '/v1/chat/completions') +
          (ctx.protocol === 'openai' || ctx.protocol === 'responses' ? forwardedQuery(ctx) : ''),
        // the client's headers (organization, project, ...) are forwarded by the core
        headers: (key ? { authorization: `Bearer ${key}` } : {}) as Record<string, string>,
      }),
    },
    options,
  )
}
