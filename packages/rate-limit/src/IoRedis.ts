/**
 * The `Redis` service `effect/persistence` expects (what `RateLimiter.layerStoreRedis`
 * runs its Lua scripts through), built on an `ioredis` client: commands, `EVALSHA`
 * with script caching and `NOSCRIPT` fallback (from `Redis.make`), pub/sub and a pool
 * of dedicated connections.
 * @since 0.1.0
 */
import { Effect, Layer } from "effect"
import { Redis } from "effect/persistence"
import { Redis as IoRedisClient, type RedisOptions } from "ioredis"

/** Where to connect: a `redis://` URL, or an existing client (not closed by the layer). @category models @since 0.1.0 */
export type Options =
  | { readonly url: string; readonly options?: RedisOptions | undefined; readonly pool?: Redis.PoolOptions | undefined }
  | { readonly client: IoRedisClient; readonly pool?: Redis.PoolOptions | undefined }

const redisError = (cause: unknown) => new Redis.RedisError({ cause })

const sendWith =
  (client: IoRedisClient) => <A = unknown>(command: string, ...args: ReadonlyArray<string>): Effect.Effect<A, Redis.RedisError> =>
    Effect.tryPromise({
      try: () => client.call(command, ...args) as Promise<A>,
      catch: redisError
    })

const quit = (client: IoRedisClient): Effect.Effect<void> =>
  Effect.promise(() => client.quit().then(() => undefined, () => client.disconnect()))

/**
 * Builds the `Redis` service from an ioredis client for the lifetime of the scope.
 * @category constructors @since 0.1.0
 */
export const make = Effect.fnUntraced(function*(options: Options) {
  const client = "client" in options
    ? options.client
    : yield* Effect.acquireRelease(
      Effect.sync(() => {
        const created = options.options === undefined
          ? new IoRedisClient(options.url)
          : new IoRedisClient(options.url, options.options as never)
        // Connection errors reach callers through their commands (a retryable `Transport`);
        // without a listener ioredis also prints "Unhandled error event" on every reconnect.
        created.on("error", () => {})
        return created
      }),
      quit
    )
  return yield* Redis.make({
    send: sendWith(client),
    subscribe: (channel, onMessage) =>
      Effect.gen(function*() {
        const subscriber = yield* Effect.acquireRelease(
          Effect.sync(() => client.duplicate().on("error", () => {})),
          quit
        )
        subscriber.on("message", (from: string, message: string) => {
          if (from === channel) onMessage({ channel: from, message })
        })
        yield* Effect.tryPromise({ try: () => subscriber.subscribe(channel), catch: redisError })
        // Runs until the subscriber connection ends for good.
        return Effect.callback<void, Redis.RedisError>((resume) => {
          const onEnd = () => resume(Effect.fail(redisError(new Error(`redis subscription to ${channel} ended`))))
          subscriber.once("end", onEnd)
          return Effect.sync(() => subscriber.off("end", onEnd))
        })
      }),
    connect: Effect.sync(() => {
      const connection = client.duplicate().on("error", () => {})
      return {
        send: sendWith(connection),
        // disconnect() rejects any command still in flight, as Redis.make requires.
        close: Effect.sync(() => connection.disconnect())
      }
    }),
    pool: options.pool
  })
})

/**
 * Provides `Redis` from an ioredis client.
 * @category layers @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<Redis.Redis> => Layer.effect(Redis.Redis, make(options))
