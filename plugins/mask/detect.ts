// Personal-data detector: a pure function, no I/O, shared by the mask plugin and bench:guard.
// Every kind is a cheap candidate scan (a character test or one regex pass) followed by a
// validation that rejects look-alikes: checksums where the format has one, structural rules
// where it does not. Text without candidates costs one indexOf / one regex scan per kind.
import { isIPv6 } from 'node:net'

export const PERSONAL_DATA_KINDS = Object.freeze(['email', 'phone', 'card', 'iban', 'national-id', 'ip'] as const)
export type PersonalDataKind = (typeof PERSONAL_DATA_KINDS)[number]

export interface PersonalDataMatch {
  kind: string
  start: number
  end: number
}

type Found = PersonalDataMatch

// ---------------------------------------------------------------- checksums (exported for tests)

/** Luhn (mod 10) over a digit string. */
export function luhnValid(digits: string): boolean {
  let sum = 0
  let double = false
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48
    if (double) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
    double = !double
  }
  return sum % 10 === 0
}

/** ISO 13616 IBAN check: move the first four characters to the end, letters to numbers, mod 97 = 1. */
export function ibanValid(compact: string): boolean {
  const expected = IBAN_LENGTHS[compact.slice(0, 2)]
  if (expected === undefined || compact.length !== expected) return false
  const rearranged = compact.slice(4) + compact.slice(0, 4)
  let rem = 0
  for (let i = 0; i < rearranged.length; i++) {
    const c = rearranged.charCodeAt(i)
    if (c >= 48 && c <= 57) rem = (rem * 10 + (c - 48)) % 97
    else if (c >= 65 && c <= 90) rem = (rem * 100 + (c - 55)) % 97
    else return false
  }
  return rem === 1
}

// SWIFT IBAN registry lengths (release 2024); a country not listed is not an IBAN country.
const IBAN_LENGTHS: Record<string, number> = {
  AD: 24,
  AE: 23,
  AL: 28,
  AT: 20,
  AZ: 28,
  BA: 20,
  BE: 16,
  BG: 22,
  BH: 22,
  BI: 27,
  BR: 29,
  BY: 28,
  CH: 21,
  CR: 22,
  CY: 28,
  CZ: 24,
  DE: 22,
  DJ: 27,
  DK: 18,
  DO: 28,
  EE: 20,
  EG: 29,
  ES: 24,
  FI: 18,
  FK: 18,
  FO: 18,
  FR: 27,
  GB: 22,
  GE: 22,
  GI: 23,
  GL: 18,
  GR: 27,
  GT: 28,
  HR: 21,
  HU: 28,
  IE: 22,
  IL: 23,
  IQ: 23,
  IS: 26,
  IT: 27,
  JO: 30,
  KW: 30,
  KZ: 20,
  LB: 28,
  LC: 32,
  LI: 21,
  LT: 20,
  LU: 20,
  LV: 21,
  LY: 25,
  MC: 27,
  MD: 24,
  ME: 22,
  MK: 19,
  MN: 20,
  MR: 27,
  MT: 31,
  MU: 30,
  NI: 28,
  NL: 18,
  NO: 15,
  OM: 23,
  PK: 24,
  PL: 28,
  PS: 29,
  PT: 25,
  QA: 29,
  RO: 24,
  RS: 22,
  RU: 33,
  SA: 24,
  SC: 31,
  SD: 18,
  SE: 24,
  SI: 19,
  SK: 24,
  SM: 27,
  SO: 23,
  ST: 25,
  SV: 28,
  TL: 23,
  TN: 24,
  TR: 26,
  UA: 29,
  VA: 22,
  VG: 24,
  XK: 20,
  YE: 30,
}

/** Spanish DNI (8 digits + letter) and NIE (X/Y/Z + 7 digits + letter): letter = table[n mod 23]. */
export function spanishIdValid(id: string): boolean {
  const up = id.toUpperCase()
  const lead = 'XYZ'.indexOf(up[0]!)
  const digits = lead >= 0 ? String(lead) + up.slice(1, 8) : up.slice(0, 8)
  if (!/^\d{8}$/.test(digits)) return false
  return 'TRWAGMYFPDXBNJZSQVHLCKE'[Number(digits) % 23] === up[8]
}

