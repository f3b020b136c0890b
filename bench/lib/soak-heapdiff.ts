// Compare two V8 heap snapshots by what grew: count and bytes per constructor (objects, closures,
// arrays) or per node type (strings, code), largest growth first. For the soak and the fuzzer:
//   node bin/run-ts.mjs bench/lib/soak-heapdiff.ts warm.heapsnapshot end.heapsnapshot [top]
//   node bin/run-ts.mjs bench/lib/soak-heapdiff.ts end.heapsnapshot --retainers NAME [n]
//   node bin/run-ts.mjs bench/lib/soak-heapdiff.ts end.heapsnapshot --biggest [string|object|...] [n]
import { readFileSync } from 'node:fs'

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] } }
  nodes: number[]
  edges: number[]
  strings: string[]
}

interface Group {
  count: number
  bytes: number
}

const load = (file: string): Snapshot => JSON.parse(readFileSync(file, 'utf8'))

/** bytes and count per "type:name" (names only for objects and closures: strings are grouped by type) */
export function groups(s: Snapshot): Map<string, Group> {
  const f = s.snapshot.meta.node_fields
  const types = s.snapshot.meta.node_types[0]
  const width = f.length
  const [iType, iName, iSize] = [f.indexOf('type'), f.indexOf('name'), f.indexOf('self_size')]
  const out = new Map<string, Group>()
  for (let i = 0; i < s.nodes.length; i += width) {
    const type = types[s.nodes[i + iType]!]!
    const named = type === 'object' || type === 'closure' || type === 'native'
    const key = named ? `${type}:${s.strings[s.nodes[i + iName]!]}` : type
    const g = out.get(key) ?? { count: 0, bytes: 0 }
    g.count++
    g.bytes += s.nodes[i + iSize]!
    out.set(key, g)
  }
  return out
}

export function diff(a: Map<string, Group>, b: Map<string, Group>, top = 25): string[] {
  const rows = [...new Set([...a.keys(), ...b.keys()])].map((k) => {
    const x = a.get(k) ?? { count: 0, bytes: 0 }
    const y = b.get(k) ?? { count: 0, bytes: 0 }
    return { k, dCount: y.count - x.count, dBytes: y.bytes - x.bytes, bytes: y.bytes }
  })
  rows.sort((p, q) => q.dBytes - p.dBytes)
  return rows
    .slice(0, top)
    .map(
      (r) =>
        `${(r.dBytes / 1024).toFixed(0).padStart(9)} KB ${String(r.dCount).padStart(9)} objects  ${r.k.slice(0, 100)}`,
    )
}

/** who holds nodes of this name: edge name and holder, counted over up to n nodes */
export function retainers(s: Snapshot, name: string, n = 2000): string[] {
  const f = s.snapshot.meta.node_fields
  const ef = s.snapshot.meta.edge_fields
  const edgeTypes = s.snapshot.meta.edge_types[0]
  const types = s.snapshot.meta.node_types[0]
  const width = f.length
  const ew = ef.length
  const [iName, iEdges, iType] = [f.indexOf('name'), f.indexOf('edge_count'), f.indexOf('type')]
  const [eType, eName, eTo] = [ef.indexOf('type'), ef.indexOf('name_or_index'), ef.indexOf('to_node')]
  const counts = new Map<string, number>()
  let seen = 0
  let edge = 0
  for (let i = 0; i < s.nodes.length; i += width) {
    const holder = `${types[s.nodes[i + iType]!]}:${s.strings[s.nodes[i + iName]!]}`
    for (let e = 0; e < s.nodes[i + iEdges]!; e++, edge += ew) {
      const to = s.edges[edge + eTo]!
      if (s.strings[s.nodes[to + iName]!] !== name) continue
      const et = edgeTypes[s.edges[edge + eType]!]
      const label = et === 'element' || et === 'hidden' ? `[${et}]` : s.strings[s.edges[edge + eName]!]
      const key = `${holder.slice(0, 80)} --${label}-->`
      counts.set(key, (counts.get(key) ?? 0) + 1)
      if (++seen >= n) break
    }
  }
  return [...counts]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 20)
    .map(([k, v]) => `${String(v).padStart(7)}  ${k}`)
}

/**
 * The largest nodes of a type (strings by default) and the chain that holds each, a few levels up:
 * where a diff says "strings grew", this says whose they are.
 */
export function biggest(s: Snapshot, type = 'string', n = 10, depth = 8): string[] {
  const f = s.snapshot.meta.node_fields
  const ef = s.snapshot.meta.edge_fields
  const edgeTypes = s.snapshot.meta.edge_types[0]
  const types = s.snapshot.meta.node_types[0]
  const [width, ew] = [f.length, ef.length]
  const [iType, iName, iSize, iEdges] = [
    f.indexOf('type'),
    f.indexOf('name'),
    f.indexOf('self_size'),
    f.indexOf('edge_count'),
  ]
  const [eType, eName, eTo] = [ef.indexOf('type'), ef.indexOf('name_or_index'), ef.indexOf('to_node')]
  const label = (i: number) =>
    `${types[s.nodes[i + iType]!]}:${s.strings[s.nodes[i + iName]!]!.slice(0, 60).replace(/\s+/g, ' ')}`
  // one retainer per node (the first met, skipping weak edges): enough to name an owner
  const holder = new Map<number, { from: number; edge: string }>()
  let edge = 0
  for (let i = 0; i < s.nodes.length; i += width) {
    for (let e = 0; e < s.nodes[i + iEdges]!; e++, edge += ew) {
      const et = edgeTypes[s.edges[edge + eType]!]
      if (et === 'weak') continue
      const to = s.edges[edge + eTo]!
      if (!holder.has(to))
        holder.set(to, {
          from: i,
          edge:
            et === 'element' || et === 'hidden'
              ? `[${s.edges[edge + eName]}]`
              : String(s.strings[s.edges[edge + eName]!]),
        })
    }
  }
  const top: number[] = []
  for (let i = 0; i < s.nodes.length; i += width) if (types[s.nodes[i + iType]!] === type) top.push(i)
  top.sort((a, b) => s.nodes[b + iSize]! - s.nodes[a + iSize]!)
  return top.slice(0, n).map((i) => {
    const chain = [`${(s.nodes[i + iSize]! / 1024).toFixed(0)} KB ${label(i)}`]
    for (let at = i, k = 0; k < depth; k++) {
      const h = holder.get(at)
      if (!h) break
      chain.push(`  <-${h.edge}- ${label(h.from)}`)
      at = h.from
    }
    return chain.join('\n')
  })
}

if (process.argv[1]?.endsWith('bin/run-ts.mjs') && process.argv[2]?.endsWith('soak-heapdiff.ts')) {
  const [a, b, c, d] = process.argv.slice(3)
  if (!a || !b) {
    console.error(
      'usage: soak-heapdiff.ts A.heapsnapshot B.heapsnapshot [top] | A.heapsnapshot --retainers NAME [n] | A.heapsnapshot --biggest [TYPE] [n]',
    )
    process.exit(2)
  }
  if (b === '--retainers') console.log(retainers(load(a), c ?? '', Number(d ?? 2000)).join('\n'))
  else if (b === '--biggest') console.log(biggest(load(a), c ?? 'string', Number(d ?? 10)).join('\n\n'))
  else console.log(diff(groups(load(a)), groups(load(b)), Number(c ?? 25)).join('\n'))
}
