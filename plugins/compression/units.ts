// Turns: the atoms that strategies count and drop. A turn is a user message on its own, or an
// assistant step with the tool results that answer it (assistant message, tool calls, results):
// dropping whole turns is what keeps every tool call with its result. System messages are turns
// that are never dropped.
import type { Pace } from './pace.ts'
import type { BodyView, Msg, Role } from './view.ts'

export interface Turn {
  kind: 'system' | 'user' | 'step'
  msgs: Msg[]
  /** never dropped nor rewritten: the first user message (and what precedes it), the last user message's turn */
  pinned: boolean
  /** holds the last user message: nothing in it is rewritten by any strategy */
  last: boolean
}

const hasKind = (m: Msg, kind: 'call' | 'result' | 'text') => m.parts.some((p) => p.kind === kind)
const isResultMsg = (m: Msg) => m.role === 'tool' || (m.role === 'user' && hasKind(m, 'result'))

/** Messages grouped into turns one at a time, in order (a large body's are grouped in slices). */
class Grouping {
  readonly turns: Turn[] = []
  private step: Turn | undefined
  private sawResults = false
  add(m: Msg): void {
    const turns = this.turns
    if (m.role === 'system') {
      turns.push({ kind: 'system', msgs: [m], pinned: true, last: false })
      this.step = undefined
    } else if (isResultMsg(m)) {
      // results belong to the step whose calls they answer; an orphan is kept as it is
      if (this.step) this.step.msgs.push(m)
      else turns.push((this.step = { kind: 'step', msgs: [m], pinned: true, last: false }))
      this.sawResults = true
    } else if (m.role === 'assistant') {
      // consecutive assistant items (Responses: reasoning, then function calls) are one step
      if (this.step && !this.sawResults) this.step.msgs.push(m)
      else {
        turns.push((this.step = { kind: 'step', msgs: [m], pinned: false, last: false }))
        this.sawResults = false
      }
    } else {
      turns.push({ kind: 'user', msgs: [m], pinned: false, last: false })
      this.step = undefined
    }
  }
}

/** Group messages into turns and mark the pinned ones. */
export function turnsOf(view: BodyView): Turn[] {
  const g = new Grouping()
  for (const m of view.msgs) g.add(m)
  pin(g.turns)
  return g.turns
}

/** turnsOf, a slice at a time */
export async function turnsOfPaced(view: BodyView, pace: Pace): Promise<Turn[]> {
  const g = new Grouping()
  for (const m of view.msgs) {
    g.add(m)
    if (pace.due()) await pace.yield()
  }
  pin(g.turns)
  return g.turns
}

/** The last user message: the last user-role message with text of its own, else the last user-role message. */
function lastUserIndex(turns: Turn[]): number {
  let fallback = -1
  for (let i = turns.length - 1; i >= 0; i--) {
    for (const m of turns[i]!.msgs) {
      if (m.role !== 'user') continue
      if (hasKind(m, 'text') || !hasKind(m, 'result')) return i
      if (fallback < 0) fallback = i
    }
  }
  return fallback
}

function pin(turns: Turn[]): void {
  const first = turns.findIndex((t) => t.kind === 'user')
  for (let i = 0; i <= first; i++) turns[i]!.pinned = true
  const last = lastUserIndex(turns)
  if (last >= 0) {
    turns[last]!.pinned = true
    turns[last]!.last = true
  }
}

/** index of the first turn inside the window of the last `keep` turns (system turns are not counted) */
export function windowStart(turns: Turn[], keep: number): number {
  let n = 0
  for (let i = turns.length - 1; i >= 0; i--) {
    if (turns[i]!.kind === 'system') continue
    if (n === keep) return i + 1
    n++
  }
  return 0
}

/**
 * For protocols whose roles must alternate: true when keeping turns `kept` (indices, ascending)
 * puts two messages of the same role side by side that were not side by side before. System
 * messages do not take part in alternation and are looked past.
 */
export function breaksAlternation(turns: Turn[], kept: number[]): boolean {
  let prev: { role: Role; pos: number } | undefined
  let pos = 0
  const posOf = new Map<Msg, number>()
  for (const t of turns) for (const m of t.msgs) if (m.role !== 'system') posOf.set(m, pos++)
  for (const i of kept) {
    for (const m of turns[i]!.msgs) {
      if (m.role === 'system') continue
      const p = posOf.get(m)!
      if (prev && prev.role === m.role && prev.pos !== p - 1) return true
      prev = { role: m.role, pos: p }
    }
  }
  return false
}

/**
 * breaksAlternation for the cuts dropOldTurns tries, without rebuilding anything per cut: the
 * function returned tells, for n, breaksAlternation(turns, every turn but cand[0..n)) (`cand`
 * ascending), in one pass over flat arrays built once. With a Map and a Set per cut (up to 17
 * cuts), a body of 27,000 turns held the event loop for half a second.
 */
export function alternationCuts(turns: Turn[], cand: number[]): (n: number) => boolean {
  const a = alternation(turns, cand)
  for (let t = 0; t < turns.length; t++) a.add(t)
  return a.breaks
}

/** alternationCuts, its arrays built a slice at a time */
export async function alternationCutsPaced(turns: Turn[], cand: number[], pace: Pace): Promise<(n: number) => boolean> {
  const a = alternation(turns, cand)
  for (let t = 0; t < turns.length; t++) {
    a.add(t)
    if (pace.due()) await pace.yield()
  }
  return a.breaks
}

/** alternationCuts' flat arrays, filled turn by turn with add(t) (every turn, in order, before breaks) */
function alternation(turns: Turn[], cand: number[]) {
  const rank = new Int32Array(turns.length).fill(-1)
  for (let i = 0; i < cand.length; i++) rank[cand[i]!] = i
  // the non-system messages in order (their index is the position breaksAlternation compares)
  const roles: Role[] = []
  const turnOf: number[] = []
  return {
    add(t: number) {
      for (const m of turns[t]!.msgs)
        if (m.role !== 'system') {
          roles.push(m.role)
          turnOf.push(t)
        }
    },
    breaks(n: number): boolean {
      let prev = -1
      for (let j = 0; j < roles.length; j++) {
        const r = rank[turnOf[j]!]!
        if (r >= 0 && r < n) continue
        if (prev >= 0 && roles[prev] === roles[j] && prev !== j - 1) return true
        prev = j
      }
      return false
    },
  }
}
