/**
 * Small HTTP helpers every simulated API uses: reading and parsing a JSON body, and
 * sending a JSON response (each response is counted by status).
 * @since 0.1.0
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Engine } from "./engine.js"

/** Reads a request body (at most `limit` bytes). */
export const readBody = (request: IncomingMessage, limit = 64 * 1024 * 1024): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    let size = 0
    request.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        reject(new Error(`request body larger than ${limit} bytes`))
        request.destroy()
        return
      }
      chunks.push(chunk)
    })
    request.on("end", () => resolve(Buffer.concat(chunks)))
    request.on("error", reject)
  })

/** The result of parsing a JSON body. */
export type ParsedJson = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly message: string }

/** Parses a JSON body, naming the problem when it is not JSON. */
export const parseJson = (body: Buffer): ParsedJson => {
  if (body.length === 0) return { ok: false, message: "the request body is empty; expected a JSON object" }
  try {
    return { ok: true, value: JSON.parse(body.toString("utf8")) }
  } catch (error) {
    return { ok: false, message: `the request body is not valid JSON: ${(error as Error).message}` }
  }
}

/** Whether a value is a plain JSON object. */
export const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** Counts a response status. */
export const countStatus = (engine: Engine, status: number): void => {
  const key = String(status)
  engine.counters.responsesByStatus[key] = (engine.counters.responsesByStatus[key] ?? 0) + 1
}

/** Sends a JSON response (no-op when the client is gone). */
export const sendJson = (
  engine: Engine,
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
  contentType = "application/json"
): void => {
  countStatus(engine, status)
  if (response.destroyed || response.headersSent) return
  const payload = JSON.stringify(body)
  response.writeHead(status, { ...headers, "content-type": contentType, "content-length": Buffer.byteLength(payload) })
  response.end(payload)
}
