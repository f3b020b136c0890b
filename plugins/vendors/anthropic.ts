import { defineHttpVendor, forwardedQuery, type HttpVendorOptions } from '../../core/vendor.ts'

/** Anthropic Messages. Key: option, config `vendors.anthropic.apiKey`, ANTHROPIC_API_KEY, or the client's own. */
export function anthropic(options: HttpVendorOptions = {}) {
  return defineHttpVendor(
    {
      name: 'anthropic',
      protocol: 'anthropic',
      defaultBaseURL: 'https://api.anthropic.com',
      keyEnv: 'ANTHROPIC_API_KEY',
      handles: (m) => m.startsWith('claude'),
      countTokensPath: '/v1/messages/count_tokens',
      models: [
        'claude-opus-4-5',
        'claude-opus-4-1',
        'claude-sonnet-4-5',
        'claude-sonnet-4',
        'claude-haiku-4-5',
        'claude-3-5-haiku-latest',
      ],
      request: (ctx, key) => ({
        // `?beta=true` (Claude Code) and the other query parameters go as they came
        path: '/v1/messages' + (ctx.protocol === 'anthropic' ? forwardedQuery(ctx) : ''),
        // anthropic-beta and the rest of the client's headers are forwarded by the core
        headers: {
          'anthropic-version': ctx.request.headers.get('anthropic-version') ?? '2023-06-01',
          ...(key ? { 'x-api-key': key } : {}),
        },
      }),
    },
    options,
  )
}
