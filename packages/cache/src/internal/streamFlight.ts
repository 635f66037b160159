/**
 * Single-flight for streams, with recording: one upstream stream per key at a time,
 * its chunks recorded as they arrive so a caller joining late still receives every
 * chunk from the first; the recording is handed to `after` (the store write) only once
 * the stream has finished successfully.
 * @since 0.1.0
 */
import type { LlmError } from "@hasten/core"
import { Deferred, Effect, Exit, Fiber, Metric, Option, type Scope, Stream } from "effect"
import { coalesced } from "../CacheMetrics.js"

/** One upstream stream in progress: what it has emitted so far, how it ended, who follows it. */
export interface StreamFlight<A> {
  readonly chunks: Array<A>
  exit: Exit.Exit<void, LlmError.LlmError> | undefined
  signal: Deferred.Deferred<void>
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  waiters: number
}

const notify = <A>(flight: StreamFlight<A>): void => {
  const previous = flight.signal
  flight.signal = Deferred.makeUnsafe()
  Deferred.doneUnsafe(previous, Effect.void)
}

/** A follower of a stream flight: every chunk from the first, then the flight's end. */
const follow = <A>(flight: StreamFlight<A>): Stream.Stream<A, LlmError.LlmError> =>
  Stream.paginate(0, (index: number): Effect.Effect<
    readonly [ReadonlyArray<A>, Option.Option<number>],
    LlmError.LlmError
  > => {
    if (index < flight.chunks.length) {
      return Effect.succeed([flight.chunks.slice(index), Option.some(flight.chunks.length)] as const)
    }
    const exit = flight.exit
    if (exit !== undefined) {
      return Exit.isSuccess(exit) ? Effect.succeed([[], Option.none()] as const) : Effect.failCause(exit.cause)
    }
    return Effect.as(Deferred.await(flight.signal), [[], Option.some(index)] as const)
  })

/**
 * Joins the stream flight under `key`, starting `upstream` in `scope` if there is none.
 * `after` receives the recorded chunks only after the terminal event; failed and
 * interrupted streams are never handed over. When every follower is gone before the
 * end, the upstream stream is interrupted.
 */
export const streamFlight = <A>(
  flights: Map<string, StreamFlight<A>>,
  scope: Scope.Scope,
  key: string,
  upstream: Stream.Stream<A, LlmError.LlmError>,
  after: (chunks: ReadonlyArray<A>) => Effect.Effect<void>
): Stream.Stream<A, LlmError.LlmError> =>
  Stream.unwrap(
    Effect.uninterruptible(Effect.gen(function*() {
      let flight = flights.get(key)
      if (flight === undefined) {
        const created: StreamFlight<A> = { chunks: [], exit: undefined, signal: Deferred.makeUnsafe(), fiber: undefined, waiters: 0 }
        flight = created
        flights.set(key, created)
        created.fiber = yield* Effect.forkIn(
          Stream.runForEach(upstream, (chunk) =>
            Effect.sync(() => {
              created.chunks.push(chunk)
              notify(created)
            })).pipe(
              Effect.exit,
              Effect.flatMap((exit) =>
                // Stored only after the terminal event; failures and interruptions never are.
                (Exit.isSuccess(exit) ? after(created.chunks) : Effect.void).pipe(
                  Effect.andThen(Effect.sync(() => {
                    if (flights.get(key) === created) flights.delete(key)
                    created.exit = exit
                    notify(created)
                  }))
                )
              ),
              Effect.onInterrupt(() =>
                Effect.sync(() => {
                  if (created.exit === undefined) {
                    created.exit = Exit.interrupt()
                    notify(created)
                  }
                })
              ),
              Effect.ensuring(Effect.sync(() => {
                if (flights.get(key) === created) flights.delete(key)
              }))
            ),
          scope
        )
      } else {
        yield* Metric.update(coalesced, 1)
      }
      const joined = flight
      joined.waiters++
      return follow(joined).pipe(
        Stream.onExit(() =>
          Effect.suspend(() => {
            joined.waiters--
            if (joined.waiters > 0 || joined.exit !== undefined || joined.fiber === undefined) return Effect.void
            if (flights.get(key) === joined) flights.delete(key)
            return Fiber.interrupt(joined.fiber)
          })
        )
      )
    }))
  )
