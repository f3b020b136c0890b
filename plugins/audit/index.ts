// audit: a hash-chained, Ed25519-signed log of every request decision.
// One entry per request (afterResponse), chained by SHA-256 over canonical JSON; checkpoints
// sign the chain head every N entries / T seconds and at shutdown, and the newest one's signed
// head is kept beside the log, in mesh storage and with a witness, so a cut log is caught.
// While the log cannot be written, new requests are refused (onFailure 'refuse'). See README.md.
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { canonicalSha256Async } from '../../core/canonical.ts'
import { answerTextChars } from '../../core/respond.ts'
import { checkAdmin, json, resolveAdminToken } from '../../core/admin.ts'
import { StorageUnavailableError } from '../../core/errors.ts'
import { definePlugin } from '../../core/plugin.ts'
import type { HealthCheck, Mesh, MeshContext, Plugin, PluginCommand } from '../../core/types.ts'
import type { AuditEntry } from './chain.ts'
import { buildEntry, scrub, secretsOf } from './entry.ts'
import { prepareEntry, scrubSliced } from './sliced.ts'
import { Slicer } from '../../core/slicer.ts'
import { exportLog } from './export.ts'
import { readHeads, storageHeadKey } from './head.ts'
import { withTimeout, type HeadTarget } from './publish.ts'
import { loadPublicKeys, loadSigner, parsePrivateKey, type Signer } from './signer.ts'
import type { AuditStore, LogSource } from './store.ts'
import { fsLogSource, fsStore, type FsyncPolicy } from './store-fs.ts'
import { redisLogSource, redisStore } from './store-redis.ts'
import { commandTarget, storageTarget, webhookTarget, type WitnessOptions } from './targets.ts'
import { formatVerifyResult, strictIssues, verifyLog, type HeadInput, type VerifyResult } from './verify.ts'
import { AuditWriter, type OnFailure } from './writer.ts'

declare module '../../core/types.ts' {
  interface MeshEvents {
    /** a request's entry is in the log: its sequence number there (the dashboard's request detail) */
    audit_entry: { id: string; seq: number }
  }
}

export type { AuditEntry, ChainHead, ChainRecord, CheckpointBody } from './chain.ts'
export { canonicalJson, sha256Hex, GENESIS } from './canonical.ts'
export { seal, sealEntry, parseLine, SIGNATURE_PREFIX } from './chain.ts'
export { buildEntry, scrub } from './entry.ts'
export { exportLog, CSV_COLUMNS, type ExportOptions } from './export.ts'
export {
  loadSigner,
  loadPublicKeys,
  makeSigner,
  parsePrivateKey,
  parsePublicKey,
  publicKeyInfo,
  verifySignature,
  type Signer,
  type PublicKeyInfo,
} from './signer.ts'
export { LogMissingError, type AuditStore, type LogLine, type LogSource } from './store.ts'
export {
  fsStore,
  fsLogSource,
  fsIo,
  listLogFiles,
  HEAD_FILE,
  type FsIo,
  type FsStoreOptions,
  type FsyncPolicy,
} from './store-fs.ts'
export { redisStore, redisLogSource, redisKeys, type RedisStoreOptions } from './store-redis.ts'
export { signHead, checkHeadSignature, readHeads, storageHeadKey, type SignedHead } from './head.ts'
export { HeadPublisher, type HeadTarget } from './publish.ts'
export { storageTarget, webhookTarget, commandTarget, type WitnessOptions } from './targets.ts'
export {
  verifyLog,
  formatVerifyResult,
  strictIssues,
  type VerifyResult,
  type VerifyProblem,
  type ProblemKind,
  type HeadInput,
} from './verify.ts'
export { AuditWriter, type WriterOptions, type WriterFailure, type OnFailure } from './writer.ts'

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
  /** and at most this many seconds after an entry was written unsigned (default 1; 0 turns the timer off) */
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
  /**
   * When the log cannot be written (full disk, I/O error, redis down): 'refuse' (default) answers
   * new requests with a 503 storage_unavailable until it can; 'serve' answers them unaudited.
   * Either way the entries of answered requests are held in memory and written when it recovers.
   */
  onFailure?: OnFailure
  /** keep each new signed head out of reach of whoever can cut the log: POST it to `url`, or pipe it to `command` */
  witness?: WitnessOptions
}

