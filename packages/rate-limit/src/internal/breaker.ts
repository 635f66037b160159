/**
 * The circuit breaker on repeated 5xx/overloads (`effect/persistence` `CircuitBreaker`):
 * which outcomes trip it, and its errors as the retryable `Overloaded` calls fail with.
 * @internal
 */
import { LlmError } from "@hasten/core"
import { Cause, Duration, Effect, Exit, Option, Schedule } from "effect"
import { CircuitBreaker } from "effect/persistence"
import type { Resolved } from "../Options.js"
import { seconds } from "./events.js"

/**
 * What the fleet state knows of a key's circuit: how long another process's breaker keeps
 * it open (milliseconds, 0 when closed), and where this process's trips are published.
 */
export interface Shared {
  readonly openFor: (key: string) => Effect.Effect<number>
  readonly opened: (key: string, millis: number) => Effect.Effect<void>
}

/**
 * The store with the fleet's trips over it: a key another process opened rejects calls
 * as an open circuit of this process does (`CircuitOpen` with the time left), and each
 * trip of this process is published. Closed, half-open and probes stay per process.
 */
const overlay = (store: CircuitBreaker.CircuitBreakerStore["Service"], shared: Shared) =>
  CircuitBreaker.CircuitBreakerStore.of({
    admit: (key) =>
      Effect.flatMap(shared.openFor(key), (millis) =>
        millis > 0
          ? Effect.fail(
            new CircuitBreaker.CircuitBreakerError({ reason: new CircuitBreaker.CircuitOpen({ key, retryAfter: Duration.millis(millis) }) })
          )
          : store.admit(key)),
    record: (outcome) =>
      Effect.tap(store.record(outcome), (transition) =>
        transition?.to === "Open" ? shared.opened(outcome.key, Duration.toMillis(transition.retryAfter)) : Effect.void),
    state: (key) =>
      Effect.flatMap(shared.openFor(key), (millis): Effect.Effect<CircuitBreaker.State, CircuitBreaker.CircuitBreakerError> =>
        millis > 0 ? Effect.succeed({ _tag: "Open", key, retryAfter: Duration.millis(millis), consecutiveOpenings: 1 }) : store.state(key))
  })

/**
 * The breaker of `options.circuitBreaker`, or `undefined` when it is off; with `shared`
 * (fleet state on), trips are shared between the processes.
 */
export const make = (options: Resolved, shared?: Shared) => {
  const settings = options.circuitBreaker
  return settings === false ? Effect.succeed(undefined) : Effect.gen(function*() {
    const breaker = CircuitBreaker.make({
      tripPolicy: CircuitBreaker.consecutive(settings.failures),
      openDuration: Schedule.exponential(Duration.millis(settings.openMillis)).pipe(
        Schedule.upTo({ duration: Duration.minutes(1) })
      )
    })
    if (shared === undefined) return yield* breaker
    const store = yield* CircuitBreaker.CircuitBreakerStore
    return yield* Effect.provideService(breaker, CircuitBreaker.CircuitBreakerStore, overlay(store, shared))
  })
}

/** Server errors and overloads count as failures; every other error is ignored. */
export const classify = (exit: Exit.Exit<unknown, unknown>): CircuitBreaker.Outcome => {
  if (Exit.isSuccess(exit)) return CircuitBreaker.success
  const error = Cause.findErrorOption(exit.cause)
  if (Option.isSome(error) && LlmError.isLlmError(error.value)) {
    const reason = error.value.reason
    if (reason._tag === "ServerError" || reason._tag === "Overloaded") {
      return CircuitBreaker.failure(
        reason._tag === "Overloaded" && reason.retryAfterMillis !== undefined
          ? { retryAfter: Duration.millis(reason.retryAfterMillis) }
          : undefined
      )
    }
  }
  return CircuitBreaker.ignored
}

/** A breaker error as a retryable `Overloaded` carrying the remaining open time. */
export const breakerError = (provider: string, key: string) => (error: CircuitBreaker.CircuitBreakerError) => {
  const reason = error.reason
  return LlmError.make(
    provider,
    new LlmError.Overloaded({
      description: reason._tag === "CircuitOpen"
        ? `circuit open for ${key} after repeated server errors; retry in ${seconds(Duration.toMillis(reason.retryAfter))}s`
        : reason._tag === "CircuitHalfOpen"
        ? `circuit half-open for ${key}: a probe call is running`
        : `circuit breaker store: ${reason.message}`,
      ...(reason._tag === "CircuitOpen" ? { retryAfterMillis: Duration.toMillis(reason.retryAfter) } : {})
    })
  )
}
