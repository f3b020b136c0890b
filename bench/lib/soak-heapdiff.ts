// Compare two V8 heap snapshots by what grew: count and bytes per constructor (objects, closures,
// arrays) or per node type (strings, code), largest growth first. For the soak and the fuzzer:
//   node bin/run-ts.mjs bench/lib/soak-heapdiff.ts warm.heapsnapshot end.heapsnapshot [top]
//   node bin/run-ts.mjs bench/lib/soak-heapdiff.ts end.heapsnapshot --retainers NAME [n]
import { readFileSync } from 'node:fs'

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] } }
  nodes: number[]
  edges: number[]
  strings: string[]
}

interface Group { count: number; bytes: number }

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
  return rows.slice(0, top).map((r) => `${(r.dBytes / 1024).toFixed(0).padStart(9)} KB ${String(r.dCount).padStart(9)} objects  ${r.k.slice(0, 100)}`)
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
  return [...counts].sort((a, b) => b[1] - a[1]).slice(0, 20).map(([k, v]) => `${String(v).padStart(7)}  ${k}`)
}

if (process.argv[1]?.endsWith('bin/run-ts.mjs') && process.argv[2]?.endsWith('soak-heapdiff.ts')) {
  const [a, b, c, d] = process.argv.slice(3)
  if (!a || !b) {
    console.error('usage: soak-heapdiff.ts A.heapsnapshot B.heapsnapshot [top] | A.heapsnapshot --retainers NAME [n]')
    process.exit(2)
  }
  if (b === '--retainers') console.log(retainers(load(a), c ?? '', Number(d ?? 2000)).join('\n'))
  else console.log(diff(groups(load(a)), groups(load(b)), Number(c ?? 25)).join('\n'))
}
