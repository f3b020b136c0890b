// Values that reach response headers from outside (the model a client named, a plugin's header,
// an id) must be valid header text: Node throws ERR_INVALID_CHAR on anything outside visible
// Latin-1 or on CR/LF, and a throw in the stream path took the process down.

// tab, visible ASCII and Latin-1 letters are what Node accepts; keep it to ASCII so clients that
// read headers as UTF-8 do not see mojibake
const UNSAFE = /[^\t\x20-\x7e]/

/**
 * The value as it may be sent: unchanged when it is plain ASCII (the common case, one regex
 * test), else percent-encoded as UTF-8 (RFC 8187 style), so `模型` arrives as `%E6%A8%A1%E5%9E%8B`
 * and NUL or CR/LF can never split a header.
 */
export function headerSafe(value: string): string {
  if (!UNSAFE.test(value)) return value
  let out = ''
  for (const ch of value) {
    const code = ch.codePointAt(0)!
    if (code >= 0x20 && code <= 0x7e && ch !== '%') out += ch
    else if (code >= 0xd800 && code <= 0xdfff)
      out += '%EF%BF%BD' // a lone surrogate has no UTF-8 form
    else for (const b of Buffer.from(ch, 'utf8')) out += '%' + b.toString(16).toUpperCase().padStart(2, '0')
  }
  return out
}

/** Every value of a header record made safe, in place; returns it. */
export function headersSafe(headers: Record<string, string>): Record<string, string> {
  for (const k in headers) {
    const v = headers[k]!
    if (typeof v !== 'string') headers[k] = headerSafe(String(v))
    else if (UNSAFE.test(v)) headers[k] = headerSafe(v)
  }
  return headers
}

/** C0 controls, DEL and the Unicode line separators: what makes a forged line in a log or a header. */
export const CONTROL_CHARS = /[\u0000-\u001f\u007f\u2028\u2029]/
