// Runs an embedder in a worker thread, so that a model call (one synchronous run of tfjs: with
// USE-lite 15-20 ms for a short question, 65-100 ms for a few thousand characters, minutes for
// 100 KB) never holds the proxy's event loop. One worker per embedder configuration per process,
// shared by every embedder object made with it (a model is ~230 MB), started on first use and
// stopped when the last of them is closed. Calls run one at a time, in order; a worker that dies
// or stops answering fails its call (the cache treats that as a miss) and is replaced on the next.
import { Worker } from 'node:worker_threads'
import type { Embedder } from './embedders.ts'

export interface WorkerSpec {
  /** module exporting the factory, as a file URL or absolute path; loaded in the worker through jiti, so TypeScript works */
  module: string
  /** name of the exported factory: (options) => Embedder, an embedder that runs on the thread calling it */
  export: string
  /** structured-cloneable options for the factory */
  options?: unknown
  /** a batch not answered by then counts as a crash (default 30 s; a batch is at most maxBatch windows of 4,096 characters) */
  timeoutMs?: number
  /** the same for loading the model (default 5 minutes) */
  loadTimeoutMs?: number
}

export interface WorkerEmbedderSpec extends WorkerSpec {
  id: string
  /** expected vector length; the worker's answer replaces it once the model has loaded */
  dimension: number
}

type Op = 'load' | 'embed'
interface Reply {
  id: number
  ok: boolean
  message?: string
  dimension?: number
  vectors?: Float32Array[]
}
interface Job {
  op: Op
  texts: string[]
  resolve: (r: Reply) => void
  reject: (e: Error) => void
}

const ENTRY = new URL('./embed-worker.mjs', import.meta.url)
// after this many crashes in a row without one answer, calls fail at once for a while
const CRASHES_BEFORE_BACKOFF = 3
const MAX_BACKOFF_MS = 60_000

class EmbedWorker {
  refs = 0
  loaded = false
  private worker: Worker | undefined
  private queue: Job[] = []
  private current: { id: number; job: Job; timer: NodeJS.Timeout } | undefined
  private nextId = 1
  private crashes = 0
  private retryAt = 0
  private lastError = ''

  constructor(private spec: WorkerSpec) {}

  run(op: Op, texts: string[] = []): Promise<Reply> {
    return new Promise((resolve, reject) => {
      if (Date.now() < this.retryAt)
        return reject(
          new Error(
            `semantic-cache: the embedding worker crashed ${this.crashes} times in a row (${this.lastError}); retrying in ${Math.ceil((this.retryAt - Date.now()) / 1000)} s`,
          ),
        )
      this.queue.push({ op, texts, resolve, reject })
      this.pump()
    })
  }

  private pump(): void {
    if (this.current || !this.queue.length) {
      // an idle worker does not keep the process alive; one with work does
      if (!this.current) this.worker?.unref()
      return
    }
    // a fresh worker loads the model first, as a call of its own: loading may take minutes (a
    // download), a batch of windows takes seconds at most, and each gets its own deadline. A
    // failed load fails the call it was made for (not tried again for it).
    const first = this.queue[0]!
    if (!this.loaded && first.op === 'embed') {
      const fail = (err: Error) => {
        const i = this.queue.indexOf(first)
        if (i >= 0) this.queue.splice(i, 1)
        first.reject(err)
      }
      this.queue.unshift({ op: 'load', texts: [], resolve: () => {}, reject: fail })
    }
    const job = this.queue.shift()!
    let w: Worker
    try {
      w = this.worker ??= this.spawn()
    } catch (err) {
      // options that cannot cross to a thread, say: nothing will start, fail the call
      job.reject(err instanceof Error ? err : new Error(String(err)))
      this.pump()
      return
    }
    w.ref()
    const id = this.nextId++
    const ms = job.op === 'load' ? (this.spec.loadTimeoutMs ?? 300_000) : (this.spec.timeoutMs ?? 30_000)
    const timer = setTimeout(() => this.kill(w, `no answer within ${ms} ms`), ms)
    this.current = { id, job, timer }
    w.postMessage({ id, op: job.op, texts: job.texts })
  }

