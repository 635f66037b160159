/**
 * Learning from the provider's rate-limit headers: a spent budget holds the key for the
 * time one more call's worth replenishes, as the provider's continuous refill does
 * (reset / limit per unit; the whole reset when the provider does not send its limit).
 * @internal
 */
import type { RateLimitHeaders } from "@hasten/core"
import { Clock, Effect } from "effect"
import type { Resolved } from "../Options.js"
import { type Event, seconds } from "./events.js"
import type { KeyState } from "./keyState.js"

/** The header learning of one limiter. */
export const make = (options: Resolved, event: Event) => {
  const learn = (state: KeyState, info: RateLimitHeaders.RateLimitInfo | undefined, key: string, cost: { readonly input: number; readonly output: number }) =>
    Effect.gen(function*() {
      if (!options.learnFromHeaders || info === undefined) return
      const holds: Array<[string, number]> = []
      const spent = (name: string, remaining: number | undefined, reset: number | undefined, limit: number | undefined, units: number) => {
        if (remaining === undefined || remaining > 0 || reset === undefined || reset <= 0) return
        holds.push([name, limit !== undefined && limit > 0 ? Math.min(reset, (reset * Math.max(1, units)) / limit) : reset])
      }
      spent("requests", info.remainingRequests, info.resetRequestsMillis, info.limitRequests, 1)
      spent("tokens", info.remainingTokens, info.resetTokensMillis, info.limitTokens, cost.input + cost.output)
      spent("input_tokens", info.remainingInputTokens, info.resetInputTokensMillis, info.limitInputTokens, cost.input)
      spent("output_tokens", info.remainingOutputTokens, info.resetOutputTokensMillis, info.limitOutputTokens, cost.output)
      if (holds.length === 0) return
      const [name, millis] = holds.reduce((a, b) => (b[1] > a[1] ? b : a))
      const now = yield* Clock.currentTimeMillis
      if (now + millis > state.holdUntil) {
        state.holdUntil = now + millis
        yield* event(`hold=${seconds(millis)}`, { event: "rate_limit.hold", key, hold_seconds: seconds(millis), budget: name })
      }
    })

  return { learn }
}
