// Redis store: one list of lines plus a head key, appended by a Lua script that checks the head
// first, so several proxy instances can share one chain (optimistic: on conflict the writer
// re-seals its batch on the new head). The signed head has a key of its own, which only moves
// forward; writers announce themselves in a sorted set so a newcomer can tell a tail that a live
// writer will still sign from one a dead writer left.
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { GENESIS } from './canonical.ts'
import type { ChainHead } from './chain.ts'
import type { SignedHead } from './head.ts'
import { formatHead, parseHead, type AppendResult, type AuditStore, type LogLine, type LogSource } from './store.ts'

export interface RedisStoreOptions {
  url: string
  /** key prefix (default `agentmesh:`): keys are `<prefix>audit:log`, `<prefix>audit:head`, `<prefix>audit:signed-head`, `<prefix>audit:writers` */
  prefix?: string
}

const APPEND_LUA = `
local cur = redis.call('GET', KEYS[1])
if not cur then cur = '' end
if cur ~= ARGV[1] then return cur end
for i = 3, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
`

// a head never moves back: of several writers, the one that signed the newest checkpoint wins
const SIGNED_HEAD_LUA = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, h = pcall(cjson.decode, cur)
  if ok and type(h) == 'table' and tonumber(h.seq) and tonumber(h.seq) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`

// redis's clock, not the instances' (theirs may disagree): refresh this writer, forget expired
// ones, count the others
const ALIVE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1]) - 1
`

/** how long a writer counts as alive after its last announcement */
const ALIVE_MS = 5000

export function redisKeys(prefix = 'agentmesh:') {
  return {
    log: `${prefix}audit:log`,
    head: `${prefix}audit:head`,
    signedHead: `${prefix}audit:signed-head`,
    writers: `${prefix}audit:writers`,
  }
}

/** The log's name for its signed head in mesh storage: server and prefix, never the password. */
export function redisLogId(options: RedisStoreOptions): string {
  let server = 'redis'
  try {
    const u = new URL(options.url)
    server = `${u.hostname}:${u.port || 6379}${u.pathname && u.pathname !== '/' ? u.pathname : '/0'}`
  } catch {}
  return `redis:${server}#${redisKeys(options.prefix).log}`
}

type AuditRedis = Redis & {
  auditAppend(headKey: string, logKey: string, ...args: Array<string | Buffer>): Promise<number | string>
  auditSignedHead(key: string, head: string, seq: string): Promise<number>
  auditAlive(key: string, id: string, ttlMs: string): Promise<number>
}

function connect(url: string): AuditRedis {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 3 }) as AuditRedis
  client.defineCommand('auditAppend', { numberOfKeys: 2, lua: APPEND_LUA })
  client.defineCommand('auditSignedHead', { numberOfKeys: 1, lua: SIGNED_HEAD_LUA })
  client.defineCommand('auditAlive', { numberOfKeys: 1, lua: ALIVE_LUA })
  // errors surface through the failed commands; this keeps ioredis from logging unhandled events
  client.on('error', () => {})
  return client
}

/** Connect, failing with the cause (ECONNREFUSED ...) rather than ioredis's "Connection is closed." */
async function connected(client: Redis): Promise<void> {
  let cause: Error | undefined
  const keep = (err: Error) => void (cause ??= err)
  client.on('error', keep)
  try {
    await client.connect()
  } catch (err) {
    throw cause ?? err
  } finally {
    client.off('error', keep)
  }
}

async function* listBackward(client: Redis, key: string): AsyncGenerator<Buffer> {
  const STEP = 1000
  for (let end = (await client.llen(key)) - 1; end >= 0; end -= STEP) {
    const items = await client.lrangeBuffer(key, Math.max(0, end - STEP + 1), end)
    for (let i = items.length - 1; i >= 0; i--) yield items[i]!
  }
}

export function redisStore(options: RedisStoreOptions): AuditStore {
  const keys = redisKeys(options.prefix)
  const writerId = randomUUID()
  let client: AuditRedis | undefined
  let announcer: NodeJS.Timeout | undefined

  async function head(): Promise<ChainHead> {
    return parseHead(await client!.get(keys.head)) ?? { seq: 0, hash: GENESIS }
  }
  const announce = () => client!.auditAlive(keys.writers, writerId, String(ALIVE_MS))

  return {
    name: 'redis',
    id: `redis:${options.url}#${keys.log}`,
    logId: redisLogId(options),
    async open() {
      // a retry after a failed open must not leave the earlier client (and its reconnect loop) behind
      client?.disconnect()
      client = connect(options.url)
      await connected(client)
      return head()
    },
    async append(lines, expected, next): Promise<AppendResult> {
      const res = await client!.auditAppend(keys.head, keys.log, formatHead(expected), formatHead(next), ...lines)
      if (res === 1) return { ok: true }
      return { ok: false, head: parseHead(String(res)) ?? { seq: 0, hash: GENESIS } }
    },
    recover: head,
    linesBackward: () => listBackward(client!, keys.log),
    // redis acknowledges a write once it holds it; its own persistence settings decide the rest
    async sync() {},
    async readHead() {
      return (await client!.get(keys.signedHead)) ?? undefined
    },
    async writeHead(h: SignedHead) {
      await client!.auditSignedHead(keys.signedHead, JSON.stringify(h), String(h.seq))
    },
    async othersAlive() {
      const others = await announce()
      if (!announcer) {
        announcer = setInterval(() => void announce().catch(() => {}), ALIVE_MS / 3)
        announcer.unref()
      }
      return others > 0
    },
    async close() {
      if (announcer) clearInterval(announcer)
      announcer = undefined
      const c = client
      client = undefined
      if (!c) return
      // a client that never connected (redis down) would wait on its reconnect loop: drop it
      if (c.status !== 'ready') return c.disconnect()
      await c.zrem(keys.writers, writerId).catch(() => {})
      await c.quit().catch(() => c.disconnect())
    },
  }
}

export function redisLogSource(options: RedisStoreOptions): LogSource {
  const keys = redisKeys(options.prefix)
  const withClient = async <T>(fn: (c: Redis) => Promise<T>): Promise<T> => {
    const client = connect(options.url)
    try {
      await client.connect()
      return await fn(client)
    } finally {
      await client.quit().catch(() => client.disconnect())
    }
  }
  return {
    describe: `redis ${keys.log}`,
    logId: redisLogId(options),
    async readHead() {
      const text = await withClient((c) => c.get(keys.signedHead))
      return text ? { from: `redis ${keys.signedHead}`, text } : undefined
    },
    async *chunks() {
      const client = connect(options.url)
      try {
        await client.connect()
        const total = await client.llen(keys.log)
        const STEP = 10_000
        for (let start = 0; start < total; start += STEP) {
          const items = await client.lrangeBuffer(keys.log, start, Math.min(start + STEP, total) - 1)
          const lines: LogLine[] = items.map((data, j) => ({
            data,
            file: keys.log,
            line: start + j + 1,
            final: start + j === total - 1,
            terminated: true,
          }))
          yield lines
        }
      } finally {
        await client.quit().catch(() => client.disconnect())
      }
    },
  }
}
