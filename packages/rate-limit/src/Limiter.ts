/**
 * The limiter service: per-key budgets (concurrency, request and token windows), header
 * holds, adaptive concurrency, the circuit breaker and the retry schedule for any effect,
 * over a `RateLimiter` store from `effect/persistence` (memory or Redis).
 * @since 0.1.0
 */
import { LlmError, type RateLimitHeaders, type RateLimitPolicy } from "@hasten/core"
import { Cause, Clock, Context, Duration, Effect, Exit, Fiber, Layer, Metric, Option, Random } from "effect"
import { CircuitBreaker, RateLimiter } from "effect/persistence"
import type * as Scope from "effect/Scope"
import * as Admit from "./internal/admit.js"
import * as Aimd from "./internal/aimd.js"
import * as Breaker from "./internal/breaker.js"
import { DeadlineWheel, type Watch as DeadlineWatch } from "./internal/deadline.js"
import * as Events from "./internal/events.js"
import * as Fast from "./internal/fast.js"
import * as Fleet from "./internal/fleet.js"
import * as Headers from "./internal/headers.js"
import * as KeyStates from "./internal/keyState.js"
import * as Windows from "./internal/windows.js"
import * as IoRedis from "./IoRedis.js"
import { retriesTotal } from "./Metrics.js"
import { type Options, resolve, type Resolved } from "./Options.js"
import { type Backoff, retrySchedule } from "./Retry.js"

/** What a call costs against its key's budgets. @category models @since 0.1.0 */
export interface Cost {
  /** The budget key; calls sharing it share every budget. */
  readonly key: string
  /** Input tokens reserved before the call (or all tokens for a non-LLM call). Default 0. */
  readonly inputTokens?: number | undefined
  /** Output tokens reserved before the call. Default 0. */
  readonly outputTokens?: number | undefined
  /** The name errors carry as `provider` (default: the key). */
  readonly provider?: string | undefined
  /** How the provider admits and counts calls (`Llm.rateLimitPolicy`); the first call of a key sets it. */
  readonly policy?: RateLimitPolicy.RateLimitPolicy | undefined
}

/** A call for {@link LimiterService.execute}. @category models @since 0.1.0 */
export interface Call<A, E, R> extends Cost {
  readonly effect: Effect.Effect<A, E, R>
  /** What the finished call reports: actual usage (for reconciliation) and rate-limit headers. */
  readonly observe?:
    | ((value: A) => {
      readonly usage?: { readonly inputTokens: number; readonly outputTokens: number } | undefined
      readonly rateLimit?: RateLimitHeaders.RateLimitInfo | undefined
    })
    | undefined
}

/** How a call went through the limiter. @category models @since 0.1.0 */
export interface Outcome<A> {
  readonly value: A
  /** Attempts made (1 + retries). */
  readonly attempts: number
  /** Milliseconds waited before sending, over all attempts (concurrency slot + budgets + holds). */
  readonly waitMillis: number
  /** Milliseconds slept in backoff between attempts. */
  readonly backoffMillis: number
  /** Attempts cut at their deadline (and retried). */
  readonly timeouts: number
  /** Attempts answered 429 (and retried). */
  readonly http429: number
}