function fail(field: string, expected: string, got: unknown): never {
  throw new Error(
    `audit: ${field} must be ${expected}, got ${typeof got === 'string' ? JSON.stringify(got) : typeof got === 'function' ? 'a function' : (JSON.stringify(got) ?? String(got))}`,
  )
}

function validate(o: AuditOptions): void {
  if (o === null || typeof o !== 'object') fail('options', 'an object', o)
  const known = new Set([
    'store',
    'dir',
    'redis',
    'privateKey',
    'checkpointEvery',
    'checkpointSeconds',
    'rotateBytes',
    'rotateDaily',
    'fsync',
    'queueMax',
    'includeContent',
    'redact',
    'onFailure',
    'witness',
  ])
  for (const k of Object.keys(o))
    if (!known.has(k)) throw new Error(`audit: unknown option "${k}" (known: ${[...known].join(', ')})`)
  if (o.store !== undefined && o.store !== 'fs' && o.store !== 'redis') fail('store', '"fs" or "redis"', o.store)
  if (o.dir !== undefined && (typeof o.dir !== 'string' || !o.dir)) fail('dir', 'a non-empty path', o.dir)
  if (o.redis !== undefined) {
    if (!o.redis || typeof o.redis !== 'object') fail('redis', 'an object { url?, prefix? }', o.redis)
    if (o.redis.url !== undefined && (typeof o.redis.url !== 'string' || !/^rediss?:\/\//.test(o.redis.url)))
      fail('redis.url', 'a redis:// or rediss:// URL', o.redis.url)
    if (o.redis.prefix !== undefined && typeof o.redis.prefix !== 'string')
      fail('redis.prefix', 'a string', o.redis.prefix)
  }
  if (o.privateKey !== undefined && (typeof o.privateKey !== 'string' || !o.privateKey.trim()))
    fail('privateKey', 'a PEM or base64 string', typeof o.privateKey === 'string' ? '' : o.privateKey)
  const int = (field: keyof AuditOptions, min: number) => {
    const v = o[field]
    if (v !== undefined && !(Number.isSafeInteger(v) && (v as number) >= min))
      fail(field, min > 0 ? `an integer >= ${min}` : 'a non-negative integer', v)
  }
  int('checkpointEvery', 1)
  int('rotateBytes', 0)
  int('queueMax', 1)
  if (
    o.checkpointSeconds !== undefined &&
    !(typeof o.checkpointSeconds === 'number' && Number.isFinite(o.checkpointSeconds) && o.checkpointSeconds >= 0)
  )
    fail('checkpointSeconds', 'a non-negative number', o.checkpointSeconds)
  if (o.rotateDaily !== undefined && typeof o.rotateDaily !== 'boolean') fail('rotateDaily', 'a boolean', o.rotateDaily)
  if (o.includeContent !== undefined && typeof o.includeContent !== 'boolean')
    fail('includeContent', 'a boolean', o.includeContent)
  if (o.fsync !== undefined && !['always', 'checkpoint', 'never'].includes(o.fsync))
    fail('fsync', '"always", "checkpoint" or "never"', o.fsync)
  if (o.redact !== undefined && typeof o.redact !== 'function') fail('redact', 'a function (entry) => entry', o.redact)
  if (o.onFailure !== undefined && o.onFailure !== 'refuse' && o.onFailure !== 'serve')
    fail('onFailure', '"refuse" or "serve"', o.onFailure)
  if (o.witness !== undefined) validateWitness(o.witness)
  // fail at config time, not at the first request; the message never contains the key
  if (o.privateKey !== undefined) parsePrivateKey(o.privateKey)
}

function validateWitness(w: WitnessOptions): void {
  if (!w || typeof w !== 'object' || Array.isArray(w)) fail('witness', 'an object { url?, command? }', w)
  for (const k of Object.keys(w))
    if (k !== 'url' && k !== 'command') throw new Error(`audit: unknown option "witness.${k}" (known: url, command)`)
  if (w.url === undefined && w.command === undefined) throw new Error('audit: witness needs a url or a command')
  if (w.url !== undefined) {
    let ok = false
    try {
      ok = typeof w.url === 'string' && /^https?:$/.test(new URL(w.url).protocol)
    } catch {}
    if (!ok) fail('witness.url', 'an http:// or https:// URL', w.url)
  }
  if (w.command !== undefined && (typeof w.command !== 'string' || !w.command.trim()))
    fail('witness.command', 'a non-empty shell command', w.command)
}

/** witness options for `agentmesh config`: a URL's path and query, and a command, may hold tokens */
function shownWitness(w: WitnessOptions): Record<string, string> {
  const out: Record<string, string> = {}
  if (w.url) out.url = new URL(w.url).origin + '/***'
  if (w.command) out.command = '***'
  return out
}

/** One writer per log in a process, shared by plugin instances that point at it (a config
 * reload creates a new instance before the old one is closed). */
interface SharedWriter {
  writer: AuditWriter
  refs: number
  ready: Promise<unknown>
  /** meshes using it, newest last: its storage holds the signed head */
  meshes: Mesh[]
}
const writers = new Map<string, SharedWriter>()

function redisTarget(options: AuditOptions, mesh: Mesh) {
  const storage = mesh.config?.storage
  const url = options.redis?.url ?? (storage?.driver === 'redis' ? storage.url : undefined)
  if (!url) throw new Error('audit: store "redis" needs redis.url (or config storage.driver "redis" with a url)')
  return { url, prefix: options.redis?.prefix ?? storage?.prefix ?? 'agentmesh:' }
}

function auditDir(options: AuditOptions, mesh: Pick<Mesh, 'dataDir'>): string {
  return options.dir ? resolve(options.dir) : join(mesh.dataDir, 'audit')
}

function openStore(options: AuditOptions, mesh: Mesh): { dir: string; signer: Signer; store: AuditStore } {
  const dir = auditDir(options, mesh)
  const envKey = process.env.AGENTMESH_AUDIT_PRIVATE_KEY?.trim() || undefined
  // a bad env key fails the start with a message naming the variable (never the key)
  if (!options.privateKey && envKey) parsePrivateKey(envKey, 'AGENTMESH_AUDIT_PRIVATE_KEY')
  const signer = loadSigner(dir, options.privateKey ?? envKey, mesh.log)
  const store =
    options.store === 'redis'
      ? redisStore(redisTarget(options, mesh))
      : fsStore({
          dir,
          rotateBytes: options.rotateBytes,
          rotateDaily: options.rotateDaily,
          fsync: options.fsync,
          log: mesh.log,
        })
  return { dir, signer, store }
}

/** The writer of this log in this process: created and opened by the first mesh, shared by later ones. */
async function shareWriter(
  options: AuditOptions,
  mesh: Mesh,
  dir: string,
  signer: Signer,
  store: AuditStore,
): Promise<SharedWriter> {
  let shared = writers.get(store.id)
  if (!shared) {
    const meshes: Mesh[] = []
    const targets: HeadTarget[] = [storageTarget(() => meshes.at(-1)?.storage, storageHeadKey(store.logId))]
    if (options.witness?.url) targets.push(webhookTarget(options.witness.url))
    if (options.witness?.command) targets.push(commandTarget(options.witness.command))
    const writer = new AuditWriter(store, signer, {
      checkpointEvery: options.checkpointEvery,
      checkpointSeconds: options.checkpointSeconds,
      queueMax: options.queueMax,
      onFailure: options.onFailure,
      headTargets: targets,
      publicKeys: loadPublicKeys(undefined, dir),
      log: mesh.log,
    })
    shared = { writer, refs: 0, ready: Promise.resolve(), meshes }
    meshes.push(mesh)
    shared.ready = writer.open()
    writers.set(store.id, shared)
    try {
      await shared.ready
    } catch (err) {
      writers.delete(store.id)
      throw err
    }
  } else {
    await shared.ready
    shared.meshes.push(mesh)
  }
  shared.refs++
  return shared
}

/** what /agentmesh/health and /agentmesh/ready show for the log (no secrets: anyone on the port sees it) */
function healthOf(writer: AuditWriter, onFailure: OnFailure): HealthCheck {
  const f = writer.failure
  if (!f) return { ok: true }
  const dropped = f.dropped ? `, ${f.dropped} dropped` : ''
  const policy =
    onFailure === 'refuse'
      ? `new requests are refused (${f.refused} so far)`
      : 'requests are answered unaudited (onFailure serve)'
  return {
    ok: false,
    since: f.since,
    message: `audit log cannot be written: ${f.reason}; ${f.held} entries held in memory${dropped}; ${policy}`,
  }
}

function refuseWhileFailing(writer: AuditWriter | undefined): void {
  const reason = writer?.failureReason
  if (reason) throw new StorageUnavailableError(`audit log cannot be written: ${reason}`)
}

/** a request that was answered (and may have cost something): its entry is never dropped while the log fails */
function wasAnswered(ctx: MeshContext): boolean {
  return (
    ctx.answer !== undefined ||
    ctx.upstream !== undefined ||
    !!ctx.aborted ||
    (ctx.status !== undefined && ctx.status < 400)
  )
}

/** The log a plugin with these options reads: for commands and tests. */
export function auditSource(
  options: AuditOptions,
  mesh: Pick<Mesh, 'dataDir' | 'config'>,
  dirOverride?: string,
): LogSource {
  if (dirOverride) return fsLogSource(dirOverride)
  if (options.store === 'redis') return redisLogSource(redisTarget(options, mesh as Mesh))
  return fsLogSource(auditDir(options, mesh))
}

/** Verify an audit directory with the public keys found in it (or the given key files). */
export async function verifyAuditDir(dir: string, pubkeyFiles?: string[]): Promise<VerifyResult> {
  return verifyLog(fsLogSource(dir), { publicKeys: loadPublicKeys(pubkeyFiles, dir) })
}

function listOption(v: unknown): string[] | undefined {
  if (v === undefined || v === null || v === true || v === '') return undefined
  const arr = Array.isArray(v) ? v : [v]
  return arr
    .flatMap((x) => String(x).split(','))
    .map((s) => s.trim())
    .filter(Boolean)
}

function parseDate(v: unknown, flag: string): Date | undefined {
  if (v === undefined || v === null || v === '') return undefined
  const d = new Date(String(v))
  if (Number.isNaN(d.getTime()))
    throw new Error(
      `audit export: ${flag} must be a date (e.g. 2025-01-31 or 2025-01-31T12:00:00Z), got ${JSON.stringify(v)}`,
    )
  return d
}

export function audit(options: AuditOptions = {}): Plugin {
  validate(options)
  // per mesh: one plugin object can serve two meshes at once (a dev reload re-using the config)
  const active = new WeakMap<Mesh, AuditWriter>()

  const onFailure = options.onFailure ?? 'refuse'
  const shownOptions: Record<string, unknown> = { ...options }
  if (options.privateKey) shownOptions.privateKey = '***'
  if (options.redact) shownOptions.redact = '[function]'
  if (options.witness) shownOptions.witness = shownWitness(options.witness)

  return definePlugin({
    name: 'audit',
    // after quota, cost and cache plugins have settled what the entry records
    enforce: 'post',
    options: shownOptions,
    async setup(mesh: Mesh) {
      if (mesh.mode !== 'serve') return
      const { dir, signer, store } = openStore(options, mesh)
      const shared = await shareWriter(options, mesh, dir, signer, store)
      active.set(mesh, shared.writer)
      mesh.addRoute('GET', '/agentmesh/audit/public-key', () =>
        Response.json({
          algorithm: 'Ed25519',
          keyId: signer.keyId,
          pem: signer.pem,
          raw: signer.raw,
          format: 'agentmesh-audit/v1',
        }),
      )
      mesh.addHealthCheck('audit', () => healthOf(shared.writer, onFailure))
      mesh.addRoute('POST', '/agentmesh/admin/audit/verify', verifyRoute(options, mesh, dir))
      mesh.onClose(async () => {
        active.delete(mesh)
        // in place: the storage target reads this array
        const leave = () => shared.meshes.splice(shared.meshes.indexOf(mesh) >>> 0, 1)
        if (--shared.refs > 0) return void leave()
        writers.delete(store.id)
        // flush the queue, sign a final checkpoint, publish its head (through this mesh's storage)
        await shared.writer.close()
        leave()
      })
    },
    hooks: {
      // 'serve' answers while the log cannot be written: no check on the request path at all
      ...(onFailure === 'refuse'
        ? { beforeRequest: (ctx: MeshContext) => refuseWhileFailing(active.get(ctx.mesh)) }
        : {}),
      afterResponse: (ctx: MeshContext) => recordEntry(ctx, active.get(ctx.mesh), options),
    },
    commands: auditCommands(options),
  })
}

type Print = (line: string) => void

/**
 * POST /agentmesh/admin/audit/verify (admin token): the same check as `agentmesh audit verify`
 * (every hash, link and checkpoint signature, compared with the signed head in storage), run in
 * the proxy for the dashboard's "verify now". Calls that arrive while one runs share its result:
 * a verify reads the whole log, and a button pressed twice must not read it twice.
 */
function verifyRoute(options: AuditOptions, mesh: Mesh, dir: string): (request: Request) => Promise<Response> {
  let running: Promise<Response> | undefined
  return async (request) => {
    let token: string | undefined
    try {
      token = resolveAdminToken(undefined, 'audit')
    } catch (err) {
      return json(403, { error: { type: 'admin_disabled', message: (err as Error).message } })
    }
    const denied = checkAdmin(request, token)
    if (denied) return denied
    running ??= verifyNow(options, mesh, dir).finally(() => {
      running = undefined
    })
    return (await running).clone()
  }
}

async function verifyNow(options: AuditOptions, mesh: Mesh, dir: string): Promise<Response> {
  const notes: string[] = []
  const started = performance.now()
  try {
    const source = auditSource(options, mesh)
    const keys = loadPublicKeys(undefined, dir)
    if (keys.length === 0) return json(500, { error: { type: 'verify_error', message: `no public key in ${dir}` } })
    const heads = await headsElsewhere(mesh, source, undefined, (line) => notes.push(line))
    const r = await verifyLog(source, { publicKeys: keys, heads })
    return json(200, {
      ok: r.ok,
      entries: r.entries,
      checkpoints: r.checkpoints,
      unsignedTail: r.unsignedTail,
      lastCheckpoint: r.lastCheckpoint ?? null,
      heads: r.heads,
      tornTail: r.tornTail,
      problem: r.problem ?? null,
      lines: formatVerifyResult(r),
      notes,
      checkedAt: new Date().toISOString(),
      ms: Math.round(performance.now() - started),
    })
  } catch (err) {
    return json(500, { error: { type: 'verify_error', message: (err as Error).message } })
  }
}

/** afterResponse: the request's entry, scrubbed, into the writer's queue. */
function recordEntry(ctx: MeshContext, w: AuditWriter | undefined, options: AuditOptions): void | Promise<void> {
  if (!w) return
  if (ctx.error?.type === 'storage_unavailable' && ctx.error.plugin === 'audit') {
    // refused because its entry could not be written: counted in the outage note instead
    w.noteRefused()
    return
  }
  // a prompt or an answer of megabytes is hashed a slice per turn of the event loop, not in one
  // go (~100 ms for a 10 MB prompt, 30-56 ms for a 5 MB answer)
  const size = ctx.request?.rawBody?.length ?? 0
  // what the answer's hash reads: a file written by a tool call is megabytes of arguments and no text
  const answerSize = ctx.answer ? answerTextChars(ctx.answer) : 0
  if (size >= LARGE_HASH_CHARS || answerSize >= LARGE_HASH_CHARS) return recordLarge(ctx, w, options, size, answerSize)
  return appendEntry(ctx, w, options, buildEntry(ctx, options.includeContent ?? false))
}

const LARGE_HASH_CHARS = 1024 * 1024

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

async function recordLarge(ctx: MeshContext, w: AuditWriter, o: AuditOptions, size: number, answerSize: number) {
  // a streamed answer's text is a rope of its deltas until read: made one string (5-10 MB of fresh
  // memory, ~3 ms a MB here) in a turn of its own, not in the turn of the hooks before this one
  // (two turns: after an I/O callback the first immediate runs before other sockets are read)
  if (answerSize >= LARGE_HASH_CHARS) {
    await nextTurn()
    await nextTurn()
    ctx.answer!.text.charCodeAt(0)
    await nextTurn()
  }
  const promptHash = await canonicalSha256Async(ctx.prompt ?? null, size)
  const answerHash =
    ctx.answer && (await canonicalSha256Async({ text: ctx.answer.text, toolCalls: ctx.answer.toolCalls }, answerSize))
  const built = buildEntry(ctx, o.includeContent ?? false, { promptHash, answerHash })
  // with includeContent the entry holds the megabytes itself: its text is made in slices too
  if (built.prompt === undefined && built.answer === undefined) return appendEntry(ctx, w, o, built)
  return appendLarge(ctx, w, o, built)
}

function appendEntry(ctx: MeshContext, w: AuditWriter, options: AuditOptions, built: AuditEntry): void | Promise<void> {
  const entry = scrub(redacted(ctx, options, built), secretsOf(ctx))
  asRequest(entry)
  return w.append(entry, wasAnswered(ctx), ctx.mesh.emit)
}

/**
 * appendEntry for an entry holding a prompt or an answer of megabytes: scrubbed and printed in
 * slices of the event loop, then queued with its text (the writer seals it in slices too). The
 * same line as appendEntry's; queued when it is ready, as recordLarge's hashes already made it.
 */
async function appendLarge(ctx: MeshContext, w: AuditWriter, options: AuditOptions, built: AuditEntry) {
  const slicer = new Slicer(LARGE_SLICE_MS)
  const entry = await scrubSliced(redacted(ctx, options, built), secretsOf(ctx), slicer)
  asRequest(entry)
  const prepared = await prepareEntry(entry, slicer)
  return w.append(entry, wasAnswered(ctx), ctx.mesh.emit, prepared)
}

const LARGE_SLICE_MS = 10

/** the entry as the redact hook leaves it (on a copy), or without content when the hook throws */
function redacted(ctx: MeshContext, options: AuditOptions, built: AuditEntry): AuditEntry {
  let entry = built
  if (options.redact) {
    try {
      entry = options.redact(entry) ?? entry
      // the hook's own object may be shared or frozen: the fields set below go on a copy
      if (entry !== built) entry = { ...entry }
    } catch (err) {
      // keep the record, lose the content: an audit gap is worse than a missing prompt
      ctx.mesh.log.error(`audit: redact hook threw, writing the entry without content: ${(err as Error).message}`, {
        id: ctx.id,
      })
      delete entry.prompt
      delete entry.answer
    }
  }
  return entry
}

function asRequest(entry: AuditEntry): void {
  entry.v = 1
  entry.kind = 'request'
  // chain fields are the writer's (cleared, not deleted: delete turns the entry into a slow dictionary object)
  for (const k of ['seq', 'prev', 'hash', 'sig']) if (entry[k] !== undefined) entry[k] = undefined
}

/**
 * `audit verify` and `audit export`: one command word with an action (cac matches a command by
 * its first word), as the keys plugin does.
 */
function auditCommands(options: AuditOptions): PluginCommand[] {
  return [
    {
      name: 'audit <action>',
      description:
        'audit verify: check every hash, link and checkpoint signature of the audit log; audit export: print entries as JSONL or CSV',
      options: [
        {
          flags: '--dir <dir>',
          description: 'audit directory (default: <data-dir>/audit, or the redis log when store is redis)',
        },
        {
          flags: '--pubkey <file>',
          description:
            'verify: public key file (PEM or base64), comma-separated for several (default: public-key*.pem in the audit directory)',
        },
        {
          flags: '--strict',
          description:
            'verify: also fail on entries no writer signed (an unsigned tail, entries sealed as recovered after a crash), an incomplete last line, or no signed head to compare with',
        },
        {
          flags: '--head <file>',
          description:
            'verify: a signed head kept elsewhere (what a witness received: one JSON head or JSON lines), comma-separated for several',
        },
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
        process.stderr.write(
          `audit: unknown action ${JSON.stringify(action ?? '')}; use audit verify or audit export\n`,
        )
        return 2
      },
    },
  ]
}

/** Signed heads kept away from the log: the mesh storage's copy and the files given with --head. */
async function headsElsewhere(
  mesh: Mesh,
  source: LogSource,
  files: string[] | undefined,
  print: Print,
): Promise<HeadInput[]> {
  const heads: HeadInput[] = []
  if (source.logId && mesh.storage) {
    const key = storageHeadKey(source.logId)
    try {
      heads.push({
        from: `storage key ${key}`,
        value: (await withTimeout(mesh.storage.getItem(key), 5000, 'storage')) as object | null,
      })
    } catch (err) {
      // storage down must not hide a broken log: verify what can be verified, and say what was not read
      print(`note: could not read the signed head from storage key ${key}: ${(err as Error).message}`)
    }
  }
  for (const file of files ?? []) heads.push({ from: resolve(file), value: readFileSync(file, 'utf8') })
  return heads
}

/** `audit verify`: prints OK / FAIL lines; exit code 0 ok, 1 tampered, cut off or (--strict) not fully signed, 2 cannot verify. */
async function runVerify(options: AuditOptions, mesh: Mesh, o: Record<string, any>, print: Print): Promise<number> {
  const dir = o.dir ? resolve(String(o.dir)) : auditDir(options, mesh)
  const source = auditSource(options, mesh, o.dir ? dir : undefined)
  let keys: ReturnType<typeof loadPublicKeys>
  let heads: HeadInput[]
  try {
    keys = loadPublicKeys(listOption(o.pubkey), dir)
    heads = await headsElsewhere(mesh, source, listOption(o.head), print)
  } catch (err) {
    print(`ERROR ${(err as Error).message}`)
    return 2
  }
  if (keys.length === 0) return verifyWithoutKeys(source, heads, dir, print)
  let result: VerifyResult
  try {
    result = await verifyLog(source, { publicKeys: keys, deep: !!o.deep, heads })
  } catch (err) {
    print(`ERROR ${(err as Error).message}`)
    return 2
  }
  for (const line of formatVerifyResult(result)) print(line)
  if (!result.ok) return 1
  return o.strict && strictIssues(result).length ? 1 : 0
}

/** No public key: usually a wrong --dir; but when the whole directory is gone and a head says a log existed, that is the finding. */
async function verifyWithoutKeys(source: LogSource, heads: HeadInput[], dir: string, print: Print): Promise<number> {
  const newest = heads.flatMap((h) => readHeads(h.from, h.value).found).sort((a, b) => b.head.seq - a.head.seq)[0]
  if (newest && source.exists && !(await source.exists())) {
    print(
      `FAIL truncated at ${dir}: the log is gone (directory not found), but the signed head in ${newest.from} (seq ${newest.head.seq}, ${newest.head.ts}) shows ${newest.head.seq} records were written: the log was deleted (its signature was not checked: the public keys went with the directory; pass --pubkey)`,
    )
    return 1
  }
  print(`ERROR no public key: none in ${dir}; pass --pubkey FILE (GET /agentmesh/audit/public-key serves it)`)
  return 2
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
      {
        since: parseDate(o.since, '--since'),
        until: parseDate(o.until, '--until'),
        team: o.team === undefined ? undefined : String(o.team),
        format,
      },
      print,
    )
    if (skipped)
      process.stderr.write(`audit export: skipped ${skipped} lines that are not valid records (run audit verify)\n`)
  } catch (err) {
    process.stderr.write(`audit export: ${(err as Error).message}\n`)
    return 2
  }
  return 0
}

export default audit
