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

/** The breaker of `options.circuitBreaker`, or `undefined` when it is off. */
export const make = (options: Resolved) =>
  options.circuitBreaker === false ? Effect.succeed(undefined) : CircuitBreaker.make({
    tripPolicy: CircuitBreaker.consecutive(options.circuitBreaker.failures),
    openDuration: Schedule.exponential(Duration.millis(options.circuitBreaker.openMillis)).pipe(
      Schedule.upTo({ duration: Duration.minutes(1) })
    )
  })

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
