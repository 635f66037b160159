/**
 * Distributed budgets: three worker processes share one key through a real redis-server
 * and stay inside the simulator's window together; with per-process memory stores the
 * same three overrun it. Also the `Redis` service over ioredis on its own.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { RedisServer, Simulator } from "@hasten/testkit"
import { Effect, Layer } from "effect"
import { RateLimiter, Redis } from "effect/persistence"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { IoRedis } from "../src/index.js"

const worker = fileURLToPath(new URL("./fixtures/redis-worker.ts", import.meta.url))
const hooks = fileURLToPath(new URL("./fixtures/source-hooks.mjs", import.meta.url))

let redis: RedisServer.RedisServer
beforeAll(async () => {
  redis = await RedisServer.start()
})
afterAll(async () => {
  await redis?.stop()
})

interface Report {
  readonly worker: number
  readonly ok: number
  readonly failed: number
  readonly retries: number
}

/** Starts a worker and resolves once it is loaded; `go` starts its calls and resolves with its report. */
const startWorker = (options: unknown) =>
  new Promise<{ readonly go: () => Promise<Report> }>((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", hooks, worker, JSON.stringify(options)], { stdio: ["pipe", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    let ready = false
    const done = new Promise<Report>((resolveReport, rejectReport) => {
      child.once("exit", (code) => {
        const line = stdout.split("\n").find((text) => text.startsWith("{\"worker\""))
        if (line === undefined) rejectReport(new Error(`worker exited ${code} without a report:\n${stderr.slice(-2000)}`))
        else resolveReport(JSON.parse(line) as Report)
      })
    })
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString()
      if (!ready && stdout.includes("ready\n")) {
        ready = true
        resolve({ go: () => (child.stdin.write("go\n"), done) })
      }
    })
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    child.once("exit", (code) => {
      if (!ready) reject(new Error(`worker exited ${code} before it was ready:\n${stderr.slice(-2000)}`))
    })
  })

const workers = async (baseURL: string, redisUrl: string | undefined, prefix: string) => {
  const started = await Promise.all([0, 1, 2].map((index) =>
    startWorker({
      baseURL,
      calls: 8,
      worker: index,
      ...(redisUrl !== undefined ? { redisUrl } : {}),
      limits: {
        redisPrefix: prefix,
        maxConcurrency: 4,
        requestsPerSecond: Infinity,
        requestsPerMinute: 10,
        requestWindowMillis: 2000,
        tokensPerMinute: Infinity,
        // slack for three processes' HTTP arrival jitter on a loaded machine
        safetyMargin: 0.3,
        retryBaseMillis: 50,
        retryCapMillis: 500,
        maxRetries: 20,
        circuitBreaker: false,
        // the store alone must hold the budget (headers would let the workers coordinate too)
        learnFromHeaders: false
      }
    })
  ))
  return Promise.all(started.map((started) => started.go()))
}

describe("three processes, one key", () => {
  // (A control run with per-process memory stores overruns the window only when the three
  // processes get enough CPU to reach their pace at the same time, which a loaded CI
  // machine does not promise; the spacing check below does not depend on it.)
  it("share the budget through Redis and stay inside the window", async () => {
    const sim = await Simulator.start({ limits: { rpm: 10, windowMs: 2000 }, latency: { ttftMs: 5 } })
    try {
      const prefix = `test-shared-${Date.now()}:`
      const reports = await workers(sim.openaiBaseUrl, redis.url, prefix)
      assert.strictEqual(reports.reduce((sum, report) => sum + report.ok, 0), 24)
      // Together they asked for 24 calls against 10 per 2 s.
      assert.isAtMost(sim.counters().http429.requests, 1)
      // One shared pace of 7 per 2 s (one call every 286 ms) for all three: the simulator saw
      // the 24 calls spread over at least 23 intervals (three separate budgets would take a third).
      const admitted = sim.events().filter((event) => event.status === 200).map((event) => event.t)
      assert.isAtLeast(Math.max(...admitted) - Math.min(...admitted), 23 * 286 * 0.9)
      const keys = await Effect.runPromise(
        Effect.flatMap(Effect.service(Redis.Redis), (client) => client.send<Array<string>>("KEYS", `${prefix}*`)).pipe(
          Effect.provide(IoRedis.layer({ url: redis.url }))
        )
      )
      assert.isTrue(keys.some((key) => key.endsWith(":requests_per_minute")), keys.join(","))
    } finally {
      await sim.close()
    }
  }, 90_000)
})

describe("IoRedis", () => {
  it.live("sends commands, runs cached scripts and reloads them after SCRIPT FLUSH", () =>
    Effect.gen(function*() {
      const redisService = yield* Redis.Redis
      yield* redisService.send("SET", "hasten:test:k", "41")
      assert.strictEqual(yield* redisService.send("INCR", "hasten:test:k"), 42)
      const script = Redis.script((key: string, by: number) => [key, by], {
        numberOfKeys: 1,
        lua: `return redis.call("INCRBY", KEYS[1], ARGV[1])`
      }).withReturnType<number>()
      const incr = redisService.eval(script)
      assert.strictEqual(yield* incr("hasten:test:k", 8), 50)
      yield* redisService.send("SCRIPT", "FLUSH")
      assert.strictEqual(yield* incr("hasten:test:k", 1), 51)
      const reserved = yield* Effect.scoped(Effect.flatMap(redisService.reserve, (connection) => connection.send("GET", "hasten:test:k")))
      assert.strictEqual(reserved, "51")
    }).pipe(Effect.provide(IoRedis.layer({ url: redis.url }))))

  it.live("backs the RateLimiter's Redis store", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.RateLimiter
      const key = `test-${Date.now()}`
      const first = yield* limiter.consume({ algorithm: "token-bucket", onExceeded: "delay", key, limit: 2, window: "1 minute", tokens: 1 })
      const second = yield* limiter.consume({
        algorithm: "token-bucket",
        onExceeded: "delay",
        key,
        limit: 2,
        window: "1 minute",
        tokens: 1
      })
      const third = yield* limiter.consume({ algorithm: "token-bucket", onExceeded: "delay", key, limit: 2, window: "1 minute", tokens: 1 })
      assert.strictEqual(first.remaining, 1)
      assert.strictEqual(second.remaining, 0)
      assert.strictEqual(third.remaining, -1)
    }).pipe(Effect.provide(RateLimiter.layer.pipe(
      Layer.provide(RateLimiter.layerStoreRedis({ prefix: "hasten-test:" })),
      Layer.provide(IoRedis.layer({ url: redis.url }))
    ))))
})
