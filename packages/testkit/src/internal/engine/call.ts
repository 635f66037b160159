/**
 * The common middle of every model call: admission, then the responder, then the
 * generated tokens and the modelled latency that the vendor module sends.
 * @since 0.1.0
 */
import type { ResponderRequest } from "../../SimulatorOptions.js"
import { type Admission, admitCall } from "./admission.js"
import { type Generated, shape } from "./generation.js"
import { sendJson } from "./http.js"
import type { Latency } from "./latency.js"
import type { RouteContext } from "./route.js"
import type { Vendor } from "./vendor.js"

/** An admitted, generated model call. */
export interface Call {
  readonly admission: Admission
  readonly generated: Generated
  readonly latency: Latency
}

/**
 * The common middle of every model call: faults, admission, then the responder.
 * Returns `undefined` when it has already answered (fault, 429, responder failure).
 */
export const runCall = async (
  context: RouteContext,
  vendor: Vendor,
  options: {
    readonly inputTokens: number
    /** The prompt's characters, for `promptCharge: "characters"`. */
    readonly promptCharacters?: number | undefined
    readonly maxTokens: number | undefined
    readonly responderRequest: ResponderRequest
    readonly manualRelease?: boolean
  }
): Promise<Call | undefined> => {
  const { engine, response } = context
  const index = engine.nextCall()
  const admission = admitCall(engine, vendor, response, {
    key: context.key,
    route: context.route,
    inputTokens: options.inputTokens,
    reservedTokens: engine.promptCharge(options.inputTokens, options.promptCharacters) + engine.reservedOutput(options.maxTokens),
    index,
    ...(options.manualRelease === true ? { manualRelease: true } : {})
  })
  if (admission === undefined) return undefined
  let raw: string
  try {
    raw = await engine.responder(options.responderRequest)
  } catch (error) {
    const failure = vendor.error("server", `The simulator's responder failed: ${error instanceof Error ? error.message : String(error)}`)
    sendJson(engine, response, failure.status, failure.body, vendor.rateHeaders(admission.state, Date.now()), failure.contentType)
    admission.release()
    return undefined
  }
  if (typeof raw !== "string") raw = String(raw)
  return {
    admission,
    generated: shape(raw, options.maxTokens, options.responderRequest.stop),
    latency: engine.latency(index)
  }
}
