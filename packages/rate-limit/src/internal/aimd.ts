/**
 * Adaptive concurrency (AIMD): a window of `limit` successes adds one permit (doubles the
 * limit during slow start, which ends at the first decrease); a 429 halves the limit and an
 * overload takes a quarter off, at most once a second. Once the provider has stated its
 * limits and `maxConcurrency` is unset, the ceiling follows Little's law: twice the stated
 * request rate × the key's recent latency.
 * @internal
 */
import { Clock, Effect, Metric } from "effect"
import { concurrencyLimit } from "../Metrics.js"
import type { Resolved } from "../Options.js"
import type { Event } from "./events.js"
import type { KeyState } from "./keyState.js"

/** The shortest time between two decreases of a key (one per burst of 429s). */
export const DECREASE_INTERVAL_MILLIS = 1000

/**
 * The increase and decrease of one limiter; `shared` publishes each decrease to the other
 * processes of the fleet (with fleet state on), which apply it to their own limits.
 */
export const make = (
  options: Resolved,
  event: Event,
  shared?: (key: string, factor: number, reason: string) => Effect.Effect<void>
) => {
  const resize = (key: string, state: KeyState, limit: number) =>
    Effect.gen(function*() {
      state.successes = 0
      if (limit === state.limit) return
      state.limit = limit
      state.slots.resize(limit)
      yield* Metric.update(Metric.withAttributes(concurrencyLimit, { key }), limit)
    })

  /** Counts a success now; the effect that raises the limit when a window of successes is complete, else `undefined`. */
  const increaseNow = (key: string, state: KeyState): Effect.Effect<void> | undefined => {
    if (!options.adaptiveConcurrency || state.limit >= state.maxLimit) return undefined
    state.successes++
    if (state.successes < state.limit) return undefined
    return resize(key, state, Math.min(state.maxLimit, state.slowStart ? state.limit * 2 : state.limit + 1))
  }

  const increase = (key: string, state: KeyState) => Effect.suspend(() => increaseNow(key, state) ?? Effect.void)

  /** Records a success's latency and, once the provider has stated its limits, moves the ceiling with it. */
  const observe = (state: KeyState, latencyMillis: number) => {
    state.latencyMillis = state.latencyMillis === 0 ? latencyMillis : 0.9 * state.latencyMillis + 0.1 * latencyMillis
    if (!state.learnt || options.configured.maxConcurrency) return
    let perMilli = Infinity
    for (const window of state.windows) {
      if (window.unit === "request") perMilli = Math.min(perMilli, window.limit / window.windowMillis)
    }
    state.maxLimit = perMilli === Infinity
      ? options.learntMaxConcurrency
      : Math.min(options.learntMaxConcurrency, Math.max(2, Math.ceil(2 * perMilli * state.latencyMillis) + 1))
  }

  // A 429 halves the limit; an overload (often a lone 503 that says nothing about this
  // client's pace) takes a quarter off. `fromFleet`: another process's decrease, applied
  // here and not published again.
  const decrease = (key: string, state: KeyState, reason: string, factor: number, fromFleet = false) =>
    Effect.gen(function*() {
      if (!options.adaptiveConcurrency) return
      const now = yield* Clock.currentTimeMillis
      // One decrease per burst: the calls already in flight answer 429 together.
      if (now - state.lastDecrease < DECREASE_INTERVAL_MILLIS) return
      state.lastDecrease = now
      state.slowStart = false
      const next = Math.max(1, Math.floor(state.limit * factor))
      if (next < state.limit) {
        yield* event(`concurrency=${next}`, { event: "rate_limit.concurrency", key, concurrency: next, reason })
      }
      yield* resize(key, state, next)
      if (!fromFleet && shared !== undefined) yield* shared(key, factor, reason)
    })

  return { increase, increaseNow, decrease, observe }
}
