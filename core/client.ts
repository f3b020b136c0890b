// Client disconnects without an AbortController per request: on Node the response's 'close'
// event says it (AbortSignal + EventTarget cost ~10 µs a request under load). One listener per
// request feeds everyone who asks. Requests that come without a Node response (app.fetch in
// tests, other runtimes) use the Request's signal.
import type { ServerResponse } from 'node:http'
import type { MeshContext } from './types.ts'

interface ClientState {
  res: ServerResponse
  gone: boolean
  waiters: Array<() => void>
}

const kClient = Symbol('agentmesh.client')
const noop = () => {}
const stateOf = (ctx: MeshContext) => (ctx as any)[kClient] as ClientState | undefined

export function attachNodeResponse(ctx: MeshContext, res: ServerResponse | undefined): void {
  if (!res) return
  const state: ClientState = { res, gone: false, waiters: [] }
  ;(ctx as any)[kClient] = state
  // 'close' comes a tick after a destroy, so a response the proxy itself tore down because the
  // upstream failed is not mistaken for a client that left
  res.once('close', () => {
    if (res.writableEnded) return
    state.gone = true
    for (const fn of state.waiters.splice(0)) fn()
  })
}

/** true once the client went away before its answer was complete */
export function clientGone(ctx: MeshContext): boolean {
  const state = stateOf(ctx)
  return state ? state.gone : ctx.signal.aborted
}

/** run `fn` once if the client goes away; returns the unsubscribe */
export function onClientGone(ctx: MeshContext, fn: () => void): () => void {
  const state = stateOf(ctx)
  if (state) {
    if (state.gone) {
      fn()
      return noop
    }
    state.waiters.push(fn)
    return () => {
      const i = state.waiters.indexOf(fn)
      if (i >= 0) state.waiters.splice(i, 1)
    }
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
  return stateOf(ctx)?.res
}
