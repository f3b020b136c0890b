// Embeddings requests of each protocol, read for governance: the model and the text to count and
// bill (quota, cost, audit), and the usage in the vendor's answer. The body itself goes upstream
// unchanged. OpenAI: POST /v1/embeddings {model, input}. Gemini: POST
// /v1beta/models/{model}:embedContent {content} and :batchEmbedContents {requests: [{model, content}]}.
import { ProtocolError, isObject, requireModel } from './protocols/shared.ts'
import type { Prompt, ProtocolName } from './types.ts'

export function embeddingsPrompt(protocol: ProtocolName, body: unknown, pathModel?: string): Prompt {
  if (!isObject(body)) throw new ProtocolError('request body must be a JSON object')
  const model = protocol === 'gemini' ? requireModel(pathModel, 'the model in the path') : requireModel(body.model)
  const text = protocol === 'gemini' ? geminiEmbeddingText(body) : openaiEmbeddingText(body)
  return { model, system: '', messages: [{ role: 'user', text }], params: {}, stream: false, hasImages: false }
}

function openaiEmbeddingText(body: Record<string, any>): string {
  const input = body.input
  if (input === undefined) throw new ProtocolError('`input` is required')
  // token arrays (input: [[1, 2]]) are counted by the vendor; the estimate reads strings
  return Array.isArray(input)
    ? input.filter((s) => typeof s === 'string').join('\n')
    : typeof input === 'string'
      ? input
      : ''
}

function geminiEmbeddingText(body: Record<string, any>): string {
  if (body.requests !== undefined) {
    if (!Array.isArray(body.requests) || body.requests.length === 0)
      throw new ProtocolError('`requests` must be a non-empty array')
    return body.requests
      .map((r: unknown, i: number) => {
        if (!isObject(r)) throw new ProtocolError(`requests[${i}] must be an object`)
        return contentText(r.content, `requests[${i}].content`)
      })
      .join('\n')
  }
  return contentText(body.content, 'content')
}

/** Only `parts[].text` is embedded (and billed) by Gemini; other parts pass through unread. */
function contentText(content: unknown, where: string): string {
  if (!isObject(content)) throw new ProtocolError(`\`${where}\` is required and must be an object with \`parts\``)
  if (!Array.isArray(content.parts)) throw new ProtocolError(`\`${where}.parts\` must be an array`)
  return content.parts
    .map((p: unknown) => (isObject(p) && typeof p.text === 'string' ? p.text : ''))
    .filter(Boolean)
    .join('\n')
}

/**
 * The input tokens an embeddings answer reports: a number, undefined when the answer has none
 * (Gemini's developer API reports no usage: the estimate stands, marked estimated), or null when
 * the body is not an embeddings answer of the protocol (the core answers 502).
 */
export function embeddingsInputTokens(protocol: ProtocolName, json: unknown): number | undefined | null {
  if (!isObject(json)) return null
  if (protocol === 'gemini') {
    if (!isObject(json.embedding) && !Array.isArray(json.embeddings)) return null
    const n = json.usageMetadata?.promptTokenCount
    return Number.isSafeInteger(n) && n >= 0 ? n : undefined
  }
  if (!Array.isArray(json.data)) return null
  const n = json.usage?.prompt_tokens
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined
}
