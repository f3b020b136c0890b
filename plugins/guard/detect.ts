// Secret detector: a pure function, no I/O, shared by the guard plugin and bench:guard.
// One combined regular expression finds every candidate in a single pass (each rule an
// alternative anchored on its literal prefix or on a key/secret/token word followed by an
// assignment); a candidate is then validated (character classes, entropy, placeholders, published
// example values) before it counts. Text without a candidate costs that one pass.

export const SECRET_KINDS = [
  'aws-access-key',
  'aws-secret-key',
  'google-api-key',
  'azure-storage-key',
  'github-token',
  'gitlab-token',
  'slack-token',
  'slack-webhook',
  'stripe-key',
  'stripe-webhook-secret',
  'twilio-key',
  'sendgrid-key',
  'openai-key',
  'anthropic-key',
  'npm-token',
  'private-key',
  'jwt',
  'connection-string',
  'generic-secret',
] as const
export type SecretKind = (typeof SECRET_KINDS)[number]

/** Groups a config may name instead of single kinds. */
export const SECRET_GROUPS: Record<string, SecretKind[]> = {
  cloud: ['aws-access-key', 'aws-secret-key', 'google-api-key', 'azure-storage-key'],
  vcs: ['github-token', 'gitlab-token', 'npm-token'],
  payment: ['stripe-key', 'stripe-webhook-secret'],
  chat: ['slack-token', 'slack-webhook', 'twilio-key', 'sendgrid-key'],
  llm: ['openai-key', 'anthropic-key'],
}

export interface SecretMatch {
  kind: string
  start: number
  end: number
}

// Values published in vendor documentation as examples: they open nothing, and flagging them
// would redact every pasted tutorial (bench/data/guard/README.md records the decision).
const PUBLISHED_EXAMPLES = new Set([
  'AKIAIOSFODNN7EXAMPLE',
  'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c',
  'sk_test_4eC39HqLyjWDarjtT1zdp7dc',
  'sk_test_BQokikJOvBiI2HlWgH4olfQ2',
])

// A character that continues a token: a match must not start or end inside a longer run (a
// base64 image, a hash) of these.
const L = '(?<![A-Za-z0-9+/_-])'
// In JSON text a token at the start of a line follows the escape `\n`, whose `n` the boundary
// refuses; the one-pass test takes no boundary instead (a lookbehind allowing the escape made it
// twenty times slower). It then answers yes for a prefix inside a longer run, rarely: the strings
// are searched, with the boundary, only after it.
const L_JSON = ''
const R = '(?![A-Za-z0-9_-])'
// case-insensitive words without the `i` flag, which would slow the literal prefixes down
const ci = (w: string) => w.replace(/[a-z]/g, (c) => `[${c}${c.toUpperCase()}]`)
const KEYWORD = `(?:${['api[_-]?key', 'apikey', 'secret', 'token', 'pass', 'pwd', 'credential', 'access[_-]?key', 'private[_-]?key', 'auth'].map(ci).join('|')})`
// the value after `key = `: no quotes, spaces, brackets or separators; 8 to 512 characters
const VALUE = `[^\\s"'\`<>,;\\\\()\\[\\]{}|]{8,512}`
// a quote, escaped once in a JSON string, three times in a JSON string inside a JSON body
const QUOTE = `(?:\\\\{0,3}["'\`])?`
// spaces or tabs around `=`; a tab is `\t` in the JSON text the one-pass test reads
const SP = `(?:[ \\t]|\\\\t){0,3}`
// white space, or its escape in JSON text
const WS = '(?:\\s|\\\\[nrt])'