/** French NIR (15 chars, Corsica 2A/2B): key = 97 - (first 13 as a number, 2A→19, 2B→18) mod 97. */
export function nirValid(compact: string): boolean {
  if (compact.length !== 15) return false
  const body = compact.slice(0, 13).toUpperCase()
  let n: bigint
  if (body.slice(5, 7) === '2A') n = BigInt(body.slice(0, 5) + '19' + body.slice(7))
  else if (body.slice(5, 7) === '2B') n = BigInt(body.slice(0, 5) + '18' + body.slice(7))
  else if (/^\d{13}$/.test(body)) n = BigInt(body)
  else return false
  return 97n - (n % 97n) === BigInt(compact.slice(13))
}

/**
 * German Steuer-Identifikationsnummer: 11 digits, no leading zero; in the first ten one digit
 * appears twice or three times, and not three times in a row; ISO 7064 MOD 11,10 check digit.
 */
export function steuerIdValid(d: string): boolean {
  if (!/^[1-9]\d{10}$/.test(d)) return false
  const counts = new Array<number>(10).fill(0)
  for (let i = 0; i < 10; i++) counts[d.charCodeAt(i) - 48]!++
  const repeated = counts.filter((c) => c > 1)
  if (repeated.length !== 1 || repeated[0]! > 3) return false
  if (repeated[0] === 3 && /(\d)\1\1/.test(d.slice(0, 10))) return false
  let product = 10
  for (let i = 0; i < 10; i++) {
    let sum = (d.charCodeAt(i) - 48 + product) % 10
    if (sum === 0) sum = 10
    product = (sum * 2) % 11
  }
  let check = 11 - product
  if (check === 10) check = 0
  return check === d.charCodeAt(10) - 48
}

/** Dutch BSN 11-proof: 9·d1 + 8·d2 + … + 2·d8 − d9 ≡ 0 (mod 11), and not all zeros. */
export function bsnValid(d: string): boolean {
  if (!/^\d{9}$/.test(d) || d === '000000000') return false
  let sum = 0
  for (let i = 0; i < 8; i++) sum += (9 - i) * (d.charCodeAt(i) - 48)
  sum -= d.charCodeAt(8) - 48
  return sum % 11 === 0
}

/** US SSN format rules (no checksum exists): area not 000/666/9xx, group not 00, serial not 0000. */
export function ssnValid(area: string, group: string, serial: string): boolean {
  if (area === '000' || area === '666' || area[0] === '9') return false
  if (group === '00' || serial === '0000') return false
  // advertised and widely published specimen numbers are not anyone's
  const whole = area + group + serial
  return whole !== '078051120' && whole !== '219099999' && whole !== '123456789'
}

/** UK National Insurance number prefix rules (no checksum exists). */
export function ninoValid(compact: string): boolean {
  const m = /^([A-CEGHJ-PR-TW-Z])([A-CEGHJ-NPR-TW-Z])\d{6}[A-D]$/.exec(compact.toUpperCase())
  if (!m) return false
  const prefix = m[1]! + m[2]!
  return !['BG', 'GB', 'KN', 'NK', 'NT', 'TN', 'ZZ'].includes(prefix)
}

// ---------------------------------------------------------------- kinds

const WORD = /[A-Za-z0-9_]/
const isWordChar = (c: string | undefined) => c !== undefined && WORD.test(c)
const isDigit = (c: string | undefined) => c !== undefined && c >= '0' && c <= '9'
// character classes as lookup tables: the email scan tests every character around each '@'
const table = (chars: string) => {
  const t = new Uint8Array(128)
  for (const c of chars) t[c.charCodeAt(0)] = 1
  return t
}
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
const LOCAL_T = table(ALNUM + '._%+-')
const DOMAIN_T = table(ALNUM + '.-')
const inTable = (t: Uint8Array, code: number) => code < 128 && t[code] === 1
// a word@name.ext whose "TLD" is a file extension is an asset name (icon@2x.png), not an address
const FILE_TLDS = new Set(['png', 'jpg', 'jpeg', 'gif', 'svg', 'webp', 'js', 'ts', 'css', 'json', 'md', 'py', 'txt'])

/** `scheme://user:password@host`: the part before '@' is a URL's credentials, not a mailbox (mailto: has no //) */
function urlCredentials(text: string, localStart: number): boolean {
  for (let i = localStart - 1; i >= 0 && i >= localStart - 256; i--) {
    const c = text[i]!
    if (c === '/' && text[i - 1] === '/' && text[i - 2] === ':') return true
    if (c === ' ' || c === '\n' || c === '\t' || c === '"' || c === "'" || c === '<' || c === '(') return false
  }
  return false
}

