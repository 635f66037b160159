/**
 * Per-attempt deadlines learnt from what a key has shown: each successful call adds a
 * sample of its latency per (output token + TTFT allowance); an attempt's deadline is
 * `multiple` × the 99th percentile of those samples × the attempt's size (`maxTokens` +
 * the allowance), clamped to `[floor, cap]`. Until `MIN_SAMPLES` calls have succeeded it
 * is `initial`. One tracker per key; the percentile is recomputed every few samples, so
 * reading a deadline costs a multiplication.
 *
 * The deadlines are enforced by one {@link DeadlineWheel} per limiter: a single sleeping
 * fiber for every attempt in flight instead of a race and a timer per attempt.
 */
import { Cause, Clock, type Context, Duration, Effect, Exit, Fiber } from "effect"

/** The first-token allowance, in output tokens: a call's fixed cost is about as much as this many tokens. */
const ALLOWANCE_TOKENS = 16
const CAPACITY = 256
/** Samples before the learnt deadline replaces `initial`. */
export const MIN_SAMPLES = 5
const RECOMPUTE_EVERY = 8

/** How deadlines are derived (already validated). */
export interface DeadlinePolicy {
  readonly multiple: number
  readonly floorMillis: number
  readonly capMillis: number
  readonly initialMillis: number
}

/** One key's latency samples and its current per-token deadline factor. */
export class LatencyTracker {
  private readonly samples = new Float64Array(CAPACITY)
  /** The largest samples, descending (recompute's scratch: k ≤ ⌈CAPACITY / 100⌉ + 1). */
  private readonly top = new Float64Array(Math.ceil(CAPACITY / 100) + 1)
  private count = 0
  private next = 0
  private sinceRecompute = 0
  /** `multiple` × p99 of the samples, in milliseconds per sized token; 0 until `MIN_SAMPLES`. */
  private factor = 0

  private readonly policy: DeadlinePolicy

  constructor(policy: DeadlinePolicy) {
    this.policy = policy
  }

  /** Records a successful call: its latency and the output tokens it produced. */
  record(latencyMillis: number, outputTokens: number): void {
    if (!(latencyMillis >= 0)) return
    this.samples[this.next] = latencyMillis / (Math.max(0, outputTokens) + ALLOWANCE_TOKENS)
    this.next = (this.next + 1) % CAPACITY
    if (this.count < CAPACITY) this.count++
    this.sinceRecompute++
    if (this.count >= MIN_SAMPLES && (this.factor === 0 || this.sinceRecompute >= RECOMPUTE_EVERY)) this.recompute()
  }

  /** The deadline for an attempt that may produce up to `maxTokens` output tokens. */
  deadlineMillis(maxTokens: number): number {
    if (this.factor === 0) return this.policy.initialMillis
    const millis = this.factor * (Math.max(0, maxTokens) + ALLOWANCE_TOKENS)
    return Math.min(this.policy.capMillis, Math.max(this.policy.floorMillis, millis))
  }

  /** Samples recorded so far (at most the buffer's capacity). */
  get size(): number {
    return this.count
  }

  private recompute(): void {
    this.sinceRecompute = 0
    const n = this.count
    // the p99 (index ⌈0.99 n⌉ − 1 of the sorted samples) is the k-th largest sample, k ≤ 3 for
    // the 256 kept: one pass keeping the k largest instead of sorting them all (a sort every 8
    // calls was ~15% of the limiter's per-call CPU on the fast path)
    const k = n - Math.min(n - 1, Math.ceil(0.99 * n) - 1)
    const top = this.top
    top.fill(-Infinity, 0, k)
    for (let i = 0; i < n; i++) {
      const value = this.samples[i]!
      if (value <= top[k - 1]!) continue
      let j = k - 1
      while (j > 0 && top[j - 1]! < value) {
        top[j] = top[j - 1]!
        j--
      }
      top[j] = value
    }
    this.factor = this.policy.multiple * top[k - 1]!
  }
}

const NO_DEADLINE = () => Infinity

/** One attempt the wheel watches. */
export interface Watch<A = unknown, E = unknown> {
  readonly fiber: Fiber.Fiber<A, E>
  readonly start: number
  readonly deadlineMillis: () => number
  /** The deadline it was cut at; `undefined` while it runs. */
  expiredAt: number | undefined
}

/**
 * Deadlines for every attempt of a limiter on one timer. An attempt runs in its own fiber
 * (started at once, so no scheduler turn is lost); the wheel is a single fiber that sleeps
 * (through `Clock`, so `TestClock` drives it) until the earliest deadline of the attempts in
 * flight, and at most `recheckMillis`, reading each attempt's deadline again when it wakes (a
 * learnt deadline tightens while an attempt runs). An attempt past its deadline is
 * interrupted (which aborts its HTTP request) and fails with what `onTimeout` makes. With
 * nothing in flight the wheel stops; the next attempt starts it again, so a steady stream of
 * calls costs one timer per `recheckMillis`, not one per call.
 */
