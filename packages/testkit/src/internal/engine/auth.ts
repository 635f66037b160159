/**
 * API keys: where a request carries one, and whether the simulator accepts it.
 * @since 0.1.0
 */
import type { IncomingMessage } from "node:http"

/** The API key a request carries: `Authorization: Bearer|Token <key>` or `x-api-key`. */
export const apiKeyOf = (request: IncomingMessage): string | undefined => {
  const header = request.headers["x-api-key"]
  if (typeof header === "string" && header.length > 0) return header
  const authorization = request.headers.authorization
  if (authorization === undefined) return undefined
  const match = /^(?:Bearer|Token)\s+(.+)$/i.exec(authorization.trim())
  return match?.[1]?.trim()
}

/** Whether the key is acceptable; `undefined` when it is, the problem otherwise. */
export const checkKey = (
  apiKeys: ReadonlyArray<string> | undefined,
  key: string | undefined
): "missing API key" | "invalid API key" | undefined => {
  if (key === undefined || key.length === 0) return "missing API key"
  if (apiKeys !== undefined && !apiKeys.includes(key)) return "invalid API key"
  return undefined
}
