// The strategies, each over the neutral view (view.ts) and its turns (units.ts). None touches the
// turn holding the last user message, system messages, tool definitions (not in the view) or any
// image; old-turns drops whole turns only, so every tool call keeps its result.
import { parseJsonSliced } from '../../core/protocols/shared.ts'
import { NEVER, slicerOf, ticker, type Pace } from './pace.ts'
import { alternationCutsPaced, windowStart, type Turn } from './units.ts'
import {
  languageOfPath,
  minifyFences,
  minifyFencesPaced,
  minifyJson,
  minifyJsonPaced,
  minifyOutput,
  minifyOutputPaced,
} from './text.ts'
import type { BodyView, Msg, Part } from './view.ts'

export type Count = (text: string) => number

/** smaller outputs are not worth a marker when they repeat */
const MIN_DUPLICATE_CHARS = 200
const PATH_KEYS = ['file_path', 'path', 'filename', 'file', 'target_file', 'notebook_path', 'absolute_path', 'filePath']
const READ_TOOL = /read|view|cat|open|get_?file|show_?file/i
const SHELL_TOOL = /bash|shell|exec|terminal|run_?command/i
/** texts at least this long are rewritten in slices of a pace (a tool output of megabytes: 100-200 ms in one go) */
const LONG_TEXT = 16 * 1024

/** the file a call reads, when its arguments name one */
function pathOf(call: Part | undefined): string | undefined {
  if (!call) return undefined
  let args: any = call.args
  // arguments that are a value in the body are read as they are (a parse of their 3 MB JSON text
  // held the loop 20-30 ms): the body's values came from JSON, so they are what the parse would give
  if (args === undefined)
    try {
      args = JSON.parse(call.text || '{}')
    } catch {
      return undefined
    }
  return pathIn(args)
}

/** the file arguments name (pathOf's answer for a call with these arguments) */
function pathIn(args: any): string | undefined {
  if (!args || typeof args !== 'object') return undefined
  for (const k of PATH_KEYS) if (typeof args[k] === 'string') return args[k]
  const cmd =
    typeof args.command === 'string' ? args.command : Array.isArray(args.command) ? args.command.join(' ') : ''
  const m = /^\s*(?:cat|bat|nl -ba)\s+([^\s|;&<>]+)\s*$/.exec(cmd)
  return m?.[1]
}

/** pathOf's answers for calls whose arguments' text is long, by the text they were read from */
const longPaths = new WeakMap<Part, { text: string; path: string | undefined }>()

/**
 * pathOf, a long arguments text (OpenAI and Responses send arguments as text: one of 5 MB took
 * 60-110 ms to parse in one go) parsed in slices of `pace` by the core's sliced parse, once.
 */
async function pathOfPaced(call: Part | undefined, pace: Pace): Promise<string | undefined> {
  if (!call || call.args !== undefined || call.text.length < LONG_TEXT || pace === NEVER) return pathOf(call)
  const seen = longPaths.get(call)
  if (seen?.text === call.text) return seen.path
  let path: string | undefined
  try {
    // no depth limit: the value JSON.parse gives, or its error
    const r = await parseJsonSliced(call.text, Number.POSITIVE_INFINITY, slicerOf(pace))
    path = r.deep ? undefined : pathIn(r.value)
  } catch {
    path = undefined
  }
  longPaths.set(call, { text: call.text, path })
  return path
}

async function callsById(turns: Turn[], pace: Pace): Promise<Map<string, Part>> {
  const calls = new Map<string, Part>()
  const tick = ticker(pace)
  for (const t of turns) {
    for (const m of t.msgs)
      for (const p of m.parts) {
        if (p.kind === 'call' && p.id) calls.set(p.id, p)
        if (tick()) await pace.yield()
      }
    if (pace.due()) await pace.yield()
  }
  return calls
}

/** called with a message's body item and the part about to be rewritten (the plugin's rollback journal) */
export type Touch = (item: unknown, part?: Part) => void

function rewrite(m: Msg, p: Part, text: string, touch: Touch | undefined): boolean {
  if (!p.set || text === p.text) return false
  touch?.(m.item, p)
  p.set(text)
  p.text = text
  return true
}

/**
 * Duplicates: the same output sent twice, or the same file read twice, keeps only its latest copy;
 * earlier copies become a one-line marker (the tool_result stays, so the call keeps its pair).
 */
