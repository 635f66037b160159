/**
 * Configuration from the environment: `MAX_CONCURRENCY`, `RPS_LIMIT`, `TPM_LIMIT`, … read
 * through Effect's `Config`, and the middleware built from them.
 * @since 0.1.0
 */
import type { Llm } from "@hasten/core"
import { Config, ConfigProvider, Effect, Layer, Option, Schema } from "effect"
import { layer } from "./Middleware.js"
import { type Options, resolve } from "./Options.js"

const number = (name: string, rule: "positive" | "nonNegative" | "positiveInt" | "nonNegativeInt") =>
  Config.schema(
    (rule === "positiveInt" || rule === "nonNegativeInt" ? Schema.Int : Schema.Finite).check(
      rule === "positive"
        ? Schema.isGreaterThan(0)
        : rule === "positiveInt"
        ? Schema.isGreaterThanOrEqualTo(1)
        : Schema.isGreaterThanOrEqualTo(0)
    ),
    name
  )

const optional = <A>(config: Config.Config<A>) => Config.map(Config.option(config), Option.getOrUndefined)

/**
 * The environment: `MAX_CONCURRENCY`, `RPS_LIMIT`, `RPM_LIMIT`, `TPM_LIMIT`,
 * `INPUT_TPM_LIMIT`, `OUTPUT_TPM_LIMIT` — each a hard cap when set; unset, the budget is
 * learnt from the provider's headers, with the seeds' defaults (2 in flight, 2.0 requests
 * per second, 120000 tokens per minute) assumed until the provider states its limits —
 * `MAX_RETRIES` (6), `RETRIES_ENABLED` (1), `RETRY_BASE_MS` (500), `RETRY_CAP_MS` (30000),
 * `RETRY_AFTER_CAP_MS` (60000), `REQUEST_TIMEOUT_MS` (a fixed per-attempt deadline instead
 * of the learnt one), `RATE_LIMIT_LOG_FILE`, `RATE_LIMIT_REDIS_URL`, `RATE_LIMIT_FLEET_STATE` (1: with
 * Redis, holds, AIMD decreases and circuit trips are shared between processes).
 * An invalid value fails with a `ConfigError` naming the variable.
 * @category configuration @since 0.1.0
 */
export const config: Config.Config<Options> = Config.all({
  maxConcurrency: optional(number("MAX_CONCURRENCY", "positiveInt")),
  requestsPerSecond: optional(number("RPS_LIMIT", "positive")),
  requestsPerMinute: optional(number("RPM_LIMIT", "positive")),
  tokensPerMinute: optional(number("TPM_LIMIT", "positiveInt")),
  inputTokensPerMinute: optional(number("INPUT_TPM_LIMIT", "positiveInt")),
  outputTokensPerMinute: optional(number("OUTPUT_TPM_LIMIT", "positiveInt")),
  maxRetries: number("MAX_RETRIES", "nonNegativeInt").pipe(Config.withDefault(6)),
  retriesEnabled: Config.Boolean("RETRIES_ENABLED").pipe(Config.withDefault(true)),
  retryBaseMillis: number("RETRY_BASE_MS", "nonNegative").pipe(Config.withDefault(500)),
  retryCapMillis: number("RETRY_CAP_MS", "nonNegative").pipe(Config.withDefault(30_000)),
  retryAfterCapMillis: number("RETRY_AFTER_CAP_MS", "nonNegative").pipe(Config.withDefault(60_000)),
  requestTimeoutMillis: optional(number("REQUEST_TIMEOUT_MS", "positive")),
  logFile: optional(Config.String("RATE_LIMIT_LOG_FILE")),
  redisUrl: optional(Config.String("RATE_LIMIT_REDIS_URL")),
  fleetState: optional(Config.Boolean("RATE_LIMIT_FLEET_STATE"))
}).pipe(
  Config.map(({ redisUrl, ...rest }): Options => ({ ...rest, ...(redisUrl !== undefined ? { redis: { url: redisUrl } } : {}) }))
)

/**
 * {@link layer} configured from the environment ({@link config}); explicit `options` win
 * over the variables.
 * @category layers @since 0.1.0
 */
export const layerConfig = (options: Options = {}): Layer.Layer<Llm.Llm, Config.ConfigError, Llm.Llm> =>
  Layer.unwrap(
    Effect.gen(function*() {
      const fromEnv = yield* config
      const defined = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Options
      const merged: Options = { ...fromEnv, ...defined }
      yield* Effect.mapError(resolve(merged), (error) => new Config.ConfigError(new ConfigProvider.SourceError({ message: error.message })))
      return layer(merged)
    })
  )
