// One SSE event's JSON, parsed once for both readers of a translated stream: the vendor's own
// reader (which rebuilds the answer and usage) and the translator's decoder read each event back
// to back with the same string. Only readers that never change what they parsed may share it (the
// Anthropic reader copies what it keeps; the decoders only read).
let lastData: string | undefined
let lastValue: unknown

/** JSON.parse(data), the previous result when data is the same text; throws as JSON.parse does */
export function parseEventJson(data: string): any {
  if (data === lastData) return lastValue
  const value = JSON.parse(data)
  lastData = data
  lastValue = value
  return value
}

/** what parseEventJson(data) gives next: the value of a large event's data, parsed in slices by the caller */
export function primeEventJson(data: string, value: unknown): void {
  lastData = data
  lastValue = value
}

/** the value primed for this very data, else undefined (not parsed by the relay: then the reader parses it) */
export function primedEventJson(data: string): unknown {
  return data === lastData ? lastValue : undefined
}
