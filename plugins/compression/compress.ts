// The strategies in order until the prompt is at most the target size. Works on a body in place;
// used by the plugin on ctx.request.body and by bench/compression.ts on transcripts directly.
import { SLICED_PARSE_CHARS } from '../../core/protocols/shared.ts'
import type { ProtocolName } from '../../core/types.ts'
import {
  dropDuplicates,
  dropOldTurns,
  minify,
  transcriptOf,
  trimToolResults,
  type Count,
  type Touch,
  type ToolResultOptions,
} from './strategies.ts'
import { NEVER, slices, type Pace } from './pace.ts'
import { turnsOfPaced, type Turn } from './units.ts'
import { messageCount, unitCount, viewOfPaced, type BodyView, type Undo } from './view.ts'

export type StrategyName = 'lossless' | 'tool-results' | 'old-turns' | 'summary'

export interface ResolvedStrategies {
  lossless: false | { duplicates: boolean; minify: boolean }
  toolResults: false | ToolResultOptions
  oldTurns: false | { keepTurns: number }
  /** summary: needs a summarise function at run time (the plugin's goes through the proxy) */
  summary: false | { maxChars: number }
}

export interface CompressInput {
  protocol: ProtocolName
  /** changed in place */
  body: any
  /** tokens the request has now */
  before: number
  /** compress until at most this many tokens */
  target: number
  /** input tokens of a body, as the proxy estimates them (a large body's read in slices) */
  measure(body: any): number | Promise<number>
  count: Count
  strategies: ResolvedStrategies
  /** the prompt must reach the target (it would not fit the context window otherwise): the windows shrink if needed */
  mustFit?: boolean
  /** the summary of dropped turns' transcript, or undefined when it could not be made */
  summarise?: (transcript: string) => Promise<string | undefined>
  /** records what is changed, so that the caller can put the body back (createJournal) */
  journal?: Journal
  /**
   * the body's size in characters when the caller knows it (the plugin: the raw body's length): a
   * body of megabytes in a few messages (one tool output of 7 MB) is worked in slices too
   */
  chars?: number
}

/**
 * What compressBody changes in a body, to put it back when compression fails half way: the body's
 * top-level fields as they were (the strategies replace the message array, never change it in
 * place) and, before each rewrite of a part or summary added, the one value it replaces (a part's
 * save, the view's saveText). A copy of the whole body up front cost 70-450 ms at 10 MB, on every
 * compressed request; a copy of a message of 100,000 blocks before its first change ~100 ms.
 */
export interface Journal {
  /** before a part of a message's body item is rewritten */
  touch: Touch
  watch(view: BodyView): void
  restore(): void
}

export function createJournal(body: any): Journal {
  const top: Record<string, unknown> = { ...body }
  const undo: Undo[] = []
  // a part without a save (made outside view.ts): its message copied whole before its first change
  const copies = new Map<object, unknown>()
  const touch: Touch = (item, part) => {
    if (part?.save) undo.push(part.save())
    else if (item !== null && typeof item === 'object' && !copies.has(item)) copies.set(item, structuredClone(item))
  }
  return {
    touch,
    watch(view) {
      // the strategies' rewrites call touch themselves; a summary is added through the view
      const addText = view.addText
      view.addText = (msg, text, where) => {
        undo.push(view.saveText(msg))
        return addText.call(view, msg, text, where)
      }
    },
    restore() {
      // the latest change first: a part rewritten twice goes back to its first value
      for (let i = undo.length - 1; i >= 0; i--) undo[i]!()
      for (const k of Object.keys(body)) if (!(k in top)) delete body[k]
      Object.assign(body, top)
      for (const v of Object.values(top))
        if (Array.isArray(v))
          for (let i = 0; i < v.length; i++) {
            const copy = copies.get(v[i])
            if (copy !== undefined) v[i] = copy
          }
    },
  }
}

/**
 * Above this many messages, or messages and parts, or characters of body, the passes over the body
 * work in slices of the event loop (pace.ts). The characters: the core's own line for a sliced parse.
 */
const LARGE_MSGS = 2_000
const LARGE_UNITS = 4_000
const LARGE_CHARS = SLICED_PARSE_CHARS
/** or this many tokens (about as much text): a body with no raw text to measure (SDK mode) */
const LARGE_TOKENS = SLICED_PARSE_CHARS / 4

export interface CompressResult {
  before: number
  after: number
  /** strategies that changed something, in the order they ran */
  applied: StrategyName[]
  /** the size after each strategy that ran */
  steps: Array<{ strategy: StrategyName; after: number }>
  met: boolean
}

/**
 * Token counts for choosing what to cut: exact until `budgetChars` of text were tokenized, then
 * from the tokens-per-character seen so far. The work on the event loop stays bounded however many
 * tool outputs a prompt holds (the sizes reported are measured, not these).
 */
