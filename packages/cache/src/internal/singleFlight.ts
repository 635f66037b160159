/**
 * Single-flight for one-shot calls: N concurrent identical misses make one upstream
 * call, and the others wait for its result.
 * @since 0.1.0
 */
import type { LlmError } from "@hasten/core"
import { Deferred, Effect, Exit, Fiber, Metric, type Scope } from "effect"
import { coalesced } from "../CacheMetrics.js"

/** One upstream call in progress and who waits on it. */
export interface Flight<A> {
  readonly deferred: Deferred.Deferred<A, LlmError.LlmError>
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  waiters: number
}

/**
 * One upstream call per key at a time: the first caller forks `run` into the layer's
 * scope; later callers wait on the same result. The flight stays joinable until
 * `after` (the store write) finishes, so nobody slips between the result and the write.
 * When every waiter is interrupted, the upstream call is interrupted too.
 */
export const singleFlight = <A>(
  flights: Map<string, Flight<A>>,
  scope: Scope.Scope,
  key: string,
  run: Effect.Effect<A, LlmError.LlmError>,
  after: (value: A) => Effect.Effect<void>
): Effect.Effect<A, LlmError.LlmError> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      let flight = flights.get(key)
      if (flight === undefined) {
        const created: Flight<A> = { deferred: Deferred.makeUnsafe(), fiber: undefined, waiters: 0 }
        flight = created
        flights.set(key, created)
        const leave = Effect.sync(() => {
          if (flights.get(key) === created) flights.delete(key)
        })
        created.fiber = yield* Effect.forkIn(
          Effect.exit(run).pipe(
            // Write first, then leave the map, then answer: a caller that sees the answer
            // finds it in the store, and nobody joins a finished flight. (A write-behind
            // store makes the write a queue insert; its commit comes after the answer.)
            Effect.flatMap((exit) =>
              (Exit.isSuccess(exit) ? after(exit.value) : Effect.void).pipe(
                Effect.andThen(leave),
                Effect.andThen(Deferred.done(created.deferred, exit))
              )
            ),
            Effect.ensuring(leave)
          ),
          scope,
          // the upstream request goes out now, not on the scheduler's next turn
          { startImmediately: true }
        )
      } else {
        yield* Metric.update(coalesced, 1)
      }
      const joined = flight
      joined.waiters++
      return yield* restore(Deferred.await(joined.deferred)).pipe(
        Effect.onInterrupt(() =>
          Effect.suspend(() => {
            joined.waiters--
            if (joined.waiters > 0 || Deferred.isDoneUnsafe(joined.deferred) || joined.fiber === undefined) return Effect.void
            if (flights.get(key) === joined) flights.delete(key)
            return Fiber.interrupt(joined.fiber)
          })
        )
      )
    })
  )
