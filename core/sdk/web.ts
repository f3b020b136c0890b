// The web Request and Response of an in-process call, without the costs a real one carries and
// the pipeline never uses. A WHATWG Request with a body makes a ReadableStream (and, with a
// signal, an AbortController following it) only for the core to read the text back; a Response
// with a body makes another stream for the client to read its JSON back. Together that was about
// a third of SDK mode's own CPU per call. These stand-ins are still `instanceof Request` and
// `instanceof Response`; anything beyond the hot path (a body stream, clone, formData) gets a
// real one built on first use.
import { Readable } from 'node:stream'

const NativeRequest = globalThis.Request
const NativeResponse = globalThis.Response

/**
 * A Request whose url, method, headers, signal and text() are plain fields: what h3 and the
 * pipeline read. Every other member of Request.prototype is forwarded to a real Request built
 * on first use (as srvx does for node:http requests), so the object keeps the whole API.
 */
export class MeshRequest {
  readonly url: string
  readonly method: string
  readonly headers: Headers
  #body: string | null
  #signal: AbortSignal | undefined
  #used = false
  #request: Request | undefined

  constructor(url: string, method: string, headers: Headers, body: string | null, signal: AbortSignal | undefined) {
    this.url = url
    this.method = method
    this.headers = headers
    this.#body = body
    this.#signal = signal
  }

  /** the caller's own signal (fetch's request.signal follows it); one that never aborts without */
  get signal(): AbortSignal {
    return (this.#signal ??= new AbortController().signal)
  }

  get bodyUsed(): boolean {
    return this.#request ? this.#request.bodyUsed : this.#used
  }

  text(): Promise<string> {
    if (this.#request) return this.#request.text()
    if (this.#used) return Promise.reject(new TypeError('Body is unusable: Body has already been read'))
    this.#used = true
    return Promise.resolve(this.#body ?? '')
  }

  json(): Promise<unknown> {
    return this.text().then(JSON.parse)
  }

  /** the real Request, for what the fields above do not cover (srvx's patched Request reads it too) */
  get _request(): Request {
    this.#request ??= new NativeRequest(this.url, {
      method: this.method,
      headers: this.headers,
      body: this.#used ? null : this.#body,
      ...(this.#signal ? { signal: this.#signal } : {}),
    })
    return this.#request
  }
}
forwardRest(MeshRequest.prototype, NativeRequest.prototype, (self) => (self as MeshRequest)._request)

/**
 * fetch's text of a body: Request#text decodes UTF-8 with the BOM stripped, so a string body
 * reads back without a leading U+FEFF and with lone surrogates replaced, as it did encoded.
 */
export function bodyText(body: string): string {
  const wf = body as string & { isWellFormed(): boolean; toWellFormed(): string } // ES2024, in Node 20
  const s = wf.isWellFormed() ? body : wf.toWellFormed()
  return s.charCodeAt(0) === 0xfeff ? s.slice(1) : s
}

/**
 * A Response over bytes already in memory: json(), text(), arrayBuffer() and bytes() read them
 * directly; `body` (or clone, blob, formData) hands over to a real Response on first use.
 */
export class BufferedResponse extends NativeResponse {
  #bytes: Uint8Array
  #used = false
  #real: Response | undefined

  constructor(bytes: Uint8Array, init: ResponseInit) {
    super(null, init)
    this.#bytes = bytes
  }

  #take(): Uint8Array {
    if (this.#used) throw new TypeError('Body is unusable: Body has already been read')
    this.#used = true
    return this.#bytes
  }

  #realResponse(): Response {
    this.#real ??= new NativeResponse(this.#used ? null : (this.#bytes as BodyInit), {
      status: this.status,
      statusText: this.statusText,
      headers: this.headers,
    })
    return this.#real
  }

  override get body(): Response['body'] {
    return this.#realResponse().body
  }

  override get bodyUsed(): boolean {
    return this.#real ? this.#real.bodyUsed : this.#used
  }

