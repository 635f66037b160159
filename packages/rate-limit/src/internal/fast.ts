/**
 * The fast path of an attempt, for a key far from every budget and hold.
 *
 * The full admission (`admit.ts`) takes the key's concurrency slot in a scope, asks the
 * store's adaptive cooldown, queues for the windows one call at a time and takes each
 * window from the store: a few dozen effects per call, ~150 µs in-process behind
 * `hasten-serve`. While nothing is near a limit none of that can change what a call does,
 * so the fast path decides it synchronously:
 *
 * - **Eligible** only with the memory store (Redis keeps the full path: other processes
 *   share its windows and adaptive state), once the key's first call has set it up (policy,
 *   documented limits, the cautious start's probe), with no header hold, no call queued for
 *   the windows, a closed circuit with no failure counted, a free concurrency slot, and no
 *   429 the store's adaptive cooldown still remembers for the key (its state expired: fast again).
 * - **Budgets through leases.** Each window of the key keeps a small prepaid balance: a
 *   renewal takes the call's cost plus a quarter of the bucket's spare room (its catch-up
 *   capacity) from the store in ONE consume that fails rather than waits; later calls spend
 *   the balance locally. Every unit is charged to the store before it is spent, so the store
 *   never under-counts. A balance is valid only for the time the bucket needs to refill it
 *   at its steady rate: until then the bucket cannot have refilled to full behind the lease's
 *   back, so a burst can never spend more than the bucket alone would allow. What a lease
 *   holds at its expiry is not given back (conservative). A window whose bucket has no room
 *   for a lease, or whose renewal is refused, sends the call down the full path.
 * - **Settlement** is the full path's: latency and deadline samples, usage reconciliation
 *   (a refund goes back to the lease, capped at its size; an overrun is charged to the
 *   store), header learning, AIMD.
 * @internal
 */
import type { LlmError } from "@hasten/core"
import { Effect, Option } from "effect"
import type { Resolved } from "../Options.js"
import type { KeyState } from "./keyState.js"
import { storeError, tokensOf, type Window, type Windows } from "./windows.js"

/** A window's prepaid balance for one key. */
interface Lease {
  units: number
  /** The most the balance may hold (what its renewal took). */
  readonly size: number
  /** Until when (limiter clock, ms) the balance may be spent. */
  readonly until: number
}

/** The longest a lease stays valid whatever the refill rate (budgets can be relearnt meanwhile). */
const MAX_LEASE_MILLIS = 1_000

/** A call the fast path admitted: what its settlement needs. */
export interface FastTicket {
  readonly state: KeyState
  readonly start: number
  readonly input: number
  readonly output: number
  /** The windows charged and how much each: reconciliation and refunds use them. */
  readonly charged: ReadonlyArray<Window>
}

/** Why a call cannot take the fast path (`undefined`: it can, its budgets are taken). */
type Decision =
  | { readonly _tag: "Admitted"; readonly ticket: FastTicket }
  | { readonly _tag: "Renew"; readonly windows: ReadonlyArray<readonly [Window, number]> }
  | undefined

