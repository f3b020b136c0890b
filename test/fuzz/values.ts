// Hostile values: the strings, models, header values and paths that broke proxies before
// (non-Latin-1 text reaching a response header, CR/LF, NUL, lone surrogates, bad escapes).
import type { Rng } from './prng.ts'

/** Strings a JSON field may carry; lone surrogates survive as \ud800 escapes in the JSON text. */
export const WEIRD_STRINGS: readonly string[] = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\r\n',
  'x\r\nX-Injected: 1',
  '\n\n',
  '\t',
  '\u0100',
  'Ā-model',
  '模型',
  '🦊',
  '\ud800',
  '\udfff',
  'a\ud800b',
  '\u202e',
  '\ufeff',
  '\u00e9',
  '\u00ff',
  '\u2028',
  '%',
  '%00',
  '%zz',
  '%E0%A4%A',
  '../../etc/passwd',
  '/',
  ':',
  '?',
  '#',
  'models/',
  '..',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  '<script>alert(1)</script>',
  '"',
  '\\',
  '${x}',
  '{{x}}',
  'am-xxxxxxxxxxxxxxxx',
  'null',
  '0',
  '-1',
  'NaN',
  'true',
  'a'.repeat(300),
  'é'.repeat(200),
]

/** Models that route to each vendor, then bent: the prefix keeps the routing, the tail is hostile. */
export const MODEL_PREFIX = {
  openai: 'gpt-4o-mini',
  anthropic: 'claude-haiku-4-5',
  gemini: 'gemini-2.5-flash',
  responses: 'gpt-4o-mini',
} as const

export function weirdString(rng: Rng): string {
  return rng.pick(WEIRD_STRINGS)
}

/** A hostile model name: sometimes a routable prefix plus junk, sometimes junk alone. */
export function weirdModel(rng: Rng, prefix: string): string {
  const junk = rng.chance(0.15) ? longText(rng, rng.size(100, 20000)) : weirdString(rng)
  return rng.chance(0.7) ? prefix + junk : junk
}

const ALPHABETS = ['abc def ghi ', 'Ā ā Ă ă ', '模 型 测 试 ', '🦊🐻 ', 'x', 'é ', '\u0000\u0001', 'a\ud800 ']

/** text of about n characters from one alphabet (ASCII, Latin Extended, CJK, emoji, controls) */
export function longText(rng: Rng, n: number): string {
  const unit = rng.pick(ALPHABETS)
  return unit.repeat(Math.max(1, Math.ceil(n / unit.length))).slice(0, n)
}

/**
 * n random lowercase letters from a small LCG: text no cache has seen, one long "word" (what
 * content-keyed caches and tokenizers retain most of). The JS source below makes the same text,
 * for printed reproductions.
 */
export function randomLetters(seed: number, n: number): string {
  let a = seed >>> 0
  const out = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1103515245) + 12345) >>> 0
    out[i] = 97 + ((a >>> 16) % 26)
  }
  return out.toString('latin1')
}
export const randomLettersJs = (seed: number, n: number) =>
  `(()=>{let a=${seed >>> 0};const o=Buffer.allocUnsafe(${n});for(let i=0;i<${n};i++){a=(Math.imul(a,1103515245)+12345)>>>0;o[i]=97+((a>>>16)%26)}return o.toString('latin1')})()`

/** A JSON value of a random type (what a wrong-type mutation puts in place of a field). */
export function randomValue(rng: Rng): unknown {
  switch (rng.int(0, 11)) {
    case 0:
      return null
    case 1:
      return rng.pick([0, -1, 1.5, 2 ** 53 + 2, -(2 ** 31), 1e300])
    case 2:
      return weirdString(rng)
    case 3:
      return rng.chance(0.5)
    case 4:
      return []
    case 5:
      return {}
    case 6:
      return [null, 1, 'x', {}]
    case 7:
      return { type: weirdString(rng), text: 1 }
    case 8:
      return [{ role: 'user' }]
    case 9:
      return { '': null, [weirdString(rng)]: [] }
    case 10:
      return longText(rng, rng.size(10, 5000))
    default:
      return [[[[]]]]
  }
}

