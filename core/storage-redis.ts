// The one redis connection storage, counters and the change feed share, and an unstorage driver
// over it. While redis is down every call fails at once with StorageUnavailableError (a 503 in the
// client's protocol) instead of waiting in ioredis's queues through 20 reconnect attempts; the
// client reconnects by itself, and the outage is logged once when it starts and once when it ends.
import { Redis, ReplyError } from 'ioredis'
import { defineDriver, joinKeys, normalizeKey, type Driver } from 'unstorage'
import { StorageUnavailableError } from './errors.ts'
import { Slicer } from './slicer.ts'
import { Availability } from './storage-health.ts'
import type { Logger } from './types.ts'

/** reconnect backoff: 100 ms doubling, at most 1 s between attempts, for as long as it takes */
const MAX_RECONNECT_DELAY_MS = 1000
/** a connection attempt that hangs (a host that is gone) is given up after this */
const CONNECT_TIMEOUT_MS = 2000
/**
 * A ready connection is pinged this often; no answer within HEARTBEAT_TIMEOUT_MS and it is dropped
 * (redis blocked that long stalls every request anyway; the reconnect is immediate once it answers)
 */
const HEARTBEAT_MS = 500
const HEARTBEAT_TIMEOUT_MS = 1500
// replies that mean the server cannot serve now (not that the request was wrong)
const UNAVAILABLE_REPLY =
  /^(LOADING|READONLY|MASTERDOWN|MISCONF|OOM|BUSY|CLUSTERDOWN|TRYAGAIN|NOAUTH|WRONGPASS|NOPERM)\b/

export interface RedisLink {
  readonly client: Redis
  readonly availability: Availability
  /** throws StorageUnavailableError while redis is down, so a call fails now instead of queueing */
  assertUp(): void
  /**
   * What a failed command should throw: StorageUnavailableError, cause kept, when redis could not
   * be used (connection lost, command aborted, server loading or out of memory); any other reply
   * error (a wrong type, a script error) as it is.
   */
  failure(err: unknown): unknown
  close(): void
}

/**
 * A RedisLink over a client someone else configured and owns (tests, embedders): errors are
 * converted the same way, but calls are not refused up front and nothing is logged.
 */
export function linkTo(client: Redis, part = 'redis'): RedisLink {
  return {
    client,
    availability: new Availability(part, undefined, ''),
    assertUp() {},
    failure: (err) => redisFailure(err, part),
    close: () => client.disconnect(),
  }
}

export const isRedisLink = (x: Redis | RedisLink): x is RedisLink => typeof (x as RedisLink).assertUp === 'function'

/** a reply error that is about the command (a wrong type, a script error), not about redis being usable */
const isCommandError = (err: unknown) => err instanceof ReplyError && !UNAVAILABLE_REPLY.test((err as Error).message)

/** StorageUnavailableError (cause kept) unless redis refused the command itself */
export function redisFailure(err: unknown, part: string): unknown {
  if (err instanceof StorageUnavailableError || isCommandError(err)) return err
  return new StorageUnavailableError(`storage unavailable: ${part}: ${(err as Error)?.message ?? String(err)}`, {
    cause: err,
  })
}

