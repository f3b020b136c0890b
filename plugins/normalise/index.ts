// normalise: builds ctx.normalised, the cache-key and embedding view of the prompt.
// Runs first (enforce 'pre') so every cache plugin sees it; never touches ctx.request.body,
// so what goes upstream is exactly what the client sent.
import { LRUCache } from 'lru-cache'
import { definePlugin } from '../../core/plugin.ts'
import type { CanonicalMessage, Plugin } from '../../core/types.ts'
import { normaliseText, STEP_NAMES, type NormaliseSteps } from './text.ts'

export { normaliseText, canonicaliseCode, DEFAULT_STEPS, STEP_NAMES } from './text.ts'
export type { NormaliseSteps, NormaliseTextOptions } from './text.ts'

type Role = 'system' | 'user' | 'assistant' | 'tool'

export interface NormaliseOptions extends NormaliseSteps {
  /**
   * which parts are normalised (default system and user). Assistant turns and tool results are
   * model output and data: kept as they are unless listed here.
   */
  roles?: Role[]
  /** texts longer than this get only lowercase + whitespace collapse (default 200,000 chars) */
  maxChars?: number
}

const ROLE_NAMES: Role[] = ['system', 'user', 'assistant', 'tool']

function validate(options: NormaliseOptions): void {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new Error(`normalise: options must be an object, got ${JSON.stringify(options)}`)
  }
  const known = new Set<string>([...STEP_NAMES, 'roles', 'maxChars'])
  for (const [key, value] of Object.entries(options)) {
    if (!known.has(key))
      throw new Error(`normalise: unknown option "${key}" (expected one of ${[...known].join(', ')})`)
    if ((STEP_NAMES as readonly string[]).includes(key) && value !== undefined && typeof value !== 'boolean') {
      throw new Error(`normalise: ${key} must be a boolean, got ${JSON.stringify(value)}`)
    }
  }
  if (options.roles !== undefined) {
    if (!Array.isArray(options.roles) || options.roles.some((r) => !ROLE_NAMES.includes(r))) {
      throw new Error(
        `normalise: roles must be an array of ${ROLE_NAMES.join(' | ')}, got ${JSON.stringify(options.roles)}`,
      )
    }
  }
  if (
    options.maxChars !== undefined &&
    (typeof options.maxChars !== 'number' || !Number.isFinite(options.maxChars) || options.maxChars < 0)
  ) {
    throw new Error(`normalise: maxChars must be a non-negative number, got ${JSON.stringify(options.maxChars)}`)
  }
}

export function normalise(options: NormaliseOptions = {}): Plugin {
  validate(options)
  const roles = new Set<Role>(options.roles ?? ['system', 'user'])
  const { roles: _roles, ...textOptions } = options
  // agents resend the whole conversation on every turn: earlier turns are normalised once
  const memo = new LRUCache<string, string>({
    maxSize: 8_000_000,
    sizeCalculation: (v, k) => Math.max(1, k.length + v.length),
  })
  const norm = (text: string) => {
    let out = memo.get(text)
    if (out === undefined) {
      out = normaliseText(text, textOptions)
      if (text.length <= 1_000_000) memo.set(text, out)
    }
    return out
  }
  return definePlugin({
    name: 'normalise',
    enforce: 'pre',
    options: { ...options },
    hooks: {
      beforeRequest(ctx) {
        if (ctx.operation !== 'chat' || !ctx.prompt) return
        const messages: CanonicalMessage[] = ctx.prompt.messages.map((m) =>
          roles.has(m.role) && m.text ? { ...m, text: norm(m.text) } : m,
        )
        ctx.normalised = {
          system: roles.has('system') && ctx.prompt.system ? norm(ctx.prompt.system) : ctx.prompt.system,
          messages,
        }
      },
    },
  })
}

export default normalise
