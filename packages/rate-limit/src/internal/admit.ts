/**
 * Admission of one attempt: the key's concurrency slot, a cooldown the store learned, header
 * holds and every budget window, taken at the moment of sending; then the settlement of
 * the attempt (reconciliation, header learning, AIMD, 429 feedback).
 * @internal
 */
import { LlmError } from "@hasten/core"
import { Cause, Clock, Deferred, Duration, Effect, Exit, Metric, Option } from "effect"
import type { RateLimiter } from "effect/persistence"
import type * as Scope from "effect/Scope"
import type { Admission, Cost } from "../Limiter.js"
import { http429Total, timeoutsTotal, waitSecondsTotal, waitsTotal } from "../Metrics.js"
import type { Resolved } from "../Options.js"
import type * as Aimd from "./aimd.js"
import { type Event, seconds } from "./events.js"
import type * as Fleet from "./fleet.js"
import type * as Headers from "./headers.js"
import type * as KeyStates from "./keyState.js"
import { storeError, tokensOf, type Window, type Windows } from "./windows.js"

/** How long the calls behind a key's first one wait for its response before going ahead on the assumed budgets. */
const PROBE_WAIT_MILLIS = 2_000

/** The `admit` of one limiter, over its windows, key states, AIMD and header learning. */
export const make = (deps: {
  readonly options: Resolved
  readonly limiter: RateLimiter.RateLimiter
  readonly windows: Windows
  readonly stateFor: ReturnType<typeof KeyStates.make>["stateFor"]
  readonly aimd: ReturnType<typeof Aimd.make>
  readonly learn: ReturnType<typeof Headers.make>["learn"]
  readonly documented: ReturnType<typeof Headers.make>["documented"]
  readonly event: Event
  /** The fleet state shared through Redis, when on. */
  readonly fleet?: Fleet.Fleet | undefined
  /** The limiter's running totals (mutated here). */
  readonly totals: { attempts: number; waits: number; waitMillis: number; http429: number; timeouts: number }
}) => {
  const totals = deps.totals
  const { options, limiter, stateFor, learn, documented, event, fleet } = deps
  const { consume, adjust } = deps.windows
  const { increase, decrease, observe } = deps.aimd

  /**
   * What a failed attempt settles: refunds its reserve as the key's policy says, then counts
   * a timeout, or a 429 (AIMD decrease, fleet hold, the store's adaptive cooldown) or an
   * overload. Shared by the full admission and the fast path (`fast.ts`).
   */
  const failed = (
    state: KeyStates.KeyState,
    key: string,
    provider: string,
    input: number,
    output: number,
    charged: ReadonlyArray<Window>,
    adaptive: { readonly epoch: number } | undefined,
    error: unknown
  ): Effect.Effect<void> =>
    Effect.gen(function*() {
      const policy = state.policy
      // The provider reported no usage for a failed call: give its tokens back, unless
      // its policy keeps them charged. The request itself stays counted unless the
      // policy says otherwise: providers count unsuccessful requests against the
      // request window (OpenAI: "unsuccessful requests contribute to your per-minute
      // limit"), so handing the place back would send more than the limit and turn
      // every fault into 429s that count too.
      const refundRequest = policy !== undefined && !policy.unsuccessfulRequestsCount ? -1 : 0
      if (policy?.unsuccessfulTokensCount !== true || refundRequest !== 0) {
        yield* adjust(
          charged,
          key,
          provider,
          policy?.unsuccessfulTokensCount === true ? 0 : -input,
          policy?.unsuccessfulTokensCount === true ? 0 : -output,
          refundRequest
        )
      }
      if (!LlmError.isLlmError(error)) return
      const reason = error.reason
      if (reason._tag === "Timeout") {
        totals.timeouts++
        yield* Metric.update(Metric.withAttributes(timeoutsTotal, { key }), 1)
      }
      if (reason._tag === "RateLimited") {
        totals.http429++
        yield* Metric.update(Metric.withAttributes(http429Total, { key, scope: reason.scope }), 1)
        if (reason.scope === "quota") return
        yield* decrease(key, state, `429_${reason.scope}`, 0.5)
        // the other processes hold the key for the retry-after (this one waits it in its retry schedule)
        if (fleet !== undefined && reason.retryAfterMillis !== undefined && reason.retryAfterMillis > 0) {
          yield* fleet.publish(key, { hold: Math.min(reason.retryAfterMillis, options.retryAfterCapMillis) })
        }
        if (adaptive !== undefined && reason.retryAfterMillis !== undefined) {
          // the store paces the key from now on: its calls take the full admission (fast.ts)
          state.adaptiveFed = true
          yield* limiter.adaptiveFeedback({
            key: `${key}:adaptive`,
            epoch: adaptive.epoch,
            tokens: 1,
            status: 429,
            retryAfter: Duration.millis(Math.min(reason.retryAfterMillis, options.retryAfterCapMillis))
          })
        }
      } else if (reason._tag === "Overloaded") {
        yield* decrease(key, state, "overloaded", 0.75)
      }
    }).pipe(Effect.catch(() => Effect.void))

  const admit = (cost: Cost): Effect.Effect<Admission, LlmError.LlmError, Scope.Scope> =>
    Effect.gen(function*() {
      const provider = cost.provider ?? cost.key
      const key = cost.key
      const input = cost.inputTokens ?? 0
      const output = cost.outputTokens ?? 0
      const state = stateFor(key)
      // the key's first call: what the fleet holds for it (a hold, a decrease) is known before it goes
      if (state.fleetReady !== undefined && fleet !== undefined) yield* fleet.ready(state)
      if (state.policy === undefined && cost.policy !== undefined) state.policy = cost.policy
      if (!state.learnt && state.policy?.documentedLimits !== undefined) yield* documented(state, key)
      // Cautious start: a provider that states its limits in headers gets one call first, so
      // a burst is paced by the budgets it states rather than by guesses.
      let probing = false
      if (state.probe !== "done" && options.learnFromHeaders && state.policy?.headerWindowMillis !== undefined) {
        if (state.probe === "none") {
          state.probe = "running"
          probing = true
          yield* Effect.addFinalizer(() => Effect.suspend(() => endProbe(state)))
        } else {
          yield* Effect.timeoutOption(Deferred.await(state.probeDone), Duration.millis(PROBE_WAIT_MILLIS))
        }
      }
      const windows = state.windows
      for (const window of windows) {
        const tokens = tokensOf(window.unit, input, output)
        if (window.unit !== "request" && tokens > window.limit) {
          return yield* LlmError.make(
            provider,
            new LlmError.InvalidRequest({
              description: `request needs ${tokens} ${window.name.replace("_", " ")} (estimated prompt ${input} + maxTokens ${output}) ` +
                `but the budget for ${key} is ${window.limit} per ${
                  window.windowMillis / 1000
                } s: it can never be admitted; shorten it or lower maxTokens`
            })
          )
        }
      }
      const start = yield* Clock.currentTimeMillis
      yield* state.slots.takeScoped
      return yield* Effect.gen(function*() {
        const begin = yield* Clock.currentTimeMillis
        let reason = "none"
        let longest = 0
        const waitFor = (millis: number, why: string) => {
          if (millis >= longest) {
            longest = millis
            reason = why
          }
          return Effect.sleep(Duration.millis(millis))
        }
        // A cooldown after a 429 (shared through the store) or the pace the store learned.
        const requestWindow = state.requestWindow
        const adaptive = requestWindow === undefined ? undefined : yield* limiter.adaptiveConsume({
          key: `${key}:adaptive`,
          tokens: 1,
          fallbackLimit: requestWindow.limit,
          fallbackWindow: Duration.millis(requestWindow.windowMillis)
        })
        // the store has forgotten the key's 429s (its adaptive state expired): the fast path may
        // take the key's calls again (fast.ts)
        if (adaptive?.phase === "inactive" && fleet === undefined) state.adaptiveFed = false
        if (adaptive !== undefined && Duration.isPositive(adaptive.delay)) {
          yield* waitFor(Duration.toMillis(adaptive.delay), `adaptive_${adaptive.phase}`)
        }
        // Take every window at the moment of sending, never a future slot: a fiber that wakes
        // late (a busy event loop) re-checks instead of bunching with the calls after it.
        // counted while queued or waiting here: the fast path (fast.ts) does not overtake them
        yield* Effect.acquireUseRelease(
          Effect.sync(() => state.admitting++),
          () =>
            state.admission.withPermits(1)(Effect.gen(function*() {
              while (true) {
                const now = yield* Clock.currentTimeMillis
                if (state.holdUntil > now) {
                  yield* waitFor(state.holdUntil - now, "headers")
                  continue
                }
                const taken: Array<readonly [Window, number]> = []
                let retryAfter = 0
                let blocking = "none"
                // the budgets may have been learnt while this call waited
                for (const window of state.windows) {
                  const tokens = tokensOf(window.unit, input, output)
                  if (tokens === 0) {
                    continue
                  }
                  const exit = yield* Effect.exit(consume(window, key, tokens, true, "fail"))
                  if (Exit.isSuccess(exit)) {
                    taken.push([window, tokens])
                    continue
                  }
                  const error = Cause.findErrorOption(exit.cause)
                  if (Option.isSome(error) && error.value.reason._tag === "RateLimitExceeded") {
                    retryAfter = Math.max(1, Duration.toMillis(error.value.reason.retryAfter))
                    blocking = window.name
                    break
                  }
                  return yield* Effect.failCause(exit.cause)
                }
                if (retryAfter === 0) break
                yield* Effect.forEach(taken, ([window, tokens]) => consume(window, key, -tokens, false, "delay"), { discard: true })
                yield* waitFor(retryAfter, blocking)
              }
            })),
          () => Effect.sync(() => state.admitting--)
        )
        const end = yield* Clock.currentTimeMillis
        const wait = end - begin
        totals.attempts++
        if (wait > 0) {
          totals.waits++
          totals.waitMillis += wait
          // Metrics count every wait; the log only shows waits visible at its precision (10 ms).
          if (wait >= 10) {
            yield* event(`pre_wait=${seconds(wait)}`, { event: "rate_limit.pre_wait", key, pre_wait_seconds: seconds(wait), reason })
          }
          yield* Metric.update(Metric.withAttributes(waitsTotal, { key, reason }), 1)
          yield* Metric.update(Metric.withAttributes(waitSecondsTotal, { key, reason }), wait / 1000)
        }
        let settled = false
        const once = (effect: Effect.Effect<void>) =>
          Effect.suspend(() => {
            if (settled) {
              return Effect.void
            }
            settled = true
            return effect
          })
        const policy = state.policy
        const accounting = options.tokenAccounting ?? (policy?.tokenAccounting === "reconciled" ? "usage" : "reserved")
        const charged = state.windows
        return {
          waitMillis: end - start,
          deadlineMillis: deadlineOf(options, state, output),
          succeed: (observed) =>
            once(
              Effect.gen(function*() {
                const usage = observed?.usage
                const latency = (yield* Clock.currentTimeMillis) - end
                state.latency?.record(latency, usage?.outputTokens ?? output)
                if (usage !== undefined && accounting === "usage") {
                  yield* adjust(charged, key, provider, usage.inputTokens - input, usage.outputTokens - output)
                }
                yield* learn(state, observed?.rateLimit, key, { input, output })
                if (probing) yield* endProbe(state)
                observe(state, latency)
                yield* increase(key, state)
              }).pipe(Effect.catch(() => Effect.void))
            ),
          fail: (error) =>
            once(
              Effect.andThen(probing ? endProbe(state) : Effect.void, failed(state, key, provider, input, output, charged, adaptive, error))
            )
        } satisfies Admission
      }).pipe(Effect.mapError(storeError(provider)))
    })

  return { admit, failed }
}

/** An attempt's deadline: the configured one, or the key's learnt one for `output` tokens; `undefined` when off. */
export const deadlineOf = (options: Resolved, state: KeyStates.KeyState, output: number): (() => number) | undefined =>
  options.timeout === false
    ? undefined
    : options.requestTimeoutMillis !== undefined
    ? () => options.requestTimeoutMillis!
    : state.latency === undefined
    ? undefined
    : () => state.latency!.deadlineMillis(output)

/** Ends a key's cautious start: the calls waiting behind its first one go ahead. */
const endProbe = (state: KeyStates.KeyState) =>
  Effect.suspend(() => {
    if (state.probe === "done") return Effect.void
    state.probe = "done"
    return Deferred.succeed(state.probeDone, undefined)
  })