/** The limiter's operations. @category models @since 0.1.0 */
export interface LimiterService {
  readonly options: Resolved
  /** Runs a call under its key's budgets with the retry schedule. */
  readonly execute: <A, E, R>(call: Call<A, E, R>) => Effect.Effect<Outcome<A>, E | LlmError.LlmError, R>
  /**
   * `lobby(key)(execute(call))` — a whole call, lobby included — with the fewest effects its
   * key allows (a key far from its budgets takes it in one synchronous step). `call` may be
   * an effect that prices the call (an estimate of its prompt): it runs inside the lobby.
   * Optional for other implementations: callers fall back to the lobby and `execute`.
   */
  readonly run?:
    | (<A, E, R, E2 = never, R2 = never>(
      key: string,
      call: Call<A, E, R> | Effect.Effect<Call<A, E, R>, E2, R2>
    ) => Effect.Effect<Outcome<A>, E | E2 | LlmError.LlmError, R | R2>)
    | undefined
  /**
   * Takes a concurrency slot (held until the scope closes) and waits for the budgets of
   * one attempt, without retrying; settle it with `succeed` or `fail` (streams use this).
   */
  readonly admit: (cost: Cost) => Effect.Effect<Admission, LlmError.LlmError, Scope.Scope>
  /**
   * Runs `effect` once the key's lobby lets it in (FIFO): only a few times the concurrency
   * limit of calls per key are set up at once, the rest wait suspended. `execute` callers
   * wrap whole calls in it (retries included).
   */
  readonly lobby: (key: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Takes a place in the key's lobby until the scope closes (streams hold it while they run). */
  readonly enterLobby: (key: string) => Effect.Effect<void, never, Scope.Scope>
  /** The current adaptive concurrency limit of a key. */
  readonly concurrency: (key: string) => Effect.Effect<number>
  /** Until when (epoch millis) headers hold a key — this process's or, with fleet state, another's; 0 when not held. */
  readonly heldUntil: (key: string) => Effect.Effect<number>
  /**
   * Until when (epoch millis) the key's circuit is open — tripped here or, with fleet state,
   * in another process — so its calls fail fast; 0 when closed.
   */
  readonly circuitOpenUntil?: ((key: string) => Effect.Effect<number>) | undefined
  /** What the limiter has done so far (a snapshot). */
  readonly totals: () => Totals
  /**
   * Whether a call of `key` can meet a token budget — one configured, assumed or learnt, or
   * one its `policy` may still state or documents — so its prompt must be estimated. When
   * not, the middleware skips the estimate (a tokenizer pass per call).
   */
  readonly needsInputTokens?: ((key: string, policy: RateLimitPolicy.RateLimitPolicy | undefined) => boolean) | undefined
}

/** An admitted attempt; call exactly one of its settle functions. @category models @since 0.1.0 */
/**
 * What a limiter has done so far, over every key: for progress lines and the one-line
 * summary it logs when it closes.
 * @category models @since 0.2.0
 */
export interface Totals {
  /** Attempts admitted. */
  readonly attempts: number
  /** Attempts that waited before they were sent, and how long in all. */
  readonly waits: number
  readonly waitMillis: number
  readonly retries: number
  /** Attempts answered 429. */
  readonly http429: number
  /** Attempts cut at their deadline. */
  readonly timeouts: number
}

/** One line for people: `rate-limit: 3000 attempts, 12 waited (3.2 s), 5 retries, 0 × 429, 1 timeout`. @category utils @since 0.2.0 */
export const describeTotals = (totals: Totals): string =>
  `rate-limit: ${totals.attempts} ${totals.attempts === 1 ? "attempt" : "attempts"}, ${totals.waits} waited (${
    (totals.waitMillis / 1000).toFixed(1)
  } s), ` +
  `${totals.retries} ${totals.retries === 1 ? "retry" : "retries"}, ${totals.http429} × 429, ` +
  `${totals.timeouts} ${totals.timeouts === 1 ? "timeout" : "timeouts"}`

export interface Admission {
  readonly waitMillis: number
  /**
   * How long the attempt may take before it is cut as a `Timeout`, read again while it runs
   * (a learnt deadline tightens as the key's latencies come in); `undefined`: no deadline.
   */
  readonly deadlineMillis: (() => number) | undefined
  readonly succeed: (observed?: {
    readonly usage?: { readonly inputTokens: number; readonly outputTokens: number } | undefined
    readonly rateLimit?: RateLimitHeaders.RateLimitInfo | undefined
  }) => Effect.Effect<void>
  readonly fail: (error: unknown) => Effect.Effect<void>
}

/**
 * The shared limiter behind the `Llm` middleware and {@link wrap}.
 * @category services @since 0.1.0
 */
export class Limiter extends Context.Service<Limiter, LimiterService>()("@hasten/rate-limit/Limiter") {}

/** `fastAttempt`'s answer when the key must take the full admission. */
const FULL: unique symbol = Symbol("FULL")
/** What the store's adaptive cooldown answers a key it has never been fed (its epoch for feedback). */
const INACTIVE = { epoch: 0 } as const

const timeoutError = (provider: string, millis: number) =>
  LlmError.make(
    provider,
    new LlmError.Timeout({
      description: `no answer within ${(millis / 1000).toFixed(1)} s (the attempt was cut and will be retried; ` +
        `set REQUEST_TIMEOUT_MS or the timeout option to change the deadline)`
    })
  )

/**
 * Cuts an attempt that runs past its deadline: the effect is interrupted (which aborts the
 * provider's HTTP request) and the attempt fails with a retryable `Timeout`.
 * @category combinators @since 0.2.0
 */
export const withDeadline = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  deadlineMillis: number | (() => number) | undefined,
  provider: string,
  recheckMillis = 1_000
): Effect.Effect<A, E | LlmError.LlmError, R> => {
  if (deadlineMillis === undefined) return effect
  const timeout = (millis: number) => timeoutError(provider, millis)
  if (typeof deadlineMillis === "number") {
    return Effect.timeoutOrElse(effect, { duration: Duration.millis(deadlineMillis), orElse: () => Effect.fail(timeout(deadlineMillis)) })
  }
  // A deadline that may change while the attempt runs: a watchdog that wakes at the current
  // deadline (at least every `recheckMillis`) and reads it again.
  const watchdog = Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    while (true) {
      const limit = deadlineMillis()
      const elapsed = (yield* Clock.currentTimeMillis) - start
      if (elapsed >= limit) return yield* Effect.fail(timeout(limit))
      yield* Effect.sleep(Duration.millis(Math.min(limit - elapsed, recheckMillis)))
    }
  })
  return Effect.raceFirst(effect, watchdog)
}

