// A decoder of OTLP/protobuf export requests (traces and metrics) for the test collectors, written
// from opentelemetry-proto's .proto files: it gives the object OTLP/JSON would give for the same
// message (camelCase names, trace and span ids as hex, 64-bit times as decimal strings, enums as
// numbers), so a test reads both encodings the same way. test/otlp-proto.test.ts checks it against
// the official serializers: the protobuf they write decodes to the JSON they write.

type Scalar = 'string' | 'bytes' | 'hexId' | 'bool' | 'varint' | 'int64' | 'fixed64' | 'fixed64n' | 'fixed32' | 'double'
interface Field {
  name: string
  type: Scalar | Message
  repeated?: boolean
}
type Message = { [field: number]: Field }

const anyValue: Message = {}
const keyValue: Message = { 1: { name: 'key', type: 'string' }, 2: { name: 'value', type: anyValue } }
Object.assign(anyValue, {
  1: { name: 'stringValue', type: 'string' },
  2: { name: 'boolValue', type: 'bool' },
  3: { name: 'intValue', type: 'int64' },
  4: { name: 'doubleValue', type: 'double' },
  5: { name: 'arrayValue', type: { 1: { name: 'values', type: anyValue, repeated: true } } },
  6: { name: 'kvlistValue', type: { 1: { name: 'values', type: keyValue, repeated: true } } },
  7: { name: 'bytesValue', type: 'bytes' },
} satisfies Message)
const attributes = (n: number): Message => ({ [n]: { name: 'attributes', type: keyValue, repeated: true } })
const resource: Message = { ...attributes(1), 2: { name: 'droppedAttributesCount', type: 'varint' } }
const scope: Message = {
  1: { name: 'name', type: 'string' },
  2: { name: 'version', type: 'string' },
  ...attributes(3),
  4: { name: 'droppedAttributesCount', type: 'varint' },
}

const span: Message = {
  1: { name: 'traceId', type: 'hexId' },
  2: { name: 'spanId', type: 'hexId' },
  3: { name: 'traceState', type: 'string' },
  4: { name: 'parentSpanId', type: 'hexId' },
  5: { name: 'name', type: 'string' },
  6: { name: 'kind', type: 'varint' },
  7: { name: 'startTimeUnixNano', type: 'fixed64' },
  8: { name: 'endTimeUnixNano', type: 'fixed64' },
  ...attributes(9),
  10: { name: 'droppedAttributesCount', type: 'varint' },
  11: {
    name: 'events',
    repeated: true,
    type: {
      1: { name: 'timeUnixNano', type: 'fixed64' },
      2: { name: 'name', type: 'string' },
      ...attributes(3),
      4: { name: 'droppedAttributesCount', type: 'varint' },
    },
  },
  12: { name: 'droppedEventsCount', type: 'varint' },
  13: {
    name: 'links',
    repeated: true,
    type: {
      1: { name: 'traceId', type: 'hexId' },
      2: { name: 'spanId', type: 'hexId' },
      3: { name: 'traceState', type: 'string' },
      ...attributes(4),
      5: { name: 'droppedAttributesCount', type: 'varint' },
      6: { name: 'flags', type: 'fixed32' },
    },
  },
  14: { name: 'droppedLinksCount', type: 'varint' },
  15: { name: 'status', type: { 2: { name: 'message', type: 'string' }, 3: { name: 'code', type: 'varint' } } },
  16: { name: 'flags', type: 'fixed32' },
}

/** an export request: resources, each with its scopes, each with its `items` (spans or metrics) */
const exportRequest = (signal: 'Spans' | 'Metrics', items: string, item: Message): Message => ({
  1: {
    name: `resource${signal}`,
    repeated: true,
    type: {
      1: { name: 'resource', type: resource },
      2: {
        name: `scope${signal}`,
        repeated: true,
        type: {
          1: { name: 'scope', type: scope },
          2: { name: items, type: item, repeated: true },
          3: { name: 'schemaUrl', type: 'string' },
        },
      },
      3: { name: 'schemaUrl', type: 'string' },
    },
  },
})

export const traceRequest = exportRequest('Spans', 'spans', span)

