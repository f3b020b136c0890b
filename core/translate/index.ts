// Translation between protocols, for a request whose vendor speaks another protocol than its
// client (the model is served by that vendor, or a router sent it there). Three parts:
// (a) the client's body becomes the vendor's (through the neutral request), and the vendor sends
//     that body; (b) the vendor's whole answer is read with its adapter and rendered with the
//     client's; (c) a stream is translated event by event as it is relayed (respond.ts).
// The same-protocol path never comes here.
import { randomUUID } from 'node:crypto'
import { argsValuesSliced } from '../protocols/gemini.ts'
import { protocols } from '../protocols/index.ts'
import { PIECE_CHARS, cutString, parseBufferSliced } from '../json-sliced.ts'
import { PARSE_STEP, SLICED_PARSE_CHARS, isObject, type StreamReader } from '../protocols/shared.ts'
import { Slicer } from '../slicer.ts'
import { UpstreamError } from '../upstream.ts'
import type { CanonicalAnswer, MeshContext, MeshResponse, ProtocolName, UpstreamResponse, Vendor } from '../types.ts'
import { expandChain, isTranslatedTurn, recordTurn, type Prior } from './chains.ts'
import { cannot, forgetParsed, jsonTextsSliced, parseTextsSliced, type NeutralRequest } from './neutral.ts'
import { readAnthropic, readOpenAI, type Reader } from './request-in.ts'
import { geminiJsonValues, readGemini, readResponses } from './request-in-more.ts'
import { toAnthropic, toGemini, toOpenAI } from './request-out.ts'
import { decoders, encoders } from './stream.ts'
import { neutralRewriter, type AnswerText } from './answer-text.ts'

export interface Translation {
  /** the client's protocol */
  from: ProtocolName
  /** the vendor's */
  to: ProtocolName
  /** the body as the client sent it (ctx.request.body is the vendor's now) */
  clientBody: Record<string, any>
  /** Responses clients: the id the proxy gives the answer, which a next turn names */
  clientId?: string
  /** Responses clients: the whole input of this turn, stored with its output */
  chainInput?: unknown[]
  /** Responses clients: the earlier turns at the front of chainInput */
  chainPrior?: Prior
}

const readers: Record<ProtocolName, Reader> = {
  openai: readOpenAI,
  anthropic: readAnthropic,
  gemini: readGemini,
  responses: readResponses,
}
const writers: Partial<Record<ProtocolName, (n: NeutralRequest) => Record<string, unknown>>> = {
  openai: toOpenAI,
  anthropic: toAnthropic,
  gemini: toGemini,
}

/** Expand a Responses chain the proxy keeps, refusing what only OpenAI keeps. */
async function responsesBody(
  ctx: MeshContext,
  body: Record<string, any>,
  to: ProtocolName,
): Promise<{ body: Record<string, any>; input: unknown[]; prior?: Prior }> {
  if (body.conversation != null) cannot('`conversation` (state kept by OpenAI)', to)
  if (body.background === true) cannot('`background`', to)
  if (body.prompt != null) cannot('`prompt` (a prompt stored at OpenAI)', to)
  const { input, prior } = await expandChain(ctx, body)
  const { previous_response_id: _p, ...rest } = body
  return { body: { ...rest, input }, input, prior }
}

/**
 * Turn ctx's request into the vendor's protocol: ctx.request.body becomes the vendor's body
 * (marked dirty, so the vendor sends it) and the headers say what was translated and dropped.
 * Throws a ProtocolError (a 400 in the client's protocol) for a feature the vendor cannot take.
 * A promise only for a Responses client (its chain is read from storage first) or a body of
 * megabytes (its large tool calls and results worked in slices first): the other translations
 * are done at once, without an async function's promise and turn.
 */