  override text(): Promise<string> {
    if (this.#real) return this.#real.text()
    try {
      return Promise.resolve(utf8.decode(this.#take()))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  override json(): Promise<any> {
    return this.text().then(JSON.parse)
  }

  override arrayBuffer(): Promise<ArrayBuffer> {
    return this.bytes().then((b) => b.buffer as ArrayBuffer)
  }

  override bytes(): Promise<Uint8Array<ArrayBuffer>> {
    if (this.#real) return this.#real.bytes()
    try {
      // a copy: the caller owns what it gets, the answer's bytes may be shared (a cache entry)
      return Promise.resolve(new Uint8Array(this.#take()) as Uint8Array<ArrayBuffer>)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  override blob(): Promise<Blob> {
    return this.#realResponse().blob()
  }

  override formData(): Promise<FormData> {
    return this.#realResponse().formData()
  }

  override clone(): Response {
    if (this.#real || this.#used) return this.#realResponse().clone()
    return new BufferedResponse(this.#bytes, {
      status: this.status,
      statusText: this.statusText,
      headers: this.headers,
    })
  }
}

// as Response#text decodes: UTF-8, a leading BOM dropped, bad bytes replaced
const utf8 = new TextDecoder()

/** what srvx's FastResponse (the core's web answer) tells without building a native Response */
interface FastAnswer {
  _toNodeResponse(): {
    status: number
    statusText: string
    headers: string[]
    body: string | Uint8Array | ReadableStream<Uint8Array> | Readable | null | undefined
  }
}

/**
 * The core's answer as the client's Response: a whole answer (bytes) as a BufferedResponse, a
 * stream as a Response over it; anything else (a Response a plugin route made) as it is.
 */
export function toClientResponse(answer: Response): Response {
  const fast = answer as unknown as Partial<FastAnswer>
  if (typeof fast._toNodeResponse !== 'function') return answer
  const out = fast._toNodeResponse()
  const init: ResponseInit = { status: out.status, statusText: out.statusText }
  const body = out.body
  const res =
    body == null || NULL_BODY.has(out.status)
      ? new NativeResponse(null, init)
      : typeof body === 'string'
        ? new BufferedResponse(Buffer.from(body), init)
        : body instanceof Uint8Array
          ? new BufferedResponse(body, init)
          : // a relayed stream (web), or a Node stream (the events endpoint)
            new NativeResponse(body instanceof ReadableStream ? body : (Readable.toWeb(body) as ReadableStream), init)
  // appended to the Response's own Headers: half the cost of passing them in init (no conversion)
  const h = res.headers
  for (let i = 0; i < out.headers.length; i += 2) h.append(out.headers[i]!, out.headers[i + 1]!)
  return res
}

// statuses a Response may not have a body with
const NULL_BODY = new Set([101, 103, 204, 205, 304])

/**
 * Give target every getter, setter and method of source it does not define itself, each
 * forwarding to the real object `real(this)` returns, so a stand-in keeps the full API.
 */
function forwardRest(target: object, source: object, real: (self: unknown) => any): void {
  for (const key of Reflect.ownKeys(source)) {
    if (key === 'constructor' || Object.hasOwn(target, key)) continue
    const desc = Object.getOwnPropertyDescriptor(source, key)!
    if (desc.get || desc.set) {
      Object.defineProperty(target, key, {
        configurable: true,
        enumerable: desc.enumerable,
        ...(desc.get
          ? {
              get: function (this: unknown) {
                return real(this)[key]
              },
            }
          : {}),
        ...(desc.set
          ? {
              set: function (this: unknown, v: unknown) {
                real(this)[key] = v
              },
            }
          : {}),
      })
    } else if (typeof desc.value === 'function') {
      Object.defineProperty(target, key, {
        configurable: true,
        writable: true,
        value: function (this: unknown, ...args: unknown[]) {
          return real(this)[key](...args)
        },
      })
    }
  }
  Object.setPrototypeOf(target, source)
}
