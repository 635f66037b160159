/**
 * The state of each budget key, created on its first call: the lobby, the concurrency
 * slots and the admission semaphore, the AIMD limit and the header hold.
 * @internal
 */
import type { RateLimitPolicy } from "@hasten/core"
import { Deferred, Effect, Semaphore } from "effect"
import type * as Scope from "effect/Scope"
import type { Resolved } from "../Options.js"
import { LatencyTracker } from "./deadline.js"
import { Gate } from "./gate.js"
import { initial, type Window } from "./windows.js"

/** One key's state. */
export interface KeyState {
  /**
   * The lobby: at most `lobbySize` calls of the key are past it at once (waiting for a
   * permit, for the windows, in flight or backing off); the rest wait here in FIFO order,
   * suspended before any per-call work, so a burst of thousands of calls sends its first
   * request at once instead of after every call has been set up (0.77 s for 3000 calls),
   * and the semaphores behind it never hold more than a few waiters (see `Gate`).
   */
  readonly lobby: Gate
  /** The key's concurrency slots (FIFO; resized by AIMD). */
  readonly slots: Gate
  /** One fiber at a time waits for the key's windows (FIFO, no thundering herd). */
  readonly admission: Semaphore.Semaphore
  /** AIMD concurrency limit: the slots' permits. */
  limit: number
  /** Successes since the limit last changed (a window of `limit` successes adds one). */
  successes: number
  lastDecrease: number
  /** Until when (the limiter's clock) calls wait: spent-budget headers here, or a hold another process published. */
  holdUntil: number
  /** Until when another process's circuit breaker keeps the key open (fleet state); 0 when not. */
  fleetOpenUntil: number
  /** Completed once the key's fleet state has been read on its first call; `undefined` afterwards or without fleet state. */
  fleetReady: Deferred.Deferred<void> | undefined
  /** The budgets of this key: configured, assumed, then learnt from the headers. */
  windows: ReadonlyArray<Window>
  /** The request window the store's adaptive cooldown paces by. */
  requestWindow: Window | undefined
  /**
   * The ceiling AIMD grows `limit` to: `maxConcurrency`; once the provider has stated its
   * limits (and `maxConcurrency` is unset), twice its request rate × `latencyMillis`, within
   * [2, `learntMaxConcurrency`].
   */
  maxLimit: number
  /** Slow start: `limit` doubles per window of successes until the first decrease, then grows by one. */
  slowStart: boolean
  /** Recent latency of the key's successful calls (exponentially weighted), milliseconds. */
  latencyMillis: number
  /** How the provider admits and counts (from the first call's `Llm`); `undefined`: it declared none. */
  policy: RateLimitPolicy.RateLimitPolicy | undefined
  /** Whether the provider has stated its limits in headers. */
  learnt: boolean
  /** Configured budgets already reported as above the provider's (logged once). */
  readonly lowered: Set<string>
  /**
   * Cautious start: while no response has come in, one call goes first (`running`); the
   * others wait for it (or a short while) so the budgets it states are known before a burst.
   */
  probe: "none" | "running" | "done"
  readonly probeDone: Deferred.Deferred<void>
  readonly latency: LatencyTracker | undefined
  /** Calls queued for or waiting in the window admission (the fast path does not overtake them). */
  admitting: number
  /**
   * Whether a 429 was fed to the store's adaptive cooldown for this key: its calls then take
   * the full admission until the store's adaptive state for the key has expired.
   */
  adaptiveFed: boolean
}

/**
 * The key states of one limiter, and its lobby operations; `onNew` sees each key as it is
 * first used (the fleet state starts following it).
 */
export const make = (options: Resolved, onNew?: (key: string, state: KeyState) => void) => {
  const states = new Map<string, KeyState>()
  const lobbySize = Math.max(16, (options.configured.maxConcurrency ? options.maxConcurrency : options.learntMaxConcurrency) * 4)
  const startWindows = initial(options)

  const stateFor = (key: string): KeyState => {
    let state = states.get(key)
    if (state === undefined) {
      state = {
        lobby: new Gate(lobbySize),
        slots: new Gate(options.maxConcurrency),
        admission: Semaphore.makeUnsafe(1),
        limit: options.maxConcurrency,
        successes: 0,
        lastDecrease: -Infinity,
        holdUntil: 0,
        fleetOpenUntil: 0,
        fleetReady: undefined,
        windows: startWindows,
        requestWindow: startWindows.find((window) => window.unit === "request"),
        maxLimit: options.maxConcurrency,
        slowStart: true,
        latencyMillis: 0,
        policy: undefined,
        learnt: false,
        lowered: new Set(),
        probe: "none",
        probeDone: Deferred.makeUnsafe<void>(),
        latency: options.timeout === false || options.requestTimeoutMillis !== undefined ? undefined : new LatencyTracker(options.timeout),
        admitting: 0,
        adaptiveFed: false
      }
      states.set(key, state)
      onNew?.(key, state)
    }
    return state
  }

  const lobby = (key: string) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.suspend(() => stateFor(key).lobby.with(effect))

  const enterLobby = (key: string): Effect.Effect<void, never, Scope.Scope> =>
    Effect.suspend(() => {
      const gate = stateFor(key).lobby
      // the wait stays interruptible (an interrupted wait holds nothing); once in, the
      // release is registered before anything can interrupt
      return Effect.uninterruptibleMask((restore) =>
        Effect.andThen(restore(gate.take), Effect.addFinalizer(() => Effect.sync(gate.release)))
      )
    })

  return { stateFor, lobby, enterLobby, known: (key: string) => states.get(key), keys: () => states.entries() }
}
