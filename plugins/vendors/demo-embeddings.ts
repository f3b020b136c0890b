// The demo vendor's Gemini embeddings: embedContent answers `{embedding: {values}}`,
// batchEmbedContents `{embeddings: [{values}, ...]}`, one vector per content from its text parts,
// shortened to `outputDimensionality` as Google does.

const textOf = (content: any): string =>
  Array.isArray(content?.parts)
    ? content.parts.map((p: any) => (typeof p?.text === 'string' ? p.text : '')).join('')
    : ''

function vector(request: any, embed: (text: string) => number[]): { values: number[] } {
  const values = embed(textOf(request?.content))
  const dims = request?.outputDimensionality
  return { values: Number.isSafeInteger(dims) && dims > 0 ? values.slice(0, dims) : values }
}

export function geminiEmbeddings(body: any, embed: (text: string) => number[]): unknown {
  return Array.isArray(body?.requests)
    ? { embeddings: body.requests.map((r: any) => vector(r, embed)) }
    : { embedding: vector(body, embed) }
}
