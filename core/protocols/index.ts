import type { ProtocolName } from '../types.ts'
import { anthropicProtocol } from './anthropic.ts'
import { geminiProtocol } from './gemini.ts'
import { openaiProtocol } from './openai.ts'
import { responsesProtocol } from './responses.ts'
import type { ProtocolAdapter } from './shared.ts'

export const protocols: Record<ProtocolName, ProtocolAdapter> = {
  openai: openaiProtocol,
  anthropic: anthropicProtocol,
  gemini: geminiProtocol,
  responses: responsesProtocol,
}

export { ProtocolError, type ProtocolAdapter, type StreamReader } from './shared.ts'

// Gemini's v1 paths share /v1/models with OpenAI's; a method after the model (`:generateContent`)
// is Gemini's. OpenAI's fine-tune ids (`ft:gpt-4o-mini:org::id`) hold a '-' or a second ':' there.
const GEMINI_V1_METHOD = /^\/v1\/models\/[^/:]+:[a-z][A-Za-z]*$/
// a path whose last segment ends in one of Gemini's methods is a Gemini client's, wherever it
// points after the URL's dot segments are resolved (/v1beta/models/../../x:generateContent)
const GEMINI_METHOD_TAIL =
  /\/[^/:]*:(?:generateContent|streamGenerateContent|countTokens|embedContent|batchEmbedContents)$/

/** The protocol a path belongs to, for errors answered before (or without) a route. */
export function protocolOfPath(path: string): ProtocolName {
  if (
    path.startsWith('/v1beta/') ||
    path.startsWith('/v1alpha/') ||
    GEMINI_V1_METHOD.test(path) ||
    GEMINI_METHOD_TAIL.test(path)
  )
    return 'gemini'
  if (path.startsWith('/v1/messages')) return 'anthropic'
  if (path === '/v1/responses' || path.startsWith('/v1/responses/')) return 'responses'
  return 'openai'
}
