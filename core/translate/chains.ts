// Responses answered by a vendor of another protocol: that vendor keeps no state, so the proxy
// keeps each turn (the whole input it expanded and the output it gave) under the response id it
// issued, for the team that asked, and expands `previous_response_id` from it before translating.
// Same lifetime and storage rule as core/response-chains.ts: in process, and in shared storage on
// redis so that another instance can continue the chain.
import { LRUCache } from 'lru-cache'
import { ProtocolError } from '../protocols/shared.ts'
import type { Mesh, MeshContext } from '../types.ts'

interface Turn {
  team: string
  /** every input item up to this response (earlier turns' inputs and outputs expanded) */
  input: unknown[]
  output: unknown[]
}

const TTL_SECONDS = 30 * 24 * 3600
const PREFIX = 'responses:translated:'
// a long conversation is stored once per turn: bounded by size as well as by count
const MAX_BYTES = 256 * 1024 * 1024
const ID = /^resp_[\w-]{1,124}$/

const stores = new WeakMap<Mesh, LRUCache<string, Turn>>()

function store(mesh: Mesh): LRUCache<string, Turn> {
  let s = stores.get(mesh)
  if (!s)
    stores.set(
      mesh,
      (s = new LRUCache<string, Turn>({
        max: 20_000,
        maxSize: MAX_BYTES,
        sizeCalculation: (t) => Math.max(1, JSON.stringify(t).length),
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
      store(mesh).set(id, t)
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

/**
 * The input items of a request with the turns before it in front: a `previous_response_id` the
 * proxy did not issue for this team is a 400, as the vendor answers an id it does not know.
 */
export async function expandInput(ctx: MeshContext, body: Record<string, any>): Promise<unknown[]> {
  const own: unknown[] =
    typeof body.input === 'string'
      ? [{ type: 'message', role: 'user', content: body.input }]
      : Array.isArray(body.input)
        ? body.input
        : []
  const previous = body.previous_response_id
  if (previous === undefined || previous === null) return own
  const turn = typeof previous === 'string' ? await lookup(ctx.mesh, previous) : undefined
  if (!turn || turn.team !== ctx.identity.team) {
    throw new ProtocolError(
      `Previous response with id '${String(previous).slice(0, 128)}' not found (this proxy keeps the responses it translated for the team that asked)`,
      400,
      'invalid_request_error',
    )
  }
  return [...turn.input, ...turn.output, ...own]
}

export function recordTurn(
  ctx: MeshContext,
  id: string,
  input: unknown[],
  output: unknown[],
): Promise<void> | undefined {
  const turn: Turn = { team: ctx.identity.team, input, output }
  store(ctx.mesh).set(id, turn)
  if (!shared(ctx.mesh) || !ID.test(id)) return
  return ctx.mesh.storage.setItem(PREFIX + id, turn as any, { ttl: TTL_SECONDS }).catch((err) => {
    ctx.mesh.log.warn(`responses: translated chain record failed: ${(err as Error).message}`)
  })
}
