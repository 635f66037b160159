/**
 * Fleet-wide single-flight: identical deterministic requests in flight in several
 * processes (or machines) make one upstream call. The first caller takes a Redis lock on
 * the request key (`SET NX PX`, renewed while its call runs) and writes the completion
 * under the key for `resultTtlMillis`; every other caller waits for that result instead of
 * calling. A holder that dies lets its lock expire and a waiter takes over. Within one
 * process, identical calls share one Redis round of this before touching Redis at all.
 * Place it just under the response cache: `Cache → FleetSingleFlight → RateLimit → provider`.
 * If Redis fails, calls go straight through (it only saves calls; it never blocks them).
 * @since 0.1.0
 */
import * as CachePayload from "@hasten/cache/CachePayload"
import { type Completion, type CompletionRequest, Llm, type LlmError, RequestKey } from "@hasten/core"
import { Deferred, Effect, Exit, Fiber, Layer, Metric } from "effect"
import type { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as RedisConnection from "./RedisConnection.js"
import type { WorkersError } from "./WorkersError.js"

/** Options of {@link layer}. @category models @since 0.1.0 */
export interface Options {
  /** The fleet's Redis (`--redis`, `HASTEN_REDIS_URL`), or a client of your own (not closed). */
  readonly redis: RedisConnection.Url | Redis
  /** Key prefix. Default `hasten:flight:`. */
  readonly prefix?: string
  /** Separates users of one Redis (as the cache's namespace). Default `default`. */
  readonly namespace?: string
  /**
   * A holder's lock lifetime; renewed every third of it while its call runs. When a holder
   * dies, waiters take over after at most this long. Default 5,000 ms.
   */
  readonly lockMillis?: number
  /** How long a finished result stays readable for late waiters. Default 10,000 ms. */
  readonly resultTtlMillis?: number
  /** How often a waiter looks for the result. Default 20 ms. */
  readonly pollMillis?: number
}

/** Calls that waited for another process's (or fiber's) identical call instead of making their own. @category metrics @since 0.1.0 */
export const coalesced = Metric.counter("hasten_workers_single_flight_coalesced_total", {
  description: "Calls answered by an identical call in flight elsewhere in the fleet",
  incremental: true
})

// Deletes the lock only if it is still ours.
const releaseScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`
const renewScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`

/**
 * Wraps the current `Llm` with fleet-wide single-flight for the lifetime of the scope.
 * @category constructors @since 0.1.0
 */
export const make = Effect.fnUntraced(function*(options: Options) {
  const inner = yield* Llm.Llm
  const redis: Redis = typeof options.redis === "object" && "get" in options.redis
    ? options.redis
    : yield* RedisConnection.scoped(options.redis as RedisConnection.Url)
  const prefix = options.prefix ?? "hasten:flight:"
  const namespace = options.namespace ?? "default"
  const lockMillis = options.lockMillis ?? 5_000
  const ttl = options.resultTtlMillis ?? 10_000
  const pollMillis = options.pollMillis ?? 20
  const local = new Map<string, Deferred.Deferred<Completion.Completion, LlmError.LlmError>>()

  const attempt = <A>(f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: (error) => error })
  const readResult = (key: string) =>
    Effect.map(attempt(() => redis.get(`${prefix}r:${key}`)), (text) => {
      if (text === null) return undefined
      const payload = CachePayload.decodePayload(text)
      return payload?._tag === "completion" ? payload.completion : undefined
    })

  // Holds the lock: renew it while the call runs, publish the result, release.
  const lead = (key: string, token: string, request: CompletionRequest.CompletionRequest) =>
    Effect.gen(function*() {
      const renew = yield* Effect.forkChild(
        Effect.forever(
          Effect.sleep(Math.max(1, Math.floor(lockMillis / 3))).pipe(
            Effect.andThen(attempt(() => redis.eval(renewScript, 1, `${prefix}l:${key}`, token, String(lockMillis)))),
            Effect.ignore
          )
        )
      )
      const exit = yield* Effect.exit(inner.complete(request))
      yield* Fiber.interrupt(renew)
      if (Exit.isSuccess(exit)) {
        const text = CachePayload.encodePayload({ _tag: "completion", completion: exit.value })
        if (text !== undefined) yield* Effect.ignore(attempt(() => redis.set(`${prefix}r:${key}`, text, "PX", ttl)))
      }
      yield* Effect.ignore(attempt(() => redis.eval(releaseScript, 1, `${prefix}l:${key}`, token)))
      return yield* exit
    })

  const fleet = (key: string, request: CompletionRequest.CompletionRequest): Effect.Effect<Completion.Completion, LlmError.LlmError> =>
    Effect.gen(function*() {
      const token = randomUUID()
      let waited = false
      while (true) {
        const found = yield* Effect.exit(readResult(key))
        // Redis failed: single-flight only saves calls, so make the call.
        if (Exit.isFailure(found)) return yield* inner.complete(request)
        if (found.value !== undefined) {
          if (waited) yield* Metric.update(coalesced, 1)
          return found.value
        }
        const locked = yield* Effect.exit(attempt(() => redis.set(`${prefix}l:${key}`, token, "PX", lockMillis, "NX")))
        if (Exit.isFailure(locked)) return yield* inner.complete(request)
        if (locked.value === "OK") return yield* lead(key, token, request)
        waited = true
        yield* Effect.sleep(pollMillis)
      }
    })

  const complete = (request: CompletionRequest.CompletionRequest): Effect.Effect<Completion.Completion, LlmError.LlmError> => {
    if (!RequestKey.isDeterministic(request)) return inner.complete(request)
    const key = RequestKey.make(request, { provider: inner.name, namespace })
    return Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const existing = local.get(key)
        if (existing !== undefined) {
          yield* Metric.update(coalesced, 1)
          return yield* restore(Deferred.await(existing))
        }
        const deferred = Deferred.makeUnsafe<Completion.Completion, LlmError.LlmError>()
        local.set(key, deferred)
        const exit = yield* Effect.exit(restore(fleet(key, request)))
        local.delete(key)
        yield* Deferred.done(deferred, exit)
        return yield* exit
      })
    )
  }

  return Llm.inherit(inner, { ...inner, complete }) satisfies Llm.LlmService
})

/**
 * Fleet-wide single-flight as middleware (`Layer<Llm, WorkersError, Llm>`); fails to
 * build with `RedisUnreachable` when Redis does not answer.
 * @category layers @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<Llm.Llm, WorkersError, Llm.Llm> => Layer.effect(Llm.Llm, make(options))
