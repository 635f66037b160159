/**
 * Per-key rate limits: a sliding-window log of the calls each API key was charged for,
 * the order in which the limits are checked (quota → concurrency → requests → tokens),
 * what an admitted or refused call is charged, and the limit state that the vendors'
 * rate-limit headers are made from.
 * @since 0.1.0
 */
import type { LimitOptions } from "../../SimulatorOptions.js"
import { formatDuration } from "./duration.js"

/** Rate-limit state of one key after an admission decision: what rate-limit headers report. */
export interface LimitState {
  readonly limitRequests?: number
  readonly remainingRequests?: number
  readonly resetRequestsMs?: number
  readonly limitTokens?: number
  readonly remainingTokens?: number
  readonly resetTokensMs?: number
  readonly retryAfterMs?: number
}

/** Which limit refused a call. */
export type LimitScope = "quota" | "concurrency" | "requests" | "tokens"

/** Why a call does not fit now: the limit, OpenAI's wording, and the wait until it would fit. */
export interface Refusal {
  readonly scope: LimitScope
  readonly message: string
  readonly retryAfterMs?: number
}

/** One charge in a key's window: when, and how many tokens (0 for an unsuccessful call). */
interface WindowEntry {
  readonly t: number
  readonly tokens: number
}

/** One key's sliding-window log and running totals. */
export interface KeyWindow {
  entries: Array<WindowEntry>
  /** Sum of `entries[].tokens`. */
  tokens: number
  inFlight: number
  /** Tokens reserved over the simulator's life (for `quotaTokens`). */
  reservedTotal: number
}

/** The rate-limit windows of every API key of one simulator. */
export class RateLimiter {
  readonly limits: LimitOptions | undefined
  readonly windowMs: number
  private windows = new Map<string, KeyWindow>()

  constructor(limits: LimitOptions | undefined, windowMs: number) {
    this.limits = limits
    this.windowMs = windowMs
  }

  /** Forgets every key's window (calls in flight keep the window they were charged to). */
  reset(): void {
    this.windows = new Map()
  }

  /** The key's window, created empty on first use. */
  windowOf(key: string): KeyWindow {
    let window = this.windows.get(key)
    if (window === undefined) {
      window = { entries: [], tokens: 0, inFlight: 0, reservedTotal: 0 }
      this.windows.set(key, window)
    }
    return window
  }

  /** Drops the entries that left the window by `at`. */
  prune(window: KeyWindow, at: number): void {
    const cutoff = at - this.windowMs
    let drop = 0
    while (drop < window.entries.length && window.entries[drop]!.t <= cutoff) {
      window.tokens -= window.entries[drop]!.tokens
      drop++
    }
    if (drop > 0) window.entries.splice(0, drop)
  }

  /** Output tokens a call reserves: its `max_tokens`, or `defaultMaxTokens` when it set none. */
  reservedOutput(maxTokens: number | undefined): number {
    return maxTokens ?? this.limits?.defaultMaxTokens ?? 64
  }

  /** Prompt tokens charged at admission: the token count, or `ceil(characters / 4)` with `promptCharge: "characters"`. */
  promptCharge(inputTokens: number, promptCharacters: number | undefined): number {
    return this.limits?.promptCharge === "characters" && promptCharacters !== undefined ? Math.ceil(promptCharacters / 4) : inputTokens
  }

  /** The key's rate-limit state at `at` (empty when neither `rpm` nor `tpm` is set). */
  state(key: string | undefined, at: number): LimitState {
    const limits = this.limits
    if (key === undefined || (limits?.rpm === undefined && limits?.tpm === undefined) || limits.headers === false) return {}
    const window = this.windowOf(key)
    this.prune(window, at)
    const last = window.entries.at(-1)
    const reset = last === undefined ? 0 : Math.max(0, last.t + this.windowMs - at)
    const used = window.tokens
    return {
      ...(limits.rpm !== undefined
        ? { limitRequests: limits.rpm, remainingRequests: Math.max(0, limits.rpm - window.entries.length), resetRequestsMs: reset }
        : {}),
      ...(limits.tpm !== undefined
        ? { limitTokens: limits.tpm, remainingTokens: Math.max(0, limits.tpm - used), resetTokensMs: reset }
        : {})
    }
  }

  /**
   * Whether a call reserving `reservedTokens` fits the key's (pruned) window at `at`:
   * quota, then concurrency, then requests, then tokens. `undefined` when it fits.
   */
  check(window: KeyWindow, key: string, reservedTokens: number, at: number): Refusal | undefined {
    const limits = this.limits
    const exhausted = limits?.quotaExhausted
    if (
      exhausted === true || (Array.isArray(exhausted) && exhausted.includes(key)) ||
      (limits?.quotaTokens !== undefined && window.reservedTotal + reservedTokens > limits.quotaTokens)
    ) {
      return { scope: "quota", message: "You exceeded your current quota, please check your plan and billing details." }
    }
    if (limits?.maxConcurrency !== undefined && window.inFlight >= limits.maxConcurrency) {
      return {
        scope: "concurrency",
        message: `Concurrency limit reached: at most ${limits.maxConcurrency} calls in flight per key.`,
        retryAfterMs: 50
      }
    }
    if (limits?.rpm !== undefined && window.entries.length + 1 > limits.rpm) {
      // With `countUnsuccessful` this rejection takes a place too: wait for the one after it to free.
      const counted = limits.countUnsuccessful === true ? 1 : 0
      // (with a limit of 1, the place that frees is this rejection's own)
      const freeingAt = window.entries[window.entries.length + counted - limits.rpm]?.t ?? at
      const wait = freeingAt + this.windowMs - at
      return {
        scope: "requests",
        message:
          `Rate limit reached for requests per min (RPM): Limit ${limits.rpm}, Used ${window.entries.length}, Requested 1. Please try again in ${
            formatDuration(wait)
          }.`,
        retryAfterMs: wait
      }
    }
    if (limits?.tpm !== undefined) {
      const used = window.tokens
      if (used + reservedTokens > limits.tpm) {
        let wait = this.windowMs
        if (reservedTokens <= limits.tpm) {
          let remaining = used
          for (const entry of window.entries) {
            remaining -= entry.tokens
            if (remaining + reservedTokens <= limits.tpm) {
              wait = entry.t + this.windowMs - at
              break
            }
          }
        }
        return {
          scope: "tokens",
          message: reservedTokens > limits.tpm
            ? `Request too large for tokens per min (TPM): Limit ${limits.tpm}, Requested ${reservedTokens}.`
            : `Rate limit reached for tokens per min (TPM): Limit ${limits.tpm}, Used ${used}, Requested ${reservedTokens}. Please try again in ${
              formatDuration(wait)
            }.`,
          retryAfterMs: wait
        }
      }
    }
    return undefined
  }

  /** Charges an admitted call: a place and its reserved tokens in the window, against the quota, and in flight until {@link release}. */
  charge(window: KeyWindow, at: number, reservedTokens: number): void {
    window.entries.push({ t: at, tokens: reservedTokens })
    window.tokens += reservedTokens
    window.reservedTotal += reservedTokens
    window.inFlight += 1
  }

  /** With `limits.countUnsuccessful`, an unsuccessful call (fault or 429) takes a place (no tokens) in the request window. */
  chargeUnsuccessful(window: KeyWindow, at: number): void {
    if (this.limits?.countUnsuccessful === true) window.entries.push({ t: at, tokens: 0 })
  }

  /** An admitted call's response is over: it no longer counts against `maxConcurrency`. */
  release(window: KeyWindow): void {
    window.inFlight -= 1
  }
}