/** A header value as the bytes on the wire, written as a latin1 string (one char = one byte). */
export function weirdHeaderValue(rng: Rng): string {
  switch (rng.int(0, 8)) {
    case 0:
      return utf8AsLatin1(weirdString(rng).replace(/[\r\n\0]/g, ''))
    case 1:
      return rng.pick(['\u00ff\u00fe', '\u0080', 'caf\u00e9', '\u00e9'.repeat(50)])
    case 2:
      return 'x'.repeat(rng.size(100, 20000))
    case 3:
      return rng.pick(['', ' ', '\t', ',', ';', '=', '"', "'"])
    case 4:
      return rng.pick(['a\rb', 'a\nb', 'a\u0000b', 'a\r\nX-Injected: 1', '\u007f', '\u0001']) // rejected by the HTTP parser
    case 5:
      return utf8AsLatin1(rng.pick(['模型', '🦊', 'Ā']))
    case 6:
      return rng.pick(['engineering', 'default', 'tiny', 'alice', 'claude-code'])
    case 7:
      return rng.pick(['../../x', '%2e%2e', 'a/b', 'a:b', 'a b', '*', '?', '#'])
    default:
      return String(rng.int(-1e6, 1e12))
  }
}

/** the UTF-8 bytes of s, one latin1 char per byte: what a client sending raw UTF-8 puts on the wire */
export function utf8AsLatin1(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1')
}

/** Paths off the routes: bad escapes, traversal, wrong case, unknown methods, huge. */
export const WEIRD_PATHS: readonly string[] = [
  '/%',
  '/%zz',
  '/%E0%A4%A',
  '/v1/%',
  '/v1beta/models/%:generateContent',
  '/v1beta/models/%zz:streamGenerateContent?alt=sse',
  '/v1beta/models/gemini-2.5-flash%2F..%2F..%2Fx:generateContent',
  '/v1beta/models/:generateContent',
  '/v1beta/models/gemini-2.5-flash',
  '/v1beta/models/gemini-2.5-flash:unknownMethod',
  '/v1beta/models/gemini-2.5-flash:',
  '/v1beta/models/a:b:c:generateContent',
  '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=json',
  '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=%',
  '/v1/chat/completions/..',
  '/v1/chat/../chat/completions',
  '//v1/chat/completions',
  '/v1/chat/completions/',
  '/V1/CHAT/COMPLETIONS',
  '/v1/chat/completions?x=%',
  '/v1/chat/completions?key=%zz&key=1',
  '/v1/messages/',
  '/v1/messages/count_tokens/x',
  '/v1/messages?beta=true',
  '/',
  '*',
  '/..',
  '/./v1/models',
  '/v1/models?%',
  '/v1/models/gpt-4o',
  '/agentmesh/health',
  '/agentmesh/ready',
  '/agentmesh/events?types=%',
  '/agentmesh/admin/keys',
  '/agentmesh/admin/usage',
  '/agentmesh/audit/public-key',
  '/favicon.ico',
  '/\u00ff',
  utf8AsLatin1('/模型'),
  '/a\u0000b',
  'http://example.com/v1/chat/completions',
  '/v1/chat/completions#frag',
]

export const METHODS: readonly string[] = [
  'GET',
  'PUT',
  'DELETE',
  'PATCH',
  'HEAD',
  'OPTIONS',
  'POST',
  'FOO',
  'get',
  'CONNECT',
  'TRACE',
]

export const CONTENT_TYPES: readonly string[] = [
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/json; charset=utf-16',
  'application/json; charset=latin1',
  '',
  'application/xml',
  'application/json, text/plain',
  '*/*',
]

export const CACHE_CONTROLS: readonly string[] = [
  'no-cache',
  'no-store',
  'max-age=0',
  'max-age=abc',
  'no-cache, no-store',
  'private="',
  ',,,',
  'max-age=99999999999999999999',
]
