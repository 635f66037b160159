/**
 * Server-sent events, the streaming format of all three APIs.
 * @since 0.1.0
 */
import type { ServerResponse } from "node:http"
import type { Engine } from "./engine.js"
import { countStatus } from "./http.js"

/** Starts a server-sent-event response. */
export const startSse = (engine: Engine, response: ServerResponse, headers: Record<string, string>): void => {
  countStatus(engine, 200)
  response.writeHead(200, {
    ...headers,
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive"
  })
  response.flushHeaders()
}

/** Writes one SSE event; multi-line data is split over several `data:` lines. */
export const writeSse = (response: ServerResponse, data: string, event?: string, id?: string): void => {
  if (response.destroyed || response.writableEnded) return
  let frame = ""
  if (event !== undefined) frame += `event: ${event}\n`
  if (id !== undefined) frame += `id: ${id}\n`
  for (const line of data.split("\n")) frame += `data: ${line}\n`
  response.write(`${frame}\n`)
}
