// BOOTSTRAP (lead): replaced by the governance helper's real tokenizer.
import type { Prompt, TokenCounter } from './types.ts'
export function createTokenCounter(): TokenCounter {
  const count = (text: string) => Math.ceil(text.length / 4)
  return {
    count,
    estimateInput: (p: Prompt) => count(p.system) + p.messages.reduce((n, m) => n + count(m.text) + 4, 0) + 3,
  }
}