/**
 * Builds the limiter over the `RateLimiter` in context (memory or Redis store). `local`:
 * the store is this limiter's own memory store, shared with no other process, which lets
 * keys far from their budgets take the fast path (internal/fast.ts); default false.
 * @category constructors @since 0.1.0
 */
export const makeLimiter = Effect.fnUntraced(function*(input: Options, local = false) {
  const options = yield* Effect.orDie(resolve(input))
  const seed = input.seed
  const limiter = yield* RateLimiter.RateLimiter
  const random = seed === undefined ? undefined : yield* Random.withSeed(Effect.service(Random.Random), seed)
  const event = yield* Events.make(options)
  // Fleet state: with Redis, each key's AIMD decreases, holds and circuit trips are shared
  // with the other processes (internal/fleet.ts); a key starts following it on its first call.
  let fleet: Fleet.Fleet | undefined
  const { stateFor, lobby, enterLobby, known, keys } = KeyStates.make(options, (key, state) => fleet?.watch(key, state))
  // Keys whose circuit is closed with no failure counted: their calls skip the breaker's
  // admit/record round (below). The breaker's store is this limiter's own memory store; a
  // trip another process shares through the fleet state takes the key out of this set.
  const clean = new Set<string>()
  const sharing = input.redis !== undefined && input.fleetState !== false
  const aimd = Aimd.make(
    options,
    event,
    sharing ? (key, factor, reason) => fleet?.publish(key, { decrease: { factor, reason } }) ?? Effect.void : undefined
  )
  if (sharing) {
    fleet = yield* Fleet.make({
      redis: input.redis!,
      prefix: input.redisPrefix ?? "hasten:ratelimit:",
      decreaseIntervalMillis: Aimd.DECREASE_INTERVAL_MILLIS,
      known,
      keys,
      decrease: (key, state, reason, factor) => aimd.decrease(key, state, reason, factor, true),
      opened: (key) => void clean.delete(key),
      event
    })
  }
  const breaker = yield* Breaker.make(
    options,
    fleet === undefined ? undefined : {
      openFor: (key) =>
        Effect.gen(function*() {
          const state = stateFor(key)
          if (state.fleetReady !== undefined) yield* fleet!.ready(state)
          if (state.fleetOpenUntil === 0) return 0
          return Math.max(0, state.fleetOpenUntil - (yield* Clock.currentTimeMillis))
        }),
      opened: (key, millis) => fleet!.publish(key, { open: millis })
    }
  )
  const totals = { attempts: 0, waits: 0, waitMillis: 0, retries: 0, http429: 0, timeouts: 0 }
  yield* Effect.addFinalizer(() => totals.attempts === 0 ? Effect.void : Effect.logInfo(describeTotals(totals)))
  const headers = Headers.make(options, event, fleet === undefined ? undefined : (key, millis) => fleet!.publish(key, { hold: millis }))
  // every attempt's deadline on one timer (see DeadlineWheel), stopped when the limiter closes
  const context = yield* Effect.context<never>()
  const deadlines = new DeadlineWheel(
    Effect.runForkWith(context),
    options.timeout === false ? 1_000 : options.timeout.floorMillis
  )
  yield* Effect.addFinalizer(() => Effect.sync(() => deadlines.close()))
  const windows = Windows.make(options, limiter)
  const { admit, failed } = Admit.make({
    options,
    totals,
    limiter,
    windows,
    stateFor,
    aimd,
    learn: headers.learn,
    documented: headers.documented,
    event,
    fleet
  })

  // The fast path (internal/fast.ts) for keys far from every budget and hold: memory store only.
  const fast = local && input.redis === undefined
    ? Fast.make({ options, windows, clean: breaker === undefined ? undefined : clean })
    : undefined

  /**
   * One attempt on the fast path when the key allows it (`fallback`, the full attempt,
   * otherwise): budgets from the leases, the concurrency slot if one is free at once, the
   * deadline, then the full path's settlement.
   */
  const fastAttempt = <A, E, R>(
    call: Call<A, E, R>,
    provider: string,
    onAttempt: () => void,
    fallback: Effect.Effect<A, E | LlmError.LlmError, R>
  ): Effect.Effect<A, E | LlmError.LlmError, R> =>
    Effect.clockWith((clock) => {
      const state = known(call.key)
      // a key's first call (or the first that brings its provider's policy) takes the full path
      if (state === undefined || fast === undefined || (state.policy === undefined && call.policy !== undefined)) return fallback
      const input = call.inputTokens ?? 0
      const output = call.outputTokens ?? 0
      const admitted: Effect.Effect<A | typeof FULL, E | LlmError.LlmError, R> = Effect.flatMap(
        fast.admit(call.key, state, clock.currentTimeMillisUnsafe(), input, output, provider),
        (ticket) => {
          if (Option.isNone(ticket)) return Effect.succeed<A | typeof FULL>(FULL)
          onAttempt()
          totals.attempts++
          const deadline = Admit.deadlineOf(options, state, output)
          const run = deadline === undefined
            ? call.effect
            : deadlines.run(call.effect, deadline, (millis) => timeoutError(provider, millis))
          return Effect.onExit(run, (exit) =>
            Exit.isSuccess(exit)
              ? settleFastNow(call.key, provider, ticket.value, clock.currentTimeMillisUnsafe(), call.observe?.(exit.value)) ?? Effect.void
              : failed(
                state,
                call.key,
                provider,
                input,
                output,
                ticket.value.charged,
                state.requestWindow === undefined ? undefined : INACTIVE,
                Option.getOrUndefined(Cause.findErrorOption(exit.cause))
              ))
        }
      )
      // the concurrency slot only if it is free at once (no waiting on the fast path)
      return Effect.uninterruptibleMask((restore) => {
        if (!state.slots.tryTake()) return restore(fallback)
        return Effect.flatMap(
          Effect.ensuring(restore(admitted), Effect.sync(state.slots.release)),
          (result): Effect.Effect<A, E | LlmError.LlmError, R> => result !== FULL ? Effect.succeed(result as A) : restore(fallback)
        )
      })
    })

  /**
   * A fast attempt's success: the full path's settlement, with reconciliation through the
   * leases, applied now; the effect left to run (an overrun charged to the store, a learnt
   * budget's event or a hold, a raised limit), or `undefined` when nothing is left.
   */
  const settleFastNow = (
    key: string,
    provider: string,
    ticket: Fast.FastTicket,
    end: number,
    observed: ReturnType<NonNullable<Call<unknown, unknown, unknown>["observe"]>> | undefined
  ): Effect.Effect<void> | undefined => {
    const { state, input, output } = ticket
    const usage = observed?.usage
    const latency = end - ticket.start
    state.latency?.record(latency, usage?.outputTokens ?? output)
    const accounting = options.tokenAccounting ?? (state.policy?.tokenAccounting === "reconciled" ? "usage" : "reserved")
    let rest: Effect.Effect<void, LlmError.LlmError> | undefined
    if (usage !== undefined && accounting === "usage") {
      for (const window of ticket.charged) {
        if (window.unit === "request") continue
        const delta = Windows.tokensOf(window.unit, usage.inputTokens - input, usage.outputTokens - output)
        if (delta === 0) continue
        const unpaid = fast!.settle(state, window, -delta)
        if (unpaid > 0) {
          const charge = Effect.mapError(windows.consume(window, key, unpaid, false, "delay"), Windows.storeError(provider))
          rest = rest === undefined ? charge : Effect.andThen(rest, charge)
        }
      }
    }
    aimd.observe(state, latency)
    const learnt = observed?.rateLimit === undefined ? undefined : headers.learnNow(state, observed.rateLimit, key, { input, output })
    if (learnt !== undefined) rest = rest === undefined ? learnt : Effect.andThen(rest, learnt)
    const raised = aimd.increaseNow(key, state)
    if (raised !== undefined) rest = rest === undefined ? raised : Effect.andThen(rest, raised)
    return rest === undefined ? undefined : Effect.catch(rest, () => Effect.void)
  }

  /** Runs an attempt's outcome through the circuit breaker, for an attempt that ran without it (its key was clean). */
  const recordOutcome = <A, E>(key: string, provider: string, exit: Exit.Exit<A, E>): Effect.Effect<void> => {
    if (breaker === undefined) return Effect.void
    const outcome = Breaker.classify(exit)
    if (outcome._tag === "Ignored" || (outcome._tag === "Success" && clean.has(key))) return Effect.void
    // a failure; or a success while another call's failure made the key unclean (a success resets the count)
    clean.delete(key)
    return Effect.ignore(throughBreaker(key, provider, exit))
  }

  const throughBreaker = <B, E2, R2>(key: string, provider: string, effect: Effect.Effect<B, E2, R2>) =>
    breaker!.execute(effect, { key, classify: Breaker.classify }).pipe(
      Effect.mapError((error) => error instanceof CircuitBreaker.CircuitBreakerError ? Breaker.breakerError(provider, key)(error) : error)
    )

  /**
   * A call under its key's budgets with the retry schedule; `previous`: its first attempt
   * already ran (on the lean path, `run`) and failed with this error, which the schedule sees first.
   */
  const executeFrom = <A, E, R>(
    call: Call<A, E, R>,
    previous: { readonly error: E | LlmError.LlmError } | undefined
  ): Effect.Effect<Outcome<A>, E | LlmError.LlmError, R> =>
    Effect.gen(function*() {
      const provider = call.provider ?? call.key
      let attempts = previous === undefined ? 0 : 1
      let waitMillis = 0
      let backoffMillis = 0
      let timeouts = 0
      let http429 = 0
      const attempt: Effect.Effect<A, E | LlmError.LlmError, R> = Effect.scoped(Effect.gen(function*() {
        attempts++
        const admission = yield* admit(call)
        waitMillis += admission.waitMillis
        const deadlineMillis = admission.deadlineMillis
        return yield* (deadlineMillis === undefined
          ? call.effect
          : deadlines.run(call.effect, deadlineMillis, (millis) => timeoutError(provider, millis))).pipe(
            Effect.onExit((exit) =>
              Exit.isSuccess(exit)
                ? admission.succeed(call.observe?.(exit.value))
                : admission.fail(Option.getOrUndefined(Cause.findErrorOption(exit.cause)))
            )
          )
      }))
      // A key whose circuit is closed with no failure counted (`clean`) runs the attempt
      // without the breaker's admit/record round; an outcome that counts is then recorded
      // through the breaker, with the same effect on its state as going through it.
      const guard = (attempt: Effect.Effect<A, E | LlmError.LlmError, R>) =>
        breaker === undefined ? attempt : Effect.suspend(() => {
          if (!clean.has(call.key)) {
            return Effect.tap(throughBreaker(call.key, provider, attempt), () => Effect.sync(() => clean.add(call.key)))
          }
          return Effect.onExit(attempt, (exit) => recordOutcome(call.key, provider, exit))
        })
      const guarded = guard(attempt)
      // the first attempt may take the fast path; retries take the full one
      const first = previous !== undefined
        ? Effect.fail(previous.error)
        : fast === undefined
        ? guarded
        : guard(fastAttempt(call, provider, () => attempts++, attempt))
      const onBackoff = (backoff: Backoff) =>
        Effect.gen(function*() {
          const millis = Duration.toMillis(backoff.delay)
          backoffMillis += millis
          totals.retries++
          if (backoff.error.reason._tag === "Timeout") timeouts++
          if (backoff.error.reason._tag === "RateLimited") http429++
          yield* event(`backoff=${Events.seconds(millis)} attempt=${backoff.attempt}`, {
            event: "rate_limit.backoff",
            key: call.key,
            backoff_seconds: Events.seconds(millis),
            attempt: backoff.attempt,
            reason: backoff.error.reason._tag,
            retry_after: backoff.fromRetryAfter
          })
          yield* Metric.update(Metric.withAttributes(retriesTotal, { key: call.key, reason: backoff.error.reason._tag }), 1)
        })
      // The retry schedule is built only once an attempt fails: it then sees that failure
      // first, exactly as when it wraps the first attempt.
      const retried = options.retriesEnabled
        ? Effect.catch(first, (error) => {
          let replay = true
          const again = Effect.suspend(() => {
            if (!replay) return guarded
            replay = false
            return Effect.fail(error)
          })
          return Effect.retry(again, retrySchedule({ ...options, random }, onBackoff))
        })
        : first
      const value = yield* retried.pipe(
        Effect.mapError((error) => {
          if (LlmError.isLlmError(error) && error.reason._tag === "RateLimited" && error.reason.scope === "quota") {
            return LlmError.make(
              error.provider,
              new LlmError.RateLimited({
                scope: "quota",
                description: `quota exhausted for ${call.key}: ${error.reason.description} ` +
                  `(not retried: add credits or raise the quota)`
              })
            )
          }
          return error
        })
      )
      return { value, attempts, waitMillis, backoffMillis, timeouts, http429 }
    })

  const execute = <A, E, R>(call: Call<A, E, R>): Effect.Effect<Outcome<A>, E | LlmError.LlmError, R> => executeFrom(call, undefined)

  /**
   * A whole call (lobby, budgets, retries): `call`, or an effect that prices it (an estimate
   * of its prompt), run in the key's lobby. A key on the fast path takes the lean path: the
   * lobby place is taken at once (before the pricing, as the lobby promises), then the
   * concurrency slot and the leases in one synchronous step, the attempt runs on its own
   * fiber under the deadline wheel, and the settlement is synchronous unless it has something
   * to wait for — a few effects per call instead of a few dozen. A failed attempt is settled
   * and counted as the full path's, then goes on to the retry schedule (still in the lobby);
   * a call the lean path cannot take at once goes through the lobby and `execute`.
   */
  const run = <A, E, R, E2 = never, R2 = never>(
    key: string,
    call: Call<A, E, R> | Effect.Effect<Call<A, E, R>, E2, R2>
  ): Effect.Effect<Outcome<A>, E | E2 | LlmError.LlmError, R | R2> =>
    Effect.withFiber((fiber) => {
      const state = fast === undefined ? undefined : known(key)
      if (state === undefined || !state.lobby.tryTake()) {
        return lobby(key)(Effect.isEffect(call) ? Effect.flatMap(call, (priced) => execute(priced)) : execute(call))
      }
      if (!Effect.isEffect(call)) return attemptInLobby(fiber, state, call)
      return Effect.flatMap(
        Effect.onExit(call, (exit) => Exit.isFailure(exit) ? Effect.sync(state.lobby.release) : Effect.void),
        (priced) => attemptInLobby(fiber, state, priced)
      )
    })

  /** `run` with the key's lobby place taken: the lean attempt if the fast path admits it now, else `execute`. */
  const attemptInLobby = <A, E, R>(
    fiber: Fiber.Fiber<unknown, unknown>,
    state: KeyStates.KeyState,
    call: Call<A, E, R>
  ): Effect.Effect<Outcome<A>, E | LlmError.LlmError, R> => {
    const full = () => Effect.ensuring(execute(call), Effect.sync(state.lobby.release))
    // a key's first call that brings its provider's policy takes the full path
    if (state.policy === undefined && call.policy !== undefined) return full()
    if (!state.slots.tryTake()) return full()
    const clock = fiber.getRef(Clock.Clock)
    const start = clock.currentTimeMillisUnsafe()
    const input = call.inputTokens ?? 0
    const output = call.outputTokens ?? 0
    const provider = call.provider ?? call.key
    const ticket = fast!.take(call.key, state, start, input, output)
    if (ticket !== undefined) return leanAttempt(fiber, state, call, ticket, clock)
    // a lease to renew: one store call (refused rather than waited for), then the lean attempt;
    // the full path if it is refused or the key is not eligible
    const refused = () => {
      state.slots.release()
      return full()
    }
    return fast!.admit(call.key, state, start, input, output, provider).pipe(
      Effect.onInterrupt(() =>
        Effect.sync(() => {
          state.slots.release()
          state.lobby.release()
        })
      ),
      // a store error: the full admission meets it under the retry schedule
      Effect.matchEffect({
        onFailure: refused,
        onSuccess: (renewed) => Option.isSome(renewed) ? leanAttempt(fiber, state, call, renewed.value, clock) : refused()
      })
    )
  }

  /** The lean attempt of `run`, its lobby place, concurrency slot and budgets (`ticket`) taken. */
  const leanAttempt = <A, E, R>(
    fiber: Fiber.Fiber<unknown, unknown>,
    state: KeyStates.KeyState,
    call: Call<A, E, R>,
    ticket: Fast.FastTicket,
    clock: Clock.Clock
  ): Effect.Effect<Outcome<A>, E | LlmError.LlmError, R> => {
    totals.attempts++
    const provider = call.provider ?? call.key
    const start = ticket.start
    const { input, output } = ticket
    const onTimeout = (millis: number) => timeoutError(provider, millis)
    const refund = (error: unknown) =>
      failed(
        state,
        call.key,
        provider,
        input,
        output,
        ticket.charged,
        state.requestWindow === undefined ? undefined : INACTIVE,
        error
      )
    const watch = deadlines.start(
      call.effect as Effect.Effect<A, E>,
      fiber.context as Context.Context<never>,
      start,
      Admit.deadlineOf(options, state, output)
    )
    const finish = (exit: Exit.Exit<A, E>): Effect.Effect<Outcome<A>, E | LlmError.LlmError, R> => {
      const ended = deadlines.end(watch, exit, onTimeout)
      state.slots.release()
      if (Exit.isSuccess(ended)) {
        state.lobby.release()
        const outcome: Outcome<A> = { value: ended.value, attempts: 1, waitMillis: 0, backoffMillis: 0, timeouts: 0, http429: 0 }
        let rest = settleFastNow(call.key, provider, ticket, clock.currentTimeMillisUnsafe(), call.observe?.(ended.value))
        // another call's failure made the key unclean meanwhile: this success resets the breaker's count
        if (breaker !== undefined && !clean.has(call.key)) {
          const recorded = recordOutcome(call.key, provider, ended)
          rest = rest === undefined ? recorded : Effect.andThen(rest, recorded)
        }
        return rest === undefined ? Exit.succeed(outcome) : Effect.as(Effect.uninterruptible(rest), outcome)
      }
      // the full path's settlement and the breaker's count, then the retry schedule, still in the lobby
      const error = Cause.findErrorOption(ended.cause)
      const settled = Effect.uninterruptible(Effect.andThen(refund(Option.getOrUndefined(error)), recordOutcome(call.key, provider, ended)))
      return Effect.ensuring(
        Effect.andThen(settled, Option.isSome(error) ? executeFrom(call, { error: error.value }) : Exit.failCause(ended.cause)),
        Effect.sync(state.lobby.release)
      )
    }
    const done = watch.fiber.pollUnsafe()
    if (done !== undefined) return finish(done)
    return Effect.callback<Outcome<A>, E | LlmError.LlmError, R>((resume) => {
      const off = watch.fiber.addObserver((exit) => resume(finish(exit)))
      // the caller is interrupted: the attempt is interrupted, its places given back and its budgets refunded
      return Effect.suspend(() => {
        off()
        deadlines.forget(watch as DeadlineWatch)
        state.slots.release()
        state.lobby.release()
        return Effect.andThen(Fiber.interrupt(watch.fiber), refund(undefined))
      })
    })
  }

  return Limiter.of({
    options,
    execute,
    run,
    admit,
    lobby,
    enterLobby,
    concurrency: (key) => Effect.sync(() => stateFor(key).limit),
    heldUntil: (key) => Effect.sync(() => stateFor(key).holdUntil),
    circuitOpenUntil: (key) =>
      breaker === undefined ? Effect.succeed(0) : Effect.gen(function*() {
        const state = yield* breaker.state(key)
        return state._tag === "Open" ? (yield* Clock.currentTimeMillis) + Duration.toMillis(state.retryAfter) : 0
      }).pipe(Effect.orElseSucceed(() => 0)),
    totals: () => ({ ...totals }),
    needsInputTokens: (key, policy) => {
      const state = stateFor(key)
      if (state.windows.some((window) => window.unit !== "request")) return true
      const current = state.policy ?? policy
      // budgets not learnt yet: a provider that states them in headers, or documents a token budget
      if (!state.learnt && options.learnFromHeaders && current?.headerWindowMillis !== undefined) return true
      return current?.documentedLimits?.tokens !== undefined && !state.learnt
    }
  })
})

