import { defineHttpVendor, forwardedQuery, type HttpVendorOptions } from '../../core/vendor.ts'

/** Google Gemini (generateContent, streamGenerateContent). Key: option, config `vendors.google.apiKey`, GEMINI_API_KEY, or the client's own. */
export function google(options: HttpVendorOptions = {}) {
  return defineHttpVendor({
    name: 'google',
    protocol: 'gemini',
    defaultBaseURL: 'https://generativelanguage.googleapis.com',
    keyEnv: 'GEMINI_API_KEY',
    handles: (m) => /^(models\/)?(gemini|gemma|learnlm)/.test(m),
    models: ['gemini-2.5-pro', 'gemini-2.5-flash', 'gemini-2.5-flash-lite', 'gemini-2.0-flash'],
    request: (ctx, key) => {
      const model = encodeURIComponent(ctx.route.model.replace(/^models\//, ''))
      const stream = ctx.prompt.stream
      return {
        // the client's query (alt=sse, ...) without its own `key`, which is sent as a header
        path: `/v1beta/models/${model}:${stream ? 'streamGenerateContent' : 'generateContent'}${forwardedQuery(ctx)}`,
        headers: (key ? { 'x-goog-api-key': key } : {}) as Record<string, string>,
      }
    },
  }, options)
}
