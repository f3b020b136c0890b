import { defineHttpVendor, passHeaders, type HttpVendorOptions } from '../../core/vendor.ts'

/** Anthropic Messages. Key: option, config `vendors.anthropic.apiKey`, ANTHROPIC_API_KEY, or the client's own. */
export function anthropic(options: HttpVendorOptions = {}) {
  return defineHttpVendor({
    name: 'anthropic',
    protocol: 'anthropic',
    defaultBaseURL: 'https://api.anthropic.com',
    keyEnv: 'ANTHROPIC_API_KEY',
    handles: (m) => m.startsWith('claude'),
    models: ['claude-opus-4-5', 'claude-opus-4-1', 'claude-sonnet-4-5', 'claude-sonnet-4', 'claude-haiku-4-5', 'claude-3-5-haiku-latest'],
    request: (ctx, key) => ({
      path: '/v1/messages',
      headers: {
        'anthropic-version': ctx.request.headers.get('anthropic-version') ?? '2023-06-01',
        ...passHeaders(ctx, ['anthropic-beta']),
        ...(key ? { 'x-api-key': key } : {}),
      },
    }),
  }, options)
}
