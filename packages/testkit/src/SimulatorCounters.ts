/**
 * What a running simulator reports: its counters and the event log of every model call's
 * admission decision (`Simulator.Counters`, `Simulator.SimulatorEvent`).
 * @since 0.1.0
 */
import type { FaultKind } from "./SimulatorOptions.js"

/** Counters a test or benchmark reads. @category models @since 0.1.0 */
export interface Counters {
  /** Every HTTP request received (all routes). */
  requests: number
  /** Requests per route, e.g. `"POST /v1/chat/completions"`. */
  requestsByRoute: Record<string, number>
  /** Model calls admitted (past auth, validation, faults and limits). */
  admitted: number
  /** 429 responses by scope (Anthropic's quota error is a 400 but is counted under `quota`). */
  http429: { requests: number; tokens: number; quota: number; concurrency: number }
  /** Responses by status code. */
  responsesByStatus: Record<string, number>
  /** Most model calls in flight at once (all keys). */
  peakConcurrency: number
  /** Model calls in flight now. */
  inFlight: number
  /** Prompt tokens of admitted calls. */
  inputTokens: number
  /** Output tokens generated (streamed tokens count as sent). */
  outputTokens: number
  /** Injected faults, total and by kind. */
  faults: number
  faultsByKind: Record<FaultKind, number>
  /** Replicate predictions and OpenAI batches cancelled through the API. */
  cancellations: number
  /** Model calls whose client went away before the response was complete. */
  aborted: number
  /** Replicate model boots (`replicate.coldStartMs`). */
  coldStarts: number
}

/** One model call as the rate limiter saw it. @category models @since 0.1.0 */
export interface SimulatorEvent {
  /** Epoch milliseconds when the call was admitted or rejected. */
  readonly t: number
  readonly key: string
  readonly route: string
  /** 200 when admitted; the error status otherwise (0 for an injected reset or hang). */
  readonly status: number
  /** For 429s: which limit. */
  readonly scope?: "requests" | "tokens" | "quota" | "concurrency"
  readonly inputTokens: number
  /** Tokens charged against the TPM bucket (0 when not admitted). */
  readonly reservedTokens: number
  /** For admitted calls: the modelled time to first token and per-token time (jitter applied). */
  readonly ttftMs?: number
  readonly perTokenMs?: number
}
