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
/** `EvaluatorError`, the package's one error, and its reasons. @since 0.2.0 */
export * as EvaluatorError from "./EvaluatorError.js"
/** The runner: candidates, judge, trials, self-correction, checkpoints. @since 0.1.0 */
export * as Evaluator from "./Evaluator.js"
/** The outcome of one (candidate, item, trial) and its timing: what the runner records and reports summarize. @since 0.1.0 */
export * as ItemRecord from "./ItemRecord.js"
/** Log-likelihood multiple choice as lm-evaluation-harness scores it: acc, acc_norm, TruthfulQA MC1/MC2. @since 0.3.0 */
export * as MultipleChoice from "./MultipleChoice.js"
/** Paired comparison of two candidates: McNemar's exact test, paired bootstrap interval. @since 0.3.0 */
export * as Paired from "./Paired.js"
/** JSON and Markdown reports, comparisons. @since 0.1.0 */
export * as Report from "./Report.js"
/** Progress bar on a TTY, plain lines in CI. @since 0.1.0 */
export * as Progress from "./Progress.js"
/** Default middleware stacks (cache, perf-logger, rate limit). @since 0.1.0 */
export * as Stack from "./Stack.js"
/** The `hasten-eval` command (argument parsing, provider specs, report files). @since 0.1.0 */
export * as Command from "./Command.js"
