// Client disconnects without an AbortController per request: on Node the response's 'close'
// event says it (AbortSignal + EventTarget cost ~10 µs a request under load). Requests that come
// without a Node response (app.fetch in tests, other runtimes) use the Request's signal.
import type { ServerResponse } from 'node:http'
import type { MeshContext } from './types.ts'

const kRes = Symbol('agentmesh.nodeResponse')
const kGone = Symbol('agentmesh.clientGone')
const noop = () => {}

export function attachNodeResponse(ctx: MeshContext, res: ServerResponse | undefined): void {
  if (!res) return
  ;(ctx as any)[kRes] = res
  // set on 'close' (emitted a tick after a destroy), so a response the proxy itself tore down
  // because the upstream failed is not mistaken for a client that left
  res.once('close', () => {
    if (!res.writableEnded) (ctx as any)[kGone] = true
  })
}

/** true once the client went away before its answer was complete */
export function clientGone(ctx: MeshContext): boolean {
  return (ctx as any)[kRes] ? (ctx as any)[kGone] === true : ctx.signal.aborted
}

/** run `fn` once if the client goes away; returns the unsubscribe */
export function onClientGone(ctx: MeshContext, fn: () => void): () => void {
  const res = (ctx as any)[kRes] as ServerResponse | undefined
  if (res) {
    if ((ctx as any)[kGone] === true || (res.destroyed && !res.writableEnded)) {
      fn()
      return noop
    }
    const onClose = () => {
      if (!res.writableEnded) fn()
    }
    res.once('close', onClose)
    return () => res.off('close', onClose)
  }
  const signal = ctx.signal
  if (signal.aborted) {
    fn()
    return noop
  }
  signal.addEventListener('abort', fn, { once: true })
  return () => signal.removeEventListener('abort', fn)
}

/** the Node response this request is answered on, when served by node:http */
export function nodeResponseOf(ctx: MeshContext): ServerResponse | undefined {
  return (ctx as any)[kRes]
}