/** `part` names redis in log lines and health ("redis redis://host:6379", password masked) */
// one closure: the client, its heartbeat and the outage state change together
export function openRedisLink(url: string, part: string, log?: Logger): RedisLink {
  const availability = new Availability(
    part,
    log,
    'requests that need it answer 503 storage_unavailable until it is back',
  )
  const client = new Redis(url, {
    // a command in flight when the connection drops fails then, rather than after N reconnects
    maxRetriesPerRequest: 0,
    connectTimeout: CONNECT_TIMEOUT_MS,
    retryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt - 1, 4), MAX_RECONNECT_DELAY_MS),
  })
  let lastError = ''
  let connectedOnce = false
  let closing = false
  // until the first connection attempt ends, commands wait for it in ioredis's offline queue
  let starting = true
  /** when the heartbeat began waiting for an answer (a PING, or the handshake of a new connection) */
  let waitingSince = 0

  // with a listener ioredis no longer prints "[ioredis] Unhandled error event" for every attempt
  client.on('error', (err: Error) => {
    lastError = err.message
  })
  client.on('ready', () => {
    starting = false
    connectedOnce = true
    lastError = ''
    waitingSince = 0
    availability.markUp()
  })
  const lost = () => {
    starting = false
    waitingSince = 0
    if (!closing) availability.markDown(lastError || (connectedOnce ? 'connection lost' : 'cannot connect'))
  }
  client.on('close', lost)
  client.on('end', lost)

  // a server that stops answering without closing the connection (a host gone, a partition)
  // would hold every command until TCP gives up: a PING every half second notices it, one timer
  // for the connection instead of a timeout per command. A connection whose handshake (the ready
  // check) goes unanswered is dropped the same way, or it would never be retried.
  const answered = () => {
    waitingSince = 0
  }
  const heartbeat = setInterval(() => {
    const status = client.status
    if (status !== 'ready' && status !== 'connect') waitingSince = 0
    else if (!waitingSince) {
      waitingSince = Date.now()
      if (status === 'ready') client.ping().then(answered, answered)
    } else if (Date.now() - waitingSince > HEARTBEAT_TIMEOUT_MS) {
      lastError = `no answer to ${status === 'ready' ? 'PING' : 'the connection handshake'} within ${HEARTBEAT_TIMEOUT_MS} ms`
      waitingSince = 0
      // destroy, not end: the FIN of end() to a peer that is gone would never complete the close
      client.stream?.destroy()
    }
  }, HEARTBEAT_MS)
  heartbeat.unref()

  return {
    client,
    availability,
    assertUp() {
      const status = client.status
      if (status === 'ready' || (starting && (status === 'connecting' || status === 'connect' || status === 'wait')))
        return
      if (!closing) availability.markDown(lastError || 'not connected')
      throw availability.error()
    },
    failure(err) {
      if (err instanceof StorageUnavailableError || isCommandError(err)) return err
      // the connection went while the command was out (or it never got one): an outage, reported
      // now rather than when the 'close' event arrives; the client sees why, not ioredis's wording
      if (client.status !== 'ready' && !closing) {
        availability.markDown(lastError || 'connection lost')
        return availability.error(err)
      }
      return redisFailure(err, part)
    },
    close() {
      closing = true
      clearInterval(heartbeat)
      client.disconnect()
    },
  }
}

export interface RedisDriverOptions {
  link: RedisLink
  /** key prefix, e.g. 'agentmesh' */
  base: string
  /** keys SCAN asks for per round trip (default 1,000: redis's 10 made listing 100,000 keys take 10,000 round trips) */
  scanCount?: number
}

/**
 * unstorage's redis driver, on a shared RedisLink: the same keys and commands, but a call fails
 * at once while redis is down and its error is StorageUnavailableError. The link owns the client.
 */
