/**
 * The one error of `@hasten/batcher` outside the `LlmError`s calls fail with: options that
 * fail their schema. `make` and `layer` die with it when the layer is built.
 * @since 0.2.0
 */
import { Boundary } from "@hasten/core"
import { Schema } from "effect"

/** Options that fail validation: `field` names the first bad option, `message` lists every problem. @category errors @since 0.2.0 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  field: Schema.String,
  message: Schema.String
}) {}

/**
 * The one error of `@hasten/batcher`; handle a reason with
 * `Effect.catchReason("BatcherError", "InvalidOptions", …)`.
 * @category errors @since 0.2.0
 */
export class BatcherError extends Schema.TaggedError<BatcherError>()("BatcherError", {
  reason: Schema.Union([InvalidOptions])
}) {
  override get message(): string {
    return `invalid batcher options: ${this.reason.message}`
  }
}

const optional = Schema.optionalKey

/** `Adaptive.Options`, checked. @category schemas @since 0.2.0 */
export const AdaptiveOptions = Schema.Struct({
  max: Boundary.PositiveInt,
  min: optional(Boundary.PositiveInt),
  initial: optional(Boundary.PositiveInt),
  perItemBytes: optional(Boundary.Positive),
  memoryFraction: optional(Boundary.mustBe("in (0, 1]", (value) => value > 0 && value <= 1)),
  adaptive: optional(Schema.Boolean),
  sampleSize: optional(Boundary.PositiveInt)
})

/** `Batcher.Options` and `EmbedderOptions`, checked. @category schemas @since 0.2.0 */
export const OptionsSchema = Schema.Struct({
  maxBatchSize: optional(Boundary.PositiveInt),
  window: optional(Boundary.DurationInput),
  enabled: optional(Schema.Boolean),
  concurrency: optional(Schema.Union([Boundary.PositiveInt, AdaptiveOptions]))
})

const check = Boundary.optionsChecker(OptionsSchema)

/** The options' error, or `undefined` when they pass. @category constructors @since 0.2.0 */
export const validate = (options: unknown): BatcherError | undefined => {
  const bad = check(options)
  return bad === undefined ? undefined : new BatcherError({ reason: new InvalidOptions({ field: bad.field, message: bad.message }) })
}
