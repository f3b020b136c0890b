// Example custom plugin: refuse prompts that contain a configured word, with a 403 in the
// client's own protocol, before any cache or vendor sees them.
import { definePlugin } from '../../core/plugin.ts'

export interface BlockWordsOptions {
  /** words (case-insensitive, whole words) that may not appear in a prompt */
  words: string[]
  /** message sent back to the client */
  message?: string
}

export function blockWords(options: BlockWordsOptions) {
  if (!Array.isArray(options?.words) || options.words.some((w) => typeof w !== 'string' || !w.trim())) {
    throw new Error('blockWords: words must be an array of non-empty strings')
  }
  const escaped = options.words.map((w) => w.trim().replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
  const pattern = new RegExp(`\\b(${escaped.join('|')})\\b`, 'i')
  return definePlugin({
    name: 'block-words',
    // before caches: a blocked prompt must not be answered from cache either
    enforce: 'pre',
    options: { words: options.words },
    hooks: {
      beforeRequest(ctx) {
        const texts = [ctx.prompt.system, ...ctx.prompt.messages.map((m) => m.text)]
        const hit = texts.map((t) => pattern.exec(t)).find(Boolean)
        if (!hit) return
        ctx.meta.blockWords = { word: hit[1] }
        ctx.response = {
          kind: 'error',
          status: 403,
          type: 'permission_error',
          message: options.message ?? `prompt blocked by policy: contains "${hit[1]}"`,
        }
      },
    },
  })
}
