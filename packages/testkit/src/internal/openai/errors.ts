/**
 * OpenAI's error responses: the status, `type` and `code` of each kind of refusal, and
 * the 400 and 404 answers the routes send.
 * @since 0.1.0
 */
import { sendJson } from "../engine/http.js"
import type { RouteContext } from "../engine/route.js"
import type { ErrorKind } from "../engine/vendor.js"
import { commonHeaders } from "./headers.js"

/** Status, `error.type` and `error.code` of each kind of refusal. */
const errorTypes: Record<ErrorKind, { status: number; type: string; code: string | null }> = {
  invalid_request: { status: 400, type: "invalid_request_error", code: null },
  authentication: { status: 401, type: "invalid_request_error", code: "invalid_api_key" },
  not_found: { status: 404, type: "invalid_request_error", code: null },
  requests: { status: 429, type: "requests", code: "rate_limit_exceeded" },
  tokens: { status: 429, type: "tokens", code: "rate_limit_exceeded" },
  concurrency: { status: 429, type: "concurrency", code: "rate_limit_exceeded" },
  quota: { status: 429, type: "insufficient_quota", code: "insufficient_quota" },
  server: { status: 500, type: "server_error", code: null },
  overloaded: { status: 503, type: "server_error", code: null }
}

/** OpenAI's error body: `{ error: { message, type, param, code } }`. */
export const errorResponse = (kind: ErrorKind, message: string) => {
  const { code, status, type } = errorTypes[kind]
  return { status, body: { error: { message, type, param: null, code } } }
}

/** Answers 400 `invalid_request_error`, naming the offending parameter. */
export const invalid = (context: RouteContext, message: string, param: string | null = null): void => {
  sendJson(context.engine, context.response, 400, {
    error: { message, type: "invalid_request_error", param, code: null }
  }, commonHeaders(context))
}

/** Answers 404 `invalid_request_error`. */
export const notFound = (context: RouteContext, message: string): void =>
  sendJson(
    context.engine,
    context.response,
    404,
    { error: { message, type: "invalid_request_error", param: null, code: null } },
    commonHeaders(context)
  )
