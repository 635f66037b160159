/**
 * Fleet state through a real redis-server: two limiters with separate memory and the same
 * Redis stand for two processes. What one learns about a key — a 429's retry-after, a
 * spent-budget header, a halving, a circuit trip — reaches the other; with Redis gone,
 * calls still go through on each limiter's own state.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { LlmError } from "@hasten/core"
import { RedisServer } from "@hasten/testkit"
import { Cause, Clock, Context, Effect, Exit, Fiber, Layer, Option } from "effect"
import { TestClock } from "effect/testing"
import { Redis as IoRedisClient } from "ioredis"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { RateLimit } from "../src/index.js"
import { rateLimited } from "./support.js"

const processFixture = fileURLToPath(new URL("./fixtures/fleet-process.ts", import.meta.url))
const hooks = fileURLToPath(new URL("./fixtures/source-hooks.mjs", import.meta.url))

let redis: RedisServer.RedisServer
beforeAll(async () => {
  redis = await RedisServer.start()
})
afterAll(async () => {
  await redis?.stop()
})

const key = "fake:gpt-4o-mini:fleet"
let run = 0

/** No windows (nothing but the fleet state touches Redis), no retries, no deadlines. */
const base: RateLimit.Options = { requestsPerSecond: Infinity, tokensPerMinute: Infinity, retriesEnabled: false, timeout: false }

/** Limiters sharing one Redis and prefix, each with its own memory: processes of one fleet. */
const fleet = (count: number, options: RateLimit.Options = {}, url = redis.url) =>
  Effect.gen(function*() {
    const redisPrefix = `fleet-test-${process.pid}-${run++}:`
    return yield* Effect.forEach(Array.from({ length: count }), () =>
      Effect.map(
        Layer.build(RateLimit.layerLimiter({ ...base, redis: { url }, redisPrefix, ...options })),
        (context) => Context.get(context, RateLimit.Limiter)
      ))
  })

/** Waits (in real time: a message crossing Redis) until `check` holds. */
const eventually = (what: string, check: Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < 300; attempt++) {
      if (yield* check) return
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 10)))
    }
    assert.fail(`${what}: not seen within 3 s`)
  })

const ok = Effect.succeed("ok")
const fail = (reason: LlmError.LlmErrorReason) => LlmError.make("fake", reason)
const serverError = () => fail(new LlmError.ServerError({ status: 500, description: "boom" }))

/** A call that records when it started (the limiter's clock). */
const recorded = (starts: Array<number>) => Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => starts.push(now)))

const failure = <A>(exit: Exit.Exit<A, unknown>) => {
  assert.isTrue(Exit.isFailure(exit))
  const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.findErrorOption(exit.cause)) : undefined
  assert.isTrue(LlmError.isLlmError(error), String(error))
  return error as LlmError.LlmError
}