  private spawn(): Worker {
    const { module, export: name, options } = this.spec
    // no execArgv: a loader or inspector flag of the main thread is not the worker's business
    const w = new Worker(ENTRY, { workerData: { module, export: name, options }, execArgv: [] })
    w.on('message', (m: Reply) => this.onReply(m))
    w.on('error', (err) => {
      this.lastError = err.message
    })
    w.on('exit', (code) => this.onExit(w, code))
    return w
  }

  private onReply(m: Reply): void {
    const c = this.current
    if (!c || c.id !== m.id) return
    clearTimeout(c.timer)
    this.current = undefined
    this.crashes = 0
    this.lastError = ''
    if (m.ok) {
      this.loaded = true
      c.job.resolve(m)
    } else {
      c.job.reject(new Error(m.message ?? 'embedding failed'))
    }
    this.pump()
  }

  /** stop a worker that no longer answers; its exit is then handled as a crash */
  private kill(w: Worker, why: string): void {
    this.lastError = why
    void w.terminate()
  }

  private onExit(w: Worker, code: number): void {
    if (this.worker !== w) return
    this.worker = undefined
    this.loaded = false
    const c = this.current
    this.current = undefined
    if (this.refs <= 0) return // closed on purpose
    this.crashes++
    const why = this.lastError || `exit code ${code}`
    if (c) {
      clearTimeout(c.timer)
      c.job.reject(new Error(`semantic-cache: the embedding worker stopped (${why}); it restarts on the next call`))
    }
    if (this.crashes >= CRASHES_BEFORE_BACKOFF) {
      this.retryAt = Date.now() + Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (this.crashes - CRASHES_BEFORE_BACKOFF))
      for (const j of this.queue.splice(0))
        j.reject(new Error(`semantic-cache: the embedding worker keeps crashing (${why})`))
    }
    this.pump()
  }

  async close(): Promise<void> {
    const w = this.worker
    this.worker = undefined
    this.loaded = false
    const c = this.current
    this.current = undefined
    if (c) clearTimeout(c.timer)
    const closed = new Error('semantic-cache: the embedder was closed')
    for (const j of [...(c ? [c.job] : []), ...this.queue.splice(0)]) j.reject(closed)
    await w?.terminate()
  }
}

const workers = new Map<string, EmbedWorker>()

function acquire(spec: WorkerSpec): EmbedWorker {
  const key = JSON.stringify([
    spec.module,
    spec.export,
    spec.options ?? null,
    spec.timeoutMs ?? null,
    spec.loadTimeoutMs ?? null,
  ])
  let w = workers.get(key)
  if (!w) {
    w = new EmbedWorker(spec)
    workers.set(key, w)
  }
  w.refs++
  return w
}

async function release(w: EmbedWorker): Promise<void> {
  if (--w.refs > 0) return
  for (const [k, v] of workers) if (v === w) workers.delete(k)
  await w.close()
}

/**
 * An embedder whose model runs in a worker thread: `spec.export` of `spec.module` builds the
 * in-thread embedder there. The worker starts on the first load() or embed(); close() lets it go
 * (it stops once no embedder of the same spec holds it), and a later call starts it again.
 */
export function workerEmbedder(spec: WorkerEmbedderSpec): Embedder {
  const { id, dimension: expected, ...workerSpec } = spec
  let host: EmbedWorker | undefined
  let dimension = expected
  const worker = () => (host ??= acquire(workerSpec))
  const note = (r: Reply) => {
    if (r.dimension) dimension = r.dimension
    return r
  }
  return {
    id,
    get dimension() {
      return dimension
    },
    get loaded() {
      return host?.loaded ?? false
    },
    async load() {
      note(await worker().run('load'))
    },
    async embed(texts) {
      if (!texts.length) return []
      return note(await worker().run('embed', texts)).vectors ?? []
    },
    async close() {
      const h = host
      host = undefined
      if (h) await release(h)
    },
  }
}
