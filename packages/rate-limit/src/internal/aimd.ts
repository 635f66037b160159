/**
 * Adaptive concurrency (AIMD): a window of `limit` successes adds one permit; a 429 halves
 * the limit and an overload takes a quarter off, at most once a second.
 * @internal
 */
import { Clock, Effect, Metric } from "effect"
import { concurrencyLimit } from "../Metrics.js"
import type { Resolved } from "../Options.js"
import type { Event } from "./events.js"
import type { KeyState } from "./keyState.js"

const DECREASE_INTERVAL_MILLIS = 1000

/** The increase and decrease of one limiter. */
export const make = (options: Resolved, event: Event) => {
  const resize = (key: string, state: KeyState, limit: number) =>
    Effect.gen(function*() {
      state.successes = 0
      if (limit === state.limit) return
      state.limit = limit
      yield* state.semaphore.resize(limit)
      yield* Metric.update(Metric.withAttributes(concurrencyLimit, { key }), limit)
    })

  const increase = (key: string, state: KeyState) =>
    Effect.suspend(() => {
      if (!options.adaptiveConcurrency || state.limit >= state.maxLimit) return Effect.void
      state.successes++
      return state.successes >= state.limit ? resize(key, state, state.limit + 1) : Effect.void
    })

  // A 429 halves the limit; an overload (often a lone 503 that says nothing about this
  // client's pace) takes a quarter off.
  const decrease = (key: string, state: KeyState, reason: string, factor: number) =>
    Effect.gen(function*() {
      if (!options.adaptiveConcurrency) return
      const now = yield* Clock.currentTimeMillis
      // One decrease per burst: the calls already in flight answer 429 together.
      if (now - state.lastDecrease < DECREASE_INTERVAL_MILLIS) return
      state.lastDecrease = now
      const next = Math.max(1, Math.floor(state.limit * factor))
      if (next < state.limit) {
        yield* event(`concurrency=${next}`, { event: "rate_limit.concurrency", key, concurrency: next, reason })
      }
      yield* resize(key, state, next)
    })

  return { increase, decrease }
}