const storeLayer = (options: Options): Layer.Layer<RateLimiter.RateLimiterStore> =>
  options.redis === undefined
    ? RateLimiter.layerStoreMemory
    : RateLimiter.layerStoreRedis({ prefix: options.redisPrefix ?? "hasten:ratelimit:" }).pipe(
      Layer.provide(IoRedis.layer(options.redis))
    )

/**
 * The limiter over a `RateLimiterStore` you provide (e.g. `RateLimiter.layerStoreRedis`).
 * @category layers @since 0.1.0
 */
export const layerLimiterWithStore = (options: Options = {}): Layer.Layer<Limiter, never, RateLimiter.RateLimiterStore> =>
  limiterLayer(options, false)

const limiterLayer = (options: Options, local: boolean): Layer.Layer<Limiter, never, RateLimiter.RateLimiterStore> =>
  Layer.effect(Limiter, makeLimiter(options, local)).pipe(
    Layer.provide(Layer.merge(RateLimiter.layer, CircuitBreaker.layerStoreMemory()))
  )

/**
 * The limiter alone, for {@link wrap} on any effect: memory store, or Redis when
 * `options.redis` is set.
 * @category layers @since 0.1.0
 */
export const layerLimiter = (options: Options = {}): Layer.Layer<Limiter> =>
  limiterLayer(options, options.redis === undefined).pipe(Layer.provide(storeLayer(options)))

/**
 * Runs any effect under the budgets of `cost.key` (concurrency, request and token
 * windows) with the retry schedule (only retryable `LlmError`s are retried).
 * @category combinators @since 0.1.0
 */
export const wrap = <A, E, R>(effect: Effect.Effect<A, E, R>, cost: Cost): Effect.Effect<A, E | LlmError.LlmError, R | Limiter> =>
  Effect.flatMap(
    Effect.service(Limiter),
    (limiter) =>
      Effect.map(
        limiter.run !== undefined
          ? limiter.run(cost.key, { ...cost, effect })
          : limiter.lobby(cost.key)(limiter.execute({ ...cost, effect })),
        (outcome) => outcome.value
      )
  )
