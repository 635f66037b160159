/**
 * `@hasten/evaluator`: deterministic, cached, parallel LLM evaluation.
 * @since 0.1.0
 */

/** Datasets: JSONL/CSV with validation, GSM8K, TruthfulQA, question/answer pairs. @since 0.1.0 */
export * as Dataset from "./Dataset.js"
/** Seeded, portable selection. @since 0.1.0 */
export * as Sampling from "./Sampling.js"
/** Scorers: GSM8K, multiple choice, exact match, LLM judge. @since 0.1.0 */
export * as Scorer from "./Scorer.js"
/** Mean, standard error, bootstrap interval, agreement. @since 0.1.0 */
export * as Stats from "./Stats.js"
