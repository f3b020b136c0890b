// Fake secrets and personal data for the guard corpus: each has the format of the real thing
// (prefix, length, alphabet, checksum where personal data has one) and is drawn from a seeded
// generator, so the corpus is the same on every run and no value belongs to anyone.

/** mulberry32: small, seeded, the same sequence on every platform */
export class Rng {
  #s: number
  constructor(seed: number) {
    this.#s = seed >>> 0
  }
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) | 0
    let t = Math.imul(this.#s ^ (this.#s >>> 15), 1 | this.#s)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  int(n: number): number {
    return Math.floor(this.next() * n)
  }
  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)]!
  }
  chars(alphabet: string, n: number): string {
    let out = ''
    for (let i = 0; i < n; i++) out += alphabet[this.int(alphabet.length)]
    return out
  }
  /** n random characters with at least one upper, one lower and one digit, as a random key has */
  mixed(alphabet: string, n: number): string {
    const fixed = [this.chars(UPPER, 1), this.chars(LOWER, 1), this.chars(DIGITS, 1)]
    const rest = this.chars(alphabet, n - 3).split('')
    for (const c of fixed) rest.splice(this.int(rest.length + 1), 0, c)
    return rest.join('')
  }
}

export const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'
export const LOWER = 'abcdefghijklmnopqrstuvwxyz'
export const DIGITS = '0123456789'
export const HEX = '0123456789abcdef'
export const ALNUM = UPPER + LOWER + DIGITS
export const B64 = ALNUM + '+/'
export const B64URL = ALNUM + '-_'

const b64url = (s: string) => Buffer.from(s).toString('base64url')

// ---------------------------------------------------------------- secrets

