import type { Plugin } from './types.ts'

/** Identity function that gives a plugin object its type (Vite/unplugin style). */
export function definePlugin<T extends Plugin>(plugin: T): T {
  return plugin
}

const rank = { pre: 0, undefined: 1, post: 2 } as const

/**
 * Order plugins by `enforce` (pre, normal, post), keeping config order inside each group.
 * A name that appears twice keeps its first occurrence: a user's config layer comes before the
 * preset's, so the user's instance of a plugin replaces the preset's.
 */
export function sortPlugins(plugins: Plugin[], disable: string[] = []): Plugin[] {
  const seen = new Set<string>()
  const kept: Plugin[] = []
  for (const p of plugins) {
    if (!p || seen.has(p.name) || disable.includes(p.name)) continue
    seen.add(p.name)
    kept.push(p)
  }
  return kept
    .map((p, i) => ({ p, i }))
    .sort(
      (a, b) =>
        rank[String(a.p.enforce) as keyof typeof rank] - rank[String(b.p.enforce) as keyof typeof rank] || a.i - b.i,
    )
    .map(({ p }) => p)
}
