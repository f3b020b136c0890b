// The worker thread's side of worker-host.ts: builds the embedder named by the spec and answers
// one call at a time (the host sends the next only after this one's answer).
import type { MessagePort } from 'node:worker_threads'
import type { Embedder } from './embedders.ts'
import type { WorkerSpec } from './worker-host.ts'

interface Call {
  id: number
  op: 'load' | 'embed'
  texts: string[]
}

export function serve(
  port: MessagePort,
  spec: Pick<WorkerSpec, 'module' | 'export' | 'options'>,
  load: (specifier: string) => Promise<unknown>,
): void {
  let embedder: Promise<Embedder> | undefined
  const make = async (): Promise<Embedder> => {
    const mod = (await load(spec.module)) as Record<string, unknown>
    const factory = mod[spec.export]
    if (typeof factory !== 'function')
      throw new Error(`semantic-cache: ${spec.module} exports no function ${spec.export}`)
    const e = (await factory(spec.options)) as Embedder
    if (!e || typeof e.embed !== 'function' || typeof e.load !== 'function')
      throw new Error(`semantic-cache: ${spec.export}() did not return an embedder`)
    return e
  }
  port.on('message', async (call: Call) => {
    try {
      // a failed start is tried again on the next call, as a failed model load is
      const e = await (embedder ??= make().catch((err) => {
        embedder = undefined
        throw err
      }))
      if (call.op === 'load') await e.load()
      const vectors = call.op === 'embed' ? await e.embed(call.texts) : []
      port.postMessage({ id: call.id, ok: true, dimension: e.dimension, vectors })
    } catch (err) {
      port.postMessage({ id: call.id, ok: false, message: err instanceof Error ? err.message : String(err) })
    }
  })
}
