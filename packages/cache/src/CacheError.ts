/**
 * The one error of `@hasten/cache` outside the `LlmError`s calls fail with and the
 * `CacheStoreError`s of a store: options that fail their schema. The cache layers die with
 * it when they are built.
 * @since 0.2.0
 */
import { Boundary } from "@hasten/core"
import { Predicate, Redacted, Schema } from "effect"

/** Options that fail validation: `field` names the first bad option, `message` lists every problem. @category errors @since 0.2.0 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  field: Schema.String,
  message: Schema.String
}) {}

/**
 * The one error of `@hasten/cache`; handle a reason with
 * `Effect.catchReason("CacheError", "InvalidOptions", …)`.
 * @category errors @since 0.2.0
 */
export class CacheError extends Schema.TaggedError<CacheError>()("CacheError", {
  reason: Schema.Union([InvalidOptions])
}) {
  override get message(): string {
    return `invalid cache options: ${this.reason.message}`
  }
}

const optional = Schema.optionalKey

/** `CacheConfig.Settings`, checked. @category schemas @since 0.2.0 */
export const SettingsSchema = Schema.Struct({
  enabled: optional(Schema.UndefinedOr(Schema.Boolean)),
  policy: optional(Schema.UndefinedOr(Schema.Literals(["deterministic", "all"]))),
  namespace: optional(Schema.UndefinedOr(Schema.String)),
  version: optional(Schema.UndefinedOr(Boundary.NonNegativeInt)),
  ttl: optional(Schema.UndefinedOr(Boundary.DurationInput)),
  onStoreError: optional(Schema.UndefinedOr(Schema.Literals(["bypass", "fail"])))
})

/** `CacheConfig.Options`, checked. @category schemas @since 0.2.0 */
export const OptionsSchema = Schema.Struct({
  ...SettingsSchema.fields,
  store: optional(Schema.UndefinedOr(Schema.Literals(["memory", "sqlite", "redis"]))),
  path: optional(Schema.UndefinedOr(Schema.String)),
  redisUrl: optional(
    Schema.Unknown.check(Schema.makeFilter((url: unknown) =>
      url === undefined || Predicate.isString(url) || Redacted.isRedacted(url)
        ? undefined
        : `must be a URL string or a Redacted one, got ${String(url)}`
    ))
  ),
  redisPrefix: optional(Schema.UndefinedOr(Schema.String)),
  tier: optional(Schema.UndefinedOr(Schema.Boolean)),
  memory: optional(Schema.UndefinedOr(Schema.Struct({
    maxEntries: optional(Schema.UndefinedOr(Boundary.PositiveInt)),
    maxBytes: optional(Schema.UndefinedOr(Boundary.PositiveInt))
  })))
})

const checkOptions = Boundary.optionsChecker(OptionsSchema)
const checkSettings = Boundary.optionsChecker(SettingsSchema)

const toError = (bad: Boundary.InvalidOptions | undefined): CacheError | undefined =>
  bad === undefined ? undefined : new CacheError({ reason: new InvalidOptions({ field: bad.field, message: bad.message }) })

/** The options' error, or `undefined` when they pass. @category constructors @since 0.2.0 */
export const validate = (options: unknown): CacheError | undefined => toError(checkOptions(options))

/** The settings' error, or `undefined` when they pass. @category constructors @since 0.2.0 */
export const validateSettings = (settings: unknown): CacheError | undefined => toError(checkSettings(settings))