function findEmails(text: string, out: Found[]): void {
  let at = text.indexOf('@')
  while (at >= 0) {
    let s = at
    while (s > 0 && inTable(LOCAL_T, text.charCodeAt(s - 1))) s--
    while (s < at && (text[s] === '.' || text[s] === '-')) s++
    let e = at + 1
    while (e < text.length && inTable(DOMAIN_T, text.charCodeAt(e))) e++
    while (e > at + 1 && (text[e - 1] === '.' || text[e - 1] === '-')) e--
    const domain = text.slice(at + 1, e)
    const dot = domain.lastIndexOf('.')
    const tld = domain.slice(dot + 1)
    const local = text.slice(s, at)
    if (
      s < at &&
      dot > 0 &&
      /^[A-Za-z]{2,24}$/.test(tld) &&
      !FILE_TLDS.has(tld.toLowerCase()) &&
      !domain.includes('..') &&
      local !== 'git' &&
      !urlCredentials(text, s)
    ) {
      out.push({ kind: 'email', start: s, end: e })
    }
    at = text.indexOf('@', Math.max(e, at + 1))
  }
}

// public test numbers from card-network and PSP documentation: not personal data
const TEST_CARDS = new Set([
  '4242424242424242',
  '4111111111111111',
  '4000056655665556',
  '4012888888881881',
  '4222222222222',
  '5555555555554444',
  '5200828282828210',
  '5105105105105100',
  '2223003122003222',
  '378282246310005',
  '371449635398431',
  '378734493671000',
  '6011111111111117',
  '6011000990139424',
  '3056930009020004',
  '36227206271667',
  '3566002020360505',
  '6200000000000005',
  '4000000000000002',
  '4000000000009995',
  '4000000000000077',
  '4000002500003155',
  '4000000000003220',
  '5454545454545454',
  '4444333322221111',
])

function cardNetworkKnown(d: string): boolean {
  const two = Number(d.slice(0, 2))
  const four = Number(d.slice(0, 4))
  const len = d.length
  if (d[0] === '4') return len === 13 || len === 16 || len === 19 // Visa
  if ((two >= 51 && two <= 55) || (four >= 2221 && four <= 2720)) return len === 16 // Mastercard
  if (two === 34 || two === 37) return len === 15 // Amex
  if (two === 36 || two === 38 || (four >= 3000 && four <= 3059)) return len >= 14 && len <= 19 // Diners
  if (four >= 3528 && four <= 3589) return len >= 16 && len <= 19 // JCB
  if (d[0] === '6' || two === 50 || (two >= 56 && two <= 58)) return len >= 12 && len <= 19 // Discover, UnionPay, Maestro
  return false
}

// The kinds that need digits (cards, IBANs, national ids, phones, IPv4) are found by one
// alternation of all their candidate regexes, stepping one character past each position where any
// of them matches; at such a position each kind whose own scan has reached it is tried there
// (sticky). A kind's findings are then exactly those of its own global scan over the text (its
// next match is always at a position the alternation stops at), for about a third of the cost of
// one scan per regex.
interface Scanner {
  /** the candidate regex, for the alternation (backreferences by name: groups are shared there) */
  source: string
  /** the same, sticky: tried at a position the alternation stopped at */
  re: RegExp
  /** the same, global: the kind's own scan, for the rest of a text dense with candidates */
  all: RegExp
  /** whether a candidate can start with this character code */
  first: (c: number) => boolean
  /** checks a candidate, records it when it passes; returns where this kind's scan goes on */
  take: (text: string, m: RegExpExecArray, out: Found[]) => number
}

const isDigitCode = (c: number) => c >= 48 && c <= 57
const isUpperCode = (c: number) => c >= 65 && c <= 90
const endOf = (m: RegExpExecArray) => m.index + m[0].length

const CARD: Scanner = scanner(
  String.raw`(?<![\w.-])\d(?:[ -]?\d){11,18}(?![\w]|[.-]\d)`,
  isDigitCode,
  (_text, m, out) => {
    const raw = m[0]
    const digits = raw.replace(/[ -]/g, '')
    // separators, when present, are all the same character (4 4 4 4, 4 6 5, …)
    if (
      digits.length >= 12 &&
      digits.length <= 19 &&
      (digits.length === raw.length || /^[\d ]+$/.test(raw) || /^[\d-]+$/.test(raw)) &&
      cardNetworkKnown(digits) &&
      luhnValid(digits) &&
      !TEST_CARDS.has(digits)
    )
      out.push({ kind: 'card', start: m.index, end: endOf(m) })
    return endOf(m)
  },
)