export const fakeSecret: Record<string, (r: Rng) => string> = {
  'aws-access-key': (r) => r.pick(['AKIA', 'AKIA', 'AKIA', 'ASIA']) + r.chars('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 16),
  'aws-secret-key': (r) => r.mixed(B64, 40),
  'google-api-key': (r) => 'AIza' + r.mixed(B64URL, 35),
  'azure-storage-key': (r) => r.mixed(B64, 86) + '==',
  'github-token': (r) =>
    r.int(4) === 0
      ? `github_pat_${r.mixed(ALNUM, 22)}_${r.mixed(ALNUM, 59)}`
      : `${r.pick(['ghp', 'ghp', 'gho', 'ghs', 'ghu'])}_${r.mixed(ALNUM, 36)}`,
  'gitlab-token': (r) => 'glpat-' + r.mixed(ALNUM + '_-', 20),
  'slack-token': (r) =>
    `${r.pick(['xoxb', 'xoxp', 'xoxa', 'xoxs'])}-${r.chars(DIGITS, 12)}-${r.chars(DIGITS, 13)}-${r.mixed(ALNUM, 24)}`,
  'slack-webhook': (r) =>
    `https://hooks.slack.com/services/T${r.chars(UPPER + DIGITS, 10)}/B${r.chars(UPPER + DIGITS, 10)}/${r.mixed(ALNUM, 24)}`,
  'stripe-key': (r) => `${r.pick(['sk_live_', 'sk_live_', 'rk_live_', 'sk_test_'])}${r.mixed(ALNUM, r.pick([24, 99]))}`,
  'stripe-webhook-secret': (r) => 'whsec_' + r.mixed(ALNUM, 32),
  'twilio-key': (r) => 'SK' + r.chars(HEX, 32),
  'sendgrid-key': (r) => `SG.${r.mixed(B64URL, 22)}.${r.mixed(B64URL, 43)}`,
  'openai-key': (r) =>
    r.int(3) === 0 ? `sk-${r.mixed(ALNUM, 20)}T3BlbkFJ${r.mixed(ALNUM, 20)}` : `sk-proj-${r.mixed(B64URL, 156)}`,
  'anthropic-key': (r) => `sk-ant-api03-${r.mixed(B64URL, 93)}AA`,
  'npm-token': (r) => 'npm_' + r.mixed(ALNUM, 36),
  'private-key': (r) => pem(r),
  jwt: (r) => {
    const header = b64url(JSON.stringify({ alg: r.pick(['HS256', 'RS256', 'ES256']), typ: 'JWT' }))
    const payload = b64url(
      JSON.stringify({
        sub: `user_${r.chars(DIGITS, 6)}`,
        iat: 1_700_000_000 + r.int(9_999_999),
        exp: 1_800_000_000 + r.int(9_999_999),
        scope: r.pick(['read', 'admin', 'read write']),
      }),
    )
    return `${header}.${payload}.${r.mixed(B64URL, 43)}`
  },
  'connection-string': (r) => r.mixed(ALNUM, 12 + r.int(12)),
  'generic-secret': (r) => (r.int(2) ? r.chars(HEX, 32 + r.int(2) * 32) : r.mixed(ALNUM + '_-', 24 + r.int(24))),
}

function pem(r: Rng): string {
  const label = r.pick([
    'RSA PRIVATE KEY',
    'PRIVATE KEY',
    'EC PRIVATE KEY',
    'OPENSSH PRIVATE KEY',
    'ENCRYPTED PRIVATE KEY',
  ])
  const lines = Array.from({ length: 4 + r.int(8) }, () => r.mixed(B64, 64))
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n${r.mixed(B64, 20)}==\n-----END ${label}-----`
}

/** a password a person chose: words, digits, a symbol */
export function fakePassword(r: Rng): string {
  const word = r.pick(['Winter', 'Falcon', 'Harbor', 'Maple', 'Quartz', 'Summit', 'Tango', 'Violet', 'Orbit', 'Copper'])
  return `${word}${r.chars(DIGITS, 2 + r.int(3))}${r.pick(['!', '#', '$', '%', '&', '*', '?', ''])}${r.pick(['x', 'Q', 'z', 'Lm', ''])}${r.chars(DIGITS, 1)}`
}

// ---------------------------------------------------------------- personal data

const FIRST = [
  'anna',
  'ben',
  'chloe',
  'david',
  'elif',
  'farid',
  'greta',
  'hiro',
  'ines',
  'jonas',
  'kavya',
  'liam',
  'marta',
  'nils',
  'olga',
  'pablo',
  'quinn',
  'rosa',
  'sven',
  'tara',
]
const LAST = [
  'schmidt',
  'martin',
  'garcia',
  'kowalski',
  'nakamura',
  'okafor',
  'rossi',
  'dubois',
  'jensen',
  'silva',
  'novak',
  'haddad',
  'larsen',
  'moreau',
  'ivanova',
]
const DOMAINS = [
  'acme-logistics.com',
  'northwind.io',
  'brightpath.de',
  'kestrel-health.co.uk',
  'mailbox.org',
  'gmail.com',
  'outlook.com',
  'bluefin-labs.fr',
  'zentro.nl',
  'uni-freiburg.de',
]

export function fakeEmail(r: Rng): string {
  const first = r.pick(FIRST)
  const last = r.pick(LAST)
  const local = r.pick([
    `${first}.${last}`,
    `${first[0]}${last}`,
    `${first}_${last}${r.chars(DIGITS, 2)}`,
    `${first}+invoices`,
  ])
  return `${local}@${r.pick(DOMAINS)}`
}

export function fakePhone(r: Rng): string {
  switch (r.int(6)) {
    case 0:
      return `+44 20 7946 0${r.chars(DIGITS, 3)}`
    case 1:
      return `+1 (${r.pick(['415', '212', '617', '312'])}) 555-01${r.chars(DIGITS, 2)}`
    case 2:
      return `+49 30 ${r.chars('123456789', 1)}${r.chars(DIGITS, 7)}`
    case 3:
      return `+33 6 ${r.chars(DIGITS, 2)} ${r.chars(DIGITS, 2)} ${r.chars(DIGITS, 2)} ${r.chars(DIGITS, 2)}`
    case 4:
      return `(${r.pick(['415', '646', '303', '702'])}) ${r.chars('23456789', 1)}${r.chars(DIGITS, 2)}-${r.chars(DIGITS, 4)}`
    default:
      return `+31 6 ${r.chars(DIGITS, 4)} ${r.chars(DIGITS, 4)}`
  }
}

function luhnDigit(body: string): string {
  let sum = 0
  for (let i = 0; i < body.length; i++) {
    let d = Number(body[body.length - 1 - i])
    if (i % 2 === 0) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
  }
  return String((10 - (sum % 10)) % 10)
}

/** a Luhn-valid number of a real network's range (not one of the published test numbers) */
export function fakeCard(r: Rng): string {
  const kind = r.int(3)
  if (kind === 2) {
    const body = r.pick(['34', '37']) + r.chars(DIGITS, 12)
    const n = body + luhnDigit(body)
    return r.int(2) ? `${n.slice(0, 4)} ${n.slice(4, 10)} ${n.slice(10)}` : n
  }
  const body =
    (kind === 0 ? '4' + r.chars(DIGITS, 5) : r.pick(['51', '52', '53', '54', '55']) + r.chars(DIGITS, 4)) +
    r.chars(DIGITS, 9)
  const n = body + luhnDigit(body)
  const sep = r.pick([' ', '-', ''])
  return sep ? n.match(/.{4}/g)!.join(sep) : n
}

function mod97(s: string): number {
  let rem = 0
  for (const c of s) {
    const v = c >= 'A' && c <= 'Z' ? String(c.charCodeAt(0) - 55) : c
    for (const d of v) rem = (rem * 10 + Number(d)) % 97
  }
  return rem
}

const IBAN_BBAN: Record<string, (r: Rng) => string> = {
  DE: (r) => r.chars(DIGITS, 18),
  FR: (r) => r.chars(DIGITS, 10) + r.chars(UPPER + DIGITS, 11) + r.chars(DIGITS, 2),
  GB: (r) => r.chars(UPPER, 4) + r.chars(DIGITS, 14),
  NL: (r) => r.chars(UPPER, 4) + r.chars(DIGITS, 10),
  ES: (r) => r.chars(DIGITS, 20),
  IT: (r) => r.chars(UPPER, 1) + r.chars(DIGITS, 10) + r.chars(UPPER + DIGITS, 12),
}

/** ISO 13616: check digits = 98 - (BBAN + country + "00") mod 97 */
export function fakeIban(r: Rng, grouped = r.int(2) === 0): string {
  const country = r.pick(Object.keys(IBAN_BBAN))
  const bban = IBAN_BBAN[country]!(r)
  const check = String(98 - mod97(bban + country + '00')).padStart(2, '0')
  const iban = country + check + bban
  return grouped ? iban.match(/.{1,4}/g)!.join(' ') : iban
}

/** national ids with their checksums (US SSN and UK NINO have none: format rules only) */
export function fakeNationalId(r: Rng): { value: string; label: string } {
  switch (r.int(6)) {
    case 0: {
      const area = String(1 + r.int(665)).padStart(3, '0')
      return {
        value: `${area === '666' ? '667' : area}-${String(1 + r.int(99)).padStart(2, '0')}-${String(1 + r.int(9999)).padStart(4, '0')}`,
        label: 'SSN',
      }
    }
    case 1: {
      const first = r.chars('ABCEGHJKLMNOPRSTWXYZ', 1)
      const second = r.chars('ABCEGHJKLMNPRSTWXYZ', 1)
      const prefix = ['BG', 'GB', 'KN', 'NK', 'NT', 'TN', 'ZZ'].includes(first + second) ? 'AB' : first + second
      const d = r.chars(DIGITS, 6)
      return {
        value: `${prefix} ${d.slice(0, 2)} ${d.slice(2, 4)} ${d.slice(4)} ${r.chars('ABCD', 1)}`,
        label: 'National Insurance number',
      }
    }
    case 2: {
      const n = r.chars(DIGITS, 8)
      return { value: n + 'TRWAGMYFPDXBNJZSQVHLCKE'[Number(n) % 23], label: 'DNI' }
    }
    case 3: {
      const body = `${1 + r.int(2)}${r.chars(DIGITS, 2)}${String(1 + r.int(12)).padStart(2, '0')}${String(1 + r.int(95)).padStart(2, '0')}${r.chars(DIGITS, 6)}`
      const key = String(97 - Number(BigInt(body) % 97n)).padStart(2, '0')
      const v = body + key
      return {
        value: `${v[0]} ${v.slice(1, 3)} ${v.slice(3, 5)} ${v.slice(5, 7)} ${v.slice(7, 10)} ${v.slice(10, 13)} ${v.slice(13)}`,
        label: 'numéro de sécurité sociale',
      }
    }
    case 4:
      return { value: steuerId(r), label: 'Steuer-ID' }
    default:
      return { value: bsn(r), label: 'BSN' }
  }
}

export function steuerId(r: Rng): string {
  for (;;) {
    // ten digits, no leading zero, exactly one digit twice
    const digits = DIGITS.split('')
    const drop = 1 + r.int(9)
    const pool = digits.filter((_, i) => i !== drop)
    for (let i = pool.length - 1; i > 0; i--) {
      const j = r.int(i + 1)
      ;[pool[i], pool[j]] = [pool[j]!, pool[i]!]
    }
    const twice = pool[r.int(pool.length)]!
    pool.splice(r.int(pool.length + 1), 0, twice)
    const d = pool.join('')
    if (d[0] === '0') continue
    let product = 10
    for (let i = 0; i < 10; i++) {
      let sum = (Number(d[i]) + product) % 10
      if (sum === 0) sum = 10
      product = (sum * 2) % 11
    }
    const check = 11 - product
    return d + String(check === 10 ? 0 : check)
  }
}

export function bsn(r: Rng): string {
  for (;;) {
    const d = r.chars('123456789', 1) + r.chars(DIGITS, 7)
    let sum = 0
    for (let i = 0; i < 8; i++) sum += (9 - i) * Number(d[i])
    const last = sum % 11
    if (last <= 9) return d + String(last)
  }
}

export function fakeIp(r: Rng): string {
  if (r.int(4) === 0) return `2a02:${r.chars(HEX, 4)}:${r.chars(HEX, 4)}:${r.chars(HEX, 3)}0::${r.chars(HEX, 3)}1`
  // public unicast ranges a home or office address comes from
  return `${r.pick([81, 84, 88, 91, 95, 109, 145, 176, 185, 212])}.${1 + r.int(254)}.${r.int(256)}.${1 + r.int(253)}`
}
