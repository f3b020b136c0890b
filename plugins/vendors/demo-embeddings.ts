// The demo vendor's embeddings, bounded and computed the way a real vendor's would not hold a
// proxy: OpenAI's `input` of at most 2048 items and Gemini's batchEmbedContents of at most 100
// requests, each refused with the vendor's own 400 beyond that; the vectors computed in slices with
// the event loop given back between them (20,000 inputs in one go held it for about a second).
// OpenAI answers `{object: 'list', data: [{embedding}], usage}` (base64 float32 when asked);
// Gemini embedContent `{embedding: {values}}`, batchEmbedContents `{embeddings: [{values}, ...]}`,
// one vector per content from its text parts, shortened to `outputDimensionality` as Google does.
import type { UpstreamResponse } from '../../core/types.ts'

/** OpenAI: "any array must be 2048 dimensions or less" (the embeddings API reference, `input`) */
export const OPENAI_MAX_INPUTS = 2048
/** Gemini: "BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch" */
export const GEMINI_MAX_BATCH = 100
/** characters of input embedded between turns of the event loop */
const SLICE_CHARS = 64_000
/** inputs embedded between turns of the event loop, however short */
const SLICE_INPUTS = 256

type Embed = (text: string) => number[]

const json = (status: number, body: unknown): UpstreamResponse => ({
  status,
  headers: { 'content-type': 'application/json' },
  body: Buffer.from(JSON.stringify(body)),
  stream: false,
})

/** The vendor's 400 for a request over its input limit, in its own error shape; undefined when within it. */
export function overLimit(protocol: string, body: any): UpstreamResponse | undefined {
  if (protocol === 'gemini') {
    const n = Array.isArray(body?.requests) ? body.requests.length : 0
    return n > GEMINI_MAX_BATCH
      ? json(400, {
          error: {
            code: 400,
            message: `* BatchEmbedContentsRequest.requests: at most ${GEMINI_MAX_BATCH} requests can be in one batch\n`,
            status: 'INVALID_ARGUMENT',
          },
        })
      : undefined
  }
  const n = Array.isArray(body?.input) ? body.input.length : 0
  return n > OPENAI_MAX_INPUTS
    ? json(400, {
        error: {
          message: `'$.input' is invalid: an array of at most ${OPENAI_MAX_INPUTS} inputs is accepted, got ${n}. Please check the API reference: https://platform.openai.com/docs/api-reference.`,
          type: 'invalid_request_error',
          param: 'input',
          code: null,
        },
      })
    : undefined
}

/** `each` over the items, the loop given back after every slice of SLICE_CHARS characters or SLICE_INPUTS items */
async function sliced<T, R>(items: T[], size: (item: T) => number, each: (item: T, i: number) => R): Promise<R[]> {
  const out: R[] = []
  let chars = 0
  for (let i = 0; i < items.length; i++) {
    out.push(each(items[i]!, i))
    chars += size(items[i]!)
    if (chars >= SLICE_CHARS || i % SLICE_INPUTS === SLICE_INPUTS - 1) {
      chars = 0
      await new Promise(setImmediate)
    }
  }
  return out
}

/** OpenAI's base64 embedding: the float32 values, little-endian, as the SDK decodes them. */
function base64Floats(values: number[]): string {
  const buf = Buffer.alloc(values.length * 4)
  values.forEach((v, i) => buf.writeFloatLE(v, i * 4))
  return buf.toString('base64')
}

/** OpenAI's answer: a vector per input and the input tokens, as `/v1/embeddings` answers. */
export async function openaiEmbeddings(
  body: any,
  model: string,
  embed: Embed,
  count: (text: string) => number,
): Promise<UpstreamResponse> {
  const { input, encoding_format: format } = body
  const texts: string[] = Array.isArray(input) ? input.map(String) : [String(input)]
  let tokens = 0
  const data = await sliced(
    texts,
    (t) => t.length,
    (t, index) => {
      tokens += count(t)
      const v = embed(t)
      return { object: 'embedding', index, embedding: format === 'base64' ? base64Floats(v) : v }
    },
  )
  return json(200, { object: 'list', data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } })
}

const textOf = (content: any): string =>
  Array.isArray(content?.parts)
    ? content.parts.map((p: any) => (typeof p?.text === 'string' ? p.text : '')).join('')
    : ''

function vector(request: any, embed: Embed): { values: number[] } {
  const values = embed(textOf(request?.content))
  const dims = request?.outputDimensionality
  return { values: Number.isSafeInteger(dims) && dims > 0 ? values.slice(0, dims) : values }
}

/** Gemini's answer to embedContent or batchEmbedContents. */
export async function geminiEmbeddings(body: any, embed: Embed): Promise<UpstreamResponse> {
  if (!Array.isArray(body?.requests)) return json(200, { embedding: vector(body, embed) })
  const embeddings = await sliced(
    body.requests as any[],
    (r) => textOf(r?.content).length,
    (r) => vector(r, embed),
  )
  return json(200, { embeddings })
}