const IBAN: Scanner = scanner(
  String.raw`(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?`,
  isUpperCode,
  (text, m, out) => {
    const raw = m[0]
    const len = IBAN_LENGTHS[raw.slice(0, 2)]
    if (len === undefined) return endOf(m)
    // the regex may run into a following upper-case word: cut at the country's length
    let n = 0
    let end = 0
    while (end < raw.length && n < len) {
      if (raw[end] !== ' ') n++
      end++
    }
    if (n !== len || isWordChar(text[m.index + end])) return endOf(m)
    if (ibanValid(raw.slice(0, end).replace(/ /g, ''))) out.push({ kind: 'iban', start: m.index, end: m.index + end })
    return m.index + end
  },
)

// the digit-and-letter ids as one kind (one alternation); which alternative matched is told by its
// named group. A 9-digit candidate whose name is not in the 40 characters before it is dropped
// like any failed check (testing the whole text for the name first cost as much as the scan).
const NATIONAL_PARTS = [
  String.raw`(?<![\w-])(?<ssnA>\d{3})(?<sep>[- ])(?<ssnG>\d{2})\k<sep>(?<ssnS>\d{4})(?![\w]|-\d)`,
  String.raw`(?<![A-Za-z0-9])(?<nino>[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D])(?![A-Za-z0-9])`,
  String.raw`(?<![A-Za-z0-9])(?<dni>(?:\d{8}|[XYZ]-?\d{7})-?[A-Z])(?![A-Za-z0-9])`,
  String.raw`(?<![\w])(?<nir>[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2})(?![\w])`,
  String.raw`(?<![\w\-./])(?<steuer>\d{11}|\d{2} \d{3} \d{3} \d{3})(?![\w]|[.\-/]\d)`,
  String.raw`(?<![\w\-./])(?<bsn>\d{9})(?![\w]|[.\-/]\d)`,
]
// a bare 9-digit number passes the 11-proof one time in 11: a BSN needs its name nearby
const BSN_CONTEXT = /\b(?:bsn|burgerservicenummer|sofi-?nummer|citizen service number)\b/i

function nationalIdValid(text: string, m: RegExpExecArray): boolean {
  const g = m.groups!
  if (g.ssnA !== undefined) return ssnValid(g.ssnA, g.ssnG!, g.ssnS!)
  if (g.nino !== undefined) return ninoValid(g.nino.replace(/ /g, ''))
  if (g.dni !== undefined) return spanishIdValid(g.dni.replace(/-/g, ''))
  if (g.nir !== undefined) return nirValid(g.nir.replace(/ /g, ''))
  if (g.steuer !== undefined) return steuerIdValid(g.steuer.replace(/ /g, ''))
  return BSN_CONTEXT.test(text.slice(Math.max(0, m.index - 40), m.index)) && bsnValid(m[0])
}

const NATIONAL: Scanner = scanner(
  NATIONAL_PARTS.join('|'),
  (c) => isDigitCode(c) || isUpperCode(c),
  (text, m, out) => {
    if (!nationalIdValid(text, m)) return m.index + 1
    // a candidate that fails its check may overlap one of another format: look again just after its start
    out.push({ kind: 'national-id', start: m.index, end: endOf(m) })
    return endOf(m)
  },
)

// "version 1.2.3.4", "v1.2.3.4", "build: 10.0.19041.1": a four-part version is not an address
const VERSION_BEFORE =
  /(?:\bv|version|\bver\.?|release|build|firmware|\bfw|\bos|windows|chrome|edge|firefox|safari)\s*[:=]?\s*$/i

const IPV4: Scanner = scanner(
  String.raw`(?<![\w.\-@/])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w-]|\.\d)`,
  isDigitCode,
  (text, m, out) => {
    // loopback, "any", broadcast and netmasks identify no one
    const a = m[0]
    const personal = !(a.startsWith('127.') || a === '0.0.0.0' || a.startsWith('255.'))
    if (personal && !VERSION_BEFORE.test(text.slice(Math.max(0, m.index - 12), m.index)))
      out.push({ kind: 'ip', start: m.index, end: endOf(m) })
    return endOf(m)
  },
)

function digitCount(s: string): number {
  let n = 0
  for (let i = 0; i < s.length; i++) if (isDigit(s[i])) n++
  return n
}

