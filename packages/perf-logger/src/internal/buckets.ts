/**
 * Histogram bucket boundaries, shared by the exported metrics (`Metrics.ts`) and their
 * per-series instruments (`instruments.ts`).
 * @since 0.1.0
 */

/** Seconds, for operation and stage durations. */
export const durationBoundaries = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
/** Token counts. */
export const tokenBoundaries = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
/** Seconds, for time to first chunk and between chunks. */
export const chunkBoundaries = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5]
/** Batch sizes. */
export const batchBoundaries = [1, 2, 4, 8, 16, 32, 64, 128, 256]
/** Speculative acceptance rates. */
export const acceptanceBoundaries = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]
