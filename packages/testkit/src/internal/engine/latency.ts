/**
 * The latency model: a time to first token and a time per output token, both scaled per
 * call by a seeded jitter factor.
 * @since 0.1.0
 */
import type { LatencyOptions } from "../../SimulatorOptions.js"
import { unit } from "../random.js"

/** The modelled times of one call, jitter applied. */
export interface Latency {
  readonly ttftMs: number
  readonly perTokenMs: number
}

/** Time to first token and per-token time for the `index`-th call, jittered by the seed. */
export const latencyOf = (latency: LatencyOptions | undefined, seed: number, index: number): Latency => {
  const jitter = Math.min(1, Math.max(0, latency?.jitter ?? 0))
  const factor = 1 + jitter * (2 * unit(seed, "latency", index) - 1)
  return { ttftMs: (latency?.ttftMs ?? 0) * factor, perTokenMs: (latency?.perTokenMs ?? 0) * factor }
}
