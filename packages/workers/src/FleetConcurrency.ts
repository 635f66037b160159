/**
 * A concurrency limit shared by every process of a fleet: at most `limit` calls of one
 * key (by default the provider's name) run at once across all machines. Each call holds a
 * lease in a Redis sorted set scored by its expiry (Redis's own clock, so machines'
 * clocks do not matter), renewed while the call runs; a process that dies loses its
 * leases when they expire. Place it just above the provider (under the rate limiter's own
 * per-process budget), so it counts real upstream calls.
 * @since 0.1.0
 */
import { Llm } from "@hasten/core"
import { Effect, Fiber, Layer } from "effect"
import type { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as RedisConnection from "./RedisConnection.js"
import { InvalidOptions, WorkersError } from "./WorkersError.js"

/** Options of {@link layer}. @category models @since 0.1.0 */
export interface Options {
  readonly redis: RedisConnection.Url | Redis
  /** Calls at once, fleet-wide. */
  readonly limit: number
  /** What the limit is shared by. Default the provider's `Llm.name`. */
  readonly key?: string
  /** Key prefix. Default `hasten:concurrency:`. */
  readonly prefix?: string
  /** A lease's lifetime; renewed every third of it while the call runs. Default 30,000 ms. */
  readonly leaseMillis?: number
  /** How often a waiting call retries. Default 10 ms. */
  readonly pollMillis?: number
}

const acquireScript = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
  return 1
end
return 0`
const renewScript = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])`

/**
 * Wraps the current `Llm` with a fleet-wide concurrency limit for the lifetime of the scope.
 * @category constructors @since 0.1.0
 */
export const make = Effect.fnUntraced(function*(options: Options) {
  if (!Number.isInteger(options.limit) || options.limit < 1) {
    return yield* new WorkersError({ reason: new InvalidOptions({ field: "limit", description: `an integer >= 1, got ${options.limit}` }) })
  }
  const inner = yield* Llm.Llm
  const redis: Redis = typeof options.redis === "object" && "get" in options.redis
    ? options.redis
    : yield* RedisConnection.scoped(options.redis as RedisConnection.Url)
  const key = `${options.prefix ?? "hasten:concurrency:"}${options.key ?? inner.name}`
  const lease = options.leaseMillis ?? 30_000
  const pollMillis = options.pollMillis ?? 10
  const call = <A>(f: () => Promise<A>) => Effect.promise(f)

  const acquire = (token: string) =>
    Effect.gen(function*() {
      while ((yield* call(() => redis.eval(acquireScript, 1, key, String(options.limit), token, String(lease)))) !== 1) {
        yield* Effect.sleep(pollMillis)
      }
    })
  const withLease = <A, E>(effect: Effect.Effect<A, E>) =>
    Effect.acquireUseRelease(
      Effect.sync(() => randomUUID()).pipe(Effect.tap(acquire)),
      (token) =>
        Effect.gen(function*() {
          const renew = yield* Effect.forkChild(Effect.forever(
            Effect.sleep(Math.max(1, Math.floor(lease / 3))).pipe(
              Effect.andThen(call(() => redis.eval(renewScript, 1, key, token, String(lease))))
            )
          ))
          return yield* effect.pipe(Effect.ensuring(Fiber.interrupt(renew)))
        }),
      (token) => Effect.ignore(call(() => redis.zrem(key, token)))
    )

  return Llm.inherit(inner, {
    ...inner,
    complete: (request) => withLease(inner.complete(request))
  }) satisfies Llm.LlmService
})

/**
 * The fleet-wide concurrency limit as middleware (`Layer<Llm, WorkersError, Llm>`).
 * @category layers @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<Llm.Llm, WorkersError, Llm.Llm> => Layer.effect(Llm.Llm, make(options))