export function translateRequest(ctx: MeshContext, vendor: Vendor): Translation | Promise<Translation> {
  const from = ctx.protocol
  const to = vendor.protocol
  const write = to === 'any' ? undefined : writers[to]
  if (to === 'any' || !write) return cannot(`a ${from} request`, to)
  const clientBody: Record<string, any> = ctx.request.body
  const tr: Translation = { from, to, clientBody }
  const large = ctx.request.rawBody.length > SLICED_PARSE_CHARS && isObject(clientBody)
  if (from !== 'responses')
    return large ? translateLarge(ctx, tr, write, clientBody) : translateBody(ctx, tr, write, clientBody)
  return responsesBody(ctx, clientBody, to).then(({ body, input, prior }) => {
    tr.chainInput = input
    tr.chainPrior = prior
    tr.clientId = `resp_${randomUUID().replace(/-/g, '')}`
    // a small turn that continues a chain of megabytes is a body of megabytes too
    const chainLarge = !!prior && ctx.request.rawBody.length + prior.chars > SLICED_PARSE_CHARS && isObject(clientBody)
    return large || chainLarge ? translateLarge(ctx, tr, write, body) : translateBody(ctx, tr, write, body)
  })
}

/**
 * The tool calls' arguments and results of a client's body that its translation makes into JSON
 * text (objects: Anthropic inputs, Gemini arguments and responses) or parses (text: OpenAI and
 * Responses arguments, for a vendor that takes an object)
 */
function jsonValuesOf(from: ProtocolName, body: Record<string, any>): { args: unknown[]; responses: unknown[] } {
  if (from === 'gemini') return geminiJsonValues(body)
  const args: unknown[] = []
  const list: unknown[] = from === 'responses' ? body.input : body.messages
  for (const m of Array.isArray(list) ? list : []) {
    if (!isObject(m)) continue
    if (from === 'responses' && m.type === 'function_call') args.push(m.arguments)
    if (from === 'openai' && Array.isArray(m.tool_calls))
      for (const c of m.tool_calls) if (isObject(c) && isObject(c.function)) args.push(c.function.arguments)
    if (from === 'anthropic' && Array.isArray(m.content))
      for (const b of m.content) if (isObject(b) && b.type === 'tool_use') args.push(b.input)
  }
  return { args, responses: [] }
}

/**
 * translateBody of a body of megabytes: the JSON text of its large call arguments and results
 * made in slices first, and large arguments parsed in slices for a vendor that takes them as an
 * object (what translateBody would do in one go, the same values), then the body translated at once
 */
async function translateLarge(
  ctx: MeshContext,
  tr: Translation,
  write: NonNullable<(typeof writers)[keyof typeof writers]>,
  body: Record<string, any>,
): Promise<Translation> {
  const { args, responses } = jsonValuesOf(tr.from, body)
  if (!args.length && !responses.length) return translateBody(ctx, tr, write, body)
  const slicer = new Slicer(SLICE_MS)
  const asObject = tr.to !== 'openai'
  const parsed = await jsonTextsSliced(args, slicer, asObject)
  try {
    if (asObject) parsed.push(...(await parseTextsSliced(args, slicer)))
    await jsonTextsSliced(responses, slicer)
    return translateBody(ctx, tr, write, body)
  } finally {
    forgetParsed(parsed)
  }
}

function translateBody(
  ctx: MeshContext,
  tr: Translation,
  write: NonNullable<(typeof writers)[keyof typeof writers]>,
  body: Record<string, any>,
): Translation {
  const { from, to } = tr
  // a Gemini client without alt=sse gets one JSON array, rendered from the whole answer
  const stream = ctx.prompt.stream && !(from === 'gemini' && !/[?&]alt=sse(&|$)/.test(ctx.request.search))
  const neutral = readers[from](body, to, { pathModel: ctx.route.model, stream })
  neutral.model = ctx.route.model
  ctx.request.body = write(neutral)
  ctx.request.dirty = true
  ctx.headers['x-agentmesh-translated'] = `${from}->${to}`
  if (neutral.dropped.length) ctx.headers['x-agentmesh-translation-dropped'] = [...new Set(neutral.dropped)].join(', ')
  return tr
}

const ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
}

