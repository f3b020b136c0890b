// Responses API state: which response ids the proxy itself answered, for which team. A request
// that continues a chain (`previous_response_id`) depends on what the vendor stored under that
// id; the proxy may cache it only when it saw that response itself, for the same team. A cache hit
// answers with a fresh id the vendor never issued: it is recorded here with the vendor's id it
// replays, so a client that continues from it (or retrieves it) reaches the vendor's stored one.
import { LRUCache } from 'lru-cache'
import type { Mesh, MeshContext } from './types.ts'

interface ChainEntry {
  team: string
  /** the id the vendor knows this response by (differs from the key for a cache hit) */
  vendorId: string
}

// OpenAI keeps stored responses 30 days; ids older than that name nothing anyway
const TTL_SECONDS = 30 * 24 * 3600
const MAX_ENTRIES = 50_000
const PREFIX = 'responses:chain:'

const registries = new WeakMap<Mesh, LRUCache<string, ChainEntry>>()

function registry(mesh: Mesh): LRUCache<string, ChainEntry> {
  let r = registries.get(mesh)
  if (!r) registries.set(mesh, (r = new LRUCache({ max: MAX_ENTRIES, ttl: TTL_SECONDS * 1000 })))
  return r
}

// ids are the vendor's (`resp_` and letters): anything else is never looked up in storage
const ID = /^[\w-]{1,128}$/

/** shared storage only on redis, where instances serve one another's chains; elsewhere one process owns them */
const shared = (mesh: Mesh) => mesh.config.storage.driver === 'redis'

async function lookup(mesh: Mesh, id: string): Promise<ChainEntry | undefined> {
  const local = registry(mesh).get(id)
  if (local || !shared(mesh) || !ID.test(id)) return local
  try {
    const stored = (await mesh.storage.getItem(PREFIX + id)) as ChainEntry | null
    if (stored && typeof stored.team === 'string' && typeof stored.vendorId === 'string') {
      registry(mesh).set(id, stored)
      return stored
    }
  } catch (err) {
    // unknown is the safe answer: the request is forwarded as is and not cached
    mesh.log.debug(`responses: chain lookup failed: ${(err as Error).message}`)
  }
  return undefined
}

/**
 * Before the caches look: a request that continues a chain the proxy did not answer for this team
 * is marked `noCache`; one that continues from a cached answer's id is sent on with the vendor's.
 */
export async function checkChain(ctx: MeshContext): Promise<void> {
  const body = ctx.request.body
  if (body?.conversation != null) {
    ctx.prompt.noCache = 'the conversation is kept by the vendor'
    return
  }
  if (body?.background === true) {
    ctx.prompt.noCache = 'a background response is answered later'
    return
  }
  const previous = body?.previous_response_id
  if (typeof previous !== 'string') return
  const entry = await lookup(ctx.mesh, previous)
  if (!entry || entry.team !== ctx.identity.team) {
    ctx.prompt.noCache = 'previous_response_id names a response this proxy did not answer for this team'
    return
  }
  if (entry.vendorId !== previous) {
    body.previous_response_id = entry.vendorId
    ctx.request.dirty = true
  }
}

/** The vendor's id for a response id a client names (a path of retrieve, delete, cancel, input items). */
export async function vendorIdFor(ctx: MeshContext, id: string): Promise<string> {
  const entry = await lookup(ctx.mesh, id)
  return entry && entry.team === ctx.identity.team ? entry.vendorId : id
}

/**
 * After an answer: remember its id when the vendor stores it (`store` is not false), so the next
 * turn may be cached. A cache hit's fresh id is recorded with the id of the answer it replays.
 */
export function recordChain(ctx: MeshContext): Promise<void> | undefined {
  const a = ctx.answer
  if (ctx.status !== 200 || !a?.id || ctx.aborted || ctx.request.body?.store === false) return
  const hit = ctx.cache.status === 'exact' || ctx.cache.status === 'semantic'
  const raw = a.raw?.protocol === 'responses' ? a.raw.body : undefined
  // a replayed answer the vendor never stored cannot be continued at the vendor
  if (hit && (!raw || raw.store === false || typeof raw.id !== 'string')) return
  const entry: ChainEntry = { team: ctx.identity.team, vendorId: hit ? raw!.id : a.id }
  registry(ctx.mesh).set(a.id, entry)
  if (!shared(ctx.mesh) || !ID.test(a.id)) return
  return ctx.mesh.storage.setItem(PREFIX + a.id, entry, { ttl: TTL_SECONDS }).catch((err) => {
    ctx.mesh.log.debug(`responses: chain record failed: ${(err as Error).message}`)
  })
}
