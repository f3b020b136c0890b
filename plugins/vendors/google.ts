import { defineHttpVendor, forwardedQuery, type HttpVendorOptions } from '../../core/vendor.ts'
import type { MeshContext } from '../../core/types.ts'

/**
 * The client's API version (`/v1/...` or `/v1beta/...`), kept upstream: the two differ in fields.
 * A request translated from another protocol uses v1beta, which has every field translation writes.
 */
const apiVersion = (ctx: MeshContext) =>
  ctx.protocol === 'gemini' && ctx.request.path.startsWith('/v1/') ? 'v1' : 'v1beta'

/** The client's query; a translated request's stream is asked for as SSE (the client's query is another protocol's) */
const query = (ctx: MeshContext) =>
  ctx.protocol === 'gemini' ? forwardedQuery(ctx) : ctx.prompt.stream ? '?alt=sse' : ''

/** `/{version}/models/{model}:` for the routed model (a router may have changed it). */
const modelPath = (ctx: MeshContext) =>
  `/${apiVersion(ctx)}/models/${encodeURIComponent(ctx.route.model.replace(/^models\//, ''))}:`

/** Gemini's method from the client's path (`...:embedContent`, `...:batchEmbedContents`). */
const pathMethod = (ctx: MeshContext) => ctx.request.path.slice(ctx.request.path.lastIndexOf(':') + 1)

/**
 * Google Gemini (generateContent, streamGenerateContent, countTokens, embedContent,
 * batchEmbedContents). Key: option, config `vendors.google.apiKey`, GEMINI_API_KEY, or the client's own.
 */
export function google(options: HttpVendorOptions = {}) {
  return defineHttpVendor(
    {
      name: 'google',
      protocol: 'gemini',
      defaultBaseURL: 'https://generativelanguage.googleapis.com',
      keyEnv: 'GEMINI_API_KEY',
      handles: (m) => /^(models\/)?(gemini|gemma|learnlm)/.test(m),
      models: [
        'gemini-2.5-pro',
        'gemini-2.5-flash',
        'gemini-2.5-flash-lite',
        'gemini-2.0-flash',
        'gemini-embedding-001',
      ],
      // only the two embedding methods reach here (the core routes no other path as embeddings)
      embeddingsPath: (ctx) =>
        modelPath(ctx) + (pathMethod(ctx) === 'batchEmbedContents' ? 'batchEmbedContents' : 'embedContent'),
      countTokensPath: (ctx) => modelPath(ctx) + 'countTokens',
      request: (ctx, key) => ({
        // the client's query (alt=sse, ...) without its own `key`, which is sent as a header
        path: modelPath(ctx) + (ctx.prompt.stream ? 'streamGenerateContent' : 'generateContent') + query(ctx),
        headers: (key ? { 'x-goog-api-key': key } : {}) as Record<string, string>,
      }),
    },
    options,
  )
}
