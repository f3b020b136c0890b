// Putting the real values back into the answer: a rewriter per text stream (MeshContext.answerText)
// that replaces this request's placeholders and holds back a tail that may be the start of one
// split across two deltas ("…write to <EMA" + "IL_1> today").
import type { AnswerTextRewriter } from '../../core/types.ts'

const PLACEHOLDER = /<[A-Z]+(?:_[A-Z]+)*_\d+>/g

export class Restorer implements AnswerTextRewriter {
  private held = ''
  constructor(
    private readonly values: ReadonlyMap<string, string>,
    private readonly longest: number,
  ) {}

  rewrite(delta: string): string {
    let text = this.held ? this.held + delta : delta
    this.held = ''
    const lt = text.lastIndexOf('<')
    if (lt >= 0 && text.length - lt < this.longest && text.indexOf('>', lt) < 0 && this.couldStart(text.slice(lt))) {
      this.held = text.slice(lt)
      text = text.slice(0, lt)
    }
    return this.replace(text)
  }

  flush(): string {
    const rest = this.held
    this.held = ''
    return rest
  }

  /** placeholders this request made are restored; any other `<EMAIL_7>` (the model's own) stays */
  replace(text: string): string {
    if (text.indexOf('<') < 0) return text
    return text.replace(PLACEHOLDER, (p) => this.values.get(p) ?? p)
  }

  private couldStart(tail: string): boolean {
    for (const p of this.values.keys()) if (p.startsWith(tail)) return true
    return false
  }
}
