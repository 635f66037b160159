/**
 * The one error of `@hasten/perf-logger`: bad options or run id, or a run folder or file that cannot
 * be read. Effects fail with it; the synchronous file readers (`readRun`, `readSummary`,
 * `parseEvents`) throw it.
 * @since 0.2.0
 */
import { Schema } from "effect"

/** A run id that is not a plain folder name (it would escape the log folder). @category errors @since 0.2.0 */
export class InvalidRunId extends Schema.TaggedError<InvalidRunId>()("InvalidRunId", {
  runId: Schema.String,
  description: Schema.String
}) {}

/** No run (folder, `events.jsonl`, `summary.json`) where one was named. @category errors @since 0.2.0 */
export class RunNotFound extends Schema.TaggedError<RunNotFound>()("RunNotFound", {
  path: Schema.String,
  description: Schema.String
}) {}

/** A run file that is not what perf-logger wrote (a malformed event line, a foreign JSON). @category errors @since 0.2.0 */
export class InvalidRunFile extends Schema.TaggedError<InvalidRunFile>()("InvalidRunFile", {
  path: Schema.String,
  /** The 1-based line of `events.jsonl` at fault. @since 0.2.0 */
  line: Schema.optionalKey(Schema.Number),
  description: Schema.String
}) {}

/**
 * An option of the recorder that fails its schema (`Recorder.OptionsSchema`): `field` names
 * the first bad one, `description` lists every problem. Its tag is `InvalidOptions`, as in
 * the other packages (the class name keeps the deprecated `InvalidOptions` alias below free).
 * @category errors @since 0.2.0
 */
export class InvalidOptionsReason extends Schema.TaggedError<InvalidOptionsReason>()("InvalidOptions", {
  field: Schema.String,
  description: Schema.String
}) {}

/**
 * The one error of `@hasten/perf-logger`; handle one reason with
 * `Effect.catchReason("PerfLoggerError", "RunNotFound", …)`.
 * @category errors @since 0.2.0
 */
export class PerfLoggerError extends Schema.TaggedError<PerfLoggerError>()("PerfLoggerError", {
  reason: Schema.Union([InvalidRunId, RunNotFound, InvalidRunFile, InvalidOptionsReason])
}) {
  /** `perf-logger: <description>`. */
  override get message(): string {
    return `perf-logger: ${this.reason.description}`
  }
}

/**
 * The error perf-logger threw before 0.2.0, now {@link PerfLoggerError} (so `instanceof
 * InvalidOptions` still matches everything perf-logger throws).
 * @deprecated Use `PerfLoggerError` and its `reason`.
 * @alias
 * @category errors @since 0.1.0
 */
export const InvalidOptions = PerfLoggerError
/** @deprecated Use `PerfLoggerError`. @category errors @since 0.1.0 */
export type InvalidOptions = PerfLoggerError