/** A vendor's error body in the client's terms: its message kept, its status (Anthropic's 529 is a 503 elsewhere). */
function vendorError(ctx: MeshContext, tr: Translation, res: UpstreamResponse): MeshResponse {
  let json: any
  try {
    json = JSON.parse((res.body as Buffer).toString('utf8'))
  } catch {
    json = undefined
  }
  const e = Array.isArray(json) ? json[0]?.error : json?.error
  const said =
    typeof e?.message === 'string'
      ? e.message
      : typeof json?.message === 'string'
        ? json.message
        : `answered ${res.status}`
  const status = res.status === 529 && tr.from !== 'anthropic' ? 503 : res.status
  const type =
    ERROR_TYPES[status] ??
    (status === 529 ? 'overloaded_error' : tr.from === 'anthropic' ? 'api_error' : 'server_error')
  const retry = res.headers['retry-after']
  return {
    kind: 'error',
    status,
    type,
    message: `${ctx.route.vendor}: ${said.slice(0, 2000)}`,
    ...(retry ? { headers: { 'retry-after': retry } } : {}),
  }
}

/**
 * A vendor's whole answer (or error) as an answer the core renders in the client's protocol. A
 * promise only for an answer of megabytes, parsed in slices of the event loop (one toString and
 * JSON.parse of 5 MB held it 40-60 ms); a small one is read at once, without a promise's turn.
 */
export function translateWhole(
  ctx: MeshContext,
  tr: Translation,
  res: UpstreamResponse,
): MeshResponse | Promise<MeshResponse> {
  if (res.status >= 300) return vendorError(ctx, tr, res)
  const buf = res.body as Buffer
  if (buf.length > SLICED_PARSE_CHARS)
    return parseBufferSliced(buf, new Slicer(SLICE_MS)).then(
      async (json) => {
        const slicer = new Slicer(SLICE_MS)
        // a call's arguments of megabytes (Gemini's args, Anthropic's input): their text for the answer made in slices too
        await protocols[tr.to].prepareRead?.(json, slicer)
        const r = translatedAnswer(ctx, tr, json)
        // for a Gemini client, arguments of megabytes are rendered as the object they are: parsed in slices now
        if (tr.from === 'gemini' && r.kind === 'answer') await argsValuesSliced(r.answer, slicer)
        return r
      },
      () => translatedAnswer(ctx, tr, undefined),
    )
  let json: unknown
  try {
    json = JSON.parse(buf.toString('utf8'))
  } catch {
    json = undefined
  }
  return translatedAnswer(ctx, tr, json)
}

// one slice of the event loop for a large answer's parse
const SLICE_MS = 10

/** the vendor's answer read with its own adapter, under the client's id */
function translatedAnswer(ctx: MeshContext, tr: Translation, json: unknown): MeshResponse {
  let answer: CanonicalAnswer
  try {
    answer = protocols[tr.to].read(json)
  } catch {
    throw new UpstreamError(
      `${ctx.route.vendor} answered 200 with a body that is not a ${tr.to} answer`,
      502,
      'upstream_invalid_response',
    )
  }
  // the vendor's answer is what is billed and cached; the client sees it under its own id
  ctx.answer = answer
  ctx.usage = answer.usage
  return { kind: 'answer', answer: tr.clientId ? { ...answer, id: tr.clientId } : answer }
}

/**
 * The reader relay() uses for a translated stream: the vendor's own reader builds the answer and
 * usage; each event is also translated, and `take` returns what is ready for the client. Events
 * are never forwarded as they came (event() returns false). With `answerText` (a plugin rewrites
 * the answer's text) the neutral events are rewritten before they are encoded; `end` gives what
 * is still held back when the stream ends without its final event.
 */
