/**
 * Progress display: a redrawn bar on a TTY (done/total, rate, ETA, errors) and plain
 * lines elsewhere (CI, pipes), where a line is printed every 10% and at the end.
 * @since 0.1.0
 */

/** What the rate limiter reported on an item's upstream calls (from their `facts`). @category models @since 0.2.0 */
export interface RateLimitFacts {
  readonly retries: number
  readonly waitMillis: number
  readonly http429: number
  readonly timeouts: number
}

/** A progress sink the runner reports to. @category models @since 0.1.0 */
export interface Progress {
  readonly start: (state: { readonly total: number; readonly done: number; readonly errors: number }) => void
  readonly advance: (
    outcome: {
      readonly error: boolean
      readonly rateLimit?: RateLimitFacts | undefined
      /** The worker that produced the item, in a distributed run: counted per worker on the line. */
      readonly worker?: string | undefined
    }
  ) => void
  readonly finish: () => void
}

/** Options of {@link make}. @category models @since 0.1.0 */
export interface Options {
  readonly label?: string
  /** Where to write. Default `process.stderr`. */
  readonly stream?: { write(text: string): unknown; readonly isTTY?: boolean; readonly columns?: number }
  /** Force the TTY bar on or off; default: bar when `process.stdout.isTTY` and `CI` is unset. */
  readonly tty?: boolean
  /** Milliseconds clock. Default `performance.now`. */
  readonly now?: () => number
}

const seconds = (value: number): string => {
  if (!Number.isFinite(value)) return "--"
  if (value < 60) return `${value.toFixed(0)}s`
  return `${Math.floor(value / 60)}m${String(Math.round(value % 60)).padStart(2, "0")}s`
}

/** Whether to draw a bar: a TTY and not CI. @category constructors @since 0.1.0 */
export const isInteractive = (): boolean => process.stdout.isTTY === true && !process.env.CI

/** A progress display. @category constructors @since 0.1.0 */
export const make = (options?: Options): Progress => {
  const stream = options?.stream ?? process.stderr
  const tty = options?.tty ?? isInteractive()
  const now = options?.now ?? (() => performance.now())
  const label = options?.label ?? "eval"
  let total = 0
  let done = 0
  let errors = 0
  let startDone = 0
  let startedAt = 0
  let lastDecile = -1
  const limits = { retries: 0, waitMillis: 0, http429: 0, timeouts: 0 }
  const workers = new Map<string, number>()
  const line = (): string => {
    const elapsed = (now() - startedAt) / 1000
    const rate = elapsed > 0 ? (done - startDone) / elapsed : 0
    const eta = rate > 0 ? (total - done) / rate : Number.POSITIVE_INFINITY
    // the rate limiter's work, once there is any: waits, retries, 429s, cut hung calls
    const limiter = limits.retries + limits.waitMillis + limits.http429 + limits.timeouts > 0
      ? ` | waited ${seconds(limits.waitMillis / 1000)} retries ${limits.retries} 429s ${limits.http429} timeouts ${limits.timeouts}`
      : ""
    // a distributed run: items per worker, in first-seen order
    const fleet = workers.size === 0 ? "" : ` | workers ${[...workers].map(([name, count]) => `${name} ${count}`).join(", ")}`
    return `${label} ${done}/${total} ${rate.toFixed(1)}/s ETA ${done >= total ? "0s" : seconds(eta)} errors ${errors}${limiter}${fleet}`
  }
  const render = () => {
    if (tty) {
      const width = 24
      const filled = total === 0 ? width : Math.round((done / total) * width)
      stream.write(`\r[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${line()}\u001b[K`)
    } else {
      const decile = total === 0 ? 10 : Math.floor((done / total) * 10)
      if (decile === lastDecile) return
      lastDecile = decile
      stream.write(`${line()}\n`)
    }
  }
  return {
    start: (state) => {
      total = state.total
      done = state.done
      errors = state.errors
      startDone = state.done
      startedAt = now()
      lastDecile = -1
      render()
    },
    advance: ({ error, rateLimit, worker }) => {
      done++
      if (worker !== undefined) workers.set(worker, (workers.get(worker) ?? 0) + 1)
      if (error) errors++
      if (rateLimit !== undefined) {
        limits.retries += rateLimit.retries
        limits.waitMillis += rateLimit.waitMillis
        limits.http429 += rateLimit.http429
        limits.timeouts += rateLimit.timeouts
      }
      render()
    },
    finish: () => {
      if (tty) stream.write("\n")
    }
  }
}

/** A progress sink that prints nothing. @category constructors @since 0.1.0 */
export const silent: Progress = { start: () => {}, advance: () => {}, finish: () => {} }
