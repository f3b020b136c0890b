// The large-body tests' texts: words picked in a fixed pseudo-random order (i -> 7i + 3 mod 1009,
// from `seed`), each followed by a space, until `chars` characters (a little over). Each test
// passes its own words: 2-, 3- and 4-byte characters, quotes, backslashes and control characters
// are what is slowest to parse, escape and encode.
export function wordText(words: readonly string[], chars: number, seed = 1): string {
  const parts: string[] = []
  let n = 0
  for (let i = seed; n < chars; i = (i * 7 + 3) % 1009) {
    const w = words[i % words.length]!
    parts.push(w, ' ')
    n += w.length + 1
  }
  return parts.join('')
}