// Order matters where prefixes nest: sk-ant- before sk-, the URL forms before the keyword rule.
// `L` is the boundary before a token: the text's own, or the JSON text's (for the one-pass test).
const rules = (L: string): Array<[name: string, source: string]> => [
  [
    'privateKey',
    `-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:[\\s\\S]{0,20000}?-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|(?:(?:\\s|\\\\[nr])+[A-Za-z0-9+/=]{16,}){1,400})`,
  ],
  ['anthropic', `${L}sk-ant-[A-Za-z0-9_-]{32,}${R}`],
  ['openai', `${L}sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}${R}`],
  ['aws', `${L}(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}${R}`],
  ['google', `${L}AIza[0-9A-Za-z_-]{35}${R}`],
  ['github', `${L}(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,255})${R}`],
  ['gitlab', `${L}gl(?:pat|rt|dt)-[A-Za-z0-9_-]{20,}${R}`],
  ['slack', `${L}xox[abposre]-[A-Za-z0-9-]{10,}${R}`],
  ['slackHook', `https://hooks\\.slack\\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{20,}`],
  ['stripe', `${L}[sr]k_(?:live|test)_[A-Za-z0-9]{20,}${R}`],
  ['whsec', `${L}whsec_[A-Za-z0-9+/=]{24,}${R}`],
  ['twilio', `${L}SK[0-9a-f]{32}${R}`],
  ['sendgrid', `${L}SG\\.[A-Za-z0-9_-]{16,32}\\.[A-Za-z0-9_-]{16,64}${R}`],
  ['npm', `${L}npm_[A-Za-z0-9]{36}${R}`],
  ['jwt', `${L}eyJ[A-Za-z0-9_-]{10,}\\.eyJ[A-Za-z0-9_-]{10,}\\.[A-Za-z0-9_-]{16,}${R}`],
  ['azure', `(?:AccountKey|SharedAccessKey)=[A-Za-z0-9+/]{30,}={0,2}`],
  // anchored on its literal '://', the scheme's last letter checked behind it: a scheme tried at
  // every letter of the text (or a lookbehind before the literal) cost more than all other rules
  ['url', `:\\\\?/\\\\?/(?<=[A-Za-z0-9]:\\\\?/\\\\?/)[^\\s:@/"'\`<>]{0,128}:[^\\s@/"'\`<>]{1,256}@`],
  [
    'auth',
    `${ci('authorization')}${QUOTE}\\s{0,3}[:=]\\s{0,3}${QUOTE}(?:[Bb]earer|[Bb]asic|[Tt]oken)${WS}+[A-Za-z0-9._~+/=-]{12,}`,
  ],
  ['bearer', `[Bb]earer${WS}+[A-Za-z0-9._~+/=-]{20,}`],
  ['keyword', `${KEYWORD}[A-Za-z0-9_.-]{0,30}${QUOTE}${SP}(?:=>|:=|[:=])${SP}${QUOTE}${VALUE}`],
]

const RULES = rules(L)
// one unnamed group per rule (RULE_NAMES[i] is group i + 1): a named group per rule made every
// match build a 20-key groups object
const SCAN = new RegExp(RULES.map(([, src]) => `(${src})`).join('|'), 'g')
const RULE_NAMES = RULES.map(([name]) => name)
// the same alternatives without captures, for a yes/no answer over a whole request body
const ANY = new RegExp(
  rules(L_JSON)
    .map(([, src]) => `(?:${src})`)
    .join('|'),
)

/**
 * Whether `text` holds anything that might be a secret: one pass, no validation. A request body
 * (JSON text, its strings escaped) that fails this holds no secret the detector would find in its
 * strings, unless the client spelled the secret's characters as \u escapes.
 */
export function maySecret(text: string): boolean {
  return ANY.test(text)
}

/** Shannon entropy in bits per character. */
export function entropy(s: string): number {
  const counts = new Map<number, number>()
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    counts.set(c, (counts.get(c) ?? 0) + 1)
  }
  let h = 0
  for (const n of counts.values()) {
    const p = n / s.length
    h -= p * Math.log2(p)
  }
  return h
}