// one closure over 80 lines, as unstorage's drivers are: the methods share the link and prefix
export const redisDriver = defineDriver((opts: RedisDriverOptions): Driver => {
  const { link } = opts
  const client = link.client
  const base = normalizeKey(opts.base)
  // unstorage hands drivers normalised keys ('a:b:c'), so an item key is only prefixed
  const p = base ? (key: string) => `${base}:${key}` : (key: string) => key
  const strip = base ? (key: string) => key.slice(base.length + 1) : (key: string) => key
  const pattern = (sub: string) => {
    const prefix = joinKeys(base, sub)
    return prefix ? `${escapeGlob(prefix)}:*` : '*'
  }

  async function set(key: string, data: string | Buffer, ttl: number | undefined): Promise<void> {
    try {
      if (ttl) await client.set(key, data, 'EX', ttl)
      else await client.set(key, data)
    } catch (err) {
      throw link.failure(err)
    }
  }

  async function scan(match: string): Promise<string[]> {
    link.assertUp()
    const keys: string[] = []
    let cursor = '0'
    try {
      do {
        const [next, found] = await client.scan(cursor, 'MATCH', match, 'COUNT', opts.scanCount ?? 1000)
        cursor = next
        for (const k of found) keys.push(k)
      } while (cursor !== '0')
    } catch (err) {
      throw link.failure(err)
    }
    return keys
  }

  return {
    name: 'agentmesh-redis',
    options: opts,
    getInstance: () => client,
    async hasItem(key) {
      link.assertUp()
      try {
        return (await client.exists(p(key))) > 0
      } catch (err) {
        throw link.failure(err)
      }
    },
    async getItem(key) {
      link.assertUp()
      try {
        return (await client.get(p(key))) ?? null
      } catch (err) {
        throw link.failure(err)
      }
    },
    async getItems(items) {
      link.assertUp()
      const keys = items.map((item) => p(item.key))
      try {
        const values = await client.mget(...keys)
        return keys.map((key, i) => ({ key: strip(key), value: values[i] ?? null }))
      } catch (err) {
        throw link.failure(err)
      }
    },
    async getItemRaw(key) {
      link.assertUp()
      let value: Buffer | null
      try {
        value = await client.getBuffer(p(key))
      } catch (err) {
        throw link.failure(err)
      }
      return value && fromUnstorageRaw(value)
    },
    async setItem(key, value, topts) {
      link.assertUp()
      const ttl = (topts as { ttl?: number } | undefined)?.ttl
      // a string of megabytes goes as its UTF-8 bytes, encoded a piece per slice of the event loop
      const data = value.length > ENCODE_PIECE_CHARS ? await utf8Pieced(value) : value
      await set(p(key), data, ttl)
    },
    async setItemRaw(key, value, topts) {
      const ttl = (topts as { ttl?: number } | undefined)?.ttl
      if (typeof value === 'string') return this.setItem!(key, value, topts)
      link.assertUp()
      await set(p(key), asBuffer(value), ttl)
    },
    async removeItem(key) {
      link.assertUp()
      try {
        await client.unlink(p(key))
      } catch (err) {
        throw link.failure(err)
      }
    },
    async getKeys(sub) {
      return (await scan(pattern(sub))).map(strip)
    },
    async clear(sub) {
      const keys = await scan(pattern(sub))
      if (!keys.length) return
      try {
        await client.unlink(keys)
      } catch (err) {
        throw link.failure(err)
      }
    },
  }
})

const escapeGlob = (s: string) => s.replace(/[*?[\]\\]/g, '\\$&')

// A string longer than this (an exact-cache entry of megabytes) is encoded here a piece at a time:
// given to ioredis as a string it was measured with Buffer.byteLength and encoded to UTF-8 in one
// go, 20-26 ms of one block for 5M characters of non-Latin-1 text, 41-44 ms for 10M
const ENCODE_PIECE_CHARS = 1024 * 1024
const SLICE_MS = 10

/** Buffer.from(s, 'utf8'), the same bytes, sized and filled a piece per slice of the event loop */
async function utf8Pieced(s: string): Promise<Buffer> {
  const slicer = new Slicer(SLICE_MS)
  const ends: number[] = []
  let size = 0
  for (let at = 0; at < s.length; ) {
    let end = Math.min(s.length, at + ENCODE_PIECE_CHARS)
    // never between the two halves of a surrogate pair: each half alone would be encoded as U+FFFD
    const last = s.charCodeAt(end - 1)
    if (end < s.length && last >= 0xd800 && last <= 0xdbff) end++
    size += Buffer.byteLength(s.slice(at, end), 'utf8')
    ends.push(end)
    at = end
    await slicer.pause()
  }
  // not zeroed: its pages are first touched as the pieces are written, a slice at a time
  const out = Buffer.allocUnsafeSlow(size)
  let written = 0
  let at = 0
  for (const end of ends) {
    written += out.write(s.slice(at, end), written, 'utf8')
    at = end
    await slicer.pause()
  }
  return out
}

/** raw bytes as ioredis sends them, without a copy */
function asBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  if (value instanceof ArrayBuffer) return Buffer.from(value)
  throw new TypeError(`[unstorage] [agentmesh-redis] setItemRaw takes bytes, got ${typeof value}`)
}

const BASE64_RAW = Buffer.from('base64:')
/**
 * Before this driver had raw methods unstorage stored raw values as 'base64:' + base64 text and
 * decoded them in getItemRaw: a value stored so still reads back as its bytes
 */
function fromUnstorageRaw(value: Buffer): Buffer {
  if (value.length < BASE64_RAW.length || value.compare(BASE64_RAW, 0, BASE64_RAW.length, 0, BASE64_RAW.length) !== 0)
    return value
  return Buffer.from(value.toString('latin1', BASE64_RAW.length), 'base64')
}