const PHONE_INTL: Scanner = scanner(
  String.raw`(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?![\w])`,
  (c) => c === 43,
  (_text, m, out) => {
    const n = digitCount(m[0])
    if (n >= 8 && n <= 15) out.push({ kind: 'phone', start: m.index, end: endOf(m) })
    return endOf(m)
  },
)
const PHONE_NANP: Scanner = scanner(
  String.raw`(?<![\w\-.])(?:\([2-9]\d{2}\) ?|[2-9]\d{2}(?<nanpSep>[-. ]))[2-9]\d{2}(?:\k<nanpSep>|[-. ])\d{4}(?![\w]|[-.]\d)`,
  (c) => c === 40 || (c >= 50 && c <= 57),
  (_text, m, out) => {
    out.push({ kind: 'phone', start: m.index, end: endOf(m) })
    return endOf(m)
  },
)
const PHONE_NATIONAL: Scanner = scanner(
  String.raw`(?<![\w\-./])0\d{1,4}(?:[ \-/]\d{2,8}){1,4}(?![\w]|[-./]\d)`,
  (c) => c === 48,
  (_text, m, out) => {
    const n = digitCount(m[0])
    if (n >= 10 && n <= 11 && m[0][1] !== '0') out.push({ kind: 'phone', start: m.index, end: endOf(m) })
    return endOf(m)
  },
)

function scanner(source: string, first: Scanner['first'], take: Scanner['take']): Scanner {
  return { source, re: new RegExp(source, 'y'), all: new RegExp(source, 'g'), first, take }
}

const SCANNERS: Record<PersonalDataKind, Scanner[]> = {
  email: [],
  iban: [IBAN],
  card: [CARD],
  'national-id': [NATIONAL],
  ip: [IPV4],
  phone: [PHONE_INTL, PHONE_NANP, PHONE_NATIONAL],
}
interface Plan {
  email: boolean
  ip: boolean
  scanners: Scanner[]
  /** every scanner's regex in one alternation, each in a group; undefined when no kind needs digits */
  any: RegExp | undefined
  /** the number of the group holding scanner i's alternative */
  group: number[]
}

const plans = new Map<string, Plan>()
// the plugin passes the same frozen array on every call: found by identity without joining it
// (a frozen list cannot have changed since)
let lastList: readonly string[] | undefined
let lastPlan: Plan | undefined

/** how many capture groups a regex source holds */
const groupCount = (source: string) => new RegExp(`(?:${source})|`).exec('')!.length - 1

/** what to run for a list of kinds, made once per list */
function planFor(kinds: readonly string[]): Plan {
  if (kinds === lastList) return lastPlan!
  const key = kinds.join(',')
  let plan = plans.get(key)
  if (plan) {
    if (Object.isFrozen(kinds)) {
      lastList = kinds
      lastPlan = plan
    }
    return plan
  }
  const scanners: Scanner[] = []
  for (const kind of kinds) {
    const list = SCANNERS[kind as PersonalDataKind]
    if (list === undefined)
      throw new Error(`detectPersonalData: unknown kind "${kind}" (expected ${PERSONAL_DATA_KINDS.join(', ')})`)
    for (const s of list) if (!scanners.includes(s)) scanners.push(s)
  }
  const group: number[] = []
  let n = 1
  for (const s of scanners) {
    group.push(n)
    n += 1 + groupCount(s.source)
  }
  plan = {
    email: kinds.includes('email'),
    ip: kinds.includes('ip'),
    scanners,
    any: scanners.length ? new RegExp(scanners.map((s) => `(${s.source})`).join('|'), 'g') : undefined,
    group,
  }
  // a caller making up kind lists cannot grow this without bound: there are 63 lists of distinct kinds
  if (plans.size < 1000) plans.set(key, plan)
  if (Object.isFrozen(kinds)) {
    lastList = kinds
    lastPlan = plan
  }
  return plan
}

// where each scanner's own scan has reached, per call (the detector never re-enters itself)
const reached: number[] = []

