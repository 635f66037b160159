/**
 * Dynamic batch size: how many items run at once. Starts from free memory and the
 * per-sequence memory cost, shrinks on allocation failures or falling throughput, and
 * grows while throughput rises (hill climbing on measured items/s).
 * @since 0.1.0
 */
import { Effect, Semaphore } from "effect"
import { freemem } from "node:os"

/** Options for {@link make}. @category models @since 0.1.0 */
export interface Options {
  /** Upper bound on items in flight. */
  readonly max: number
  /** Lower bound (default 1). */
  readonly min?: number
  /** Start here instead of deriving from memory. */
  readonly initial?: number
  /** Bytes one more in-flight item costs (a local model's KV cache per sequence); with it, the start is capped by free memory. */
  readonly perItemBytes?: number
  /** Fraction of free memory the batch may use (default 0.5). */
  readonly memoryFraction?: number
  /** Whether to adapt at all (default true); false keeps the initial size. */
  readonly adaptive?: boolean
  /** Completions between two throughput measurements (default: the current size, at least 4). */
  readonly sampleSize?: number
}

/** The live controller. @category models @since 0.1.0 */
export interface Controller {
  /** The current size (permits). */
  readonly current: () => number
  /** Runs `effect` holding one slot. */
  readonly withSlot: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Records a finished item. */
  readonly record: (outcome: "ok" | "error") => Effect.Effect<void>
  /** Halves the size after an allocation failure. */
  readonly shrinkOnAllocationFailure: Effect.Effect<void>
  /** Every size change, oldest first (for metrics and tests). */
  readonly history: () => ReadonlyArray<number>
}

/**
 * The starting size: `max`, capped by `memoryFraction × free memory / perItemBytes`.
 * @category constructors @since 0.1.0
 */
export const initialSize = (options: Options, freeBytes: number = freemem()): number => {
  const min = options.min ?? 1
  if (options.initial !== undefined) return Math.max(min, Math.min(options.max, options.initial))
  if (options.perItemBytes === undefined || options.perItemBytes <= 0) return options.max
  const byMemory = Math.floor((freeBytes * (options.memoryFraction ?? 0.5)) / options.perItemBytes)
  return Math.max(min, Math.min(options.max, byMemory))
}

/**
 * Creates a controller. Size changes go through `Semaphore.resize`, so items already
 * running are never cancelled by a shrink.
 * @category constructors @since 0.1.0
 */
export const make = (options: Options): Effect.Effect<Controller> =>
  Effect.gen(function*() {
    const min = options.min ?? 1
    let size = initialSize(options)
    const semaphore = yield* Semaphore.make(size)
    const history: Array<number> = [size]
    let completions = 0
    let windowStart: number | undefined
    let lastThroughput: number | undefined
    let direction: 1 | -1 = 1

    const setSize = (next: number) =>
      Effect.suspend(() => {
        const bounded = Math.max(min, Math.min(options.max, next))
        if (bounded === size) return Effect.void
        size = bounded
        history.push(size)
        return semaphore.resize(size)
      })

    const record = (outcome: "ok" | "error") =>
      Effect.clockWith((clock) =>
        Effect.suspend(() => {
          if (options.adaptive === false) return Effect.void
          const now = clock.currentTimeMillisUnsafe()
          if (windowStart === undefined) windowStart = now
          if (outcome === "ok") completions++
          const sample = options.sampleSize ?? Math.max(4, size)
          if (completions < sample) return Effect.void
          const elapsed = Math.max(1, now - windowStart)
          const throughput = completions / elapsed
          completions = 0
          windowStart = now
          const previous = lastThroughput
          lastThroughput = throughput
          if (previous === undefined) return setSize(size + direction)
          // Keep going while it pays; turn around when throughput falls by more than 5 %.
          if (throughput < previous * 0.95) direction = direction === 1 ? -1 : 1
          else if (throughput <= previous * 1.05) return Effect.void
          return setSize(size + direction)
        })
      )

    return {
      current: () => size,
      withSlot: (effect) => semaphore.withPermits(1)(effect),
      record,
      shrinkOnAllocationFailure: Effect.suspend(() => {
        direction = -1
        lastThroughput = undefined
        return setSize(Math.floor(size / 2))
      }),
      history: () => history
    }
  })

/** Whether an error looks like a memory-allocation failure of a backend. @category predicates @since 0.1.0 */
export const isAllocationFailure = (error: unknown): boolean => {
  const text = error instanceof Error
    ? error.message
    : typeof error === "object" && error !== null && "message" in error
    ? String((error as { message: unknown }).message)
    : String(error)
  return /out of memory|failed to allocate|allocation failed|ENOMEM|insufficient memory|no free sequence|kv cache/i.test(text)
}