describe("fleet state through Redis", () => {
  it.effect("a 429's retry-after seen by one process holds the other's next call until it ends", () =>
    Effect.gen(function*() {
      const [a, b] = yield* fleet(2)
      yield* b!.execute({ key, effect: ok })
      yield* Effect.exit(a!.execute({ key, effect: fail(rateLimited("requests", 5_000)) }))
      yield* eventually("B holds the key", Effect.map(b!.heldUntil(key), (until) => until > 0))
      const starts: Array<number> = []
      const start = yield* Clock.currentTimeMillis
      const call = yield* Effect.forkChild(b!.execute({ key, effect: recorded(starts) }))
      yield* TestClock.adjust("4 seconds")
      assert.deepStrictEqual(starts, [])
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(call)
      assert.strictEqual(starts.length, 1)
      assert.isAbove(starts[0]! - start, 4_000)
    }).pipe(Effect.scoped))

  it.effect("a spent budget in one process's headers holds the first call of a process that joins later", () =>
    Effect.gen(function*() {
      const [a, watcher, late] = yield* fleet(3)
      yield* watcher!.execute({ key, effect: ok })
      yield* a!.execute({ key, effect: ok, observe: () => ({ rateLimit: { remainingRequests: 0, resetRequestsMillis: 3_000 } }) })
      assert.isAbove(yield* a!.heldUntil(key), 0)
      // the hold is in Redis once a process that follows the key has it
      yield* eventually("the watcher holds the key", Effect.map(watcher!.heldUntil(key), (until) => until > 0))
      const starts: Array<number> = []
      const call = yield* Effect.forkChild(late!.execute({ key, effect: recorded(starts) }))
      // its first call reads the key's fleet state from Redis before it goes
      yield* eventually("the late process holds the key", Effect.map(late!.heldUntil(key), (until) => until > 0))
      yield* TestClock.adjust("2 seconds")
      assert.deepStrictEqual(starts, [])
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(call)
      assert.strictEqual(starts.length, 1)
    }).pipe(Effect.scoped))

  it.effect("a halving in one process halves the other's limit, once per burst", () =>
    Effect.gen(function*() {
      const [a, b] = yield* fleet(2, { maxConcurrency: 8 })
      yield* b!.execute({ key, effect: ok })
      yield* Effect.exit(a!.execute({ key, effect: fail(rateLimited("requests")) }))
      assert.strictEqual(yield* a!.concurrency(key), 4)
      yield* eventually("B's limit halves", Effect.map(b!.concurrency(key), (limit) => limit === 4))
      // B's own 429 from the same burst does not halve it again (nor A, through Redis)
      yield* Effect.exit(b!.execute({ key, effect: fail(rateLimited("requests")) }))
      assert.strictEqual(yield* b!.concurrency(key), 4)
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 100)))
      assert.strictEqual(yield* a!.concurrency(key), 4)
    }).pipe(Effect.scoped))

  it.effect("a circuit tripped in one process makes the other fail fast with the same error, and it closes for both", () =>
    Effect.gen(function*() {
      const [a, b] = yield* fleet(2, { circuitBreaker: { failures: 2, openMillis: 5_000 } })
      yield* b!.execute({ key, effect: ok })
      yield* Effect.exit(a!.execute({ key, effect: serverError() }))
      yield* Effect.exit(a!.execute({ key, effect: serverError() }))
      const own = failure(yield* Effect.exit(a!.execute({ key, effect: ok })))
      yield* eventually("B's circuit opens", Effect.map(b!.circuitOpenUntil!(key), (until) => until > 0))
      const starts: Array<number> = []
      const shared = failure(yield* Effect.exit(b!.execute({ key, effect: recorded(starts) })))
      assert.deepStrictEqual(starts, [])
      assert.strictEqual(shared.reason._tag, own.reason._tag)
      assert.strictEqual(shared.reason._tag, "Overloaded")
      const description = (error: LlmError.LlmError) => error.reason.description.replace(/retry in [\d.]+s/, "retry in …")
      assert.strictEqual(description(shared), description(own))
      assert.isAbove((shared.reason as LlmError.Overloaded).retryAfterMillis!, 4_000)
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual((yield* b!.execute({ key, effect: ok })).value, "ok")
      assert.strictEqual((yield* a!.execute({ key, effect: ok })).value, "ok")
      assert.strictEqual((yield* a!.execute({ key, effect: ok })).value, "ok")
      assert.strictEqual(yield* b!.circuitOpenUntil!(key), 0)
    }).pipe(Effect.scoped))

  it.effect("with Redis gone, calls still go through on each process's own state", () =>
    Effect.gen(function*() {
      const own = yield* Effect.promise(() => RedisServer.start())
      const [a, b] = yield* fleet(2, { maxConcurrency: 8, circuitBreaker: { failures: 1, openMillis: 1_000 } }, own.url)
      yield* b!.execute({ key, effect: ok })
      yield* Effect.promise(() => own.stop())
      // a 429, a spent budget and a trip while Redis is down: each stays in its process
      yield* Effect.exit(a!.execute({ key, effect: fail(rateLimited("requests", 2_000)) }))
      yield* a!.execute({ key, effect: ok, observe: () => ({ rateLimit: { remainingRequests: 0, resetRequestsMillis: 1_000 } }) })
      yield* TestClock.adjust("1 second")
      yield* Effect.exit(a!.execute({ key, effect: serverError() }))
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 100)))
      assert.strictEqual(yield* a!.concurrency(key), 4)
      assert.strictEqual(yield* b!.concurrency(key), 8)
      assert.strictEqual(yield* b!.heldUntil(key), 0)
      assert.strictEqual((yield* b!.execute({ key, effect: ok })).value, "ok")
      // a process that starts while Redis is down works on its own
      const [late] = yield* fleet(1, {}, own.url)
      assert.strictEqual((yield* late!.execute({ key, effect: ok })).value, "ok")
    }).pipe(Effect.scoped), 20_000)

  it.effect("a process whose Redis connection comes back re-reads what it missed meanwhile", () =>
    Effect.gen(function*() {
      const redisPrefix = `fleet-test-${process.pid}-${run++}:`
      const b = Context.get(
        yield* Layer.build(RateLimit.layerLimiter({ ...base, redis: { url: redis.url }, redisPrefix })),
        RateLimit.Limiter
      )
      yield* b.execute({ key, effect: ok })
      const admin = yield* Effect.acquireRelease(Effect.sync(() => new IoRedisClient(redis.url)), (client) =>
        Effect.sync(() => client.disconnect()))
      // B's subscription drops; a hold is written while it is gone, and never published
      yield* Effect.promise(() =>
        admin.call("CLIENT", "KILL", "TYPE", "pubsub")
      )
      yield* Effect.promise(() =>
        admin.eval(
          `local t = redis.call('TIME') redis.call('HSET', KEYS[1], 'hold', t[1] * 1000 + 5000) redis.call('PEXPIRE', KEYS[1], 10000)`,
          1,
          `${redisPrefix}${key}:fleet`
        )
      )
      yield* eventually("B re-reads the key after reconnecting", Effect.map(b.heldUntil(key), (until) => until > 0))
    }).pipe(Effect.scoped))

  it.effect("with fleetState: false, processes sharing Redis keep their own holds and limits", () =>
    Effect.gen(function*() {
      const [a, b] = yield* fleet(2, { maxConcurrency: 8, fleetState: false })
      yield* b!.execute({ key, effect: ok })
      yield* Effect.exit(a!.execute({ key, effect: fail(rateLimited("requests", 5_000)) }))
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 200)))
      assert.strictEqual(yield* a!.concurrency(key), 4)
      assert.strictEqual(yield* b!.concurrency(key), 8)
      assert.strictEqual(yield* b!.heldUntil(key), 0)
    }).pipe(Effect.scoped))

  it("a trip in one real process makes another fail fast with the same error (and the tripping process may exit at once)", async () => {
    const prefix = `fleet-process-${process.pid}-${run++}:`
    /** Starts a process; `ready` resolves on its `ready` line (or report), `report` with its JSON report. */
    const start = (role: "trip" | "follow") => {
      const child = spawn(process.execPath, ["--import", hooks, processFixture, JSON.stringify({ redisUrl: redis.url, prefix, role })], {
        stdio: ["ignore", "pipe", "pipe"]
      })
      let stdout = ""
      let stderr = ""
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
      const ready = new Promise<void>((resolve) =>
        child.stdout.on("data", (chunk: Buffer) => {
          stdout += chunk.toString()
          if (stdout.includes("\n")) resolve()
        })
      )
      const report = new Promise<{ readonly error: string; readonly ran?: number }>((resolve, reject) =>
        child.once("exit", (code) => {
          const line = stdout.split("\n").find((text) => text.startsWith("{"))
          if (line === undefined) reject(new Error(`${role} exited ${code} without a report:\n${stderr.slice(-2000)}`))
          else resolve(JSON.parse(line))
        })
      )
      return { ready, report }
    }
    const follower = start("follow")
    await follower.ready
    const tripper = await start("trip").report
    const followed = await follower.report
    const general = (text: string) => text.replace(/retry in [\d.]+s/, "retry in …")
    assert.match(tripper.error, /^Overloaded: circuit open for fake:gpt-4o-mini:fleet after repeated server errors/)
    assert.strictEqual(general(followed.error), general(tripper.error))
    assert.strictEqual(followed.ran, 0)
  }, 60_000)
})