export function streamTranslator(
  tr: Translation,
  answerText?: AnswerText,
): { reader: StreamReader; take(): string; end?(): string } {
  const vendorReader = protocols[tr.to].streamReader({ hideUsageChunk: false })
  const decode = decoders[tr.to]()
  const encode = encoders[tr.from]({
    from: tr.to,
    includeUsage: isObject(tr.clientBody.stream_options) && tr.clientBody.stream_options.include_usage === true,
    id: tr.clientId,
  })
  let out = ''
  const rewrite = answerText ? neutralRewriter(answerText) : undefined
  const reader: StreamReader = {
    event(data) {
      vendorReader.event(data)
      if (rewrite) for (const e of decode(data)) for (const r of rewrite(e)) out += encode(r)
      else for (const e of decode(data)) out += encode(e)
      return false
    },
    // one vendor event of tens of thousands of parts: as many client events, made in slices and
    // handed on (flush) as they are made; the same text as event() would have made
    async eventSliced(data, slicer, flush) {
      if (vendorReader.eventSliced) await vendorReader.eventSliced(data, slicer, flush)
      else vendorReader.event(data)
      await slicer.pause()
      const events = decode(data)
      for (let i = 0; i < events.length; i++) {
        for (const r of rewrite ? rewrite(events[i]!) : [events[i]!]) {
          if (encode.prepare) await encode.prepare(r, slicer)
          if (!encode.pieces) out += encode(r)
          // the whole text again (Responses' done events): made and handed on a piece at a time
          else
            for (const piece of encode.pieces(r)) {
              out += piece
              if (out.length >= PIECE_CHARS) await handOn(slicer, flush)
            }
        }
        await slicer.pause()
        // handed on in small pieces: a write of megabytes of text is a long step of its own
        if (out.length > SLICED_PARSE_CHARS) await handOn(slicer, flush)
        else if (i % PARSE_STEP === PARSE_STEP - 1) {
          flush()
          await slicer.pause()
        }
      }
      flush()
      return false
    },
    finish: () => vendorReader.finish(),
    partialUsage: () => vendorReader.partialUsage(),
    // megabytes of text the client gets again at the end: the event that ends it is read in slices
    heavy: () => (encode.held?.() ?? 0) > SLICED_PARSE_CHARS || vendorReader.heavy?.() === true,
  }
  /**
   * what is ready, megabytes of one event's text, handed on a piece at a time (the same text), a
   * turn each: the socket is corked for the turn, and all a turn writes is encoded at once when it uncorks
   */
  const handOn = async (slicer: Slicer, flush: () => void) => {
    await slicer.yield()
    const pieces = cutString(out)
    out = ''
    for (const piece of pieces) {
      out = piece
      flush()
      await slicer.yield()
    }
  }
  return {
    reader,
    take() {
      const s = out
      out = ''
      return s
    },
    // a stream cut before its finish: the held-back text still goes out (as text, the encoder's events)
    end: rewrite
      ? () =>
          rewrite({ t: 'finish', reason: 'stop', usage: vendorReader.partialUsage() })
            .filter((e) => e.t !== 'finish')
            .map(encode)
            .join('')
      : undefined,
  }
}

/** After a translated Responses answer: keep the turn, so that the next may name it. */
export function recordTranslated(ctx: MeshContext, tr: Translation): Promise<void> | undefined {
  if (
    !tr.clientId ||
    !tr.chainInput ||
    ctx.status !== 200 ||
    !ctx.answer ||
    ctx.aborted ||
    tr.clientBody.store === false
  )
    return
  const body = protocols.responses.render({ ...ctx.answer, id: tr.clientId }) as Record<string, any>
  // without the item ids the proxy made up: OpenAI looks an input item's id up, and knows none of them
  const output = (Array.isArray(body.output) ? body.output : []).map(
    ({ id: _id, ...item }: Record<string, unknown>) => item,
  )
  return recordTurn(ctx, tr.clientId, tr.chainInput, output, tr.chainPrior)
}

/**
 * A Responses request to a vendor that speaks Responses, continuing a turn the proxy translated
 * (the conversation moved from a Claude model to an OpenAI one): that vendor never saw the turn,
 * so the chain is expanded into the input and previous_response_id left out.
 */
export async function continueTranslatedChain(ctx: MeshContext): Promise<void> {
  const body = ctx.request.body
  if (typeof body?.previous_response_id !== 'string' || !(await isTranslatedTurn(ctx.mesh, body.previous_response_id)))
    return
  const { input } = await expandChain(ctx, body)
  const { previous_response_id: _p, ...rest } = body
  ctx.request.body = { ...rest, input }
  ctx.request.dirty = true
}