/** The lease book of one limiter. */
export const make = (deps: {
  readonly options: Resolved
  readonly windows: Windows
  /** Keys whose circuit is closed with no failure counted; `undefined`: no breaker. */
  readonly clean: ReadonlySet<string> | undefined
}) => {
  const { options, windows, clean } = deps
  const leasesOf = new WeakMap<KeyState, Map<Window, Lease>>()

  const leases = (state: KeyState): Map<Window, Lease> => {
    let map = leasesOf.get(state)
    if (map === undefined) {
      map = new Map()
      leasesOf.set(state, map)
    }
    return map
  }

  /** Whether the key's state lets a call skip the full admission (the lease check follows). */
  const eligible = (key: string, state: KeyState, now: number): boolean =>
    state.adaptiveFed === false &&
    state.admitting === 0 &&
    state.fleetReady === undefined &&
    state.holdUntil <= now &&
    (state.probe === "done" || !options.learnFromHeaders || state.policy?.headerWindowMillis === undefined) &&
    (state.learnt || state.policy?.documentedLimits === undefined || !options.learnFromHeaders) &&
    (clean === undefined || clean.has(key))

  /**
   * Takes every window's cost from the leases when they all have it; otherwise names the
   * windows to renew. `undefined` when a window can never take the fast path for this call.
   */
  const decide = (key: string, state: KeyState, now: number, input: number, output: number): Decision => {
    if (!eligible(key, state, now)) return undefined
    const book = leases(state)
    let renew: Array<readonly [Window, number]> | undefined
    for (const window of state.windows) {
      const tokens = tokensOf(window.unit, input, output)
      if (tokens === 0) continue
      if (window.unit !== "request" && tokens > window.limit) return undefined
      const lease = book.get(window)
      if (lease === undefined || lease.until <= now || lease.units < tokens) (renew ??= []).push([window, tokens])
    }
    if (renew !== undefined) return { _tag: "Renew", windows: renew }
    for (const window of state.windows) {
      const tokens = tokensOf(window.unit, input, output)
      if (tokens > 0) book.get(window)!.units -= tokens
    }
    return { _tag: "Admitted", ticket: { state, start: now, input, output, charged: state.windows } }
  }

  /**
   * Renews the leases of `renew` (each takes its call's cost plus the lease from the store,
   * failing rather than waiting); whether every renewal succeeded. A renewal that succeeded
   * keeps its lease even when another failed.
   */
  const renewAll = (key: string, state: KeyState, renew: ReadonlyArray<readonly [Window, number]>) =>
    Effect.gen(function*() {
      const book = leases(state)
      for (const [window, tokens] of renew) {
        const taken = yield* windows.lease(window, key, tokens)
        if (taken === undefined) return false
        // the renewing call's own cost is in the balance until `decide` takes it again
        book.set(window, { units: taken.units, size: taken.units, until: taken.at + Math.min(taken.validMillis, MAX_LEASE_MILLIS) })
      }
      return true
    })

  /**
   * Admits a call on the fast path: `Some(ticket)` with its budgets taken, or `None` when it
   * must take the full path. Runs synchronously unless a lease needs renewing.
   */
  const admit = (
    key: string,
    state: KeyState | undefined,
    now: number,
    input: number,
    output: number,
    provider: string
  ): Effect.Effect<Option.Option<FastTicket>, LlmError.LlmError> => {
    if (state === undefined) return Effect.succeedNone
    const decision = decide(key, state, now, input, output)
    if (decision === undefined) return Effect.succeedNone
    if (decision._tag === "Admitted") return Effect.succeedSome(decision.ticket)
    return Effect.map(renewAll(key, state, decision.windows), (renewed) => {
      if (!renewed) return Option.none()
      const again = decide(key, state, now, input, output)
      return again?._tag === "Admitted" ? Option.some(again.ticket) : Option.none()
    }).pipe(Effect.mapError(storeError(provider)))
  }

  /**
   * Admits a call on the fast path without any store call: its ticket with the budgets taken
   * from the leases, or `undefined` when it is not eligible or a lease needs renewing (the
   * full attempt's `admit` renews it).
   */
  const take = (key: string, state: KeyState, now: number, input: number, output: number): FastTicket | undefined => {
    const decision = decide(key, state, now, input, output)
    return decision?._tag === "Admitted" ? decision.ticket : undefined
  }

  /**
   * Gives `units` back to a window's lease after a call (its usage below the reserve, or a
   * refund on failure), capped at the lease's size; what does not fit is dropped.
   * Returns the units the lease could not absorb when `units` is negative (an overrun).
   */
  const settle = (state: KeyState, window: Window, units: number): number => {
    const lease = leasesOf.get(state)?.get(window)
    if (lease === undefined) return units < 0 ? -units : 0
    if (units >= 0) {
      lease.units = Math.min(lease.size, lease.units + units)
      return 0
    }
    const take = Math.min(lease.units, -units)
    lease.units -= take
    return -units - take
  }

  return { admit, take, settle }
}
