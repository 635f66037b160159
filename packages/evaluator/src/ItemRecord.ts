/**
 * The outcome of evaluating one (candidate, item, trial): the answer and its score, or
 * the error that stopped it, with its self-correction turns and token usage; and its
 * run-dependent timing. The `Evaluator` produces them, the `Report` summarizes them, and
 * the checkpoint stores them one per line.
 * @since 0.1.0
 */

/** One answer of a self-correction run. @category models @since 0.1.0 */
export interface Turn {
  readonly turn: number
  readonly output: string
  readonly score: number
  readonly correct: boolean
  readonly extracted: string | null
  readonly details?: Record<string, unknown>
}

/** Why an item failed. @category models @since 0.1.0 */
export interface ItemError {
  readonly stage: "generate" | "score"
  readonly tag: string
  readonly message: string
  readonly turn: number
}

/**
 * The outcome of one (candidate, item, trial). `status: "error"` items are counted
 * separately and never scored.
 * @category models @since 0.1.0
 */
export interface ItemRecord {
  readonly candidate: string
  readonly itemId: string
  readonly index: number
  readonly trial: number
  /** The sampling seed of this trial (`Sampling.trialSeed`), recorded when a run has several trials. @since 0.3.0 */
  readonly seed?: number
  readonly status: "ok" | "error"
  /** The final answer (the last turn's in self-correction). */
  readonly output?: string
  readonly score?: number
  readonly correct?: boolean
  readonly extracted?: string | null
  readonly details?: Record<string, unknown>
  /** Self-correction turns, turn 0 first. */
  readonly turns?: ReadonlyArray<Turn>
  readonly error?: ItemError
  readonly usage: { readonly inputTokens: number; readonly outputTokens: number; readonly calls: number }
}

/** Run-dependent facts about one record, kept out of the reproducible report. @category models @since 0.1.0 */
export interface ItemTiming {
  readonly millis: number
  /** Calls answered by a cache (`Completion.cached`). */
  readonly cachedCalls: number
  readonly calls: number
  /** True when the record came from the checkpoint. */
  readonly resumed: boolean
}
