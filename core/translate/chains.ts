// Responses answered by a vendor of another protocol: that vendor keeps no state, so the proxy
// keeps each turn (the whole input it expanded and the output it gave) under the response id it
// issued, for the team that asked, and expands `previous_response_id` from it before translating.
// Same lifetime and storage rule as core/response-chains.ts: in process, and in shared storage on
// redis so that another instance can continue the chain.
import { LRUCache } from 'lru-cache'
import { stringifySliced, withinBudget } from '../json-sliced.ts'
import { ProtocolError } from '../protocols/shared.ts'
import { Slicer } from '../slicer.ts'
import type { Mesh, MeshContext } from '../types.ts'

interface Turn {
  team: string
  /** every input item up to this response (earlier turns' inputs and outputs expanded) */
  input: unknown[]
  output: unknown[]
  /**
   * the length of JSON.stringify(input) and of (output): the turn's size, and the next turn's
   * from them, without a JSON.stringify of a chain of megabytes on each turn (28-30 ms at 5 MB)
   */
  inputChars?: number
  outputChars?: number
}

const TTL_SECONDS = 30 * 24 * 3600
const PREFIX = 'responses:translated:'
// a long conversation is stored once per turn: bounded by size as well as by count
const MAX_BYTES = 256 * 1024 * 1024
const ID = /^resp_[\w-]{1,124}$/

/** JSON.stringify({ team, input, output }).length, from the lengths kept */
function turnSize(t: Turn): number {
  // '{"team":' team ',"input":' input ',"output":' output '}'
  return 8 + JSON.stringify(t.team).length + 9 + (t.inputChars ?? 2) + 10 + (t.outputChars ?? 2) + 1
}

/** the length of JSON.stringify([...a, ...b]) from those of a and b */
const joinedChars = (a: number, b: number) => a + b - 2 + (a > 2 && b > 2 ? 1 : 0)

// a list past either bound is stringified in slices to be measured (as a translated body of megabytes is)
const SMALL_NODES = 4096
const SMALL_CHARS = 256 * 1024
const SLICE_MS = 10

/** the length of JSON.stringify(list): at once for a small list, else a promise of it made in slices */
function jsonChars(list: unknown[], slicer: () => Slicer, small = false): number | Promise<number> {
  if (small || withinBudget(list, SMALL_NODES, SMALL_CHARS)) return JSON.stringify(list).length
  return stringifySliced(list, slicer()).then((pieces) => {
    let n = 0
    for (const p of pieces ?? []) n += p.length
    return n
  })
}

/** a turn read from shared storage without its lengths (stored by an older version): measured in slices */
async function measured(t: Turn): Promise<Turn> {
  if (typeof t.inputChars === 'number' && typeof t.outputChars === 'number') return t
  let slicer: Slicer | undefined
  const lazy = () => (slicer ??= new Slicer(SLICE_MS))
  t.inputChars = await jsonChars(t.input, lazy)
  t.outputChars = await jsonChars(t.output, lazy)
  return t
}

const stores = new WeakMap<Mesh, LRUCache<string, Turn>>()

function store(mesh: Mesh): LRUCache<string, Turn> {
  let s = stores.get(mesh)
  if (!s)
    stores.set(
      mesh,
      (s = new LRUCache<string, Turn>({
        max: 20_000,
        maxSize: MAX_BYTES,
        sizeCalculation: turnSize,
        ttl: TTL_SECONDS * 1000,
      })),
    )
  return s
}

const shared = (mesh: Mesh) => mesh.config.storage.driver === 'redis'

async function lookup(mesh: Mesh, id: string): Promise<Turn | undefined> {
  const local = store(mesh).get(id)
  if (local || !shared(mesh) || !ID.test(id)) return local
  try {
    const t = (await mesh.storage.getItem(PREFIX + id)) as Turn | null
    if (t && typeof t.team === 'string' && Array.isArray(t.input) && Array.isArray(t.output)) {
      store(mesh).set(id, await measured(t))
      return t
    }
  } catch (err) {
    mesh.log.warn(`responses: translated chain lookup failed: ${(err as Error).message}`)
  }
  return undefined
}

/** true when the proxy keeps this id's turn (for any team): the chain is the proxy's to expand */
export async function isTranslatedTurn(mesh: Mesh, id: unknown): Promise<boolean> {
  return typeof id === 'string' && (await lookup(mesh, id)) !== undefined
}