export async function dropDuplicates(turns: Turn[], touch?: Touch, pace: Pace = NEVER): Promise<boolean> {
  const calls = await callsById(turns, pace)
  const laterOutput = new Map<string, string>()
  const laterRead = new Map<string, string>()
  const tick = ticker(pace)
  let changed = false
  for (let i = turns.length - 1; i >= 0; i--) {
    if (pace.due()) await pace.yield()
    const t = turns[i]!
    for (let j = t.msgs.length - 1; j >= 0; j--) {
      const msg = t.msgs[j]!
      const parts = msg.parts
      for (let k = parts.length - 1; k >= 0; k--) {
        const p = parts[k]!
        if (tick(p.text.length)) await pace.yield()
        if (p.kind !== 'result' || !p.set) continue
        const call = p.id ? calls.get(p.id) : undefined
        const path =
          call && (READ_TOOL.test(call.name ?? '') || SHELL_TOOL.test(call.name ?? ''))
            ? call.text.length < LONG_TEXT
              ? pathOf(call)
              : await pathOfPaced(call, pace)
            : undefined
        const readKey = path !== undefined ? `${call!.name}\0${path}\0${call!.text}` : undefined
        const outKey = p.text.length >= MIN_DUPLICATE_CHARS ? p.text.trim() : undefined
        const sameOut = outKey !== undefined ? laterOutput.get(outKey) : undefined
        const sameRead = readKey !== undefined ? laterRead.get(readKey) : undefined
        const id = p.id ?? 'a later call'
        if (!t.last && (sameOut || sameRead)) {
          const marker = sameOut
            ? `[AgentMesh compression: this output was identical to the output of a later tool call (${sameOut}) and was removed here]`
            : `[AgentMesh compression: ${path} was read again later (${sameRead}); this earlier copy was removed]`
          changed = rewrite(msg, p, marker, touch) || changed
          continue
        }
        if (outKey !== undefined && !laterOutput.has(outKey)) laterOutput.set(outKey, id)
        if (readKey !== undefined && !laterRead.has(readKey)) laterRead.set(readKey, id)
      }
    }
  }
  return changed
}

/** Whitespace and JSON minification in tool outputs, tool arguments and fenced code blocks. */
export async function minify(turns: Turn[], touch?: Touch, pace: Pace = NEVER): Promise<boolean> {
  const calls = await callsById(turns, pace)
  const tick = ticker(pace)
  let changed = false
  for (const t of turns) {
    if (pace.due()) await pace.yield()
    if (t.last || t.kind === 'system') continue
    for (const m of t.msgs) {
      for (const p of m.parts) {
        if (tick(p.text.length)) await pace.yield()
        if (!p.set) continue
        const long = pace !== NEVER && p.text.length >= LONG_TEXT
        if (p.kind === 'result') {
          const call = p.id ? calls.get(p.id) : undefined
          const path = call && call.text.length >= LONG_TEXT ? await pathOfPaced(call, pace) : pathOf(call)
          const lang = path ? languageOfPath(path) : ''
          const text = long ? await minifyOutputPaced(p.text, lang, pace) : minifyOutput(p.text, lang)
          changed = rewrite(m, p, text, touch) || changed
        } else if (p.kind === 'call') {
          const j = long ? await minifyJsonPaced(p.text, pace) : minifyJson(p.text)
          if (j !== undefined) changed = rewrite(m, p, j, touch) || changed
        } else if (p.kind === 'text') {
          const text = long ? await minifyFencesPaced(p.text, pace) : minifyFences(p.text)
          changed = rewrite(m, p, text, touch) || changed
        }
      }
    }
  }
  return changed
}

export interface ToolResultOptions {
  /** the last K turns keep their tool outputs whole (default 4) */
  keepTurns: number
  /** outputs longer than this many tokens are cut (default 400) */
  maxTokens: number
  /** tokens kept from the start and from the end of a cut output (default 150 and 100) */
  headTokens: number
  tailTokens: number
}

/** Long tool outputs older than the last K turns keep their head and tail, with a marker saying how many tokens were elided. */
export async function trimToolResults(
  turns: Turn[],
  o: ToolResultOptions,
  count: Count,
  touch?: Touch,
  pace: Pace = NEVER,
): Promise<boolean> {
  const end = windowStart(turns, o.keepTurns)
  const tick = ticker(pace)
  let changed = false
  for (let i = 0; i < end; i++) {
    if (pace.due()) await pace.yield()
    const t = turns[i]!
    if (t.last) continue
    for (const m of t.msgs) {
      for (const p of m.parts) {
        if (tick(p.text.length)) await pace.yield()
        if (p.kind !== 'result' || !p.set || p.text.startsWith('[AgentMesh compression:')) continue
        const tokens = count(p.text)
        if (tokens <= o.maxTokens) continue
        const perToken = p.text.length / tokens
        const text = p.text
        let head = Math.floor(o.headTokens * perToken)
        let tail = text.length - Math.floor(o.tailTokens * perToken)
        // cut at line ends when one is near, so lines are not split
        const nl = text.lastIndexOf('\n', head)
        if (nl > head / 2) head = nl
        const nl2 = text.indexOf('\n', tail)
        if (nl2 >= 0 && nl2 < tail + (text.length - tail) / 2) tail = nl2 + 1
        if (tail <= head) continue
        const elided = count(text.slice(head, tail))
        changed =
          rewrite(
            m,
            p,
            `${text.slice(0, head)}\n[... ${elided} tokens elided by AgentMesh compression ...]\n${text.slice(tail)}`,
            touch,
          ) || changed
      }
    }
  }
  return changed
}

