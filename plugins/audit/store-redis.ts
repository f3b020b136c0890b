// Redis store: one list of lines plus a head key, appended by a Lua script that checks the head
// first, so several proxy instances can share one chain (optimistic: on conflict the writer
// re-seals its batch on the new head).
import { Redis } from 'ioredis'
import { GENESIS } from './canonical.ts'
import type { ChainHead } from './chain.ts'
import { formatHead, parseHead, type AppendResult, type AuditStore, type LogLine, type LogSource } from './store.ts'

export interface RedisStoreOptions {
  url: string
  /** key prefix (default `agentmesh:`): keys are `<prefix>audit:log` and `<prefix>audit:head` */
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

export function redisKeys(prefix = 'agentmesh:') {
  return { log: `${prefix}audit:log`, head: `${prefix}audit:head` }
}

type AppendingRedis = Redis & { auditAppend(headKey: string, logKey: string, ...args: string[]): Promise<number | string> }

function connect(url: string): AppendingRedis {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 3 }) as AppendingRedis
  client.defineCommand('auditAppend', { numberOfKeys: 2, lua: APPEND_LUA })
  // errors surface through the failed commands; this keeps ioredis from logging unhandled events
  client.on('error', () => {})
  return client
}

export function redisStore(options: RedisStoreOptions): AuditStore {
  const keys = redisKeys(options.prefix)
  let client: AppendingRedis | undefined

  async function head(): Promise<ChainHead> {
    return parseHead(await client!.get(keys.head)) ?? { seq: 0, hash: GENESIS }
  }

  return {
    name: 'redis',
    id: `redis:${options.url}#${keys.log}`,
    async open() {
      client = connect(options.url)
      await client.connect()
      return head()
    },
    async append(lines, expected, next): Promise<AppendResult> {
      const res = await client!.auditAppend(keys.head, keys.log, formatHead(expected), formatHead(next), ...lines)
      if (res === 1) return { ok: true }
      return { ok: false, head: parseHead(String(res)) ?? { seq: 0, hash: GENESIS } }
    },
    recover: head,
    async close() {
      const c = client
      client = undefined
      if (c) await c.quit().catch(() => c.disconnect())
    },
  }
}

export function redisLogSource(options: RedisStoreOptions): LogSource {
  const keys = redisKeys(options.prefix)
  return {
    describe: `redis ${keys.log}`,
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
