import { CONTROL_CHARS } from './headers.ts'
import type { Logger } from './types.ts'

const levels = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const

// Log lines carry messages and small scalar fields only; callers never pass headers or bodies,
// and values that look like keys are masked anyway.
const SECRET = /\b(sk-[A-Za-z0-9_-]{6,}|sk-ant-[A-Za-z0-9_-]{6,}|am-[A-Za-z0-9_-]{6,}|AIza[A-Za-z0-9_-]{10,})/g
// credentials in URLs (redis://user:password@host)
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@]+@/gi
export const maskSecrets = (s: string) =>
  s.replace(SECRET, (m) => m.slice(0, 5) + '…').replace(URL_CREDENTIALS, '$1***@')

const CONTROLS = /[\u0000-\u001f\u007f\u2028\u2029]/g
/**
 * One log call, one line: a model name or header with CR/LF (from a client) would otherwise
 * write a forged line into the log. Control characters are shown as \n, \u0000, ...
 */
export const escapeControls = (s: string) =>
  CONTROL_CHARS.test(s)
    ? s.replace(CONTROLS, (c) =>
        c === '\n'
          ? '\\n'
          : c === '\r'
            ? '\\r'
            : c === '\t'
              ? '\\t'
              : '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'),
      )
    : s

export function createLogger(
  level: keyof typeof levels = 'info',
  write: (line: string) => void = (l) => process.stderr.write(l + '\n'),
): Logger {
  const min = levels[level]
  const emit = (lvl: keyof typeof levels, msg: string, data?: Record<string, unknown>) => {
    if (levels[lvl] < min) return
    const fields = data
      ? ' ' +
        Object.entries(data)
          .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
          .join(' ')
      : ''
    write(escapeControls(maskSecrets(`[agentmesh] ${lvl === 'info' ? '' : lvl + ': '}${msg}${fields}`)))
  }
  return {
    debug: (m, d) => emit('debug', m, d),
    info: (m, d) => emit('info', m, d),
    warn: (m, d) => emit('warn', m, d),
    error: (m, d) => emit('error', m, d),
  }
}
