// fs storage: unstorage's fs-lite layout (key a:b:c is the file <base>/a/b/c), but nobody else on
// the machine can read it (cache entries hold prompts and answers in the clear, the keys store
// their hashes): directories are created 0700 and files 0600. A full or read-only disk turns into
// StorageUnavailableError (a 503, not a 500), reported once, and health until a write works again.
import { chmodSync, mkdirSync, statSync, type Dirent } from 'node:fs'
import { mkdir, open, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { defineDriver, type Driver } from 'unstorage'
import { Availability, reasonOf } from './storage-health.ts'
import type { Logger } from './types.ts'

export const DIR_MODE = 0o700
export const FILE_MODE = 0o600
const DIR_OPTIONS = { recursive: true, mode: DIR_MODE } as const
const FILE_OPTIONS = { mode: FILE_MODE } as const
// the disk or the process's rights, not the key: the storage is unusable until someone acts
const UNAVAILABLE_CODES = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EIO', 'EACCES', 'EPERM', 'EMFILE', 'ENFILE'])
/** written while the storage is down, to notice that it works again without waiting for traffic */
const PROBE_FILE = '.agentmesh-probe'
const PROBE_FIRST_MS = 1000
const PROBE_MAX_MS = 30_000
const PATH_TRAVERSAL = /\.\.:|\.\.$/
// a string value longer than this (a cached answer of megabytes) is encoded and written a piece at
// a time: writeFile encodes it whole first, one block of the event loop of tens of ms at 5 MB
const WRITE_PIECE_CHARS = 1024 * 1024

const codeOf = (err: unknown) => (err as NodeJS.ErrnoException | null)?.code
// a key nobody stored (or a directory of keys) reads as null, as with fs-lite
const isMissing = (err: unknown) => codeOf(err) === 'ENOENT' || codeOf(err) === 'EISDIR'

/**
 * Create `dir` 0700 (parents too), or take group and other rights away from an existing one this
 * process owns (data dirs of older versions were 0755). Returns the mode it had when it was changed.
 */
export function secureDir(dir: string, create: boolean): number | undefined {
  if (create) mkdirSync(dir, DIR_OPTIONS)
  let st: ReturnType<typeof statSync>
  try {
    st = statSync(dir)
  } catch (err) {
    if (codeOf(err) === 'ENOENT') return undefined
    throw err
  }
  if (!st.isDirectory() || (st.mode & 0o077) === 0 || st.uid !== process.getuid?.()) return undefined
  chmodSync(dir, DIR_MODE)
  return st.mode & 0o777
}

/** writeFile for a long string: the same bytes and mode, encoded a piece at a time between writes */
export async function writePieces(file: string, data: string, options: { mode: number }): Promise<void> {
  const fh = await open(file, 'w', options.mode)
  try {
    for (let at = 0; at < data.length; ) {
      let end = Math.min(data.length, at + WRITE_PIECE_CHARS)
      // never between the two halves of a surrogate pair: each half alone would be written as U+FFFD
      const last = data.charCodeAt(end - 1)
      if (end < data.length && last >= 0xd800 && last <= 0xdbff) end++
      const bytes = Buffer.from(data.slice(at, end), 'utf8')
      for (let off = 0; off < bytes.length; ) off += (await fh.write(bytes, off, bytes.length - off)).bytesWritten
      at = end
    }
  } finally {
    await fh.close()
  }
}

export interface FsDriverOptions {
  base: string
  /** outage state for health; one is made (without a log) when absent */
  availability?: Availability
  log?: Logger
}

// one closure over 80 lines, as unstorage's own drivers are: the methods share the base path and
// the outage probe; each method itself is short
export const fsDriver = defineDriver((opts: FsDriverOptions): Driver => {
  const base = resolve(opts.base)
  const availability =
    opts.availability ?? new Availability(`fs ${base}`, opts.log, 'cache, key and grant writes fail until it is fixed')
  const path = (key: string) => {
    if (PATH_TRAVERSAL.test(key))
      throw new Error(
        `[unstorage] [agentmesh-fs] Invalid key: ${JSON.stringify(key)}. It should not contain .. segments`,
      )
    return join(base, key.replace(/:/g, '/'))
  }

  let probeTimer: NodeJS.Timeout | undefined
  let probeDelay = PROBE_FIRST_MS
  const probe = () => {
    probeTimer = undefined
    probeDelay = Math.min(probeDelay * 2, PROBE_MAX_MS)
    const file = join(base, PROBE_FILE)
    // a failure goes through failure() again, which schedules the next probe, later
    write(file, '')
      .then(() => {
        probeDelay = PROBE_FIRST_MS
        return unlink(file)
      })
      .catch(() => {})
  }

  function failure(err: unknown): unknown {
    const code = codeOf(err)
    if (!code || !UNAVAILABLE_CODES.has(code)) return err
    availability.markDown(reasonOf(err))
    probeTimer ??= setTimeout(probe, probeDelay).unref()
    return availability.error(err)
  }

  async function write(file: string, data: string | Uint8Array): Promise<void> {
    const put = (f: string) =>
      typeof data === 'string' && data.length > WRITE_PIECE_CHARS
        ? writePieces(f, data, FILE_OPTIONS)
        : writeFile(f, data, FILE_OPTIONS)
    try {
      try {
        await put(file)
      } catch (err) {
        if (codeOf(err) !== 'ENOENT') throw err
        // the first item of a directory: create it (and its parents) 0700, then write again
        await mkdir(dirname(file), DIR_OPTIONS)
        await put(file)
      }
    } catch (err) {
      throw failure(err)
    }
    if (!availability.ok) availability.markUp()
  }

  async function read(file: string, encoding?: 'utf8'): Promise<string | Buffer | null> {
    try {
      return await readFile(file, encoding)
    } catch (err) {
      if (isMissing(err)) return null
      throw failure(err)
    }
  }

  return {
    name: 'agentmesh-fs',
    options: opts,
    async hasItem(key) {
      return stat(path(key)).then(
        () => true,
        () => false,
      )
    },
    getItem: (key) => read(path(key), 'utf8'),
    getItemRaw: (key) => read(path(key)),
    async getMeta(key) {
      const st = await stat(path(key)).catch(() => undefined)
      return st ? { atime: st.atime, mtime: st.mtime, size: st.size, birthtime: st.birthtime, ctime: st.ctime } : {}
    },
    setItem: (key, value) => write(path(key), value),
    setItemRaw: (key, value) => write(path(key), value as Uint8Array),
    async removeItem(key) {
      try {
        await unlink(path(key))
      } catch (err) {
        if (!isMissing(err)) throw failure(err)
      }
    },
    // only the directory of the asked-for prefix is walked (fs-lite walked the whole tree)
    async getKeys(sub) {
      const prefix = (sub ?? '').replace(/:+$/, '')
      const dir = prefix ? path(prefix) : base
      try {
        const files = await listFiles(dir, prefix ? `${prefix.replace(/:/g, '/')}/` : '')
        return prefix ? files : files.filter((f) => f !== PROBE_FILE)
      } catch (err) {
        throw failure(err)
      }
    },
    async clear() {
      const entries = await readdir(base).catch(() => [] as string[])
      await Promise.all(entries.map((name) => rm(join(base, name), { recursive: true, force: true })))
    },
    dispose() {
      if (probeTimer) clearTimeout(probeTimer)
    },
  }
})

/** every file under dir, as `prefix` + its path below dir ('/'-separated) */
async function listFiles(dir: string, prefix: string): Promise<string[]> {
  let entries: Dirent[]
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch (err) {
    if (isMissing(err)) return []
    throw err
  }
  const out: string[] = []
  await Promise.all(
    entries.map(async (entry) => {
      if (entry.isDirectory()) out.push(...(await listFiles(join(dir, entry.name), `${prefix}${entry.name}/`)))
      else out.push(prefix + entry.name)
    }),
  )
  return out
}