export function boundedCount(count: Count, budgetChars = 262_144): Count {
  let left = budgetChars
  let tokens = 0
  let chars = 0
  return (text) => {
    if (text.length <= left) {
      left -= text.length
      const n = count(text)
      tokens += n
      chars += text.length
      return n
    }
    return Math.ceil(text.length * (chars >= 4096 ? tokens / chars : 0.3))
  }
}

export function compressBody(input: CompressInput): Promise<CompressResult> {
  // a transcript of thousands of turns costs tens of ms per pass (70,000 turns: 50-130 ms for the
  // view, the turns, each strategy), and so does one message of 110,000 blocks: every pass works in slices
  // one string of megabytes in an old turn: 95-145 ms in one go (its rewrite, the flat copy of it)
  const { protocol, body } = input
  const large =
    (input.chars ?? 0) > LARGE_CHARS ||
    input.before > LARGE_TOKENS ||
    messageCount(protocol, body) > LARGE_MSGS ||
    unitCount(protocol, body, LARGE_UNITS) > LARGE_UNITS
  return compressBodyPaced(input, large ? slices() : NEVER)
}

/** compressBody with the given pace (the same result whatever the pace) */
export async function compressBodyPaced(input: CompressInput, pace: Pace): Promise<CompressResult> {
  input = { ...input, count: boundedCount(input.count) }
  const { body, target, strategies: s } = input
  const result: CompressResult = {
    before: input.before,
    after: input.before,
    applied: [],
    steps: [],
    met: input.before <= target,
  }
  // after the hooks before this one, which ran in this turn of the event loop
  if (pace !== NEVER) await pace.yield()
  const view = await viewOfPaced(input.protocol, body, pace)
  if (!view) return result
  input.journal?.watch(view)
  const touch = input.journal?.touch
  const step = async (name: StrategyName, changed: boolean) => {
    if (!changed) return
    // the measure (the core's parse and estimate of the whole body) is a block of its own
    await pace.yield()
    result.after = await input.measure(body)
    if (!result.applied.includes(name)) result.applied.push(name)
    result.steps.push({ strategy: name, after: result.after })
    await pace.yield()
  }
  const turns = await turnsOfPaced(view, pace)
  // lossless runs whenever the plugin acts (it loses nothing); the others only while over the target
  if (s.lossless) {
    let changed = s.lossless.duplicates ? await dropDuplicates(turns, touch, pace) : false
    if (s.lossless.minify) changed = (await minify(turns, touch, pace)) || changed
    await step('lossless', changed)
  }
  if (s.toolResults && result.after > target)
    await step('tool-results', await trimToolResults(turns, s.toolResults, input.count, touch, pace))
  if (s.oldTurns && result.after > target) await oldTurns(input, view, turns, s.oldTurns.keepTurns, result, pace, step)
  // a prompt that must fit the window and still does not: the windows shrink to the last turn
  // (a request the vendor would refuse for its size helps nobody)
  if (input.mustFit && result.after > target) {
    if (s.toolResults) {
      const all = await turnsOfPaced(view, pace)
      const keepOne = { ...s.toolResults, keepTurns: 1 }
      await step('tool-results', await trimToolResults(all, keepOne, input.count, touch, pace))
    }
    if (s.oldTurns && result.after > target)
      await oldTurns(input, view, await turnsOfPaced(view, pace), 1, result, pace, step)
  }
  result.met = result.after <= target
  return result
}

async function oldTurns(
  input: CompressInput,
  view: BodyView,
  turns: Turn[],
  keepTurns: number,
  result: CompressResult,
  pace: Pace,
  step: (name: StrategyName, changed: boolean) => Promise<void>,
): Promise<void> {
  const s = input.strategies
  const dropped = await dropOldTurns(view, turns, keepTurns, result.after - input.target, input.count, pace)
  await step('old-turns', dropped.length > 0)
  if (!dropped.length || !s.summary || !input.summarise) return
  const { maxChars } = s.summary
  const summary = await input.summarise(transcriptOf(dropped, undefined, maxChars).slice(0, maxChars))
  if (!summary) return
  const text = `[Summary of ${dropped.length} earlier turns, removed by AgentMesh compression]\n${summary}`
  await step('summary', placeSummary(view, await turnsOfPaced(view, pace), text))
}

/**
 * Where the summary of dropped turns goes (they are gone from the view by now): at the end of the
 * first user message, or, when that is also the last user message (never changed), at the start
 * of the first step after it.
 */
function placeSummary(view: BodyView, turns: Turn[], text: string): boolean {
  const firstIdx = turns.findIndex((t) => t.kind === 'user')
  const first = turns[firstIdx]
  if (first && !first.last && view.addText(first.msgs[0]!, text, 'end')) return true
  const next = turns.slice(firstIdx + 1).find((t) => t.kind === 'step' && t.msgs[0]!.role === 'assistant')
  return !!next && view.addText(next.msgs[0]!, text, 'start')
}
