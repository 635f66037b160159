/**
 * The front half of every model call: draw a fault, then ask the rate limiter; answer
 * with the fault, or with the vendor's 429 and its `retry-after` headers, when the call
 * may not run.
 * @since 0.1.0
 */
import type { ServerResponse } from "node:http"
import type { Engine } from "./engine.js"
import { faultStatus, injectFault, wasCut } from "./faults.js"
import { sendJson } from "./http.js"
import type { LimitState } from "./rateLimiter.js"
import type { Vendor } from "./vendor.js"

/** An admitted model call: release it when the response is over. */
export interface Admission {
  readonly state: LimitState
  readonly release: () => void
  /** A `midstream` fault: cut the response after half of the tokens. */
  readonly cut?: boolean
  /** A `hang` fault on a call that outlives its response (a Replicate prediction): admitted, then never progresses. */
  readonly stuck?: boolean
}

/** `retry-after` (whole seconds) and `retry-after-ms` (exact), sent with every 429 that knows its wait. */
export const retryAfterHeaders = (state: LimitState): Record<string, string> =>
  state.retryAfterMs === undefined ? {} : {
    "retry-after": String(Math.ceil(state.retryAfterMs / 1000)),
    "retry-after-ms": String(state.retryAfterMs)
  }

/**
 * The common front half of a model call: fault injection, then admission. Returns the
 * admission, or `undefined` after answering with a fault or an error.
 */
export const admitCall = (
  engine: Engine,
  vendor: Vendor,
  response: ServerResponse,
  options: {
    readonly key: string
    readonly route: string
    readonly inputTokens: number
    readonly reservedTokens: number
    readonly index: number
    /** Keep the call in flight after the HTTP response ends (Replicate predictions); the caller releases it. */
    readonly manualRelease?: boolean
  }
): Admission | undefined => {
  const kind = engine.fault(options.index)
  // A prediction hangs by being created and never starting, as Replicate's stuck ones do.
  const stuck = kind === "hang" && options.manualRelease === true
  if (kind !== undefined && kind !== "midstream" && !stuck) {
    engine.recordRefusal(options.key, options.route, faultStatus(kind))
    injectFault(engine, vendor, kind, response, vendor.rateHeaders(engine.state(options.key), Date.now()))
    return undefined
  }
  const admitted = engine.admit(options)
  const admission = "release" in admitted && kind === "midstream"
    ? { ...admitted, cut: true }
    : "release" in admitted && stuck
    ? { ...admitted, stuck: true }
    : admitted
  if ("release" in admission) {
    if (options.manualRelease === true) return admission
    response.once("close", () => {
      if (!response.writableFinished && !wasCut(response)) engine.counters.aborted += 1
      admission.release()
    })
    return admission
  }
  const error = vendor.error(admission.kind, admission.message, admission.state)
  const headers = { ...vendor.rateHeaders(admission.state, Date.now()), ...retryAfterHeaders(admission.state) }
  sendJson(engine, response, error.status, error.body, headers, error.contentType)
  return undefined
}