/** a turn's tokens; `tick` as ticker(pace) gives it, for a turn of 110,000 blocks */
async function turnTokens(t: Turn, count: Count, tick: (chars?: number) => boolean, pace: Pace): Promise<number> {
  let n = 0
  for (const m of t.msgs) {
    n += 4
    for (const p of m.parts) {
      // an image costs about a thousand tokens whatever its size
      n += p.kind === 'image' ? 1000 : count(p.text)
      if (tick()) await pace.yield()
    }
  }
  return n
}

/**
 * Old turns: beyond the last `keepTurns`, the oldest turns after the first user message are
 * dropped until about `need` tokens are shed. Whole turns only (a call and its results go
 * together); where roles must alternate, the cut moves until they still do. Returns the dropped turns.
 */
/** how many cuts either side of the needed one are tried for alternating roles */
const ALTERNATION_REACH = 8

export async function dropOldTurns(
  view: BodyView,
  turns: Turn[],
  keepTurns: number,
  need: number,
  count: Count,
  pace: Pace = NEVER,
): Promise<Turn[]> {
  const end = windowStart(turns, keepTurns)
  const cand: number[] = []
  for (let i = 0; i < end; i++) if (!turns[i]!.pinned && turns[i]!.kind !== 'system') cand.push(i)
  if (!cand.length || need <= 0) return []
  let k = 0
  let shed = 0
  const tick = ticker(pace)
  while (k < cand.length && shed < need) {
    shed += await turnTokens(turns[cand[k++]!]!, count, tick, pace)
    if (pace.due()) await pace.yield()
  }
  if (view.strictRoles) {
    // the smallest cut at least as deep that keeps roles alternating, else the deepest shallower
    // one, looked for within a few turns of the cut: in a conversation whose roles alternate one
    // more or one fewer turn restores them, and an unbounded search is quadratic in the turns (a
    // body of 27,000 user turns held the proxy for minutes)
    const breaks = await alternationCutsPaced(turns, cand, pace)
    let ok = -1
    const reach = Math.min(cand.length, k + ALTERNATION_REACH)
    for (let n = k; n <= reach && ok < 0; n++) {
      if (!breaks(n)) ok = n
      if (pace.due()) await pace.yield()
    }
    for (let n = k - 1; n >= Math.max(0, k - ALTERNATION_REACH) && ok < 0; n--) {
      if (!breaks(n)) ok = n
      if (pace.due()) await pace.yield()
    }
    k = Math.max(0, ok)
  }
  if (k === 0) return []
  // the turns kept, in order: every turn but the first k candidates
  const dropped = new Uint8Array(turns.length)
  for (let j = 0; j < k; j++) dropped[cand[j]!] = 1
  const msgs: Msg[] = []
  for (let i = 0; i < turns.length; i++) {
    if (!dropped[i]) for (const m of turns[i]!.msgs) msgs.push(m)
    if (pace.due()) await pace.yield()
  }
  view.keep(msgs)
  view.msgs = msgs
  return cand.slice(0, k).map((i) => turns[i]!)
}

/** The dropped turns as a plain transcript, for the summary model (long outputs cut). */
export function transcriptOf(turns: Turn[], maxCharsPerPart = 2000, maxChars = Infinity): string {
  const lines: string[] = []
  const cut = (s: string) => (s.length > maxCharsPerPart ? `${s.slice(0, maxCharsPerPart)} [...]` : s)
  let chars = 0
  const add = (line: string) => {
    lines.push(line)
    chars += line.length + 1
  }
  // the caller keeps the first maxChars: lines past them would be cut off (70,000 dropped turns,
  // or 110,000 blocks in one)
  for (const t of turns) {
    for (const m of t.msgs) {
      for (const p of m.parts) {
        if (chars > maxChars) return lines.join('\n')
        if (p.kind === 'text' && p.text) add(`${m.role}: ${cut(p.text)}`)
        else if (p.kind === 'call') add(`${m.role} called ${p.name}(${cut(p.text)})`)
        else if (p.kind === 'result') add(`tool result: ${cut(p.text)}`)
        else if (p.kind === 'image') add(`${m.role}: [an image]`)
      }
    }
  }
  return lines.join('\n')
}
