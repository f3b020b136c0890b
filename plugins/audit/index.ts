// audit: a hash-chained, Ed25519-signed log of every request decision.
// One entry per request (afterResponse), chained by SHA-256 over canonical JSON; checkpoints
// sign the chain head every N entries / T seconds and at shutdown. See README.md.
import { join, resolve } from 'node:path'
import { definePlugin } from '../../core/plugin.ts'
import type { Mesh, Plugin } from '../../core/types.ts'
import type { AuditEntry } from './chain.ts'
import { buildEntry, scrub, secretsOf } from './entry.ts'
import { exportLog } from './export.ts'
import { loadPublicKeys, loadSigner, parsePrivateKey, type Signer } from './signer.ts'
import type { AuditStore, LogSource } from './store.ts'
import { fsLogSource, fsStore, type FsyncPolicy } from './store-fs.ts'
import { redisLogSource, redisStore } from './store-redis.ts'
import { formatVerifyResult, verifyLog, type VerifyResult } from './verify.ts'
import { AuditWriter } from './writer.ts'

export type { AuditEntry, ChainHead, ChainRecord, CheckpointBody } from './chain.ts'
export { canonicalJson, sha256Hex, GENESIS } from './canonical.ts'
export { seal, sealEntry, parseLine, SIGNATURE_PREFIX } from './chain.ts'
export { buildEntry, scrub } from './entry.ts'
export { exportLog, CSV_COLUMNS, type ExportOptions } from './export.ts'
export { loadSigner, loadPublicKeys, makeSigner, parsePrivateKey, parsePublicKey, publicKeyInfo, verifySignature, type Signer, type PublicKeyInfo } from './signer.ts'
export type { AuditStore, LogLine, LogSource } from './store.ts'
export { fsStore, fsLogSource, listLogFiles, type FsStoreOptions, type FsyncPolicy } from './store-fs.ts'
export { redisStore, redisLogSource, redisKeys, type RedisStoreOptions } from './store-redis.ts'
export { verifyLog, formatVerifyResult, type VerifyResult, type VerifyProblem, type ProblemKind } from './verify.ts'
export { AuditWriter, type WriterOptions } from './writer.ts'

export interface AuditOptions {
  /** 'fs' (default): JSONL files in `dir`; 'redis': one list shared by every instance */
  store?: 'fs' | 'redis'
  /** log files (fs) and key files; default `<dataDir>/audit` */
  dir?: string
  /** redis store: url (default: config storage.url when storage.driver is redis) and key prefix */
  redis?: { url?: string; prefix?: string }
  /**
   * Ed25519 private key (PKCS8 PEM, or base64 of the 32-byte seed). Default: env
   * AGENTMESH_AUDIT_PRIVATE_KEY, else `<dir>/private-key.pem`, generated on first start (0600).
   */
  privateKey?: string
  /** sign a checkpoint every this many entries (default 1000) */
  checkpointEvery?: number
  /** and every this many seconds while entries are unsigned (default 10; 0 turns the timer off) */
  checkpointSeconds?: number
  /** fs: start a new file past this size in bytes (default 64 MiB; 0: no size limit) */
  rotateBytes?: number
  /** fs: start a new file each UTC day (default true) */
  rotateDaily?: boolean
  /**
   * fs: 'always' (default) fsync after each written batch, 'checkpoint' after batches holding a
   * checkpoint, 'never'. The next write does not wait for an fsync (group commit); shutdown does.
   */
  fsync?: FsyncPolicy
  /** entries waiting to be written before a request has to wait for room (default 10,000) */
  queueMax?: number
  /** store the canonical prompt and the answer text in entries, not only their hashes (default false) */
  includeContent?: boolean
  /** change or trim every entry before it is chained (e.g. drop parts of the content) */
  redact?: (entry: AuditEntry) => AuditEntry | void
}

function fail(field: string, expected: string, got: unknown): never {
  throw new Error(`audit: ${field} must be ${expected}, got ${typeof got === 'string' ? JSON.stringify(got) : typeof got === 'function' ? 'a function' : JSON.stringify(got) ?? String(got)}`)
}

