/**
 * Single-flight for one-shot calls: N concurrent identical misses make one upstream
 * call, and the others wait for its result.
 * @since 0.1.0
 */
import type { LlmError } from "@hasten/core"
import { Effect, Exit, Fiber, type Scope } from "effect"
import { coalesced } from "../CacheMetrics.js"

/** One upstream call in progress and who waits on it. */
export interface Flight<A> {
  exit: Exit.Exit<A, LlmError.LlmError> | undefined
  readonly listeners: Set<(exit: Exit.Exit<A, LlmError.LlmError>) => void>
  fiber: Fiber.Fiber<unknown, unknown> | undefined
}

/** The calls in flight of one cache, by key; closing the cache's scope interrupts them. */
export interface Flights<A> {
  readonly byKey: Map<string, Flight<A>>
  readonly live: Set<Fiber.Fiber<unknown, unknown>>
}

/** The flights of one cache, interrupted when its scope closes. */
export const makeFlights = <A>(): Effect.Effect<Flights<A>, never, Scope.Scope> =>
  Effect.suspend(() => {
    const flights: Flights<A> = { byKey: new Map(), live: new Set() }
    return Effect.as(Effect.addFinalizer(() => Effect.suspend(() => Fiber.interruptAll([...flights.live]))), flights)
  })

/**
 * One upstream call per key at a time: the first caller starts `run` on a fiber of its own
 * (with the caller's context, owned by the cache's scope); later callers wait for the same
 * result. The flight stays joinable until `after` (the store write) finishes, so nobody slips
 * between the result and the write. When every waiter is interrupted, the upstream call is
 * interrupted too. Joining, starting and waiting happen in one synchronous step (no
 * `Deferred`, no generator): this is every cache miss's path.
 */
export const singleFlight = <A>(
  flights: Flights<A>,
  key: string,
  run: Effect.Effect<A, LlmError.LlmError>,
  after: (value: A) => Effect.Effect<void>
): Effect.Effect<A, LlmError.LlmError> =>
  Effect.withFiber((caller) => {
    let flight = flights.byKey.get(key)
    if (flight === undefined) {
      const created: Flight<A> = { exit: undefined, listeners: new Set(), fiber: undefined }
      flight = created
      flights.byKey.set(key, created)
      const leave = () => {
        if (flights.byKey.get(key) === created) flights.byKey.delete(key)
      }
      const body = Effect.exit(run).pipe(
        // Write first, then leave the map, then answer: a caller that sees the answer
        // finds it in the store, and nobody joins a finished flight. (A write-behind
        // store makes the write a queue insert; its commit comes after the answer.)
        Effect.flatMap((exit) =>
          Effect.as(Exit.isSuccess(exit) ? after(exit.value) : Effect.void, exit).pipe(
            Effect.map((exit) => {
              leave()
              created.exit = exit
              const listeners = [...created.listeners]
              created.listeners.clear()
              for (const listener of listeners) listener(exit)
            })
          )
        ),
        Effect.ensuring(Effect.sync(leave))
      )
      // the upstream request goes out now, not on the scheduler's next turn
      const fiber = Effect.runForkWith(caller.context)(body)
      if (fiber.pollUnsafe() === undefined) {
        created.fiber = fiber
        flights.live.add(fiber)
        fiber.addObserver((ended) => {
          flights.live.delete(fiber)
          // interrupted before it answered (the cache's scope closed): nobody is left waiting
          if (created.exit === undefined) {
            created.exit = ended as unknown as Exit.Exit<A, LlmError.LlmError>
            const listeners = Array.from(created.listeners)
            created.listeners.clear()
            for (const listener of listeners) listener(created.exit)
          }
        })
      }
    } else {
      coalesced.updateUnsafe(1, caller.context)
    }
    const joined = flight
    if (joined.exit !== undefined) return joined.exit
    return Effect.callback<A, LlmError.LlmError>((resume) => {
      const listener = (exit: Exit.Exit<A, LlmError.LlmError>) => resume(exit)
      joined.listeners.add(listener)
      // this caller was interrupted: the last one to go interrupts the upstream call
      return Effect.suspend(() => {
        joined.listeners.delete(listener)
        if (joined.listeners.size > 0 || joined.exit !== undefined || joined.fiber === undefined) return Effect.void
        if (flights.byKey.get(key) === joined) flights.byKey.delete(key)
        return Fiber.interrupt(joined.fiber)
      })
    })
  })
