// Append-only JSONL files: audit-<index>-<yyyymmdd>.jsonl, rotated by size or UTC day. The chain
// continues across files; the index orders them. One writer per directory (writer.lock).
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync, unlinkSync } from 'node:fs'
import { open, readdir, readFile, stat, truncate, type FileHandle } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { GENESIS } from './canonical.ts'
import { parseLine, type ChainHead } from './chain.ts'
import type { AppendResult, AuditStore, LogLine, LogSource } from './store.ts'

export type FsyncPolicy = 'always' | 'checkpoint' | 'never'

export interface FsStoreOptions {
  dir: string
  /** start a new file when the current one would grow past this many bytes (0: never) */
  rotateBytes?: number
  /** start a new file when the UTC day changes */
  rotateDaily?: boolean
  /**
   * always: fsync after every written batch; checkpoint: after batches that hold a checkpoint;
   * never: leave it to the OS. Writes do not wait for the fsync (group commit); close does.
   */
  fsync?: FsyncPolicy
  log?: { warn: (msg: string, data?: Record<string, unknown>) => void }
  /** clock, for tests of daily rotation */
  now?: () => Date
}

const FILE_RE = /^audit-(\d+)-(\d{8})\.jsonl$/
const LOCK_FILE = 'writer.lock'

export interface LogFile {
  name: string
  path: string
  index: number
  day: string
}

export function listLogFiles(dir: string): LogFile[] {
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  const files: LogFile[] = []
  for (const name of names) {
    const m = FILE_RE.exec(name)
    if (m) files.push({ name, path: join(dir, name), index: Number(m[1]), day: m[2]! })
  }
  return files.sort((a, b) => a.index - b.index)
}

function utcDay(d: Date): string {
  return d.toISOString().slice(0, 10).replaceAll('-', '')
}

function fileName(index: number, day: string): string {
  return `audit-${String(index).padStart(6, '0')}-${day}.jsonl`
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Take `<dir>/writer.lock`; a lock left by a dead process (SIGKILL) is taken over. */
function acquireLock(dir: string): void {
  const file = join(dir, LOCK_FILE)
  const me = `${process.pid} ${hostname()}`
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(file, me, { flag: 'wx', mode: 0o600 })
      return
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    let holder = ''
    try {
      holder = readFileSync(file, 'utf8').trim()
    } catch {}
    const [pidText, host] = holder.split(' ')
    const pid = Number(pidText)
    if (host === hostname() && Number.isInteger(pid) && pid !== process.pid && pidAlive(pid)) {
      throw new Error(`audit: ${dir} is being written by process ${pid}; give each proxy instance its own data dir, or use the redis store to share one log`)
    }
    try {
      unlinkSync(file)
    } catch {}
  }
  throw new Error(`audit: cannot take the writer lock ${file}`)
}

function releaseLock(dir: string): void {
  const file = join(dir, LOCK_FILE)
  try {
    if (readFileSync(file, 'utf8').trim().startsWith(`${process.pid} `)) unlinkSync(file)
  } catch {}
}

/**
 * Read backwards from the end of a file: the last complete record line and the length
 * of the bytes after the last newline (a torn write). Stops once `want` lines parse as records.
 */
async function tailOf(path: string): Promise<{ size: number; tornBytes: number; torn: Buffer; lastRecordLine?: Buffer }> {
  const fh = await open(path, 'r')
  try {
    const { size } = await fh.stat()
    const CHUNK = 256 * 1024
    let pos = size
    let tail = Buffer.alloc(0)
    let tornBytes = -1
    let searchFrom = -1
    for (;;) {
      if (pos > 0) {
        const len = Math.min(CHUNK, pos)
        pos -= len
        const buf = Buffer.alloc(len)
        await fh.read(buf, 0, len, pos)
        tail = Buffer.concat([buf, tail])
        if (searchFrom >= 0) searchFrom += len
      }
      if (tornBytes < 0) {
        const nl = tail.lastIndexOf(10)
        if (nl < 0 && pos > 0) continue
        tornBytes = tail.length - (nl + 1)
        searchFrom = nl // index of the newline that ends the last complete line (-1: none)
      }
      // walk complete lines backwards inside what we have
      while (searchFrom > 0) {
        const start = tail.lastIndexOf(10, searchFrom - 1)
        if (start < 0 && pos > 0) break // need more bytes for this line
        const line = tail.subarray(start + 1, searchFrom)
        if (parseLine(line)) return { size, tornBytes, torn: Buffer.from(tail.subarray(tail.length - tornBytes)), lastRecordLine: Buffer.from(line) }
        searchFrom = start
      }
      if (pos === 0 && (searchFrom <= 0)) {
        return { size, tornBytes, torn: Buffer.from(tail.subarray(tail.length - tornBytes)) }
      }
    }
  } finally {
    await fh.close()
  }
}

function headFromLine(line: Buffer): ChainHead {
  const p = parseLine(line)!
  return { seq: p.seq, hash: p.hash, kind: p.kind }
}