export class DeadlineWheel {
  private readonly watches = new Set<Watch<unknown, unknown>>()
  /** When the sleeping wheel wakes (epoch millis); `Infinity` when it is not running. */
  private wakeAt = Infinity
  private wheel: Fiber.Fiber<void> | undefined = undefined

  /** Forks the wheel's fiber (in the limiter's context). */
  private readonly fork: (effect: Effect.Effect<void>) => Fiber.Fiber<void>
  private readonly recheckMillis: number

  constructor(fork: (effect: Effect.Effect<void>) => Fiber.Fiber<void>, recheckMillis: number) {
    this.fork = fork
    this.recheckMillis = recheckMillis
  }

  /** Stops the wheel (the limiter is closing). */
  close(): void {
    this.wheel?.interruptUnsafe()
    this.wheel = undefined
    this.wakeAt = Infinity
  }

  /** Attempts in flight under a deadline. */
  get size(): number {
    return this.watches.size
  }

  /**
   * Starts `effect` on a fiber of its own (at once, in `context`) under the deadline
   * `deadlineMillis` (read again while it runs; `undefined`: none), counted from `now`. Call
   * `end` (or `forget`) with the returned watch once the fiber is done (or abandoned).
   */
  start<A, E>(
    effect: Effect.Effect<A, E>,
    context: Context.Context<never>,
    now: number,
    deadlineMillis: (() => number) | undefined
  ): Watch<A, E> {
    const fiber = Effect.runForkWith(context)(effect)
    const watch: Watch<A, E> = { fiber, start: now, deadlineMillis: deadlineMillis ?? NO_DEADLINE, expiredAt: undefined }
    if (deadlineMillis === undefined || fiber.pollUnsafe() !== undefined) return watch
    this.watches.add(watch as Watch<unknown, unknown>)
    const due = now + Math.min(deadlineMillis(), this.recheckMillis)
    if (this.wheel === undefined || due < this.wakeAt) {
      // not running, or sleeping past this attempt's first check: (re)start it
      if (this.wheel !== undefined) this.wheel.interruptUnsafe()
      this.wakeAt = due
      this.wheel = this.fork(this.turn)
    }
    return watch
  }

  /** Stops watching an attempt; its exit, with a cut attempt's interruption turned into `onTimeout`'s failure. */
  end<A, E, E2>(watch: Watch<A, E>, exit: Exit.Exit<A, E>, onTimeout: (millis: number) => E2): Exit.Exit<A, E | E2> {
    this.watches.delete(watch as Watch<unknown, unknown>)
    return watch.expiredAt !== undefined && Exit.isFailure(exit) && Cause.hasInterrupts(exit.cause)
      ? Exit.fail(onTimeout(watch.expiredAt))
      : exit
  }

  /** Stops watching an attempt that is abandoned (its caller was interrupted). */
  forget(watch: Watch<unknown, unknown>): void {
    this.watches.delete(watch)
  }

  /**
   * Runs `effect` cut at its deadline (read again while it runs): a timeout fails with
   * `onTimeout(deadline)`. The attempt's fiber is started, watched and awaited in one step (no
   * child-fiber bookkeeping, no race); interrupting the caller interrupts it.
   */
  run<A, E, R, E2>(
    effect: Effect.Effect<A, E, R>,
    deadlineMillis: () => number,
    onTimeout: (millis: number) => E2
  ): Effect.Effect<A, E | E2, R> {
    return Effect.withFiber((caller) => {
      const watch = this.start(
        effect as Effect.Effect<A, E>,
        caller.context as Context.Context<never>,
        caller.getRef(Clock.Clock).currentTimeMillisUnsafe(),
        deadlineMillis
      )
      const done = watch.fiber.pollUnsafe()
      if (done !== undefined) return this.end(watch, done, onTimeout)
      return Effect.callback<A, E | E2>((resume) => {
        const off = watch.fiber.addObserver((exit) => resume(this.end(watch, exit, onTimeout)))
        return Effect.suspend(() => {
          off()
          this.forget(watch as Watch<unknown, unknown>)
          return Fiber.interrupt(watch.fiber)
        })
      })
    })
  }

  /** The wheel: cut what is due, sleep until the next deadline (at most `recheckMillis`), again. */
  private readonly turn: Effect.Effect<void> = Effect.suspend(() =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      let next = Infinity
      const due: Array<Watch<unknown, unknown>> = []
      for (const watch of this.watches) {
        const limit = watch.deadlineMillis()
        if (now - watch.start >= limit) {
          watch.expiredAt = limit
          due.push(watch)
        } else {
          next = Math.min(next, watch.start + limit)
        }
      }
      for (const watch of due) {
        this.watches.delete(watch)
        watch.fiber.interruptUnsafe()
      }
      if (this.watches.size === 0) {
        this.wakeAt = Infinity
        this.wheel = undefined
        return Effect.void
      }
      this.wakeAt = Math.min(next, now + this.recheckMillis)
      return Effect.andThen(Effect.sleep(Duration.millis(this.wakeAt - now)), this.turn)
    })
  )
}
