// The longest stretch of one piece of work between two turns of the event loop, and a pacer that
// yields far more often than the plugins' own, for tests of work done in slices (issue 11 item 2).

const cpuMs = () => {
  const c = process.cpuUsage()
  return (c.user + c.system) / 1000
}

/**
 * The longest stretch between two turns of the event loop while `run` works, as CPU time (capped
 * at the stretch's length): on a shared machine a stretch is long when the OS runs other
 * processes too, and only the work done in it is this code's. The CPU counted is the whole
 * process's, the garbage collector's helper threads included.
 */
export async function longestBlock<T>(run: () => Promise<T>): Promise<{ value: T; maxMs: number }> {
  let last = performance.now()
  let lastCpu = cpuMs()
  let maxMs = 0
  let on = true
  const note = () => {
    const now = performance.now()
    const cpu = cpuMs()
    maxMs = Math.max(maxMs, Math.min(now - last, cpu - lastCpu))
    last = now
    lastCpu = cpu
  }
  const tick = () => {
    note()
    if (on) setImmediate(tick)
  }
  setImmediate(tick)
  last = performance.now()
  lastCpu = cpuMs()
  const value = await run()
  on = false
  note()
  return { value, maxMs }
}

/** a pacer due at every `every`-th check: the work yields between almost every step */
export function eagerPacer(every = 3) {
  let n = 0
  let yields = 0
  const pacer = {
    due: () => ++n % every === 0,
    yield: async () => {
      yields++
      await new Promise((r) => setImmediate(r))
    },
    pause: async () => {
      if (pacer.due()) await pacer.yield()
    },
    get yields() {
      return yields
    },
  }
  return pacer
}

/**
 * The longest text JSON.parse read or JSON.stringify made while `run` works (only JSON.stringify's
 * with `{ parse: false }`): work of megabytes done in one go shows as one text of megabytes.
 */
export async function longestJson<T>(
  run: () => Promise<T>,
  { parse: countParse = true } = {},
): Promise<{ value: T; longest: number }> {
  const { parse, stringify } = JSON
  let longest = 0
  if (countParse)
    JSON.parse = (text: string, reviver?: any) => {
      longest = Math.max(longest, text.length)
      return parse(text, reviver)
    }
  JSON.stringify = ((v: unknown, ...rest: any[]) => {
    const s = (stringify as any)(v, ...rest)
    if (typeof s === 'string') longest = Math.max(longest, s.length)
    return s
  }) as typeof JSON.stringify
  try {
    return { value: await run(), longest }
  } finally {
    JSON.parse = parse
    JSON.stringify = stringify
  }
}