export function fsStore(options: FsStoreOptions): AuditStore {
  const dir = resolve(options.dir)
  const rotateBytes = options.rotateBytes ?? 64 * 1024 * 1024
  const rotateDaily = options.rotateDaily ?? true
  const fsync = options.fsync ?? 'always'
  const now = options.now ?? (() => new Date())
  let fh: FileHandle | undefined
  let current: { index: number; day: string; size: number } | undefined
  let locked = false

  async function loadHead(): Promise<ChainHead> {
    const files = listLogFiles(dir)
    current = undefined
    for (let i = files.length - 1; i >= 0; i--) {
      const f = files[i]!
      const t = await tailOf(f.path)
      if (i === files.length - 1) {
        current = { index: f.index, day: f.day, size: t.size }
        if (t.tornBytes > 0) {
          const whole = parseLine(t.torn)
          if (whole && whole.computed === whole.hash) {
            // a complete record that lost only its newline
            const h = await open(f.path, 'a')
            await h.write('\n')
            await h.close()
            current.size += 1
            return headFromLine(t.torn)
          }
          await truncate(f.path, t.size - t.tornBytes)
          current.size = t.size - t.tornBytes
          options.log?.warn(`audit: dropped an incomplete last line (${t.tornBytes} bytes) left by an interrupted write in ${f.name}`, { file: f.path, bytes: t.tornBytes })
        }
      }
      if (t.lastRecordLine) return headFromLine(t.lastRecordLine)
    }
    return { seq: 0, hash: GENESIS }
  }

  async function openFile(index: number, day: string): Promise<void> {
    const path = join(dir, fileName(index, day))
    fh = await open(path, 'a', 0o600)
    current = { index, day, size: (await fh.stat()).size }
    if (fsync !== 'never') {
      // make the new directory entry durable too
      const d = openSync(dir, 'r')
      try {
        fsyncSync(d)
      } finally {
        closeSync(d)
      }
    }
  }

  // Group fsync: a write never waits for the previous batch's fsync (the page cache already
  // survives a killed process; fsync is for power loss), and batches written meanwhile share the
  // next one. So a slow disk does not hold entries back in the queue.
  let syncing: Promise<void> | undefined
  let syncAgain = false
  function requestSync(h: FileHandle): void {
    if (syncing) {
      syncAgain = true
      return
    }
    syncing = h
      .datasync()
      .catch((err: Error) => options.log?.warn(`audit: fsync failed: ${err.message}`))
      .finally(() => {
        syncing = undefined
        if (syncAgain && fh === h) {
          syncAgain = false
          requestSync(h)
        }
      })
  }

  async function closeFile(): Promise<void> {
    if (!fh) return
    const h = fh
    fh = undefined
    try {
      while (syncing) await syncing
      syncAgain = false
      if (fsync !== 'never') await h.datasync()
    } finally {
      await h.close()
    }
  }

  return {
    name: 'fs',
    id: `fs:${dir}`,
    async open() {
      mkdirSync(dir, { recursive: true, mode: 0o700 })
      acquireLock(dir)
      locked = true
      return loadHead()
    },
    async append(lines, _expected, _next, info): Promise<AppendResult> {
      const data = lines.join('\n') + '\n'
      const bytes = Buffer.byteLength(data)
      const today = utcDay(now())
      if (!current) await openFile(1, today)
      else if (
        (rotateDaily && current.day !== today) ||
        (rotateBytes > 0 && current.size > 0 && current.size + bytes > rotateBytes)
      ) {
        await closeFile()
        await openFile(current.index + 1, today)
      } else if (!fh) await openFile(current.index, current.day)
      await fh!.appendFile(data)
      current!.size += bytes
      if (fsync === 'always' || (fsync === 'checkpoint' && info.checkpoint)) requestSync(fh!)
      return { ok: true }
    },
    async recover() {
      await closeFile().catch(() => {})
      fh = undefined
      return loadHead()
    },
    async close() {
      await closeFile()
      if (locked) releaseLock(dir)
      locked = false
    },
  }
}

/** Read a log directory in order, file by file. */
export function fsLogSource(dir: string): LogSource {
  return {
    describe: resolve(dir),
    async *chunks() {
      let st
      try {
        st = await stat(dir)
      } catch {
        throw new Error(`no audit log at ${resolve(dir)} (directory not found)`)
      }
      if (!st.isDirectory()) throw new Error(`${resolve(dir)} is not a directory`)
      // list once up front: files a running writer adds meanwhile are left for the next run
      const names = new Set(await readdir(dir))
      const files = listLogFiles(dir).filter((f) => names.has(f.name))
      for (let i = 0; i < files.length; i++) {
        const f = files[i]!
        // bytes, not text: the verifier hashes them as they are, without a decode and re-encode
        const buf = await readFile(f.path)
        const lastFile = i === files.length - 1
        const lines: LogLine[] = []
        let start = 0
        while (start < buf.length) {
          const nl = buf.indexOf(10, start)
          const end = nl < 0 ? buf.length : nl
          lines.push({ data: buf.subarray(start, end), file: f.name, line: lines.length + 1, final: false, terminated: nl >= 0 })
          start = end + 1
        }
        if (lastFile && lines.length) lines[lines.length - 1]!.final = true
        yield lines
      }
    },
  }
}
