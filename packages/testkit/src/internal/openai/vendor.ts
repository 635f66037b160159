/**
 * The OpenAI API as the shared pipeline sees it: its error bodies and rate-limit headers.
 * @since 0.1.0
 */
import type { Vendor } from "../engine/vendor.js"
import { errorResponse } from "./errors.js"
import { rateLimitHeaders } from "./headers.js"

/** OpenAI's error body: `{ error: { message, type, param, code } }`, and `x-ratelimit-*` headers. */
export const vendor: Vendor = {
  api: "openai",
  error: errorResponse,
  rateHeaders: rateLimitHeaders
}
