/**
 * Seeded fault injection: which model calls fail and how (`500`, `503`, `reset`, `hang`,
 * `midstream`), and the responses or broken connections that each fault produces.
 * @since 0.1.0
 */
import type { ServerResponse } from "node:http"
import type { FaultKind, FaultOptions } from "../../SimulatorOptions.js"
import { unit } from "../random.js"
import type { Engine } from "./engine.js"
import { countStatus, sendJson } from "./http.js"
import type { Vendor } from "./vendor.js"

/** The kinds drawn when `faults.kinds` is not set (`midstream` only when listed). */
const defaultKinds: ReadonlyArray<FaultKind> = ["500", "503", "reset", "hang"]

/** The fault drawn for the `index`-th model call, if any: the same seed and index give the same draw. */
export const drawFault = (faults: FaultOptions | undefined, seed: number, index: number): FaultKind | undefined => {
  if (faults === undefined || faults.rate <= 0) return undefined
  if (unit(seed, "fault", index) >= faults.rate) return undefined
  const kinds: ReadonlyArray<FaultKind> = faults.kinds !== undefined && faults.kinds.length > 0
    ? faults.kinds
    : defaultKinds
  return kinds[Math.floor(unit(seed, "fault-kind", index) * kinds.length)]!
}

/** The status recorded in the event log for a fault answered before admission (0: no answer). */
export const faultStatus = (kind: FaultKind): number => kind === "500" ? 500 : kind === "503" ? 503 : 0

/** Answers with a fault (or not at all); the handler stops when it returns true. */
export const injectFault = (
  engine: Engine,
  vendor: Vendor,
  kind: FaultKind | undefined,
  response: ServerResponse,
  headers: Record<string, string> = {}
): boolean => {
  if (kind === undefined) return false
  switch (kind) {
    case "reset":
      countStatus(engine, 0)
      response.socket?.destroy()
      return true
    case "hang":
      // Never answer: the client must time out. `close()` destroys the socket.
      return true
    case "midstream":
      return false
    case "500": {
      const error = vendor.error("server", "The server had an error while processing your request. Sorry about that!")
      sendJson(engine, response, error.status, error.body, headers, error.contentType)
      return true
    }
    case "503": {
      const error = vendor.error("overloaded", "The server is overloaded or not ready yet.")
      sendJson(engine, response, error.status, error.body, headers, error.contentType)
      return true
    }
  }
}

const cutResponses = new WeakSet<ServerResponse>()

/** Destroys the connection under a response in progress (a `midstream` fault). */
export const cutConnection = (response: ServerResponse): void => {
  // Not the client's doing: `aborted` counts clients that leave.
  cutResponses.add(response)
  const socket = response.socket
  // Before the headers: a reset. Mid-body: flush what was written, then close without finishing.
  if (socket === null) response.destroy()
  else if (!response.headersSent) socket.destroy()
  else socket.end()
}

/** Whether a response was cut by a `midstream` fault (rather than left by its client). */
export const wasCut = (response: ServerResponse): boolean => cutResponses.has(response)
