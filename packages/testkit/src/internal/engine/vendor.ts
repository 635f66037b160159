/**
 * What each simulated API (OpenAI, Anthropic, Replicate) supplies to the shared
 * pipeline: its error responses and its rate-limit headers.
 * @since 0.1.0
 */
import type { Api } from "../../SimulatorOptions.js"
import type { LimitState } from "./rateLimiter.js"

/** Why a call is refused. */
export type ErrorKind =
  | "invalid_request"
  | "authentication"
  | "not_found"
  | "requests"
  | "tokens"
  | "concurrency"
  | "quota"
  | "server"
  | "overloaded"

/** What each vendor module supplies to the shared pipeline. */
export interface Vendor {
  readonly api: Api
  /** Status, body and extra headers of an error response. */
  readonly error: (kind: ErrorKind, message: string, state?: LimitState) => {
    readonly status: number
    readonly body: unknown
    readonly contentType?: string
  }
  /** Rate-limit headers for a response, made from the key's limit state. */
  readonly rateHeaders: (state: LimitState, now: number) => Record<string, string>
}
