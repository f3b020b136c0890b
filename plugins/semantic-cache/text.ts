/** The form of a prompt that is embedded: case and spacing carry no meaning for the cache. */
export function embeddingText(text: string): string {
  return text.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').trim()
}
