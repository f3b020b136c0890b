// Body mutators. A body is a JSON value plus "splices": placeholders replaced by raw JSON text
// after serialisation, for what JSON.stringify cannot write (1e309, -0, __proto__ keys) or must
// not build as objects (200,000 levels of nesting would overflow the fuzzer's own stack). Each
// splice keeps a JS expression of its text, so a reproduction can be printed in a few lines.
import type { Rng } from './prng.ts'
import { longText, randomLetters, randomLettersJs, randomValue, weirdString } from './values.ts'

export interface Splice {
  text: string
  /** a JS expression that evaluates to `text` */
  expr: string
}

export interface BodyDraft {
  value: unknown
  splices: Map<string, Splice>
  /** byte-level edits applied to the serialised text, in order */
  edits: Array<{ note: string; apply(b: Buffer): Buffer }>
}

type Path = Array<string | number>

export const draftOf = (value: unknown): BodyDraft => ({ value: structuredClone(value), splices: new Map(), edits: [] })

function splice(d: BodyDraft, text: string, expr: string): string {
  const token = `\u0001SPLICE${d.splices.size}\u0001`
  d.splices.set(token, { text, expr })
  return token
}

/** The body as bytes: JSON text with splices substituted, then the byte edits. */
export function serialise(d: BodyDraft): Buffer {
  if (d.value === undefined && d.edits.length === 0) return Buffer.alloc(0)
  let text = d.value === undefined ? '' : JSON.stringify(d.value)
  for (const [token, s] of d.splices) text = text.split(JSON.stringify(token)).join(s.text)
  let buf: Buffer = Buffer.from(text, 'utf8')
  for (const e of d.edits) buf = e.apply(buf)
  return buf
}

/** The body as a JS expression (null when byte edits make it opaque). */
export function bodyExpr(d: BodyDraft): string | null {
  if (d.edits.length) return null
  if (d.value === undefined) return "''"
  let expr = JSON.stringify(JSON.stringify(d.value))
  for (const [token, s] of d.splices)
    expr = expr.split(JSON.stringify(JSON.stringify(token)).slice(1, -1)).join(`"+(${s.expr})+"`)
  return expr.replace(/^""\+/, '').replace(/\+""$/, '')
}

function allPaths(v: unknown, prefix: Path = [], out: Path[] = []): Path[] {
  out.push(prefix)
  if (prefix.length >= 8 || out.length > 500) return out
  if (Array.isArray(v)) v.forEach((x, i) => allPaths(x, [...prefix, i], out))
  else if (v && typeof v === 'object') for (const k of Object.keys(v)) allPaths((v as any)[k], [...prefix, k], out)
  return out
}

function getAt(v: unknown, p: Path): unknown {
  return p.reduce<any>((o, k) => (o == null ? undefined : o[k]), v)
}

function setAt(d: BodyDraft, p: Path, value: unknown) {
  if (p.length === 0) d.value = value
  else {
    const parent = getAt(d.value, p.slice(0, -1)) as any
    if (parent && typeof parent === 'object') parent[p.at(-1)!] = value
  }
}

function deleteAt(d: BodyDraft, p: Path) {
  const parent = getAt(d.value, p.slice(0, -1)) as any
  if (Array.isArray(parent)) parent.splice(Number(p.at(-1)), 1)
  else if (parent && typeof parent === 'object') delete parent[p.at(-1)!]
}

