/**
 * Connecting to the fleet's Redis: one URL (`--redis`, `HASTEN_REDIS_URL`) held as a
 * `Redacted`, checked with a `PING` before anything is enqueued, and a clear
 * `RedisUnreachable` naming the URL — with its password replaced by `***` — when it
 * does not answer.
 * @since 0.1.0
 */
import { Config, Effect, Option, Redacted } from "effect"
import { Redis } from "ioredis"
import { RedisUnreachable, WorkersError } from "./WorkersError.js"

/** A Redis URL as given: plain text or `Redacted` (it may carry a password). @category models @since 0.1.0 */
export type Url = string | Redacted.Redacted<string>

/** The environment variable every process of a fleet reads its Redis URL from. @category configuration @since 0.1.0 */
export const envVar = "HASTEN_REDIS_URL"

/** `HASTEN_REDIS_URL` as a `Redacted`, if set: without it everything runs in one process. @category configuration @since 0.1.0 */
export const urlConfig: Config.Config<Option.Option<Redacted.Redacted<string>>> = Config.option(Config.Redacted(envVar))

/** The URL's text (unwrapped only here, at the connection boundary). @category utils @since 0.1.0 */
export const reveal = (url: Url): string => (Redacted.isRedacted(url) ? Redacted.value(url) : url)

/**
 * The URL with any password (and a user's password in `user:password@`) replaced by `***`,
 * safe to print: `redis://:s3cret@host:6379` → `redis://:***@host:6379`.
 * @category utils @since 0.1.0
 */
export const redact = (url: Url): string => {
  const text = reveal(url)
  return text.replace(/^([a-z+]+:\/\/)([^@/]*)@/i, (_, scheme: string, auth: string) => {
    const colon = auth.indexOf(":")
    return colon < 0 ? `${scheme}***@` : `${scheme}${auth.slice(0, colon)}:***@`
  })
}

const unreachable = (url: Url, description: string) => new WorkersError({ reason: new RedisUnreachable({ url: redact(url), description }) })

/**
 * An ioredis client for `url` that fails fast while Redis is down (no offline queue).
 * `blocking: true` gives BullMQ's worker connection (`maxRetriesPerRequest: null`).
 * @category constructors @since 0.1.0
 */
export const client = (url: Url, options?: { readonly blocking?: boolean }): Redis => {
  const redis = new Redis(reveal(url), {
    maxRetriesPerRequest: options?.blocking === true ? null : 3,
    retryStrategy: (times: number) => Math.min(100 * times, 2_000)
  })
  // Failures surface as failed commands (and the checked `connect`); keep ioredis quiet.
  redis.on("error", () => {})
  return redis
}

/**
 * Checks that Redis answers `PING` at `url` within `timeoutMillis` (default 3,000);
 * fails with `RedisUnreachable` naming the redacted URL otherwise.
 * @category constructors @since 0.1.0
 */
export const check = (url: Url, timeoutMillis = 3_000): Effect.Effect<void, WorkersError> =>
  Effect.gen(function*() {
    if (!/^rediss?:\/\//i.test(reveal(url))) return yield* unreachable(url, "not a redis:// or rediss:// URL")
    const probe = yield* Effect.try({
      try: () =>
        new Redis(reveal(url), {
          lazyConnect: true,
          enableOfflineQueue: false,
          maxRetriesPerRequest: 0,
          connectTimeout: timeoutMillis,
          retryStrategy: () => null
        }),
      catch: (error) => unreachable(url, error instanceof Error ? error.message : String(error))
    })
    probe.on("error", () => {})
    yield* Effect.tryPromise({
      try: async () => {
        await probe.connect()
        await probe.ping()
      },
      catch: (error) => unreachable(url, error instanceof Error ? error.message : String(error))
    }).pipe(
      Effect.timeoutOrElse({
        duration: timeoutMillis,
        orElse: () => Effect.fail(unreachable(url, `no answer within ${timeoutMillis} ms`))
      }),
      Effect.ensuring(Effect.sync(() => probe.disconnect()))
    )
  })

/**
 * A checked, scoped client: `check` first, then `client`, closed with the scope.
 * @category constructors @since 0.1.0
 */
export const scoped = (url: Url, options?: { readonly blocking?: boolean }) =>
  Effect.andThen(
    check(url),
    Effect.acquireRelease(
      Effect.sync(() => client(url, options)),
      // QUIT waits for Redis; if it has gone away, drop the connection instead of waiting forever.
      (redis) =>
        Effect.promise(() => redis.quit().then(() => undefined, () => redis.disconnect())).pipe(
          Effect.timeoutOrElse({ duration: 1_000, orElse: () => Effect.sync(() => redis.disconnect()) })
        )
    )
  )
