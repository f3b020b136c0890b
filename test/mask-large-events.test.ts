// The mask plugin's values put back into a streamed event of megabytes (issue 11 item 2): the
// answer-text rewriter reads the event's long strings a run at a time from the event's own text
// (core/translate/long-literals.ts) instead of parsing the event whole, rewriting and stringifying
// it: no copy of megabytes in one turn. What the client gets is what the one-go rewrite gives.
import { describe, expect, it } from 'vitest'
import { SLICED_PARSE_CHARS } from '../core/protocols/shared.ts'
import { Slicer } from '../core/slicer.ts'
import { type AnswerText, eventRewriter } from '../core/translate/answer-text.ts'
import type { ProtocolName } from '../core/types.ts'
import { Restorer } from '../plugins/mask/restore.ts'
import { eagerPacer } from './helpers/longest-block.ts'
import { wordText } from './helpers/word-text.ts'

const VALUES = new Map([
  ['<EMAIL_1>', 'ada "the first" <ada@example.com>'],
  ['<IBAN_2>', 'GB33 BUKB 2020 1555 5555 55'],
])
const answerText: AnswerText = { open: () => new Restorer(VALUES, 9) }
// 2-, 3- and 4-byte characters, quotes, backslashes, newlines and control characters, placeholders
const WORDS = ['the', 'café', '€uro', '中文字', '😀🚀', '"quoted"', 'back\\slash', 'line\nbreak', '\u0001', '<EMAIL_1>']

/** a Responses stream's large events: a delta, its done, the part, the item and response.completed carrying `big` */
function responsesEvents(big: string): string[] {
  let seq = 0
  const e = (d: Record<string, unknown>) => JSON.stringify({ ...d, sequence_number: seq++ })
  const part = { type: 'output_text', text: big, annotations: [] }
  const item = { id: 'msg_1', type: 'message', status: 'completed', role: 'assistant', content: [part] }
  const at = { item_id: 'msg_1', output_index: 0, content_index: 0 }
  return [
    e({ type: 'response.output_text.delta', ...at, delta: big }),
    e({ type: 'response.output_text.done', ...at, text: big }),
    e({ type: 'response.content_part.done', ...at, part }),
    e({ type: 'response.output_item.done', output_index: 0, item }),
    e({
      type: 'response.completed',
      response: { id: 'resp_1', object: 'response', status: 'completed', output: [item] },
    }),
  ]
}

/** the vendor's escapes as another encoder may write them: `\/`, `\u00e9`, an escaped surrogate pair */
const otherEscapes = (data: string) =>
  data.replaceAll('é', '\\u00e9').replaceAll('😀', '\\ud83d\\ude00').replaceAll('back\\\\slash', 'back\\\\slash\\/')

describe('a Responses stream of 5 MB events through the mask rewriter', () => {
  it('the same events as the one-go rewrite, values put back across the runs, the vendor escapes read as such', async () => {
    for (const [seed, escapes] of [
      [1, false],
      [2, true],
    ] as const) {
      let events = responsesEvents(wordText(WORDS, 700_000, seed))
      if (escapes) events = events.map(otherEscapes)
      expect(events.every((d) => d.length > SLICED_PARSE_CHARS)).toBe(true)
      const one = eventRewriter('responses', answerText)
      const sliced = eventRewriter('responses', answerText)
      const pacer = eagerPacer(3)
      for (const d of events) {
        const want = one.event(d)
        const got = (await sliced.eventSliced(d, pacer as unknown as Slicer)).join('')
        // the vendor's own escapes kept where nothing changed: the same JSON, not always the same bytes
        if (!escapes) expect(got).toBe(want)
        const data = (sse: string) =>
          sse
            .split('\n\n')
            .filter(Boolean)
            .map((ev) => JSON.parse(ev.slice(ev.indexOf('data: ') + 6)))
        expect(data(got)).toEqual(data(want))
        expect(got.includes('<EMAIL_1>')).toBe(false)
        expect(got.includes('ada \\"the first\\" <ada@example.com>')).toBe(true)
      }
      expect(sliced.end()).toBe(one.end())
    }
  }, 60_000)

  it('long strings it does not rewrite, a long key, a long id kept for later chunks, text that JSON refuses: as event() has them', async () => {
    const big = wordText(WORDS, 300_000, 3)
    const reasoning = { type: 'reasoning', id: 'rs_1', encrypted_content: big, summary: [] }
    const cases: Array<[ProtocolName, string[]]> = [
      ['responses', [JSON.stringify({ type: 'response.output_item.done', output_index: 0, item: reasoning })]],
      [
        'responses',
        [JSON.stringify({ type: 'response.output_text.delta', item_id: big, content_index: 0, delta: big })],
      ],
      ['responses', [JSON.stringify({ type: 'response.completed', response: { output: [], [big]: big } })]],
      // an invalid escape inside the long string: not JSON, forwarded as it came
      ['responses', [JSON.stringify({ type: 'response.output_text.delta', delta: big }).replace('café', 'caf\\x')]],
      [
        'openai',
        [
          JSON.stringify({
            id: big,
            object: 'chat.completion.chunk',
            choices: [{ index: 0, delta: { content: `${big}<EMA` } }],
          }),
          JSON.stringify({ id: 'c', choices: [{ index: 0, delta: { content: 'IL_1> end' }, finish_reason: 'stop' }] }),
        ],
      ],
    ]
    for (const [p, events] of cases) {
      const one = eventRewriter(p, answerText)
      const sliced = eventRewriter(p, answerText)
      for (const d of events) {
        const want = one.event(d)
        const got =
          d.length > SLICED_PARSE_CHARS ? (await sliced.eventSliced(d, new Slicer(10))).join('') : sliced.event(d)
        expect(got).toBe(want)
      }
      expect(sliced.end()).toBe(one.end())
    }
  }, 60_000)

  it('a 5 MB event: the rewriter joins no text of megabytes (the old path: the string parsed, then rewritten, each joined whole)', async () => {
    const events = responsesEvents(wordText(WORDS, 5_000_000))
    const rw = eventRewriter('responses', answerText)
    const one = eventRewriter('responses', answerText)
    for (const d of events) {
      const { value, longest } = await longestJoin(() => rw.eventSliced(d, new Slicer(10)))
      expect(longest).toBeLessThan(1_000_000)
      // and still what the one-go rewrite gives (its own joins are not counted)
      expect(value.join('')).toBe(one.event(d))
    }
  }, 120_000)
})

/**
 * The longest string Array.prototype.join made while `run` works: the joins of a string of megabytes
 * (its runs after a parse, its pieces after a rewrite) are each one copy of megabytes in one turn.
 */
async function longestJoin<T>(run: () => Promise<T>): Promise<{ value: T; longest: number }> {
  const join = Array.prototype.join
  let longest = 0
  Array.prototype.join = function (this: unknown[], sep?: string) {
    const s = join.call(this, sep)
    longest = Math.max(longest, s.length)
    return s
  }
  try {
    return { value: await run(), longest }
  } finally {
    Array.prototype.join = join
  }
}
