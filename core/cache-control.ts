// The request's Cache-Control directives as the caches read them: no-cache = do not read a
// stored answer (the fresh one is still stored), no-store = neither read nor store.
const NO_CACHE = /(?:^|[,\s])no-cache(?:$|[,\s=])/i
const NO_STORE = /(?:^|[,\s])no-store(?:$|[,\s=])/i

export interface CacheControl {
  noCache: boolean
  noStore: boolean
}

export function cacheControl(headers: Headers): CacheControl {
  const v = headers.get('cache-control')
  if (!v) return { noCache: false, noStore: false }
  return { noCache: NO_CACHE.test(v), noStore: NO_STORE.test(v) }
}