const HAS_DIGIT = /\d/
const HAS_LOWER = /[a-z]/
const HAS_UPPER = /[A-Z]/
// a value that names a secret rather than holding one: variables, templates, masks, examples
const PLACEHOLDER =
  /^(?:\$|%|<|\{|\[REDACTED|process\.env|os\.environ|env\.|ENV\[|getenv|x{3,}|X{3,}|\*{3,}|\.{3}|0{6,}|1234|abcd|your|my[_-]?(?:api|secret|token|key|pass)|example|sample|dummy|fake|placeholder|changeme|redacted|replace|insert|enter|todo|none$|null$|undefined$|true$|false$)/i
const EXAMPLE_WORD = /EXAMPLE|example|XXXX|xxxx|\*\*\*\*/
const PASSWORD_WORD = /pass|pwd/i
const SPECIFIC = [
  'anthropic',
  'openai',
  'aws',
  'google',
  'github',
  'gitlab',
  'slack',
  'stripe',
  'whsec',
  'twilio',
  'sendgrid',
  'npm',
  'jwt',
]
const SPECIFIC_FULL = new RegExp(
  `^(?:${RULES.filter(([n]) => SPECIFIC.includes(n))
    .map(([n, src]) => `(?<${n}>${src})`)
    .join('|')})$`,
)

const KIND_OF: Record<string, SecretKind> = {
  privateKey: 'private-key',
  anthropic: 'anthropic-key',
  openai: 'openai-key',
  aws: 'aws-access-key',
  google: 'google-api-key',
  github: 'github-token',
  gitlab: 'gitlab-token',
  slack: 'slack-token',
  slackHook: 'slack-webhook',
  stripe: 'stripe-key',
  whsec: 'stripe-webhook-secret',
  twilio: 'twilio-key',
  sendgrid: 'sendgrid-key',
  npm: 'npm-token',
  jwt: 'jwt',
  azure: 'azure-storage-key',
}

/** which specific rule a whole value matches (a key found after `token=` or in a URL's password), if any */
// the prefixes SPECIFIC_FULL can match: most values start with none, and this test is cheaper
const SPECIFIC_START = /^(?:sk-|A[KSBC][IC]A|AIza|gh[pousr]_|github_pat_|gl[prd]|xox|[sr]k_|whsec_|SK|SG\.|npm_|eyJ)/

function specificKind(value: string): SecretKind | undefined {
  if (!SPECIFIC_START.test(value)) return undefined
  const m = SPECIFIC_FULL.exec(value)
  if (!m?.groups) return undefined
  for (const name of SPECIFIC)
    if (m.groups[name] !== undefined) return validToken(name, value) ? KIND_OF[name] : undefined
  return undefined
}

/** the checks a token of a known prefix must pass beyond its shape */
function validToken(rule: string, value: string): boolean {
  if (PUBLISHED_EXAMPLES.has(value)) return false
  switch (rule) {
    case 'openai':
      // random base62 keys mix cases and digits; CSS class names (SpinKit's sk-fading-circle) do not
      return HAS_DIGIT.test(value) && HAS_UPPER.test(value) && HAS_LOWER.test(value)
    case 'aws':
      return !value.endsWith('EXAMPLE')
    case 'slack':
    case 'gitlab':
    case 'stripe':
      return HAS_DIGIT.test(value)
    default:
      return true
  }
}

/** a generic value in a key/secret/token position: long and random enough, or a password */
function secretValue(value: string, password: boolean): boolean {
  if (PLACEHOLDER.test(value) || EXAMPLE_WORD.test(value) || value.includes('://') || value[0] === '/') return false
  if (/^[\d.]+$/.test(value)) return false
  if (password)
    return (
      value.length >= 8 &&
      /[A-Za-z]/.test(value) &&
      /[^A-Za-z]/.test(value) &&
      !/^[A-Za-z_]+[.][A-Za-z_.]+$/.test(value)
    )
  return value.length >= 16 && HAS_DIGIT.test(value) && /[A-Za-z]/.test(value) && entropy(value) >= 3
}

// what follows a keyword up to the value: the rest of the name, a quote, the separator
const KEYWORD_HEAD = new RegExp(`^${KEYWORD}[A-Za-z0-9_.-]{0,30}${QUOTE}${SP}(?:=>|:=|[:=])${SP}${QUOTE}`)
const AUTH_HEAD = new RegExp(
  `^(?:${ci('authorization')}${QUOTE}\\s{0,3}[:=]\\s{0,3}${QUOTE})?(?:[Bb]earer|[Bb]asic|[Tt]oken)${WS}+`,
)
const AWS_SECRET = /^[A-Za-z0-9/+]{40}$/
const HEX32 = /^[0-9a-f]{32}$/

// a name that holds an identifier, a length or a place, not the secret itself
const NOT_A_SECRET_NAME =
  /(?:[_.-]?ids?|name|path|file|url|uri|type|length|len|count|expires?(?:_at|_in)?|ttl|hash|header|prefix|version)$/i
const TWILIO_NEAR = /twilio|\bAC[0-9a-f]{32}\b/i
const AWS_ID_NEAR = /\b(?:AKIA|ASIA)[A-Z0-9]{16}\b|aws/i

/** an AWS secret access key: 40 random characters of base64 (a git SHA-1 is lower-case hex) */
function awsSecretValue(value: string): boolean {
  return (
    AWS_SECRET.test(value) &&
    HAS_UPPER.test(value) &&
    HAS_LOWER.test(value) &&
    /[\d/+]/.test(value) &&
    !PUBLISHED_EXAMPLES.has(value) &&
    !EXAMPLE_WORD.test(value)
  )
}

/**
 * A keyword assignment (`api_key = "..."`): the value's span and kind, when it is a secret.
 * Returns where the value ends when it runs past the match (a quoted value holding brackets).
 */
function keywordMatch(text: string, start: number, whole: string, out: SecretMatch[]): number | undefined {
  const head = KEYWORD_HEAD.exec(whole)![0]
  const name = head.slice(0, head.search(/\\{0,3}["'`]?(?:[ \t]|\\t)*(?:=>|:=|[:=])/))
  const vStart = start + head.length
  // a sentence's full stop or colon is not part of the value
  let value = whole.slice(head.length).replace(/[.:]+$/, '')
  // a quoted value ends at its closing quote, whatever it holds (Django's keys have brackets)
  const quote = head[head.length - 1]
  if (quote === '"' || quote === "'" || quote === '`') {
    const close = text.indexOf(quote, vStart)
    const line = text.indexOf('\n', vStart)
    if (close > vStart + value.length && close - vStart <= 512 && (line < 0 || close < line))
      value = text.slice(vStart, text[close - 1] === '\\' ? close - 1 : close)
  }
  const end = vStart + value.length
  const at = (kind: SecretKind) => {
    out.push({ kind, start: vStart, end })
    return end
  }
  const specific = specificKind(value)
  if (specific) return at(specific)
  if (NOT_A_SECRET_NAME.test(name) || value.startsWith('-----')) return undefined
  const around = text.slice(Math.max(0, start - 300), Math.min(text.length, end + 100))
  if (awsSecretValue(value) && (/aws|access/i.test(name) || AWS_ID_NEAR.test(around))) return at('aws-secret-key')
  if (HEX32.test(value) && TWILIO_NEAR.test(around)) return at('twilio-key')
  if (secretValue(value, PASSWORD_WORD.test(name))) return at('generic-secret')
  return undefined
}

// the defaults of database images and tutorials: they open a laptop's container, not a secret
const DEFAULT_PASSWORD =
  /^(?:pass(?:word)?|pwd|secret|[*x]+|postgres|root|admin|guest|test|changeme|mysecretpassword|example)$/i

/** `scheme://user:password@host`: the password's span, when it is one */
function urlMatch(start: number, whole: string, out: SecretMatch[]): void {
  // the match starts at '://' (or ':\\/\\/' in JSON text that escapes its slashes)
  const scheme = whole.startsWith(':\\/\\/') ? 5 : 3
  const colon = whole.indexOf(':', scheme)
  const password = whole.slice(colon + 1, -1)
  const user = whole.slice(scheme, colon)
  if (colon < 0 || !password || password === user || PLACEHOLDER.test(password) || DEFAULT_PASSWORD.test(password))
    return
  const pStart = start + colon + 1
  out.push({ kind: specificKind(password) ?? 'connection-string', start: pStart, end: pStart + password.length })
}

function authMatch(start: number, whole: string, out: SecretMatch[]): void {
  const head = AUTH_HEAD.exec(whole)?.[0] ?? ''
  const value = whole.slice(head.length)
  const vStart = start + head.length
  const kind = specificKind(value)
  if (kind || secretValue(value, false))
    out.push({ kind: kind ?? 'generic-secret', start: vStart, end: vStart + value.length })
}

// an AWS secret access key written near its key id without a name (a credentials CSV, a log line)
const NEAR_AWS = /(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])/g

function awsSecretsNear(text: string, at: SecretMatch, out: SecretMatch[]): void {
  const from = Math.max(0, at.start - 300)
  const window = text.slice(from, Math.min(text.length, at.end + 300))
  NEAR_AWS.lastIndex = 0
  for (let m = NEAR_AWS.exec(window); m; m = NEAR_AWS.exec(window)) {
    if (!awsSecretValue(m[0])) continue
    const s = from + m.index
    const e = s + m[0].length
    const same = out.find((o) => s < o.end && o.start < e)
    if (!same) out.push({ kind: 'aws-secret-key', start: s, end: e })
    else if (same.kind === 'generic-secret' && same.start === s && same.end === e) same.kind = 'aws-secret-key'
  }
}

/** validate one candidate of rule `name` at `start`; returns where a keyword value ended past the match */
function candidate(text: string, name: string, start: number, whole: string, out: SecretMatch[]): number | undefined {
  switch (name) {
    case 'keyword':
      return keywordMatch(text, start, whole, out)
    case 'url':
      urlMatch(start, whole, out)
      return undefined
    case 'auth':
    case 'bearer':
      authMatch(start, whole, out)
      return undefined
    case 'azure': {
      const eq = whole.indexOf('=') + 1
      out.push({ kind: 'azure-storage-key', start: start + eq, end: start + whole.length })
      return undefined
    }
  }
  if (name === 'privateKey' || validToken(name, whole))
    out.push({ kind: KIND_OF[name]!, start, end: start + whole.trimEnd().length })
  return undefined
}

let checkedKinds: readonly string[] | undefined

/**
 * Secrets in `text`, sorted by start, never overlapping. `kinds` limits what is reported (default
 * all of SECRET_KINDS); unknown kinds throw.
 */
export function detectSecrets(text: string, kinds?: readonly string[]): SecretMatch[] {
  if (kinds && kinds !== checkedKinds) {
    for (const k of kinds)
      if (!(SECRET_KINDS as readonly string[]).includes(k))
        throw new Error(`detectSecrets: unknown kind "${k}" (expected ${SECRET_KINDS.join(', ')})`)
    // the guard passes one frozen list for every string: checked once (a frozen list cannot change)
    if (Object.isFrozen(kinds)) checkedKinds = kinds
  }
  const out: SecretMatch[] = []
  SCAN.lastIndex = 0
  for (let m = SCAN.exec(text); m; m = SCAN.exec(text)) {
    let rule = 1
    while (m[rule] === undefined) rule++
    const name = RULE_NAMES[rule - 1]!
    const before = out.length
    const end = candidate(text, name, m.index, m[0], out)
    if (end !== undefined && end > SCAN.lastIndex) SCAN.lastIndex = end
    // a candidate that proved to be none may have swallowed the start of a real one (the
    // `"private_key": "-----BEGIN` of a service-account file): scan on from its next character
    if (out.length === before) SCAN.lastIndex = m.index + 1
  }
  if (!out.length) return out
  for (const f of out.slice()) if (f.kind === 'aws-access-key') awsSecretsNear(text, f, out)
  if (out.length > 1) out.sort((a, b) => a.start - b.start)
  return kinds ? out.filter((f) => kinds.includes(f.kind)) : out
}
