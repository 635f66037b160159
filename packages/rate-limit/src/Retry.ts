/**
 * The one retry layer: decorrelated jitter and the retry schedule that honours
 * `retry-after` and retries only retryable `LlmError`s.
 * @since 0.1.0
 */
import { LlmError } from "@hasten/core"
import { Cause, Duration, Effect, Random, Schedule } from "effect"

/**
 * Decorrelated jitter (`sleep = min(cap, random(base, previous * 3))`, starting from
 * `previous = base`) as a `Schedule` that never ends; its output is the delay. Draws from
 * the given `Random`, or the fiber's (so `Random.withSeed` makes it deterministic).
 * @category schedules @since 0.1.0
 */
export const decorrelatedJitter = (options: {
  readonly base: Duration.Input
  readonly cap: Duration.Input
  readonly random?: Random.Random | undefined
}): Schedule.Schedule<Duration.Duration> =>
  Schedule.fromStep(Effect.sync(() => {
    const base = Duration.toMillis(Duration.fromInputUnsafe(options.base))
    const cap = Duration.toMillis(Duration.fromInputUnsafe(options.cap))
    let previous = base
    const draw = options.random === undefined
      ? Random.next
      : Effect.sync(() => options.random!.nextDoubleUnsafe())
    return (_now: number, _input: unknown) =>
      Effect.map(draw, (unit) => {
        const upper = Math.max(base, previous * 3)
        const sleep = Math.min(cap, base + (upper - base) * unit)
        previous = sleep
        const delay = Duration.millis(sleep)
        return [delay, delay] as [Duration.Duration, Duration.Duration]
      })
  }))

/** One backoff the retry schedule decided on. @category models @since 0.1.0 */
export interface Backoff {
  /** The attempt about to run (2 for the first retry). */
  readonly attempt: number
  readonly delay: Duration.Duration
  readonly error: LlmError.LlmError
  /** Whether the delay came from the provider's `retry-after` (capped). */
  readonly fromRetryAfter: boolean
}

/**
 * The one retry schedule: retries only retryable `LlmError`s (a transient 429,
 * overload, timeout, transport failure, 5xx), at most `maxRetries` times, waiting the
 * provider's `retry-after` capped at `retryAfterCapMillis` when it sent one and a
 * decorrelated-jitter delay otherwise. `onBackoff` sees each decision before the sleep.
 * @category schedules @since 0.1.0
 */
export const retrySchedule = (
  policy: {
    readonly maxRetries: number
    readonly retryBaseMillis: number
    readonly retryCapMillis: number
    readonly retryAfterCapMillis: number
    readonly random?: Random.Random | undefined
  },
  onBackoff: (backoff: Backoff) => Effect.Effect<void> = () => Effect.void
): Schedule.Schedule<Duration.Duration, unknown> =>
  Schedule.fromStepWithMetadata(
    Effect.map(
      Schedule.toStep(decorrelatedJitter({ base: policy.retryBaseMillis, cap: policy.retryCapMillis, random: policy.random })),
      (jitter) => (meta: Schedule.InputMetadata<unknown>) => {
        const error = meta.input
        if (!LlmError.isLlmError(error) || !error.retryable || meta.attempt > policy.maxRetries) {
          return Cause.done(Duration.zero)
        }
        return Effect.flatMap(jitter(meta.now, error), ([jittered]) => {
          const retryAfter = error.retryAfter
          const delay = retryAfter === undefined
            ? jittered
            : Duration.min(retryAfter, Duration.millis(policy.retryAfterCapMillis))
          return Effect.as(
            onBackoff({ attempt: meta.attempt + 1, delay, error, fromRetryAfter: retryAfter !== undefined }),
            [delay, delay] as [Duration.Duration, Duration.Duration]
          )
        })
      }
    )
  )
