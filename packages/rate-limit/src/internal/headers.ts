/**
 * Learning from the provider's rate-limit headers. The limits they state become the key's
 * budgets (per the window the provider's `RateLimitPolicy` gives them), replacing the
 * seeds' assumed defaults (as the limits a policy documents do from the first call); a budget the user set stays as a hard cap, and one above the
 * provider's is reported once. A spent budget (`remaining` 0) holds the key for the time
 * one more call's worth replenishes, as the provider's continuous refill does (reset /
 * limit per unit; the whole reset when the provider does not send its limit).
 * @internal
 */
import type { RateLimitHeaders } from "@hasten/core"
import { Clock, Effect } from "effect"
import type { Resolved } from "../Options.js"
import { type Event, seconds } from "./events.js"
import type { KeyState } from "./keyState.js"
import type { Window } from "./windows.js"

/** The limits a response states, as windows of `windowMillis`. */
const statedWindows = (info: RateLimitHeaders.RateLimitInfo, windowMillis: number): Array<Window> => {
  const stated: Array<Window> = []
  const add = (name: Window["name"], unit: Window["unit"], limit: number | undefined) => {
    if (limit !== undefined && limit > 0 && Number.isFinite(limit)) stated.push({ name, unit, limit, windowMillis, source: "learnt" })
  }
  add("provider_requests", "request", info.limitRequests)
  add("provider_tokens", "total", info.limitTokens)
  add("provider_input_tokens", "input", info.limitInputTokens)
  add("provider_output_tokens", "output", info.limitOutputTokens)
  return stated
}

/** Whether every stated window is already among the key's learnt ones (the hot path: most responses restate the same limits). */
const known = (state: KeyState, stated: ReadonlyArray<Window>): boolean =>
  state.learnt &&
  stated.every((window) =>
    state.windows.some((current) =>
      current.name === window.name && current.limit === window.limit && current.windowMillis === window.windowMillis
    )
  )

/** The header learning of one limiter; `shared` publishes each hold to the other processes of the fleet. */
export const make = (options: Resolved, event: Event, shared?: (key: string, holdMillis: number) => Effect.Effect<void>) => {
  /** Makes `stated` the key's budgets, in place of the assumed ones (see the module comment). */
  const adopt = (state: KeyState, stated: ReadonlyArray<Window>, key: string, how: "learnt" | "documented") => {
    const names = new Set(stated.map((window) => window.name))
    // The provider stated its limits: the assumed defaults go; what it restated replaces
    // the previous learnt value; what the user set stays.
    const kept = state.windows.filter((window) => window.source === "configured" || (window.source === "learnt" && !names.has(window.name)))
    const above: Array<string> = []
    for (const window of stated) {
      for (const mine of kept) {
        if (mine.source !== "configured" || mine.unit !== window.unit) continue
        const perMinute = (limit: number, millis: number) => (limit * 60_000) / millis
        if (perMinute(mine.limit, mine.windowMillis) > perMinute(window.limit, window.windowMillis) && !state.lowered.has(mine.name)) {
          state.lowered.add(mine.name)
          above.push(
            `${mine.name} ${mine.limit} per ${mine.windowMillis / 1000} s is above the provider's ${window.limit} per ${
              window.windowMillis / 1000
            } s`
          )
        }
      }
    }
    state.windows = [...kept, ...stated]
    state.requestWindow = state.windows.find((window) => window.unit === "request")
    const first = !state.learnt
    state.learnt = true
    const budgets = stated.map((window) => `${window.name.replace("provider_", "")}=${window.limit}/${window.windowMillis / 1000}s`).join(
      " "
    )
    return Effect.andThen(
      event(`${how} ${budgets}`, { event: `rate_limit.${how}`, key, budgets, first }),
      above.length === 0
        ? Effect.void
        : Effect.logWarning(`rate-limit ${key}: configured ${above.join("; ")}: the provider's limit applies`)
    )
  }

  /**
   * Before any response has stated a budget: the limits the provider documents (its
   * policy's `documentedLimits`) replace the assumed defaults.
   */
  const documented = (state: KeyState, key: string) =>
    Effect.suspend(() => {
      const limits = state.policy?.documentedLimits
      if (limits === undefined || state.learnt || !options.learnFromHeaders) return Effect.void
      const stated = statedWindows({
        ...(limits.requests !== undefined ? { limitRequests: limits.requests } : {}),
        ...(limits.tokens !== undefined ? { limitTokens: limits.tokens } : {})
      }, limits.windowMillis)
      return stated.length === 0 ? Effect.void : adopt(state, stated, key, "documented")
    })

  /**
   * What a response's headers change, applied now: new budgets are adopted at once; the
   * effect returned logs them and sets a hold for a spent budget. `undefined` when the
   * headers change nothing (the hot path: most responses restate known limits with room left).
   */
  const learnNow = (
    state: KeyState,
    info: RateLimitHeaders.RateLimitInfo | undefined,
    key: string,
    cost: { readonly input: number; readonly output: number }
  ): Effect.Effect<void> | undefined => {
    if (!options.learnFromHeaders || info === undefined) return undefined
    let budgets: Effect.Effect<void> | undefined
    const windowMillis = state.policy?.headerWindowMillis
    if (windowMillis !== undefined) {
      const stated = statedWindows(info, windowMillis)
      if (stated.length > 0 && !known(state, stated)) budgets = adopt(state, stated, key, "learnt")
    }
    let hold: [string, number] | undefined
    const spent = (name: string, remaining: number | undefined, reset: number | undefined, limit: number | undefined, units: number) => {
      if (remaining === undefined || remaining > 0 || reset === undefined || reset <= 0) return
      const millis = limit !== undefined && limit > 0 ? Math.min(reset, (reset * Math.max(1, units)) / limit) : reset
      if (hold === undefined || millis > hold[1]) hold = [name, millis]
    }
    spent("requests", info.remainingRequests, info.resetRequestsMillis, info.limitRequests, 1)
    spent("tokens", info.remainingTokens, info.resetTokensMillis, info.limitTokens, cost.input + cost.output)
    spent("input_tokens", info.remainingInputTokens, info.resetInputTokensMillis, info.limitInputTokens, cost.input)
    spent("output_tokens", info.remainingOutputTokens, info.resetOutputTokensMillis, info.limitOutputTokens, cost.output)
    if (hold === undefined) return budgets
    const [name, millis] = hold
    const held = Effect.flatMap(Clock.currentTimeMillis, (now) => {
      if (now + millis <= state.holdUntil) return Effect.void
      state.holdUntil = now + millis
      const logged = event(`hold=${seconds(millis)}`, { event: "rate_limit.hold", key, hold_seconds: seconds(millis), budget: name })
      return shared === undefined ? logged : Effect.andThen(logged, shared(key, millis))
    })
    return budgets === undefined ? held : Effect.andThen(budgets, held)
  }

  /** Learns from a response's headers: its stated budgets, and a hold for a spent one. */
  const learn = (
    state: KeyState,
    info: RateLimitHeaders.RateLimitInfo | undefined,
    key: string,
    cost: { readonly input: number; readonly output: number }
  ): Effect.Effect<void> => Effect.suspend(() => learnNow(state, info, key, cost) ?? Effect.void)

  return { learn, learnNow, documented }
}
