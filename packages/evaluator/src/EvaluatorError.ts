/**
 * The one error of `@hasten/evaluator`, with a `reason` for each way an evaluation can go
 * wrong: a dataset that cannot be read, bad options or command-line usage, a candidate that
 * cannot start, a checkpoint from another run, a judge whose output cannot be read.
 * @since 0.2.0
 */
import { Schema } from "effect"

/** A dataset that could not be read, or (with `onInvalid: "fail"`) a bad row. @category errors @since 0.1.0 */
export class DatasetError extends Schema.TaggedError<DatasetError>()("DatasetError", {
  source: Schema.String,
  line: Schema.optionalKey(Schema.Number),
  /** The first bad field of the row, when one is at fault. @since 0.2.0 */
  field: Schema.optionalKey(Schema.String),
  description: Schema.String
}) {
  override get message(): string {
    return this.line === undefined ? `${this.source}: ${this.description}` : `${this.source}:${this.line}: ${this.description}`
  }
}

/** Wrong command-line usage. @category errors @since 0.1.0 */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  /** The flag at fault, without its dashes (`questions`, `bogus`), when one is. @since 0.2.0 */
  flag: Schema.optionalKey(Schema.String),
  description: Schema.String
}) {
  override get message(): string {
    return this.description
  }
}

/** An option of `Evaluator.run` that is missing or out of range. @category errors @since 0.2.0 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  /** The option (`trials`, `candidates`, `judge.concurrency`, …). */
  field: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return this.description
  }
}

/** A candidate or the judge could not start (its layer failed to build). @category errors @since 0.2.0 */
export class StartFailed extends Schema.TaggedError<StartFailed>()("StartFailed", {
  /** `candidate <name>` or `judge`. */
  what: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `${this.what} failed to start: ${this.description}`
  }
}

/** A checkpoint file that belongs to another run or has no header. @category errors @since 0.2.0 */
export class CheckpointMismatch extends Schema.TaggedError<CheckpointMismatch>()("CheckpointMismatch", {
  path: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return this.description
  }
}

/** The judge's output could not be read as `{score, reason}`. @category errors @since 0.1.0 */
export class JudgeParseError extends Schema.TaggedError<JudgeParseError>()("JudgeParseError", {
  description: Schema.String,
  raw: Schema.String
}) {
  override get message(): string {
    return `judge output not usable: ${this.description}`
  }
}

/**
 * Log-likelihood scoring could not score an item: a continuation with no tokens of its
 * own, a probability that underflowed to 0, or a model without token access.
 * @category errors @since 0.3.0
 */
export class LoglikelihoodError extends Schema.TaggedError<LoglikelihoodError>()("LoglikelihoodError", {
  /** The item id, when one item is at fault. */
  itemId: Schema.optionalKey(Schema.String),
  description: Schema.String
}) {
  override get message(): string {
    return this.itemId === undefined ? this.description : `${this.itemId}: ${this.description}`
  }
}

/** Every reason an `EvaluatorError` can carry. @category models @since 0.2.0 */
export const EvaluatorErrorReason = Schema.Union([
  DatasetError,
  UsageError,
  InvalidOptions,
  StartFailed,
  CheckpointMismatch,
  JudgeParseError,
  LoglikelihoodError
])
/** @category models @since 0.2.0 */
export type EvaluatorErrorReason = typeof EvaluatorErrorReason.Type

/**
 * The one error of `@hasten/evaluator`; handle one reason with
 * `Effect.catchReason("EvaluatorError", "DatasetError", …)`. Its message is the reason's.
 * @category errors @since 0.1.0
 */
export class EvaluatorError extends Schema.TaggedError<EvaluatorError>()("EvaluatorError", {
  reason: EvaluatorErrorReason
}) {
  override get message(): string {
    return this.reason.message
  }
}

/** Wraps a reason. @category constructors @since 0.2.0 */
export const make = (reason: EvaluatorErrorReason): EvaluatorError => new EvaluatorError({ reason })
