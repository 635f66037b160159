/**
 * Sending a generated answer in model time: a JSON answer after the whole generation
 * time, a stream token by token; a `midstream` fault cuts either halfway.
 * @since 0.1.0
 */
import type { ServerResponse } from "node:http"
import type { Call } from "./call.js"
import type { Engine } from "./engine.js"
import { cutConnection } from "./faults.js"

/** Waits out the whole generation time of a non-streamed answer; false when the client left meanwhile. */
export const waitWhole = async (engine: Engine, response: ServerResponse, call: Call): Promise<boolean> => {
  const count = call.admission.cut === true ? Math.floor(call.generated.tokens.length / 2) : call.generated.tokens.length
  await engine.sleep(call.latency.ttftMs + call.latency.perTokenMs * Math.max(0, count - 1))
  if (response.destroyed || engine.closed) return false
  if (call.admission.cut === true) {
    engine.counters.outputTokens += count
    cutConnection(response)
    return false
  }
  engine.counters.outputTokens += call.generated.tokens.length
  return true
}

/** Emits tokens at the modelled pace; false when the client left before the end. */
export const paceTokens = async (
  engine: Engine,
  response: ServerResponse,
  call: Call,
  write: (token: string, index: number) => void
): Promise<boolean> => {
  await engine.sleep(call.latency.ttftMs)
  const tokens = call.generated.tokens
  const cutAt = call.admission.cut === true ? Math.floor(tokens.length / 2) : -1
  for (let i = 0; i < tokens.length; i++) {
    if (i > 0) await engine.sleep(call.latency.perTokenMs)
    if (response.destroyed || engine.closed) return false
    if (i === cutAt) {
      cutConnection(response)
      return false
    }
    write(tokens[i]!, i)
    engine.counters.outputTokens += 1
  }
  return !response.destroyed
}