const pointTimes: Message = {
  2: { name: 'startTimeUnixNano', type: 'fixed64' },
  3: { name: 'timeUnixNano', type: 'fixed64' },
}
const numberPoint: Message = {
  ...attributes(7),
  ...pointTimes,
  4: { name: 'asDouble', type: 'double' },
  6: { name: 'asInt', type: 'fixed64n' },
  8: { name: 'flags', type: 'varint' },
}
const histogramPoint: Message = {
  ...attributes(9),
  ...pointTimes,
  4: { name: 'count', type: 'fixed64n' },
  5: { name: 'sum', type: 'double' },
  6: { name: 'bucketCounts', type: 'fixed64n', repeated: true },
  7: { name: 'explicitBounds', type: 'double', repeated: true },
  10: { name: 'flags', type: 'varint' },
  11: { name: 'min', type: 'double' },
  12: { name: 'max', type: 'double' },
}
const metric: Message = {
  1: { name: 'name', type: 'string' },
  2: { name: 'description', type: 'string' },
  3: { name: 'unit', type: 'string' },
  5: { name: 'gauge', type: { 1: { name: 'dataPoints', type: numberPoint, repeated: true } } },
  7: {
    name: 'sum',
    type: {
      1: { name: 'dataPoints', type: numberPoint, repeated: true },
      2: { name: 'aggregationTemporality', type: 'varint' },
      3: { name: 'isMonotonic', type: 'bool' },
    },
  },
  9: {
    name: 'histogram',
    type: {
      1: { name: 'dataPoints', type: histogramPoint, repeated: true },
      2: { name: 'aggregationTemporality', type: 'varint' },
    },
  },
}

export const metricsRequest = exportRequest('Metrics', 'metrics', metric)

class Reader {
  pos = 0
  constructor(readonly buf: Buffer) {}
  varint(): bigint {
    let v = 0n
    let shift = 0n
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error('protobuf: a varint runs past the end')
      const byte = this.buf[this.pos++]!
      v |= BigInt(byte & 0x7f) << shift
      if (!(byte & 0x80)) return v
      shift += 7n
      if (shift > 63n) throw new Error('protobuf: a varint longer than 10 bytes')
    }
  }
  take(n: number): Buffer {
    if (this.pos + n > this.buf.length) throw new Error('protobuf: a field runs past the end')
    const out = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return out
  }
}

function scalar(type: Scalar, wire: number, r: Reader): unknown {
  switch (type) {
    case 'string':
      return r.take(Number(r.varint())).toString('utf8')
    case 'bytes':
      return r.take(Number(r.varint())).toString('base64')
    case 'hexId':
      return r.take(Number(r.varint())).toString('hex')
    case 'bool':
      return r.varint() !== 0n
    case 'varint':
      return Number(r.varint())
    case 'int64':
      return Number(BigInt.asIntN(64, r.varint()))
    case 'fixed64':
      return r.take(8).readBigUInt64LE().toString()
    case 'fixed64n':
      return Number(r.take(8).readBigUInt64LE())
    case 'fixed32':
      return r.take(4).readUInt32LE()
    case 'double':
      return r.take(8).readDoubleLE()
  }
  throw new Error(`protobuf: wire type ${wire}`)
}

const fixedSize: Partial<Record<Scalar, number>> = { fixed64: 8, fixed64n: 8, double: 8, fixed32: 4 }
/** the wire type each scalar is written with */
const wireOf = (t: Scalar) =>
  t === 'string' || t === 'bytes' || t === 'hexId' ? 2 : fixedSize[t] === 8 ? 1 : fixedSize[t] === 4 ? 5 : 0

function skip(wire: number, r: Reader): void {
  if (wire === 0) r.varint()
  else if (wire === 1) r.take(8)
  else if (wire === 2) r.take(Number(r.varint()))
  else if (wire === 5) r.take(4)
  else throw new Error(`protobuf: wire type ${wire}`)
}

/** `buf` as message `schema`, as OTLP/JSON writes it; unknown fields are skipped, as protobuf does */
export function decode(schema: Message, buf: Buffer): any {
  const r = new Reader(buf)
  const out: Record<string, unknown> = {}
  while (r.pos < buf.length) {
    const key = Number(r.varint())
    const wire = key & 7
    const f = schema[key >>> 3]
    if (!f) {
      skip(wire, r)
      continue
    }
    let values: unknown[]
    if (typeof f.type === 'object') {
      if (wire !== 2) throw new Error(`protobuf: ${f.name} is a message, got wire type ${wire}`)
      values = [decode(f.type, r.take(Number(r.varint())))]
    } else if (f.repeated && wire === 2 && f.type !== 'string' && f.type !== 'bytes' && f.type !== 'hexId') {
      // packed: the values one after another in one length-delimited field
      const inner = new Reader(r.take(Number(r.varint())))
      values = []
      while (inner.pos < inner.buf.length) values.push(scalar(f.type, wireOf(f.type), inner))
    } else {
      if (wire !== wireOf(f.type)) throw new Error(`protobuf: ${f.name} is ${f.type}, got wire type ${wire}`)
      values = [scalar(f.type, wire, r)]
    }
    if (f.repeated) out[f.name] = [...((out[f.name] as unknown[]) ?? []), ...values]
    else out[f.name] = values[0]
  }
  return out
}
