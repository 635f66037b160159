/**
 * Store access under the configured error policy: `bypass` turns a failed operation into
 * a fallback value with one warning per outage, `fail` into an `LlmError`.
 * @since 0.1.0
 */
import { LlmError } from "@hasten/core"
import { Effect, Metric } from "effect"
import type { OnStoreError } from "../CacheConfig.js"
import type { CacheStoreError, CacheStoreService } from "../CacheStore.js"
import { metricsFor } from "./metrics.js"

/** Store access with the configured error policy, one warning per outage, and metrics. */
export const makeGuard = (store: CacheStoreService, onStoreError: OnStoreError) => {
  let degraded = false
  const storeErrorsForStore = metricsFor(store.name).storeErrors
  const recovered = Effect.suspend(() => {
    if (!degraded) return Effect.void
    degraded = false
    return Effect.logInfo(`cache store ${store.name} is reachable again`)
  })
  const guard = <A>(operation: Effect.Effect<A, CacheStoreError>, fallback: A): Effect.Effect<A, LlmError.LlmError> =>
    (degraded ? Effect.tap(operation, () => recovered) : operation).pipe(
      Effect.catch((error) =>
        Effect.andThen(
          Metric.update(storeErrorsForStore, 1),
          onStoreError === "fail"
            ? Effect.fail(LlmError.make("cache", new LlmError.Transport({ description: error.message })))
            : Effect.suspend(() => {
              if (degraded) return Effect.succeed(fallback)
              degraded = true
              return Effect.as(
                Effect.logWarning(`${error.message}; the cache is bypassed (calls go upstream) until the store recovers`),
                fallback
              )
            })
        )
      )
    )
  /** Whether the store is failing now (its operations then go through `guard`, which notices the recovery). */
  guard.degraded = (): boolean => degraded
  return guard
}