/** the turns before a request, as its expansion puts them in front of its own input items */
export interface Prior {
  /** how many items */
  items: number
  /** the length of their JSON text (of the array) */
  chars: number
}

// the JSON text length of the turns a request's body was expanded with, for the code that decides
// whether the body it sends is large (the client's own body may be small)
const expanded = new WeakMap<object, number>()

/** the length of the JSON text of the chain that expandChain put in front of this request's input (0: none) */
export function chainChars(request: object): number {
  return expanded.get(request) ?? 0
}

/**
 * The input items of a request with the turns before it in front: a `previous_response_id` the
 * proxy did not issue for this team is a 400, as the vendor answers an id it does not know.
 * `prior`: what was put in front (undefined: nothing).
 */
export async function expandChain(
  ctx: MeshContext,
  body: Record<string, any>,
): Promise<{ input: unknown[]; prior?: Prior }> {
  const own: unknown[] =
    typeof body.input === 'string'
      ? [{ type: 'message', role: 'user', content: body.input }]
      : Array.isArray(body.input)
        ? body.input
        : []
  const previous = body.previous_response_id
  if (previous === undefined || previous === null) return { input: own }
  const turn = typeof previous === 'string' ? await lookup(ctx.mesh, previous) : undefined
  if (!turn || turn.team !== ctx.identity.team) {
    throw new ProtocolError(
      `Previous response with id '${String(previous).slice(0, 128)}' not found (this proxy keeps the responses it translated for the team that asked)`,
      400,
      'invalid_request_error',
    )
  }
  // a turn whose record is still measuring its lengths: measured here
  await measured(turn)
  const prior = {
    items: turn.input.length + turn.output.length,
    chars: joinedChars(turn.inputChars!, turn.outputChars!),
  }
  expanded.set(ctx.request, prior.chars)
  return { input: [...turn.input, ...turn.output, ...own], prior }
}

/**
 * Keep a turn under the id the client got. Its size is the prior turns' (known) and its own
 * items' and output's: measured at once when small, else in slices, the turn kept meanwhile under
 * a size counted from the prior turns (a client's next turn may name it as soon as it has the answer).
 */
export function recordTurn(
  ctx: MeshContext,
  id: string,
  input: unknown[],
  output: unknown[],
  prior: Prior = { items: 0, chars: 2 },
): Promise<void> | undefined {
  const turn: Turn = { team: ctx.identity.team, input, output }
  let slicer: Slicer | undefined
  const lazy = () => (slicer ??= new Slicer(SLICE_MS))
  // the client's own items are no longer than its body: a small body's need no walk to be found small
  const fromSmallBody = typeof ctx.request?.rawBody === 'string' && ctx.request.rawBody.length < SMALL_CHARS
  const own = jsonChars(prior.items ? input.slice(prior.items) : input, lazy, fromSmallBody)
  const out = jsonChars(output, lazy)
  if (typeof own === 'number' && typeof out === 'number') {
    turn.inputChars = joinedChars(prior.chars, own)
    turn.outputChars = out
    return keep(ctx, id, turn)
  }
  turn.inputChars = prior.chars
  const s = store(ctx.mesh)
  s.set(id, turn)
  return Promise.all([own, out]).then(
    ([o, u]) => {
      turn.inputChars = joinedChars(prior.chars, o)
      turn.outputChars = u
      // its size now, unless it was evicted or replaced meanwhile
      if (s.peek(id) === turn) s.set(id, turn)
      return keep(ctx, id, turn, false)
    },
    (err) => {
      ctx.mesh.log.warn(`responses: translated chain not measured: ${(err as Error).message}`)
    },
  )
}

/** the turn in the process's store (unless `local` is false: it is there) and in shared storage */
function keep(ctx: MeshContext, id: string, turn: Turn, local = true): Promise<void> | undefined {
  if (local) store(ctx.mesh).set(id, turn)
  if (!shared(ctx.mesh) || !ID.test(id)) return
  return ctx.mesh.storage.setItem(PREFIX + id, turn as any, { ttl: TTL_SECONDS }).catch((err) => {
    ctx.mesh.log.warn(`responses: translated chain record failed: ${(err as Error).message}`)
  })
}