const show = (p: Path) =>
  p.length
    ? p
        .map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`))
        .join('')
        .replace(/^\./, '')
    : '(body)'

/** a path whose node satisfies `want`, or the root */
function pickPath(rng: Rng, d: BodyDraft, want: (v: unknown, p: Path) => boolean = () => true): Path {
  const paths = allPaths(d.value).filter((p) => want(getAt(d.value, p), p))
  return paths.length ? rng.pick(paths) : []
}

// placeholders are not strings to bend: a splice token must stay whole
const isString = (v: unknown) => typeof v === 'string' && !v.startsWith('\u0001SPLICE')
const isObj = (v: unknown) => !!v && typeof v === 'object' && !Array.isArray(v)
const nonRoot = (_: unknown, p: Path) => p.length > 0

function deepNesting(rng: Rng, depth: number): Splice {
  switch (rng.int(0, 2)) {
    case 0:
      return { text: '['.repeat(depth) + ']'.repeat(depth), expr: `'['.repeat(${depth})+']'.repeat(${depth})` }
    case 1:
      return {
        text: '{"a":'.repeat(depth) + '1' + '}'.repeat(depth),
        expr: `'{"a":'.repeat(${depth})+'1'+'}'.repeat(${depth})`,
      }
    default:
      return {
        text: '[{"type":"text","text":'.repeat(depth) + '"x"' + '}]'.repeat(depth),
        expr: `'[{"type":"text","text":'.repeat(${depth})+'"x"'+'}]'.repeat(${depth})`,
      }
  }
}

export const BODY_MUTATORS: Array<{ name: string; weight: number; run(rng: Rng, d: BodyDraft): string }> = [
  {
    name: 'wrong-type',
    weight: 5,
    run(rng, d) {
      const p = pickPath(rng, d, (_, p) => p.length > 0 || rng.chance(0.1))
      const v = randomValue(rng)
      setAt(d, p, v)
      return `${show(p)} := ${JSON.stringify(v)?.slice(0, 80)}`
    },
  },
  {
    name: 'deep-nesting',
    weight: 3,
    run(rng, d) {
      const depth = rng.size(50, 200_000)
      const p = rng.chance(0.3) ? ['x_nest'] : pickPath(rng, d, nonRoot)
      const s = deepNesting(rng, depth)
      setAt(d, p, splice(d, s.text, s.expr))
      return `${show(p)} := ${depth} levels of nesting`
    },
  },
  {
    name: 'huge-string',
    weight: 3,
    run(rng, d) {
      const n = rng.size(10_000, 8_000_000)
      const p = pickPath(rng, d, (v, p) => isString(v) && p.length > 0)
      if (rng.chance(0.25)) {
        const seed = rng.int(1, 2 ** 31)
        setAt(d, p, splice(d, JSON.stringify(randomLetters(seed, n)), `JSON.stringify(${randomLettersJs(seed, n)})`))
        return `${show(p)} := ${n} random letters (seed ${seed})`
      }
      const t = longText(rng, n)
      const unit = t.slice(0, 16)
      setAt(
        d,
        p,
        splice(
          d,
          JSON.stringify(t),
          `JSON.stringify(${JSON.stringify(unit)}.repeat(${Math.ceil(n / unit.length)}).slice(0,${n}))`,
        ),
      )
      return `${show(p)} := ${n} chars of ${JSON.stringify(unit.slice(0, 8))}`
    },
  },
  {
    name: 'weird-string',
    weight: 5,
    run(rng, d) {
      const p = pickPath(rng, d, (v, p) => isString(v) && p.length > 0)
      const w = weirdString(rng)
      const old = getAt(d.value, p)
      const v = rng.chance(0.5) && typeof old === 'string' ? old + w : w
      setAt(d, p, v)
      return `${show(p)} := ${JSON.stringify(v).slice(0, 80)}`
    },
  },
  {
    name: 'unknown-field',
    weight: 2,
    run(rng, d) {
      const p = pickPath(rng, d, isObj)
      const key = rng.chance(0.3) ? rng.pick(['__proto__', 'constructor', 'prototype']) : weirdString(rng) || 'x'
      const v = randomValue(rng)
      const target = getAt(d.value, p) as Record<string, unknown> | undefined
      if (!target || !isObj(target)) return 'unknown-field: no object'
      // an own "__proto__" key (as JSON.parse makes one) is written by JSON.stringify only when defined
      if (key === '__proto__')
        Object.defineProperty(target, key, { value: v, enumerable: true, configurable: true, writable: true })
      else target[key] = v
      return `${show(p)}.${JSON.stringify(key)} := ${JSON.stringify(v)?.slice(0, 60)}`
    },
  },
  {
    name: 'remove-field',
    weight: 3,
    run(rng, d) {
      const p = pickPath(rng, d, nonRoot)
      deleteAt(d, p)
      return `delete ${show(p)}`
    },
  },
  {
    name: 'huge-array',
    weight: 2,
    run(rng, d) {
      const p = pickPath(rng, d, (v, p) => Array.isArray(v) && v.length > 0 && p.length > 0)
      const arr = getAt(d.value, p)
      if (!Array.isArray(arr)) return 'huge-array: no array'
      const n = rng.size(100, 200_000)
      const one = JSON.stringify(arr[0]) ?? 'null'
      setAt(
        d,
        p,
        splice(d, `[${Array(n).fill(one).join(',')}]`, `'['+Array(${n}).fill(${JSON.stringify(one)}).join(',')+']'`),
      )
      return `${show(p)} := ${n} copies of its first element`
    },
  },
  {
    name: 'number-literal',
    weight: 2,
    run(rng, d) {
      const p = rng.chance(0.5)
        ? [rng.pick(['max_tokens', 'temperature', 'n', 'top_k'])]
        : pickPath(rng, d, (v, p) => typeof v === 'number' && p.length > 0)
      const lit = rng.pick([
        '1e309',
        '-1e309',
        '-0',
        '1E-400',
        '123456789012345678901234567890',
        '0.1e1',
        '-1',
        '1.5',
        '0',
        '9007199254740993',
      ])
      setAt(d, p.length ? p : ['max_tokens'], splice(d, lit, JSON.stringify(lit)))
      return `${show(p.length ? p : ['max_tokens'])} := ${lit}`
    },
  },
  {
    name: 'stream-flag',
    weight: 2,
    run(rng, d) {
      const v = rng.pick([true, false, 'true', 1, null, {}, [true]])
      if (isObj(d.value)) (d.value as any).stream = v
      return `stream := ${JSON.stringify(v)}`
    },
  },
  {
    name: 'truncate',
    weight: 2,
    run(rng, d) {
      const frac = rng.next()
      d.edits.push({ note: 'truncate', apply: (b) => b.subarray(0, Math.floor(b.length * frac)) })
      return `truncated at ${(frac * 100).toFixed(0)}% of the JSON text`
    },
  },
  {
    name: 'garble',
    weight: 2,
    run(rng, d) {
      const n = rng.int(1, 5)
      const at = Array.from({ length: n }, () => rng.next())
      const bytes = Array.from({ length: n }, () =>
        rng.pick([0x00, 0xff, 0xc0, 0x80, 0xed, 0x22, 0x5c, 0x7b, 0x7d, 0x0a]),
      )
      d.edits.push({
        note: 'garble',
        apply: (b) => {
          const out = Buffer.from(b)
          at.forEach((f, i) => {
            if (out.length) out[Math.floor(f * out.length)] = bytes[i]!
          })
          return out
        },
      })
      return `${n} bytes overwritten with ${bytes.map((x) => '0x' + x.toString(16)).join(',')}`
    },
  },
  {
    name: 'whole-body',
    weight: 2,
    run(rng, d) {
      const kind = rng.pick([
        '',
        ' ',
        'null',
        '[]',
        '1',
        '"s"',
        'true',
        '{}',
        '{',
        '}',
        'bom',
        'trailing',
        'twice',
        'comment',
        'utf16',
      ])
      const prefixFor: Record<string, (b: Buffer) => Buffer> = {
        bom: (b) => Buffer.concat([Buffer.from('\ufeff'), b]),
        trailing: (b) => Buffer.concat([b, Buffer.from('xyz')]),
        twice: (b) => Buffer.concat([b, b]),
        comment: (b) => Buffer.concat([Buffer.from('/*c*/'), b]),
        utf16: (b) => Buffer.from(b.toString('utf8'), 'utf16le'),
      }
      d.edits.push({ note: kind, apply: prefixFor[kind] ?? (() => Buffer.from(kind)) })
      return `body := ${prefixFor[kind] ? `${kind}(body)` : JSON.stringify(kind)}`
    },
  },
]