function validate(o: AuditOptions): void {
  if (o === null || typeof o !== 'object') fail('options', 'an object', o)
  const known = new Set(['store', 'dir', 'redis', 'privateKey', 'checkpointEvery', 'checkpointSeconds', 'rotateBytes', 'rotateDaily', 'fsync', 'queueMax', 'includeContent', 'redact'])
  for (const k of Object.keys(o)) if (!known.has(k)) throw new Error(`audit: unknown option "${k}" (known: ${[...known].join(', ')})`)
  if (o.store !== undefined && o.store !== 'fs' && o.store !== 'redis') fail('store', '"fs" or "redis"', o.store)
  if (o.dir !== undefined && (typeof o.dir !== 'string' || !o.dir)) fail('dir', 'a non-empty path', o.dir)
  if (o.redis !== undefined) {
    if (!o.redis || typeof o.redis !== 'object') fail('redis', 'an object { url?, prefix? }', o.redis)
    if (o.redis.url !== undefined && (typeof o.redis.url !== 'string' || !/^rediss?:\/\//.test(o.redis.url))) fail('redis.url', 'a redis:// or rediss:// URL', o.redis.url)
    if (o.redis.prefix !== undefined && typeof o.redis.prefix !== 'string') fail('redis.prefix', 'a string', o.redis.prefix)
  }
  if (o.privateKey !== undefined && (typeof o.privateKey !== 'string' || !o.privateKey.trim())) fail('privateKey', 'a PEM or base64 string', typeof o.privateKey === 'string' ? '' : o.privateKey)
  const int = (field: keyof AuditOptions, min: number) => {
    const v = o[field]
    if (v !== undefined && !(Number.isSafeInteger(v) && (v as number) >= min)) fail(field, min > 0 ? `an integer >= ${min}` : 'a non-negative integer', v)
  }
  int('checkpointEvery', 1)
  int('rotateBytes', 0)
  int('queueMax', 1)
  if (o.checkpointSeconds !== undefined && !(typeof o.checkpointSeconds === 'number' && Number.isFinite(o.checkpointSeconds) && o.checkpointSeconds >= 0)) fail('checkpointSeconds', 'a non-negative number', o.checkpointSeconds)
  if (o.rotateDaily !== undefined && typeof o.rotateDaily !== 'boolean') fail('rotateDaily', 'a boolean', o.rotateDaily)
  if (o.includeContent !== undefined && typeof o.includeContent !== 'boolean') fail('includeContent', 'a boolean', o.includeContent)
  if (o.fsync !== undefined && !['always', 'checkpoint', 'never'].includes(o.fsync)) fail('fsync', '"always", "checkpoint" or "never"', o.fsync)
  if (o.redact !== undefined && typeof o.redact !== 'function') fail('redact', 'a function (entry) => entry', o.redact)
  // fail at config time, not at the first request; the message never contains the key
  if (o.privateKey !== undefined) parsePrivateKey(o.privateKey)
}

// Writers shared by plugin instances of one process that point at the same log (a config
// reload creates a new instance before the old one is closed).
const writers = new Map<string, { writer: AuditWriter; refs: number; ready: Promise<unknown> }>()

function redisTarget(options: AuditOptions, mesh: Mesh) {
  const storage = mesh.config?.storage
  const url = options.redis?.url ?? (storage?.driver === 'redis' ? storage.url : undefined)
  if (!url) throw new Error('audit: store "redis" needs redis.url (or config storage.driver "redis" with a url)')
  return { url, prefix: options.redis?.prefix ?? storage?.prefix ?? 'agentmesh:' }
}

/** The log a plugin with these options reads: for commands and tests. */
export function auditSource(options: AuditOptions, mesh: Pick<Mesh, 'dataDir' | 'config'>, dirOverride?: string): LogSource {
  if (dirOverride) return fsLogSource(dirOverride)
  if (options.store === 'redis') return redisLogSource(redisTarget(options, mesh as Mesh))
  return fsLogSource(options.dir ? resolve(options.dir) : join(mesh.dataDir, 'audit'))
}

/** Verify an audit directory with the public keys found in it (or the given key files). */
export async function verifyAuditDir(dir: string, pubkeyFiles?: string[]): Promise<VerifyResult> {
  return verifyLog(fsLogSource(dir), { publicKeys: loadPublicKeys(pubkeyFiles, dir) })
}

function listOption(v: unknown): string[] | undefined {
  if (v === undefined || v === null || v === true || v === '') return undefined
  const arr = Array.isArray(v) ? v : [v]
  return arr.flatMap((x) => String(x).split(',')).map((s) => s.trim()).filter(Boolean)
}

function parseDate(v: unknown, flag: string): Date | undefined {
  if (v === undefined || v === null || v === '') return undefined
  const d = new Date(String(v))
  if (Number.isNaN(d.getTime())) throw new Error(`audit export: ${flag} must be a date (e.g. 2025-01-31 or 2025-01-31T12:00:00Z), got ${JSON.stringify(v)}`)
  return d
}

export function audit(options: AuditOptions = {}): Plugin {
  validate(options)
  const includeContent = options.includeContent ?? false
  // per mesh: one plugin object can serve two meshes at once (a dev reload re-using the config)
  const active = new WeakMap<Mesh, AuditWriter>()

  const shownOptions: Record<string, unknown> = { ...options }
  if (options.privateKey) shownOptions.privateKey = '***'
  if (options.redact) shownOptions.redact = '[function]'

  return definePlugin({
    name: 'audit',
    // after quota, cost and cache plugins have settled what the entry records
    enforce: 'post',
    options: shownOptions,
    async setup(mesh: Mesh) {
      if (mesh.mode !== 'serve') return
      const dir = options.dir ? resolve(options.dir) : join(mesh.dataDir, 'audit')
      const envKey = process.env.AGENTMESH_AUDIT_PRIVATE_KEY?.trim() || undefined
      // a bad env key fails the start with a message naming the variable (never the key)
      if (!options.privateKey && envKey) parsePrivateKey(envKey, 'AGENTMESH_AUDIT_PRIVATE_KEY')
      const signer: Signer = loadSigner(dir, options.privateKey ?? envKey, mesh.log)
      const store: AuditStore = options.store === 'redis'
        ? redisStore(redisTarget(options, mesh))
        : fsStore({ dir, rotateBytes: options.rotateBytes, rotateDaily: options.rotateDaily, fsync: options.fsync, log: mesh.log })
      const storeId = store.id
      let shared = writers.get(store.id)
      if (!shared) {
        const w = new AuditWriter(store, signer, {
          checkpointEvery: options.checkpointEvery,
          checkpointSeconds: options.checkpointSeconds,
          queueMax: options.queueMax,
          log: mesh.log,
        })
        shared = { writer: w, refs: 0, ready: w.open() }
        writers.set(store.id, shared)
        try {
          await shared.ready
        } catch (err) {
          writers.delete(store.id)
          throw err
        }
      } else await shared.ready
      shared.refs++
      active.set(mesh, shared.writer)
      mesh.addRoute('GET', '/agentmesh/audit/public-key', () =>
        Response.json({ algorithm: 'Ed25519', keyId: signer.keyId, pem: signer.pem, raw: signer.raw, format: 'agentmesh-audit/v1' }),
      )
      mesh.onClose(async () => {
        active.delete(mesh)
        const entry = writers.get(storeId)
        if (!entry || --entry.refs > 0) return
        writers.delete(storeId)
        // flush the queue and sign a final checkpoint
        await entry.writer.close()
      })
    },
    hooks: {
      afterResponse(ctx) {
        const w = active.get(ctx.mesh)
        if (!w) return
        let entry = buildEntry(ctx, includeContent)
        if (options.redact) {
          try {
            const built = entry
            entry = options.redact(entry) ?? entry
            // the hook's own object may be shared or frozen: the fields set below go on a copy
            if (entry !== built) entry = { ...entry }
          } catch (err) {
            // keep the record, lose the content: an audit gap is worse than a missing prompt
            ctx.mesh.log.error(`audit: redact hook threw, writing the entry without content: ${(err as Error).message}`, { id: ctx.id })
            delete entry.prompt
            delete entry.answer
          }
        }
        entry = scrub(entry, secretsOf(ctx))
        entry.v = 1
        entry.kind = 'request'
        // chain fields are the writer's (cleared, not deleted: delete turns the entry into a slow dictionary object)
        for (const k of ['seq', 'prev', 'hash', 'sig']) if (entry[k] !== undefined) entry[k] = undefined
        return w.append(entry)
      },
    },
    // one command word with an action (cac matches a command by its first word): `audit verify`
    // and `audit export`, as the keys plugin does
    commands: [
      {
        name: 'audit <action>',
        description: 'audit verify: check every hash, link and checkpoint signature of the audit log; audit export: print entries as JSONL or CSV',
        options: [
          { flags: '--dir <dir>', description: 'audit directory (default: <data-dir>/audit, or the redis log when store is redis)' },
          { flags: '--pubkey <file>', description: 'verify: public key file (PEM or base64), comma-separated for several (default: public-key*.pem in the audit directory)' },
          { flags: '--strict', description: 'verify: also fail when entries after the last checkpoint are unsigned' },
          { flags: '--deep', description: 'verify: also parse every entry and check it is canonical JSON (slower)' },
          { flags: '--since <date>', description: 'export: entries at or after this date/time' },
          { flags: '--until <date>', description: 'export: entries before this date/time' },
          { flags: '--team <team>', description: 'export: only this team' },
          { flags: '--format <format>', description: 'export: jsonl or csv (default jsonl)' },
        ],
        async run({ mesh, args, options: o, print }) {
          const action = args[0]
          if (action === 'verify') return runVerify(options, mesh, o, print)
          if (action === 'export') return runExport(options, mesh, o, print)
          process.stderr.write(`audit: unknown action ${JSON.stringify(action ?? '')}; use audit verify or audit export\n`)
          return 2
        },
      },
    ],
  })
}

type Print = (line: string) => void

/** `audit verify`: prints OK / unsigned tail / FAIL lines; exit code 0 ok, 1 tampered (or --strict and unsigned), 2 cannot verify. */
async function runVerify(options: AuditOptions, mesh: Mesh, o: Record<string, any>, print: Print): Promise<number> {
  const dir = o.dir ? resolve(String(o.dir)) : options.dir ? resolve(options.dir) : join(mesh.dataDir, 'audit')
  let keys
  try {
    keys = loadPublicKeys(listOption(o.pubkey), dir)
  } catch (err) {
    print(`ERROR ${(err as Error).message}`)
    return 2
  }
  if (keys.length === 0) {
    print(`ERROR no public key: none in ${dir}; pass --pubkey FILE (GET /agentmesh/audit/public-key serves it)`)
    return 2
  }
  let result: VerifyResult
  try {
    result = await verifyLog(auditSource(options, mesh, o.dir ? dir : undefined), { publicKeys: keys, deep: !!o.deep })
  } catch (err) {
    print(`ERROR ${(err as Error).message}`)
    return 2
  }
  for (const line of formatVerifyResult(result)) print(line)
  if (!result.ok) return 1
  if (o.strict && (result.unsignedTail > 0 || result.tornTail)) return 1
  return 0
}

/** `audit export`: entries to stdout; errors to stderr, since stdout is the data. */
async function runExport(options: AuditOptions, mesh: Mesh, o: Record<string, any>, print: Print): Promise<number> {
  const format = String(o.format ?? 'jsonl')
  if (format !== 'jsonl' && format !== 'csv') {
    process.stderr.write(`audit export: --format must be jsonl or csv, got ${JSON.stringify(format)}\n`)
    return 2
  }
  try {
    const dir = o.dir ? resolve(String(o.dir)) : undefined
    const { skipped } = await exportLog(
      auditSource(options, mesh, dir),
      { since: parseDate(o.since, '--since'), until: parseDate(o.until, '--until'), team: o.team === undefined ? undefined : String(o.team), format },
      print,
    )
    if (skipped) process.stderr.write(`audit export: skipped ${skipped} lines that are not valid records (run audit verify)\n`)
  } catch (err) {
    process.stderr.write(`audit export: ${(err as Error).message}\n`)
    return 2
  }
  return 0
}

export default audit