function findDigitKinds(text: string, plan: Plan, out: Found[]): void {
  const { scanners, any, group } = plan
  for (let i = 0; i < scanners.length; i++) reached[i] = 0
  let hits = 0
  any!.lastIndex = 0
  for (let m = any!.exec(text); m; m = any!.exec(text)) {
    const at = m.index
    // the alternative that matched: the scanners before it have no candidate here, its own
    // candidate is this match (its groups included), the ones after it may have one
    let i = 0
    while (m[group[i]!] === undefined) i++
    if (reached[i]! <= at) reached[i] = scanners[i]!.take(text, m, out)
    const c = text.charCodeAt(at)
    for (i++; i < scanners.length; i++) {
      const s = scanners[i]!
      if (reached[i]! > at || !s.first(c)) continue
      s.re.lastIndex = at
      const k = s.re.exec(text)
      if (k) reached[i] = s.take(text, k, out)
    }
    any!.lastIndex = at + 1
    // candidates at most positions ("1 1 1 1 …", a column of numbers): one scan per kind from here
    // costs less than stopping at each of them (every position before was looked at, so each
    // kind's own scan goes on from where it had reached, or from here)
    if (++hits > 64 && hits * 8 > at) {
      scanRest(text, scanners, at + 1, out)
      return
    }
  }
}

function scanRest(text: string, scanners: Scanner[], from: number, out: Found[]): void {
  for (let i = 0; i < scanners.length; i++) {
    const s = scanners[i]!
    s.all.lastIndex = Math.max(reached[i]!, from)
    for (let m = s.all.exec(text); m; m = s.all.exec(text)) s.all.lastIndex = s.take(text, m, out)
  }
}

// an IPv6 candidate from where its run starts (sticky): a group and a colon, or '::'
const IPV6_RE = /(?:[0-9A-Fa-f]{1,4}:|::)[0-9A-Fa-f:.]*/y
const IPV6_T = table('0123456789ABCDEFabcdef:.')

/**
 * IPv6 candidates: a run of hex digits, colons and dots holding a colon, not preceded by a word
 * character. Found from each ':' (indexOf) and the run around it: a regex tried at every hex letter
 * of the text cost more than every other personal-data kind together.
 */
function findIpv6(text: string, out: Found[]): void {
  let colon = text.indexOf(':')
  while (colon >= 0) {
    let s = colon
    while (s > 0 && inTable(IPV6_T, text.charCodeAt(s - 1))) s--
    let e = colon + 1
    while (e < text.length && inTable(IPV6_T, text.charCodeAt(e))) e++
    // the shortest address kept is three characters ("1::"); most colons in prose and JSON stand alone
    if (e - s >= 3 && (s === 0 || !isWordChar(text[s - 1]))) ipv6At(text, s, out)
    colon = text.indexOf(':', e)
  }
}

function ipv6At(text: string, s: number, out: Found[]): void {
  IPV6_RE.lastIndex = s
  const m = IPV6_RE.exec(text)
  if (!m) return
  // a trailing '.' or ':' ends the sentence or the label, not the address
  const a = m[0].replace(/[.:]+$/, (t) => (t.startsWith('::') && t.length === 2 ? t : ''))
  if (/[\w]/.test(text[s + a.length] ?? '')) return
  // an address has a digit somewhere (rules out std::map-like names) and is more than "::1"
  if (!/\d/.test(a) || a === '::' || a === '::1' || !isIPv6(a)) return
  // "12:30:45" parses as nothing, but "1:2:3:4:5:6:7:8"-like timestamps are too short to be hex groups
  if (!a.includes('::') && a.split(':').length !== 8) return
  out.push({ kind: 'ip', start: s, end: s + a.length })
}

// overlapping candidates: the more specific kind wins (an IBAN holds digit runs that look like a phone)
const PRIORITY: Record<string, number> = { email: 0, iban: 1, card: 2, 'national-id': 3, ip: 4, phone: 5 }

// every kind but email needs a digit: one scan decides whether the rest can match at all
const HAS_DIGIT = /\d/

/**
 * Personal data in `text`, sorted by start, never overlapping. `kinds` limits the search
 * (default: all of PERSONAL_DATA_KINDS); unknown kinds throw, so a typo in config is loud.
 */
export function detectPersonalData(text: string, kinds?: readonly string[]): PersonalDataMatch[] {
  const plan = planFor(kinds ?? PERSONAL_DATA_KINDS)
  const found: Found[] = []
  if (plan.email && text.indexOf('@') >= 0) findEmails(text, found)
  if (plan.any && HAS_DIGIT.test(text)) {
    findDigitKinds(text, plan, found)
    if (plan.ip) findIpv6(text, found)
  }
  if (found.length <= 1) return found
  found.sort((a, b) => PRIORITY[a.kind]! - PRIORITY[b.kind]! || a.start - b.start || b.end - a.end)
  const kept: Found[] = []
  for (const f of found) {
    if (!kept.some((k) => f.start < k.end && k.start < f.end)) kept.push(f)
  }
  return kept.sort((a, b) => a.start - b.start)
}
